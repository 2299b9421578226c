"""popularity-count: items ranked by the number of distinct users who interacted with them.

As Personalize's Popularity-Count: "the items with the most interactions data from unique users",
the same list for every user. Ties go to the smaller ITEM_ID. Optionally only one event type counts
(``[popularity] event_type`` or ``--param event_type=purchase``).

This module also builds the two artifacts every recipe stores: ``popular_items`` (the backfill for
users without history) and ``item_stats`` (what exploration needs to know about each item).
"""

from __future__ import annotations

from typing import Optional

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from batchrec.columns import CREATION_TIMESTAMP, EVENT_TYPE, ITEM_ID, ITEM_IDX, TIMESTAMP, USER_ID
from batchrec.errors import DataError

POPULAR_LIMIT = 1000  # more than the largest --num-results (500)
SCORE = "score"
RANK = "rank"
N_INTERACTIONS = "n_interactions"
FIRST_TIMESTAMP = "first_timestamp"
ITEM_STATS_CREATION = "creation_timestamp"

def train(spark, data, params: dict) -> tuple[dict, dict]:
    """The recipe's own artifacts: ``popular_items`` is built by ``train_recipe`` for every recipe.

    Raises:
        DataError: no interaction has the requested event type.
    """
    if params.get("event_type"):
        kept = _of_type(data.events, params["event_type"]).limit(1).count()
        if kept == 0:
            raise DataError(f"popularity event_type={params['event_type']!r}: no interaction of this "
                            f"type is left after preparation")
    return {}, {}


def popular_items(events: DataFrame, limit: int = POPULAR_LIMIT, event_type: Optional[str] = None) -> DataFrame:
    """The ``limit`` items with the most distinct users.

    Args:
        events: interactions with USER_ID, ITEM_ID (and EVENT_TYPE when ``event_type`` is given).
        limit: how many items to keep.
        event_type: count only interactions of this type (case-insensitive).

    Returns:
        DataFrame[ITEM_ID string, score double (distinct users), rank int (1 = most popular)].
    """
    if event_type:
        events = _of_type(events, event_type)
    top = (
        events.groupBy(ITEM_ID)
        .agg(F.countDistinct(USER_ID).cast("double").alias(SCORE))
        .orderBy(F.col(SCORE).desc(), F.col(ITEM_ID).asc())
        .limit(limit)
    )
    return ranked(top, SCORE)


def ranked(top: DataFrame, score: str, *tie_breakers) -> DataFrame:
    """Add ``rank`` (1, 2, ...) by ``score`` desc, then ``tie_breakers``, then ITEM_ID asc.

    ``top`` must already be small (a limited top list): the window has no partition.
    """
    order = [F.col(score).desc(), *tie_breakers, F.col(ITEM_ID).asc()]
    return (
        top.coalesce(1)
        .withColumn(RANK, F.row_number().over(Window.orderBy(*order)).cast("int"))
        .select(ITEM_ID, F.col(score).cast("double").alias(SCORE), RANK)
    )


def item_stats(events: DataFrame, item_map: DataFrame, items: Optional[DataFrame] = None) -> DataFrame:
    """Per-item interaction count, first interaction and creation time (for exploration).

    Items of the items dataset nobody interacted with are included with ``n_interactions`` 0 and a
    null ``item_idx``/``first_timestamp``: they are the coldest items of all.

    Returns:
        DataFrame[ITEM_ID string, item_idx int, n_interactions long, first_timestamp long,
        creation_timestamp long].
    """
    counts = events.groupBy(ITEM_ID).agg(
        F.count(F.lit(1)).cast("long").alias(N_INTERACTIONS),
        F.min(TIMESTAMP).cast("long").alias(FIRST_TIMESTAMP),
    )
    stats = counts.join(item_map.select(ITEM_ID, ITEM_IDX), ITEM_ID, "left")
    if items is not None and CREATION_TIMESTAMP in items.columns:
        catalog = items.select(ITEM_ID, F.col(CREATION_TIMESTAMP).cast("long").alias(ITEM_STATS_CREATION))
        catalog = catalog.groupBy(ITEM_ID).agg(F.max(ITEM_STATS_CREATION).alias(ITEM_STATS_CREATION))
        stats = stats.join(catalog, ITEM_ID, "full_outer")
    else:
        stats = stats.withColumn(ITEM_STATS_CREATION, F.lit(None).cast("long"))
    return stats.select(
        ITEM_ID,
        F.col(ITEM_IDX).cast("int").alias(ITEM_IDX),
        F.coalesce(F.col(N_INTERACTIONS), F.lit(0)).cast("long").alias(N_INTERACTIONS),
        F.col(FIRST_TIMESTAMP).cast("long").alias(FIRST_TIMESTAMP),
        F.col(ITEM_STATS_CREATION).cast("long").alias(ITEM_STATS_CREATION),
    )


def _of_type(events: DataFrame, event_type: str) -> DataFrame:
    if EVENT_TYPE not in events.columns:
        raise DataError(f"popularity event_type={event_type!r} but the interactions have no "
                        f"{EVENT_TYPE} column")
    return events.where(F.lower(F.col(EVENT_TYPE)) == F.lit(event_type.lower()))
