"""Scorer of stored-list models (popularity-count, trending-now): one ranked list for everyone.

The catalogue's ``scorer_options["lists"]`` names the lists in order, e.g. trending items then
popular items; each user gets the first N items of the combined list they have not seen, without
scores (as Personalize); a filter (``--filter``) skips the items it rejects before the cut, so the
list stays full while enough items pass. Ranking orders a request's items by their place in the list; items not in
it follow in input order (``unscored``).
"""

from __future__ import annotations

from typing import Optional

from pyspark.sql import DataFrame, functions as F

from batchrec.config import RecommendSettings
from batchrec.filters.eligibility import Eligibility
from batchrec.filters.settings import FilterSettings
from batchrec.scoring import ranking, topk
from batchrec.scoring.masks import collect_filter
from batchrec.scoring.model import Model
from batchrec.scoring.recommend import from_list, ranked_list

# The recommend job may pass a compiled filter (``item_filter``) to items_for_user.
APPLIES_FILTERS = True


def stored_list(model: Model, backfill: bool = True) -> list[tuple[str, str]]:
    """The model's combined ranked list ``[(ITEM_ID, reason), ...]``; without ``backfill``, only
    the model's own list (trending-now's trending items, not the popular ones after them)."""
    lists = model.spec.scorer_options["lists"]
    return ranked_list(model.artifacts, lists if backfill else lists[:1])


def items_for_user(model: Model, users: DataFrame, exclude: Optional[DataFrame], num_results: int,
                   settings: RecommendSettings, *, item_filter: Optional[Eligibility] = None,
                   filter_settings: FilterSettings = FilterSettings(), **_context) -> DataFrame:
    """The first ``num_results`` unseen items of the stored list, for each user; with
    ``item_filter`` (keyed by ``USER_ID``), the first that pass it, and with
    ``filter_settings.backfill`` off only those of the model's own list (no popular items after
    trending ones)."""
    collected = (collect_filter(item_filter, filter_settings.max_collected_ids)
                 if item_filter is not None else None)
    backfill = item_filter is None or filter_settings.backfill
    return from_list(users, stored_list(model, backfill), exclude, settings.users_per_batch, 0, num_results,
                     item_filter=item_filter, collected=collected)


def rank_items(model: Model, requests: DataFrame, users_per_batch: int) -> DataFrame:
    """Each request's items in the stored list's order."""
    requests = requests.withColumn(topk.FEATURES, F.lit(None).cast("array<float>"))
    return ranking.rank_requests(requests, None, stored_list(model), users_per_batch)
