"""Blocked top-k against a numpy brute-force reference (ties, exclusions, blocks, bonus)."""

from __future__ import annotations

import numpy as np
import pytest

from batchrec.columns import ITEM_ID, ITEM_IDX, USER_ID, USER_IDX
from batchrec.errors import JobError
from batchrec.scoring import topk

N_USERS, N_ITEMS, RANK = 23, 17, 3


def brute_force(users, items, item_ids, k, seen=None, bonus=None):
    """{user_idx: [(item_id, score), ...]} by score desc then item ID asc, seen items skipped."""
    out = {}
    for u, vec in users.items():
        rows = []
        for i, (idx, ivec) in enumerate(items.items()):
            if seen and idx in seen.get(u, ()):
                continue
            score = float(np.dot(np.float32(vec), np.float32(ivec))) + (bonus or {}).get(idx, 0.0)
            rows.append((-score, item_ids[idx], score))
        rows.sort()
        out[u] = [(item, score) for _, item, score in rows[:k]]
    return out


@pytest.fixture(scope="module")
def factors():
    """Small integer factors: products are exact in float32 and ties are frequent."""
    rng = np.random.default_rng(7)
    users = {u: rng.integers(-2, 3, RANK).astype(float).tolist() for u in range(N_USERS)}
    items = {i: rng.integers(-2, 3, RANK).astype(float).tolist() for i in range(N_ITEMS)}
    # IDs deliberately not in item_idx order, so the tie order must come from ITEM_ID.
    item_ids = {i: f"item-{(i * 7) % N_ITEMS:02d}" for i in range(N_ITEMS)}
    seen = {u: set(rng.choice(N_ITEMS, size=int(rng.integers(0, 6)), replace=False).tolist())
            for u in range(N_USERS)}
    seen[0] = set(range(N_ITEMS - 2))  # only two unseen items left
    seen[1] = set(range(N_ITEMS))  # nothing left
    return users, items, item_ids, seen


def frames(spark, users, items, item_ids, seen):
    user_df = spark.createDataFrame([(u, v) for u, v in users.items()],
                                    f"{USER_IDX} int, features array<float>")
    item_df = spark.createDataFrame([(i, v, item_ids[i]) for i, v in items.items()],
                                    f"{ITEM_IDX} int, features array<float>, {ITEM_ID} string")
    seen_df = spark.createDataFrame([(u, i) for u, s in seen.items() for i in s],
                                    f"{USER_IDX} int, {ITEM_IDX} int")
    return user_df, item_df, seen_df


def collect(df, with_ids=True):
    got = {}
    for row in df.orderBy(USER_IDX, topk.RANK).collect():
        got.setdefault(row[USER_IDX], []).append(
            (row[ITEM_ID] if with_ids else row[ITEM_IDX], row[topk.SCORE], row[topk.RANK]))
    return got


@pytest.mark.parametrize("k", [1, 5, N_ITEMS, N_ITEMS + 10])
def test_top_k_matches_brute_force_with_ties_and_exclusions(spark, factors, k):
    users, items, item_ids, seen = factors
    user_df, item_df, seen_df = frames(spark, users, items, item_ids, seen)
    result = topk.top_k_by_factors(user_df, item_df, k, exclude=seen_df, users_per_batch=4)
    got = collect(result)
    expected = brute_force(users, items, item_ids, k, seen)
    for u in users:
        rows = got.get(u, [])
        assert [(item, score) for item, score, _ in rows] == expected[u], f"user {u}"
        assert [r for _, _, r in rows] == list(range(1, len(rows) + 1))
    assert 1 not in got  # every item seen: no row at all
    assert len(got[0]) == min(k, 2)


def test_without_item_ids_ties_go_to_the_lower_item_idx(spark, factors):
    users, items, item_ids, _ = factors
    user_df, item_df, _ = frames(spark, users, items, item_ids, {})
    got = collect(topk.top_k_by_factors(user_df, item_df.drop(ITEM_ID), 6), with_ids=False)
    expected = brute_force(users, items, {i: f"{i:03d}" for i in items}, 6)
    for u in users:
        assert [(f"{i:03d}", s) for i, s, _ in got[u]] == expected[u]


def test_random_float_factors_agree_with_numpy_and_are_deterministic(spark):
    rng = np.random.default_rng(11)
    u = rng.normal(size=(40, 8)).astype(np.float32)
    v = rng.normal(size=(60, 8)).astype(np.float32)
    user_df = spark.createDataFrame([(i, r.tolist()) for i, r in enumerate(u)], "user_idx int, features array<float>")
    item_df = spark.createDataFrame([(i, r.tolist(), f"i{i:03d}") for i, r in enumerate(v)],
                                    "item_idx int, features array<float>, ITEM_ID string")
    first = topk.top_k_by_factors(user_df, item_df, 10, users_per_batch=16).orderBy(USER_IDX, "rank").collect()
    second = topk.top_k_by_factors(user_df, item_df, 10, users_per_batch=5).orderBy(USER_IDX, "rank").collect()
    assert first == second
    scores = u @ v.T
    for row in first:
        assert row[ITEM_IDX] == int(np.argsort(-scores[row[USER_IDX]], kind="stable")[row["rank"] - 1])
        assert row["score"] == pytest.approx(float(scores[row[USER_IDX], row[ITEM_IDX]]), rel=1e-5)


def test_select_top_k_resolves_ties_by_position():
    neg = np.array([[0.0, -1.0, -1.0, -1.0, 2.0], [np.inf, -3.0, np.inf, -3.0, -3.0]])
    pos, vals = topk.select_top_k(neg, 2)
    assert pos.tolist() == [[1, 2], [1, 3]]
    assert vals.tolist() == [[-1.0, -1.0], [-3.0, -3.0]]
    pos, vals = topk.select_top_k(neg, 4)
    assert pos.tolist() == [[1, 2, 3, 0], [1, 3, 4, 0]]
    assert np.isinf(vals[1, 3])


def test_bonus_reorders_and_flags_items_that_entered_because_of_it(spark):
    user_df = spark.createDataFrame([(0, [1.0, 0.0])], "user_idx int, features array<float>")
    item_df = spark.createDataFrame(
        [(0, [3.0, 0.0], "a"), (1, [2.0, 0.0], "b"), (2, [1.0, 0.0], "c"), (3, [0.5, 0.0], "d")],
        "item_idx int, features array<float>, ITEM_ID string")
    bonus = spark.createDataFrame([(3, 2.0), (0, 1.0)], "item_idx int, bonus double")
    rows = topk.top_k_by_factors(user_df, item_df, 2, item_bonus=bonus).orderBy("rank").collect()
    # a: 3 + 1 = 4 (was in the top 2 anyway); d: 0.5 + 2 = 2.5 (entered thanks to the bonus).
    assert [(r[ITEM_ID], r["score"], r[topk.EXPLORED]) for r in rows] == [("a", 4.0, False), ("d", 2.5, True)]


def test_top_k_from_list_skips_seen_and_continues_ranks(spark):
    users = spark.createDataFrame(
        [("u1", 0, 3, ["p2"]), ("u2", 4, 2, []), ("u3", 0, 5, ["p1", "p2", "p3", "zz"])],
        f"{USER_ID} string, start int, need int, seen_ids array<string>")
    ranked = [("p1", "trending"), ("p2", "popular"), ("p3", "popular"), ("p4", "popular")]
    rows = topk.top_k_from_list(users, ranked, users_per_batch=2).orderBy(USER_ID, "rank").collect()
    assert [tuple(r) for r in rows] == [
        ("u1", 1, "p1", "trending"), ("u1", 2, "p3", "popular"), ("u1", 3, "p4", "popular"),
        ("u2", 5, "p1", "trending"), ("u2", 6, "p2", "popular"),
        ("u3", 1, "p4", "popular"),
    ]


def test_item_factors_of_different_lengths_are_a_job_error(spark):
    item_df = spark.createDataFrame([(0, [1.0, 2.0]), (1, [1.0])], "item_idx int, features array<float>")
    with pytest.raises(JobError, match=r"item_factors: vectors of different lengths \[1, 2\]"):
        topk.collect_item_matrix(item_df)
