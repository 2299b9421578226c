"""``batchrec related``: related items per item ("customers who bought this also bought").

A batch job on the shared runner: the requests are the items of a Personalize input file
(``{"itemId": ...}``) or every item the model relates; an item the model does not know, or knows
too little about, gets popular items (reason ``popular``), as Personalize does. Output rows:
``item_id, rank, related_item_id, score, reason``; JSON lines list them as ``recommendedItems``.

``--filter`` takes ItemID filters, with ``CurrentItem.FIELD`` naming the query item's attributes
(``EXCLUDE ItemID WHERE Items.CATEGORY IN (CurrentItem.CATEGORY)``); rejected neighbours are
dropped before the top-N cut and the popular backfill takes only items the filter allows.
"""

from __future__ import annotations

import datetime as dt
from typing import Optional

from pyspark.sql import DataFrame, functions as F

from batchrec import catalogue, registry
from batchrec.batch import eligibility, inputs
from batchrec.batch.runner import BatchJob, JobContext, all_owner_requests, run_batch_job
from batchrec.batch.shapes import RELATED_ITEMS
from batchrec.columns import ITEM_ID, NEIGHBOUR_ID
from batchrec.filters import RELATED
from batchrec.recipes.cooccurrence import ITEM_NEIGHBOURS
from batchrec.scoring.recommend import check_num_results


def _score(context: JobContext):
    model = context.model
    queries = context.requests.select(ITEM_ID).distinct()
    filtered = ({"item_filter": context.item_filter, "filter_settings": context.filter_settings}
                if context.item_filter is not None else {})
    return model.spec.scoring_module().items_for_item(model, queries, context.settings.num_results,
                                                      context.settings, **filtered)


def _candidates(model, requests: DataFrame) -> DataFrame:
    """Every item a related list may hold: the model's items, stored lists and neighbours."""
    neighbours = model.artifact(ITEM_NEIGHBOURS).select(F.col(NEIGHBOUR_ID).alias(ITEM_ID))
    model_items = eligibility.candidate_items(model.artifacts)
    return (neighbours if model_items is None else model_items.unionByName(neighbours)).distinct()


def _all_items(model):
    return all_owner_requests(model.spec.scoring_module().related_catalogue(model), ITEM_ID,
                              inputs.JSON_ITEM_ID)


JOB = BatchJob(
    command="related",
    capability=catalogue.ITEMS_FOR_ITEM,
    what="relate items to an item",
    request_kind=inputs.KIND_ITEMS,
    request_key=ITEM_ID,
    shape=RELATED_ITEMS,
    score=_score,
    all_requests=_all_items,
    uses_seen=False,
    count_label="items",
    filter_context=RELATED,
    filter_candidates=_candidates,
)


def run(spark, settings, run_date: dt.date, *, solution: str, version: str = registry.LATEST,
        output: str, jsonl: Optional[str] = None, dynamodb_table: Optional[str] = None,
        current: Optional[str] = None, current_delete_absent: bool = False,
        input_path: Optional[str] = None, interactions: Optional[str] = None, items: Optional[str] = None,
        users: Optional[str] = None, data_format: str = "auto", filter_expression: Optional[str] = None,
        filter_values: Optional[str] = None, filter_name: Optional[str] = None) -> dict:
    """Related items for each requested item (``settings.recommend.num_results`` each).

    ``items`` (default: the items dataset recorded with the version) feeds a filter's Items and
    CurrentItem fields.

    Raises:
        UsageError: num_results out of range, the model cannot relate items, or a bad filter.
        JobError: unknown solution or version, missing or corrupt artifact files.
        DataError: unreadable input, or an input file without a single usable line.
    """
    rs = settings.recommend
    check_num_results(rs.num_results)
    return run_batch_job(spark, JOB, settings, run_date, solution=solution, version=version,
                         dynamodb_table=dynamodb_table, current=current,
                         current_delete_absent=current_delete_absent,
                         output=output, jsonl=jsonl, input_path=input_path, interactions=interactions,
                         items=items, users=users, data_format=data_format, job_settings=rs,
                         exclude_seen=False, users_per_batch=rs.users_per_batch,
                         filter_expression=filter_expression, filter_values=filter_values,
                         filter_name=filter_name)
