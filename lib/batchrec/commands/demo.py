"""``batchrec demo``: the whole product on a generated sample, in one folder.

generate -> validate (rejects table + JSON summary) -> train user-personalization (with hold-out
metrics) -> recommend for every user -> Delta table + Personalize JSON lines. Prints where every
result is and a few example rows.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os

import click

from batchrec import columns as C
from batchrec.commands import generate, recommend, train, validate
from batchrec.config import Settings
from batchrec.locations import (KIND_DATASETS, KIND_DELTA, KIND_FILE, KIND_FOLDER, KIND_SOLUTION,
                                Location, check_locations)

log = logging.getLogger(__name__)

RECIPE = "user-personalization"
EXAMPLE_USERS = 2
EXAMPLE_ITEMS = 5
SUMMARY_METRICS = ("precision@10", "ndcg@10", "coverage")  # the rest are in the version's metadata


def run(spark, settings: Settings, run_date: dt.date, *, n_users: int, n_items: int,
        n_interactions: int, workdir: str) -> dict:
    """Run the demo pipeline under ``workdir``; returns the summary (sizes, the version trained,
    the recommendation counts and the paths of every output)."""
    workdir = os.path.abspath(workdir)
    paths = {
        "data": os.path.join(workdir, "data"),
        "rejects": os.path.join(workdir, "rejects"),
        "validation_report": os.path.join(workdir, "validation.json"),
        "solution": os.path.join(workdir, "solution"),
        "recommendations": os.path.join(workdir, "output", "recommendations"),
        "jsonl": os.path.join(workdir, "output", "jsonl"),
    }
    data = {kind: os.path.join(paths["data"], kind) for kind in ("interactions", "items", "users")}
    schemas = tuple(os.path.join(paths["data"], "schemas", f"{kind}.json") for kind in data)
    # Before anything is written: every output of every step must be new or a previous demo's.
    check_locations(spark, [], [Location(f"--workdir {name}", path, kind) for name, path, kind in (
        ("data", paths["data"], KIND_DATASETS), ("rejects", paths["rejects"], KIND_DELTA),
        ("validation report", paths["validation_report"], KIND_FILE),
        ("solution", paths["solution"], KIND_SOLUTION),
        ("recommendations", paths["recommendations"], KIND_DELTA), ("jsonl", paths["jsonl"], KIND_FOLDER))])

    _banner("1/4 generate")
    generate.run(spark, settings, run_date, n_users=n_users, n_items=n_items,
                 n_interactions=n_interactions, output=paths["data"])
    _banner("2/4 validate")
    validate.run(spark, settings, run_date, interactions=data["interactions"], items=data["items"],
                 users=data["users"], data_format="csv", schemas=schemas, renames=(),
                 rejects=paths["rejects"], report=paths["validation_report"], infer_schema=False)
    _banner("3/4 train")
    # The demo asks for hold-out metrics (a second, small training) to show what the model is worth.
    trained = train.run(spark, settings, run_date, interactions=data["interactions"],
                        items=data["items"], users=data["users"], data_format="csv",
                        schemas=schemas, recipe=RECIPE, solution=paths["solution"], evaluate=True)
    _banner("4/4 recommend")
    recommended = recommend.run(spark, settings, run_date, solution=paths["solution"],
                                version=trained["version"], output=paths["recommendations"],
                                jsonl=paths["jsonl"], interactions=None, items=None, users=None,
                                data_format="auto", input_path=None)

    _banner("results")
    for name, path in paths.items():
        click.echo(f"{name:<18} {path}")
    if trained.get("metrics"):
        click.echo("hold-out metrics   " + json.dumps(trained["metrics"], sort_keys=True))
    _show_examples(spark, paths["recommendations"], run_date)
    metrics = trained.get("metrics") or {}
    return {"command": "demo", "run_date": run_date.isoformat(), "workdir": workdir,
            "users": n_users, "items": n_items, "interactions": n_interactions,
            "recipe": RECIPE, "version": trained["version"],
            "metrics": {k: metrics[k] for k in SUMMARY_METRICS if k in metrics},
            "users_with_results": recommended.get("users_with_results"),
            "rows": recommended.get("rows"), "jsonl_files": recommended.get("jsonl_files"),
            "paths": paths}


def _banner(text: str) -> None:
    click.echo(f"\n== {text} ==")


def _show_examples(spark, table: str, run_date: dt.date) -> None:
    from pyspark.sql import functions as F

    recs = spark.read.format("delta").load(table).where(F.col(C.OUT_RUN_DATE) == F.lit(run_date))
    users = [r[0] for r in recs.select(C.OUT_USER_ID).distinct().orderBy(C.OUT_USER_ID)
             .limit(EXAMPLE_USERS).collect()]
    click.echo(f"\nexample rows ({EXAMPLE_ITEMS} per user):")
    (recs.where(F.col(C.OUT_USER_ID).isin(users) & (F.col(C.OUT_RANK) <= EXAMPLE_ITEMS))
         .select(C.OUT_USER_ID, C.OUT_RANK, C.OUT_ITEM_ID, C.OUT_SCORE, C.OUT_REASON)
         .orderBy(C.OUT_USER_ID, C.OUT_RANK).show(truncate=False))
