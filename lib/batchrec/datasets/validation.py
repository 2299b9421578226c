"""Validate datasets: type every column, reject bad rows with a reason, summarize, enforce limits.

Every job that reads datasets calls :func:`load_datasets`. Each row gets the list of rules it breaks
(:func:`batchrec.datasets.rules.flag_rows`, a pure transform); the first is its reason. One
aggregation per dataset counts rows per reason and per file (:func:`batchrec.datasets.summary.summarize`),
rejected rows go to a Delta table replaced per run date (:mod:`batchrec.datasets.rejects`), and the
valid rows come back typed and persisted for the job to reuse.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from batchrec import logs
from batchrec.config import Settings
from batchrec.datasets import readers
from batchrec.datasets.rejects import reject_rows, write_rejects
from batchrec.datasets.rules import flag_rows, valid_rows
from batchrec.datasets.schema import (DATASET_KINDS, INTERACTIONS, ITEMS, USERS, DatasetSchema,
                                      load_personalize_schema)
from batchrec.datasets.summary import summarize, write_report
from batchrec.dates import end_of_day_or_now
from batchrec.errors import DataError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidatedDatasets:
    """Typed, valid rows of each dataset (persisted) and the validation summary."""

    interactions: "DataFrame"
    items: Optional["DataFrame"] = None
    users: Optional["DataFrame"] = None
    summary: dict = field(default_factory=dict)


def read_failure(exc: Exception, kind: str, path: str) -> Exception:
    """The batchrec error for a failure while reading a dataset's files (one line, names the file)."""
    from batchrec.errors import BatchrecError
    from batchrec.failures import one_line, translate

    if isinstance(exc, BatchrecError):
        return exc
    known = translate(exc, path)
    return known if known is not None else DataError(
        f"{path}: cannot read the {kind} dataset: {one_line(exc)}")


def max_timestamp_for(run_date: Optional[dt.date]) -> int:
    """End of the run date (UTC) in epoch seconds, or now when there is no run date."""
    return end_of_day_or_now(run_date)


def load_datasets(spark: "SparkSession", settings: Settings, interactions: str,
                  items: Optional[str] = None, users: Optional[str] = None, fmt: str = "auto",
                  schemas: Sequence[Any] = (), renames: Sequence[tuple[str, str]] = (),
                  rejects_path: Optional[str] = None, report_path: Optional[Path] = None,
                  run_date: Optional[dt.date] = None, *, enforce: bool = True) -> ValidatedDatasets:
    """Read, validate and type the datasets; write rejects and report; return the valid rows.

    Args:
        spark: the session.
        settings: ``settings.validation`` supplies the limits and the CSV delimiter.
        interactions, items, users: dataset paths or URIs (items/users optional).
        fmt: "auto", "csv", "parquet", "delta" or "json".
        schemas: Personalize schema files (or :class:`DatasetSchema` objects), one per dataset.
        renames: ``(source, target)`` column renames applied to every dataset that has the source.
        rejects_path: Delta table receiving rejected rows; this run date's rows are replaced.
        report_path: JSON file receiving the summary.
        run_date: the run's logical date; timestamps after its end are in the future.
        enforce: raise when a dataset's reject fraction is too high (``validate`` reports first).

    Raises:
        DataError: unreadable input, or (with ``enforce``) too many rejected rows in a dataset.
        UsageError: a ``--rename`` source exists in no dataset.
    """
    limits = settings.validation
    by_kind = {s.kind: s for s in (x if isinstance(x, DatasetSchema) else load_personalize_schema(x)
                                   for x in schemas)}
    paths = {k: p for k, p in zip(DATASET_KINDS, (interactions, items, users)) if p}
    raw_frames, seen = {}, []
    for kind, path in paths.items():
        with logs.stage(log, f"read_{kind}", path=path):
            raw_frames[kind], original = readers.read_raw(spark, path, kind, fmt, limits.csv_delimiter,
                                                          by_kind.get(kind), renames)
        seen += original
    unused = readers.unmatched_renames(renames, seen)
    if unused:
        raise UsageError(f"--rename {', '.join(unused)}: no such column in any dataset; "
                         f"columns found: {', '.join(dict.fromkeys(seen))}")
    max_ts = max_timestamp_for(run_date)
    run_date = run_date or dt.datetime.now(dt.timezone.utc).date()
    flagged, summaries, valid = {}, {}, {}
    for kind, raw in raw_frames.items():
        with logs.stage(log, f"validate_{kind}") as info:
            flagged[kind] = flag_rows(raw, kind, by_kind.get(kind), limits, max_ts).persist()
            try:  # the first full read of the files: unreadable content surfaces here
                summaries[kind] = summarize(flagged[kind], kind, paths[kind], limits)
            except Exception as exc:
                raise read_failure(exc, kind, paths[kind]) from exc
            info.update(rows=summaries[kind]["rows_read"], rejected=summaries[kind]["rows_rejected"])
    if rejects_path:
        with logs.stage(log, "write_rejects", path=rejects_path):
            frames = [reject_rows(f, k, run_date) for k, f in flagged.items()]
            union = frames[0]
            for other in frames[1:]:
                union = union.unionByName(other)
            write_rejects(union, rejects_path, run_date)
    for kind, frame in flagged.items():
        valid[kind] = valid_rows(frame, kind).persist()
        valid[kind].count()  # materialize from the flagged cache before releasing it
        frame.unpersist()
    summary = {"run_date": run_date.isoformat(), "rejects_path": rejects_path, "datasets": summaries,
               "failures": [f for s in summaries.values() for f in s["failures"]]}
    summary["passed"] = not summary["failures"]
    if report_path is not None:
        write_report(spark, summary, str(report_path))
    if enforce and summary["failures"]:
        where = f"; rejected rows are in {rejects_path}" if rejects_path else ""
        raise DataError("; ".join(summary["failures"]) + where)
    return ValidatedDatasets(valid[INTERACTIONS], valid.get(ITEMS), valid.get(USERS), summary)
