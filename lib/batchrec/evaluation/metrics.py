"""Ranking metrics of top-K recommendation lists against held-out interactions.

Inputs are Spark DataFrames; per-user values are computed on the executors with Spark's array
functions and only the final averages (one row) reach the driver.

Definitions, for one evaluated user with ground-truth set ``T`` and recommended list
``r_1, r_2, ...`` (ordered by ``rank`` ascending, then ``ITEM_ID``), ``hit_i = 1`` when ``r_i`` is
in ``T`` and ``H_K = sum_{i<=K} hit_i``:

* ``precision@K`` = ``H_K / K``; the divisor is K even when fewer than K items were recommended
  (Spark ``RankingMetrics.precisionAt``, Personalize ``precision_at_K``).
* ``recall@K`` = ``H_K / |T|`` (Spark ``recallAt``).
* ``ndcg@K`` = ``DCG / IDCG`` with binary gain and log2 discount: ``DCG = sum_{i<=K} hit_i /
  log2(i + 1)``, ``IDCG = sum_{i<=min(|T|, K)} 1 / log2(i + 1)`` (Spark ``ndcgAt`` uses ln; the base
  cancels. Personalize's ``1/log(1 + position)`` is the same weighting).
* ``mrr@K`` = ``1 / i`` for the first hit at position ``i <= K``, else 0 (Personalize
  ``mean_reciprocal_rank_at_25``).
* ``map@K`` = ``sum_{i<=K} hit_i * H_i / i`` divided by ``min(|T|, K)`` (Spark
  ``meanAveragePrecisionAt``; not the ``min(K, |rel|)``-free variants of other libraries).
* ``hit_rate@K`` = 1 when ``H_K > 0``, else 0.

Each metric is the arithmetic mean over the evaluated users. **Users with an empty truth set** are
counted the way Spark's ``RankingMetrics`` counts them: they stay in the denominator with the value
0 for every metric (Spark logs a warning for each; we log one line with their number). The protocols
in :mod:`batchrec.evaluation.splits` only evaluate users with a non-empty truth, so this arises only
when a caller passes ``users`` explicitly. Users without any recommendation score 0. Recommended
lists are deduplicated per (user, item) before scoring.

List-level metrics (over every recommended (user, item) pair of the top ``max(K)``):

* ``coverage`` = distinct recommended items / items in the catalog (interactions and items
  datasets, Personalize's ``coverage``); ``coverage@K`` uses only the top K of each list.
* ``novelty`` = mean self-information ``-log2(p_i)`` of recommended items, with ``p_i`` = the
  fraction of training users who interacted with item ``i`` (items nobody trained on count as one
  user, so the value stays finite). Higher means less popular items.
* ``popularity_percentile`` = mean percentile rank (0 = least, 1 = most popular) among catalog
  items, by the number of training users, of the recommended items.
"""

from __future__ import annotations

import logging
import math
from typing import Optional, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from batchrec.columns import ITEM_ID, USER_ID
from batchrec.errors import UsageError

log = logging.getLogger(__name__)

RANK = "rank"
RANKED_METRICS = ("precision", "recall", "ndcg", "mrr", "map", "hit_rate")
POPULARITY_USERS = "n_users"
POPULARITY_PERCENTILE = "popularity_percentile"
_RECS = "_recs"
_TRUTH = "_truth"
_HITS = "_hits"
_EMPTY_TRUTH = "_empty_truth"


def metric_names(ks: Sequence[int]) -> list[str]:
    """Names of the per-K metrics in report order, e.g. ``precision@5``."""
    return [f"{name}@{k}" for name in RANKED_METRICS for k in sorted(ks)]


def check_k(ks: Sequence[int], catalog_size: int) -> None:
    """Refuse cut-offs that cannot be filled from the catalogue.

    Raises:
        UsageError: a K is below 1 or larger than the number of items in the catalogue.
    """
    if not ks:
        raise UsageError("no cut-off K given; expected e.g. --k 5,10,25")
    bad = [k for k in ks if k < 1 or k > catalog_size]
    if bad:
        raise UsageError(
            f"K={bad[0]} is larger than the catalogue of {catalog_size} items (or below 1); "
            f"expected 1 <= K <= {catalog_size}"
        )


def _ideal_dcg_table(k: int) -> Column:
    """Literal array whose element ``n + 1`` is the ideal DCG of ``n`` relevant items (n <= k)."""
    values, total = [0.0], 0.0
    for i in range(1, k + 1):
        total += 1.0 / math.log2(i + 1)
        values.append(total)
    return F.array(*[F.lit(v) for v in values])


def _per_user(recommendations: DataFrame, truth: DataFrame, users: Optional[DataFrame],
              max_k: int) -> DataFrame:
    """One row per evaluated user: ordered recommended items and the truth items."""
    recs = (
        recommendations.select(USER_ID, RANK, ITEM_ID)
        .groupBy(USER_ID, ITEM_ID).agg(F.min(RANK).alias(RANK))  # one entry per item
        .groupBy(USER_ID)
        # Sorting an array of (rank, item) structs fixes the order; collect_list alone does not.
        .agg(F.array_sort(F.collect_list(F.struct(RANK, ITEM_ID))).alias(_RECS))
        .select(USER_ID, F.slice(F.col(_RECS), 1, max_k).getField(ITEM_ID).alias(_RECS))
    )
    truth_sets = truth.select(USER_ID, ITEM_ID).groupBy(USER_ID).agg(
        F.collect_set(ITEM_ID).alias(_TRUTH))
    evaluated = truth_sets.select(USER_ID) if users is None else users.select(USER_ID).distinct()
    empty = F.array().cast("array<string>")
    return (
        evaluated.join(truth_sets, USER_ID, "left")
        .join(recs, USER_ID, "left")
        .select(
            USER_ID,
            F.coalesce(F.col(_TRUTH), empty).alias(_TRUTH),
            F.coalesce(F.col(_RECS), empty).alias(_RECS),
        )
        .withColumn(_HITS, F.transform(
            _RECS, lambda item: F.array_contains(F.col(_TRUTH), item).cast("int")))
    )


def _user_metrics(k: int) -> dict[str, Column]:
    """Per-user metric columns at cut-off ``k`` over the columns built by :func:`_per_user`."""
    hits = F.slice(F.col(_HITS), 1, k)
    n_hits = F.aggregate(hits, F.lit(0), lambda acc, h: acc + h)
    n_truth = F.size(_TRUTH)
    bounded = F.least(n_truth, F.lit(k))
    dcg = F.aggregate(
        F.transform(hits, lambda h, i: h / F.log2(i + 2)), F.lit(0.0), lambda acc, g: acc + g)
    idcg = F.element_at(_ideal_dcg_table(k), bounded + 1)
    # H_i / i at every hit: the precision at each relevant position.
    precisions = F.transform(
        hits, lambda h, i: h * F.aggregate(F.slice(hits, 1, i + 1), F.lit(0), lambda a, x: a + x)
        / (i + 1))
    first_hit = F.array_position(hits, 1)
    return {
        f"precision@{k}": n_hits / F.lit(float(k)),
        f"recall@{k}": F.when(n_truth > 0, n_hits / n_truth).otherwise(0.0),
        f"ndcg@{k}": F.when(idcg > 0, dcg / idcg).otherwise(0.0),
        f"mrr@{k}": F.when(first_hit > 0, 1.0 / first_hit).otherwise(0.0),
        f"map@{k}": F.when(bounded > 0, F.aggregate(precisions, F.lit(0.0), lambda a, x: a + x)
                           / bounded).otherwise(0.0),
        f"hit_rate@{k}": (n_hits > 0).cast("double"),
    }


def per_user_metrics(recommendations: DataFrame, truth: DataFrame, ks: Sequence[int],
                     users: Optional[DataFrame] = None) -> DataFrame:
    """Every ranking metric at every cut-off for each evaluated user (arguments as in
    :func:`ranking_metrics`): ``USER_ID`` and one double column per :func:`metric_names` entry."""
    ks = sorted(set(ks))
    per_user = _per_user(recommendations, truth, users, max(ks))
    values = {name: column for k in ks for name, column in _user_metrics(k).items()}
    return per_user.select(USER_ID, *[c.alias(name) for name, c in values.items()],
                           (F.size(_TRUTH) == 0).alias(_EMPTY_TRUTH))


def ranking_metrics(recommendations: DataFrame, truth: DataFrame, ks: Sequence[int],
                    users: Optional[DataFrame] = None) -> dict[str, float]:
    """Mean per-user ranking metrics at every cut-off (definitions in the module docstring).

    Args:
        recommendations: ``USER_ID, rank, ITEM_ID`` (rank 1 = best); extra columns are ignored.
        truth: ``USER_ID, ITEM_ID``, the relevant held-out items.
        ks: cut-offs, e.g. ``(5, 10, 25)``.
        users: ``USER_ID`` of the users to average over; default every user present in ``truth``.
            Users listed here without truth count as 0 (as in Spark's ``RankingMetrics``).

    Returns:
        ``{"precision@5": ..., ..., "users": n, "users_without_truth": m}``; every metric is 0.0
        when there is no user to evaluate.
    """
    return mean_metrics(per_user_metrics(recommendations, truth, ks, users), ks)


def mean_metrics(per_user: DataFrame, ks: Sequence[int]) -> dict[str, float]:
    """The averages of :func:`per_user_metrics` rows, as returned by :func:`ranking_metrics`."""
    names = metric_names(ks)
    row = per_user.agg(
        F.count(F.lit(1)).alias("users"),
        F.sum(F.col(_EMPTY_TRUTH).cast("long")).alias("users_without_truth"),
        *[F.avg(name).alias(name) for name in names]).first().asDict()
    result = {name: float(row[name] or 0.0) for name in names}
    result["users"] = int(row["users"])
    result["users_without_truth"] = int(row["users_without_truth"] or 0)
    if result["users_without_truth"]:
        log.warning("%d evaluated users have an empty truth set; each counts as 0",
                    result["users_without_truth"])
    return result


def item_popularity(train: DataFrame, catalog: DataFrame) -> DataFrame:
    """Popularity of every catalogue item in the training data.

    Args:
        train: interactions with ``USER_ID, ITEM_ID``.
        catalog: ``ITEM_ID`` of every item (interactions and items datasets).

    Returns:
        ``ITEM_ID, n_users`` (distinct training users, 0 for unseen items) and
        ``popularity_percentile`` (``percent_rank`` by ``n_users``; ties share a value).
    """
    counts = train.groupBy(ITEM_ID).agg(F.countDistinct(USER_ID).alias(POPULARITY_USERS))
    # One global window over the catalogue: items are few next to interactions.
    order = Window.orderBy(POPULARITY_USERS)
    return (
        catalog.select(ITEM_ID).distinct()
        .join(counts, ITEM_ID, "left")
        .fillna(0, [POPULARITY_USERS])
        .withColumn(POPULARITY_PERCENTILE, F.percent_rank().over(order))
    )


def list_metrics(recommendations: DataFrame, ks: Sequence[int], catalog_size: int,
                 popularity: Optional[DataFrame] = None,
                 n_train_users: Optional[int] = None) -> dict[str, float]:
    """Coverage and popularity bias of the recommended lists (definitions in the module docstring).

    Args:
        recommendations: ``USER_ID, rank, ITEM_ID``.
        ks: cut-offs; ``coverage`` uses the largest, ``coverage@K`` each.
        catalog_size: number of distinct items in the catalogue.
        popularity: :func:`item_popularity` output, for ``novelty`` and ``popularity_percentile``.
        n_train_users: distinct users in the training data (required with ``popularity``).
    """
    ks = sorted(set(ks))
    ranked = recommendations.select(
        USER_ID, ITEM_ID,
        F.row_number().over(Window.partitionBy(USER_ID).orderBy(RANK, ITEM_ID)).alias("_pos"))
    ranked = ranked.where(F.col("_pos") <= max(ks))
    columns = [F.countDistinct(F.when(F.col("_pos") <= k, F.col(ITEM_ID))).alias(f"coverage@{k}")
               for k in ks]
    if popularity is not None:
        ranked = ranked.join(popularity, ITEM_ID, "left")
        share = F.greatest(F.coalesce(F.col(POPULARITY_USERS), F.lit(0)), F.lit(1)) / float(
            max(n_train_users or 1, 1))
        columns += [F.avg(-F.log2(share)).alias("novelty"),
                    F.avg(F.coalesce(F.col(POPULARITY_PERCENTILE), F.lit(0.0)))
                    .alias(POPULARITY_PERCENTILE)]
    row = ranked.agg(*columns).first().asDict()
    out = {f"coverage@{k}": row[f"coverage@{k}"] / catalog_size if catalog_size else 0.0
           for k in ks}
    out["coverage"] = out[f"coverage@{max(ks)}"]
    if popularity is not None:
        out["novelty"] = float(row["novelty"] or 0.0)
        out[POPULARITY_PERCENTILE] = float(row[POPULARITY_PERCENTILE] or 0.0)
    return out


def popularity_histogram(recommendations: DataFrame, popularity: DataFrame,
                         bins: int = 20) -> dict[str, list[int]]:
    """Counts per popularity-percentile bin of recommended (user, item) pairs and of catalogue items.

    Returns:
        ``{"recommended": [...], "catalog": [...]}``, ``bins`` counts each (bin 0 = least popular);
        small enough for the driver whatever the data size.
    """
    bucket = F.least(F.floor(F.col(POPULARITY_PERCENTILE) * bins), F.lit(bins - 1)).cast("int")
    recommended = (recommendations.select(ITEM_ID).join(popularity, ITEM_ID)
                   .groupBy(bucket.alias("b")).count().collect())
    catalog = popularity.groupBy(bucket.alias("b")).count().collect()

    def dense(rows) -> list[int]:
        counts = [0] * bins
        for r in rows:
            counts[r["b"]] = int(r["count"])
        return counts

    return {"recommended": dense(recommended), "catalog": dense(catalog)}
