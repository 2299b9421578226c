"""Recipes: popularity and trending scores by hand, ALS recovering a planted two-group structure."""

from __future__ import annotations

import numpy as np
import pytest

from batchrec.columns import ITEM_ID, ITEM_IDX, USER_ID, USER_IDX
from batchrec.config import AlsSettings, PrepareSettings, Settings, TrendingSettings
from batchrec.errors import DataError, UsageError
from batchrec.recipes import als, resolve_params, train_recipe
from batchrec.recipes.trending import trending_items, window_counts

DAY = 86400
SCHEMA = "USER_ID string, ITEM_ID string, EVENT_TYPE string, EVENT_VALUE double, TIMESTAMP long"


def train(spark, recipe, events, settings, params=None, **kwargs):
    """train_recipe with the settings' [prepare] section and the recipe's resolved parameters."""
    return train_recipe(spark, recipe, events, settings.prepare, resolve_params(recipe, settings, params),
                        **kwargs)


def make_settings(**sections) -> Settings:
    sections.setdefault("prepare", PrepareSettings(max_user_history_length_percentile=1.0))
    return Settings(**sections)


def rows_of(df, *cols):
    return [tuple(r[c] for c in cols) for r in df.orderBy("rank").collect()]


# ---------------------------------------------------------------- popularity-count

POPULARITY_ROWS = [
    ("u1", "i2", "click", None, 1), ("u1", "i2", "click", None, 2),  # repeats count once per user
    ("u2", "i2", "purchase", None, 3), ("u3", "i2", "click", None, 4),
    ("u1", "i1", "purchase", None, 5), ("u2", "i1", "click", None, 6),
    ("u1", "i3", "purchase", None, 7), ("u2", "i3", "purchase", None, 8),
    ("u3", "i4", "click", None, 9),
]


@pytest.fixture(scope="module")
def popularity_events(spark):
    return spark.createDataFrame(POPULARITY_ROWS, SCHEMA)


def test_popularity_counts_distinct_users_ties_by_item_id(spark, popularity_events):
    model = train(spark, "popularity-count", popularity_events, make_settings())
    # i2: u1,u2,u3 = 3; i1 and i3: 2 each (tie -> i1 first); i4: 1.
    assert rows_of(model.artifacts["popular_items"], ITEM_ID, "score", "rank") == [
        ("i2", 3.0, 1), ("i1", 2.0, 2), ("i3", 2.0, 3), ("i4", 1.0, 4)]
    assert model.stats["interactions"] == 9
    assert model.stats["users"] == 3 and model.stats["items"] == 4
    assert (model.stats["first_timestamp"], model.stats["last_timestamp"]) == (1, 9)
    assert set(model.artifacts) == {"user_map", "item_map", "popular_items", "item_stats", "seen_items"}
    # Seen pairs keep every distinct (user, item, event type), whatever preparation keeps.
    seen = {tuple(r) for r in model.artifacts["seen_items"].collect()}
    assert seen == {(u, i, e) for u, i, e, _, _ in POPULARITY_ROWS} and len(seen) == 8
    model.release()


def test_popularity_of_one_event_type(spark, popularity_events):
    model = train(spark, "popularity-count", popularity_events, make_settings(),
                         params={"event_type": "PURCHASE"})
    # purchases: i3 by u1,u2; i1 by u1; i2 by u2.
    assert rows_of(model.artifacts["popular_items"], ITEM_ID, "score", "rank") == [
        ("i3", 2.0, 1), ("i1", 1.0, 2), ("i2", 1.0, 3)]
    assert model.params == {"event_type": "PURCHASE"}


def test_popularity_of_an_absent_event_type_is_a_data_error(spark, popularity_events):
    with pytest.raises(DataError, match=r"event_type='refund': no interaction of this type"):
        train(spark, "popularity-count", popularity_events, make_settings(),
                     params={"event_type": "refund"})


def test_item_stats_include_catalog_items_without_interactions(spark, popularity_events):
    items = spark.createDataFrame([("i1", 100), ("i9", 200)], "ITEM_ID string, CREATION_TIMESTAMP long")
    model = train(spark, "popularity-count", popularity_events, make_settings(), items=items)
    stats = {r[ITEM_ID]: (r[ITEM_IDX], r["n_interactions"], r["first_timestamp"], r["creation_timestamp"])
             for r in model.artifacts["item_stats"].collect()}
    assert stats == {"i1": (0, 2, 5, 100), "i2": (1, 4, 1, None), "i3": (2, 2, 7, None),
                     "i4": (3, 1, 9, None), "i9": (None, 0, None, 200)}


def test_no_interaction_left_after_preparation_is_a_data_error(spark, popularity_events):
    settings = make_settings(prepare=PrepareSettings(event_types=("refund",)))
    with pytest.raises(DataError, match="no interactions left after preparation"):
        train(spark, "popularity-count", popularity_events, settings)


# ---------------------------------------------------------------- trending-now

REF = 10 * DAY
TRENDING_ROWS = (
    # window 2 days: latest (8d, 10d], previous (6d, 8d]
    [("u", "x", "click", None, 9 * DAY)] * 3                                   # 0 -> 3: 3.0
    + [("u", "y", "click", None, 7 * DAY)] * 2 + [("u", "y", "click", None, 9 * DAY)] * 6   # 2 -> 6: 2.0
    + [("u", "z", "click", None, 7 * DAY)] * 4 + [("u", "z", "click", None, 10 * DAY)] * 4  # 4 -> 4: 0.0
    + [("u", "w", "click", None, 7 * DAY)]                                      # 1 -> 0: not trending
    + [("u", "v", "click", None, 8 * DAY + 1)]                                  # 0 -> 1: 1.0
    + [("u", "t", "click", None, 8 * DAY)] + [("u", "t", "click", None, 9 * DAY)] * 2  # 1 -> 2: 1.0
    + [("u", "x", "click", None, 1 * DAY)] * 5                                  # too old to count
)


def test_window_counts_and_scores_by_hand(spark):
    events = spark.createDataFrame(TRENDING_ROWS, SCHEMA)
    counts = {r[ITEM_ID]: (r["latest_count"], r["previous_count"])
              for r in window_counts(events, REF, 2.0).collect()}
    assert counts == {"x": (3, 0), "y": (6, 2), "z": (4, 4), "w": (0, 1), "v": (1, 0), "t": (2, 1)}
    top = trending_items(window_counts(events, REF, 2.0))
    # t and v tie at 1.0: t has more interactions in the latest window.
    assert rows_of(top, ITEM_ID, "score", "rank") == [
        ("x", 3.0, 1), ("y", 2.0, 2), ("t", 1.0, 3), ("v", 1.0, 4), ("z", 0.0, 5)]


def test_trending_recipe_uses_reference_time_and_window_param(spark):
    events = spark.createDataFrame(TRENDING_ROWS, SCHEMA)
    model = train(spark, "trending-now", events, make_settings(), params={"window_days": 2},
                         reference_time=REF)
    assert [r[0] for r in rows_of(model.artifacts["trending_items"], ITEM_ID)] == ["x", "y", "t", "v", "z"]
    assert model.stats["trending_fallback"] is None and model.params == {"window_days": 2.0}
    assert {"popular_items", "item_map", "user_map", "item_stats"} <= set(model.artifacts)


def test_trending_falls_back_to_popularity_when_the_windows_are_empty(spark):
    events = spark.createDataFrame(TRENDING_ROWS, SCHEMA)
    settings = make_settings(trending=TrendingSettings(window_days=1.0))
    model = train(spark, "trending-now", events, settings, reference_time=REF + 30 * DAY)
    assert model.stats["trending_fallback"] == "popular"
    assert rows_of(model.artifacts["trending_items"], ITEM_ID, "score") == \
        rows_of(model.artifacts["popular_items"], ITEM_ID, "score")


# ---------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    "recipe, params, message",
    [
        ("user-personalization", {"ranks": 8}, r"unknown parameter 'ranks' for recipe user-personalization; "
         r"valid parameters: alpha, cgKernel, cgMaxBroadcastMb, cgSteps, checkpointInterval, maxIter, nonnegative, "
         r"numItemBlocks, numUserBlocks, rank, regParam, regularization, seed, solver"),
        ("user-personalization", {"rank": "big"}, r"rank='big' .* has type str; expected int"),
        ("user-personalization", {"rank": 8.5}, r"rank=8.5 .* has type float; expected int"),
        ("user-personalization", {"nonnegative": 1}, r"nonnegative=1 .* expected bool"),
        ("user-personalization", {"rank": 0}, r"rank=0 for recipe user-personalization; expected int >= 1"),
        ("trending-now", {"window_days": 0}, r"window_days=0.0 for recipe trending-now; expected float > 0.0"),
        ("popularity-count", {"rank": 8}, r"unknown parameter 'rank' for recipe popularity-count; "
         r"valid parameters: event_type"),
        ("no-such-recipe", {}, r"unknown recipe 'no-such-recipe'; expected one of user-personalization, "
         r"popularity-count, trending-now"),
    ],
)
def test_bad_parameters_are_usage_errors(recipe, params, message):
    with pytest.raises(UsageError, match=message):
        resolve_params(recipe, Settings(), params)


def test_params_overlay_settings_and_ints_are_accepted_for_floats():
    params = resolve_params("user-personalization", Settings(als=AlsSettings(rank=16)), {"regParam": 1})
    assert params["rank"] == 16 and params["regParam"] == 1.0 and isinstance(params["regParam"], float)


# ---------------------------------------------------------------- user-personalization (ALS)

# MLlib's solver explicitly: these tests check its block counts, its checkpoints and its own
# recommendations (the default solver is cg, tested in test_als_cg.py).
ALS_PARAMS = {"rank": 4, "maxIter": 10, "regParam": 0.01, "alpha": 5.0, "seed": 7,
              "checkpointInterval": -1, "solver": "mllib"}


def two_group_events(spark):
    """Users u00-u09 like items A0-A5, users u10-u19 like B0-B5; each skips one item of its group."""
    rows = []
    for user in range(20):
        group = "A" if user < 10 else "B"
        skipped = user % 6
        for item in range(6):
            if item != skipped:
                rows.append((f"u{user:02d}", f"{group}{item}", "click", None, user * 10 + item))
    return spark.createDataFrame(rows, SCHEMA)


def test_als_recovers_planted_groups(spark):
    events = two_group_events(spark)
    model = train(spark, "user-personalization", events, make_settings(), params=ALS_PARAMS)
    arts = model.artifacts
    assert dict(arts["user_factors"].dtypes) == {USER_IDX: "int", "features": "array<float>"}
    users = {r[USER_ID]: r[USER_IDX] for r in arts["user_map"].collect()}
    items = {r[ITEM_IDX]: r[ITEM_ID] for r in arts["item_map"].collect()}
    U = np.zeros((len(users), 4))
    V = np.zeros((len(items), 4))
    for r in arts["user_factors"].collect():
        U[r[USER_IDX]] = r["features"]
    for r in arts["item_factors"].collect():
        V[r[ITEM_IDX]] = r["features"]
    scores = U @ V.T
    seen = {(r[USER_ID], r[ITEM_ID]) for r in events.collect()}
    for user, u in users.items():
        unseen = [j for j in np.argsort(-scores[u]) if (user, items[j]) not in seen]
        group = "A" if int(user[1:]) < 10 else "B"
        assert items[unseen[0]][0] == group, (user, items[unseen[0]])
        assert items[unseen[0]] == f"{group}{int(user[1:]) % 6}"  # the one item of its group it skipped
    assert model.stats["numUserBlocks_used"] == spark.sparkContext.defaultParallelism
    model.release()


def test_factor_artifacts_reproduce_mllib_recommendations(spark):
    events = two_group_events(spark)
    model = train(spark, "popularity-count", events, make_settings())
    user_map, item_map = model.artifacts["user_map"], model.artifacts["item_map"]
    from batchrec.datasets.prepare import prepare_interactions

    prepared = prepare_interactions(events, make_settings().prepare)
    params = resolve_params("user-personalization", Settings(), ALS_PARAMS)
    fitted = als.fit(spark, als.ratings(prepared, user_map, item_map), params)
    arts = als.factor_artifacts(fitted)
    V = {r[ITEM_IDX]: np.array(r["features"], dtype=np.float64) for r in arts["item_factors"].collect()}
    U = {r[USER_IDX]: np.array(r["features"], dtype=np.float64) for r in arts["user_factors"].collect()}
    subset = spark.createDataFrame([(0,), (13,)], f"{USER_IDX} int")
    reference = fitted.recommendForUserSubset(subset, 5).collect()
    assert len(reference) == 2
    for row in reference:
        for rec in row["recommendations"]:
            ours = float(U[row[USER_IDX]] @ V[rec[ITEM_IDX]])
            assert ours == pytest.approx(rec["rating"], rel=1e-4, abs=1e-5)


def test_long_runs_checkpoint_into_the_given_directory(spark, tmp_path):
    if spark.sparkContext.getCheckpointDir():
        pytest.skip("a checkpoint directory is already set in this session")
    events = two_group_events(spark)
    params = {**ALS_PARAMS, "maxIter": 3, "checkpointInterval": 2, "rank": 2}
    model = train(spark, "user-personalization", events, make_settings(), params=params,
                         checkpoint_dir=str(tmp_path / "ckpt"))
    assert model.artifacts["user_factors"].count() == 20
    # ALS checkpointed into the given folder, and the session's checkpoint setting was restored.
    assert list((tmp_path / "ckpt").glob("*/rdd-*"))
    assert spark.sparkContext.getCheckpointDir() is None
