"""Personalize batch input JSON lines: ``{"userId": ...}`` and ``{"userId": ..., "itemList": [...]}``.

Each non-blank line becomes one request row carrying its file, its position for ordering, its 1-based
line number, the raw text (echoed back as ``input`` in the JSON-lines output, so ``filterValues`` and
any other key survive untouched), the parsed fields, and an ``error`` for a line that cannot be
served. A bad line never stops the others: it gets its error in the output and the run counts it.
"""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame, SparkSession, functions as F
from pyspark.sql.utils import AnalysisException

from batchrec.columns import USER_ID
from batchrec.errors import DataError

log = logging.getLogger(__name__)

FILE = "_file"
POSITION = "_position"
LINE = "_line"
RAW = "_raw"
ERROR = "error"
ITEM_LIST = "itemList"
JSON_USER_ID = "userId"
JSON_ITEM_LIST = "itemList"
CORRUPT = "_corrupt_record"
KIND_USERS = "users"
KIND_RANKING = "ranking"
# Every field is read as a string so that no type mismatch can turn a whole line corrupt;
# itemList keeps its JSON text and is parsed as an array afterwards.
PARSE_SCHEMA = f"{JSON_USER_ID} string, {JSON_ITEM_LIST} string, {CORRUPT} string"
REQUEST_COLUMNS = (FILE, POSITION, LINE, RAW, USER_ID, ERROR)


def read_requests(spark: SparkSession, path: str, kind: str = KIND_USERS) -> DataFrame:
    """Read a JSON-lines file (or a folder of them) into request rows.

    Args:
        spark: the session.
        path: file or folder, local or any Hadoop URI.
        kind: ``"users"`` (``{"userId"}``) or ``"ranking"`` (also ``"itemList"``).

    Returns:
        ``[_file, _position, _line, _raw, USER_ID, error]`` plus ``itemList array<string>`` for
        ranking; ``error`` is null for a usable line.

    Raises:
        DataError: the path does not exist or cannot be read as text.
    """
    try:
        text = spark.read.text(path)
    except AnalysisException as exc:
        raise DataError(f"--input {path}: cannot read the JSON-lines input ({_first_line(exc)}); "
                        f"expected a file or folder of lines like {{\"userId\": \"u1\"}}") from exc
    lines = (text.select(F.input_file_name().alias(FILE),
                         F.monotonically_increasing_id().alias(POSITION),
                         F.col("value").alias(RAW)))
    lines = _with_line_numbers(lines).where(F.trim(F.col(RAW)) != "")
    parsed = F.from_json(F.col(RAW), PARSE_SCHEMA, {"mode": "PERMISSIVE",
                                                    "columnNameOfCorruptRecord": CORRUPT})
    lines = lines.withColumn("_parsed", parsed)
    is_object = F.trim(F.col(RAW)).startswith("{") & F.col(f"_parsed.{CORRUPT}").isNull()
    user = F.col(f"_parsed.{JSON_USER_ID}")
    where = F.concat(F.lit("line "), F.col(LINE).cast("string"), F.lit(" of "), F.col(FILE), F.lit(": "))
    error = (F.when(~is_object, F.concat(where, F.lit(
        'not a JSON object; expected {"userId": "..."}' if kind == KIND_USERS
        else 'not a JSON object; expected {"userId": "...", "itemList": ["..."]}')))
        .when(user.isNull() | (F.trim(user) == ""),
              F.concat(where, F.lit('no "userId"; expected a non-empty string'))))
    columns = [F.col(c) for c in (FILE, POSITION, LINE, RAW)] + [user.alias(USER_ID)]
    if kind == KIND_RANKING:
        items = F.from_json(F.col(f"_parsed.{JSON_ITEM_LIST}"), "array<string>")
        error = error.when(items.isNull(), F.concat(where, F.lit('no "itemList"; expected an array of item IDs')))
        columns.append(F.filter(items, lambda x: x.isNotNull()).alias(ITEM_LIST))
    elif kind != KIND_USERS:
        raise ValueError(f"kind must be {KIND_USERS!r} or {KIND_RANKING!r}, got {kind!r}")
    return lines.select(*columns, error.alias(ERROR))


def _with_line_numbers(lines: DataFrame) -> DataFrame:
    """Exact 1-based line numbers per file without a global window.

    ``monotonically_increasing_id`` grows within each partition and a file's splits keep their order,
    so a line's number is the count of its file's lines in earlier splits plus its offset in its own.
    The per-(file, partition) counts are a small table (one row per split) joined back by broadcast.
    """
    pid = F.spark_partition_id()
    splits = lines.groupBy(FILE, pid.alias("_pid")).agg(
        F.count(F.lit(1)).alias("_n"), F.min(POSITION).alias("_first"))
    from pyspark.sql.window import Window

    per_file = Window.partitionBy(FILE).orderBy("_first").rowsBetween(Window.unboundedPreceding, -1)
    splits = splits.withColumn("_before", F.coalesce(F.sum("_n").over(per_file), F.lit(0)))
    return (lines.withColumn("_pid", pid)
            .join(F.broadcast(splits.select(FILE, "_pid", "_first", "_before")), [FILE, "_pid"])
            .withColumn(LINE, (F.col("_before") + F.col(POSITION) - F.col("_first") + 1).cast("long"))
            .drop("_pid", "_first", "_before"))


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
