"""Blocked top-k against a numpy brute-force reference (ties, exclusions, blocks, bonus, filters)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from pyspark.sql import functions as F

from batchrec.columns import ITEM_ID, ITEM_IDX, USER_ID, USER_IDX
from batchrec.errors import JobError
from batchrec.filters.eligibility import Eligibility
from batchrec.scoring import masks, topk

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
    # Rank 64 and a few hundred items: BLAS rounds blocks of different shapes differently here, so
    # scores taken straight from the block product would differ in their last bits between splits.
    rng = np.random.default_rng(11)
    u = rng.normal(size=(40, 64)).astype(np.float32)
    v = rng.normal(size=(300, 64)).astype(np.float32)
    user_df = spark.createDataFrame([(i, r.tolist()) for i, r in enumerate(u)], "user_idx int, features array<float>")
    item_df = spark.createDataFrame([(i, r.tolist(), f"i{i:03d}") for i, r in enumerate(v)],
                                    "item_idx int, features array<float>, ITEM_ID string")
    runs = [topk.top_k_by_factors(user_df.repartition(parts), item_df, 10, users_per_batch=size)
            .orderBy(USER_IDX, "rank").collect() for parts, size in ((1, 40), (3, 7), (2, 1))]
    assert runs[0] == runs[1] == runs[2]
    scores = u.astype(np.float64) @ v.astype(np.float64).T
    for row in runs[0]:
        assert row[ITEM_IDX] == int(np.argsort(-scores[row[USER_IDX]], kind="stable")[row["rank"] - 1])
        assert row["score"] == pytest.approx(float(scores[row[USER_IDX], row[ITEM_IDX]]), rel=1e-12)


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


# --- filters inside the kernel (batchrec.scoring.masks) ------------------------------------------


def _eligibility(spark, allowed=None, denied=None, sets=(), membership=(), common=(), pairs=()):
    """An Eligibility written out by hand (key USER_ID, IDs ITEM_ID)."""
    def frame(data, ddl):
        return spark.createDataFrame(list(data), ddl)
    return Eligibility(
        id_column=ITEM_ID, key=USER_ID,
        allowed=frame([(i,) for i in allowed], f"{ITEM_ID} string") if allowed is not None else None,
        denied=frame([(i,) for i in denied], f"{ITEM_ID} string") if denied is not None else None,
        sets=frame(sets, f"set_id long, {ITEM_ID} string") if sets else None,
        membership=frame(membership, f"{USER_ID} string, set_id long, action string") if membership else None,
        common=tuple(common),
        pairs=frame(pairs, f"{USER_ID} string, set_id long, {ITEM_ID} string, action string") if pairs else None)


def _allowed_by_rule(users, item_ids, allowed, denied, sets, membership, common, pairs):
    """{user: eligible item IDs}: the documented combination rule, written independently."""
    out = {}
    for u in users:
        applied = [(s, a) for uu, s, a in membership if uu == u] + list(common)
        result = set(allowed if allowed is not None else item_ids) - set(denied or ())
        content = {s: {i for ss, i in sets if ss == s} | {i for uu, ss, i, _ in pairs if uu == u and ss == s}
                   for s, _ in applied}
        includes = [s for s, a in applied if a == "include"]
        if includes:
            result &= set().union(*(content[s] for s in includes))
        for s, a in applied:
            if a == "exclude":
                result -= content[s]
        out[u] = result
    return out


def test_block_allowed_combines_global_common_and_per_request_parts():
    ids = np.array(["a", "b", "c", "d", "e"], dtype=object)
    collected = masks.CollectedFilter(allowed=np.array(["a", "b", "c", "d", "zz"], dtype=object),
                                      denied=np.array(["d"], dtype=object),
                                      sets={1: np.array(["a", "b"], dtype=object), 2: np.array(["c"], dtype=object),
                                            3: np.array(["b", "e"], dtype=object)},
                                      common_exclude=(3,), per_request=True)
    mask = masks.item_mask(collected, ids)
    assert mask.base.tolist() == [True, False, True, False, False]  # e not allowed, d denied, b common-excluded
    block = pa.RecordBatch.from_pydict({
        masks.FILTER_INCLUDE_SETS: [[1], [], [2, 9], [9], []],
        masks.FILTER_EXCLUDE_SETS: [[], [2], [], [], [1]],
        masks.FILTER_INCLUDE_IDS: [[], [], ["a"], [], []],
        masks.FILTER_EXCLUDE_IDS: [["a"], [], [], [], ["c", "nope"]],
    }, schema=pa.schema([(masks.FILTER_INCLUDE_SETS, pa.list_(pa.int64())),
                         (masks.FILTER_EXCLUDE_SETS, pa.list_(pa.int64())),
                         (masks.FILTER_INCLUDE_IDS, pa.list_(pa.string())),
                         (masks.FILTER_EXCLUDE_IDS, pa.list_(pa.string()))]))
    got = masks.block_allowed(mask, block)
    assert got.astype(int).tolist() == [
        [0, 0, 0, 0, 0],  # include {a, b}, minus a, minus the global limits -> nothing
        [1, 0, 0, 0, 0],  # not restricted; c excluded by set 2
        [1, 0, 1, 0, 0],  # include {c} | {a}; set 9 has no items
        [0, 0, 0, 0, 0],  # restricted to an empty set
        [0, 0, 0, 0, 0],  # a, b excluded by set 1, c by ID
    ]
    # Without per-request columns the global mask is returned as one row.
    assert masks.block_allowed(mask, pa.RecordBatch.from_pydict({"x": [1, 2]})).tolist() == mask.base.tolist()


def test_set_scatter_by_index_and_by_dense_row_agree_with_a_loop():
    rng = np.random.default_rng(0)
    ids = np.array([f"i{i}" for i in range(40)], dtype=object)
    for _ in range(100):
        sets = {s: rng.choice(ids, size=int(rng.integers(0, 30)), replace=False) for s in range(5)}
        mask = masks.item_mask(masks.CollectedFilter(sets=sets, per_request=True), ids)
        rows, set_ids = rng.integers(0, 6, size=12), rng.integers(0, 6, size=12)
        for value in (True, False):
            got = rng.random((6, 40)) < 0.5
            expected = got.copy()
            for r, s in zip(rows, set_ids):
                for item in sets.get(int(s), ()):
                    expected[r, int(item[1:])] = value
            masks._scatter(got, rows, set_ids, mask, value)
            assert (got == expected).all()


@pytest.mark.parametrize("k", [1, 4, N_ITEMS])
def test_filtered_top_k_matches_brute_force(spark, factors, k):
    users, items, item_ids, seen = factors
    rng = np.random.default_rng(k)
    names = sorted(item_ids.values())
    user_ids = {u: f"user-{u:02d}" for u in users}
    allowed = set(rng.choice(names, size=14, replace=False).tolist())
    denied = set(rng.choice(names, size=2, replace=False).tolist())
    sets = [(s, i) for s in (10, 11, 12, 13) for i in rng.choice(names, size=5, replace=False).tolist()]
    membership, pairs = [], []
    for u in users:
        for s in rng.choice([10, 11, 12, 13, 99], size=int(rng.integers(0, 3)), replace=False).tolist():
            membership.append((user_ids[u], int(s), "include" if s in (10, 11, 99) else "exclude"))
        for i in rng.choice(names, size=int(rng.integers(0, 3)), replace=False).tolist():
            action = "include" if rng.random() < 0.5 else "exclude"
            set_id = 20 if action == "include" else 21
            if action == "include" and (user_ids[u], 20, "include") not in membership:
                membership.append((user_ids[u], 20, "include"))
            pairs.append((user_ids[u], set_id, i, action))
    common = [(13, "exclude"), (21, "exclude")]
    elig = _eligibility(spark, allowed, denied, sets, membership, common, pairs)
    expected_sets = _allowed_by_rule(user_ids.values(), names, allowed, denied, sets, membership, common, pairs)

    user_df, item_df, seen_df = frames(spark, users, items, item_ids, seen)
    seen_lists = seen_df.groupBy(USER_IDX).agg(F.collect_set(ITEM_IDX).alias(topk.SEEN))
    with_ids = spark.createDataFrame(list(user_ids.items()), f"{USER_IDX} int, {USER_ID} string")
    scoring = user_df.join(with_ids, USER_IDX).join(seen_lists, USER_IDX, "left")
    scoring = masks.attach_filter_columns(scoring, elig)
    result = topk.score_blocks(scoring, topk.collect_item_matrix(item_df), k, users_per_batch=4,
                               item_filter=masks.collect_filter(elig))
    got = collect(result)
    for u in users:
        ok_idx = {i for i in items if item_ids[i] in expected_sets[user_ids[u]]}
        blocked = {u: set(items) - ok_idx | seen.get(u, set())}
        expected = brute_force({u: users[u]}, items, item_ids, k, blocked)[u]
        rows = got.get(u, [])
        assert [(item, score) for item, score, _ in rows] == expected, f"user {u}"
        assert [r for _, _, r in rows] == list(range(1, len(rows) + 1))


def test_backfill_adds_passing_unseen_list_items_after_the_scored_ones(spark):
    user_df = spark.createDataFrame([(0, "u0", [1.0], []), (1, "u1", [1.0], ["p2"]), (2, "u2", [1.0], [])],
                                    f"user_idx int, {USER_ID} string, features array<float>, seen_ids array<string>")
    item_df = spark.createDataFrame([(0, [3.0], "a"), (1, [2.0], "b"), (2, [1.0], "c")],
                                    f"item_idx int, features array<float>, {ITEM_ID} string")
    # b is denied for everyone; u2 is restricted to {a, p3}; p1 is not allowed anywhere.
    elig = _eligibility(spark, denied=["b", "p1"], sets=[(5, "a"), (5, "p3")], membership=[("u2", 5, "include")])
    scoring = masks.attach_filter_columns(user_df, elig)
    ranked = [("p1", "popular"), ("a", "popular"), ("p2", "popular"), ("p3", "trending"), ("p4", "popular")]
    matrix = topk.collect_item_matrix(item_df)
    filtered = masks.collect_filter(elig)
    rows = (topk.score_blocks(scoring, matrix, 4, item_filter=filtered, backfill=ranked)
            .orderBy(USER_ID, "rank").collect())
    assert [(r[USER_ID], r["rank"], r[ITEM_ID], r[ITEM_IDX], r["score"], r["reason"]) for r in rows] == [
        ("u0", 1, "a", 0, 3.0, None), ("u0", 2, "c", 2, 1.0, None),
        ("u0", 3, "p2", None, None, "popular"), ("u0", 4, "p3", None, None, "trending"),
        ("u1", 1, "a", 0, 3.0, None), ("u1", 2, "c", 2, 1.0, None),
        ("u1", 3, "p3", None, None, "trending"), ("u1", 4, "p4", None, None, "popular"),
        ("u2", 1, "a", 0, 3.0, None), ("u2", 2, "p3", None, None, "trending"),
    ]
    # Without a backfill, short users get fewer items.
    fewer = topk.score_blocks(scoring, matrix, 4, item_filter=filtered).orderBy(USER_ID, "rank").collect()
    assert [(r[USER_ID], r[ITEM_ID]) for r in fewer] == [("u0", "a"), ("u0", "c"), ("u1", "a"), ("u1", "c"),
                                                         ("u2", "a")]
    assert "reason" not in topk.score_blocks(scoring, matrix, 4, item_filter=filtered).columns


def test_requests_of_one_user_with_different_filters_keep_their_key(spark):
    item_df = spark.createDataFrame([(0, [3.0], "a"), (1, [2.0], "b"), (2, [1.0], "c")],
                                    f"item_idx int, features array<float>, {ITEM_ID} string")
    lines = spark.createDataFrame([(0, 10, "u0", [1.0], 0, 2, []), (0, 11, "u0", [1.0], 0, 2, [])],
                                  f"user_idx int, line long, {USER_ID} string, features array<float>, "
                                  "start int, need int, seen_ids array<string>")
    elig = Eligibility(id_column=ITEM_ID, key="line",
                       sets=spark.createDataFrame([(1, "a"), (2, "c"), (2, "p2")], f"set_id long, {ITEM_ID} string"),
                       membership=spark.createDataFrame([(10, 1, "include"), (11, 2, "include")],
                                                        "line long, set_id long, action string"))
    scoring, filtered = masks.attach_filter_columns(lines, elig), masks.collect_filter(elig)
    scored = topk.score_blocks(scoring, topk.collect_item_matrix(item_df), 2, item_filter=filtered, key="line")
    assert dict(scored.dtypes)["line"] == "bigint"
    assert sorted((r["line"], r[USER_ID], r[ITEM_ID]) for r in scored.collect()) == [(10, "u0", "a"), (11, "u0", "c")]
    filled = topk.top_k_from_list(scoring, [("p1", "popular"), ("p2", "popular"), ("a", "popular")],
                                  item_filter=filtered, key="line")
    assert filled.columns == [USER_ID, "line", "rank", ITEM_ID, "reason"]
    assert sorted(tuple(r) for r in filled.collect()) == [("u0", 10, 1, "a", "popular"), ("u0", 11, 1, "p2", "popular")]


def test_a_filter_needs_item_ids_in_the_matrix(spark):
    item_df = spark.createDataFrame([(0, [1.0])], "item_idx int, features array<float>")
    user_df = spark.createDataFrame([(0, [1.0])], "user_idx int, features array<float>")
    with pytest.raises(JobError, match="a filter or a backfill needs the ITEM_ID of each item"):
        topk.score_blocks(user_df, topk.collect_item_matrix(item_df), 1, item_filter=masks.CollectedFilter())


def test_top_k_from_list_honours_the_filter(spark):
    users = spark.createDataFrame(
        [("u1", 0, 3, ["p2"]), ("u2", 4, 2, []), ("u3", 0, 5, [])],
        f"{USER_ID} string, start int, need int, seen_ids array<string>")
    ranked = [("p1", "trending"), ("p2", "popular"), ("p3", "popular"), ("p4", "popular"), ("p5", "popular")]
    elig = _eligibility(spark, denied=["p4"], sets=[(1, "p1"), (1, "p2"), (2, "p3")],
                        membership=[("u2", 1, "include"), ("u3", 2, "exclude")],
                        pairs=[("u3", 7, "p5", "exclude")], common=[(7, "exclude")])
    filled = topk.top_k_from_list(masks.attach_filter_columns(users, elig), ranked, users_per_batch=2,
                                  item_filter=masks.collect_filter(elig))
    assert [tuple(r) for r in filled.orderBy(USER_ID, "rank").collect()] == [
        ("u1", 1, "p1", "trending"), ("u1", 2, "p3", "popular"), ("u1", 3, "p5", "popular"),
        ("u2", 5, "p1", "trending"), ("u2", 6, "p2", "popular"),
        ("u3", 1, "p1", "trending"), ("u3", 2, "p2", "popular"),
    ]


def test_collecting_a_filter_is_bounded(spark):
    elig = _eligibility(spark, denied=["a", "b", "c"], sets=[(1, "d"), (1, "e")])
    assert sorted(masks.collect_filter(elig, max_ids=5).denied.tolist()) == ["a", "b", "c"]
    with pytest.raises(JobError, match="its item sets hold more than 4 IDs; raise filters.max_collected_ids"):
        masks.collect_filter(elig, max_ids=4)
