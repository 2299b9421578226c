"""sims, similar-items, ease and sar against brute-force Python and hand computations; related
items and item-based top-N scoring (order, cold and unknown items and users, backfill)."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, defaultdict

import numpy as np
import pytest

from batchrec.columns import ITEM_ID, ITEM_IDX, NEIGHBOUR_ID, RELATED_ITEM_ID, USER_ID
from batchrec.config import PrepareSettings, RecommendSettings, Settings
from batchrec.errors import JobError, UsageError
from batchrec.recipes import resolve_params, train_recipe


def train(spark, recipe, frame, settings, params=None, **kwargs):
    """train_recipe with the settings' [prepare] section and the recipe's resolved parameters."""
    return train_recipe(spark, recipe, frame, settings.prepare, resolve_params(recipe, settings, params),
                        **kwargs)
from batchrec.recipes.ease import ease_weights
from batchrec.scoring.recommend import recommend_for_users
from batchrec.scoring.related import related_items

SCHEMA = "USER_ID string, ITEM_ID string, EVENT_TYPE string, EVENT_VALUE double, TIMESTAMP long"
DAY = 86400
NO_CAPS = {"min_user_history_length_percentile": 0.0, "max_user_history_length_percentile": 1.0,
           "min_item_interaction_count_percentile": 0.0, "max_item_interaction_count_percentile": 1.0}
RECOMMEND = RecommendSettings()


def make_settings(**sections) -> Settings:
    sections.setdefault("prepare", PrepareSettings(max_user_history_length_percentile=1.0))
    return Settings(**sections)


def random_rows(seed=5, n_users=30, n_items=12):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for i in rng.choice(n_items, size=int(rng.integers(1, 9)), replace=False):
            rows.append((f"u{u:02d}", f"i{i:02d}", "click", None, int(rng.integers(0, 10**6))))
    return rows


def user_sets(rows):
    users = defaultdict(set)
    for u, i, *_ in rows:
        users[u].add(i)
    return users


def counts_and_pairs(users):
    n, c = Counter(), Counter()
    for items in users.values():
        for i in items:
            n[i] += 1
            for j in items:
                if i != j:
                    c[(i, j)] += 1
    return n, c


def popular_reference(users):
    n, _ = counts_and_pairs(users)
    return [i for _, i in sorted((-count, i) for i, count in n.items())]


def neighbours_of(df):
    out = defaultdict(list)
    for r in df.collect():
        out[r[ITEM_ID]].append((r["rank"], r[NEIGHBOUR_ID], r["score"]))
    return {k: sorted(v) for k, v in out.items()}


def lists_of(df, key, item):
    out = defaultdict(list)
    for r in df.collect():
        out[r[key]].append((r["rank"], r[item], r["score"], r["reason"]))
    return {k: sorted(v) for k, v in out.items()}


def assert_lists_equal(got, expected):
    assert got.keys() == expected.keys()
    for key, rows in expected.items():
        assert [r[:2] for r in got[key]] == [r[:2] for r in rows], key
        for a, b in zip(got[key], rows):
            assert (a[2] is None and b[2] is None) or a[2] == pytest.approx(b[2], rel=1e-4, abs=1e-6), key


@pytest.fixture(scope="module")
def rows():
    return random_rows()


@pytest.fixture(scope="module")
def frame(spark, rows):
    return spark.createDataFrame(rows, SCHEMA).persist()


# ---------------------------------------------------------------- sims

def sims_reference(users, p, min_count, k):
    n, c = counts_and_pairs(users)
    out = {}
    for i in n:
        scored = sorted((-(c[(i, j)] / (n[i] * n[j]) ** p), j) for j in n
                        if j != i and c[(i, j)] >= max(1, min_count))
        if scored:
            out[i] = [(rank + 1, j, -s) for rank, (s, j) in enumerate(scored[:k])]
    return out


@pytest.mark.parametrize("discount", [0.0, 1.0])
def test_sims_popularity_discount_at_0_and_1_matches_brute_force(spark, frame, rows, discount):
    params = {**NO_CAPS, "popularity_discount_factor": discount, "min_cointeraction_count": 2,
              "num_neighbours": 4}
    model = train(spark, "sims", frame, make_settings(), params)
    got = neighbours_of(model.artifacts["item_neighbours"])
    assert_lists_equal(got, sims_reference(user_sets(rows), discount, 2, 4))
    model.release()


def test_sims_discount_changes_the_order_popular_first_at_0(rows):
    users = user_sets(rows)
    n, _ = counts_and_pairs(users)
    raw, lift = sims_reference(users, 0.0, 2, 4), sims_reference(users, 1.0, 2, 4)
    assert raw != lift  # the test data can tell the two apart
    # At 0 the first neighbour is the one with the most co-interactions; at 1 neighbours are no
    # more popular on average than at 0.
    mean_pop = lambda ref: np.mean([n[j] for lst in ref.values() for _, j, _ in lst])  # noqa: E731
    assert mean_pop(lift) < mean_pop(raw)


def test_sims_min_cointeraction_count_drops_rare_pairs(spark, frame, rows):
    params = {**NO_CAPS, "min_cointeraction_count": 3, "num_neighbours": 20}
    model = train(spark, "sims", frame, make_settings(), params)
    got = neighbours_of(model.artifacts["item_neighbours"])
    _, c = counts_and_pairs(user_sets(rows))
    assert all(c[(i, j)] >= 3 for i, lst in got.items() for _, j, _ in lst)
    assert_lists_equal(got, sims_reference(user_sets(rows), 0.5, 3, 20))
    assert any(0 < v < 3 for v in c.values())
    model.release()


@pytest.mark.parametrize("recipe,params,message", [
    ("sims", {"popularity_discount_factor": 1.5}, r"popularity_discount_factor=1.5 .* expected float >= 0.0 and <= 1.0"),
    ("sims", {"similarity": "dice"}, r"similarity='dice' .* expected one of cooccurrence"),
    ("sims", {"num_neighbours": 0}, r"num_neighbours=0 .* expected int >= 1 and <= 1000"),
    ("sims", {"min_cointeraction_count": -1}, r"min_cointeraction_count=-1 .* expected int >= 0"),
    ("sims", {"popularity_discount": 0.5}, r"unknown parameter 'popularity_discount' for recipe sims"),
    ("similar-items", {"numeric_bins": 1}, r"numeric_bins=1 .* expected int >= 2"),
    ("similar-items", {"interaction_shrinkage": -1.0}, r"interaction_shrinkage=-1.0 .* expected float >= 0.0"),
    ("ease", {"regularization": 0.0}, r"regularization=0.0 for recipe ease; expected float > 0.0"),
    ("ease", {"max_items": 0}, r"max_items=0 .* expected int >= 1"),
    ("ease", {"regularization": "high"}, r"regularization='high' .* expected float"),
    ("sar", {"similarity": "cosine"}, r"similarity='cosine' .* expected one of jaccard, lift, cooccurrence"),
    ("sar", {"time_decay_half_life_days": -1.0}, r"time_decay_half_life_days=-1.0 .* expected float >= 0.0"),
    ("sar", {"min_user_history_length_percentile": 2.0}, r"min_user_history_length_percentile=2.0"),
])
def test_bad_parameters_are_usage_errors(recipe, params, message):
    with pytest.raises(UsageError, match=message):
        resolve_params(recipe, make_settings(), params)


def test_defaults_come_from_the_settings_sections():
    settings = make_settings()
    assert resolve_params("sims", settings)["popularity_discount_factor"] == 0.5
    assert resolve_params("sims", settings)["min_cointeraction_count"] == 3
    assert resolve_params("ease", settings)["max_items"] == 30000
    changed = dataclasses.replace(settings, sar=dataclasses.replace(settings.sar, similarity="lift"))
    assert resolve_params("sar", changed)["similarity"] == "lift"


# ---------------------------------------------------------------- related items

@pytest.fixture(scope="module")
def related_artifacts(spark):
    item_map = spark.createDataFrame([(x, k) for k, x in enumerate("abcde")], f"{ITEM_ID} string, {ITEM_IDX} int")
    neighbours = spark.createDataFrame(
        [("a", 1, "c", 0.9), ("a", 2, "d", 0.5), ("a", 3, "b", 0.5), ("a", 4, "a", 0.4),
         ("b", 1, "a", 0.5)],
        f"{ITEM_ID} string, rank int, {NEIGHBOUR_ID} string, score double")
    popular = spark.createDataFrame([("d", 5.0, 1), ("a", 4.0, 2), ("e", 3.0, 3), ("b", 2.0, 4), ("c", 1.0, 5)],
                                    f"{ITEM_ID} string, score double, rank int")
    return {"item_map": item_map, "item_neighbours": neighbours, "popular_items": popular}


def test_related_items_order_self_exclusion_backfill_cold_and_unknown(spark, related_artifacts):
    queries = spark.createDataFrame([("a",), ("b",), ("e",), ("zzz",), (None,), ("a",)], f"{ITEM_ID} string")
    got = lists_of(related_items(related_artifacts, 4, queries), ITEM_ID, RELATED_ITEM_ID)
    assert got == {
        # b and d tie at 0.5: b first; the stored self pair is dropped; e fills from popular.
        "a": [(1, "c", 0.9, "model"), (2, "b", 0.5, "model"), (3, "d", 0.5, "model"), (4, "e", None, "popular")],
        "b": [(1, "a", 0.5, "model"), (2, "d", None, "popular"), (3, "e", None, "popular"),
              (4, "c", None, "popular")],
        "e": [(1, "d", None, "popular"), (2, "a", None, "popular"), (3, "b", None, "popular"),
              (4, "c", None, "popular")],  # known but cold: popular items, never itself
        "zzz": [(1, "d", None, "popular"), (2, "a", None, "popular"), (3, "e", None, "popular"),
                (4, "b", None, "popular")],  # unknown: popular items
    }
    short = lists_of(related_items(related_artifacts, 2, queries), ITEM_ID, RELATED_ITEM_ID)
    assert short["a"] == [(1, "c", 0.9, "model"), (2, "b", 0.5, "model")]
    assert related_items(related_artifacts, 2).select(ITEM_ID).distinct().count() == 5  # every item


def test_related_items_bad_input(spark, related_artifacts):
    with pytest.raises(UsageError, match=r"num_results = 0; expected an integer from 1 to 500"):
        related_items(related_artifacts, 0)
    with pytest.raises(JobError, match=r"no 'item_neighbours' artifact"):
        related_items({k: v for k, v in related_artifacts.items() if k != "item_neighbours"}, 3)


# ---------------------------------------------------------------- similar-items

ITEMS = [  # ITEM_ID, GENRE, PRICE
    ("w1", "drama|war", 12.0), ("w2", "drama", 19.0), ("w3", "comedy|drama", 30.0), ("w4", "comedy|war", 10.0),
    ("c1", "drama", 27.0), ("c2", "war|comedy", 21.0), ("c3", "western", None),
]
SIMILAR_ROWS = [(u, i, "click", None, t) for t, (u, i) in enumerate([
    ("u1", "w1"), ("u1", "w2"), ("u2", "w1"), ("u2", "w2"), ("u2", "w3"), ("u3", "w3"), ("u3", "w4"),
    ("u4", "w1"), ("u4", "w4"), ("u5", "w2"), ("u5", "c1"), ("u6", "w1"), ("u6", "w2"), ("u6", "w4")])]


def metadata_reference(items, bins):
    """Unit TF-IDF genre vectors and soft-binned prices, each scaled by 1/sqrt(2)."""
    n = len(items)
    df = Counter(g for _, genres, _ in items for g in set(genres.split("|")))
    vocab = sorted((v for v in df if df[v] >= 2), key=lambda v: (-df[v], v))
    idf = {v: math.log((1 + n) / (1 + df[v])) + 1 for v in vocab}
    prices = [p for _, _, p in items if p is not None]
    low, high = min(prices), max(prices)
    vectors = {}
    for item, genres, price in items:
        genre = np.zeros(len(vocab))
        for g in set(genres.split("|")):
            if g in idf:
                genre[vocab.index(g)] = idf[g]
        if genre.any():
            genre /= np.linalg.norm(genre)
        numeric = np.zeros(bins)
        if price is not None:
            t = min(max((price - low) / (high - low), 0.0), 1.0) * (bins - 1)
            k = min(math.floor(t), bins - 2)
            f = t - k
            numeric[k], numeric[k + 1] = 1 - f, f
            numeric /= np.linalg.norm(numeric)
        vectors[item] = np.concatenate([genre, numeric]) / math.sqrt(2)
    return vectors


def similar_reference(items, rows, shrinkage, bins, k):
    users = user_sets(rows)
    n, c = counts_and_pairs(users)
    vectors = metadata_reference(items, bins)
    catalog = sorted(set(vectors) | set(n))
    out = {}
    for i in catalog:
        a = n[i] / (n[i] + shrinkage) if n[i] else 0.0
        scored = []
        for j in catalog:
            if j == i:
                continue
            cooc = c[(i, j)] / math.sqrt(n[i] * n[j]) if c[(i, j)] else 0.0
            meta = float(vectors[i] @ vectors[j]) if i in vectors and j in vectors else 0.0
            score = a * cooc + (1 - a) * meta
            if score > 1e-9:
                scored.append((-round(score, 6), j, score))
        if scored:
            out[i] = [(rank + 1, j, s) for rank, (_, j, s) in enumerate(sorted(scored)[:k])]
    return out


def test_similar_items_blend_matches_brute_force_and_cold_items_get_neighbours(spark):
    items = spark.createDataFrame(ITEMS, f"{ITEM_ID} string, GENRE string, PRICE double")
    interactions = spark.createDataFrame(SIMILAR_ROWS, SCHEMA)
    params = {**NO_CAPS, "min_cointeraction_count": 1, "interaction_shrinkage": 5.0, "num_neighbours": 4,
              "numeric_bins": 3}
    model = train(spark, "similar-items", interactions, make_settings(), params, items=items)
    got = neighbours_of(model.artifacts["item_neighbours"])
    expected = similar_reference(ITEMS, SIMILAR_ROWS, 5.0, 3, 4)
    assert_lists_equal(got, expected)
    # c2 has no interaction at all and c1 only one: both are related by their metadata.
    assert [j for _, j, _ in got["c2"]][:2] == ["w4", "w2"]
    assert got["c1"][0][1] == "w2"
    assert "c3" not in got  # a genre nobody else has and no price: nothing relates it
    assert model.stats["metadata_fields"] == ["GENRE", "PRICE"]
    queries = spark.createDataFrame([("c2",), ("c3",)], f"{ITEM_ID} string")
    related = lists_of(related_items(model.artifacts, 2, queries), ITEM_ID, RELATED_ITEM_ID)
    assert [r[3] for r in related["c2"]] == ["model", "model"]
    assert [r[3] for r in related["c3"]] == ["popular", "popular"]
    model.release()


def test_similar_items_without_items_uses_co_occurrence_only(spark):
    interactions = spark.createDataFrame(SIMILAR_ROWS, SCHEMA)
    params = {**NO_CAPS, "min_cointeraction_count": 1, "num_neighbours": 3}
    model = train(spark, "similar-items", interactions, make_settings(), params)
    got = neighbours_of(model.artifacts["item_neighbours"])
    users = user_sets(SIMILAR_ROWS)
    n, c = counts_and_pairs(users)
    expected = {}
    for i in n:
        a = n[i] / (n[i] + 5.0)
        scored = sorted((-a * c[(i, j)] / math.sqrt(n[i] * n[j]), j) for j in n if j != i and c[(i, j)])
        expected[i] = [(r + 1, j, -s) for r, (s, j) in enumerate(scored[:3])]
    assert_lists_equal(got, expected)
    model.release()


# ---------------------------------------------------------------- ease

def ease_reference(x, lam):
    g = x.T @ x
    p = np.linalg.inv(g + lam * np.eye(len(g)))
    return np.eye(len(g)) - p @ np.diag(1.0 / np.diag(p))


def test_ease_weights_match_the_numpy_closed_form():
    rng = np.random.default_rng(11)
    x = (rng.random((40, 9)) < 0.3).astype(np.float64)
    for lam in (0.5, 3.0, 50.0):
        got = ease_weights((x.T @ x).astype(np.float32), lam)
        expected = ease_reference(x, lam)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
        assert np.all(np.diag(got) == 0)


def item_based_reference(users, item_ids, weights, k, popular):
    """{user: [(rank, item, score, reason)]}: history x weights, seen masked, popular fill."""
    out = {}
    position = {item: p for p, item in enumerate(item_ids)}
    for u, seen in users.items():
        x = np.zeros(len(item_ids))
        for i in seen:
            if i in position:
                x[position[i]] = 1.0
        scores = x @ weights
        ranked = sorted((-scores[p], item) for item, p in position.items() if item not in seen)
        top = [(r + 1, item, -s, "model") for r, (s, item) in enumerate(ranked[:k])] if x.any() else []
        listed = {t[1] for t in top}
        for item in popular:
            if len(top) < k and item not in seen and item not in listed:
                top.append((len(top) + 1, item, None, "popular"))
        out[u] = top
    return out


def test_ease_recommendations_match_numpy(spark, frame, rows):
    model = train(spark, "ease", frame, make_settings(), {"regularization": 5.0})
    users = user_sets(rows)
    item_ids = sorted({i for items in users.values() for i in items})
    user_ids = sorted(users)
    x = np.array([[1.0 if i in users[u] else 0.0 for i in item_ids] for u in user_ids])
    expected = item_based_reference(users, item_ids, ease_reference(x, 5.0), 5, popular_reference(users))
    expected["nobody"] = [(r + 1, i, None, "popular") for r, i in enumerate(popular_reference(users)[:5])]
    requested = spark.createDataFrame([(u,) for u in user_ids + ["nobody"]], f"{USER_ID} string")
    seen = frame.select(USER_ID, ITEM_ID)
    got = lists_of(recommend_for_users(spark, "ease", model.artifacts, requested, seen, 5, RECOMMEND),
                   USER_ID, ITEM_ID)
    assert_lists_equal(got, expected)
    assert all(r[3] == "model" for u in user_ids for r in got[u] if len(users[u]) <= len(item_ids) - 5)
    model.release()


def test_ease_keeps_the_most_frequent_items_up_to_max_items(spark, frame, rows):
    model = train(spark, "ease", frame, make_settings(), {"regularization": 5.0, "max_items": 4})
    users = user_sets(rows)
    kept = popular_reference(users)[:4]  # most users first, ties to the smaller ID
    idx = {r[ITEM_ID]: r[ITEM_IDX] for r in model.artifacts["item_map"].collect()}
    stored = {r[ITEM_IDX] for r in model.artifacts["item_weights"].collect()}
    assert stored == {idx[i] for i in kept}
    assert (model.stats["model_items"], model.stats["items_total"]) == (4, 12)
    ordered = sorted(kept)
    x = np.array([[1.0 if i in users[u] else 0.0 for i in ordered] for u in sorted(users)])
    expected = item_based_reference(users, ordered, ease_reference(x, 5.0), 6, popular_reference(users))
    requested = spark.createDataFrame([(u,) for u in sorted(users)], f"{USER_ID} string")
    got = lists_of(recommend_for_users(spark, "ease", model.artifacts, requested,
                                       frame.select(USER_ID, ITEM_ID), 6, RECOMMEND), USER_ID, ITEM_ID)
    assert_lists_equal(got, expected)  # model items first, then popular items outside the model
    model.release()



def rank_requests(spark, lines):
    """``[_position, USER_ID, itemList]`` request rows, one per (user, item list) line."""
    from batchrec.batch import inputs

    return spark.createDataFrame([(p, u, items) for p, (u, items) in enumerate(lines)],
                                 f"{inputs.POSITION} long, {USER_ID} string, {inputs.ITEM_LIST} array<string>")


def ranked_by_line(df):
    from batchrec.batch import inputs

    out = defaultdict(list)
    for r in df.collect():
        out[r[inputs.POSITION]].append((r["rank"], r[ITEM_ID], r["score"], r["reason"]))
    return {k: sorted(v) for k, v in out.items()}


def test_ease_ranks_item_lists_like_numpy(spark, frame, rows):
    """rank for ease: listed model items by history · B (seen ones included: ranking excludes
    nothing), ties by item ID, items the model lacks last in input order, and a user without history
    gets the popular order."""
    from batchrec.scoring.ranking import rank_lists

    model = train(spark, "ease", frame, make_settings(), {"regularization": 5.0})
    users = user_sets(rows)
    item_ids = sorted({i for items in users.values() for i in items})
    user_ids = sorted(users)
    x = np.array([[1.0 if i in users[u] else 0.0 for i in item_ids] for u in user_ids])
    scores = x @ ease_reference(x, 5.0)
    listed = ["i07", "zz", "i01", "i03", "i10", "i00", "yy"]
    lines = [(u, listed) for u in user_ids[:6]] + [("nobody", listed)]
    got = ranked_by_line(rank_lists("ease", model.artifacts, rank_requests(spark, lines), users_per_batch=3))
    for p, (u, items) in enumerate(lines):
        if u == "nobody":
            popular = popular_reference(users)
            known = sorted((i for i in items if i in popular), key=popular.index)
            expected = [(r + 1, i, None, "popular") for r, i in enumerate(known)]
        else:
            row = scores[user_ids.index(u)]
            known = sorted((-row[item_ids.index(i)], i) for i in items if i in item_ids)
            expected = [(r + 1, i, -s, "model") for r, (s, i) in enumerate(known)]
        expected += [(len(expected) + r + 1, i, None, "unscored")
                     for r, i in enumerate(i for i in items if i not in item_ids)]
        assert_lists_equal({p: got[p]}, {p: expected})
        assert [r[3] for r in got[p]] == [r[3] for r in expected]
    model.release()


# ---------------------------------------------------------------- sar

SAR_T = 1000 * DAY
SAR_ROWS = [(u, i, "click", None, SAR_T - age * DAY) for u, i, age in [
    ("u1", "A", 0), ("u1", "B", 30), ("u2", "A", 0), ("u2", "C", 0), ("u3", "B", 0), ("u3", "C", 60),
    ("u4", "C", 0), ("u4", "D", 0)]]


@pytest.mark.parametrize("similarity,expected", [
    # counts A 2, B 2, C 3, D 1; co-counts A-B 1, A-C 1, B-C 1, C-D 1.
    # jaccard: A-B 1/3, A-C 1/4, B-C 1/4, C-D 1/3; affinities (half-life 30 days):
    # u1 A 1, B 0.5; u2 A 1, C 1; u3 B 1, C 0.25; u4 C 1, D 1.
    ("jaccard", {
        "u1": [(1, "C", 1 * 0.25 + 0.5 * 0.25, "model"), (2, "D", None, "popular")],
        "u2": [(1, "B", 1 / 3 + 1 / 4, "model"), (2, "D", 1 / 3, "model")],
        "u3": [(1, "A", 1 / 3 + 0.25 / 4, "model"), (2, "D", 0.25 / 3, "model")],
        "u4": [(1, "A", 0.25, "model"), (2, "B", 0.25, "model")],  # tie: A first
        "u9": [(1, "C", None, "popular"), (2, "A", None, "popular"), (3, "B", None, "popular")],
    }),
    # lift: A-B 1/4, A-C 1/6, B-C 1/6, C-D 1/3.
    ("lift", {
        "u1": [(1, "C", 1 / 6 + 0.5 / 6, "model"), (2, "D", None, "popular")],
        "u2": [(1, "B", 1 / 4 + 1 / 6, "model"), (2, "D", 1 / 3, "model")],
        "u3": [(1, "A", 1 / 4 + 0.25 / 6, "model"), (2, "D", 0.25 / 3, "model")],
        "u4": [(1, "A", 1 / 6, "model"), (2, "B", 1 / 6, "model")],
        "u9": [(1, "C", None, "popular"), (2, "A", None, "popular"), (3, "B", None, "popular")],
    }),
])
def test_sar_scores_match_a_hand_computation(spark, similarity, expected):
    interactions = spark.createDataFrame(SAR_ROWS, SCHEMA)
    params = {"similarity": similarity, "time_decay_half_life_days": 30.0}
    model = train(spark, "sar", interactions, make_settings(), params)
    requested = spark.createDataFrame([(u,) for u in ("u1", "u2", "u3", "u4", "u9")], f"{USER_ID} string")
    got = lists_of(recommend_for_users(spark, "sar", model.artifacts, requested,
                                       interactions.select(USER_ID, ITEM_ID), 3, RECOMMEND), USER_ID, ITEM_ID)
    assert_lists_equal(got, expected)
    model.release()


def test_sar_ranks_item_lists_by_the_hand_computed_scores(spark):
    from batchrec.scoring.ranking import rank_lists

    interactions = spark.createDataFrame(SAR_ROWS, SCHEMA)
    params = {"similarity": "jaccard", "time_decay_half_life_days": 30.0}
    model = train(spark, "sar", interactions, make_settings(), params)
    lines = [("u2", ["D", "A", "B", "Q"]), ("u9", ["D", "A", "B", "Q"])]
    got = ranked_by_line(rank_lists("sar", model.artifacts, rank_requests(spark, lines)))
    # u2: A 1, C 1 (jaccard as above): B = 1/3 + 1/4, D = 1/3, A = S_CA = 1/4 (no self-similarity).
    assert got[0] == [(1, "B", pytest.approx(1 / 3 + 1 / 4), "model"), (2, "D", pytest.approx(1 / 3), "model"),
                      (3, "A", pytest.approx(1 / 4), "model"), (4, "Q", None, "unscored")]
    # u9 is unknown: the popular order (C 3, A 2, B 2, D 1 users), then the unknown item.
    assert got[1] == [(1, "A", None, "popular"), (2, "B", None, "popular"), (3, "D", None, "popular"),
                      (4, "Q", None, "unscored")]
    model.release()


def test_sar_without_decay_and_without_exclusions(spark):
    interactions = spark.createDataFrame(SAR_ROWS, SCHEMA)
    model = train(spark, "sar", interactions, make_settings(), {"time_decay_half_life_days": 0.0})
    history = {(r["user_idx"], r["item_idx"]): r["value"] for r in model.artifacts["user_history"].collect()}
    assert sorted(history.values()) == [1.0] * 8  # no decay: every affinity is the event weight
    requested = spark.createDataFrame([("u1",)], f"{USER_ID} string")
    no_exclusions = dataclasses.replace(RECOMMEND, exclude_seen=False)
    got = lists_of(recommend_for_users(spark, "sar", model.artifacts, requested, None, 4, no_exclusions),
                   USER_ID, ITEM_ID)
    # Seen items are scored too: A = B.S_BA = 1/3, B = A.S_AB = 1/3, C = 1/4 + 1/4.
    assert got["u1"] == [(1, "C", pytest.approx(0.5), "model"), (2, "A", pytest.approx(1 / 3), "model"),
                         (3, "B", pytest.approx(1 / 3), "model"), (4, "D", None, "popular")]
    model.release()


# ---------------------------------------------------------------- evaluation and parameter search

def evaluate_settings(**evaluate):
    from batchrec.config import EvaluateSettings

    return make_settings(evaluate=EvaluateSettings(**{"protocol": "stratified-item", "k": (5,), **evaluate}))


def test_ease_parameter_search_tries_regularization_values(spark, frame):
    from batchrec.evaluation import runner

    settings = evaluate_settings(hpo_trials=2, hpo_method="grid", hpo_metric="ndcg@5")
    best, trials = runner.search_parameters(spark, "ease", frame, settings)
    assert [t["params"]["regularization"] for t in trials] == [200.0, 25.0]  # defaults first, then the grid
    assert best == max(trials, key=lambda t: t["value"])["params"]
    assert all(0.0 <= t["value"] <= 1.0 for t in trials)


def test_related_items_recipes_skip_per_user_metrics_and_cannot_be_evaluated(spark, frame):
    from batchrec import cli
    from batchrec.evaluation import runner

    metrics = runner.holdout_metrics(spark, "sims", frame, evaluate_settings())
    assert metrics["skipped"] == "recipe sims relates items to items; per-user hold-out metrics do not apply"
    with pytest.raises(UsageError, match=r"--recipe similar-items relates items to items"):
        runner.check_per_user("similar-items")
    assert cli.main(["evaluate", "--interactions", "unused.csv", "--recipe", "ease", "--recipe", "sims",
                     "--report", "unused.json"]) == 2


def test_ease_beats_als_on_movielens_with_a_paired_interval_above_1(spark, movielens_ratings):
    """The published-table protocol (per-item random 75/25, K=10): EASE's default against ALS's."""
    from pyspark.sql import functions as F

    from batchrec.config import load_settings
    from batchrec.evaluation import compare, runner, splits

    base = load_settings()
    settings = dataclasses.replace(base, evaluate=dataclasses.replace(
        base.evaluate, protocol="stratified-item", k=(10,)))
    raw = spark.read.csv(str(movielens_ratings), header=True)
    frame = raw.select(F.col("userId").alias(USER_ID), F.col("movieId").alias(ITEM_ID),
                       F.col("rating").cast("double").alias("EVENT_VALUE"),
                       F.col("timestamp").cast("long").alias("TIMESTAMP"),
                       F.lit("rating").alias("EVENT_TYPE")).persist()
    split = splits.split_interactions(frame, "stratified-item", settings.evaluate, settings.prepare).persist()
    context = runner.prepare_context(frame, split, (10,), with_popularity=False)
    results = [runner.evaluate_recipe(spark, recipe, context, settings, per_user_metric="ndcg@10")
               for recipe in ("user-personalization", "ease")]
    als, ease = (r.metrics["ndcg@10"] for r in results)
    versus = compare.versus_first(results, "ndcg@10", seed=settings.evaluate.seed)[1]
    print(f"ndcg@10 als={als:.4f} ease={ease:.4f} versus={versus}")
    assert ease > als
    assert versus["low"] > 1.0
    split.unpersist()
    frame.unpersist()


def test_train_and_recommend_from_saved_versions(spark, tmp_path, rows, capsys):
    """ease through the CLI (weights written and read back as Parquet) and sims with --evaluate."""
    import json

    from batchrec import cli, registry

    data = tmp_path / "interactions.csv"
    data.write_text("USER_ID,ITEM_ID,EVENT_TYPE,TIMESTAMP\n"
                    + "".join(f"{u},{i},{e},{t}\n" for u, i, e, _, t in rows))
    small = ["--min-interactions", "10", "--min-users", "2", "--run-date", "2026-01-10"]
    ease_solution, sims_solution = str(tmp_path / "ease"), str(tmp_path / "sims")
    assert cli.main(["train", "--recipe", "ease", "--interactions", str(data), "--solution", ease_solution,
                     "--param", "regularization=5.0", "--no-evaluate", *small]) == 0
    out = str(tmp_path / "recs")
    assert cli.main(["recommend", "--solution", ease_solution, "--output", out, "--num-results", "4",
                     "--run-date", "2026-01-10"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["users"] == 30 and summary["rows"] == 120
    users = user_sets(rows)
    item_ids = sorted({i for items in users.values() for i in items})
    x = np.array([[1.0 if i in users[u] else 0.0 for i in item_ids] for u in sorted(users)])
    expected = item_based_reference(users, item_ids, ease_reference(x, 5.0), 4, popular_reference(users))
    got = lists_of(spark.read.format("delta").load(out).withColumnRenamed("user_id", USER_ID)
                   .withColumnRenamed("item_id", ITEM_ID), USER_ID, ITEM_ID)
    assert_lists_equal(got, expected)

    assert cli.main(["train", "--recipe", "sims", "--interactions", str(data), "--solution", sims_solution,
                     "--param", "min_cointeraction_count=2", "--evaluate", *small]) == 0
    version = registry.load_version(spark, sims_solution)
    assert "skipped" in version.metadata["metrics"]
    artifacts = registry.load_artifacts(spark, version)
    stored = neighbours_of(artifacts["item_neighbours"])
    caps = {k: v for k, v in resolve_params("sims", make_settings()).items() if "percentile" in k}
    assert caps["min_user_history_length_percentile"] == 0.005  # Personalize's default caps applied
    assert stored and all(len(v) <= 100 for v in stored.values())
    related = lists_of(related_items(artifacts, 3), ITEM_ID, RELATED_ITEM_ID)
    assert set(related) == set(item_ids)
    assert all([r[0] for r in lst] == [1, 2, 3] and all(r[1] != item for r in lst) for item, lst in related.items())


def test_item_based_scoring_reports_missing_or_corrupt_weights(spark, frame):
    model = train(spark, "ease", frame, make_settings(), {"regularization": 5.0, "max_items": 3})
    users = spark.createDataFrame([("u00",)], f"{USER_ID} string")
    missing = {k: v for k, v in model.artifacts.items() if k != "item_weights"}
    with pytest.raises(JobError, match=r"no 'item_weights' artifact"):
        recommend_for_users(spark, "ease", missing, users, None, 3, RECOMMEND)
    short = model.artifacts["item_weights"].selectExpr("item_idx", "slice(weights, 1, 2) AS weights")
    with pytest.raises(JobError, match=r"item_weights: each of the 3 rows must hold 3 weights"):
        recommend_for_users(spark, "ease", {**model.artifacts, "item_weights": short}, users, None, 3, RECOMMEND)
    model.release()
