"""trending-now: items whose interactions grow fastest between the last two time windows.

With ``w = window_days`` and the reference time ``T`` (end of the run date, else the latest event),
the latest window is ``(T - w, T]`` and the previous one ``(T - 2w, T - w]``. For an item with
``latest`` and ``previous`` interactions (events, not distinct users) in them::

    score = (latest - previous) / max(previous, 1)

so an item going from 0 to 3 scores 3.0, from 2 to 6 scores 2.0, from 4 to 4 scores 0.0. Only items
with at least one interaction in the latest window can trend. Order: score desc, then ``latest``
desc (more evidence first), then ITEM_ID asc. When no item has an interaction in the latest window
(in particular when both windows are empty, Personalize's rule), the trending list is the popular
list (distinct users over all the data) and ``stats["trending_fallback"]`` says so.
"""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batchrec.columns import ITEM_ID, TIMESTAMP
from batchrec.dates import SECONDS_PER_DAY
from batchrec.recipes.popularity import POPULAR_LIMIT, SCORE, popular_items, ranked

log = logging.getLogger(__name__)

LATEST = "latest_count"
PREVIOUS = "previous_count"


def train(spark, data, params: dict) -> tuple[dict, dict]:
    """``trending_items`` (top 1000) and whether it fell back to popularity."""
    counts = window_counts(data.events, data.reference_time, params["window_days"])
    if counts.where(F.col(LATEST) > 0).limit(1).count() == 0:
        log.warning("trending-now: no interaction in the latest %s days before %s; using popular items",
                    params["window_days"], data.reference_time)
        return {"trending_items": popular_items(data.events)}, {"trending_fallback": "popular"}
    return {"trending_items": trending_items(counts)}, {"trending_fallback": None}


def window_counts(events: DataFrame, reference_time: int, window_days: float) -> DataFrame:
    """Per item: interactions in the latest window and in the one before it.

    Returns:
        DataFrame[ITEM_ID, latest_count long, previous_count long] for items seen in either window.
    """
    width = int(round(window_days * SECONDS_PER_DAY))
    start_latest = reference_time - width
    start_previous = reference_time - 2 * width
    ts = F.col(TIMESTAMP)
    in_latest = (ts > F.lit(start_latest)) & (ts <= F.lit(reference_time))
    in_previous = (ts > F.lit(start_previous)) & (ts <= F.lit(start_latest))
    return (
        events.where((ts > F.lit(start_previous)) & (ts <= F.lit(reference_time)))
        .groupBy(ITEM_ID)
        .agg(F.sum(F.when(in_latest, 1).otherwise(0)).cast("long").alias(LATEST),
             F.sum(F.when(in_previous, 1).otherwise(0)).cast("long").alias(PREVIOUS))
    )


def trending_items(counts: DataFrame, limit: int = POPULAR_LIMIT) -> DataFrame:
    """Score :func:`window_counts` rows and keep the top ``limit``.

    Returns:
        DataFrame[ITEM_ID string, score double, rank int].
    """
    scored = counts.where(F.col(LATEST) > 0).withColumn(
        SCORE,
        (F.col(LATEST) - F.col(PREVIOUS)).cast("double") / F.greatest(F.col(PREVIOUS), F.lit(1)).cast("double"),
    )
    top = scored.orderBy(F.col(SCORE).desc(), F.col(LATEST).desc(), F.col(ITEM_ID).asc()).limit(limit)
    return ranked(top, SCORE, F.col(LATEST).desc())
