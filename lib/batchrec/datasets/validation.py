"""Validate datasets: type every column, reject bad rows with a reason, summarize, enforce limits.

Every job that reads datasets calls :func:`load_datasets`. Each row gets the list of rules it breaks
(:func:`flag_rows`, a pure transform); the first is its reason. One aggregation per dataset counts
rows per reason and per file (:func:`summarize`), rejected rows go to a Delta table replaced per run
date, and the valid rows come back typed and persisted for the job to reuse.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from batchrec import columns, logs
from batchrec.config import Settings, ValidationSettings
from batchrec.datasets import readers
from batchrec.datasets.schema import (BOOLEAN, DATASET_KINDS, DOUBLE, FLOAT, ID_COLUMNS, INT, INT_MAX,
                                      INTERACTIONS, ITEMS, LONG, STRING, USERS, TIMESTAMP_COLUMNS,
                                      DatasetSchema, Field, default_schema, load_personalize_schema)
from batchrec.dates import end_of_day_or_now
from batchrec.errors import DataError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import Column, DataFrame, SparkSession

log = logging.getLogger(__name__)

MALFORMED_ROW = "malformed_row"
MISSING_ID = "missing_id"
MISSING_VALUE = "missing_value"
INVALID_UTF8 = "invalid_utf8"
ID_TOO_LONG = "id_too_long"
STRING_TOO_LONG = "string_too_long"
INVALID_TIMESTAMP = "invalid_timestamp"
TIMESTAMP_IN_MILLISECONDS = "timestamp_in_milliseconds"
TIMESTAMP_BEFORE_1970 = "timestamp_before_1970"
TIMESTAMP_IN_FUTURE = "timestamp_in_future"
INVALID_NUMBER = "invalid_number"
INVALID_BOOLEAN = "invalid_boolean"
NAN_VALUE = "nan_value"
NEGATIVE_EVENT_VALUE = "negative_event_value"
DUPLICATE = "duplicate"
# A row breaking several rules is counted once, under the first of these.
REASON_ORDER = (MALFORMED_ROW, MISSING_ID, MISSING_VALUE, INVALID_UTF8, ID_TOO_LONG, STRING_TOO_LONG,
                INVALID_TIMESTAMP, TIMESTAMP_IN_MILLISECONDS, TIMESTAMP_BEFORE_1970, TIMESTAMP_IN_FUTURE,
                INVALID_NUMBER, INVALID_BOOLEAN, NAN_VALUE, NEGATIVE_EVENT_VALUE, DUPLICATE)

# Epoch seconds pass 1e11 only in the year 5138; epoch milliseconds pass it since 1973.
MILLISECONDS_THRESHOLD = 100_000_000_000
# What Spark's UTF-8 decoder puts in place of bytes that are not UTF-8.
REPLACEMENT_CHAR = "\ufffd"
TRUNCATED_MARK = "...[truncated]"
# Longest string kept per field in a rejected record's JSON.
RECORD_FIELD_LIMIT = 1000

# Rejects table columns.
REJECT_RUN_DATE = "run_date"
REJECT_DATASET = "dataset"
REJECT_REASON = "reason"
REJECT_FIELD = "field"
REJECT_REASONS = "reasons"
REJECT_RECORD = "record"
REJECT_SOURCE_FILE = "source_file"

# Working columns of the flagged frame.
_REASONS, _REASON, _FIELD, _MS, _SEC = "__reasons", "__reason", "__field", "__ms", "__sec"
_TYPED = "__typed_"


@dataclass(frozen=True)
class ValidatedDatasets:
    """Typed, valid rows of each dataset (persisted) and the validation summary."""

    interactions: "DataFrame"
    items: Optional["DataFrame"] = None
    users: Optional["DataFrame"] = None
    summary: dict = field(default_factory=dict)


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _parse_long(name: str) -> "Column":
    """Whole numbers, also written as ``1.0`` or ``9.6E8``; null when the text is not one."""
    from pyspark.sql import functions as F

    text = f"trim(cast({_q(name)} as string))"
    as_double = F.expr(f"try_cast({text} as double)")
    integral = (F.abs(as_double) < 9e15) & (as_double % 1 == 0)  # NaN compares false
    return F.coalesce(F.expr(f"try_cast({text} as bigint)"), F.when(integral, as_double.cast("long")))


def _field_rules(name: str, dtype: str, fld: Field, kind: str, limits: ValidationSettings,
                 max_timestamp: int) -> tuple["Column", list[tuple[str, "Column"]]]:
    """The typed value of one column and the (reason, condition) rules it must pass."""
    from pyspark.sql import functions as F

    raw = F.col(_q(name))
    text = raw.cast("string")
    blank = raw.isNull() | (F.trim(text) == "")
    rules: list[tuple[str, Column]] = []
    if not fld.nullable and name not in ID_COLUMNS[kind]:
        rules.append((MISSING_VALUE, blank))
    if fld.type == STRING:
        typed = text
        rules.append((INVALID_UTF8, F.instr(text, REPLACEMENT_CHAR) > 0))
        if name in ID_COLUMNS[kind]:
            rules += [(MISSING_ID, blank), (ID_TOO_LONG, F.length(text) > limits.max_id_length)]
        elif fld.categorical or not fld.textual:
            # Personalize's limit applies to each value of a multi-valued ("a|b") field.
            rules.append((STRING_TOO_LONG, F.exists(F.split(text, r"\|"),
                                                    lambda v: F.length(v) > limits.max_string_length)))
        return typed, rules
    if fld.type in (LONG, INT) and name in TIMESTAMP_COLUMNS:
        typed = raw.cast("timestamp").cast("long") if dtype in ("timestamp", "date", "timestamp_ntz") \
            else _parse_long(name)
        rules += [
            (INVALID_TIMESTAMP, ~blank & typed.isNull()),
            (TIMESTAMP_IN_MILLISECONDS, typed >= MILLISECONDS_THRESHOLD),
            (TIMESTAMP_BEFORE_1970, typed < 0),
            (TIMESTAMP_IN_FUTURE, (typed > max_timestamp) & (typed < MILLISECONDS_THRESHOLD)),
        ]
        return typed, rules
    if fld.type in (LONG, INT):
        typed = _parse_long(name)
        bad = ~blank & typed.isNull()
        if fld.type == INT:
            bad = bad | (F.abs(typed) > INT_MAX)
            typed = F.when(F.abs(typed) <= INT_MAX, typed.cast("int"))
        return typed, rules + [(INVALID_NUMBER, bad)]
    if fld.type in (FLOAT, DOUBLE):
        typed = F.expr(f"try_cast(trim(cast({_q(name)} as string)) as double)")
        infinite = F.abs(typed) == float("inf")
        rules += [(INVALID_NUMBER, (~blank & typed.isNull()) | infinite), (NAN_VALUE, F.isnan(typed))]
        if name == columns.EVENT_VALUE:
            rules.append((NEGATIVE_EVENT_VALUE, typed < 0))
        return typed, rules
    if fld.type == BOOLEAN:  # Personalize: true/false in lower case only
        trimmed = F.trim(text)
        typed = F.when(trimmed == "true", F.lit(True)).when(trimmed == "false", F.lit(False))
        return typed, rules + [(INVALID_BOOLEAN, ~blank & typed.isNull())]
    raise UsageError(f"column {name}: unsupported schema type {fld.type}")  # pragma: no cover


def data_columns(df: "DataFrame") -> list[str]:
    """The dataset's own columns (not the source file or the corrupt-record column)."""
    return [c for c in df.columns if c not in (columns.SOURCE_FILE, readers.CORRUPT_RECORD)]


def flag_rows(raw: "DataFrame", kind: str, schema: Optional[DatasetSchema],
              limits: ValidationSettings, max_timestamp: int) -> "DataFrame":
    """Add to every row its typed values, the rules it breaks and its first reason (None = valid).

    Args:
        raw: rows as read by :func:`readers.read_dataset`.
        kind: dataset kind.
        schema: expected types; columns it does not name are categorical strings.
        limits: ID and string lengths.
        max_timestamp: epoch seconds after which a timestamp lies in the future.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    schema = schema or default_schema(kind)
    dtypes = dict(raw.dtypes)
    names = data_columns(raw)
    checks: list[tuple[int, int, str, str, Column]] = []
    typed_cols = []
    for pos, name in enumerate(names):
        fld = schema.field(name) or default_schema(kind).field(name) or Field(name, STRING, categorical=True)
        typed, rules = _field_rules(name, dtypes[name], fld, kind, limits, max_timestamp)
        typed_cols.append(typed.alias(_TYPED + str(pos)))
        checks += [(REASON_ORDER.index(r), pos, r, name, cond) for r, cond in rules]
    if readers.CORRUPT_RECORD in raw.columns:
        checks.append((0, -1, MALFORMED_ROW, "", F.col(readers.CORRUPT_RECORD).isNotNull()))
    duplicate_rank = F.row_number().over(
        Window.partitionBy(*[F.col(_q(n)) for n in names]).orderBy(columns.SOURCE_FILE))
    checks.append((REASON_ORDER.index(DUPLICATE), len(names), DUPLICATE, "", duplicate_rank > 1))
    checks.sort(key=lambda c: (c[0], c[1]))
    hits = F.array(*[F.when(cond, F.struct(F.lit(r).alias("reason"), F.lit(n).alias("field")))
                     for _, _, r, n, cond in checks])
    ts_pos = next((i for i, n in enumerate(names) if n in TIMESTAMP_COLUMNS), None)
    ts = F.col(_TYPED + str(ts_pos)) if ts_pos is not None else F.lit(None).cast("long")
    return (raw.select("*", *typed_cols)
            .withColumn(_REASONS, F.filter(hits, lambda h: h.isNotNull()))
            # get() is null past the end, where [0] fails under ANSI mode.
            .withColumn(_REASON, F.expr(f"get({_REASONS}, 0)")["reason"])
            .withColumn(_FIELD, F.expr(f"get({_REASONS}, 0)")["field"])
            .withColumn(_MS, (ts >= MILLISECONDS_THRESHOLD).cast("long"))
            .withColumn(_SEC, ((ts >= 0) & (ts < MILLISECONDS_THRESHOLD)).cast("long")))


def _record_json(flagged: "DataFrame") -> "Column":
    """The rejected row as JSON, long strings cut so a 10 MB field does not bloat the rejects table."""
    from pyspark.sql import functions as F

    names = [n for n in data_columns(flagged) if not n.startswith("__")]
    if readers.CORRUPT_RECORD in flagged.columns:
        names.append(readers.CORRUPT_RECORD)
    dtypes = dict(flagged.dtypes)
    limit = RECORD_FIELD_LIMIT
    parts = []
    for n in names:
        c = F.col(_q(n))
        if dtypes[n] == "string":
            c = F.when(F.length(c) > limit, F.concat(F.substring(c, 1, limit), F.lit(TRUNCATED_MARK))) \
                .otherwise(c)
        parts.append(c.alias(n))
    return F.to_json(F.struct(*parts))


def summarize(flagged: "DataFrame", kind: str, path: str, limits: ValidationSettings) -> dict:
    """Counts per reason and per file in one aggregation, plus notes on timestamp units."""
    from pyspark.sql import functions as F

    rows = (flagged.groupBy(columns.SOURCE_FILE, _REASON, _FIELD)
            .agg(F.count(F.lit(1)).alias("n"), F.sum(_MS).alias("ms"), F.sum(_SEC).alias("sec"),
                 F.min(F.when(F.col(_REASON).isNotNull(), _record_json(flagged))).alias("example"))
            .collect())  # bounded: files x reasons
    by_reason: dict[tuple[str, str], dict] = {}
    per_file: dict[str, list[int]] = {}
    read = rejected = 0
    for r in rows:
        read += r["n"]
        counts = per_file.setdefault(r[columns.SOURCE_FILE] or path, [0, 0])
        counts[0] += r["ms"] or 0
        counts[1] += r["sec"] or 0
        if r[_REASON] is not None:
            rejected += r["n"]
            entry = by_reason.setdefault((r[_REASON], r[_FIELD]), {"rows": 0, "example": r["example"]})
            entry["rows"] += r["n"]
            entry["example"] = min(entry["example"], r["example"]) if r["example"] else entry["example"]
    notes = []
    for source, (ms, sec) in sorted(per_file.items()):
        if ms and sec:
            notes.append(f"{source}: mixed timestamp units: {ms} rows look like milliseconds, "
                         f"{sec} like seconds; Personalize expects epoch seconds")
        elif ms:
            notes.append(f"{source}: all {ms} timestamps look like milliseconds; Personalize expects "
                         "epoch seconds: divide them by 1000")
    reasons = [{"reason": r, "field": f, **v} for (r, f), v in
               sorted(by_reason.items(), key=lambda kv: (REASON_ORDER.index(kv[0][0]), kv[0][1]))]
    fraction = rejected / read if read else 0.0
    failures = []
    if read == 0:
        failures.append(f"{kind} {path}: no rows")
    elif fraction > limits.max_reject_fraction:
        top = ", ".join(f"{x['reason']}{' (' + x['field'] + ')' if x['field'] else ''}: {x['rows']}"
                        for x in reasons)
        failures.append(f"{kind} {path}: {rejected} of {read} rows rejected ({fraction:.2%}), more "
                        f"than the allowed {limits.max_reject_fraction:.2%}: {top}"
                        + "".join(f"; {n}" for n in notes))
    return {"dataset": kind, "path": path, "files": len(per_file), "rows_read": read,
            "rows_valid": read - rejected, "rows_rejected": rejected, "reject_fraction": fraction,
            "max_reject_fraction": limits.max_reject_fraction,
            "rejects_by_reason": _sum_by_reason(reasons),
            "reasons": reasons, "notes": notes, "failures": failures, "passed": not failures}


def _sum_by_reason(reasons: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in reasons:
        out[r["reason"]] = out.get(r["reason"], 0) + r["rows"]
    return out


def valid_rows(flagged: "DataFrame", kind: str) -> "DataFrame":
    """The typed valid rows under their own names; optional reserved columns filled with nulls."""
    from pyspark.sql import functions as F

    names = data_columns(flagged)
    names = [n for n in names if not n.startswith("__")]
    out = [F.col(_TYPED + str(i)).alias(n) for i, n in enumerate(names)]
    optional = {INTERACTIONS: ((columns.EVENT_TYPE, "string"), (columns.EVENT_VALUE, "double")),
                ITEMS: ((columns.CREATION_TIMESTAMP, "long"),)}.get(kind, ())
    out += [F.lit(None).cast(t).alias(n) for n, t in optional if n not in names]
    return flagged.filter(F.col(_REASON).isNull()).select(*out)


def reject_rows(flagged: "DataFrame", kind: str, run_date: dt.date) -> "DataFrame":
    """Rejected rows in the rejects table's layout."""
    from pyspark.sql import functions as F

    return flagged.filter(F.col(_REASON).isNotNull()).select(
        F.lit(run_date).cast("date").alias(REJECT_RUN_DATE), F.lit(kind).alias(REJECT_DATASET),
        F.col(_REASON).alias(REJECT_REASON), F.col(_FIELD).alias(REJECT_FIELD),
        F.col(_REASONS)["reason"].alias(REJECT_REASONS),
        F.col(columns.SOURCE_FILE).alias(REJECT_SOURCE_FILE), _record_json(flagged).alias(REJECT_RECORD))


def write_rejects(rejects: "DataFrame", path: str, run_date: dt.date) -> None:
    """Replace this run date's rejects in the Delta table at ``path`` in one commit."""
    (rejects.write.format("delta").mode("overwrite").partitionBy(REJECT_RUN_DATE)
     .option("replaceWhere", f"{REJECT_RUN_DATE} = DATE'{run_date.isoformat()}'").save(path))


def write_report(summary: Mapping[str, Any], path: Path) -> None:
    """Write the summary as JSON through a temporary file renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2, default=str)
    os.replace(tmp, path)


def minimum_counts(interactions: "DataFrame", limits: ValidationSettings) -> dict:
    """Interactions and users with two or more interactions, against Personalize's minimums."""
    from pyspark.sql import functions as F

    per_user = interactions.groupBy(columns.USER_ID).agg(F.count(F.lit(1)).alias("n"))
    row = per_user.agg(F.sum("n").alias("rows"), F.count(F.lit(1)).alias("users"),
                       F.sum((F.col("n") >= 2).cast("long")).alias("users2")).first()
    n, users2 = row["rows"] or 0, row["users2"] or 0
    failures = []
    if n < limits.min_interactions:
        failures.append(f"only {n} valid interactions; at least {limits.min_interactions} are needed "
                        "(Personalize's minimum; lower it with --min-interactions)")
    if users2 < limits.min_users_with_two_interactions:
        failures.append(f"only {users2} users with at least 2 interactions; at least "
                        f"{limits.min_users_with_two_interactions} are needed (lower with --min-users)")
    return {"interactions": n, "users": row["users"], "users_with_two_interactions": users2,
            "min_interactions": limits.min_interactions,
            "min_users_with_two_interactions": limits.min_users_with_two_interactions,
            "failures": failures, "passed": not failures}


def check_minimums(interactions_df: "DataFrame", validation_settings: ValidationSettings,
                   context: str = "") -> dict:
    """:func:`minimum_counts`, raising DataError when a minimum is not met.

    Raises:
        DataError: fewer than ``min_interactions`` rows or ``min_users_with_two_interactions`` users.
    """
    result = minimum_counts(interactions_df, validation_settings)
    if result["failures"]:
        raise DataError(f"{context + ': ' if context else ''}{'; '.join(result['failures'])}")
    return result


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
            summaries[kind] = summarize(flagged[kind], kind, paths[kind], limits)
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
        write_report(summary, report_path)
    if enforce and summary["failures"]:
        where = f"; rejected rows are in {rejects_path}" if rejects_path else ""
        raise DataError("; ".join(summary["failures"]) + where)
    return ValidatedDatasets(valid[INTERACTIONS], valid.get(ITEMS), valid.get(USERS), summary)
