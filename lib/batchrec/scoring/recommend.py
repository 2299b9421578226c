"""Per-user top-N recommendations from a model, with exclusions and backfill.

:func:`recommend_for_users` asks the recipe's scorer (``catalogue`` ``scorer``) for items for each
user; it never looks at the recipe's name. The scorers share the helpers below:

* exclusions: items a user has seen (``seen_items``) are never recommended;
* backfill: users unknown to the model get the popular items they have not seen (reason
  ``popular``, no score); scorers whose lists run short continue with popular items.
"""

from __future__ import annotations

import logging
from typing import Mapping, Optional, Sequence

from pyspark.sql import DataFrame, functions as F

from batchrec import catalogue
from batchrec.columns import EVENT_TYPE, ITEM_ID, REASON_POPULAR, USER_ID
from batchrec.config import RecommendSettings
from batchrec.errors import UsageError
from batchrec.filters.eligibility import Eligibility
from batchrec.scoring import topk
from batchrec.scoring.masks import CollectedFilter, attach_filter_columns
from batchrec.scoring.model import Model, artifact

log = logging.getLogger(__name__)

MIN_NUM_RESULTS = 1
MAX_NUM_RESULTS = 500
# Stored lists hold at most 1000 items; the limit keeps the driver-side collect bounded regardless.
MAX_LIST_ITEMS = 5000
RANK = topk.RANK
SCORE = topk.SCORE
REASON = topk.REASON
OUTPUT_COLUMNS = (USER_ID, RANK, ITEM_ID, SCORE, REASON)
POPULAR_LIST = ((catalogue.POPULAR_ITEMS, REASON_POPULAR),)


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
    """Top ``num_results`` items for each user, from the scorer of ``recipe``.

    Args:
        spark: the session (scorers broadcast driver-side matrices through it).
        recipe: the model's recipe; it must answer items for a user (``catalogue.ITEMS_FOR_USER``).
        artifacts: the version's artifacts by name (see ``batchrec.catalogue``).
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
        UsageError: ``num_results`` or the exploration settings are out of range, or the recipe
            cannot recommend items for a user.
        JobError: an artifact the scorer needs is missing.
    """
    check_num_results(num_results)
    spec = catalogue.require(recipe, catalogue.ITEMS_FOR_USER, "recommend items for a user")
    users = users.select(USER_ID).where(F.col(USER_ID).isNotNull()).distinct()
    exclude = (seen.select(USER_ID, ITEM_ID)
               if seen is not None and recommend_settings.exclude_seen else None)
    model = Model(spec, artifacts)
    return spec.scoring_module().items_for_user(model, users, exclude, num_results, recommend_settings,
                                                items=items, reference_time=reference_time)


def ranked_list(artifacts: Mapping[str, DataFrame],
                lists: Sequence[tuple[str, str]] = POPULAR_LIST) -> list[tuple[str, str]]:
    """The stored ranked lists ``[(artifact, reason), ...]`` as ``(ITEM_ID, reason)`` in rank order,
    each item once (a later list only adds items the earlier ones lack). A missing list other than
    the first is skipped."""
    ranked: list[tuple[str, str]] = []
    listed: set[str] = set()
    for position, (name, reason) in enumerate(lists):
        if position and artifacts.get(name) is None:
            continue
        rows = (artifact(artifacts, name).orderBy(F.col(RANK), F.col(ITEM_ID))
                .select(ITEM_ID).limit(MAX_LIST_ITEMS).collect())
        for row in rows:
            if row[ITEM_ID] is not None and row[ITEM_ID] not in listed:
                listed.add(row[ITEM_ID])
                ranked.append((row[ITEM_ID], reason))
    return ranked


def popular_fallback(artifacts: Mapping[str, DataFrame]) -> list[tuple[str, str]]:
    """The popular list for users or requests the model cannot score ([] when it has none)."""
    if artifacts.get(catalogue.POPULAR_ITEMS) is None:
        log.warning("solution version has no %s artifact: users unknown to the model get nothing",
                    catalogue.POPULAR_ITEMS)
        return []
    return ranked_list(artifacts, POPULAR_LIST)


def fill_users(fill: DataFrame, exclude: Optional[DataFrame]) -> DataFrame:
    """Attach each fill user's seen item IDs (an empty array when none)."""
    empty = F.array().cast("array<string>")
    if exclude is None:
        return fill.withColumn(topk.SEEN_IDS, empty)
    seen = (exclude.join(fill.select(USER_ID), USER_ID, "left_semi")
            .groupBy(USER_ID).agg(F.collect_set(ITEM_ID).alias(topk.SEEN_IDS)))
    return (fill.join(seen, USER_ID, "left")
            .withColumn(topk.SEEN_IDS, F.coalesce(F.col(topk.SEEN_IDS), empty)))


def from_list(users: DataFrame, ranked: Sequence[tuple[str, str]], exclude: Optional[DataFrame],
              users_per_batch: int, start=0, need=None, item_filter: Optional[Eligibility] = None,
              collected: Optional[CollectedFilter] = None) -> DataFrame:
    """Each user's next ``need`` unseen items of ``ranked`` after position ``start`` (columns or
    ints), as output rows without scores; with ``item_filter`` (keyed by ``USER_ID``) and its
    ``collected`` parts, only items the filter allows."""
    fill = users.select(USER_ID, (F.lit(start) if isinstance(start, int) else start).alias(topk.START),
                        (F.lit(need) if isinstance(need, int) else need).alias(topk.NEED))
    fill = fill_users(fill, exclude)
    if item_filter is not None and not item_filter.is_global:
        fill = attach_filter_columns(fill, item_filter)
    filled = topk.top_k_from_list(fill, ranked, users_per_batch,
                                  item_filter=collected if item_filter is not None else None)
    return filled.select(USER_ID, RANK, ITEM_ID, F.lit(None).cast("double").alias(SCORE), REASON)
