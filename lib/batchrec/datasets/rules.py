"""Validation rules: type every column and flag the rules each row breaks.

Each row gets the list of rules it breaks (:func:`flag_rows`, a pure transform); the first is its
reason. :func:`outcome_rows` narrows that to what validation keeps of a row (its typed values, its
reason, and the record as JSON only when it is rejected): the one frame a job caches.
:func:`kept_rows` (and :func:`valid_rows` on a flagged frame) gives the typed rows that break no
rule and lie inside the run's window, under their own names.
"""

from __future__ import annotations

import functools
import operator
from typing import TYPE_CHECKING, Optional

from batchrec import columns
from batchrec.config import ValidationSettings
from batchrec.datasets import readers
from batchrec.datasets.schema import (BOOLEAN, DOUBLE, DatasetSchema, FLOAT, Field, ID_COLUMNS, INT,
                                      INTERACTIONS, INT_MAX, ITEMS, LONG, STRING, TIMESTAMP_COLUMNS,
                                      default_schema, quote_name)
from batchrec.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import Column, DataFrame

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

# Timestamps up to this far past the wall clock are clock skew between systems, not bad data.
FUTURE_TOLERANCE_SECONDS = 3600

# Working columns of the flagged frame.
REASONS_COLUMN = "__reasons"  # every rule the row breaks
REASON_COLUMN = "__reason"  # the first of them, the row's reject reason
FIELD_COLUMN = "__field"  # the field that rule is about
MILLIS_COLUMN, SECONDS_COLUMN = "__ms", "__sec"  # 1 when a timestamp looks like ms / like seconds
# True when the row's timestamp lies after the end of the run date: outside the run's window, so
# left out of what the job uses, but not bad data (a backfill reads today's tables).
AFTER_RUN_DATE_COLUMN = "__after_run_date"
_TYPED = "__typed_"
_CHECK = "__check_"
_RANK = "__copy"  # 1 for the first copy of a row, 2... for its exact duplicates
# The outcome frame's column for rejected rows (null for the others): a struct of the reason, its
# field, every rule broken (REASONS_FIELD) and the row as read, as JSON (RECORD_FIELD). One column,
# as valid rows cost the cache 4 bytes for each null column.
REJECT_COLUMN = "__reject"
REASON_FIELD, FIELD_FIELD, REASONS_FIELD, RECORD_FIELD = "reason", "field", "reasons", "record"

TRUNCATED_MARK = "...[truncated]"
# Longest string kept per field in a rejected record's JSON.
RECORD_FIELD_LIMIT = 1000


def _parse_long(name: str) -> "Column":
    """Whole numbers, also written as ``1.0`` or ``9.6E8``; null when the text is not one."""
    from pyspark.sql import functions as F

    text = f"trim(cast({quote_name(name)} as string))"
    as_double = F.expr(f"try_cast({text} as double)")
    integral = (F.abs(as_double) < 9e15) & (as_double % 1 == 0)  # NaN compares false
    return F.coalesce(F.expr(f"try_cast({text} as bigint)"), F.when(integral, as_double.cast("long")))


def _field_rules(name: str, dtype: str, fld: Field, kind: str, limits: ValidationSettings,
                 max_timestamp: int) -> tuple["Column", list[tuple[str, "Column"]]]:
    """The typed value of one column and the (reason, condition) rules it must pass."""
    from pyspark.sql import functions as F

    raw = F.col(quote_name(name))
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
            # Personalize's limit applies to each value of a multi-valued ("a|b") field: a run of
            # more than the limit without "|". A regular expression, not split() + exists(): a
            # higher-order function turns off Spark's code generation for the whole projection.
            # No value can be longer than the whole text, so short texts skip it (And short-circuits).
            limit = limits.max_string_length
            rules.append((STRING_TOO_LONG, (F.length(text) > limit) & text.rlike(f"[^|]{{{limit + 1},}}")))
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
        typed = F.expr(f"try_cast(trim(cast({quote_name(name)} as string)) as double)")
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
              limits: ValidationSettings, max_timestamp: int, *,
              window_end: Optional[int] = None) -> "DataFrame":
    """Add to every row its typed values, the rules it breaks and its first reason (None = valid).

    Args:
        raw: rows as read by :func:`readers.read_dataset`.
        kind: dataset kind.
        schema: expected types; columns it does not name are categorical strings.
        limits: ID and string lengths.
        max_timestamp: epoch seconds after which a timestamp lies in the future (bad data).
        window_end: epoch seconds after which a row lies outside the run's window
            (:data:`AFTER_RUN_DATE_COLUMN`); None: no window.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

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
    values = [F.col(quote_name(n)) for n in names]
    # The hash leads the partition key so that the sort compares one long, not every column's
    # text; it is a function of the columns, so the groups (exact duplicates) are the same.
    duplicate_rank = F.row_number().over(
        Window.partitionBy(F.xxhash64(*values), *values).orderBy(columns.SOURCE_FILE))
    checks.append((REASON_ORDER.index(DUPLICATE), len(names), DUPLICATE, "", F.col(_RANK) > 1))
    checks.sort(key=lambda c: (c[0], c[1]))
    ts_pos = next((i for i, n in enumerate(names) if n in TIMESTAMP_COLUMNS), None)
    ts = F.col(_TYPED + str(ts_pos)) if ts_pos is not None else F.lit(None).cast("long")
    # A row without a (valid) timestamp is inside any window.
    after = F.coalesce(ts > F.lit(window_end), F.lit(False)) if window_end is not None else F.lit(False)
    # Each check is computed once into its own column; the reasons array is only assembled for
    # the rows that break one. No higher-order function (filter, exists): one turns off Spark's
    # code generation for the whole projection.
    # The window comes first on its own, so that only the columns as read are shuffled; typing
    # and checks run after it (in one select Spark would compute them before the shuffle).
    ranked = raw.withColumn(_RANK, duplicate_rank)
    staged = ranked.select("*", *typed_cols, *[c[4].alias(_CHECK + str(i)) for i, c in enumerate(checks)])
    flags = [F.col(_CHECK + str(i)) for i in range(len(checks))]
    broken = functools.reduce(operator.or_, flags)  # null when no check is true: like false
    hit_type = T.ArrayType(T.StructType([T.StructField("reason", T.StringType(), False),
                                         T.StructField("field", T.StringType(), False)]), False)
    none = F.array().cast(hit_type)
    hits = [F.when(flag, F.array(F.struct(F.lit(r).alias("reason"), F.lit(n).alias("field"))))
            .otherwise(none) for flag, (_, _, r, n, _) in zip(flags, checks)]
    reasons = F.when(broken, F.concat(*hits)).otherwise(none)
    kept = [quote_name(c) for c in raw.columns] + [_TYPED + str(p) for p in range(len(names))]
    return (staged.select(*kept, reasons.alias(REASONS_COLUMN), after.alias(AFTER_RUN_DATE_COLUMN))
            # get() is null past the end, where [0] fails under ANSI mode.
            .withColumn(REASON_COLUMN, F.expr(f"get({REASONS_COLUMN}, 0)")["reason"])
            .withColumn(FIELD_COLUMN, F.expr(f"get({REASONS_COLUMN}, 0)")["field"])
            .withColumn(MILLIS_COLUMN, (ts >= MILLISECONDS_THRESHOLD).cast("long"))
            .withColumn(SECONDS_COLUMN, ((ts >= 0) & (ts < MILLISECONDS_THRESHOLD)).cast("long")))


def typed_names(flagged: "DataFrame") -> list[str]:
    """The dataset's own column names, in the order of their typed values in ``flagged``."""
    names = data_columns(flagged)
    count = sum(c.startswith(_TYPED) for c in flagged.columns)
    return names[:count]


def _optional_columns(kind: str, names: list[str]) -> list["Column"]:
    """Reserved columns a job may refer to that the dataset lacks, as typed nulls."""
    from pyspark.sql import functions as F

    optional = {INTERACTIONS: ((columns.EVENT_TYPE, "string"), (columns.EVENT_VALUE, "double")),
                ITEMS: ((columns.CREATION_TIMESTAMP, "long"),)}.get(kind, ())
    return [F.lit(None).cast(t).alias(n) for n, t in optional if n not in names]


def outcome_rows(flagged: "DataFrame", kind: str) -> "DataFrame":
    """What validation keeps of each row: the one frame a job caches and reads everything from.

    Columns: the typed values under their own names (optional reserved columns as nulls),
    :data:`columns.SOURCE_FILE`, :data:`AFTER_RUN_DATE_COLUMN` and :data:`REJECT_COLUMN` (null
    unless the row is rejected). The text of valid rows as read is dropped: nothing needs it.
    """
    from pyspark.sql import functions as F

    names = typed_names(flagged)
    reject = F.struct(F.col(REASON_COLUMN).alias(REASON_FIELD), F.col(FIELD_COLUMN).alias(FIELD_FIELD),
                      F.col(REASONS_COLUMN)["reason"].alias(REASONS_FIELD),
                      record_json(flagged).alias(RECORD_FIELD))
    return flagged.select(
        *[F.col(_TYPED + str(i)).alias(n) for i, n in enumerate(names)], *_optional_columns(kind, names),
        columns.SOURCE_FILE, AFTER_RUN_DATE_COLUMN,
        F.when(F.col(REASON_COLUMN).isNotNull(), reject).alias(REJECT_COLUMN))


def rejected(outcome: "DataFrame") -> "Column":
    """True for the rejected rows of :func:`outcome_rows`."""
    from pyspark.sql import functions as F

    return F.col(REJECT_COLUMN).isNotNull()


def kept_rows(outcome: "DataFrame") -> "DataFrame":
    """The typed rows of :func:`outcome_rows` that break no rule and lie inside the run's window."""
    from pyspark.sql import functions as F

    own = [c for c in outcome.columns if c not in _OUTCOME_STATUS]
    return (outcome.filter(~rejected(outcome) & ~F.col(AFTER_RUN_DATE_COLUMN))
            .select(*[quote_name(c) for c in own]))


def valid_rows(flagged: "DataFrame", kind: str) -> "DataFrame":
    """The typed valid rows under their own names; optional reserved columns filled with nulls."""
    return kept_rows(outcome_rows(flagged, kind))


def timestamp_column(frame: "DataFrame") -> Optional[str]:
    """The first epoch-seconds column of a typed frame, or None."""
    return next((c for c in frame.columns if c in TIMESTAMP_COLUMNS), None)


def record_json(flagged: "DataFrame") -> "Column":
    """The row as read, as JSON, long strings cut so a 10 MB field does not bloat the rejects table."""
    from pyspark.sql import functions as F

    names = [n for n in data_columns(flagged) if not n.startswith("__")]
    if readers.CORRUPT_RECORD in flagged.columns:
        names.append(readers.CORRUPT_RECORD)
    dtypes = dict(flagged.dtypes)
    limit = RECORD_FIELD_LIMIT
    parts = []
    for n in names:
        c = F.col(quote_name(n))
        if dtypes[n] == "string":
            c = F.when(F.length(c) > limit, F.concat(F.substring(c, 1, limit), F.lit(TRUNCATED_MARK))) \
                .otherwise(c)
        parts.append(c.alias(n))
    return F.to_json(F.struct(*parts))


_OUTCOME_STATUS = (columns.SOURCE_FILE, AFTER_RUN_DATE_COLUMN, REJECT_COLUMN)
