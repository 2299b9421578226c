"""Co-occurrence: the block-sparse Gram matrix, similarities and caps against brute-force Python."""

from __future__ import annotations

import math

import numpy as np
import pytest

from batchrec import catalogue

from batchrec.columns import ITEM_ID, ITEM_IDX, USER_ID
from batchrec.errors import UsageError
from batchrec.recipes import cooccurrence as cooc

HISTORY_SCHEMA = f"{USER_ID} string, {ITEM_IDX} int, value double, TIMESTAMP long"
N_USERS, N_ITEMS = 30, 12


def random_histories(seed=3):
    """{user: {item_idx: (value, timestamp)}}: varied lengths (1 to 9), values 1 to 3."""
    rng = np.random.default_rng(seed)
    out = {}
    for u in range(N_USERS):
        items = rng.choice(N_ITEMS, size=int(rng.integers(1, 10)), replace=False)
        out[f"u{u:02d}"] = {int(i): (float(rng.integers(1, 4)), int(rng.integers(0, 10**6)))
                            for i in items}
    return out


def as_rows(histories):
    return [(u, i, v, t) for u, items in histories.items() for i, (v, t) in items.items()]


def brute_gram(histories):
    """{(i, j): (co_count, co_weight)} for i < j, and {i: (n_users, sum_squares)}."""
    pairs, counts = {}, {}
    for items in histories.values():
        for i, (vi, _) in items.items():
            n, s = counts.get(i, (0, 0.0))
            counts[i] = (n + 1, s + vi * vi)
            for j, (vj, _) in items.items():
                if i < j:
                    c, w = pairs.get((i, j), (0, 0.0))
                    pairs[(i, j)] = (c + 1, w + vi * vj)
    return pairs, counts


@pytest.fixture(scope="module")
def histories():
    return random_histories()


@pytest.fixture(scope="module")
def history_frame(spark, histories):
    return spark.createDataFrame(as_rows(histories), HISTORY_SCHEMA).persist()


def collect_pairs(df, weighted=True):
    return {(r[cooc.ITEM_I], r[cooc.ITEM_J]): (r[cooc.CO_COUNT], r[cooc.CO_WEIGHT] if weighted else None)
            for r in df.collect()}


# ---------------------------------------------------------------- the Gram matrix

@pytest.mark.parametrize("budget", [1, 20, 10**9])
def test_block_gram_rows_are_complete_whatever_the_blocks_and_budget(histories, budget):
    users = list(histories.values())
    lengths = np.array([len(h) for h in users])
    items = np.array([i for h in users for i in h], dtype=np.int64)
    values = np.array([v for h in users for v, _ in h.values()])
    got: dict = {}
    for block in range(3):
        lo, hi = cooc.block_rows(block, N_ITEMS, 3)
        for i, j, c, w in cooc.block_gram(lengths, items, values, lo, hi, N_ITEMS, True, budget):
            assert ((lo <= i) & (i < hi)).all() and (i != j).all()
            for key in zip(i.tolist(), j.tolist(), c.tolist(), w.tolist()):
                assert key[:2] not in got  # every entry exactly once
                got[key[:2]] = key[2:]
    upper, _ = brute_gram(histories)
    expected = {**upper, **{(j, i): v for (i, j), v in upper.items()}}
    assert got.keys() == expected.keys()
    for key, (n, s) in expected.items():
        assert got[key][0] == n and got[key][1] == pytest.approx(s)


def test_block_rows_cover_every_item_once():
    for n, blocks in ((12, 3), (10, 4), (5, 8), (1, 1)):
        covered = [i for b in range(blocks) for i in range(*cooc.block_rows(b, n, blocks))]
        assert covered == list(range(n))
        assert all(i * blocks // n == b for b in range(blocks) for i in range(*cooc.block_rows(b, n, blocks)))


@pytest.mark.parametrize("blocks", [1, 3, 7])
def test_each_row_block_gets_its_own_partition(history_frame, blocks):
    from pyspark.sql import functions as F

    placed = cooc.blocked_histories(history_frame, N_ITEMS, blocks).select(
        cooc.BLOCK, F.spark_partition_id().alias("partition")).distinct().collect()
    assert sorted((r[0], r[1]) for r in placed) == [(b, b) for b in range(blocks)]


def test_gram_pairs_match_brute_force_and_the_naive_self_join(history_frame, histories):
    expected, _ = brute_gram(histories)
    got = collect_pairs(cooc.gram_pairs(history_frame, weighted=True, blocks=3, pair_budget=50))
    assert got.keys() == expected.keys()
    for key, (n, s) in expected.items():
        assert got[key][0] == n and got[key][1] == pytest.approx(s)
    naive = collect_pairs(cooc.naive_gram_pairs(history_frame, weighted=True))
    assert {k: (n, round(w, 9)) for k, (n, w) in naive.items()} == \
        {k: (n, round(w, 9)) for k, (n, w) in got.items()}


def test_gram_pairs_keep_only_pairs_with_min_count_co_interactions(history_frame, histories):
    expected, _ = brute_gram(histories)
    got = collect_pairs(cooc.gram_pairs(history_frame, min_count=3, n_items=N_ITEMS), weighted=False)
    assert {k: n for k, (n, _) in got.items()} == {k: n for k, (n, _) in expected.items() if n >= 3}
    assert any(n < 3 for n, _ in expected.values())  # the threshold removed something


def test_item_counts_are_the_gram_diagonal(history_frame, histories):
    _, expected = brute_gram(histories)
    got = {r[ITEM_IDX]: (r[cooc.N_USERS], r[cooc.SUM_SQUARES])
           for r in cooc.item_counts(history_frame).collect()}
    assert got.keys() == expected.keys()
    for i, (n, s) in expected.items():
        assert got[i][0] == n and got[i][1] == pytest.approx(s)


# ---------------------------------------------------------------- similarities

def g_test(k11, k12, k21, k22):
    """G = 2 sum O ln(O / E): the textbook G-test, independent of Mahout's entropy form."""
    table = [[k11, k12], [k21, k22]]
    n = k11 + k12 + k21 + k22
    rows = [k11 + k12, k21 + k22]
    cols = [k11 + k21, k12 + k22]
    return 2 * sum(table[a][b] * math.log(table[a][b] * n / (rows[a] * cols[b]))
                   for a in range(2) for b in range(2) if table[a][b] > 0)


def reference_similarity(kind, c, w, ni, nj, si, sj, n_users, p):
    if kind == cooc.COOCCURRENCE:
        return c / (ni * nj) ** p
    if kind == cooc.COSINE:
        return w / math.sqrt(si * sj)
    if kind == cooc.JACCARD:
        return c / (ni + nj - c)
    if kind == cooc.LIFT:
        return c / (ni * nj)
    if c * n_users <= ni * nj:
        return 0.0
    return g_test(c, ni - c, nj - c, n_users - ni - nj + c)


def reference_neighbours(histories, kind, p, k, min_count=1):
    upper, counts = brute_gram(histories)
    rows: dict = {}
    for (i, j), (c, w) in upper.items():
        if c < min_count:
            continue
        value = reference_similarity(kind, c, w, counts[i][0], counts[j][0], counts[i][1],
                                     counts[j][1], N_USERS, p)
        if value > 0:
            rows.setdefault(i, []).append((-value, j))
            rows.setdefault(j, []).append((-value, i))
    return {i: [(r + 1, j, -v) for r, (v, j) in enumerate(sorted(lst)[:k])] for i, lst in rows.items()}


def collect_neighbours(df):
    out: dict = {}
    for r in df.collect():
        out.setdefault(r[ITEM_IDX], []).append((r[cooc.RANK], r[cooc.NEIGHBOUR_IDX], r[cooc.SCORE]))
    return {k: sorted(v) for k, v in out.items()}


def assert_neighbours(got, expected):
    assert got.keys() == expected.keys()
    for i, lst in expected.items():
        assert [r[:2] for r in got[i]] == [r[:2] for r in lst], i
        assert [r[2] for r in got[i]] == pytest.approx([r[2] for r in lst], rel=1e-9)


@pytest.mark.parametrize("kind,p", [(cooc.COOCCURRENCE, 0.0), (cooc.COOCCURRENCE, 0.5),
                                    (cooc.COOCCURRENCE, 1.0), (cooc.COSINE, 0.5), (cooc.JACCARD, 0.5),
                                    (cooc.LIFT, 0.5), (cooc.LLR, 0.5)])
def test_top_similar_matches_the_formulas_on_every_pair(history_frame, histories, kind, p):
    got = collect_neighbours(cooc.top_similar(history_frame, cooc.item_counts(history_frame), kind,
                                              k=N_ITEMS, discount=p, blocks=2, pair_budget=30))
    expected = reference_neighbours(histories, kind, p, N_ITEMS)
    assert_neighbours(got, expected)
    if kind == cooc.LLR:  # some pairs co-occur less than chance and are dropped
        upper, _ = brute_gram(histories)
        assert sum(len(v) for v in expected.values()) < 2 * len(upper)


def test_top_similar_keeps_k_with_min_count_and_breaks_ties_by_index(history_frame, histories):
    got = collect_neighbours(cooc.top_similar(history_frame, cooc.item_counts(history_frame),
                                              cooc.COOCCURRENCE, k=3, min_count=2, discount=0.0))
    expected = reference_neighbours(histories, cooc.COOCCURRENCE, 0.0, 3, min_count=2)
    assert_neighbours(got, expected)
    # Raw co-counts tie often: the smaller neighbour index comes first.
    assert any(a[2] == b[2] for lst in got.values() for a, b in zip(lst, lst[1:]))


def test_top_per_row_orders_by_score_then_column():
    rows = np.array([0, 0, 0, 1, 1, 2])
    cols = np.array([5, 3, 4, 1, 0, 9])
    scores = np.array([0.5, 0.5, 0.9, 0.1, 0.2, 0.3])
    r, rank, c, s = cooc.top_per_row(rows, cols, scores, 2)
    assert list(zip(r, rank, c, s)) == [(0, 1, 4, 0.9), (0, 2, 3, 0.5), (1, 1, 0, 0.2), (1, 2, 1, 0.1),
                                        (2, 1, 9, 0.3)]


def test_log_likelihood_ratio_known_values():
    tables = [(1, 0, 0, 1), (10, 0, 0, 10), (5, 1995, 0, 100000), (1000, 1995, 1000, 100000), (2, 3, 4, 6)]
    got = cooc.log_likelihood_ratio(*np.array(tables, dtype=float).T)
    assert got[0] == pytest.approx(4 * math.log(2), rel=1e-12)  # 2.772588722239781, as Mahout's test
    for value, table in zip(got, tables):
        assert value == pytest.approx(g_test(*table), rel=1e-9)


def test_unknown_similarity_is_a_usage_error(history_frame):
    with pytest.raises(UsageError, match=r"similarity 'dice'; expected one of cooccurrence, cosine"):
        cooc.top_similar(history_frame, cooc.item_counts(history_frame), "dice", 5)


def test_with_ids_names_items_and_neighbours(spark):
    item_map = spark.createDataFrame([("a", 0), ("b", 1)], f"{ITEM_ID} string, {ITEM_IDX} int")
    top = spark.createDataFrame([(0, 1, 1, 0.5), (1, 1, 0, 0.5)],
                                f"{ITEM_IDX} int, rank int, {cooc.NEIGHBOUR_IDX} int, score double")
    got = sorted(tuple(r) for r in cooc.with_ids(top, item_map).collect())
    assert got == [("a", 1, "b", 0.5), ("b", 1, "a", 0.5)]
    assert cooc.with_ids(top, item_map).schema.simpleString() == \
        "struct<ITEM_ID:string,rank:int,NEIGHBOUR_ID:string,score:double>"


# ---------------------------------------------------------------- caps

CAP_ROWS = [  # user, item_idx, timestamp: lengths a 1, b 2, c 3, d 4, e 6
    ("a", 1, 10),
    ("b", 1, 20), ("b", 2, 21),
    ("c", 1, 30), ("c", 2, 31), ("c", 3, 32),
    ("d", 1, 40), ("d", 2, 41), ("d", 3, 42), ("d", 4, 43),
    ("e", 1, 50), ("e", 2, 51), ("e", 3, 52), ("e", 4, 53), ("e", 5, 54), ("e", 6, 55),
]


@pytest.fixture(scope="module")
def cap_frame(spark):
    return spark.createDataFrame([(u, i, 1.0, t) for u, i, t in CAP_ROWS], HISTORY_SCHEMA)


def kept(df):
    return sorted((r[USER_ID], r[ITEM_IDX]) for r in df.collect())


def test_history_caps_drop_short_histories_and_keep_the_latest_items_of_long_ones(cap_frame):
    # Lengths 1,2,3,4,6: the 40th percentile is 2 (user a goes), the 60th is 3.
    capped, stats = cooc.apply_caps(cap_frame, cooc.Caps(min_user_history_length_percentile=0.4,
                                                         max_user_history_length_percentile=0.6))
    assert (stats["history_length_min"], stats["history_length_max"]) == (2, 3)
    assert stats["item_count_min"] is None and stats["item_count_max"] is None
    assert kept(capped) == sorted([("b", 1), ("b", 2), ("c", 1), ("c", 2), ("c", 3),
                                   ("d", 2), ("d", 3), ("d", 4), ("e", 4), ("e", 5), ("e", 6)])


def test_item_caps_drop_rare_items_and_keep_the_latest_users_of_popular_ones(cap_frame):
    # Item counts 5,4,3,2,1,1: the 40th percentile is 2 (items 5 and 6 go), the 70th is 4.
    capped, stats = cooc.apply_caps(cap_frame, cooc.Caps(min_item_interaction_count_percentile=0.4,
                                                         max_item_interaction_count_percentile=0.7))
    assert (stats["item_count_min"], stats["item_count_max"]) == (2, 4)
    expected = [(u, i) for u, i, _ in CAP_ROWS if i not in (5, 6) and (u, i) != ("a", 1)]
    assert kept(capped) == sorted(expected)


def test_caps_off_keep_everything(cap_frame):
    capped, stats = cooc.apply_caps(cap_frame, cooc.Caps())
    assert capped is cap_frame and set(stats.values()) == {None}


@pytest.mark.parametrize("params,message", [
    ({"max_user_history_length_percentile": 1.5},
     r"max_user_history_length_percentile=1.5 .* expected float >= 0.0 and <= 1.0"),
    ({"min_item_interaction_count_percentile": 0.5, "max_item_interaction_count_percentile": 0.2},
     r"min_item_interaction_count_percentile=0.5 > max_item_interaction_count_percentile=0.2"),
])
def test_bad_caps_are_usage_errors(params, message):
    with pytest.raises(UsageError, match=message):
        catalogue.resolve_params("sims", None, params)
