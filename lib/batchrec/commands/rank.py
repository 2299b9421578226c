"""``batchrec rank``: re-rank each input line's ``itemList`` for its user (personalized ranking).

Input lines are ``{"userId": "...", "itemList": ["...", ...]}``. For a user known to a
user-personalization model every listed item the model knows is scored by dot product on the
executors (item factors broadcast, the request's items gathered and multiplied in Arrow batches, no
cross join) and ordered by score descending, then item ID ascending; reason ``model``.

Decisions, where Personalize is silent:

* Items unknown to the model go last, in input order, without a score (reason ``unscored``).
* A user unknown to the model gets the listed items in popularity order (reason ``popular``, no
  score), like the cold-start answer of ``recommend``; listed items outside the popular list
  follow in input order (``unscored``). Keeping the list unchanged would hide that nothing was
  personalised; popularity is the better guess and the reason column says what happened.
* popularity-count and trending-now versions rank every user's list by their stored list.
* Each input line is its own request: a user on two lines gets two rankings (two sets of rows).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Optional

from pyspark.sql import functions as F

from batchrec import logs, registry
from batchrec.columns import USER_ID
from batchrec.commands.recommend import (ARROW_BATCH_CONF, check_requests, report, run_counts)
from batchrec.batch import inputs
from batchrec.scoring.ranking import rank_lists
from batchrec.scoring.recommend import RECIPE_USER_PERSONALIZATION
from batchrec.sinks import delta, jsonl as jsonl_sink

log = logging.getLogger(__name__)



def run(spark, settings, run_date: dt.date, *, solution: str, version: str = registry.LATEST,
        output: str, jsonl: Optional[str] = None, interactions: Optional[str] = None,
        items: Optional[str] = None, users: Optional[str] = None, data_format: str = "auto",
        input_path: str) -> dict:
    """Rank every input line's items; Delta rows per line, optional Personalize JSON lines.

    ``interactions``/``items``/``users`` are accepted for the common batch-job contract; ranking
    excludes nothing, so it reads no dataset.

    Raises:
        JobError: unknown solution or version, missing or corrupt artifact files.
        DataError: the input cannot be read or has no usable line.
    """
    started = time.perf_counter()
    rs = settings.recommend
    spark.conf.set(ARROW_BATCH_CONF, str(rs.users_per_batch))
    version_ = registry.load_version(spark, solution, version)
    artifacts = registry.load_artifacts(spark, version_)
    requests = inputs.read_requests(spark, input_path, inputs.KIND_RANKING).persist()
    errors = check_requests(requests, input_path)
    ranked = rank_lists(version_.recipe, artifacts,
                        requests.where(F.col(inputs.ERROR).isNull()), rs.users_per_batch)
    with logs.stage(log, "write_delta", path=output) as info:
        rows = delta.write_run(ranked, output, run_date, version_.solution, version_.version,
                               version_.recipe)
        info["rows"] = rows
    counts = run_counts(spark, output, run_date, version_.solution)
    if jsonl:
        with logs.stage(log, "write_jsonl", path=jsonl):
            # The JSON lines need the line identity, which the Delta table does not keep: rank again
            # (cheap, no model-sized work) rather than widen the table's schema.
            lines = jsonl_sink.recommendation_lines(
                requests, ranked.drop(USER_ID), with_scores=version_.recipe == RECIPE_USER_PERSONALIZATION,
                key=inputs.POSITION)
            jsonl_sink.write_lines(lines, jsonl, order_by=(inputs.FILE, inputs.POSITION))
    n_requests = requests.count() - errors
    requests.unpersist()
    summary = {"command": "rank", "run_date": run_date.isoformat(), "solution": version_.solution,
               "version": version_.version, "recipe": version_.recipe, "requests": n_requests,
               "users_with_results": counts["users_with_results"], "rows": rows, "errors": errors,
               "backfilled_users": counts["backfilled_users"],
               "seconds": round(time.perf_counter() - started, 1), "output": output, "jsonl": jsonl}
    report(summary)
    return summary
