"""``batchrec evaluate``: one or several recipes side by side on one hold-out split.

Steps: load and validate the datasets, check Personalize's minimums on the training events, split
by the protocol (``evaluate.protocol``), optionally search each recipe's parameters on validation
data carved from the training part (``--hpo``), train each recipe on the training part, recommend
for the held-out users (seen items excluded), measure, then print a table and write the JSON report
(and the HTML page with ``--html``).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any, Optional

import click

from batchrec import __version__, logs
from batchrec.commands.validate import dataset_locations
from batchrec.errors import UsageError
from batchrec.locations import KIND_FILE, Location, check_locations
from batchrec.evaluation import report as reports
from batchrec.evaluation import compare, runner, splits

log = logging.getLogger(__name__)


def route_params(recipes: tuple[str, ...], params: tuple) -> dict[str, dict]:
    """Give each recipe the ``--param`` values it knows.

    Raises:
        UsageError: a parameter no evaluated recipe accepts, or a bad value for one that does.
    """
    from batchrec import catalogue

    routed: dict[str, dict] = {r: {} for r in recipes}
    for key, value in params:
        takers = [r for r in recipes if key in catalogue.get(r).params]
        if not takers:
            valid = sorted({k for r in recipes for k in catalogue.get(r).params})
            raise UsageError(f"--param {key}={value}: no evaluated recipe ({', '.join(recipes)}) has "
                             f"a parameter {key!r}; valid parameters: {', '.join(valid) or 'none'}")
        for recipe in takers:
            routed[recipe][key] = value
    return routed


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
    recipes: tuple = (),
    params: tuple = (),
    hpo: bool = False,
    report: str,
    html: Optional[str] = None,
) -> dict:
    """Evaluate ``recipes`` on one split and write the reports.

    Returns:
        The report (also written as JSON to ``report``).

    Raises:
        UsageError: unknown protocol, recipe or parameter, a K larger than the catalogue, a bad
            ``evaluate.hpo_metric``; ``--report``/``--html`` would overwrite a dataset, each other
            or a folder (checked before any data is read).
        DataError: invalid datasets, or too few users or interactions for the protocol.
    """
    from batchrec.datasets.prepare import select_events
    from batchrec.datasets.summary import check_minimums
    from batchrec.datasets.validation import load_datasets
    from batchrec.recipes import resolve_params

    config = settings.evaluate
    splits.check_protocol(config.protocol)
    if not recipes:
        raise UsageError("no recipe to evaluate; expected at least one --recipe")
    recipes = tuple(dict.fromkeys(recipes))
    routed = route_params(recipes, params)
    for recipe in recipes:  # fail on a bad --param before reading any data
        runner.check_per_user(recipe)
        resolve_params(recipe, settings, routed[recipe])
    if hpo:
        runner.check_hpo_metric(config.hpo_metric, config.k)
    compared = comparison_metric(config)
    outputs = [Location("--report", str(report), KIND_FILE)]
    outputs += [Location("--html", str(html), KIND_FILE)] if html is not None else []
    paths = {"interactions": interactions, "items": items, "users": users}
    check_locations(spark, dataset_locations(paths, schemas), outputs)
    started = time.perf_counter()
    datasets = load_datasets(spark, settings, interactions, items=items, users=users,
                             fmt=data_format, schemas=schemas, renames=renames, run_date=run_date)
    frame = datasets.interactions
    results = []
    try:
        with logs.stage(log, "minimums"):
            check_minimums(select_events(frame, settings.prepare), settings.validation,
                           context="after event filtering")
        split = splits.split_interactions(frame, config.protocol, config, settings.prepare).persist()
        context = runner.prepare_context(frame, split, config.k, datasets.items)
        for recipe in recipes:
            given, trials = routed[recipe], []
            if hpo:
                with logs.stage(log, "hpo", recipe=recipe):
                    given, trials = runner.search_parameters(spark, recipe, split.train, settings,
                                                             given, protocol=config.protocol)
            with logs.stage(log, "evaluate", recipe=recipe):
                result = runner.evaluate_recipe(spark, recipe, context, settings, given,
                                                histogram=True, per_user_metric=compared)
            result.trials = trials
            results.append(result)
        split.unpersist()
        if context.popularity is not None:
            context.popularity.unpersist()
    finally:
        datasets.release()

    document = build_report(settings, run_date, split.stats, context.catalog_size, results, compared,
                            datasets={"interactions": interactions, "items": items, "users": users,
                                      "format": data_format},
                            seconds=round(time.perf_counter() - started, 2))
    reports.write_json(spark, document, str(report))
    if html is not None:
        reports.write_html(spark, document, str(html))
    click.echo(reports.format_table(document))
    log.info("report=%s html=%s", report, html)
    return document


def comparison_metric(config) -> str:
    """The metric recipes are compared on: ``evaluate.hpo_metric`` when its K is evaluated, else
    ndcg at the largest K."""
    from batchrec.evaluation.metrics import metric_names

    names = metric_names(config.k)
    return config.hpo_metric if config.hpo_metric in names else f"ndcg@{max(config.k)}"


def build_report(settings, run_date: Optional[dt.date], split_stats: dict, catalog_size: int,
                 results: list, compared: str, datasets: dict, seconds: float) -> dict[str, Any]:
    """The JSON report: protocol, seed, K, split sizes, and per recipe params, metrics, timings.

    Every recipe after the first also gets ``versus_first``: the ratio of its ``compared`` metric
    (:func:`comparison_metric`) to the first recipe's, with a paired bootstrap interval over the
    evaluated users (:func:`batchrec.evaluation.compare.versus_first`), so a difference can be
    told from noise.
    """
    config = settings.evaluate
    versus = compare.versus_first(results, compared, seed=config.seed)
    return {
        "batchrec_version": __version__,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "run_date": run_date.isoformat() if run_date else None,
        "protocol": config.protocol,
        "seed": config.seed,
        "k": sorted(set(config.k)),
        "fractions": {"holdout_user_fraction": config.holdout_user_fraction,
                      "holdout_interaction_fraction": config.holdout_interaction_fraction,
                      "test_fraction": config.test_fraction},
        "hpo_metric": config.hpo_metric,
        "datasets": datasets,
        "catalog_items": catalog_size,
        "split": split_stats,
        "recipes": [
            {"recipe": r.recipe, "params": r.params, "metrics": r.metrics, "seconds": r.seconds,
             "hpo_trials": r.trials, "popularity_histogram": r.histogram, "versus_first": v}
            for r, v in zip(results, versus)
        ],
        "seconds": seconds,
    }
