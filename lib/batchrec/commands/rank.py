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
"""

from __future__ import annotations

import datetime as dt
from typing import Optional

from batchrec import catalogue, registry
from batchrec.batch import inputs
from batchrec.batch.runner import BatchJob, JobContext, run_batch_job
from batchrec.batch.shapes import RECOMMENDATIONS
from batchrec.columns import USER_ID


def _score(context: JobContext):
    model = context.model
    requests = context.requests.select(inputs.POSITION, USER_ID, inputs.ITEM_LIST)
    return model.spec.scoring_module().rank_items(model, requests, context.settings.users_per_batch)


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
)


def run(spark, settings, run_date: dt.date, *, solution: str, version: str = registry.LATEST,
        output: str, jsonl: Optional[str] = None, dynamodb_table: Optional[str] = None,
        current: Optional[str] = None,
        input_path: str) -> dict:
    """Rank every input line's items; Delta rows per line, optional Personalize JSON lines.

    Raises:
        JobError: unknown solution or version, missing or corrupt artifact files.
        DataError: the input cannot be read or has no usable line.
    """
    rs = settings.recommend
    return run_batch_job(spark, JOB, settings, run_date, solution=solution, version=version,
                         dynamodb_table=dynamodb_table, current=current,
                         output=output, jsonl=jsonl, input_path=input_path, job_settings=rs,
                         exclude_seen=False, users_per_batch=rs.users_per_batch)
