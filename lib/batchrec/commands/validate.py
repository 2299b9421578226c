"""``batchrec validate``: check datasets, write rejects and a summary, fail when data is unusable.

The summary is printed as a table and, with ``--report``, written as JSON. Rejects and the report
are written before the command fails, so the user can inspect what was wrong.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

import click

from batchrec.config import Settings
from batchrec.datasets import readers, validation
from batchrec.datasets import schema as dataset_schema
from batchrec.datasets.schema import DATASET_KINDS, schemas_by_kind
from batchrec.datasets.summary import ROWS_AFTER_RUN_DATE, minimum_counts, write_report
from batchrec.errors import DataError
from batchrec.locations import KIND_DELTA, KIND_FILE, Location, check_locations, local_uri

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

EXAMPLE_WIDTH = 100


def run(spark: "SparkSession", settings: Settings, run_date: dt.date, *, interactions: str,
        items: Optional[str] = None, users: Optional[str] = None, data_format: str = "auto",
        schemas: Sequence[Path] = (), renames: Sequence[tuple[str, str]] = (),
        rejects: Optional[str] = None, report: Optional[str] = None, infer_schema: bool = False) -> dict:
    """Validate the datasets and return the summary.

    With ``infer_schema`` the inferred Personalize schema of each dataset is printed (Avro JSON to
    save and pass back with ``--schema``) and nothing is validated.

    Raises:
        UsageError: ``--rejects`` or ``--report`` would overwrite a dataset, a schema, the other
            output or something that is not a previous output of its kind (checked before reading).
        DataError: a dataset has too many rejected rows or the interactions miss Personalize's
            minimums (after the rejects table and the report are written).
    """
    paths = {k: p for k, p in zip(DATASET_KINDS, (interactions, items, users)) if p}
    outputs = [Location("--rejects", rejects, KIND_DELTA)] if rejects else []
    outputs += [Location("--report", str(report), KIND_FILE)] if report is not None else []
    check_locations(spark, dataset_locations(paths, schemas), outputs)
    if infer_schema:
        given = schemas_by_kind(tuple(schemas))
        for kind, path in paths.items():
            df = readers.read_dataset(spark, path, kind, data_format, settings.validation.csv_delimiter,
                                      given.get(kind), renames)
            click.echo(f"# {kind}: {path}")
            click.echo(dataset_schema.infer_schema(df, kind).to_json())
        return {}
    with validation.load_datasets(
            spark, settings, interactions, items, users, fmt=data_format, schemas=schemas,
            renames=renames, rejects_path=rejects, report_path=None, run_date=run_date,
            enforce=False) as result:
        summary = result.summary
        summary["minimums"] = minimum_counts(result.interactions, settings.validation)
    summary["failures"] = summary["failures"] + summary["minimums"]["failures"]
    summary["passed"] = not summary["failures"]
    if report is not None:
        write_report(spark, summary, str(report))
    click.echo(format_summary(summary))
    if summary["failures"]:
        where = [f"rejected rows: {rejects}"] if rejects else []
        where += [f"report: {report}"] if report else []
        failure = DataError("validation failed: " + "; ".join(summary["failures"])
                            + (f" ({', '.join(where)})" if where else ""))
        failure.summary = summary  # the CLI still prints the counts (batchrec.summary)
        raise failure
    return summary


def dataset_locations(paths: Mapping[str, str], schemas: Sequence[Any] = ()) -> list[Location]:
    """The inputs of a dataset-reading command: ``--interactions``/``--items``/``--users`` and the
    ``--schema`` files (read by the driver, hence local)."""
    found = [Location(f"--{kind}", path) for kind, path in paths.items() if path]
    return found + [Location("--schema", local_uri(str(s)), KIND_FILE) for s in schemas
                    if isinstance(s, (str, Path))]


def format_summary(summary: Mapping[str, Any]) -> str:
    """A readable table of rows read/valid/rejected, rejects per reason, notes and minimum checks.

    "valid" counts the rows the job keeps: valid rows after the end of the run date are counted
    apart ("after run date").
    """
    lines = [f"Validation for run date {summary['run_date']}", ""]
    datasets = summary["datasets"].values()
    # Valid rows after the end of the run date (a backfill) are left out, and shown when there are any.
    after = any(s.get(ROWS_AFTER_RUN_DATE) for s in datasets)
    header = ("dataset", "rows read", "valid", "rejected", "rejected %") + \
        (("after run date",) if after else ()) + ("path",)
    rows = [(s["dataset"], f"{s['rows_read']:,}", f"{s['rows_valid']:,}", f"{s['rows_rejected']:,}",
             f"{s['reject_fraction']:.2%}") + ((f"{s.get(ROWS_AFTER_RUN_DATE, 0):,}",) if after else ())
            + (s["path"],) for s in datasets]
    lines += _table(header, rows)
    reasons = [(s["dataset"], r["reason"], r["field"] or "-", f"{r['rows']:,}",
                _shorten(r.get("example") or ""))
               for s in summary["datasets"].values() for r in s["reasons"]]
    if reasons:
        lines += ["", "Rejected rows by reason:"]
        lines += _table(("dataset", "reason", "field", "rows", "example"), reasons)
    notes = [n for s in summary["datasets"].values() for n in s["notes"]]
    if notes:
        lines += ["", "Notes:"] + [f"  {n}" for n in notes]
    minimums = summary.get("minimums")
    if minimums:
        lines += ["", "Personalize minimums:",
                  _minimum_line("interactions", minimums["interactions"], minimums["min_interactions"]),
                  _minimum_line("users with >= 2 interactions", minimums["users_with_two_interactions"],
                                minimums["min_users_with_two_interactions"])]
    if summary.get("rejects_path"):
        lines += ["", f"Rejected rows written to {summary['rejects_path']}"]
    lines += ["", "Result: PASSED" if not summary["failures"] else "Result: FAILED"]
    lines += [f"  - {f}" for f in summary["failures"]]
    return "\n".join(lines)


def _minimum_line(label: str, value: int, needed: int) -> str:
    return f"  {label}: {value:,} (need {needed:,}) {'ok' if value >= needed else 'FAILED'}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    return out + [fmt.format(*map(str, r)) for r in rows]


def _shorten(text: str) -> str:
    return text if len(text) <= EXAMPLE_WIDTH else text[: EXAMPLE_WIDTH - 3] + "..."
