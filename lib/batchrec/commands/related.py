"""``batchrec related``: related items per item ("customers who bought this also bought").

A batch job on the shared runner: the requests are the items of a Personalize input file
(``{"itemId": ...}``) or every item the model relates; an item the model does not know, or knows
too little about, gets popular items (reason ``popular``), as Personalize does. Output rows:
``item_id, rank, related_item_id, score, reason``; JSON lines list them as ``recommendedItems``.
"""

from __future__ import annotations

import datetime as dt
from typing import Optional

from batchrec import catalogue, registry
from batchrec.batch import inputs
from batchrec.batch.runner import BatchJob, JobContext, all_owner_requests, run_batch_job
from batchrec.batch.shapes import RELATED_ITEMS
from batchrec.columns import ITEM_ID
from batchrec.scoring.recommend import check_num_results


def _score(context: JobContext):
    model = context.model
    queries = context.requests.select(ITEM_ID).distinct()
    return model.spec.scoring_module().items_for_item(model, queries, context.settings.num_results,
                                                      context.settings)


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
)


def run(spark, settings, run_date: dt.date, *, solution: str, version: str = registry.LATEST,
        output: str, jsonl: Optional[str] = None, dynamodb_table: Optional[str] = None,
        current: Optional[str] = None,
        input_path: Optional[str] = None) -> dict:
    """Related items for each requested item (``settings.recommend.num_results`` each).

    Raises:
        UsageError: num_results out of range, or the model cannot relate items.
        JobError: unknown solution or version, missing or corrupt artifact files.
        DataError: unreadable input, or an input file without a single usable line.
    """
    rs = settings.recommend
    check_num_results(rs.num_results)
    return run_batch_job(spark, JOB, settings, run_date, solution=solution, version=version,
                         dynamodb_table=dynamodb_table, current=current,
                         output=output, jsonl=jsonl, input_path=input_path, job_settings=rs,
                         exclude_seen=False, users_per_batch=rs.users_per_batch)
