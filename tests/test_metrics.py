"""Ranking and list metrics: hand-computed values and Spark's own RankingMetrics as references."""

from __future__ import annotations

import math
import random

import pytest

from batchrec.columns import ITEM_ID, USER_ID
from batchrec.errors import UsageError
from batchrec.evaluation import metrics

RECS_SCHEMA = f"{USER_ID} string, rank int, {ITEM_ID} string"
TRUTH_SCHEMA = f"{USER_ID} string, {ITEM_ID} string"


def _recs(spark, lists: dict[str, list[str]]):
    rows = [(u, r + 1, item) for u, items in lists.items() for r, item in enumerate(items)]
    # Shuffle the rows so nothing depends on the order they arrive in.
    random.Random(7).shuffle(rows)
    return spark.createDataFrame(rows, RECS_SCHEMA).repartition(3)


def _truth(spark, sets: dict[str, list[str]]):
    return spark.createDataFrame([(u, i) for u, items in sets.items() for i in items], TRUTH_SCHEMA)


def test_hand_computed_values(spark):
    # u1: hits at positions 2 and 5 of 5, 2 relevant (Personalize's NDCG example: 0.6241).
    # u2: hit at 1, 3 relevant, one of them never recommended.
    recs = _recs(spark, {"u1": ["a", "b", "c", "d", "e"], "u2": ["x", "y", "z", "w", "v"]})
    truth = _truth(spark, {"u1": ["b", "e"], "u2": ["x", "q", "r"]})
    m = metrics.ranking_metrics(recs, truth, [5, 1])
    ndcg_u1 = (1 / math.log2(3) + 1 / math.log2(6)) / (1 + 1 / math.log2(3))
    ndcg_u2 = 1 / (1 + 1 / math.log2(3) + 1 / math.log2(4))
    assert ndcg_u1 == pytest.approx(0.6241, abs=1e-4)
    assert m["ndcg@5"] == pytest.approx((ndcg_u1 + ndcg_u2) / 2, abs=1e-12)
    assert m["precision@5"] == pytest.approx((2 / 5 + 1 / 5) / 2, abs=1e-12)
    assert m["recall@5"] == pytest.approx((2 / 2 + 1 / 3) / 2, abs=1e-12)
    assert m["mrr@5"] == pytest.approx((1 / 2 + 1) / 2, abs=1e-12)
    assert m["map@5"] == pytest.approx(((1 / 2 + 2 / 5) / 2 + 1 / 3) / 2, abs=1e-12)
    assert m["hit_rate@5"] == 1.0
    assert m["precision@1"] == pytest.approx(0.5)
    assert m["map@1"] == pytest.approx(0.5)
    assert m["hit_rate@1"] == pytest.approx(0.5)
    assert m["users"] == 2 and m["users_without_truth"] == 0


def test_order_comes_from_rank_not_row_order(spark):
    rows = [("u", 3, "a"), ("u", 1, "c"), ("u", 2, "b")]
    recs = spark.createDataFrame(rows, RECS_SCHEMA)
    m = metrics.ranking_metrics(recs, _truth(spark, {"u": ["c"]}), [1])
    assert m["precision@1"] == 1.0 and m["mrr@1"] == 1.0


def test_user_without_recommendations_scores_zero(spark):
    recs = _recs(spark, {"u1": ["a"]})
    m = metrics.ranking_metrics(recs, _truth(spark, {"u1": ["a"], "u2": ["a"]}), [1])
    assert m["precision@1"] == 0.5 and m["users"] == 2


def _spark_reference(spark, lists, sets, users, k):
    from pyspark.mllib.evaluation import RankingMetrics

    pairs = [(lists.get(u, []), sets.get(u, [])) for u in users]
    ref = RankingMetrics(spark.sparkContext.parallelize(pairs, 2))
    return {f"precision@{k}": ref.precisionAt(k), f"recall@{k}": ref.recallAt(k),
            f"ndcg@{k}": ref.ndcgAt(k), f"map@{k}": ref.meanAveragePrecisionAt(k)}


def test_equals_spark_ranking_metrics_on_random_fixtures(spark):
    rng = random.Random(3)
    catalog = [f"i{n}" for n in range(30)]
    lists = {f"u{n}": rng.sample(catalog, rng.randint(0, 12)) for n in range(60)}
    sets = {f"u{n}": rng.sample(catalog, rng.randint(1, 8)) for n in range(60)}
    users = sorted(sets)
    lists = {u: items for u, items in lists.items() if items}  # some users get nothing
    ours = metrics.ranking_metrics(_recs(spark, lists), _truth(spark, sets), [1, 3, 10])
    for k in (1, 3, 10):
        for name, value in _spark_reference(spark, lists, sets, users, k).items():
            assert ours[name] == pytest.approx(value, abs=1e-9), name


def test_empty_truth_counts_as_zero_like_spark(spark):
    # u2 is evaluated but has no truth: Spark keeps it in the mean with 0 for every metric.
    lists = {"u1": ["a", "b", "c"], "u2": ["a", "b"], "u3": ["x"]}
    sets = {"u1": ["a"], "u3": ["x", "y"]}
    users = spark.createDataFrame([("u1",), ("u2",), ("u3",)], f"{USER_ID} string")
    ours = metrics.ranking_metrics(_recs(spark, lists), _truth(spark, sets), [2], users=users)
    ref = _spark_reference(spark, lists, sets, ["u1", "u2", "u3"], 2)
    assert ours["users"] == 3 and ours["users_without_truth"] == 1
    assert ours["precision@2"] == pytest.approx(1 / 3, abs=1e-12)  # (1/2 + 0 + 1/2) / 3
    for name, value in ref.items():
        assert ours[name] == pytest.approx(value, abs=1e-9), name
    assert ours["mrr@2"] == pytest.approx(2 / 3) and ours["hit_rate@2"] == pytest.approx(2 / 3)


def test_no_users_gives_zeros(spark):
    empty = spark.createDataFrame([], TRUTH_SCHEMA)
    m = metrics.ranking_metrics(spark.createDataFrame([], RECS_SCHEMA), empty, [5])
    assert m["users"] == 0 and m["ndcg@5"] == 0.0


def test_list_metrics_coverage_and_popularity(spark):
    # Training: item a seen by 4 users, b by 2, c by 1, d by nobody (catalog of 4).
    train = _truth(spark, {"t1": ["a", "b", "c"], "t2": ["a", "b"], "t3": ["a"], "t4": ["a"]})
    catalog = spark.createDataFrame([("a",), ("b",), ("c",), ("d",)], f"{ITEM_ID} string")
    popularity = metrics.item_popularity(train, catalog)
    got = {r[ITEM_ID]: (r["n_users"], r["popularity_percentile"]) for r in popularity.collect()}
    assert got == {"a": (4, 1.0), "b": (2, 2 / 3), "c": (1, 1 / 3), "d": (0, 0.0)}

    recs = _recs(spark, {"u1": ["a", "c"], "u2": ["a", "d"]})
    m = metrics.list_metrics(recs, [1, 2], 4, popularity, n_train_users=4)
    assert m["coverage@1"] == 0.25 and m["coverage@2"] == 0.75 and m["coverage"] == 0.75
    # -log2(4/4), -log2(1/4), -log2(4/4), -log2(1/4) (d counts as one user)
    assert m["novelty"] == pytest.approx((0 + 2 + 0 + 2) / 4)
    assert m["popularity_percentile"] == pytest.approx((1 + 1 / 3 + 1 + 0) / 4)

    hist = metrics.popularity_histogram(recs, popularity, bins=4)
    assert hist == {"recommended": [1, 1, 0, 2], "catalog": [1, 1, 1, 1]}


def test_k_larger_than_catalogue_is_a_usage_error():
    with pytest.raises(UsageError, match=r"K=50 .*catalogue of 20 items"):
        metrics.check_k([10, 50], 20)
    with pytest.raises(UsageError, match="K=0"):
        metrics.check_k([0], 20)
    metrics.check_k([5, 20], 20)
