"""``batchrec train``: datasets -> prepared interactions -> recipe -> a new solution version.

Steps: load and validate the datasets, apply the preparation rules and check Personalize's minimums
on what is left (the prepared rows are reused by the training), optionally search parameters
(``--hpo``), train, optionally measure hold-out metrics (``--evaluate``: a second training on a
split, off by default), save the version (replacing an earlier version of the same run date) and
return the summary the CLI prints.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from pathlib import Path
from typing import Any, Optional

from batchrec import fs, logs, registry
from batchrec.dates import end_of_day
from batchrec.datasets.prepare import select_events
from batchrec.commands.validate import dataset_locations
from batchrec.locations import KIND_SOLUTION, Location, check_locations
from batchrec.recipes import resolve_params, train_recipe

log = logging.getLogger(__name__)

CHECKPOINTS_DIR = "_checkpoints"


def run(
    spark,
    settings,
    run_date: Optional[dt.date],
    *,
    interactions: str,
    items: Optional[str] = None,
    users: Optional[str] = None,
    data_format: str = "auto",
    schemas: tuple = (),
    renames: tuple = (),
    recipe: str,
    solution: str,
    params: tuple = (),
    hpo: bool = False,
    evaluate: bool = False,
) -> dict:
    """Train ``recipe`` on the datasets and save a new version under ``solution``; returns the summary
    (version id and path, parameters, data sizes, metrics).

    Raises:
        UsageError: an unknown recipe or parameter, or a ``--solution`` that is, contains or sits
            inside a dataset, or exists and is not a solution (checked before any data is read).
        DataError: invalid datasets, or too little data left after preparation.
        JobError: the version could not be written.
    """
    from batchrec.datasets.summary import check_minimums
    from batchrec.datasets.validation import load_datasets

    given = dict(params)
    resolve_params(recipe, settings, given)  # fail on a bad --param before reading any data
    paths = {"interactions": interactions, "items": items, "users": users}
    check_locations(spark, dataset_locations(paths, schemas), [Location("--solution", solution, KIND_SOLUTION)])
    reference_time = end_of_day(run_date) if run_date else None
    datasets = load_datasets(
        spark, settings, interactions, items=items, users=users, fmt=data_format, schemas=schemas,
        renames=renames, run_date=run_date,
    )
    frame = datasets.interactions  # cached by load_datasets; released at the end
    events = None
    try:
        with logs.stage(log, "minimums") as info:
            # Prepared once: the minimums are checked on the rows the recipe then trains on.
            events = select_events(frame, settings.prepare, reference_time).persist()
            summary = check_minimums(events, settings.validation, context="after event filtering")
            info["rows"] = summary["interactions"]

        trials: list[dict] = []
        if hpo:
            from batchrec.evaluation.runner import search_parameters

            with logs.stage(log, "hpo", recipe=recipe):
                best, trials = search_parameters(spark, recipe, frame, settings, given)
            given = {**given, **best}

        checkpoint_dir = fs.join(solution, CHECKPOINTS_DIR, secrets.token_hex(4))
        model = train_recipe(spark, recipe, frame, settings.prepare, resolve_params(recipe, settings, given),
                             items=datasets.items, reference_time=reference_time,
                             checkpoint_dir=checkpoint_dir, events=events)
        metrics: dict[str, Any] = {}
        if evaluate:
            from batchrec.evaluation.runner import holdout_metrics

            with logs.stage(log, "evaluate", recipe=recipe):
                metrics = holdout_metrics(spark, recipe, frame, settings, model.params)

        metadata = {
            # Batch jobs re-read these datasets exactly as training did (same schemas, renames).
            "datasets": {"interactions": interactions, "items": items, "users": users,
                         "format": data_format, "schemas": [str(Path(p).resolve()) for p in schemas],
                         "renames": [list(r) for r in renames]},
            "metrics": metrics,
            "run_date": run_date.isoformat() if run_date else None,
            "hpo_trials": trials,
            "prepare": _prepare_settings(settings),
        }
        with logs.stage(log, "save", solution=solution):
            version = registry.save_version(spark, solution, model, metadata)
        model.release()
        fs.delete(spark, checkpoint_dir)
    finally:
        if events is not None:
            events.unpersist()
        datasets.release()
    return {"command": "train", "run_date": run_date.isoformat() if run_date else None,
            "solution": version.solution, "version": version.version, "path": version.path,
            "recipe": recipe, "params": version.metadata["params"],
            "interactions": version.metadata["data_stats"].get("interactions"),
            "users": version.metadata["data_stats"].get("users"),
            "items": version.metadata["data_stats"].get("items"), "metrics": metrics}


def _prepare_settings(settings) -> dict:
    from batchrec.config import settings_as_dict

    return settings_as_dict(settings)["prepare"]
