"""Hold-out protocols: literal expected splits, seeded determinism and the bad-input paths."""

from __future__ import annotations

from collections import Counter

import pytest

from batchrec.columns import EVENT_TYPE, ITEM_ID, TIMESTAMP, USER_ID
from batchrec.config import EvaluateSettings, PrepareSettings
from batchrec.errors import DataError, UsageError
from batchrec.evaluation import splits

SCHEMA = f"{USER_ID} string, {ITEM_ID} string, {TIMESTAMP} long, {EVENT_TYPE} string"


def _df(spark, rows, partitions=2):
    return spark.createDataFrame(rows, SCHEMA).repartition(partitions)


def _pairs(df) -> set[tuple[str, str]]:
    return {(r[USER_ID], r[ITEM_ID]) for r in df.select(USER_ID, ITEM_ID).collect()}


def _grid(n_users, n_per_user):
    """User u interacts with items u..u+n-1 at times 1..n (item j of u at time j)."""
    return [(f"u{u:03d}", f"i{(u + j) % 50:02d}", j, "click")
            for u in range(n_users) for j in range(1, n_per_user + 1)]


def test_personalize_holds_out_newest_tenth_of_some_users(spark):
    rows = _grid(120, 10) + [("solo", "i00", 5, "click")]  # one interaction: never held out
    settings = EvaluateSettings(seed=7)
    split = splits.split_interactions(_df(spark, rows), "personalize", settings)
    truth = _pairs(split.truth)
    held = {u for u, _ in truth}
    # Every held-out user loses exactly its newest interaction (bround(10 * 0.1) = 1).
    assert truth == {(u, f"i{(int(u[1:]) + 10) % 50:02d}") for u in held}
    assert "solo" not in held and 3 <= len(held) <= 30  # about 10% of 120
    expected_train = {(u, i) for u, i, _, _ in rows} - truth
    assert _pairs(split.train) == expected_train
    assert _pairs(split.seen) == {(u, i) for u, i in expected_train if u in held}
    assert {r[USER_ID] for r in split.users.collect()} == held
    assert split.stats["evaluated_users"] == len(held) and split.stats["users"] == 121

    # Same seed, other partitioning: same split. Another seed: other users.
    again = splits.split_interactions(_df(spark, rows, 5), "personalize", settings)
    assert _pairs(again.truth) == truth
    other = splits.split_interactions(_df(spark, rows), "personalize", EvaluateSettings(seed=8))
    assert {u for u, _ in _pairs(other.truth)} != held


def test_personalize_truth_size_rounds_and_keeps_input(spark):
    # 25 interactions -> bround(2.5) = 2 truth items; 2 interactions -> 1 truth, 1 input.
    settings = EvaluateSettings(holdout_user_fraction=0.999, seed=1)
    rows = [("a", f"i{j}", j, "click") for j in range(25)] + [("b", "x", 1, "click"),
                                                              ("b", "y", 2, "click")]
    rows += [(f"f{n}", "z", 1, "click") for n in range(3)] * 2  # filler users with 2 interactions
    split = splits.split_interactions(_df(spark, rows), "personalize", settings)
    truth = _pairs(split.truth)
    assert {("a", "i24"), ("a", "i23"), ("b", "y")} <= truth
    assert ("b", "x") in _pairs(split.train)


def test_temporal_global_cut_drops_unknown_users_and_items(spark):
    rows = [("a", "i1", 1, "v"), ("a", "i2", 2, "v"), ("b", "i1", 3, "v"), ("b", "i3", 4, "v"),
            ("a", "i3", 5, "v"), ("b", "i2", 6, "v"), ("c", "i1", 7, "v"), ("a", "i9", 8, "v"),
            ("b", "i4", 0, "v"), ("a", "i4", 9, "v")]
    split = splits.split_interactions(_df(spark, rows), "temporal",
                                      EvaluateSettings(test_fraction=0.3))
    # The 70% quantile of times 0..9 is 6: test = t 7, 8, 9.
    train = _pairs(split.train)
    assert train == {(u, i) for u, i, t, _ in rows if t <= 6}
    assert _pairs(split.truth) == {("a", "i4")}  # (c, i1): unknown user; (a, i9): unknown item
    assert _pairs(split.seen) == {(u, i) for u, i in train if u == "a"}


@pytest.mark.parametrize("protocol,key", [("stratified-item", 1), ("stratified-user", 0)])
def test_stratified_keeps_three_quarters_of_each_group(spark, protocol, key):
    rows = [(f"u{u}", f"i{i}", 100 * u + i, "v")
            for u in range(12) for i in range(20) if (u * 7 + i * 3) % 5 != 0]
    split = splits.split_interactions(_df(spark, rows), protocol, EvaluateSettings(seed=3))
    train = _pairs(split.train)
    sizes = Counter((u, i)[key] for u, i, _, _ in rows)
    kept = Counter(pair[key] for pair in train)
    assert kept == {g: round(0.75 * n) for g, n in sizes.items()}  # Python's round: half to even
    test = {(u, i) for u, i, _, _ in rows} - train
    assert _pairs(split.truth) == test  # every test pair is relevant; none is seen
    again = splits.split_interactions(_df(spark, rows, 4), protocol, EvaluateSettings(seed=3))
    assert _pairs(again.train) == train
    shuffled = splits.split_interactions(_df(spark, rows), protocol, EvaluateSettings(seed=4))
    assert _pairs(shuffled.train) != train


def test_truth_keeps_training_event_types_and_drops_seen_items(spark):
    rows = [("u", "a", 1, "buy"), ("u", "b", 2, "buy"), ("u", "a", 3, "buy"),
            ("u", "c", 4, "view"), ("w", "a", 1, "buy"), ("w", "b", 9, "BUY")]
    split = splits.split_interactions(
        _df(spark, rows), "temporal", EvaluateSettings(test_fraction=0.5),
        PrepareSettings(event_types=("buy",)))
    # Test part: (u, a, 3) re-interaction with a seen item, (u, c) a view, (w, b) a buy.
    assert _pairs(split.truth) == {("w", "b")}


def test_too_few_users_names_the_counts(spark):
    rows = _grid(4, 3)
    with pytest.raises(DataError, match=r"found 4 such users, expected at least 10"):
        splits.split_interactions(_df(spark, rows), "personalize", EvaluateSettings())
    single = [("u", "a", 1, "v"), ("u", "b", 1, "v")]  # one timestamp: nothing after the cut
    with pytest.raises(DataError, match=r"temporal protocol left no user to evaluate: 1 users"):
        splits.split_interactions(_df(spark, single), "temporal", EvaluateSettings())


def test_unknown_protocol_and_bad_fraction_are_usage_errors(spark):
    df = _df(spark, _grid(2, 2))
    with pytest.raises(UsageError, match=r"unknown evaluation protocol 'random'.*personalize"):
        splits.split_interactions(df, "random", EvaluateSettings())
    with pytest.raises(UsageError, match=r"evaluate.test_fraction = 1.5"):
        splits.split_interactions(df, "temporal", EvaluateSettings(test_fraction=1.5))
