"""Validation rules: type every column and flag the rules each row breaks.

Each row gets the list of rules it breaks (:func:`flag_rows`, a pure transform); the first is its
reason. :func:`valid_rows` keeps the typed rows that break none, under their own names.
"""

from __future__ import annotations

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

# Working columns of the flagged frame.
REASONS_COLUMN = "__reasons"  # every rule the row breaks
REASON_COLUMN = "__reason"  # the first of them, the row's reject reason
FIELD_COLUMN = "__field"  # the field that rule is about
MILLIS_COLUMN, SECONDS_COLUMN = "__ms", "__sec"  # 1 when a timestamp looks like ms / like seconds
_TYPED = "__typed_"


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
        Window.partitionBy(*[F.col(quote_name(n)) for n in names]).orderBy(columns.SOURCE_FILE))
    checks.append((REASON_ORDER.index(DUPLICATE), len(names), DUPLICATE, "", duplicate_rank > 1))
    checks.sort(key=lambda c: (c[0], c[1]))
    hits = F.array(*[F.when(cond, F.struct(F.lit(r).alias("reason"), F.lit(n).alias("field")))
                     for _, _, r, n, cond in checks])
    ts_pos = next((i for i, n in enumerate(names) if n in TIMESTAMP_COLUMNS), None)
    ts = F.col(_TYPED + str(ts_pos)) if ts_pos is not None else F.lit(None).cast("long")
    return (raw.select("*", *typed_cols)
            .withColumn(REASONS_COLUMN, F.filter(hits, lambda h: h.isNotNull()))
            # get() is null past the end, where [0] fails under ANSI mode.
            .withColumn(REASON_COLUMN, F.expr(f"get({REASONS_COLUMN}, 0)")["reason"])
            .withColumn(FIELD_COLUMN, F.expr(f"get({REASONS_COLUMN}, 0)")["field"])
            .withColumn(MILLIS_COLUMN, (ts >= MILLISECONDS_THRESHOLD).cast("long"))
            .withColumn(SECONDS_COLUMN, ((ts >= 0) & (ts < MILLISECONDS_THRESHOLD)).cast("long")))


def valid_rows(flagged: "DataFrame", kind: str) -> "DataFrame":
    """The typed valid rows under their own names; optional reserved columns filled with nulls."""
    from pyspark.sql import functions as F

    names = data_columns(flagged)
    names = [n for n in names if not n.startswith("__")]
    out = [F.col(_TYPED + str(i)).alias(n) for i, n in enumerate(names)]
    optional = {INTERACTIONS: ((columns.EVENT_TYPE, "string"), (columns.EVENT_VALUE, "double")),
                ITEMS: ((columns.CREATION_TIMESTAMP, "long"),)}.get(kind, ())
    out += [F.lit(None).cast(t).alias(n) for n, t in optional if n not in names]
    return flagged.filter(F.col(REASON_COLUMN).isNull()).select(*out)
