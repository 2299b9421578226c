"""The ``batchrec`` command line.

Everything is parsed and checked here before Spark starts; each command then builds the one
SparkSession and hands it to ``batchrec.commands.<name>.run``. Job modules are imported lazily so
``batchrec --help`` answers without importing pyspark or starting a JVM.

Exit codes (the contract with Airflow): 0 success, 1 job or data failure, 2 usage or configuration
error. One line on stderr says what went wrong; the traceback goes to the log at DEBUG level.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import importlib
import io
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import click

from batchrec import __version__, catalogue
from batchrec.config import load_settings, parse_literal
from batchrec.errors import (EXIT_FAILURE, EXIT_OK, EXIT_USAGE, BatchrecError, ConfigError,
                             UsageError)

log = logging.getLogger("batchrec.cli")

RECIPE_NAMES = catalogue.names()
PROTOCOL_NAMES = ("personalize", "temporal", "stratified-user", "stratified-item")
FORMAT_NAMES = ("auto", "csv", "parquet", "delta", "json")
MAX_NUM_RESULTS = 500
LOG_LEVELS = ("DEBUG", "INFO", "WARN", "WARNING", "ERROR")
# click >= 8.2 raises this for a bare group invocation; it shows the help rather than an error.
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class RunDate(click.ParamType):
    """A calendar date ``YYYY-MM-DD`` (Airflow's ``{{ ds }}``)."""

    name = "YYYY-MM-DD"

    def convert(self, value: Any, param, ctx) -> dt.date:
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a date; expected YYYY-MM-DD, e.g. 2026-11-22", param, ctx)


class KeyValue(click.ParamType):
    """``KEY=VALUE`` with the value read as a TOML literal (``rank=64``, ``regParam=0.1``)."""

    name = "KEY=VALUE"

    def convert(self, value: Any, param, ctx) -> tuple[str, Any]:
        if isinstance(value, tuple):
            return value
        key, sep, raw = str(value).partition("=")
        if not sep or not key.strip():
            self.fail(f"{value!r} is not KEY=VALUE", param, ctx)
        return key.strip(), parse_literal(raw.strip())


class Rename(click.ParamType):
    """``SOURCE=TARGET``: a column of the input file and the dataset column it feeds."""

    name = "SOURCE=TARGET"

    def convert(self, value: Any, param, ctx) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        source, sep, target = str(value).partition("=")
        if not sep or not source.strip() or not target.strip():
            self.fail(f"{value!r} is not SOURCE=TARGET, e.g. userId=USER_ID", param, ctx)
        return source.strip(), target.strip()


class ConfigOption(click.Option):
    """An option that overrides a configuration key: its help shows the key's effective value
    (conf/base.toml, conf/<env>.toml with BATCHREC_ENV, BATCHREC_<SECTION>__<KEY>), never a copy
    of it in prose. ``config_key`` is ``section.key``; docs/reference.md lists every one."""

    def __init__(self, *args: Any, config_key: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.config_key = config_key

    def get_help_extra(self, ctx: click.Context):
        extra = super().get_help_extra(ctx)
        extra["default"] = f"{_configured(self.config_key, self)}, from {self.config_key}"
        return extra


def conf_option(*decls: str, key: str, **kwargs: Any) -> Callable:
    """``click.option`` for an option that overrides the configuration key ``key``."""
    return click.option(*decls, cls=ConfigOption, config_key=key, **kwargs)


@functools.lru_cache(maxsize=1)
def _help_settings():
    """The configuration as a job would load it (without flags), for the defaults shown by --help."""
    from batchrec.config import Settings

    try:
        return load_settings(env=os.environ.get("BATCHREC_ENV") or None)
    except ConfigError:  # a broken configuration still gets help; the job itself will say what is wrong
        return Settings()


def _configured(key: str, option: Optional[click.Option] = None) -> str:
    """The effective value of ``section.key`` in words for --help."""
    section, _, name = key.partition(".")
    value = getattr(getattr(_help_settings(), section), name)
    if isinstance(value, bool) and option is not None and option.secondary_opts:
        return (option.opts if value else option.secondary_opts)[0]
    if value is None or (not isinstance(value, (bool, int, float)) and len(value) == 0):
        return '""' if value == "" else "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if hasattr(value, "items"):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return repr(value) if isinstance(value, str) and not value.strip() else str(value)


def _common_options(func: Callable, summary: bool = True) -> Callable:
    """Options every job takes: run date, configuration layers, Spark master, log level and, for
    commands that end with a summary line, ``--summary-file`` and ``--quiet``."""
    options = [
        click.option("--run-date", type=RunDate(), default=None,
                     help="Logical date of this run (Airflow {{ ds }}); default today (UTC)."),
        click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
                     help="Extra TOML file applied after conf/base.toml and conf/<env>.toml."),
        click.option("--env", envvar="BATCHREC_ENV", default=None,
                     help="Configuration overlay conf/<ENV>.toml (env: BATCHREC_ENV)."),
        conf_option("--master", key="spark.master", default=None, help="Spark master URL for embedded runs."),
        click.option("--log-level", default="INFO", show_default=True,
                     type=click.Choice(LOG_LEVELS, case_sensitive=False),
                     help="batchrec's own log level (DEBUG also logs the traceback of a failure)."),
        click.option("--summary-file", default=None,
                     help="Also write the JSON summary line to this file (any Hadoop URI)."),
        click.option("--quiet", "-q", is_flag=True,
                     help="Cron-style: print only errors and the final summary line."),
    ]
    if not summary:  # the output is the listing itself: no summary line to write or to keep
        options = options[:-2]
    for option in reversed(options):
        func = option(func)
    return func


def _minimum_options(func: Callable) -> Callable:
    """Personalize's minimums, lowered for small tests (validate, train, evaluate)."""
    options = [
        conf_option("--min-interactions", key="validation.min_interactions", type=click.IntRange(0),
                    default=None, help="Interactions needed (Personalize's minimum); lower it for small tests."),
        conf_option("--min-users", key="validation.min_users_with_two_interactions",
                    type=click.IntRange(0), default=None,
                    help="Users with at least 2 interactions needed (Personalize's minimum)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _count_options(defaults: Optional[tuple[int, int, int]] = None) -> Callable:
    """``--num-users``, ``--num-items``, ``--num-interactions``: sizes of generated data (generate,
    demo). The old spellings ``--users``/``--items``/``--interactions`` still work, hidden: those
    names are dataset paths everywhere else."""
    def decorate(func: Callable) -> Callable:
        options = []
        for (name, what), default in zip((("users", "users"), ("items", "items"),
                                          ("interactions", "interaction rows")),
                                         defaults or (None, None, None)):
            options += [
                click.option(f"--num-{name}", f"n_{name}", type=click.IntRange(1), default=default,
                             show_default=default is not None, cls=click.Option if defaults else _Needed,
                             help=f"Number of {what}."),
                click.option(f"--{name}", f"old_n_{name}", type=click.IntRange(1), default=None,
                             hidden=True, help=f"Old spelling of --num-{name}."),
            ]
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


class _Needed(click.Option):
    """A required option that the command checks itself (a hidden old spelling may give its value);
    its help says "required" like click's own."""

    def get_help_extra(self, ctx: click.Context):
        return {**super().get_help_extra(ctx), "required": "required"}


def _counts(kwargs: dict) -> dict:
    """Merge the hidden old spellings of the count options; a count is required."""
    for name in ("users", "items", "interactions"):
        old = kwargs.pop(f"old_n_{name}")
        if old is not None:
            kwargs[f"n_{name}"] = old
        if kwargs[f"n_{name}"] is None:
            raise click.UsageError(f"Missing option '--num-{name}'.")
    return kwargs


def _dataset_options(required: bool) -> Callable:
    def decorate(func: Callable) -> Callable:
        options = [
            click.option("--interactions", required=required, help="Interactions dataset path or URI."),
            click.option("--items", default=None, help="Items dataset path or URI."),
            click.option("--users", default=None, help="Users dataset path or URI."),
            click.option("--format", "data_format", type=click.Choice(FORMAT_NAMES), default="auto",
                         show_default=True, help="Dataset format; auto reads it from the path."),
            click.option("--schema", "schemas", multiple=True, type=click.Path(path_type=Path),
                         help="Personalize Avro schema JSON for a dataset (repeatable)."),
            click.option("--rename", "renames", multiple=True, type=Rename(),
                         help="Rename a source column, e.g. userId=USER_ID (repeatable)."),
        ]
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def _run_job(command: str, overrides: Optional[dict] = None,
             precheck: Optional[Callable[[Any], None]] = None, **kwargs: Any) -> None:
    """Load configuration, run ``precheck(settings)``, start Spark, run
    ``batchrec.commands.<command>.run`` and emit the summary it returns."""
    from batchrec import logs, summary as run_summary

    from batchrec.config import layer_files
    from batchrec.locations import KIND_FILE, Location, ambient_locations, check_locations, local_uri

    ctx = click.get_current_context()
    old_version = kwargs.pop("old_version", None)
    if old_version is not None:  # --version V: the old spelling of --solution-version V
        if ctx.get_parameter_source("version") not in (None, click.core.ParameterSource.DEFAULT):
            raise click.UsageError("--version is the old spelling of --solution-version; give one of them")
        kwargs["version"] = old_version
    common = {k: kwargs.pop(k) for k in ("run_date", "config_file", "env", "master", "log_level",
                                          "summary_file", "quiet")}
    level = "ERROR" if common["quiet"] else common["log_level"].upper()
    logs.configure("WARNING" if level == "WARN" else level)
    overrides = {k: dict(v) for k, v in (overrides or {}).items() if v}
    if common["master"]:
        overrides.setdefault("spark", {})["master"] = common["master"]
    if common["quiet"]:
        overrides.setdefault("spark", {})["log_level"] = "ERROR"
    settings = load_settings(env=common["env"], config_file=common["config_file"], overrides=overrides)
    if precheck is not None:
        precheck(settings)  # usage errors (e.g. a bad --param) before a JVM starts
    if command == "export-dynamodb" or kwargs.get("dynamodb_table"):
        from batchrec.sinks.dynamodb import check_settings

        # Found now, not after a batch job has committed its Delta output.
        check_settings(settings.dynamodb, settings.dynamodb.ttl_days)
    run_date = common["run_date"] or dt.datetime.now(dt.timezone.utc).date()
    module = importlib.import_module(f"batchrec.commands.{command.replace('-', '_')}")
    from batchrec.spark import get_spark

    layers = layer_files(common["env"], common["config_file"])
    log.info("command=%s run_date=%s version=%s config=%s", ctx.info_name, run_date, __version__,
             ",".join(str(path) for _, path in layers) or "defaults")
    spark = get_spark(settings.spark)
    # The configuration files are inputs too: no output of the job may overwrite one. The summary
    # file is an output of every command: checked with the command's own locations, before any write.
    config_files = [Location(label, local_uri(str(path)), KIND_FILE) for label, path in layers]
    summary_file = ([Location("--summary-file", common["summary_file"], KIND_FILE)]
                    if common["summary_file"] else [])
    # --quiet: what a job prints on the way is held back; the summary line is printed alone.
    held = io.StringIO()
    started = time.perf_counter()

    def emit(result: dict) -> None:  # one summary shape for every command (batchrec.summary)
        run_summary.emit(run_summary.shape(command, result, run_date.isoformat(),
                                           time.perf_counter() - started, kwargs),
                         spark, common["summary_file"])

    try:
        with ambient_locations(config_files, summary_file), (
                contextlib.redirect_stdout(held) if common["quiet"] else contextlib.nullcontext()):
            check_locations(spark, [], [])  # the summary file's own kind, for commands that write nothing else
            result = module.run(spark, settings, run_date, **kwargs)
    except BatchrecError as exc:  # failed with counts to report: an incomplete export, failed validation
        if getattr(exc, "summary", None):
            emit(exc.summary)
        raise
    if isinstance(result, dict) and result:  # --infer-schema prints a schema, not a summary
        emit(result)
    elif held.getvalue():
        sys.stdout.write(held.getvalue())


def _compact(**values: Any) -> dict:
    """Keep only the values a user actually set (None means "not given")."""
    return {k: v for k, v in values.items() if v is not None}


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="batchrec")
def cli() -> None:
    """Batch recommendations and user segments on your own Spark, in Amazon Personalize's formats."""


@cli.command()
@_common_options
@_dataset_options(required=True)
@click.option("--rejects", default=None, help="Delta table receiving every rejected row with its reason.")
@click.option("--report", default=None, help="Write the validation summary as JSON to this file (path or URI).")
@conf_option("--delimiter", key="validation.csv_delimiter", default=None, help="CSV field delimiter.")
@conf_option("--max-reject-fraction", key="validation.max_reject_fraction", type=click.FloatRange(0, 1),
             default=None, help="Fail when more than this fraction of a dataset's rows is rejected.")
@_minimum_options
@click.option("--infer-schema", is_flag=True, help="Print the inferred Personalize schema of each dataset.")
def validate(delimiter, max_reject_fraction, min_interactions, min_users, **kwargs) -> None:
    """Check datasets, write rejects and a summary; exit 1 when the data is not usable."""
    overrides = {"validation": _compact(csv_delimiter=delimiter, max_reject_fraction=max_reject_fraction,
                                        min_interactions=min_interactions,
                                        min_users_with_two_interactions=min_users)}
    _run_job("validate", overrides, **kwargs)


@cli.command()
@_common_options
@_count_options()
@click.option("--output", required=True, help="Folder receiving interactions/, items/, users/ (CSV).")
@click.option("--seed", type=int, default=42, show_default=True, help="Seed; same seed, same data.")
@click.option("--span-days", type=click.IntRange(1), default=90, show_default=True,
              help="Days the timestamps are spread over, ending at the run date.")
@click.option("--clusters", type=click.IntRange(1), default=20, show_default=True,
              help="Hidden taste clusters shared by users and items.")
def generate(**kwargs) -> None:
    """Write a deterministic synthetic dataset in Personalize's CSV format."""
    _run_job("generate", **_counts(kwargs))


@cli.command()
@_common_options
@_dataset_options(required=True)
@click.option("--recipe", type=click.Choice(RECIPE_NAMES), required=True, help="Recipe to train.")
@click.option("--solution", required=True, help="Solution directory (local path or Hadoop URI).")
@click.option("--param", "params", type=KeyValue(), multiple=True,
              help="Recipe parameter, MLlib names for ALS (e.g. rank=64, regParam=0.1).")
@click.option("--hpo", is_flag=True, help="Search parameters on validation data before the final training.")
@_minimum_options
@conf_option("--event-type", "event_types", key="prepare.event_types", multiple=True,
             help="Keep only these event types (repeatable; none: every event type).")
@conf_option("--event-weight", "event_weights", key="prepare.event_weights", type=KeyValue(), multiple=True,
             help="Confidence weight per event type, e.g. purchase=3 (repeatable; unlisted types weigh 1).")
@conf_option("--event-value-threshold", key="prepare.event_value_threshold", type=float, default=None,
             help="Keep events with EVENT_VALUE >= this value.")
@conf_option("--lookback-days", key="prepare.lookback_days", type=click.IntRange(1), default=None,
             help="Train on the last N days before the run date.")
@conf_option("--half-life-days", key="prepare.half_life_days", type=click.FloatRange(min=0, min_open=True),
             default=None, help="Time-decay half-life of interaction weights.")
@click.option("--evaluate/--no-evaluate", default=False, show_default=True,
              help="Also train on a hold-out split and store its metrics with the version "
                   "(a second training: about doubles the time; batchrec evaluate measures on demand).")
def train(min_interactions, min_users, event_types, event_weights, event_value_threshold,
          lookback_days, half_life_days, **kwargs) -> None:
    """Train a recipe into a new immutable solution version."""
    overrides = {
        "validation": _compact(min_interactions=min_interactions,
                               min_users_with_two_interactions=min_users),
        "prepare": _compact(event_types=tuple(event_types) or None,
                            event_weights=dict(event_weights) or None,
                            event_value_threshold=event_value_threshold,
                            lookback_days=lookback_days, half_life_days=half_life_days),
    }
    _run_job("train", overrides, precheck=_check_params(kwargs["recipe"], kwargs["params"]), **kwargs)


def _check_params(recipe: str, params) -> Callable[[Any], None]:
    """A precheck of ``--param`` values against the recipe catalogue (no pyspark import)."""
    def check(settings) -> None:
        spec = catalogue.get(recipe)
        catalogue.resolve_params(recipe, getattr(settings, spec.settings_section), dict(params))

    return check


def _check_evaluate_params(recipes, params) -> Callable[[Any], None]:
    """The precheck of ``evaluate``: every ``--param`` taken by some evaluated recipe, with a valid
    value for each recipe that takes it (the same checks ``evaluate`` repeats, before a JVM starts)."""
    def check(settings) -> None:
        from batchrec.commands.evaluate import route_params

        for recipe, given in route_params(tuple(dict.fromkeys(recipes)), tuple(params)).items():
            spec = catalogue.get(recipe)
            catalogue.resolve_params(recipe, getattr(settings, spec.settings_section), given)

    return check


def _batch_options(func: Callable) -> Callable:
    """Options shared by the batch inference jobs."""
    options = [
        click.option("--solution", required=True, help="Solution directory (local path or Hadoop URI)."),
        click.option("--solution-version", "version", default="latest", show_default=True,
                     help="Solution version id, or latest (the newest complete version trained for "
                          "a run date on or before --run-date)."),
        # The old spelling, hidden: `batchrec --version` is the program's version.
        click.option("--version", "old_version", default=None, hidden=True,
                     help="Old spelling of --solution-version."),
        click.option("--output", required=True, help="Delta table receiving the results."),
        click.option("--jsonl", default=None, help="Also write Personalize batch JSON lines into this folder."),
        click.option("--dynamodb-table", default=None,
                     help="Also export the run to this DynamoDB(-compatible) table ([dynamodb] settings: "
                          "endpoint, region, write budget, TTL)."),
        click.option("--current", default=None,
                     help="Also merge the run into this Delta table holding each key's latest list "
                          "(one MERGE; a backfill never replaces a newer list)."),
        click.option("--current-delete-absent", is_flag=True,
                     help="With --current: also delete the keys of this solution that the run has no "
                          "list for (users or items that left), unless their list is newer."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _filter_options(context_name: str) -> Callable[[Callable], Callable]:
    """``--filter``, ``--filter-name`` and ``--filter-values`` of a batch job whose filters are
    checked (syntax, job context, values) against ``batchrec.filters.<context_name>`` before a JVM
    starts."""
    def decorate(func: Callable) -> Callable:
        options = [
            click.option("--filter", "filter_expression", default=None,
                         help='Personalize filter expression, e.g. '
                              '\'EXCLUDE ItemID WHERE Items.GENRE IN ("Horror")\'.'),
            click.option("--filter-name", default=None,
                         help="A filter expression of the configuration's [filters.named] table."),
            click.option("--filter-values", default=None,
                         help='Placeholder values as JSON, e.g. \'{"GENRE": "\\"Comedy\\""}\'; an input '
                              'line\'s "filterValues" win.'),
        ]
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def _check_filter(context_name: str, kwargs: dict, reads: tuple[str, ...] = ()) -> Callable[[Any], None]:
    """The precheck of a job's filter options (syntax errors exit 2 before a JVM starts); warns
    about a dataset option (``--interactions``, ``--items``, ``--users``) that neither the job
    (``reads``) nor its filter reads."""
    def check(settings) -> None:
        from batchrec import filters
        from batchrec.batch.eligibility import job_filter_options

        found = job_filter_options(settings.filters, getattr(filters, context_name), kwargs["filter_expression"],
                                   kwargs["filter_values"], kwargs["filter_name"], kwargs["input_path"])
        used = set(reads) | (found.kinds() if found is not None else set())
        for kind in ("interactions", "items", "users"):
            if kwargs.get(kind) and kind not in used:
                click.echo(f"batchrec: warning: --{kind} {kwargs[kind]} is not read (no --filter "
                           f"reads the {kind} dataset); ignored", err=True)

    return check


def _fresh_data_options(func: Callable) -> Callable:
    """Fresher datasets than those recorded with the solution version (batch jobs that use them)."""
    options = [
        click.option("--interactions", default=None,
                     help="Fresher interactions: seen items (recommend, segment --exclude-interacted) "
                          "and a --filter's Interactions conditions."),
        click.option("--items", default=None,
                     help="Fresher items: creation times (exploration) and a --filter's Items fields."),
        click.option("--users", default=None,
                     help="Fresher users; read by a --filter testing Users or CurrentUser fields."),
        click.option("--format", "data_format", type=click.Choice(FORMAT_NAMES), default="auto",
                     show_default=True, help="Format of --interactions/--items/--users."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@cli.command()
@_common_options
@_batch_options
@_fresh_data_options
@click.option("--input", "input_path", default=None,
              help='JSON lines {"userId": ...}; default: every user known to the model.')
@conf_option("--num-results", key="recommend.num_results", type=click.IntRange(1, MAX_NUM_RESULTS),
             default=None, help="Items per user.")
@conf_option("--exclude-seen/--include-seen", key="recommend.exclude_seen", default=None,
             help="Drop items the user already interacted with.")
@conf_option("--exclude-event-type", "exclude_event_types", key="recommend.exclude_event_types",
             multiple=True, help="Only interactions of these event types count as seen (repeatable; "
                                 "none: every event type).")
@conf_option("--exploration-weight", key="recommend.exploration_weight", type=click.FloatRange(0, 1),
             default=None, help="Bonus for young, little-seen items; 0 is off.")
@conf_option("--exploration-item-age-cut-off", key="recommend.exploration_item_age_cut_off",
             type=click.FloatRange(min=1), default=None,
             help="Days; items younger than this may be explored.")
@_filter_options("RECOMMEND")
def recommend(num_results, exclude_seen, exclude_event_types, exploration_weight,
              exploration_item_age_cut_off, **kwargs) -> None:
    """Top-N items per user into Delta (and optionally Personalize JSON lines)."""
    overrides = {"recommend": _compact(
        num_results=num_results, exclude_seen=exclude_seen,
        exclude_event_types=tuple(exclude_event_types) or None,
        exploration_weight=exploration_weight,
        exploration_item_age_cut_off=exploration_item_age_cut_off)}
    _run_job("recommend", overrides, precheck=_check_filter("RECOMMEND", kwargs, ("interactions", "items")),
             **kwargs)


@cli.command()
@_common_options
@_batch_options
@_fresh_data_options
@click.option("--input", "input_path", required=True,
              help='JSON lines {"userId": ..., "itemList": [...]}.')
@_filter_options("RANK")
def rank(**kwargs) -> None:
    """Re-rank each user's item list by the model's scores."""
    _run_job("rank", precheck=_check_filter("RANK", kwargs), **kwargs)


def _dynamodb_table_name(ctx, param, value):
    from batchrec.errors import UsageError
    from batchrec.sinks.dynamodb_table import check_table_name

    try:
        return check_table_name(value)
    except UsageError as exc:
        raise click.BadParameter(str(exc).removeprefix(f"--table {value!r} "), ctx, param) from exc


@cli.command("export-dynamodb")
@_common_options
@click.option("--input", "input", required=True,
              help="Delta output table of a batch job (recommendations, related items or segments).")
@click.option("--table", required=True, callback=_dynamodb_table_name, help="DynamoDB table name.")
@click.option("--solution", default=None, help="Export only this solution's rows of the run (default: all).")
@click.option("--shape", type=click.Choice(("recommendations", "related", "segments")), default=None,
              help="The table's shape (default: told by its columns).")
@conf_option("--endpoint-url", key="dynamodb.endpoint_url", default=None,
             help="DynamoDB-compatible endpoint, e.g. http://localhost:8000; empty: AWS.")
@conf_option("--region", key="dynamodb.region", default=None,
             help="AWS region; empty: boto3's chain, e.g. AWS_REGION.")
@conf_option("--ttl-days", key="dynamodb.ttl_days", type=click.IntRange(0), default=None,
             help="Items expire D days after the export; 0: no TTL.")
@click.option("--create-table/--no-create-table", default=True, show_default=True,
              help="Create the table (on-demand, TTL on) when it is missing.")
@conf_option("--write-rate", key="dynamodb.write_rate", type=click.FloatRange(0), default=None,
             help="Global write budget per second, in [dynamodb] write_rate_unit; 0: no limit.")
@conf_option("--writers", key="dynamodb.writers", type=click.IntRange(1), default=None,
             help="Writer tasks; 0 in the configuration: Spark's default parallelism.")
@conf_option("--verify-sample", key="dynamodb.verify_sample", type=click.IntRange(0), default=None,
             help="Items read back and compared after the export.")
@click.option("--allow-older-run", is_flag=True,
              help="Export even though the input has a later run of the same solution.")
def export_dynamodb(write_rate, writers, verify_sample, **kwargs) -> None:
    """Write one run's results to DynamoDB (or a compatible store); exit 1 unless every item arrived."""
    overrides = {"dynamodb": _compact(write_rate=write_rate, writers=writers, verify_sample=verify_sample)}
    _run_job("export-dynamodb", overrides, **kwargs)


@cli.command()
@_common_options
@_batch_options
@_fresh_data_options
@click.option("--input", "input_path", default=None,
              help='JSON lines {"itemId": ...}; default: every item the model relates.')
@conf_option("--num-results", key="recommend.num_results", type=click.IntRange(1, MAX_NUM_RESULTS),
             default=None, help="Related items per item.")
@_filter_options("RELATED")
def related(num_results, **kwargs) -> None:
    """Related items per item (sims, similar-items) into Delta (and Personalize JSON lines)."""
    _run_job("related", {"recommend": _compact(num_results=num_results)},
             precheck=_check_filter("RELATED", kwargs), **kwargs)


@cli.command()
@_common_options
@_batch_options
@_fresh_data_options
@click.option("--input", "input_path", default=None,
              help='JSON lines {"itemId": ...} or {"itemAttributes": "ITEMS.GENRES = \\"Comedy\\""}; '
                   "default: one segment per item of the model.")
@conf_option("--num-results", key="segment.num_results", type=click.IntRange(1, 5_000_000), default=None,
             help="Users per segment.")
@conf_option("--fraction", key="segment.fraction", type=click.FloatRange(0, 1, min_open=True), default=None,
             help="Or the top share of all users, e.g. 0.01.")
@conf_option("--exclude-interacted/--include-interacted", key="segment.exclude_interacted", default=None,
             help="Leave out users who already interacted with the segment's items.")
@_filter_options("ITEM_SEGMENT")
def segment(num_results, fraction, exclude_interacted, **kwargs) -> None:
    """User segments per item or item-attribute query into Delta (and Personalize JSON lines)."""
    if num_results is not None and fraction is not None:
        raise click.UsageError("--num-results and --fraction both given; choose one segment size")
    _run_job("segment", {"segment": _compact(num_results=num_results, fraction=fraction,
                                             exclude_interacted=exclude_interacted)},
             precheck=_check_filter("ITEM_SEGMENT", kwargs, ("interactions", "items")), **kwargs)


@cli.command()
@_common_options
@_dataset_options(required=True)
@click.option("--recipe", "recipes", type=click.Choice(RECIPE_NAMES), multiple=True, required=True,
              help="Recipe to evaluate; repeat to compare several on the same split.")
@conf_option("--protocol", key="evaluate.protocol", type=click.Choice(PROTOCOL_NAMES), default=None,
             help="Hold-out protocol.")
@conf_option("--k", "k_values", key="evaluate.k", default=None, help="Cut-offs, comma-separated.")
@click.option("--param", "params", type=KeyValue(), multiple=True, help="Recipe parameter (repeatable).")
@click.option("--hpo", is_flag=True, help="Random search over the recipe's parameters on a validation split.")
@click.option("--report", required=True, help="JSON report file (path or URI).")
@click.option("--html", default=None, help="Self-contained HTML report file (path or URI).")
@_minimum_options
def evaluate(protocol, k_values, min_interactions, min_users, **kwargs) -> None:
    """Compare recipes on one hold-out split; console table, JSON and HTML reports."""
    k_tuple = None
    if k_values:
        try:
            k_tuple = tuple(int(k) for k in k_values.split(","))
        except ValueError:
            raise click.BadParameter(f"{k_values!r} is not a comma-separated list of integers",
                                     param_hint="--k")
        if any(k < 1 for k in k_tuple):
            raise click.BadParameter("every K must be at least 1", param_hint="--k")
    overrides = {
        "evaluate": _compact(protocol=protocol, k=k_tuple),
        "validation": _compact(min_interactions=min_interactions,
                               min_users_with_two_interactions=min_users),
    }
    _run_job("evaluate", overrides, precheck=_check_evaluate_params(kwargs["recipes"], kwargs["params"]),
             **kwargs)


@cli.command()
@_common_options
@click.option("--workdir", default="batchrec-demo", show_default=True, help="Folder for data and outputs.")
@_count_options(defaults=(2000, 500, 60000))
def demo(**kwargs) -> None:
    """Generate data, validate, train, recommend; print where the results are."""
    _run_job("demo", **_counts(kwargs))


STAGE_NAMES = ("validate", "train", "recommend", "related", "segment", "export-dynamodb")


@cli.command("run")
@click.argument("pipeline_file", metavar="PIPELINE.toml", type=click.Path(path_type=Path))
@_common_options
@click.option("--stage", type=click.Choice(STAGE_NAMES), default=None,
              help="Run only this stage (one Airflow task per stage) once the stages it needs are "
                   "complete in the run's state file.")
@click.option("--force", is_flag=True,
              help="Run again although the run date (or --stage) is complete; outputs are replaced.")
@click.option("--dry-run", is_flag=True,
              help="Check the pipeline file and the configuration, print the plan; start no Spark.")
def run(pipeline_file, stage, force, dry_run, **kwargs) -> None:
    """The nightly pipeline: validate, train when due, recommend, related, segment, export-dynamodb.

    Stages run in one Spark session; each run date gets a state file, a manifest and _SUCCESS under
    the pipeline's runs folder. A complete run date is a no-op (--force runs it again); after a
    failure the next run resumes at the stage that failed.
    """
    from batchrec import pipeline

    run_date = kwargs["run_date"] or dt.datetime.now(dt.timezone.utc).date()
    kwargs["run_date"] = run_date
    plan = pipeline.load(pipeline_file, run_date)
    if stage is not None and stage not in plan.stages:
        raise click.BadParameter(f"{stage!r} is not a stage of {pipeline_file} (stages: "
                                 f"{', '.join(plan.stages)})", param_hint="--stage")
    if kwargs["config_file"] is None and plan.config:
        kwargs["config_file"] = Path(plan.config)
    if kwargs["env"] is None and plan.env:
        kwargs["env"] = plan.env
    overrides = {section: dict(values) for section, values in plan.settings.items()}
    try:  # the pipeline's [settings] are checked here, named as what they are
        load_settings(env=kwargs["env"], config_file=kwargs["config_file"], overrides=overrides)
    except ConfigError as exc:
        message = str(exc)
        if message.startswith("command line: "):
            message = f"{pipeline_file}: [settings] " + message.removeprefix("command line: ")
        raise ConfigError(message) from None
    if dry_run:
        from batchrec import summary as run_summary

        run_summary.emit({"command": "run", "dry_run": True, "stage": stage, "force": force,
                          **plan.describe()})
        return
    _run_job("run", overrides, plan=plan, stage=stage, force=force, **kwargs)


@cli.group()
def versions() -> None:
    """The versions of a solution: list, describe, prune."""


def _versions_command(name: str, summary: bool = False) -> Callable:
    """A ``versions`` subcommand: the common options and ``--solution`` (``--summary-file`` and
    ``--quiet`` only for ``prune``: the listings are their own output)."""
    def decorate(func: Callable) -> Callable:
        func = click.option("--solution", required=True,
                            help="Solution directory (local path or Hadoop URI).")(func)
        return versions.command(name)(_common_options(func, summary=summary))

    return decorate


@_versions_command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of the table.")
def versions_list(**kwargs) -> None:
    """Every version: status, run date, recipe, creation time, size; marks the one latest means
    for --run-date (default today)."""
    _run_job("versions", action="list", summary_file=None, quiet=False, **kwargs)


@_versions_command("describe")
@click.argument("version", default="latest")
def versions_describe(**kwargs) -> None:
    """One version as JSON: run date, recipe, parameters, metrics, data statistics, size, artifacts."""
    _run_job("versions", action="describe", summary_file=None, quiet=False, **kwargs)


@_versions_command("prune", summary=True)
@click.option("--keep", type=click.IntRange(1), required=True, help="Keep this many of the newest versions.")
@click.option("--pin", "pins", multiple=True,
              help="A version a job is pinned to with --solution-version; never removed (repeatable).")
@click.option("--dry-run", is_flag=True, help="Print what would be removed; remove nothing.")
def versions_prune(**kwargs) -> None:
    """Remove old complete versions; never one that is pinned or that latest needs for --run-date
    (default today) or a later run date. Prints what it removed."""
    _run_job("versions", action="prune", **kwargs)


@cli.group("config")
def config_group() -> None:
    """The configuration: show the effective values and where each came from."""


@config_group.command("show")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="Extra TOML file applied after conf/base.toml and conf/<env>.toml.")
@click.option("--env", envvar="BATCHREC_ENV", default=None,
              help="Configuration overlay conf/<ENV>.toml (env: BATCHREC_ENV).")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of commented TOML.")
def config_show(config_file, env, as_json) -> None:
    """Print the effective configuration (TOML, loadable with --config) and, per key, the layer it
    came from: base.toml, conf/<env>.toml, --config, a BATCHREC_<SECTION>__<KEY> variable, or default."""
    from batchrec.commands.config_show import show

    click.echo(show(env=env, config_file=config_file, as_json=as_json))


@cli.command()
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="Extra TOML file applied after conf/base.toml and conf/<env>.toml.")
@click.option("--env", envvar="BATCHREC_ENV", default=None,
              help="Configuration overlay conf/<ENV>.toml (env: BATCHREC_ENV).")
@click.option("--output", "outputs", multiple=True,
              help="An output location to check for write access (repeatable; a URI that is not a local "
                   "path is checked through a local Spark session).")
@click.option("--start-spark", is_flag=True,
              help="Also start a local Spark session with Delta and write and read a Delta table "
                   "(resolves the Delta jars when they are not cached yet).")
@click.option("--master", default=None, help="Spark master for --start-spark (default local[1]).")
def doctor(config_file, env, outputs, start_spark, master) -> None:
    """Check Java, Python, pyspark and delta-spark, the Delta jars, the configuration and output
    locations; one line per check (ok or FAIL), exit 1 when any fails."""
    from batchrec.commands import doctor as checks

    results = checks.run_checks(env=env, config_file=config_file, outputs=outputs,
                                start_spark=start_spark, master=master)
    failed = [c.name for c in results if not c.ok]
    if failed:
        from batchrec.errors import JobError

        raise JobError(f"{len(failed)} of {len(results)} checks failed: {', '.join(failed)}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI and map every outcome onto the documented exit codes.

    Every failure ends in one line on stderr (``batchrec: <kind>: <what and where>``); tracebacks,
    Python's and Java's, go to the log at DEBUG level only.
    """
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="batchrec",
                 standalone_mode=False)
        return EXIT_OK
    except click.exceptions.Exit as exc:  # --help, --version
        return exc.exit_code
    except _NO_ARGS_IS_HELP as exc:  # bare `batchrec` or `batchrec <group>`: show the help
        exc.show()
        return EXIT_USAGE
    except click.ClickException as exc:  # usage errors: bad option, missing argument, bad value
        hint = ""
        ctx = getattr(exc, "ctx", None)
        if ctx is not None:
            hint = f" (see '{ctx.command_path} --help')"
        click.echo(f"batchrec: usage error: {_single_line(exc.format_message())}{hint}", err=True)
        return EXIT_USAGE
    except click.exceptions.Abort:
        click.echo("batchrec: aborted", err=True)
        return EXIT_FAILURE
    except BatchrecError as exc:
        return _report_failure(exc, exc)
    except Exception as exc:  # a failure inside Spark or an unexpected one: one line, trace to DEBUG
        from batchrec.failures import translate

        known = translate(exc)
        return _report_failure(exc, known)


def _report_failure(exc: BaseException, known: Optional[BatchrecError]) -> int:
    """Log the traceback at DEBUG and print one line; return the exit code."""
    log.debug("failure", exc_info=exc)
    if known is None:
        from batchrec.failures import one_line

        click.echo(f"batchrec: error: {_single_line(one_line(exc))} (unexpected; rerun with "
                   "--log-level DEBUG for the traceback)", err=True)
        return EXIT_FAILURE
    kinds = {ConfigError: "configuration error", UsageError: "usage error"}
    kind = next((label for cls, label in kinds.items() if isinstance(known, cls)), "error")
    click.echo(f"batchrec: {kind}: {_single_line(str(known))}", err=True)
    return known.exit_code


def _single_line(text: str) -> str:
    """The first non-blank line of ``text`` (messages are one line; a stray trace is cut off)."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def entry_point() -> None:
    """console_scripts target."""
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    entry_point()
