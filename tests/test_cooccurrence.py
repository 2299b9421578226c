"""Co-occurrence: the block-sparse Gram matrix, similarities and caps against brute-force Python."""

from __future__ import annotations

import math

import numpy as np
import pytest

from batchrec.columns import ITEM_ID, ITEM_IDX, NEIGHBOUR_ID, USER_ID
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
def test_partial_grams_sum_to_the_brute_force_gram_whatever_the_chunking(histories, budget):
    users = list(histories.values())
    lengths = np.array([len(h) for h in users])
    items = np.array([i for h in users for i in h], dtype=np.int64)
    values = np.array([v for h in users for v, _ in h.values()])
    total: dict = {}
    chunks = 0
    for i, j, c, w in cooc.partial_grams(lengths, items, values, weighted=True, pair_budget=budget):
        chunks += 1
        assert (i < j).all()
        for key in zip(i.tolist(), j.tolist(), c.tolist(), w.tolist()):
            a, b, n, s = key
            old = total.get((a, b), (0, 0.0))
            total[(a, b)] = (old[0] + n, old[1] + s)
    expected, _ = brute_gram(histories)
    assert total.keys() == expected.keys()
    for key, (n, s) in expected.items():
        assert total[key][0] == n and total[key][1] == pytest.approx(s)
    if budget == 1:  # one user per chunk (users with one item yield nothing)
        assert chunks == sum(1 for h in users if len(h) >= 2)
    if budget == 10**9:
        assert chunks == 1


def test_gram_pairs_match_brute_force_and_the_naive_self_join(history_frame, histories):
    expected, _ = brute_gram(histories)
    got = collect_pairs(cooc.gram_pairs(history_frame, weighted=True, pair_budget=50))
    assert got.keys() == expected.keys()
    for key, (n, s) in expected.items():
        assert got[key][0] == n and got[key][1] == pytest.approx(s)
    naive = collect_pairs(cooc.naive_gram_pairs(history_frame, weighted=True))
    assert {k: (n, round(w, 9)) for k, (n, w) in naive.items()} == \
        {k: (n, round(w, 9)) for k, (n, w) in got.items()}


def test_gram_pairs_keep_only_pairs_with_min_count_co_interactions(history_frame, histories):
    expected, _ = brute_gram(histories)
    got = collect_pairs(cooc.gram_pairs(history_frame, min_count=3), weighted=False)
    assert {k: n for k, (n, _) in got.items()} == {k: n for k, (n, _) in expected.items() if n >= 3}
    assert min(n for n, _ in got.values()) >= 3
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


@pytest.mark.parametrize("kind,p", [(cooc.COOCCURRENCE, 0.0), (cooc.COOCCURRENCE, 0.5),
                                    (cooc.COOCCURRENCE, 1.0), (cooc.COSINE, 0.5), (cooc.JACCARD, 0.5),
                                    (cooc.LIFT, 0.5), (cooc.LLR, 0.5)])
def test_similarities_match_their_formulas(history_frame, histories, kind, p):
    pairs, counts = brute_gram(histories)
    got = {(r[cooc.ITEM_I], r[cooc.ITEM_J]): r[cooc.SCORE] for r in cooc.similarity(
        cooc.gram_pairs(history_frame, weighted=True), cooc.item_counts(history_frame), kind,
        n_users=N_USERS, discount=p).collect()}
    expected = {}
    for (i, j), (c, w) in pairs.items():
        value = reference_similarity(kind, c, w, counts[i][0], counts[j][0], counts[i][1],
                                     counts[j][1], N_USERS, p)
        if value > 0:
            expected[(i, j)] = value
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-9)
    if kind == cooc.LLR:  # some pairs co-occur less than chance and are dropped
        assert len(expected) < len(pairs)


def test_log_likelihood_ratio_known_values(spark):
    from pyspark.sql import functions as F

    tables = [(1, 0, 0, 1), (10, 0, 0, 10), (5, 1995, 0, 100000), (1000, 1995, 1000, 100000), (2, 3, 4, 6)]
    df = spark.createDataFrame(tables, "a long, b long, c long, d long")
    cols = [F.col(c).cast("double") for c in "abcd"]
    got = [r[0] for r in df.select(cooc.log_likelihood_ratio(*cols)).collect()]
    assert got[0] == pytest.approx(4 * math.log(2), rel=1e-12)  # 2.772588722239781, as Mahout's test
    for value, table in zip(got, tables):
        assert value == pytest.approx(g_test(*table), rel=1e-9)


def test_unknown_similarity_is_a_usage_error(history_frame):
    with pytest.raises(UsageError, match=r"similarity 'dice'; expected one of cooccurrence, cosine"):
        cooc.similarity(cooc.gram_pairs(history_frame), cooc.item_counts(history_frame), "dice")


# ---------------------------------------------------------------- neighbours

def test_top_neighbours_order_ties_by_neighbour_id_and_never_list_the_item(spark):
    item_map = spark.createDataFrame([("a", 0), ("b", 1), ("c", 2), ("d", 3)], f"{ITEM_ID} string, {ITEM_IDX} int")
    scored = spark.createDataFrame(
        [(0, 1, 1, 0.5), (0, 2, 1, 0.5), (0, 3, 1, 0.9), (1, 2, 1, 0.2), (2, 3, 1, 0.5)],
        f"{cooc.ITEM_I} int, {cooc.ITEM_J} int, {cooc.CO_COUNT} long, {cooc.SCORE} double")
    got = {}
    for r in cooc.top_neighbours(scored, item_map, 2).collect():
        got.setdefault(r[ITEM_ID], []).append((r[cooc.RANK], r[NEIGHBOUR_ID], r[cooc.SCORE]))
    assert {k: sorted(v) for k, v in got.items()} == {
        "a": [(1, "d", 0.9), (2, "b", 0.5)],  # b and c tie at 0.5: b first
        "b": [(1, "a", 0.5), (2, "c", 0.2)],
        "c": [(1, "a", 0.5), (2, "d", 0.5)],
        "d": [(1, "a", 0.9), (2, "c", 0.5)],
    }


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
    ({"max_user_history_length_percentile": 1.5}, r"max_user_history_length_percentile=1.5 .* 0 to 1"),
    ({"min_item_interaction_count_percentile": 0.5, "max_item_interaction_count_percentile": 0.2},
     r"min_item_interaction_count_percentile=0.5 > max_item_interaction_count_percentile=0.2"),
])
def test_bad_caps_are_usage_errors(params, message):
    full = {**{name: 0.0 for name in cooc.CAP_PARAMS[::2]}, **{name: 1.0 for name in cooc.CAP_PARAMS[1::2]},
            **params}
    with pytest.raises(UsageError, match=message):
        cooc.check_caps("sims", full)
