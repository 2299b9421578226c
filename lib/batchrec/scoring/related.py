"""Top-N related items per query item from a solution version's ``item_neighbours``.

For each query item (every item of the model, or the given ``[ITEM_ID]`` rows): its stored
neighbours by score descending then related item ID ascending (reason ``model``), never the item
itself; when it has fewer than N, popular items it is not already related to fill the list (reason
``popular``, no score). Items unknown to the model or without neighbours (cold: too few
co-interactions) get popular items only, as Personalize's SIMS does ("If there isn't sufficient
user behavior data for an item or the item ID you provide isn't found, SIMS recommends popular
items").
"""

from __future__ import annotations

from typing import Mapping, Optional

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from batchrec.columns import ITEM_ID, NEIGHBOUR_ID, REASON_MODEL, RELATED_ITEM_ID, USER_ID
from batchrec.filters.eligibility import Eligibility
from batchrec.filters.settings import FilterSettings
from batchrec.recipes.cooccurrence import ITEM_NEIGHBOURS
from batchrec.registry import ITEM_MAP
from batchrec.scoring import topk
from batchrec.scoring.masks import FILTER_COLUMNS, attach_filter_columns, collect_filter
from batchrec.scoring.pair_filter import keep_allowed
from batchrec.scoring.model import Model
from batchrec.scoring.recommend import artifact, check_num_results, popular_fallback

RANK = topk.RANK
SCORE = topk.SCORE
REASON = topk.REASON
OUTPUT_COLUMNS = (ITEM_ID, RANK, RELATED_ITEM_ID, SCORE, REASON)


def related_items(artifacts: Mapping[str, DataFrame], num_results: int,
                  queries: Optional[DataFrame] = None,
                  users_per_batch: int = topk.DEFAULT_USERS_PER_BATCH,
                  item_filter: Optional[Eligibility] = None,
                  filter_settings: FilterSettings = FilterSettings()) -> DataFrame:
    """Top ``num_results`` related items per query item.

    Args:
        artifacts: the version's artifacts (``item_neighbours``, ``popular_items``, ``item_map``).
        num_results: items per query item, 1 to 500.
        queries: ``[ITEM_ID]`` (duplicates and nulls ignored); default every item of ``item_map``
            and every item with stored neighbours (similar-items relates catalogue items nobody
            interacted with).
        users_per_batch: query items per block of the popular backfill.
        item_filter: a compiled ``--filter`` keyed by ``ITEM_ID`` (the query item; ``CurrentItem``
            fields are its attributes). The neighbours it rejects are dropped before the cut, and
            the backfill takes only popular items it allows (none when ``filter_settings.backfill``
            is off).

    Returns:
        ``[ITEM_ID, rank, RELATED_ITEM_ID, score (null for popular), reason]``, ranks 1..N with no
        gaps (fewer only when the popular list runs out).

    Raises:
        UsageError: ``num_results`` out of range.
        JobError: a needed artifact is missing.
    """
    check_num_results(num_results)
    neighbours = artifact(artifacts, ITEM_NEIGHBOURS)
    if queries is None:
        queries = artifact(artifacts, ITEM_MAP).select(ITEM_ID).unionByName(neighbours.select(ITEM_ID))
    queries = queries.select(ITEM_ID).where(F.col(ITEM_ID).isNotNull()).distinct()
    order = Window.partitionBy(ITEM_ID).orderBy(F.col(SCORE).desc(), F.col(NEIGHBOUR_ID).asc())
    candidates = (neighbours.join(queries, ITEM_ID, "left_semi")
                  .where(F.col(NEIGHBOUR_ID) != F.col(ITEM_ID)))
    if item_filter is not None:
        candidates = keep_allowed(candidates, item_filter, ITEM_ID, NEIGHBOUR_ID)
    model = (candidates
             .withColumn(RANK, F.row_number().over(order))
             .where(F.col(RANK) <= F.lit(num_results))
             .select(ITEM_ID, F.col(RANK).cast("int").alias(RANK),
                     F.col(NEIGHBOUR_ID).alias(RELATED_ITEM_ID), F.col(SCORE).cast("double").alias(SCORE),
                     F.lit(REASON_MODEL).alias(REASON)))
    popular = popular_fallback(artifacts)
    if not popular or (item_filter is not None and not filter_settings.backfill):
        return model
    listed = model.groupBy(ITEM_ID).agg(F.count(F.lit(1)).cast("int").alias(topk.START),
                                        F.collect_list(RELATED_ITEM_ID).alias(topk.SEEN_IDS))
    # The top_k_from_list kernel fills per-"user" lists; here each query item is the "user" and
    # itself plus its model neighbours are what it must not get again.
    collected = None
    if item_filter is not None:
        collected = collect_filter(item_filter, filter_settings.max_collected_ids)
        if not item_filter.is_global:
            queries = attach_filter_columns(queries, item_filter)
    fill = (queries.join(listed, ITEM_ID, "left")
            .select(*[c for c in FILTER_COLUMNS if c in queries.columns],
                    F.col(ITEM_ID).alias(USER_ID),
                    F.coalesce(F.col(topk.START), F.lit(0)).alias(topk.START),
                    (F.lit(num_results) - F.coalesce(F.col(topk.START), F.lit(0))).alias(topk.NEED),
                    F.concat(F.array(F.col(ITEM_ID)),
                             F.coalesce(F.col(topk.SEEN_IDS), F.array().cast("array<string>")))
                    .alias(topk.SEEN_IDS))
            .where(F.col(topk.NEED) > 0))
    backfill = topk.top_k_from_list(fill, popular, users_per_batch, item_filter=collected).select(
        F.col(USER_ID).alias(ITEM_ID), RANK, F.col(ITEM_ID).alias(RELATED_ITEM_ID),
        F.lit(None).cast("double").alias(SCORE), REASON)
    return model.unionByName(backfill)


def items_for_item(model: Model, queries: DataFrame, num_results: int, settings, *,
                   item_filter: Optional[Eligibility] = None,
                   filter_settings: FilterSettings = FilterSettings()) -> DataFrame:
    """The scorer's answer to "items for an item" (``batchrec related``): :func:`related_items`."""
    return related_items(model.artifacts, num_results, queries, settings.users_per_batch,
                         item_filter, filter_settings)


def related_catalogue(model: Model) -> DataFrame:
    """``[ITEM_ID]`` of every item the model relates: its items and every item with neighbours
    (similar-items relates catalogue items nobody interacted with)."""
    return (model.artifact(ITEM_MAP).select(ITEM_ID)
            .unionByName(model.artifact(ITEM_NEIGHBOURS).select(ITEM_ID)).distinct())
