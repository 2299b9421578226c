"""Synthetic Personalize datasets: determinism, sizes, ranges, distributions, CSV output, CLI."""

from __future__ import annotations

import calendar
import datetime as dt
import json
import logging
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from batchrec import columns as C
from batchrec.datasets import generate as G
from batchrec.datasets.schema import load_personalize_schema
from batchrec.errors import JobError, UsageError

N_USERS, N_ITEMS, N_INTERACTIONS, CLUSTERS, SEED = 200, 50, 5000, 5, 42
SPAN_DAYS = 90
END_DATE = dt.date(2024, 3, 31)
# Independent of the module: 2024-04-01T00:00:00Z minus one second, and 90 days before it.
END_TS = calendar.timegm((2024, 4, 1, 0, 0, 0)) - 1
START_TS = END_TS + 1 - SPAN_DAYS * 86_400
INTERACTION_COLUMNS = [C.USER_ID, C.ITEM_ID, C.EVENT_TYPE, C.EVENT_VALUE, C.TIMESTAMP]
ITEM_COLUMNS = [C.ITEM_ID, "CATEGORY", "PRICE", C.CREATION_TIMESTAMP]
USER_COLUMNS = [C.USER_ID, "AGE", "TIER"]
SMALL_INTERACTIONS = 300


def _generate(spark, seed=SEED, **kwargs):
    args = dict(n_users=N_USERS, n_items=N_ITEMS, n_interactions=N_INTERACTIONS, seed=seed,
                span_days=SPAN_DAYS, clusters=CLUSTERS, end_date=END_DATE)
    args.update(kwargs)
    return G.generate_datasets(spark, **args)


@pytest.fixture(scope="module")
def rows(spark):
    """The default small dataset, collected (5,000 rows at most)."""
    data = _generate(spark)
    return {kind: [tuple(r) for r in df.collect()] for kind, df in data.items()}


def _position(public_id: str, prefix: str, n: int, kind: str) -> int:
    """Hidden position of an ID by inverting the documented affine map with a modular inverse."""
    assert re.fullmatch(prefix + r"\d+", public_id), public_id
    a, b = G.id_permutation(n, SEED, kind)
    return (pow(a, -1, n) * (int(public_id[len(prefix):]) - b)) % n


def _item_law(x0, n):
    """P(floor(n * x) = k) for the documented Zipf-Mandelbrot law, k = 0..n-1."""
    edges = np.arange(n + 1) / n
    cdf = np.log((edges + x0) / x0) / np.log((1 + x0) / x0)
    return np.diff(cdf)


def _user_law(x0, n):
    edges = np.arange(n + 1) / n
    return np.diff((1 + x0) * edges / (edges + x0))


def _expected_item_probabilities(p_in=G.IN_CLUSTER_PROBABILITY):
    users = _user_law(G.USER_ACTIVITY_X0, N_USERS)
    user_cluster = np.array([users[np.arange(N_USERS) % CLUSTERS == c].sum() for c in range(CLUSTERS)])
    probs = (1 - p_in) * _item_law(G.ITEM_POPULARITY_X0, N_ITEMS)
    for c in range(CLUSTERS):
        members = np.arange(c, N_ITEMS, CLUSTERS)
        probs[members] += p_in * user_cluster[c] * _item_law(G.ITEM_POPULARITY_X0, len(members))
    return probs, user_cluster


def test_same_seed_same_rows_other_seed_other_rows(spark, rows):
    again = [tuple(r) for r in _generate(spark)["interactions"].collect()]
    assert again == rows["interactions"]
    other = _generate(spark, seed=SEED + 1)
    assert [tuple(r) for r in other["interactions"].collect()] != rows["interactions"]
    assert [tuple(r) for r in other["items"].collect()] != rows["items"]


def test_counts_columns_and_id_ranges(spark, rows):
    data = _generate(spark)
    assert data["interactions"].columns == INTERACTION_COLUMNS
    assert data["items"].columns == ITEM_COLUMNS
    assert data["users"].columns == USER_COLUMNS
    sizes = (len(rows["interactions"]), len(rows["items"]), len(rows["users"]))
    assert sizes == (N_INTERACTIONS, N_ITEMS, N_USERS)
    # The items and users datasets hold every ID of the range exactly once.
    assert sorted(r[0] for r in rows["items"]) == sorted(f"i{n}" for n in range(N_ITEMS))
    assert sorted(r[0] for r in rows["users"]) == sorted(f"u{n}" for n in range(N_USERS))
    for user, item, *_ in rows["interactions"]:
        assert re.fullmatch(r"u\d+", user) and int(user[1:]) < N_USERS, user
        assert re.fullmatch(r"i\d+", item) and int(item[1:]) < N_ITEMS, item
    assert len(set(rows["interactions"])) == N_INTERACTIONS, "exact duplicate rows"


def test_timestamps_within_span_and_after_item_creation(rows):
    created = {r[0]: r[3] for r in rows["items"]}
    stamps = [r[4] for r in rows["interactions"]]
    assert START_TS <= min(stamps) and max(stamps) <= END_TS
    assert max(stamps) - min(stamps) > 0.9 * SPAN_DAYS * 86_400
    assert all(ts >= created[item] for _, item, _, _, ts in rows["interactions"])
    young = [item for item, ts in created.items() if ts > END_TS - 7 * 86_400]
    assert 1 <= len(young) < N_ITEMS / 3
    assert all(ts <= END_TS for ts in created.values())


def test_item_popularity_is_heavy_tailed_as_designed(rows):
    counts = Counter(r[1] for r in rows["interactions"])
    assert len(counts) == N_ITEMS, "every item should appear at this size"
    top = N_ITEMS // 10
    observed = sum(sorted(counts.values(), reverse=True)[:top]) / N_INTERACTIONS
    probs, _ = _expected_item_probabilities()
    expected = np.sort(probs)[::-1][:top].sum()
    assert expected > 0.4
    assert observed == pytest.approx(expected, abs=0.04)
    # The most popular positions are the most popular items.
    positions = Counter(_position(i, "i", N_ITEMS, "items") for i in counts.elements())
    assert {p for p, _ in positions.most_common(top)} == set(np.argsort(-probs)[:top].tolist())


def test_user_activity_is_heavy_tailed(rows):
    counts = np.array(sorted(Counter(r[0] for r in rows["interactions"]).values(), reverse=True))
    mean = N_INTERACTIONS / N_USERS
    assert (counts == 1).sum() >= 3, "users with a single interaction"
    assert np.median(counts) < mean / 2
    top_share = counts[: N_USERS // 10].sum() / N_INTERACTIONS
    x = 0.1  # documented CDF (1 + x0) x / (x + x0) at the top tenth
    expected = (1 + G.USER_ACTIVITY_X0) * x / (x + G.USER_ACTIVITY_X0)
    assert top_share == pytest.approx(expected, abs=0.05)
    assert len(counts) > 0.9 * N_USERS


def test_interactions_follow_hidden_clusters(rows):
    probs, user_cluster = _expected_item_probabilities()
    global_cluster = np.array([_item_law(G.ITEM_POPULARITY_X0, N_ITEMS)[c::CLUSTERS].sum()
                               for c in range(CLUSTERS)])
    p_in = G.IN_CLUSTER_PROBABILITY
    expected = p_in + (1 - p_in) * float(user_cluster @ global_cluster)
    in_taste = []
    for user, item, _, value, _ in rows["interactions"]:
        same = (_position(user, "u", N_USERS, "users") % CLUSTERS
                == _position(item, "i", N_ITEMS, "items") % CLUSTERS)
        in_taste.append(same)
        assert value in ((3.0, 4.0, 5.0) if same else (1.0, 2.0, 3.0)), (user, item, value)
    assert np.mean(in_taste) == pytest.approx(expected, abs=0.025)


def test_in_cluster_probability_zero_removes_the_structure(spark):
    df = _generate(spark, in_cluster_probability=0.0)["interactions"]
    values = Counter(r[0] for r in df.select(C.EVENT_VALUE).collect())
    # Only global picks remain; they land in the user's cluster by chance, and 2 of 3 in-taste
    # values are above 3.
    _, user_cluster = _expected_item_probabilities(p_in=0.0)
    global_cluster = np.array([_item_law(G.ITEM_POPULARITY_X0, N_ITEMS)[c::CLUSTERS].sum()
                               for c in range(CLUSTERS)])
    high = sum(n for v, n in values.items() if v > 3) / N_INTERACTIONS
    assert high == pytest.approx(2 / 3 * float(user_cluster @ global_cluster), abs=0.02)
    assert high < 0.3


def test_event_type_mix(rows):
    counts = Counter(r[2] for r in rows["interactions"])
    assert set(counts) == set(G.EVENT_TYPES)
    for name, share in zip(G.EVENT_TYPES, (0.60, 0.25, 0.10, 0.05)):
        assert counts[name] / N_INTERACTIONS == pytest.approx(share, abs=0.025), name


def test_item_and_user_metadata(rows):
    primary_is_cluster = 0
    for item, category, price, _ in rows["items"]:
        values = category.split("|")
        assert 1 <= len(values) <= 3 and len(set(values)) == len(values), category
        assert all(re.fullmatch(r"c\d+", v) and int(v[1:]) < 2 * CLUSTERS for v in values), category
        primary_is_cluster += values[0] == f"c{_position(item, 'i', N_ITEMS, 'items') % CLUSTERS}"
        assert price > 0
    assert primary_is_cluster / N_ITEMS > 0.8
    assert len({r[1].count("|") for r in rows["items"]}) == 3
    assert all(isinstance(age, int) and 20 <= age < 75 for _, age, _ in rows["users"])
    tiers = Counter(t for *_, t in rows["users"])
    assert set(tiers) == set(G.TIERS) and tiers["bronze"] > tiers["gold"]


@pytest.mark.parametrize("field, value", [("n_users", 0), ("n_items", -1), ("n_interactions", 0),
                                          ("span_days", 0), ("clusters", 0)])
def test_out_of_range_arguments_are_usage_errors(spark, field, value):
    expected = rf"{field}={value} is out of range; expected an integer from 1"
    with pytest.raises(UsageError, match=expected):
        _generate(spark, **{field: value})


def test_in_cluster_probability_must_be_a_probability(spark):
    with pytest.raises(UsageError, match=r"in_cluster_probability=1.5; expected 0 to 1"):
        _generate(spark, in_cluster_probability=1.5)
    with pytest.raises(UsageError, match=r"seed=18446744073709551616; expected a 64-bit signed integer"):
        _generate(spark, seed=2**64)


def _small(spark, seed=SEED):
    return _generate(spark, seed=seed, n_users=30, n_items=10, n_interactions=SMALL_INTERACTIONS)


def _part_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.glob("part-*.csv")))


def test_write_csv_readable_with_header_and_schemas(spark, tmp_path):
    out = tmp_path / "data"
    written = G.write_datasets(_small(spark), str(out))
    for kind, columns, count in (("interactions", INTERACTION_COLUMNS, SMALL_INTERACTIONS),
                                 ("items", ITEM_COLUMNS, 10), ("users", USER_COLUMNS, 30)):
        assert written[kind] == str(out / kind)
        first = sorted((out / kind).glob("part-*.csv"))[0].read_text().splitlines()[0]
        assert first == ",".join(columns)
        df = spark.read.option("header", True).csv(str(out / kind))
        assert df.columns == columns and df.count() == count
        schema = json.loads((out / "schemas" / f"{kind}.json").read_text())
        assert schema["name"] == kind.capitalize()
        assert schema["namespace"] == "com.amazonaws.personalize.schema"
        assert [f["name"] for f in schema["fields"]] == columns
        parsed = load_personalize_schema(out / "schemas" / f"{kind}.json")
        assert (parsed.kind, parsed.names) == (kind, tuple(columns))
    assert sorted(p.name for p in out.iterdir()) == ["interactions", "items", "schemas", "users"]
    line = (out / "interactions").glob("part-*.csv").__next__().read_text().splitlines()[1]
    assert re.fullmatch(r"u\d+,i\d+,(view|click|cart|purchase),[1-5]\.0,\d{10}", line), line


def test_rerun_replaces_output_and_is_byte_identical(spark, tmp_path):
    out = tmp_path / "data"
    def write(seed):
        G.write_datasets({"interactions": _small(spark, seed)["interactions"]}, str(out))
        return _part_bytes(out / "interactions")

    first = write(SEED)
    assert write(7) != first
    assert write(SEED) == first
    assert sorted(p.name for p in out.iterdir()) == ["interactions", "schemas"]


def test_write_through_hadoop_file_system_uri(spark, tmp_path):
    out = tmp_path / "hadoop"
    small = _small(spark)
    G.write_datasets(small, out.as_uri())
    first = _part_bytes(out / "interactions")
    # A rerun replaces through FileSystem.rename.
    G.write_datasets({"interactions": _small(spark, seed=7)["interactions"]}, out.as_uri())
    assert _part_bytes(out / "interactions") != first
    df = spark.read.option("header", True).csv(out.as_uri() + "/interactions")
    assert df.count() == SMALL_INTERACTIONS
    assert json.loads((out / "schemas" / "users.json").read_text())["name"] == "Users"
    leftovers = [p.name for p in out.rglob("*") if "tmp" in p.name]
    assert leftovers == []


def test_unwritable_output_is_a_job_error_naming_the_path(spark, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    with pytest.raises(JobError, match=rf"could not write the interactions dataset under {blocker}"):
        G.write_datasets({"interactions": _small(spark)["interactions"]}, str(blocker))
    assert blocker.read_text() == "a file where the output folder should be"


@pytest.fixture
def restore_logging():
    """The CLI configures the batchrec logger; put it back for the other tests."""
    logger = logging.getLogger("batchrec")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


def test_cli_generate_writes_dataset(spark, tmp_path, capsys, restore_logging):
    from batchrec.cli import main

    out = tmp_path / "cli"
    code = main(["generate", "--num-users", "30", "--num-items", "10", "--num-interactions", "300", "--output",
                 str(out), "--seed", "3", "--clusters", "3", "--run-date", "2024-03-31",
                 "--master", "local[2]"])
    assert code == 0
    assert str(out / "interactions") in capsys.readouterr().out
    df = spark.read.option("header", True).csv(str(out / "interactions"))
    assert df.count() == 300
    assert int(df.agg({C.TIMESTAMP: "max"}).first()[0]) <= END_TS


def test_cli_rejects_zero_users(capsys, restore_logging):
    from batchrec.cli import main

    code = main(["generate", "--num-users", "0", "--num-items", "10", "--num-interactions", "300",
                 "--output", "unused"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--num-users" in err and "0 is not in the range x>=1" in err
