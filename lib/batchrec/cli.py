"""The ``batchrec`` command line.

Everything is parsed and checked here before Spark starts; each command then builds the one
SparkSession and hands it to ``batchrec.commands.<name>.run``. Job modules are imported lazily so
``batchrec --help`` answers without importing pyspark or starting a JVM.

Exit codes (the contract with Airflow): 0 success, 1 job or data failure, 2 usage or configuration
error. One line on stderr says what went wrong; the traceback goes to the log at DEBUG level.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import click

from batchrec import __version__
from batchrec.config import load_settings, parse_literal
from batchrec.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, BatchrecError, ConfigError

log = logging.getLogger("batchrec.cli")

RECIPE_NAMES = ("user-personalization", "popularity-count", "trending-now", "sims", "similar-items", "ease", "sar")
PROTOCOL_NAMES = ("personalize", "temporal", "stratified-user", "stratified-item")
FORMAT_NAMES = ("auto", "csv", "parquet", "delta", "json")
MAX_NUM_RESULTS = 500
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


def _common_options(func: Callable) -> Callable:
    """Options every job takes: run date, configuration layers, Spark master, log level."""
    options = [
        click.option("--run-date", type=RunDate(), default=None,
                     help="Logical date of this run (Airflow {{ ds }}); default today (UTC)."),
        click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
                     help="Extra TOML file applied after conf/base.toml and conf/<env>.toml."),
        click.option("--env", envvar="BATCHREC_ENV", default=None,
                     help="Configuration overlay conf/<ENV>.toml (env: BATCHREC_ENV)."),
        click.option("--master", default=None, help="Spark master URL for embedded runs."),
        click.option("--log-level", default="INFO", show_default=True,
                     type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
                     help="batchrec's own log level."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


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


def _run_job(command: str, overrides: Optional[dict] = None, **kwargs: Any) -> None:
    """Load configuration, start Spark, run ``batchrec.commands.<command>.run``."""
    from batchrec import logs

    ctx = click.get_current_context()
    common = {k: kwargs.pop(k) for k in ("run_date", "config_file", "env", "master", "log_level")}
    logs.configure(common["log_level"])
    overrides = {k: v for k, v in (overrides or {}).items() if v}
    if common["master"]:
        overrides.setdefault("spark", {})["master"] = common["master"]
    settings = load_settings(env=common["env"], config_file=common["config_file"], overrides=overrides)
    run_date = common["run_date"] or dt.datetime.now(dt.timezone.utc).date()
    module = importlib.import_module(f"batchrec.commands.{command.replace('-', '_')}")
    from batchrec.spark import get_spark

    log.info("command=%s run_date=%s version=%s", ctx.info_name, run_date, __version__)
    spark = get_spark(settings.spark)
    module.run(spark, settings, run_date, **kwargs)


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
@click.option("--report", type=click.Path(path_type=Path), default=None,
              help="Write the validation summary as JSON here.")
@click.option("--delimiter", default=None, help="CSV field delimiter (default ',').")
@click.option("--max-reject-fraction", type=click.FloatRange(0, 1), default=None,
              help="Fail when more than this fraction of a dataset's rows is rejected (default 0.01).")
@click.option("--min-interactions", type=click.IntRange(0), default=None,
              help="Lower Personalize's minimum of 1000 interactions (small tests).")
@click.option("--min-users", type=click.IntRange(0), default=None,
              help="Lower Personalize's minimum of 25 users with at least 2 interactions.")
@click.option("--infer-schema", is_flag=True, help="Print the inferred Personalize schema of each dataset.")
def validate(delimiter, max_reject_fraction, min_interactions, min_users, **kwargs) -> None:
    """Check datasets, write rejects and a summary; exit 1 when the data is not usable."""
    overrides = {"validation": _compact(csv_delimiter=delimiter, max_reject_fraction=max_reject_fraction,
                                        min_interactions=min_interactions,
                                        min_users_with_two_interactions=min_users)}
    _run_job("validate", overrides, **kwargs)


@cli.command()
@_common_options
@click.option("--users", "n_users", type=click.IntRange(1), required=True, help="Number of users.")
@click.option("--items", "n_items", type=click.IntRange(1), required=True, help="Number of items.")
@click.option("--interactions", "n_interactions", type=click.IntRange(1), required=True,
              help="Number of interaction rows.")
@click.option("--output", required=True, help="Folder receiving interactions/, items/, users/ (CSV).")
@click.option("--seed", type=int, default=42, show_default=True, help="Seed; same seed, same data.")
@click.option("--span-days", type=click.IntRange(1), default=90, show_default=True,
              help="Days the timestamps are spread over, ending at the run date.")
@click.option("--clusters", type=click.IntRange(1), default=20, show_default=True,
              help="Hidden taste clusters shared by users and items.")
def generate(**kwargs) -> None:
    """Write a deterministic synthetic dataset in Personalize's CSV format."""
    _run_job("generate", **kwargs)


@cli.command()
@_common_options
@_dataset_options(required=True)
@click.option("--recipe", type=click.Choice(RECIPE_NAMES), required=True, help="Recipe to train.")
@click.option("--solution", required=True, help="Solution directory (local path or Hadoop URI).")
@click.option("--param", "params", type=KeyValue(), multiple=True,
              help="Recipe parameter, MLlib names for ALS (e.g. rank=64, regParam=0.1).")
@click.option("--hpo", is_flag=True, help="Search parameters on validation data before the final training.")
@click.option("--min-interactions", type=click.IntRange(0), default=None,
              help="Lower Personalize's minimum of 1000 interactions (small tests).")
@click.option("--min-users", type=click.IntRange(0), default=None,
              help="Lower Personalize's minimum of 25 users with at least 2 interactions.")
@click.option("--event-type", "event_types", multiple=True, help="Keep only these event types (repeatable).")
@click.option("--event-weight", "event_weights", type=KeyValue(), multiple=True,
              help="Confidence weight per event type, e.g. purchase=3 (repeatable).")
@click.option("--event-value-threshold", type=float, default=None,
              help="Keep events with EVENT_VALUE >= this value.")
@click.option("--lookback-days", type=click.IntRange(1), default=None,
              help="Train on the last N days before the run date.")
@click.option("--half-life-days", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Time-decay half-life of interaction weights.")
@click.option("--evaluate/--no-evaluate", default=True, show_default=True,
              help="Store hold-out metrics with the version.")
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
    _run_job("train", overrides, **kwargs)


def _batch_options(func: Callable) -> Callable:
    """Options shared by the batch inference jobs."""
    options = [
        click.option("--solution", required=True, help="Solution directory (local path or Hadoop URI)."),
        click.option("--version", "version", default="latest", show_default=True,
                     help="Solution version id, or latest (newest complete version)."),
        click.option("--output", required=True, help="Delta table receiving the results."),
        click.option("--jsonl", default=None, help="Also write Personalize batch JSON lines into this folder."),
        click.option("--interactions", default=None, help="Fresher interactions than the version's."),
        click.option("--items", default=None, help="Fresher items than the version's."),
        click.option("--users", default=None, help="Fresher users than the version's."),
        click.option("--format", "data_format", type=click.Choice(FORMAT_NAMES), default="auto",
                     show_default=True, help="Format of --interactions/--items/--users."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@cli.command()
@_common_options
@_batch_options
@click.option("--input", "input_path", default=None,
              help='JSON lines {"userId": ...}; default: every user known to the model.')
@click.option("--num-results", type=click.IntRange(1, MAX_NUM_RESULTS), default=None,
              help=f"Items per user (default 25, at most {MAX_NUM_RESULTS}).")
@click.option("--exclude-seen/--include-seen", default=None,
              help="Drop items the user already interacted with (default on).")
@click.option("--exclude-event-type", "exclude_event_types", multiple=True,
              help="Only interactions of these event types count as seen (repeatable).")
@click.option("--exploration-weight", type=click.FloatRange(0, 1), default=None,
              help="0 to 1; bonus for young, little-seen items (default 0: off).")
@click.option("--exploration-item-age-cut-off", type=click.FloatRange(min=1), default=None,
              help="Days; items younger than this may be explored (default 30).")
def recommend(num_results, exclude_seen, exclude_event_types, exploration_weight,
              exploration_item_age_cut_off, **kwargs) -> None:
    """Top-N items per user into Delta (and optionally Personalize JSON lines)."""
    overrides = {"recommend": _compact(
        num_results=num_results, exclude_seen=exclude_seen,
        exclude_event_types=tuple(exclude_event_types) or None,
        exploration_weight=exploration_weight,
        exploration_item_age_cut_off=exploration_item_age_cut_off)}
    _run_job("recommend", overrides, **kwargs)


@cli.command()
@_common_options
@_batch_options
@click.option("--input", "input_path", required=True,
              help='JSON lines {"userId": ..., "itemList": [...]}.')
def rank(**kwargs) -> None:
    """Re-rank each user's item list by the model's scores."""
    _run_job("rank", **kwargs)


@cli.command()
@_common_options
@_dataset_options(required=True)
@click.option("--recipe", "recipes", type=click.Choice(RECIPE_NAMES), multiple=True, required=True,
              help="Recipe to evaluate; repeat to compare several on the same split.")
@click.option("--protocol", type=click.Choice(PROTOCOL_NAMES), default=None,
              help="Hold-out protocol (default personalize).")
@click.option("--k", "k_values", default=None, help="Cut-offs, comma-separated (default 5,10,25).")
@click.option("--param", "params", type=KeyValue(), multiple=True, help="Recipe parameter (repeatable).")
@click.option("--hpo", is_flag=True, help="Random search over the recipe's parameters on a validation split.")
@click.option("--report", type=click.Path(path_type=Path), required=True, help="JSON report file.")
@click.option("--html", type=click.Path(path_type=Path), default=None, help="Self-contained HTML report.")
@click.option("--min-interactions", type=click.IntRange(0), default=None,
              help="Lower Personalize's minimum of 1000 interactions (small tests).")
@click.option("--min-users", type=click.IntRange(0), default=None,
              help="Lower Personalize's minimum of 25 users with at least 2 interactions.")
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
    _run_job("evaluate", overrides, **kwargs)


@cli.command()
@_common_options
@click.option("--workdir", default="batchrec-demo", show_default=True, help="Folder for data and outputs.")
@click.option("--users", "n_users", type=click.IntRange(1), default=2000, show_default=True)
@click.option("--items", "n_items", type=click.IntRange(1), default=500, show_default=True)
@click.option("--interactions", "n_interactions", type=click.IntRange(1), default=60000, show_default=True)
def demo(**kwargs) -> None:
    """Generate data, validate, train, recommend; print where the results are."""
    _run_job("demo", **kwargs)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI and map every outcome onto the documented exit codes."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="batchrec",
                 standalone_mode=False)
        return EXIT_OK
    except click.exceptions.Exit as exc:  # --help, --version
        return exc.exit_code
    except click.ClickException as exc:  # usage errors: bad option, missing argument, bad value
        exc.show()
        return EXIT_USAGE
    except click.exceptions.Abort:
        click.echo("batchrec: aborted", err=True)
        return EXIT_FAILURE
    except BatchrecError as exc:
        log.debug("failure", exc_info=True)
        kind = "configuration error" if isinstance(exc, ConfigError) else "error"
        click.echo(f"batchrec: {kind}: {exc}", err=True)
        return exc.exit_code
    except Exception as exc:  # an unexpected failure: the job failed; keep the traceback in the log
        log.error("unexpected failure", exc_info=True)
        first_line = next((line for line in str(exc).splitlines() if line.strip()), "")
        click.echo(f"batchrec: error: {type(exc).__name__}: {first_line.strip()}", err=True)
        return EXIT_FAILURE


def entry_point() -> None:
    """console_scripts target."""
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    entry_point()
