"""``batchrec recommend``: per-user top-N from a solution version into Delta (and JSON lines).

A batch job on the shared runner (``batchrec.batch.runner``): the requests are the users of a
Personalize input file (``{"userId": ...}``) or every user the model knows; a user on several lines
gets one answer, repeated on each line. The model's scorer returns the top N unseen items
(``batchrec.scoring.recommend``).

``--filter`` (Personalize's filter language, ``batchrec.filters``) is parsed and checked before
Spark starts (``batchrec.batch.eligibility.job_filter_options``), compiled once the datasets it
reads are known, and applied by the scorer before the top-N cut. Per-line ``"filterValues"`` apply when each user's
lines carry the same values (one answer per user); other lines get an ``error``.
"""

from __future__ import annotations

import datetime as dt
from typing import Optional

from batchrec import catalogue, registry
from batchrec.batch import inputs
from batchrec.batch.runner import BatchJob, JobContext, all_owner_requests, run_batch_job
from batchrec.batch.shapes import RECOMMENDATIONS
from batchrec.columns import USER_ID
from batchrec.dates import end_of_day
from batchrec.filters import RECOMMEND
from batchrec.scoring import exploration
from batchrec.scoring.recommend import check_num_results


def _score(context: JobContext):
    settings = context.settings
    model = context.model
    users = context.requests.select(USER_ID).distinct()
    filtered = ({"item_filter": context.item_filter, "filter_settings": context.filter_settings}
                if context.item_filter is not None else {})
    return model.spec.scoring_module().items_for_user(
        model, users, context.seen, settings.num_results, settings, items=context.items,
        reference_time=end_of_day(context.run_date), **filtered)


JOB = BatchJob(
    command="recommend",
    capability=catalogue.ITEMS_FOR_USER,
    what="recommend items for a user",
    request_kind=inputs.KIND_USERS,
    request_key=USER_ID,
    shape=RECOMMENDATIONS,
    score=_score,
    all_requests=lambda model: all_owner_requests(model.artifact(catalogue.USER_MAP), USER_ID,
                                                  inputs.JSON_USER_ID),
    count_label="users",
    filter_context=RECOMMEND,
    filter_in_scorer=True,
)


def run(spark, settings, run_date: dt.date, *, solution: str, version: str = registry.LATEST,
        output: str, jsonl: Optional[str] = None, dynamodb_table: Optional[str] = None,
        current: Optional[str] = None, current_delete_absent: bool = False,
        interactions: Optional[str] = None,
        items: Optional[str] = None, users: Optional[str] = None, data_format: str = "auto",
        input_path: Optional[str] = None, filter_expression: Optional[str] = None,
        filter_values: Optional[str] = None, filter_name: Optional[str] = None) -> dict:
    """Recommend ``settings.recommend.num_results`` items per user; returns the run summary.

    ``users`` is read only by a filter that tests ``IF CurrentUser`` fields (default: the users
    dataset recorded with the version); ``items``/``interactions`` likewise feed a filter's Items and
    Interactions conditions. The summary names the filter (``filter``, null without one).

    Raises:
        UsageError: num_results or exploration settings out of range, a bad filter or filter values
            (checked before any I/O), a recipe whose scorer cannot apply a filter, or a filter field
            the datasets do not have (before any scoring).
        JobError: unknown solution or version, missing or corrupt artifact files.
        DataError: unreadable input or datasets, or an input file without a single usable line.
    """
    rs = settings.recommend
    check_num_results(rs.num_results)
    exploration.check_exploration(rs.exploration_weight, rs.exploration_item_age_cut_off)
    return run_batch_job(spark, JOB, settings, run_date, solution=solution, version=version,
                         dynamodb_table=dynamodb_table, current=current,
                         current_delete_absent=current_delete_absent,
                         output=output, jsonl=jsonl, input_path=input_path, interactions=interactions,
                         items=items, users=users, data_format=data_format, job_settings=rs,
                         exclude_seen=rs.exclude_seen, seen_event_types=rs.exclude_event_types,
                         users_per_batch=rs.users_per_batch,
                         filter_expression=filter_expression, filter_values=filter_values,
                         filter_name=filter_name)
