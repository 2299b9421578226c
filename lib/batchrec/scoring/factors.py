"""Scorer of factor models (user-personalization): dot products of user and item vectors.

* items for a user: exact top-N by dot product (``batchrec.scoring.topk``), seen items masked
  inside the scoring block, optional exploration bonus (reason ``exploration`` for items that only
  made the list thanks to it, else ``model``). Users unknown to the model get the popular items they
  have not seen (reason ``popular``, no score). A known user whose unseen model items are fewer than
  N is backfilled with popular items outside the model; the shortfall is known before scoring
  (``n_items - seen model items``), so the backfill never waits for, or re-runs, the scoring.
  With a filter, rejected items are masked in the block before the cut and the backfill (popular
  items outside the model that pass the filter) is filled in the same block.
* ranking: each request's items by dot product (``batchrec.scoring.ranking``).
"""

from __future__ import annotations

import logging
from typing import Optional

from pyspark.sql import DataFrame, functions as F

from batchrec import catalogue
from batchrec.columns import ITEM_ID, ITEM_IDX, REASON_EXPLORATION, REASON_MODEL, USER_ID, USER_IDX
from batchrec.config import RecommendSettings
from batchrec.errors import UsageError
from batchrec.filters.eligibility import Eligibility
from batchrec.filters.settings import FilterSettings
from batchrec.scoring import exploration, ranking, topk
from batchrec.scoring.model import Model
from batchrec.scoring.masks import attach_filter_columns, collect_filter
from batchrec.scoring.recommend import REASON, RANK, SCORE, fill_users, from_list, popular_fallback

log = logging.getLogger(__name__)

# The recommend job may pass a compiled filter (``item_filter``) to items_for_user.
APPLIES_FILTERS = True


def item_matrix(model: Model) -> topk.ItemMatrix:
    """The model's item factors with their IDs, collected in tie-break order."""
    item_map = model.artifact(catalogue.ITEM_MAP).select(ITEM_ID, ITEM_IDX)
    return topk.collect_item_matrix(
        model.artifact(catalogue.ITEM_FACTORS).select(ITEM_IDX, topk.FEATURES).join(item_map, ITEM_IDX))


def user_vectors(model: Model) -> DataFrame:
    """``[USER_ID, features]`` of every user the model knows."""
    return (model.artifact(catalogue.USER_MAP).select(USER_ID, USER_IDX)
            .join(model.artifact(catalogue.USER_FACTORS).select(USER_IDX, topk.FEATURES), USER_IDX)
            .where(F.col(topk.FEATURES).isNotNull())
            .select(USER_ID, USER_IDX, topk.FEATURES))


def items_for_user(model: Model, users: DataFrame, exclude: Optional[DataFrame], num_results: int,
                   settings: RecommendSettings, *, items: Optional[DataFrame] = None,
                   reference_time: Optional[int] = None, item_filter: Optional[Eligibility] = None,
                   filter_settings: FilterSettings = FilterSettings()) -> DataFrame:
    """Top ``num_results`` items per user of ``users[USER_ID]`` (see the module docstring).

    With ``item_filter`` (a compiled ``--filter`` keyed by ``USER_ID``), items it rejects are masked
    before the top-N cut; a user left short gets the popular items outside the model that pass it
    (``filter_settings.backfill``), and unknown users the popular items that pass it.

    Returns:
        ``[USER_ID, rank, ITEM_ID, score, reason]``.
    """
    exploration.check_exploration(settings.exploration_weight, settings.exploration_item_age_cut_off)
    known = users.join(user_vectors(model), USER_ID)
    unknown = users.join(known.select(USER_ID), USER_ID, "left_anti")
    matrix = item_matrix(model)
    exploring = settings.exploration_weight > 0
    if exploring:
        matrix = topk.attach_bonus(matrix, _bonus(model, matrix, settings, items, reference_time))
    n_items = matrix.size

    if exclude is not None:
        model_items = model.artifact(catalogue.ITEM_MAP).select(ITEM_ID, ITEM_IDX)
        seen_idx = (exclude.join(F.broadcast(model_items), ITEM_ID)
                    .groupBy(USER_ID).agg(F.collect_set(ITEM_IDX).alias(topk.SEEN)))
        known = known.join(seen_idx, USER_ID, "left")
        # size(null) is -1 or null depending on spark.sql.legacy.sizeOfNull / ANSI: be explicit.
        n_seen = F.when(F.col(topk.SEEN).isNull(), F.lit(0)).otherwise(F.size(topk.SEEN))
    else:
        n_seen = F.lit(0)
    reason = (F.when(F.col(topk.EXPLORED), F.lit(REASON_EXPLORATION)).otherwise(F.lit(REASON_MODEL))
              if exploring else F.lit(REASON_MODEL))
    if item_filter is not None:
        return _filtered(model, known, unknown, matrix, exclude, num_results, settings, reason,
                         item_filter, filter_settings)
    scored = topk.score_blocks(known, matrix, num_results, settings.users_per_batch)
    parts = [scored.select(USER_ID, RANK, ITEM_ID, SCORE, reason.alias(REASON))]

    ranked = popular_fallback(model.artifacts)
    if ranked:
        parts.append(from_list(unknown, ranked, exclude, settings.users_per_batch, 0, num_results))
        in_model = set(matrix.item_ids.tolist()) if matrix.item_ids is not None else set()
        outside = [(item, why) for item, why in ranked if item not in in_model]
        if outside:
            # A short list means every unseen model item is already in it: only popular items
            # outside the model can extend it, after the n_items - n_seen model items.
            given = F.greatest(F.lit(n_items) - n_seen, F.lit(0))
            parts.append(from_list(known.where(given < num_results), outside, exclude,
                                   settings.users_per_batch, given.cast("int"),
                                   (F.lit(num_results) - given).cast("int")))
    result = parts[0]
    for part in parts[1:]:
        result = result.unionByName(part)
    return result


def _filtered(model: Model, known: DataFrame, unknown: DataFrame, matrix: topk.ItemMatrix,
              exclude: Optional[DataFrame], num_results: int, settings: RecommendSettings, reason,
              item_filter: Eligibility, filter_settings: FilterSettings) -> DataFrame:
    """:func:`items_for_user` with a filter. How many items pass for a user is only known inside
    the scoring block, so the backfill (popular items outside the model: every allowed unseen model
    item is already in a short list) is done there too."""
    collected = collect_filter(item_filter, filter_settings.max_collected_ids)
    ranked = popular_fallback(model.artifacts)
    in_model = set(matrix.item_ids.tolist()) if matrix.item_ids is not None else set()
    outside = [(item, why) for item, why in ranked if item not in in_model]
    backfill = outside if filter_settings.backfill and outside else None
    scoring = fill_users(known, exclude) if backfill else known
    if not item_filter.is_global:
        scoring = attach_filter_columns(scoring, item_filter)
    scored = topk.score_blocks(scoring, matrix, num_results, settings.users_per_batch,
                               item_filter=collected, backfill=backfill)
    why = F.coalesce(F.col(REASON), reason) if backfill else reason
    result = scored.select(USER_ID, RANK, ITEM_ID, SCORE, why.alias(REASON))
    if ranked:
        result = result.unionByName(from_list(unknown, ranked, exclude, settings.users_per_batch, 0,
                                              num_results, item_filter=item_filter, collected=collected))
    return result


def rank_items(model: Model, requests: DataFrame, users_per_batch: int) -> DataFrame:
    """Each request's ``itemList`` by dot product; unknown users by the popular list."""
    features = user_vectors(model).select(USER_ID, topk.FEATURES)
    return ranking.rank_requests(requests.join(features, USER_ID, "left"), item_matrix(model),
                                 popular_fallback(model.artifacts), users_per_batch)


def _bonus(model: Model, matrix, settings, items, reference_time) -> DataFrame:
    if reference_time is None:
        raise UsageError("exploration needs a reference time (the run date) to measure item ages")
    stats = model.artifact(catalogue.ITEM_STATS)
    # Model-wide, not the requested users': the same weight means the same bonus on every run.
    scale = exploration.score_scale(model.artifact(catalogue.USER_FACTORS), matrix.vectors)
    return exploration.exploration_bonus(stats, settings.exploration_weight,
                                         settings.exploration_item_age_cut_off, reference_time,
                                         scale, items=items)


def users_for_items(model: Model, queries: DataFrame, size, exclude: Optional[DataFrame],
                    users_per_batch: int, masks=None) -> DataFrame:
    """Item affinity: the top users per ``queries[segment_id, ITEM_ID]`` by dot product
    (``batchrec.scoring.segments``); ``exclude`` pairs leave past interactors out, and ``masks``
    (a UserID filter, ``batchrec.scoring.pair_filter.SegmentMasks``) the users it rejects.

    Returns:
        ``[segment_id, rank, USER_ID, score]``.
    """
    from batchrec.scoring import segments

    return segments.item_affinity(model.artifacts, queries, size, exclude=exclude,
                                  users_per_batch=users_per_batch,
                                  **(masks.kernel_args() if masks is not None else {}))


def users_for_attributes(model: Model, items: DataFrame, texts, size, exclude: Optional[DataFrame],
                         aggregation: str, users_per_batch: int, masks=None) -> DataFrame:
    """Item-attribute affinity: the top users per attribute query over the items it selects
    (``masks`` as :func:`users_for_items`).

    Returns:
        ``[segment_id, rank, USER_ID, score]``.
    """
    from batchrec.scoring import segments

    return segments.item_attribute_affinity(model.artifacts, items, texts, size, exclude=exclude,
                                            aggregation=aggregation, users_per_batch=users_per_batch,
                                            **(masks.kernel_args() if masks is not None else {}))
