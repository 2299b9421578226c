"""Exploration of young, little-seen items for user-personalization (Personalize's knobs).

Personalize exposes ``explorationWeight`` (0 to 1) and ``explorationItemAgeCutOff`` (days). batchrec
gives them one explicit meaning: an item younger than the cut-off gets a score bonus

    bonus = weight * score_scale / (1 + n_interactions)

added to every user's model score of that item, where

* the age is ``reference_time - CREATION_TIMESTAMP`` (the items dataset's, else the one stored in
  ``item_stats``, else the item's first interaction), and an item is young when ``age < cut_off``;
  an item with no timestamp at all is never young;
* ``n_interactions`` is the item's interaction count in the training data (0 when unknown);
* ``score_scale`` is the median user-factor norm times the median item-factor norm, the typical
  size of a dot product, so the weight means the same on every model.

At weight 0 there is no bonus and scoring is unchanged. The default is 0 (off), unlike Personalize's
0.3: unwanted new or irrelevant items surfacing in campaigns is the complaint teams raise most about
exploration. Only items with factors can be explored (an item must be in the model to be scored).
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np
from pyspark.sql import DataFrame, functions as F

from batchrec.columns import CREATION_TIMESTAMP, ITEM_ID, ITEM_IDX
from batchrec.dates import SECONDS_PER_DAY
from batchrec.errors import UsageError

log = logging.getLogger(__name__)

BONUS = "bonus"
N_INTERACTIONS = "n_interactions"
FIRST_TIMESTAMP = "first_timestamp"
STATS_CREATION_TIMESTAMP = "creation_timestamp"
FEATURES = "features"
NORM_ACCURACY = 1000


def check_exploration(weight: float, cut_off_days: float) -> None:
    """Raise UsageError unless ``0 <= weight <= 1`` and ``cut_off_days > 0``."""
    if not 0.0 <= weight <= 1.0:
        raise UsageError(f"exploration_weight = {weight}; expected a number from 0 to 1")
    if not cut_off_days > 0:
        raise UsageError(f"exploration_item_age_cut_off = {cut_off_days}; expected days > 0")


def exploration_bonus(
    item_stats: DataFrame,
    weight: float,
    cut_off_days: float,
    reference_time: int,
    score_scale: float,
    items: Optional[DataFrame] = None,
) -> DataFrame:
    """Bonus per young item (see the module docstring for the formula).

    Args:
        item_stats: ``[ITEM_ID, item_idx, n_interactions, first_timestamp, creation_timestamp]``.
        weight: exploration weight, 0 to 1.
        cut_off_days: items younger than this many days are explored.
        reference_time: "now" in epoch seconds (the end of the run date for batch jobs).
        score_scale: typical model score, see :func:`score_scale`.
        items: the items dataset ``[ITEM_ID, CREATION_TIMESTAMP]``, fresher than ``item_stats``.

    Returns:
        ``[item_idx, bonus]`` for young items with an index; other items get no row.
    """
    check_exploration(weight, cut_off_days)
    stats = item_stats.where(F.col(ITEM_IDX).isNotNull())
    created = F.col(STATS_CREATION_TIMESTAMP)
    if items is not None and CREATION_TIMESTAMP in items.columns:
        fresh = (items.groupBy(ITEM_ID)
                 .agg(F.max(CREATION_TIMESTAMP).alias("_fresh_created")))
        stats = stats.join(fresh, ITEM_ID, "left")
        created = F.coalesce(F.col("_fresh_created"), created)
    born = F.coalesce(created, F.col(FIRST_TIMESTAMP))
    age_days = (F.lit(int(reference_time)) - born) / F.lit(SECONDS_PER_DAY)
    bonus = F.lit(float(weight) * float(score_scale)) / (1.0 + F.coalesce(F.col(N_INTERACTIONS), F.lit(0)))
    return (stats.where(born.isNotNull() & (age_days < F.lit(float(cut_off_days))))
            .select(F.col(ITEM_IDX).cast("int").alias(ITEM_IDX), bonus.cast("double").alias(BONUS))
            .where(F.col(BONUS) > 0))


def score_scale(user_factors: DataFrame, item_vectors: np.ndarray) -> float:
    """Median user-factor norm times median item-factor norm: the typical size of a score.

    One pass over the user factors (approximate median on the executors); the item vectors are
    already on the driver.
    """
    norm = F.sqrt(F.aggregate(F.col(FEATURES), F.lit(0.0), lambda acc, x: acc + x * x))
    row = user_factors.select(F.percentile_approx(norm, 0.5, NORM_ACCURACY).alias("m")).first()
    user_median = float(row["m"]) if row and row["m"] is not None else 0.0
    item_median = float(np.median(np.linalg.norm(item_vectors, axis=1))) if len(item_vectors) else 0.0
    scale = user_median * item_median
    log.info("exploration score_scale=%.6g (user norm %.4g x item norm %.4g)", scale, user_median, item_median)
    return scale
