"""User segments (item-affinity, item-attribute-affinity) against a numpy brute force, and the
item-attribute query parser."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from batchrec.columns import ITEM_ID, ITEM_IDX, USER_ID, USER_IDX
from batchrec.errors import UsageError
from batchrec.scoring import segments as S
from batchrec.scoring.attribute_query import (SEGMENT_ID, AttributeQueryError, UnknownAttributeError,
                                              attribute_segment_id, matching_items, parse_attribute_query)

N_USERS, N_ITEMS, RANK = 23, 9, 3
ONE_PASS, THRESHOLD = 10 ** 8, 0  # max_candidates choosing each plan for these sizes


# --- fixtures and the brute-force reference ------------------------------------------------------

@pytest.fixture(scope="module")
def model():
    """Small integer factors (exact float32 products, many ties); IDs not in index order."""
    rng = np.random.default_rng(11)
    users = {u: rng.integers(-2, 3, RANK).astype(float).tolist() for u in range(N_USERS)}
    items = {i: rng.integers(-2, 3, RANK).astype(float).tolist() for i in range(N_ITEMS)}
    user_ids = {u: f"u{(u * 5) % N_USERS:02d}" for u in range(N_USERS)}
    item_ids = {i: f"m{i}" for i in range(N_ITEMS)}
    return users, items, user_ids, item_ids


def artifacts_of(spark, model, partitions=3):
    users, items, user_ids, item_ids = model
    return {
        "user_factors": spark.createDataFrame([(u, v) for u, v in users.items()],
                                              f"{USER_IDX} int, features array<float>").repartition(partitions),
        "item_factors": spark.createDataFrame([(i, v) for i, v in items.items()],
                                              f"{ITEM_IDX} int, features array<float>"),
        "user_map": spark.createDataFrame([(s, u) for u, s in user_ids.items()], f"{USER_ID} string, {USER_IDX} int"),
        "item_map": spark.createDataFrame([(s, i) for i, s in item_ids.items()], f"{ITEM_ID} string, {ITEM_IDX} int"),
    }


@pytest.fixture(scope="module")
def artifacts(spark, model):
    """Cached once: the users' repartition would otherwise be a shuffle in every job."""
    frames = {name: frame.persist() for name, frame in artifacts_of(spark, model).items()}
    for frame in frames.values():
        frame.count()
    yield frames
    for frame in frames.values():
        frame.unpersist()


def brute_force(model, segment_items, n, aggregation="mean", excluded=(), allowed=None):
    """{segment_id: [(USER_ID, score), ...]}: score desc, then USER_ID asc; (user, segment) pairs in
    ``excluded`` and, when ``allowed`` is given, pairs not in it are left out."""
    users, items, user_ids, item_ids = model
    idx_of = {v: k for k, v in item_ids.items()}
    out = {}
    for seg, members in segment_items.items():
        vecs = np.array([items[idx_of[m]] for m in members if m in idx_of], dtype=np.float64)
        if not len(vecs):
            continue
        rows = []
        for u, vec in users.items():
            uid = user_ids[u]
            if (uid, seg) in excluded or (allowed is not None and (uid, seg) not in allowed):
                continue
            per_item = vecs @ np.array(vec)
            score = per_item.max() if aggregation == "max" else float(np.array(vec) @ vecs.mean(axis=0))
            rows.append((-float(score), uid))
        rows.sort()
        out[seg] = [(uid, -neg) for neg, uid in rows[:n]]
    return out


def collect(df):
    assert df.columns == list(S.OUTPUT_COLUMNS)
    got = {}
    for row in df.orderBy(SEGMENT_ID, S.RANK).collect():
        got.setdefault(row[SEGMENT_ID], []).append((row[USER_ID], row[S.SCORE], row[S.RANK]))
    for rows in got.values():
        assert [r for _, _, r in rows] == list(range(1, len(rows) + 1))
    return {seg: [(u, s) for u, s, _ in rows] for seg, rows in got.items()}


def queries_df(spark, pairs):
    return spark.createDataFrame(pairs, f"{SEGMENT_ID} string, {ITEM_ID} string")


# --- item-affinity -------------------------------------------------------------------------------

@pytest.mark.parametrize("n, plan", [(1, ONE_PASS), (4, ONE_PASS), (1, THRESHOLD), (4, THRESHOLD)],
                         ids=["1-one-pass", "4-one-pass", "1-threshold", "4-threshold"])
def test_item_affinity_matches_brute_force(spark, model, artifacts, n, plan):
    queries = spark.createDataFrame([("m0",), ("m3",), ("m7",)], f"{ITEM_ID} string")
    got = collect(S.item_affinity(artifacts, queries, S.segment_size(n), users_per_batch=4,
                                  max_candidates=plan))
    assert got == brute_force(model, {"m0": ["m0"], "m3": ["m3"], "m7": ["m7"]}, n)


@pytest.mark.parametrize("plan", [ONE_PASS, THRESHOLD], ids=["one-pass", "threshold"])
def test_very_large_n_returns_every_user_once(spark, model, artifacts, plan):
    got = collect(S.item_affinity(artifacts, queries_df(spark, [("s1", "m1"), ("s2", "m2")]),
                                  S.segment_size(S.MAX_NUM_RESULTS), max_candidates=plan))
    assert set(got) == {"s1", "s2"}
    for seg, rows in got.items():
        assert sorted(u for u, _ in rows) == sorted(model[2].values())  # every user, once
    assert got == brute_force(model, {"s1": ["m1"], "s2": ["m2"]}, N_USERS)


def test_all_items_when_no_queries(spark, model, artifacts):
    got = collect(S.item_affinity(artifacts, None, S.segment_size(2)))
    assert got == brute_force(model, {f"m{i}": [f"m{i}"] for i in range(N_ITEMS)}, 2)


def test_chunks_of_segments_and_compaction_in_one_pass(spark, model, artifacts):
    """max_candidates=6 with n=2: three segments per scan; compaction after every block."""
    assert S.plan_scans(N_ITEMS, 2, 6) == (S.PLAN_ONE_PASS, 3)
    queries = S.collect_queries(artifacts, queries_df(spark, [(f"m{i}", f"m{i}") for i in range(N_ITEMS)]))
    candidates = S.segment_candidates(S.model_users(artifacts), queries, 2, users_per_batch=3,
                                      max_candidates=6, min_compact_rows=1)
    assert candidates.count() <= 3 * 2 * N_ITEMS + 3 * N_ITEMS  # partitions x n per segment, + ties
    from pyspark.sql import Window, functions as F
    order = Window.partitionBy(SEGMENT_ID).orderBy(F.desc(S.SCORE), USER_ID)
    top = candidates.withColumn(S.RANK, F.row_number().over(order)).where(F.col(S.RANK) <= 2)
    got = collect(top.select(*S.OUTPUT_COLUMNS))
    assert got == brute_force(model, {f"m{i}": [f"m{i}"] for i in range(N_ITEMS)}, 2)


def test_fraction_sizes(spark, model, artifacts):
    queries = queries_df(spark, [("s", "m4")])
    quarter = collect(S.item_affinity(artifacts, queries, S.segment_size(fraction=0.25)))
    assert len(quarter["s"]) == 6  # ceil(0.25 * 23)
    assert quarter == brute_force(model, {"s": ["m4"]}, 6)
    everyone = collect(S.item_affinity(artifacts, queries, S.segment_size(fraction=1.0)))
    assert len(everyone["s"]) == N_USERS


def test_plan_choice():
    assert S.plan_scans(500, 1000) == (S.PLAN_ONE_PASS, 1)
    assert S.plan_scans(500, 100_000) == (S.PLAN_THRESHOLD, 4)  # one pass would scan 50 times
    assert S.plan_scans(1, 1_000_000) == (S.PLAN_ONE_PASS, 1)
    assert S.plan_scans(1, S.MAX_NUM_RESULTS) == (S.PLAN_THRESHOLD, 4)
    assert S.plan_scans(1000, 10, max_candidates=0) == (S.PLAN_THRESHOLD, 8)
    assert S.plan_scans(9, 2, max_candidates=6) == (S.PLAN_ONE_PASS, 3)
    assert S.plan_scans(9, 2, max_candidates=4) == (S.PLAN_THRESHOLD, 4)


def test_fraction_rounding():
    assert S.SegmentSize(None, 0.01).users(100_000) == 1000  # 0.01 * 100000 is 1000.0000000000001
    assert S.SegmentSize(None, 0.5).users(7) == 4
    assert S.SegmentSize(None, 0.001).users(23) == 1  # at least one user
    assert S.SegmentSize(None, 1.0).users(10 ** 9) == S.MAX_NUM_RESULTS


@pytest.mark.parametrize("plan", [ONE_PASS, THRESHOLD], ids=["one-pass", "threshold"])
def test_exclude_interacted_drops_past_interactors_before_the_cut(spark, model, artifacts, plan):
    users, _, user_ids, _ = model
    first = brute_force(model, {"m0": ["m0"], "m5": ["m5"]}, 5)
    # The top 3 users of m0 and the top user of m5 interacted; another user touched an unqueried item.
    seen = [(u, "m0") for u, _ in first["m0"][:3]] + [(first["m5"][0][0], "m5"), ("u01", "m8")]
    exclude = spark.createDataFrame(seen, f"{USER_ID} string, {ITEM_ID} string")
    got = collect(S.item_affinity(artifacts, queries_df(spark, [("m0", "m0"), ("m5", "m5")]),
                                  S.segment_size(5), exclude=exclude, max_candidates=plan))
    excluded = {(u, i) for u, i in seen}
    assert got == brute_force(model, {"m0": ["m0"], "m5": ["m5"]}, 5, excluded=excluded)
    assert len(got["m0"]) == 5  # refilled from below the cut
    assert not {u for u, _ in got["m0"]} & {u for u, _ in first["m0"][:3]}


@pytest.mark.parametrize("plan", [ONE_PASS, THRESHOLD], ids=["one-pass", "threshold"])
def test_a_segment_whose_users_all_interacted_is_empty(spark, model, artifacts, plan):
    """Every user interacted with m0: its segment is empty, even at the largest size; m5 loses the
    one user who interacted with it and keeps everyone else."""
    _, _, user_ids, _ = model
    seen = [(u, "m0") for u in user_ids.values()] + [(user_ids[0], "m5")]
    exclude = spark.createDataFrame(seen, f"{USER_ID} string, {ITEM_ID} string")
    got = collect(S.item_affinity(artifacts, queries_df(spark, [("m0", "m0"), ("m5", "m5")]),
                                  S.segment_size(S.MAX_NUM_RESULTS), exclude=exclude, max_candidates=plan))
    expected = brute_force(model, {"m0": ["m0"], "m5": ["m5"]}, N_USERS, excluded=set(seen))
    assert expected["m0"] == [] and len(expected["m5"]) == N_USERS - 1
    assert got == {"m5": expected["m5"]}


def test_unknown_item_gives_an_empty_segment(spark, model, artifacts):
    segment_items = queries_df(spark, [("known", "m2"), ("unknown", "no-such-item")])
    got = collect(S.affinity_segments(artifacts, segment_items, S.segment_size(3)))
    assert set(got) == {"known"}
    counts = {r[SEGMENT_ID]: r[S.ITEMS] for r in S.segment_item_counts(artifacts, segment_items).collect()}
    assert counts == {"known": 1, "unknown": 0}
    only_unknown = S.affinity_segments(artifacts, queries_df(spark, [("x", "nope")]), S.segment_size(3))
    assert only_unknown.columns == list(S.OUTPUT_COLUMNS) and only_unknown.count() == 0


def test_item_without_factors_is_unknown(spark, model, artifacts):
    arts = dict(artifacts, item_factors=artifacts["item_factors"].where(f"{ITEM_IDX} != 2"))
    segment_items = queries_df(spark, [("s", "m2")])
    assert S.affinity_segments(arts, segment_items).count() == 0
    assert S.segment_item_counts(arts, segment_items).collect()[0][S.ITEMS] == 0


def test_ties_are_broken_by_user_id(spark):
    """Every user has the same vector: the order is USER_ID ascending (not user_idx order)."""
    ids = ["b", "a", "c10", "c2", "Z", "é"]
    arts = {
        "user_factors": spark.createDataFrame([(i, [1.0, -0.0]) for i in range(len(ids))],
                                              f"{USER_IDX} int, features array<float>").repartition(2),
        "user_map": spark.createDataFrame([(s, i) for i, s in enumerate(ids)], f"{USER_ID} string, {USER_IDX} int"),
        "item_factors": spark.createDataFrame([(0, [0.0, 1.0]), (1, [2.0, 0.0])], f"{ITEM_IDX} int, features array<float>"),
        "item_map": spark.createDataFrame([("zero", 0), ("two", 1)], f"{ITEM_ID} string, {ITEM_IDX} int"),
    }
    for plan in (ONE_PASS, THRESHOLD):
        got = collect(S.item_affinity(arts, None, S.segment_size(4), max_candidates=plan))
        # score -0.0 and 0.0 are one value: the order is by USER_ID alone (code point order)
        assert got == {"zero": [("Z", 0.0), ("a", 0.0), ("b", 0.0), ("c10", 0.0)],
                       "two": [("Z", 2.0), ("a", 2.0), ("b", 2.0), ("c10", 2.0)]}, plan


def test_allow_and_deny_masks(spark, model, artifacts):
    segs = {"m1": ["m1"], "m6": ["m6"]}
    queries = queries_df(spark, [("m1", "m1"), ("m6", "m6")])
    every = sorted(model[2].values())
    allow = every[::2]
    got = collect(S.item_affinity(artifacts, queries, S.segment_size(4),
                                  allow_users=spark.createDataFrame([(u,) for u in allow], f"{USER_ID} string"),
                                  deny_users=spark.createDataFrame([(every[0],)], f"{USER_ID} string")))
    pairs = {(u, s) for u in allow if u != every[0] for s in segs}
    assert got == brute_force(model, segs, 4, allowed=pairs)

    # Per segment: m1 only allows three users; m6 denies two; m6 is not restricted by allow_segments.
    per_allow = spark.createDataFrame([("m1", u) for u in every[:3]], f"{SEGMENT_ID} string, {USER_ID} string")
    per_deny = spark.createDataFrame([("m6", u) for u in every[3:5]], f"{SEGMENT_ID} string, {USER_ID} string")
    got = collect(S.item_affinity(artifacts, queries, S.segment_size(4), allow_users=per_allow,
                                  deny_users=per_deny, allow_segments=["m1"]))
    allowed = {(u, "m1") for u in every[:3]} | {(u, "m6") for u in every if u not in every[3:5]}
    assert got == brute_force(model, segs, 4, allowed=allowed)
    assert len(got["m1"]) == 3

    # Without allow_segments a per-segment allow frame restricts every segment: m6 has no row.
    got = collect(S.item_affinity(artifacts, queries, S.segment_size(4), allow_users=per_allow))
    assert set(got) == {"m1"}


def test_bad_mask_frames_and_artifacts(spark, artifacts):
    queries = queries_df(spark, [("m1", "m1")])
    with pytest.raises(UsageError, match="exclude has columns"):
        S.item_affinity(artifacts, queries, exclude=spark.createDataFrame([("u",)], "userId string"))
    with pytest.raises(UsageError, match="deny_users has columns"):
        S.item_affinity(artifacts, queries, deny_users=spark.createDataFrame([("u",)], "id string"))
    with pytest.raises(UsageError, match="expected ITEM_ID"):
        S.item_affinity(artifacts, spark.createDataFrame([("m1",)], "itemId string"))
    with pytest.raises(UsageError, match="segment_items has columns"):
        S.affinity_segments(artifacts, spark.createDataFrame([("m1",)], f"{ITEM_ID} string"))
    with pytest.raises(UsageError, match="aggregation"):
        S.affinity_segments(artifacts, queries, aggregation="median")
    from batchrec.errors import JobError
    with pytest.raises(JobError, match="user-personalization"):
        S.item_affinity({k: v for k, v in artifacts.items() if k != "user_factors"}, queries)


@pytest.mark.parametrize("kwargs, message", [
    ({"num_results": 0}, "from 1 to 5000000"),
    ({"num_results": S.MAX_NUM_RESULTS + 1}, "from 1 to 5000000"),
    ({"num_results": 2.5}, "integer"),
    ({"num_results": True}, "integer"),
    ({"fraction": 0}, r"\(0, 1\]"),
    ({"fraction": 1.5}, r"\(0, 1\]"),
    ({"fraction": "0.1"}, r"\(0, 1\]"),
    ({"num_results": 10, "fraction": 0.1}, "both given"),
])
def test_segment_size_rejects_bad_values(kwargs, message):
    with pytest.raises(UsageError, match=message):
        S.segment_size(**kwargs)


def test_segment_size_defaults():
    assert S.segment_size() == S.SegmentSize(S.DEFAULT_NUM_RESULTS, None)
    assert S.segment_size().users(10) == 25
    assert S.segment_size(fraction=1).fraction == 1.0


# --- the per-partition running top (numpy only) --------------------------------------------------

@pytest.mark.parametrize("n, min_compact", [(1, 1), (3, 1), (3, 10 ** 6), (50, 1)])
def test_running_top_matches_a_full_sort(n, min_compact):
    rng = np.random.default_rng(n)
    q, total = 4, 40
    scores = rng.integers(-3, 4, size=(total, q)).astype(np.float32)
    scores[rng.random((total, q)) < 0.2] = -np.inf  # not eligible
    ids = [f"user{int(x)}" for x in rng.permutation(total)]
    top = S.RunningTop(n, q, min_compact)
    for start in range(0, total, 7):
        top.add(scores[start:start + 7], pa.array(ids[start:start + 7]))
    if min_compact == 1 and 2 * n * q < total * q:  # the buffer bound is reached: floors get used
        assert top.compactions > 1
    segments = pa.array([f"s{j}" for j in range(q)])
    batch = next(top.batches(segments, 0))
    got = {}
    for seg, uid, score in zip(*(batch.column(i).to_pylist() for i in range(3))):
        got.setdefault(seg, []).append((uid, score))
    for j in range(q):
        expected = sorted((-scores[r, j], ids[r]) for r in range(total) if scores[r, j] > -np.inf)[:n]
        assert sorted(got.get(f"s{j}", []), key=lambda x: (-x[1], x[0])) == [(u, -s) for s, u in expected]


def test_sortable_keys_order_like_the_floats():
    values = np.array([-np.inf, -3.5, -1e-30, 0.0, 1e-30, 2.0, 2.0000002, np.inf], dtype=np.float32)
    keys = S.sortable_keys(values)
    assert (np.diff(keys.astype(np.int64)) > 0).all()
    assert [S.key_to_score(k) for k in keys] == values.tolist()


# --- item-attribute-affinity ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def items(spark):
    """Multi-valued genres; m8 has no genre; PRICE numeric as text, as a CSV read leaves it."""
    rows = [("m0", "Comedy|Drama", "10"), ("m1", "Comedy", "12.5"), ("m2", "Drama|Action", "10.0"),
            ("m3", "Action|Comedy|Horror", "3"), ("m4", "Horror", "10"), ("m5", 'Say "Hi"|Comedy', "7"),
            ("m6", "Comedy Drama", "1"), ("m7", "comedy", "2"), ("m8", None, None)]
    return spark.createDataFrame(rows, f"{ITEM_ID} string, GENRES string, PRICE string")


def matches(items, text):
    q = parse_attribute_query(text)
    return sorted(r[ITEM_ID] for r in matching_items(items, [q]).collect())


def test_multi_valued_matching(items):
    assert matches(items, 'ITEMS.genres = "Comedy"') == ["m0", "m1", "m3", "m5"]  # not m6, m7
    assert matches(items, 'ITEMS.GENRES = "Comedy" AND ITEMS.genres = "Drama"') == ["m0"]
    assert matches(items, 'Items.Genres = "Horror" AND items.genres = "Action"') == ["m3"]
    assert matches(items, 'ITEMS.genres = "Com"') == []
    assert matches(items, 'ITEMS.genres = "Say \\"Hi\\""') == ["m5"]
    assert matches(items, 'ITEMS.genres = "Comedy Drama"') == ["m6"]
    assert matches(items, "ITEMS.PRICE = 10") == ["m0", "m2", "m4"]  # numerically: 10.0 too
    assert matches(items, 'ITEMS.PRICE = "10"') == ["m0", "m4"]  # as a string: exact text
    assert matches(items, 'ITEMS.genres = "Comedy" AND ITEMS.PRICE = 10') == ["m0"]


def test_matching_items_of_several_queries_in_one_pass(items):
    qs = [parse_attribute_query(t) for t in ('ITEMS.genres = "Horror"', 'ITEMS.genres = "Nope"',
                                              'ITEMS.genres="Horror"')]
    rows = sorted(tuple(r) for r in matching_items(items, qs).collect())
    assert rows == [(qs[0].segment_id, "m3"), (qs[0].segment_id, "m4")]


def test_unknown_field_is_reported_at_its_position(items):
    q = parse_attribute_query('ITEMS.genres = "Comedy" AND ITEMS.colour = "red"')
    with pytest.raises(UnknownAttributeError) as err:
        matching_items(items, [q])
    assert err.value.position == 34 and "no field COLOUR" in str(err.value)
    assert "GENRES" in str(err.value) and "at character 35" in str(err.value)
    with pytest.raises(UnknownAttributeError):
        matching_items(items.withColumn("_source_file", items[ITEM_ID]),
                       [parse_attribute_query('ITEMS._source_file = "x"')])
    from batchrec.errors import DataError
    with pytest.raises(DataError, match="expected ITEM_ID"):
        matching_items(items.withColumnRenamed(ITEM_ID, "movieId"), [parse_attribute_query('ITEMS.genres = "x"')])


@pytest.mark.parametrize("aggregation, plan", [(S.AGG_MEAN, ONE_PASS), (S.AGG_MAX, ONE_PASS),
                                               (S.AGG_MEAN, THRESHOLD), (S.AGG_MAX, THRESHOLD)],
                         ids=["mean-one-pass", "max-one-pass", "mean-threshold", "max-threshold"])
def test_item_attribute_affinity_matches_brute_force(spark, model, artifacts, items, aggregation, plan):
    texts = ['ITEMS.genres = "Comedy"', 'ITEMS.genres = "Drama"', 'ITEMS.genres = "Action"',
             'ITEMS.genres = "Nothing"']
    members = {"Comedy": ["m0", "m1", "m3", "m5"], "Drama": ["m0", "m2"], "Action": ["m2", "m3"]}
    ids = {attribute_segment_id(f'ITEMS.genres = "{g}"'): m for g, m in members.items()}
    got = collect(S.item_attribute_affinity(artifacts, items, texts, S.segment_size(5),
                                            aggregation=aggregation, max_candidates=plan, users_per_batch=5))
    assert got == brute_force(model, ids, 5, aggregation)  # "Nothing" matches no item: no segment
    assert set(got) == set(ids)


def test_attribute_exclusion_covers_every_selected_item(spark, model, artifacts, items):
    text = 'ITEMS.genres = "Action"'  # m2, m3
    seg = attribute_segment_id(text)
    exclude = spark.createDataFrame([("u00", "m2"), ("u01", "m3"), ("u02", "m4")], f"{USER_ID} string, {ITEM_ID} string")
    got = collect(S.item_attribute_affinity(artifacts, items, [text], S.segment_size(N_USERS), exclude=exclude))
    assert sorted(u for u, _ in got[seg]) == sorted(set(model[2].values()) - {"u00", "u01"})
    assert got == brute_force(model, {seg: ["m2", "m3"]}, N_USERS, excluded={("u00", seg), ("u01", seg)})


# --- the query parser ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, position, message", [
    ("", 0, "the query is empty"),
    ("   ", 3, "the query is empty"),
    ('USERS.genres = "x"', 0, "expected the dataset ITEMS"),
    ('ITEMS genres = "x"', 5, "expected '.'"),
    ('ITEMS. = "x"', 7, "expected a field name"),
    ('ITEMS.genres "x"', 13, "expected '=' after ITEMS.genres"),
    ('ITEMS.genres != "x"', 13, "'!=' is not supported"),
    ('ITEMS.price > 3', 12, "'>' is not supported"),
    ('ITEMS.genres IN ("x")', 13, "IN is not supported"),
    ('ITEMS.genres = Comedy', 15, "expected a value in double quotes"),
    ("ITEMS.genres = 'Comedy'", 15, "double quotes"),
    ('ITEMS.genres = "Comedy', 15, "unterminated value"),
    ('ITEMS.genres = "Com\\', 19, "backslash ends the query"),
    ('ITEMS.genres = ""', 15, "is empty"),
    ('ITEMS.genres = "a" OR ITEMS.genres = "b"', 19, "only AND"),
    ('ITEMS.genres = "a" AND', 22, "after AND"),
    ('ITEMS.genres = "a" ITEMS.genres = "b"', 19, "expected AND or the end"),
    ('ITEMS.genres = "a" AND ITEMS.genres = ', 38, "found the end of the query"),
    ("ITEMS.price = 1e999", 14, "out of range"),
    ('ITEMS.genres = 10x', 17, "expected AND or the end"),
])
def test_parse_errors_carry_positions(text, position, message):
    with pytest.raises(AttributeQueryError) as err:
        parse_attribute_query(text)
    assert err.value.position == position, str(err.value)
    assert message in str(err.value)
    assert f"at character {position + 1}" in str(err.value) and repr(text) in str(err.value)
    assert isinstance(err.value, UsageError) and err.value.exit_code == 2


def test_parse_and_normalize():
    q = parse_attribute_query('ITEMS.genres = "Comedy" AND ITEMS.genres = "Action"')
    assert [(c.field, c.value, c.position) for c in q.conditions] == [("GENRES", "Comedy", 6),
                                                                        ("GENRES", "Action", 34)]
    assert q.normalized == 'ITEMS.GENRES = "Action" AND ITEMS.GENRES = "Comedy"'
    assert q.fields == ("GENRES",)
    escaped = parse_attribute_query(r'ITEMS.t = "a \"b\" c\\d \x"')
    assert escaped.conditions[0].value == 'a "b" c\\d x'
    assert parse_attribute_query(escaped.normalized).conditions == tuple(
        c.__class__(c.field, c.value, 6) for c in escaped.conditions)  # normalized text parses back
    number = parse_attribute_query("ITEMS.PRICE = -2.50")
    assert number.conditions[0].value == -2.5 and number.conditions[0].numeric


def test_segment_id_is_stable_across_spelling():
    base = attribute_segment_id('ITEMS.genres = "Comedy" AND ITEMS.genres = "Action"')
    assert base.startswith("attributes-") and len(base) == len("attributes-") + 16
    same = ['items.GENRES="Action" and Items.genres = "Comedy"',
            '  ITEMS.genres = "Comedy"  AND ITEMS.genres = "Action" AND ITEMS.genres = "Comedy" ']
    assert all(attribute_segment_id(t) == base for t in same)
    assert attribute_segment_id('ITEMS.genres = "comedy" AND ITEMS.genres = "Action"') != base
    assert attribute_segment_id('ITEMS.genres = "Comedy"') != base
    assert attribute_segment_id("ITEMS.PRICE = 10") == attribute_segment_id("ITEMS.PRICE = 10.0")
    assert attribute_segment_id("ITEMS.PRICE = 10") != attribute_segment_id('ITEMS.PRICE = "10"')
    # a stored ID: changing the normalization would silently rename every segment
    assert attribute_segment_id('ITEMS.genres = "Comedy"') == "attributes-" + __import__("hashlib").sha256(
        b'ITEMS.GENRES = "Comedy"').hexdigest()[:16]


def test_non_string_query():
    with pytest.raises(AttributeQueryError, match="expected a string"):
        parse_attribute_query(None)
