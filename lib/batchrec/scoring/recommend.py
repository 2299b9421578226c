"""Per-user top-N recommendations from a solution version's artifacts, with exclusions and backfill.

* user-personalization: exact top-N by dot product (``batchrec.scoring.topk``), seen items masked
  inside the scoring block, optional exploration bonus (reason ``exploration`` for items that only
  made the list thanks to it, else ``model``).
* Users unknown to the model get the popular items they have not seen (reason ``popular``, no score).
  A known user whose unseen model items are fewer than N is backfilled with popular items outside the
  model; the shortfall is known before scoring (``n_items - seen model items``), so the backfill never
  waits for, or re-runs, the scoring.
* popularity-count and trending-now: the stored list minus seen items, no scores (as Personalize);
  trending lists shorter than N continue with popular items.
"""

from __future__ import annotations

import logging
from typing import Mapping, Optional

from pyspark.sql import DataFrame, functions as F

from batchrec.columns import (ITEM_ID, ITEM_IDX, REASON_EXPLORATION, REASON_MODEL, REASON_POPULAR,
                              REASON_TRENDING, USER_ID, USER_IDX, EVENT_TYPE)
from batchrec.config import RecommendSettings
from batchrec.errors import JobError, UsageError
from batchrec.registry import (ITEM_FACTORS, ITEM_MAP, ITEM_STATS, POPULAR_ITEMS, TRENDING_ITEMS,
                               USER_FACTORS, USER_MAP)
from batchrec.scoring import exploration, topk

log = logging.getLogger(__name__)

RECIPE_USER_PERSONALIZATION = "user-personalization"
RECIPE_POPULARITY = "popularity-count"
RECIPE_TRENDING = "trending-now"
MIN_NUM_RESULTS = 1
MAX_NUM_RESULTS = 500
# Stored lists hold at most 1000 items; the limit keeps the driver-side collect bounded regardless.
MAX_LIST_ITEMS = 5000
RANK = topk.RANK
SCORE = topk.SCORE
REASON = topk.REASON
OUTPUT_COLUMNS = (USER_ID, RANK, ITEM_ID, SCORE, REASON)


def check_num_results(num_results: int) -> None:
    """Raise UsageError unless 1 <= num_results <= 500 (Personalize's real-time maximum)."""
    if not isinstance(num_results, int) or not MIN_NUM_RESULTS <= num_results <= MAX_NUM_RESULTS:
        raise UsageError(f"num_results = {num_results!r}; expected an integer from "
                         f"{MIN_NUM_RESULTS} to {MAX_NUM_RESULTS}")


def seen_items(interactions: DataFrame, event_types=()) -> DataFrame:
    """``[USER_ID, ITEM_ID]`` pairs that count as seen; only ``event_types`` when given.

    Event types match case-insensitively, as in Personalize's filters.
    """
    if event_types:
        wanted = [t.lower() for t in event_types]
        interactions = interactions.where(F.lower(F.col(EVENT_TYPE)).isin(wanted))
    return interactions.select(USER_ID, ITEM_ID)


def recommend_for_users(
    spark,
    recipe: str,
    artifacts: Mapping[str, DataFrame],
    users: DataFrame,
    seen: Optional[DataFrame],
    num_results: int,
    recommend_settings: RecommendSettings,
    items: Optional[DataFrame] = None,
    reference_time: Optional[int] = None,
) -> DataFrame:
    """Top ``num_results`` items for each user.

    Args:
        spark: the session (used for the driver-side item matrix broadcast).
        recipe: the solution version's recipe.
        artifacts: the version's artifacts by name (see ``batchrec.registry``).
        users: ``[USER_ID]``; duplicates are ignored.
        seen: ``[USER_ID, ITEM_ID]`` to exclude, or None; ignored when ``exclude_seen`` is off.
        num_results: items per user, 1 to 500.
        recommend_settings: exclusions, exploration, block size.
        items: the items dataset, for fresher ``CREATION_TIMESTAMP`` values (exploration).
        reference_time: epoch seconds that item ages are measured from (exploration only).

    Returns:
        ``[USER_ID, rank, ITEM_ID, score (null for popular/trending), reason]``, ranks 1..N with no
        gaps, ordered by score descending then item ID ascending.

    Raises:
        UsageError: ``num_results`` or the exploration settings are out of range.
        JobError: the recipe cannot recommend or an artifact it needs is missing.
    """
    check_num_results(num_results)
    settings = recommend_settings
    users = users.select(USER_ID).where(F.col(USER_ID).isNotNull()).distinct()
    exclude = seen.select(USER_ID, ITEM_ID) if seen is not None and settings.exclude_seen else None
    if recipe == RECIPE_USER_PERSONALIZATION:
        return _personalized(artifacts, users, exclude, num_results, settings, items, reference_time)
    if recipe in (RECIPE_POPULARITY, RECIPE_TRENDING):
        ranked = ranked_list(artifacts, recipe)
        fill = _fill_users(users.select(USER_ID, F.lit(0).alias(topk.START),
                                        F.lit(num_results).alias(topk.NEED)), exclude)
        return _as_output(topk.top_k_from_list(fill, ranked, settings.users_per_batch))
    if recipe in ("ease", "sar"):  # item-based: user history x item weights
        from batchrec.scoring.item_based import recommend_item_based
        return recommend_item_based(spark, recipe, artifacts, users, exclude, num_results, settings.users_per_batch)
    raise JobError(f"recipe {recipe!r} cannot recommend items per user; expected one of "
                   f"{RECIPE_USER_PERSONALIZATION}, {RECIPE_POPULARITY}, {RECIPE_TRENDING}")


def artifact(artifacts: Mapping[str, DataFrame], name: str) -> DataFrame:
    """``artifacts[name]`` or a JobError naming the missing artifact."""
    if name not in artifacts or artifacts[name] is None:
        raise JobError(f"solution version has no '{name}' artifact; expected one of its files "
                       f"(present: {sorted(artifacts)})")
    return artifacts[name]


def ranked_list(artifacts: Mapping[str, DataFrame], recipe: str) -> list[tuple[str, str]]:
    """The stored list(s) as ``(ITEM_ID, reason)`` in rank order: trending first for trending-now,
    then popular items not already listed."""
    names = [(TRENDING_ITEMS, REASON_TRENDING)] if recipe == RECIPE_TRENDING else []
    names.append((POPULAR_ITEMS, REASON_POPULAR))
    ranked: list[tuple[str, str]] = []
    listed: set[str] = set()
    for name, reason in names:
        if name == POPULAR_ITEMS and recipe == RECIPE_TRENDING and name not in artifacts:
            continue
        rows = (artifact(artifacts, name).orderBy(F.col(RANK), F.col(ITEM_ID))
                .select(ITEM_ID).limit(MAX_LIST_ITEMS).collect())
        for row in rows:
            if row[ITEM_ID] is not None and row[ITEM_ID] not in listed:
                listed.add(row[ITEM_ID])
                ranked.append((row[ITEM_ID], reason))
    return ranked


def _fill_users(fill: DataFrame, exclude: Optional[DataFrame]) -> DataFrame:
    """Attach each fill user's seen item IDs (an empty array when none)."""
    empty = F.array().cast("array<string>")
    if exclude is None:
        return fill.withColumn(topk.SEEN_IDS, empty)
    seen = (exclude.join(fill.select(USER_ID), USER_ID, "left_semi")
            .groupBy(USER_ID).agg(F.collect_set(ITEM_ID).alias(topk.SEEN_IDS)))
    return (fill.join(seen, USER_ID, "left")
            .withColumn(topk.SEEN_IDS, F.coalesce(F.col(topk.SEEN_IDS), empty)))


def _as_output(fill: DataFrame) -> DataFrame:
    return fill.select(USER_ID, RANK, ITEM_ID, F.lit(None).cast("double").alias(SCORE), REASON)


def _personalized(artifacts, users, exclude, num_results, settings, items, reference_time) -> DataFrame:
    user_map = artifact(artifacts, USER_MAP).select(USER_ID, USER_IDX)
    item_map = artifact(artifacts, ITEM_MAP).select(ITEM_ID, ITEM_IDX)
    user_factors = artifact(artifacts, USER_FACTORS).select(USER_IDX, topk.FEATURES)
    model_items = artifact(artifacts, ITEM_FACTORS).select(ITEM_IDX, topk.FEATURES).join(item_map, ITEM_IDX)

    known = (users.join(user_map, USER_ID).join(user_factors, USER_IDX)
             .where(F.col(topk.FEATURES).isNotNull()))
    unknown = users.join(known.select(USER_ID), USER_ID, "left_anti")
    exploration.check_exploration(settings.exploration_weight, settings.exploration_item_age_cut_off)
    matrix = topk.collect_item_matrix(model_items)
    exploring = settings.exploration_weight > 0
    if exploring:
        matrix = topk.attach_bonus(matrix, _bonus(artifacts, matrix, settings, items, reference_time))
    n_items = matrix.size

    if exclude is not None:
        seen_idx = (exclude.join(F.broadcast(model_items.select(ITEM_ID, ITEM_IDX)), ITEM_ID)
                    .groupBy(USER_ID).agg(F.collect_set(ITEM_IDX).alias(topk.SEEN)))
        known = known.join(seen_idx, USER_ID, "left")
        # size(null) is -1 or null depending on spark.sql.legacy.sizeOfNull / ANSI: be explicit.
        n_seen = F.when(F.col(topk.SEEN).isNull(), F.lit(0)).otherwise(F.size(topk.SEEN))
    else:
        n_seen = F.lit(0)
    scored = topk.score_blocks(known, matrix, num_results, settings.users_per_batch)
    reason = (F.when(F.col(topk.EXPLORED), F.lit(REASON_EXPLORATION)).otherwise(F.lit(REASON_MODEL))
              if exploring else F.lit(REASON_MODEL))
    parts = [scored.select(USER_ID, RANK, ITEM_ID, SCORE, reason.alias(REASON))]

    ranked = ranked_list(artifacts, RECIPE_POPULARITY) if POPULAR_ITEMS in artifacts else []
    if ranked:
        unknown_fill = unknown.select(USER_ID, F.lit(0).alias(topk.START),
                                      F.lit(num_results).alias(topk.NEED))
        parts.append(_as_output(topk.top_k_from_list(_fill_users(unknown_fill, exclude), ranked,
                                                     settings.users_per_batch)))
        in_model = set(matrix.item_ids.tolist()) if matrix.item_ids is not None else set()
        outside = [(item, reason) for item, reason in ranked if item not in in_model]
        if outside:
            # A short list means every unseen model item is already in it: only popular items
            # outside the model can extend it, after the n_items - n_seen model items.
            given = F.greatest(F.lit(n_items) - n_seen, F.lit(0))
            short = (known.where(given < num_results)
                     .select(USER_ID, given.cast("int").alias(topk.START),
                             (F.lit(num_results) - given).cast("int").alias(topk.NEED)))
            parts.append(_as_output(topk.top_k_from_list(_fill_users(short, exclude), outside,
                                                         settings.users_per_batch)))
    else:
        log.warning("solution version has no %s artifact: users unknown to the model get nothing",
                    POPULAR_ITEMS)
    result = parts[0]
    for part in parts[1:]:
        result = result.unionByName(part)
    return result


def _bonus(artifacts, matrix, settings, items, reference_time) -> DataFrame:
    if reference_time is None:
        raise UsageError("exploration needs a reference time (the run date) to measure item ages")
    stats = artifact(artifacts, ITEM_STATS)
    # Model-wide, not the requested users': the same weight means the same bonus on every run.
    scale = exploration.score_scale(artifact(artifacts, USER_FACTORS), matrix.vectors)
    return exploration.exploration_bonus(stats, settings.exploration_weight,
                                         settings.exploration_item_age_cut_off, reference_time,
                                         scale, items=items)
