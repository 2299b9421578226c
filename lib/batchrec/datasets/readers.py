"""Read a dataset (CSV with a header, Parquet, Delta, JSON lines) from a local path or Hadoop URI.

Rows come back raw: CSV and JSON values stay strings so that validation can reject values that do
not parse instead of Spark turning them into silent nulls. Column names are upper-cased (Personalize
matches headers case-insensitively), ``--rename`` is applied, and every row carries the file it came
from in :data:`batchrec.columns.SOURCE_FILE`.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence
from urllib.parse import urlparse

from batchrec import columns
from batchrec import fs as batchrec_fs
from batchrec.datasets.schema import REQUIRED_COLUMNS, DatasetSchema, check_kind
from batchrec.errors import DataError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

FORMATS = ("csv", "parquet", "delta", "json")
AUTO = "auto"
# Filled by Spark's PERMISSIVE parser with the raw line when a CSV/JSON record is malformed.
CORRUPT_RECORD = "_corrupt_record"
DELTA_LOG = "_delta_log"
_EXTENSIONS = {
    ".csv": "csv", ".tsv": "csv", ".txt": "csv",
    ".parquet": "parquet", ".json": "json", ".jsonl": "json", ".ndjson": "json",
}
_COMPRESSION = (".gz", ".bz2", ".snappy", ".zst", ".lz4", ".deflate")
_OTHER_DELIMITERS = {";": "';'", "\t": "'\\t' (tab)", "|": "'|'", ",": "','"}
_GLOB = re.compile(r"[*?\[{]")
_DATA_LIKE = re.compile(r"^\s*[-+]?\d+(\.\d*)?([eE][-+]?\d+)?\s*$")
MAX_SHOWN_LINE = 200


def read_dataset(spark: "SparkSession", path: str, kind: str, fmt: str = AUTO, delimiter: str = ",",
                 schema: Optional[DatasetSchema] = None,
                 renames: Sequence[tuple[str, str]] = ()) -> "DataFrame":
    """Read one dataset with upper-cased column names plus :data:`columns.SOURCE_FILE`.

    Args:
        spark: the session.
        path: local path or Hadoop URI (file, directory, Delta table or glob).
        kind: "interactions", "items" or "users"; its required columns must be present.
        fmt: "auto" (from the extension, a ``_delta_log`` folder or the files in a directory), "csv",
            "parquet", "delta" or "json" (JSON lines).
        delimiter: CSV field delimiter.
        schema: Personalize schema; its non-nullable fields are required columns too.
        renames: ``(source, target)`` column renames; sources match case-insensitively and a source
            absent from this file is ignored (the same ``--rename`` list serves every dataset).

    Raises:
        DataError: the path does not exist or holds no data files, the format cannot be told, the
            CSV header is missing or uses another delimiter, or a required column is missing.
    """
    return read_raw(spark, path, kind, fmt, delimiter, schema, renames)[0]


def read_raw(spark: "SparkSession", path: str, kind: str, fmt: str = AUTO, delimiter: str = ",",
             schema: Optional[DatasetSchema] = None,
             renames: Sequence[tuple[str, str]] = ()) -> tuple["DataFrame", list[str]]:
    """:func:`read_dataset`, also returning the file's own column names (before renames)."""
    check_kind(kind)
    fmt = resolve_format(spark, path, fmt)
    df = _load(spark, path, fmt, delimiter)
    original = [c for c in df.columns if c != CORRUPT_RECORD]
    if not original:
        raise DataError(f"{path}: the {kind} file is empty; expected a header row naming the columns "
                        f"({', '.join(REQUIRED_COLUMNS[kind])}, ...)")
    if fmt == "csv":
        _check_delimiter(path, original, delimiter)
        _check_duplicate_header(path, original)
    df = apply_renames(df, renames, path)
    required = list(REQUIRED_COLUMNS[kind])
    if schema is not None:
        required += [f.name for f in schema.fields if not f.nullable and f.name not in required]
    missing = [c for c in required if c not in df.columns]
    if missing:
        found = [c for c in df.columns if c != CORRUPT_RECORD]
        hint = _header_hint(spark, path, fmt, original) if fmt == "csv" else ""
        raise DataError(
            f"{path}: the {kind} dataset is missing required column(s) {', '.join(missing)}; "
            f"expected {', '.join(required)}; found {', '.join(found)}.{hint}"
            " Rename source columns with --rename SOURCE=TARGET, e.g. --rename userId=USER_ID")
    return _with_source_file(df), original


def resolve_format(spark: "SparkSession", path: str, fmt: str = AUTO) -> str:
    """Check that ``path`` exists and holds data, and tell its format when ``fmt`` is "auto"."""
    if fmt != AUTO and fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; expected auto or one of {', '.join(FORMATS)}")
    if _GLOB.search(path):
        # Hadoop expands globs; an empty match surfaces as Spark's "Path does not exist".
        return fmt if fmt != AUTO else _format_of_name(path, path)
    listing = _list_path(spark, path)
    if listing is None:  # no file-system access (e.g. Spark Connect): trust the name
        return fmt if fmt != AUTO else _format_of_name(path, path)
    exists, is_dir, names = listing
    if not exists:
        raise DataError(f"{path}: no such file or directory")
    if is_dir:
        if DELTA_LOG in names:
            return "delta" if fmt == AUTO else fmt
        data = [n for n in names if not n.startswith(("_", "."))]
        if not data:
            raise DataError(f"{path}: the directory holds no data files")
        if fmt != AUTO:
            return fmt
        found = {_format_of_name(n, None) for n in data}
        if len(found) == 1 and None not in found:
            return found.pop()
        raise DataError(f"{path}: cannot tell the format of the files in this directory "
                        f"({', '.join(sorted(data)[:5])}); pass --format csv|parquet|delta|json")
    return fmt if fmt != AUTO else _format_of_name(path, path)


def _format_of_name(name: str, fail_path: Optional[str]) -> Optional[str]:
    lower = name.lower().rstrip("/")
    for ext in _COMPRESSION:
        if lower.endswith(ext) and not lower.endswith(".parquet" + ext):
            lower = lower[: -len(ext)]
    if lower.endswith(".parquet") or ".parquet" in Path(lower).name:
        return "parquet"
    fmt = _EXTENSIONS.get(Path(lower).suffix)
    if fmt is None and fail_path is not None:
        raise DataError(f"{fail_path}: cannot tell the dataset format from the name; pass "
                        "--format csv|parquet|delta|json")
    return fmt


def _is_local(path: str) -> bool:
    scheme = urlparse(path).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")


def _list_path(spark: "SparkSession", path: str) -> Optional[tuple[bool, bool, list[str]]]:
    """(exists, is_directory, names in it) through the OS or Hadoop's FileSystem; None if unknown."""
    if _is_local(path):
        local = Path(urlparse(path).path if path.startswith("file:") else path)
        if not local.exists():
            return False, False, []
        return True, local.is_dir(), sorted(p.name for p in local.iterdir()) if local.is_dir() else []
    try:
        fs, hadoop_path = batchrec_fs.hadoop_path(spark, path)
        if not fs.exists(hadoop_path):
            return False, False, []
        if not fs.getFileStatus(hadoop_path).isDirectory():
            return True, False, []
        return True, True, sorted(s.getPath().getName() for s in fs.listStatus(hadoop_path))
    except Exception as exc:  # no JVM access or a file system without listing: let Spark decide
        log.debug("cannot list %s through Hadoop (%s); relying on Spark's reader", path, exc)
        return None


def _load(spark: "SparkSession", path: str, fmt: str, delimiter: str) -> "DataFrame":
    from pyspark.errors import AnalysisException
    from pyspark.sql import types as T

    try:
        if fmt == "csv":
            reader = (spark.read.option("header", True).option("inferSchema", False)
                      .option("delimiter", delimiter).option("encoding", "UTF-8")
                      # -1 = no limit: an oversize field is rejected by validation, not by the parser.
                      .option("maxCharsPerColumn", -1).option("mode", "PERMISSIVE"))
            header = reader.csv(path).columns
            if not header:
                return spark.createDataFrame([], T.StructType([]))
            # Reading again with the header's columns (all strings) plus the corrupt-record column
            # makes rows with too few or too many fields visible instead of silently padded.
            schema = T.StructType([T.StructField(c, T.StringType()) for c in header]
                                  + [T.StructField(CORRUPT_RECORD, T.StringType())])
            return (reader.schema(schema).option("columnNameOfCorruptRecord", CORRUPT_RECORD)
                    .option("enforceSchema", True).csv(path))
        if fmt == "json":
            return (spark.read.option("primitivesAsString", True).option("mode", "PERMISSIVE")
                    .option("columnNameOfCorruptRecord", CORRUPT_RECORD).json(path))
        return spark.read.format(fmt).load(path)
    except AnalysisException as exc:
        text = str(exc)
        if "PATH_NOT_FOUND" in text or "Path does not exist" in text:
            raise DataError(f"{path}: no such file or directory") from exc
        if "UNABLE_TO_INFER_SCHEMA" in text or "Unable to infer schema" in text:
            raise DataError(f"{path}: no {fmt} data found (empty directory or wrong --format?)") from exc
        raise DataError(f"{path}: cannot read as {fmt}: {text.splitlines()[0]}") from exc


def apply_renames(df: "DataFrame", renames: Sequence[tuple[str, str]], path: str = "") -> "DataFrame":
    """Rename source columns (case-insensitive) and upper-case every column name.

    Raises:
        DataError: two columns end up with the same name.
    """
    by_upper = {source.upper(): target.upper() for source, target in renames}
    names = [by_upper.get(c.upper(), c.upper()) if c != CORRUPT_RECORD else c for c in df.columns]
    seen: dict[str, str] = {}
    for original, new in zip(df.columns, names):
        if new in seen:
            raise DataError(f"{path}: columns {seen[new]!r} and {original!r} both become {new} "
                            "(column names are case-insensitive); rename or drop one")
        seen[new] = original
    return df.toDF(*names)


def unmatched_renames(renames: Sequence[tuple[str, str]], seen_columns: Sequence[str]) -> list[str]:
    """The ``--rename`` sources that match none of ``seen_columns`` (case-insensitive)."""
    upper = {c.upper() for c in seen_columns}
    return [f"{s}={t}" for s, t in renames if s.upper() not in upper]


def _check_delimiter(path: str, header: list[str], delimiter: str) -> None:
    if len(header) != 1:
        return
    for candidate, label in _OTHER_DELIMITERS.items():
        if candidate != delimiter and candidate in header[0]:
            flag = "--delimiter $'\\t'" if candidate == "\t" else f"--delimiter '{candidate}'"
            raise DataError(
                f"{path}: the header has a single column {header[0][:MAX_SHOWN_LINE]!r}: the file "
                f"is probably delimited by {label}, not {delimiter!r}; pass {flag} "
                f"(or set [validation] csv_delimiter)")


def _check_duplicate_header(path: str, header: list[str]) -> None:
    """Spark renames repeated header names (case-insensitively) to NAME<position>: refuse them."""
    bases: dict[str, list[str]] = {}
    for pos, name in enumerate(header):
        suffix = str(pos)
        if name.endswith(suffix) and len(name) > len(suffix):
            base = name[: -len(suffix)]
            bases.setdefault(base.upper(), []).append(base)
    for upper, spellings in bases.items():
        if len(spellings) > 1 and not _DATA_LIKE.match(upper):
            raise DataError(f"{path}: the header names the column {upper} {len(spellings)} times "
                            f"({', '.join(repr(s) for s in spellings)}); column names are "
                            "case-insensitive: rename or drop the extra columns")


def _header_hint(spark: "SparkSession", path: str, fmt: str, header: list[str]) -> str:
    """Explain a CSV whose first line looks like data rather than column names."""
    if not header or sum(bool(_DATA_LIKE.match(c)) for c in header) * 2 < len(header):
        return ""
    try:
        first = spark.read.text(path).first()
        line = first[0][:MAX_SHOWN_LINE] if first else ",".join(header)
    except Exception:  # only a nicer message depends on it
        line = ",".join(header)
    return (f" The first line {line!r} looks like data, not a header row: batchrec reads CSV with a "
            "header row naming the columns; add one (e.g. USER_ID,ITEM_ID,TIMESTAMP).")


def _with_source_file(df: "DataFrame") -> "DataFrame":
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    try:
        return df.withColumn(columns.SOURCE_FILE, F.col("_metadata.file_path"))
    except AnalysisException:  # sources without the hidden _metadata column
        return df.withColumn(columns.SOURCE_FILE, F.input_file_name())
