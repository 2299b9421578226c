"""Personalize batch input JSON lines: ``{"userId": ...}``, ``{"userId": ..., "itemList": [...]}``,
``{"itemId": ...}`` and ``{"itemAttributes": "..."}``.

Each non-blank line becomes one request row carrying its file, its position for ordering, its 1-based
line number, the raw text (echoed back as ``input`` in the JSON-lines output, so ``filterValues`` and
any other key survive untouched), the parsed fields, and an ``error`` for a line that cannot be
served. A bad line never stops the others: it gets its error in the output and the run counts it.
Only a line that is exactly one JSON object is served (see :mod:`batchrec.jsontext`).
"""

from __future__ import annotations

import logging

from pyspark.sql import Column, DataFrame, SparkSession, functions as F
from pyspark.sql.utils import AnalysisException

from batchrec.columns import ITEM_ID, USER_ID
from batchrec.errors import DataError
from batchrec.jsontext import parse_object

log = logging.getLogger(__name__)

FILE = "_file"
POSITION = "_position"
LINE = "_line"
RAW = "_raw"
ERROR = "error"
ITEM_LIST = "itemList"
JSON_USER_ID = "userId"
JSON_ITEM_LIST = "itemList"
JSON_ITEM_ID = "itemId"
JSON_ITEM_ATTRIBUTES = "itemAttributes"
ITEM_ATTRIBUTES = "itemAttributes"
KIND_USERS = "users"
KIND_RANKING = "ranking"
KIND_ITEMS = "items"
KIND_ATTRIBUTES = "attributes"
# Per kind: the JSON field that names the request's subject and the column it is read into.
SUBJECT = {KIND_USERS: (JSON_USER_ID, USER_ID), KIND_RANKING: (JSON_USER_ID, USER_ID),
           KIND_ITEMS: (JSON_ITEM_ID, ITEM_ID), KIND_ATTRIBUTES: (JSON_ITEM_ATTRIBUTES, ITEM_ATTRIBUTES)}
REQUEST_COLUMNS = (FILE, POSITION, LINE, RAW, USER_ID, ERROR)
_OBJECT = "_object"
# IDs are strings at every boundary; a JSON integer (64-bit) is accepted as its digits (42 -> "42").
# Not decimals: parse_json stores 5.0 as 5, so "5.0" and "5" could not be told apart.
_ID_TYPES = r"^(STRING|TINYINT|SMALLINT|INT|BIGINT)$"
EXPECTED = {KIND_USERS: 'expected {"userId": "..."}',
            KIND_RANKING: 'expected {"userId": "...", "itemList": ["..."]}',
            KIND_ITEMS: 'expected {"itemId": "..."}',
            KIND_ATTRIBUTES: 'expected {"itemAttributes": "ITEMS.FIELD = \\"value\\""}'}


def read_requests(spark: SparkSession, path: str, kind: str = KIND_USERS) -> DataFrame:
    """Read a JSON-lines file (or a folder of them) into request rows.

    A line is a request only when it is exactly one JSON object in valid UTF-8
    (:func:`batchrec.jsontext.parse_object`); anything else (text after the object, an array, broken
    JSON, bytes that are not UTF-8) gets an ``error`` naming the line, and its raw text is echoed as a
    JSON string in the output, so every output line stays valid JSON. ``userId`` must be a non-empty
    string (or a 64-bit JSON integer, read as its digits); ``itemList`` an array of such IDs (nulls are
    dropped).

    Args:
        spark: the session.
        path: file or folder, local or any Hadoop URI.
        kind: ``"users"`` (``{"userId"}``), ``"ranking"`` (also ``"itemList"``), ``"items"``
            (``{"itemId"}``) or ``"attributes"`` (``{"itemAttributes"}``).

    Returns:
        ``[_file, _position, _line, _raw, <subject>, error]`` where the subject column is
        ``USER_ID``, ``ITEM_ID`` or ``itemAttributes`` (:data:`SUBJECT`), plus ``itemList
        array<string>`` for ranking; ``error`` is null for a usable line.

    Raises:
        DataError: the path does not exist or cannot be read as text.
    """
    if kind not in EXPECTED:
        raise ValueError(f"kind must be one of {sorted(EXPECTED)}, got {kind!r}")
    try:
        text = spark.read.text(path)
    except AnalysisException as exc:
        raise DataError(f"--input {path}: cannot read the JSON-lines input ({_first_line(exc)}); "
                        f"expected a file or folder of lines like {{\"userId\": \"u1\"}}") from exc
    lines = (text.select(F.input_file_name().alias(FILE),
                         F.monotonically_increasing_id().alias(POSITION),
                         F.col("value").alias(RAW)))
    lines = _with_line_numbers(lines).where(F.trim(F.col(RAW)) != "")
    lines = lines.withColumn(_OBJECT, parse_object(F.col(RAW)))
    obj = F.col(_OBJECT)
    where = F.concat(F.lit("line "), F.col(LINE).cast("string"), F.lit(" of "), F.col(FILE), F.lit(": "))

    def fail(message: str) -> Column:
        return F.concat(where, F.lit(message))

    field, column = SUBJECT[kind]
    user_value = F.try_variant_get(obj, f"$.{field}", "variant")
    user_is_id = F.coalesce(F.schema_of_variant(user_value).rlike(_ID_TYPES), F.lit(False))
    user = F.when(user_is_id, F.try_variant_get(obj, f"$.{field}", "string"))
    error = (F.when(obj.isNull(), _not_one_object(F.col(RAW), where, EXPECTED[kind]))
             .when(user_value.isNull() | F.is_variant_null(user_value),
                   fail(f'no "{field}"; expected a non-empty string'))
             .when(~user_is_id, fail(f'"{field}" is not a string; expected a non-empty string'))
             .when(F.trim(user) == "", fail(f'no "{field}"; expected a non-empty string')))
    columns = [F.col(c) for c in (FILE, POSITION, LINE, RAW)] + [user.alias(column)]
    if kind == KIND_RANKING:
        values = F.try_variant_get(obj, f"$.{JSON_ITEM_LIST}", "array<variant>")
        all_ids = F.forall(values, lambda v: v.isNull() | F.is_variant_null(v)
                           | F.schema_of_variant(v).rlike(_ID_TYPES))
        items = F.filter(F.transform(values, lambda v: F.try_variant_get(v, "$", "string")),
                         lambda x: x.isNotNull())
        error = (error.when(values.isNull(), fail(f'no "{JSON_ITEM_LIST}"; expected an array of item IDs'))
                 .when(~all_ids, fail(f'"{JSON_ITEM_LIST}" holds a value that is not an item ID; '
                                      "expected an array of strings")))
        columns.append(F.when(error.isNull(), items).alias(ITEM_LIST))
    return lines.select(*columns, error.alias(ERROR))


def _not_one_object(raw: Column, where: Column, expected: str) -> Column:
    """Why a line is not exactly one JSON object: not UTF-8, text after the object, or not an object."""
    first = F.try_parse_json(raw)  # stops after the first value
    is_object = F.coalesce(F.schema_of_variant(first).startswith("OBJECT"), F.lit(False))
    return (F.when(~F.is_valid_utf8(raw), F.concat(where, F.lit(f"not valid UTF-8 text; {expected}")))
            .when(is_object, F.concat(where, F.lit(f"text after the JSON object; {expected}, exactly "
                                                   "one object per line")))
            .otherwise(F.concat(where, F.lit(f"not a JSON object; {expected}"))))


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
