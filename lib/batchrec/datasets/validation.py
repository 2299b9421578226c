"""Validate datasets: type every column, reject bad rows with a reason, summarize, enforce limits.

Every job that reads datasets calls :func:`load_datasets`. Each dataset is scanned once: every row
gets the rules it breaks (:func:`batchrec.datasets.rules.flag_rows`, a pure transform with one
shuffle to find exact duplicates) and is narrowed to what validation keeps of it
(:func:`batchrec.datasets.rules.outcome_rows`), which is cached. Everything else reads that cache:
the counts per reason and per file (:func:`batchrec.datasets.summary.summarize`, the job that fills
it), the rejected rows written to a Delta table replaced per run date
(:mod:`batchrec.datasets.rejects`), and the typed valid rows the job goes on with. The caller
releases the cache with :meth:`ValidatedDatasets.release` (or a ``with`` block).

Time: events after the end of the run date lie outside the run's window (a backfill reads today's
tables): they are left out and counted, not rejected. Only timestamps past the wall clock (or past
the end of a run date that has not ended yet) plus a small tolerance for clock skew are bad data.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence

from batchrec import logs
from batchrec.config import Settings
from batchrec.datasets import readers
from batchrec.datasets.rejects import reject_rows, write_rejects
from batchrec.datasets.rules import FUTURE_TOLERANCE_SECONDS, flag_rows, kept_rows, outcome_rows
from batchrec.datasets.schema import (DATASET_KINDS, INTERACTIONS, ITEMS, USERS, DatasetSchema,
                                      load_personalize_schema)
from batchrec.datasets.summary import ROWS_AFTER_RUN_DATE, summarize, write_report
from batchrec.dates import end_of_day, end_of_day_or_now
from batchrec.errors import DataError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

# Validated outcomes shared by the stages of one process (see :func:`shared_validation`), by the
# arguments that decide them; None outside such a block.
_SHARED: contextvars.ContextVar[Optional[dict]] = contextvars.ContextVar("batchrec_shared_validation",
                                                                        default=None)


@dataclass(frozen=True)
class ValidatedDatasets:
    """Typed, valid rows of each dataset and the validation summary.

    The frames read one cache per dataset (the validation outcome); :meth:`release` drops those
    caches when the job is done with the rows. Use it as a context manager to release on exit.
    """

    interactions: "DataFrame"
    items: Optional["DataFrame"] = None
    users: Optional["DataFrame"] = None
    summary: dict = field(default_factory=dict)
    cached: tuple["DataFrame", ...] = ()

    def release(self) -> None:
        """Drop the cached validation outcomes; the frames must not be used afterwards."""
        for frame in self.cached:
            frame.unpersist()

    def __enter__(self) -> "ValidatedDatasets":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


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


def time_bounds(run_date: Optional[dt.date], now: Optional[float] = None) -> tuple[int, Optional[int]]:
    """(latest believable timestamp, end of the run's window) in epoch seconds.

    A timestamp past the wall clock plus :data:`FUTURE_TOLERANCE_SECONDS` is bad data, unless the run
    date itself has not ended yet (a run for today, or generated data): the run's own window counts
    as present. The window ends at the end of the run date; without a run date there is none.
    """
    clock = int(time.time() if now is None else now)
    if run_date is None:
        return clock + FUTURE_TOLERANCE_SECONDS, None
    window_end = end_of_day(run_date)
    return max(clock, window_end) + FUTURE_TOLERANCE_SECONDS, window_end


def load_datasets(spark: "SparkSession", settings: Settings, interactions: str,
                  items: Optional[str] = None, users: Optional[str] = None, fmt: str = "auto",
                  schemas: Sequence[Any] = (), renames: Sequence[tuple[str, str]] = (),
                  rejects_path: Optional[str] = None, report_path: Optional[Path] = None,
                  run_date: Optional[dt.date] = None, *, enforce: bool = True) -> ValidatedDatasets:
    """Read, validate and type the datasets; write rejects and report; return the valid rows.

    Each dataset's input is scanned once (plus one shuffle for exact duplicates); the result is
    cached until :meth:`ValidatedDatasets.release`.

    Args:
        spark: the session.
        settings: ``settings.validation`` supplies the limits and the CSV delimiter.
        interactions, items, users: dataset paths or URIs (items/users optional).
        fmt: "auto", "csv", "parquet", "delta" or "json".
        schemas: Personalize schema files (or :class:`DatasetSchema` objects), one per dataset.
        renames: ``(source, target)`` column renames applied to every dataset that has the source.
        rejects_path: Delta table receiving rejected rows; this run date's rows are replaced.
        report_path: JSON file receiving the summary.
        run_date: the run's logical date; rows after its end are left out (and counted), rows past
            the wall clock are rejected as in the future (see :func:`time_bounds`).
        enforce: raise when a dataset's reject fraction is too high (``validate`` reports first).

    Raises:
        DataError: unreadable input, or (with ``enforce``) too many rejected rows in a dataset.
        UsageError: a ``--rename`` source exists in no dataset.
    """
    limits = settings.validation
    by_kind = {s.kind: s for s in (x if isinstance(x, DatasetSchema) else load_personalize_schema(x)
                                   for x in schemas)}
    paths = {k: p for k, p in zip(DATASET_KINDS, (interactions, items, users)) if p}
    max_ts, window_end = time_bounds(run_date)
    shared = _SHARED.get()
    key = repr((sorted(paths.items()), fmt, sorted(by_kind.items()), [tuple(r) for r in renames], run_date,
                limits))
    run_date = run_date or dt.datetime.now(dt.timezone.utc).date()
    if shared is not None and key in shared:
        log.info("datasets already validated in this run: reusing the validated rows")
        outcomes, summaries = shared[key]
    else:
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
        outcomes, summaries = _validate_each(raw_frames, paths, by_kind, limits, max_ts, window_end)
        if shared is not None:
            shared[key] = (outcomes, summaries)
    try:
        if rejects_path:
            with logs.stage(log, "write_rejects", path=rejects_path):
                frames = [reject_rows(f, k, run_date) for k, f in outcomes.items()]
                union = frames[0]
                for other in frames[1:]:
                    union = union.unionByName(other)
                write_rejects(union, rejects_path, run_date)
        summary = {"run_date": run_date.isoformat(), "rejects_path": rejects_path, "datasets": summaries,
                   "failures": [f for s in summaries.values() for f in s["failures"]]}
        summary["passed"] = not summary["failures"]
        if report_path is not None:
            write_report(spark, summary, str(report_path))
        if enforce and summary["failures"]:
            where = f"; rejected rows are in {rejects_path}" if rejects_path else ""
            raise DataError("; ".join(summary["failures"]) + where)
    except BaseException:
        if shared is None:
            for frame in outcomes.values():
                frame.unpersist()
        raise
    valid = {kind: kept_rows(frame) for kind, frame in outcomes.items()}
    # Shared outcomes are released when the shared block ends, not by each job.
    return ValidatedDatasets(valid[INTERACTIONS], valid.get(ITEMS), valid.get(USERS), summary,
                             cached=tuple(outcomes.values()) if shared is None else ())


def _validate_each(raw_frames: dict, paths: dict, by_kind: dict, limits, max_ts: int,
                   window_end: Optional[int]) -> tuple[dict, dict]:
    """Flag and cache every dataset's rows (the one scan of each input); their summaries."""
    outcomes: dict[str, DataFrame] = {}
    summaries = {}
    try:
        for kind, raw in raw_frames.items():
            with logs.stage(log, f"validate_{kind}") as info:
                flagged = flag_rows(raw, kind, by_kind.get(kind), limits, max_ts, window_end=window_end)
                outcomes[kind] = outcome_rows(flagged, kind).persist()
                # The one scan of the input: this aggregation fills the cache (and unreadable
                # content surfaces here).
                try:
                    summaries[kind] = summarize(outcomes[kind], kind, paths[kind], limits)
                except Exception as exc:
                    raise read_failure(exc, kind, paths[kind]) from exc
                info.update(rows=summaries[kind]["rows_read"], rejected=summaries[kind]["rows_rejected"],
                            after_run_date=summaries[kind][ROWS_AFTER_RUN_DATE])
    except BaseException:
        for frame in outcomes.values():
            frame.unpersist()
        raise
    return outcomes, summaries


@contextlib.contextmanager
def shared_validation() -> Iterator[None]:
    """Within this block, :func:`load_datasets` called again with the same datasets, schemas,
    renames, run date and ``[validation]`` settings reuses the rows validated the first time
    instead of reading and validating the input again; those caches are released when the block
    ends. The nightly pipeline (``batchrec run``) runs its stages in one: ``validate`` and
    ``train`` read the same datasets, and train then sees exactly the rows validate reported on.
    """
    shared: dict = {}
    token = _SHARED.set(shared)
    try:
        yield
    finally:
        _SHARED.reset(token)
        for outcomes, _ in shared.values():
            for frame in outcomes.values():
                frame.unpersist()
