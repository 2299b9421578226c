"""``batchrec recommend``: per-user top-N from a solution version into Delta (and JSON lines).

Steps: open the version (registry), read the datasets recorded in it unless fresher ones are given
(validated by ``load_datasets``; the latest interactions define what each user has seen), pick the
users (every user known to the model, or the users of a Personalize batch input file), score
(``batchrec.scoring.recommend``), replace this run's rows in the Delta table, optionally write the
Personalize JSON lines, and print a one-line run summary.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from typing import Optional

from pyspark.sql import DataFrame, functions as F

from batchrec import logs, registry
from batchrec.dates import end_of_day
from batchrec.columns import ITEM_ID, OUT_ITEM_ID, OUT_RANK, OUT_REASON, OUT_SCORE, OUT_USER_ID, REASON_POPULAR, USER_ID
from batchrec.errors import DataError
from batchrec.batch import inputs
from batchrec.scoring import exploration
from batchrec.scoring.recommend import (RECIPE_USER_PERSONALIZATION, check_num_results,
                                        recommend_for_users, seen_items)
from batchrec.sinks import delta, jsonl as jsonl_sink

log = logging.getLogger(__name__)

ARROW_BATCH_CONF = "spark.sql.execution.arrow.maxRecordsPerBatch"


def run(spark, settings, run_date: dt.date, *, solution: str, version: str = registry.LATEST,
        output: str, jsonl: Optional[str] = None, interactions: Optional[str] = None,
        items: Optional[str] = None, users: Optional[str] = None, data_format: str = "auto",
        input_path: Optional[str] = None) -> dict:
    """Recommend ``settings.recommend.num_results`` items per user; returns the run summary.

    Raises:
        UsageError: num_results or exploration settings out of range (checked before any I/O).
        JobError: unknown solution or version, missing or corrupt artifact files.
        DataError: unreadable input or datasets, or an input file without a single usable line.
    """
    started = time.perf_counter()
    rs = settings.recommend
    check_num_results(rs.num_results)
    exploration.check_exploration(rs.exploration_weight, rs.exploration_item_age_cut_off)
    # Arrow batches are the scoring blocks' upper bound; the scorer also slices them itself.
    spark.conf.set(ARROW_BATCH_CONF, str(rs.users_per_batch))

    version_ = registry.load_version(spark, solution, version)
    artifacts = registry.load_artifacts(spark, version_)
    need_items = rs.exploration_weight > 0 and version_.recipe == RECIPE_USER_PERSONALIZATION
    datasets = batch_datasets(spark, settings, version_, run_date, interactions, items, users,
                              data_format, needed=rs.exclude_seen or need_items
                              or registry.USER_MAP not in artifacts)
    seen = seen_items(datasets.interactions, rs.exclude_event_types) if datasets else None

    requests = None
    errors = 0
    if input_path:
        requests = inputs.read_requests(spark, input_path, inputs.KIND_USERS).persist()
        errors = check_requests(requests, input_path)
        user_frame = requests.where(F.col(inputs.ERROR).isNull()).select(USER_ID)
    elif registry.USER_MAP in artifacts:
        user_frame = artifacts[registry.USER_MAP].select(USER_ID)
    else:
        user_frame = datasets.interactions.select(USER_ID).distinct()

    recs = recommend_for_users(
        spark, version_.recipe, artifacts, user_frame, seen, rs.num_results, rs,
        items=datasets.items if datasets and need_items else None,
        reference_time=end_of_day(run_date))
    with logs.stage(log, "write_delta", path=output) as info:
        rows = delta.write_run(recs, output, run_date, version_.solution, version_.version, version_.recipe)
        info["rows"] = rows
    counts = run_counts(spark, output, run_date, version_.solution)
    counts["users"] = user_frame.distinct().count()
    if jsonl:
        with logs.stage(log, "write_jsonl", path=jsonl):
            written = spark.read.format("delta").load(output).where(delta.run_predicate(run_date, version_.solution))
            recs_back = written.select(F.col(OUT_USER_ID).alias(USER_ID), F.col(OUT_RANK).alias("rank"),
                                       F.col(OUT_ITEM_ID).alias(ITEM_ID), F.col(OUT_SCORE).alias("score"))
            frame = requests if requests is not None else all_user_requests(user_frame)
            lines = jsonl_sink.recommendation_lines(frame, recs_back,
                                               with_scores=version_.recipe == RECIPE_USER_PERSONALIZATION)
            jsonl_sink.write_lines(lines, jsonl)
    if requests is not None:
        requests.unpersist()
    summary = {"command": "recommend", "run_date": run_date.isoformat(), "solution": version_.solution,
               "version": version_.version, "recipe": version_.recipe, "users": counts["users"],
               "users_with_results": counts["users_with_results"],
               "rows": rows, "errors": errors, "backfilled_users": counts["backfilled_users"],
               "seconds": round(time.perf_counter() - started, 1), "output": output, "jsonl": jsonl}
    report(summary)
    return summary


def batch_datasets(spark, settings, version_, run_date, interactions, items, users, data_format,
                   needed: bool = True):
    """The version's recorded datasets, or the fresher ones given on the command line (validated)."""
    if not needed:
        return None
    from batchrec.datasets.validation import load_datasets

    recorded = version_.metadata.get("datasets") or {}
    fresh = any(p is not None for p in (interactions, items, users))
    paths = {
        "interactions": interactions or recorded.get("interactions"),
        "items": items if fresh else recorded.get("items"),
        "users": users if fresh else recorded.get("users"),
    }
    if not paths["interactions"]:
        raise DataError(f"solution version {version_.version} records no interactions dataset; "
                        f"pass --interactions")
    fmt = data_format if data_format != "auto" or fresh else recorded.get("format", "auto")
    with logs.stage(log, "datasets", interactions=paths["interactions"], fresh=fresh):
        return load_datasets(spark, settings, paths["interactions"], items=paths["items"],
                             users=paths["users"], fmt=fmt or "auto", run_date=run_date,
                             schemas=tuple(recorded.get("schemas") or ()),
                             renames=tuple(tuple(r) for r in recorded.get("renames") or ()))


def check_requests(requests: DataFrame, input_path: str) -> int:
    """Count the bad lines; a file with no usable line at all is a DataError (most likely not JSON lines)."""
    row = requests.agg(F.count(F.lit(1)).alias("n"),
                       F.count(F.col(inputs.ERROR)).alias("bad"),
                       F.first(F.col(inputs.ERROR), ignorenulls=True).alias("example")).first()
    if row["n"] and row["bad"] == row["n"]:
        raise DataError(f"--input {input_path}: none of its {row['n']} lines is usable; "
                        f"first problem: {row['example']}")
    if row["bad"]:
        log.warning("%d of %d input lines are unusable (first: %s); they get an error line",
                    row["bad"], row["n"], row["example"])
    return int(row["bad"] or 0)


def all_user_requests(user_frame: DataFrame) -> DataFrame:
    """Synthetic requests ``{"userId": ...}`` for every user, ordered by user ID."""
    return (user_frame.distinct().select(
        F.lit("").alias(inputs.FILE), F.lit(None).cast("long").alias(inputs.POSITION),
        F.to_json(F.struct(F.col(USER_ID).alias(inputs.JSON_USER_ID))).alias(inputs.RAW),
        F.col(USER_ID), F.lit(None).cast("string").alias(inputs.ERROR)))


def run_counts(spark, output: str, run_date: dt.date, solution: str) -> dict:
    """Users and backfilled users of this run, read back from the committed table (cheap columns)."""
    written = spark.read.format("delta").load(output).where(delta.run_predicate(run_date, solution))
    row = written.agg(
        F.countDistinct(OUT_USER_ID).alias("users"),
        F.countDistinct(F.when(F.col(OUT_REASON) == REASON_POPULAR, F.col(OUT_USER_ID))).alias("backfilled"),
    ).first()
    return {"users_with_results": int(row["users"]), "backfilled_users": int(row["backfilled"])}


def report(summary: dict) -> None:
    """The run summary: one log line and one JSON line on stdout (for Airflow logs and scripts)."""
    log.info("summary %s", " ".join(f"{k}={v}" for k, v in summary.items()))
    print(json.dumps(summary, sort_keys=False))
