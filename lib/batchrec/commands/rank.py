"""``batchrec rank``: re-rank each input line's ``itemList`` for its user (personalized ranking).

Input lines are ``{"userId": "...", "itemList": ["...", ...]}``; a batch job on the shared runner
(``batchrec.batch.runner``), scored by the model's ranking (``batchrec.scoring.ranking``). Decisions,
where Personalize is silent:

* Items unknown to the model go last, in input order, without a score (reason ``unscored``).
* A user unknown to the model gets the listed items in popularity order (reason ``popular``, no
  score), like the cold-start answer of ``recommend``; listed items outside the popular list
  follow in input order (``unscored``). Keeping the list unchanged would hide that nothing was
  personalised; popularity is the better guess and the reason column says what happened.
* Stored-list models (popularity-count, trending-now) rank every user's list by their stored list.
* Each input line is its own request: a user on two lines gets two rankings (two sets of rows).
* Ranking excludes nothing: a listed item the user has seen is ranked like any other.
* ``--filter`` (an ItemID filter, as in Personalize's GetPersonalizedRanking) removes the listed
  items it rejects; the rest keep their order and are ranked 1..n again.
"""

from __future__ import annotations

import datetime as dt
from typing import Optional

from pyspark.sql import DataFrame, Window, functions as F

from batchrec import catalogue, registry
from batchrec.batch import eligibility, inputs
from batchrec.batch.runner import BatchJob, JobContext, run_batch_job
from batchrec.batch.shapes import RECOMMENDATIONS
from batchrec.columns import ITEM_ID, USER_ID
from batchrec.filters import RANK as RANK_FILTERS
from batchrec.scoring.pair_filter import keep_allowed
from batchrec.scoring.topk import RANK


def _score(context: JobContext):
    model = context.model
    requests = context.requests.select(inputs.POSITION, USER_ID, inputs.ITEM_LIST)
    ranked = model.spec.scoring_module().rank_items(model, requests, context.settings.users_per_batch)
    if context.item_filter is None:
        return ranked
    kept = keep_allowed(ranked, context.item_filter, inputs.POSITION, ITEM_ID)
    return kept.withColumn(RANK, F.row_number().over(
        Window.partitionBy(inputs.POSITION).orderBy(RANK)).cast("int"))


def _candidates(model, requests: DataFrame) -> DataFrame:
    """The model's items and every listed item (a filter may allow an item the model never saw)."""
    listed = requests.select(F.explode(inputs.ITEM_LIST).alias(ITEM_ID)).where(F.col(ITEM_ID).isNotNull())
    model_items = eligibility.candidate_items(model.artifacts)
    return (listed if model_items is None else model_items.unionByName(listed)).distinct()


JOB = BatchJob(
    command="rank",
    capability=catalogue.RANKS_ITEMS,
    what="rank items for a user",
    request_kind=inputs.KIND_RANKING,
    request_key=inputs.POSITION,
    shape=RECOMMENDATIONS,
    score=_score,
    uses_seen=False,
    count_label="requests",
    filter_context=RANK_FILTERS,
    filter_candidates=_candidates,
)


def run(spark, settings, run_date: dt.date, *, solution: str, version: str = registry.LATEST,
        output: str, jsonl: Optional[str] = None, dynamodb_table: Optional[str] = None,
        current: Optional[str] = None, current_delete_absent: bool = False,
        input_path: str, interactions: Optional[str] = None, items: Optional[str] = None,
        users: Optional[str] = None, data_format: str = "auto", filter_expression: Optional[str] = None,
        filter_values: Optional[str] = None, filter_name: Optional[str] = None) -> dict:
    """Rank every input line's items; Delta rows per line, optional Personalize JSON lines.

    ``interactions``/``items``/``users`` feed a filter's conditions (default: the datasets recorded
    with the version); each line's ``"filterValues"`` apply to that line.

    Raises:
        UsageError: a bad filter (before any I/O) or a filter field the datasets lack.
        JobError: unknown solution or version, missing or corrupt artifact files.
        DataError: the input cannot be read or has no usable line.
    """
    rs = settings.recommend
    return run_batch_job(spark, JOB, settings, run_date, solution=solution, version=version,
                         dynamodb_table=dynamodb_table, current=current,
                         current_delete_absent=current_delete_absent,
                         output=output, jsonl=jsonl, input_path=input_path, interactions=interactions,
                         items=items, users=users, data_format=data_format, job_settings=rs,
                         exclude_seen=False, users_per_batch=rs.users_per_batch,
                         filter_expression=filter_expression, filter_values=filter_values,
                         filter_name=filter_name)
