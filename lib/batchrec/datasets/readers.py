"""Read a dataset (CSV with a header, Parquet, Delta, JSON lines) from a local path or Hadoop URI.

Rows come back raw: CSV and JSON values stay strings so that validation can reject values that do
not parse instead of Spark turning them into silent nulls. Column names are upper-cased (Personalize
matches headers case-insensitively), ``--rename`` is applied, and every row carries the file it came
from in :data:`batchrec.columns.SOURCE_FILE`.

CSV is read as RFC 4180: fields in double quotes may hold the delimiter and line breaks, and a quote
inside them is written twice (``"a""b"`` is ``a"b``). A record with too few or too many fields is
kept whole in the corrupt-record column (validation rejects it as ``malformed_row``); a quoted field
with text after its closing quote, or a backslash-escaped quote, is not CSV and stops the read with
a :class:`DataError` naming the file and line, rather than accepting half a row. (Quoted fields may
span lines, so a single CSV file is read by one task; split large exports into several files.)
Inside a quoted field, the file's own line break is read as ``\n`` (``\r\n`` in a CRLF file);
a quote inside an unquoted field is kept as a literal character.

JSON lines are read strictly: a line that is not exactly one JSON object (text after it, an
array) is a malformed row. Before reading, the first bytes of the first data file are checked
against the format: Parquet given as CSV or JSON, text given as Parquet, and binary files given as
CSV or JSON are refused with a DataError saying what the file is.
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
from batchrec.errors import BatchrecError, DataError, UsageError

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
# Content checks: how much of the first data file is looked at, and what marks non-text.
SNIFF_BYTES = 8192
SNIFF_DEPTH = 6
PARQUET_MAGIC = b"PAR1"
_MAGIC_NAMES = {b"\x1f\x8b": "gzip-compressed data; name the file *.gz so it is decompressed",
                b"PK\x03\x04": "a ZIP archive; unzip it first",
                b"BZh": "bzip2-compressed data; name the file *.bz2 so it is decompressed",
                b"\x28\xb5\x2f\xfd": "zstd-compressed data; name the file *.zst so it is decompressed",
                b"\xff\xfe": "UTF-16 text (byte order mark FF FE); save it as UTF-8",
                b"\xfe\xff": "UTF-16 text (byte order mark FE FF); save it as UTF-8"}
# More than this share of undecodable or control characters in the sample: binary, not text.
MAX_NON_TEXT_SHARE = 0.1
_TEXT_CONTROLS = set("\t\n\r\f\v")


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
    check_content(spark, path, fmt)
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
    except BatchrecError:  # e.g. no file system for the scheme: the message says which jar to add
        raise
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
                      # RFC 4180: quoted fields span lines, a quote inside one is doubled, and a
                      # quoted field followed by more text is an error, not a guess.
                      .option("multiLine", True).option("quote", '"').option("escape", '"')
                      .option("unescapedQuoteHandling", "RAISE_ERROR")
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
            return _load_json_lines(spark, path)
        return spark.read.format(fmt).load(path)
    except AnalysisException as exc:
        text = str(exc)
        if "PATH_NOT_FOUND" in text or "Path does not exist" in text:
            raise DataError(f"{path}: no such file or directory") from exc
        if "UNABLE_TO_INFER_SCHEMA" in text or "Unable to infer schema" in text:
            raise DataError(f"{path}: no {fmt} data found (empty directory or wrong --format?)") from exc
        if "DELTA_TABLE_NOT_FOUND" in text or "DELTA_MISSING_DELTA_TABLE" in text or "is not a Delta table" in text:
            raise DataError(f"{path}: not a Delta table (no {DELTA_LOG} folder); pass the --format of "
                            "its files (csv|parquet|json) or auto") from exc
        raise DataError(f"{path}: cannot read as {fmt}: {text.splitlines()[0]}") from exc
    except BatchrecError:
        raise
    except Exception as exc:  # a failure while Spark reads the files (footers, first lines)
        from batchrec.failures import one_line, translate

        known = translate(exc, path)
        if isinstance(known, BatchrecError):
            raise known from exc
        raise DataError(f"{path}: cannot read as {fmt}: {one_line(exc)}") from exc


def _load_json_lines(spark: "SparkSession", path: str) -> "DataFrame":
    """JSON lines, one JSON object per line exactly; any other line keeps its text as a corrupt record.

    Spark's own JSON reader infers the columns (every value a string) but accepts text after an
    object, so the rows come from the lines themselves: a line that is exactly one JSON object
    (:func:`batchrec.jsontext.parse_object`) gives its values, any other non-blank line is malformed.
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from batchrec.jsontext import parse_object

    inferred = (spark.read.option("primitivesAsString", True).option("mode", "PERMISSIVE")
                .option("columnNameOfCorruptRecord", CORRUPT_RECORD).json(path))
    fields = [f for f in inferred.schema.fields if f.name != CORRUPT_RECORD]
    if not fields:
        if CORRUPT_RECORD in inferred.columns:
            raise DataError(f"{path}: no line is a JSON object; expected JSON lines such as "
                            '{"USER_ID": "u1", "ITEM_ID": "i1", "TIMESTAMP": 1700000000}')
        return inferred
    schema = T.StructType(fields)
    value = F.col("value")
    strict = parse_object(value)
    parsed = F.from_json(value, schema, {"mode": "PERMISSIVE"})
    lines = spark.read.text(path).where(~value.rlike(r"^\s*$"))
    return lines.select(*[F.when(strict.isNotNull(), parsed[f.name]).alias(f.name) for f in fields],
                        F.when(strict.isNull(), value).alias(CORRUPT_RECORD))


def check_content(spark: "SparkSession", path: str, fmt: str) -> None:
    """Refuse a dataset whose first data file is not of ``fmt``, judged by its first bytes.

    Raises:
        DataError: Parquet given as CSV or JSON, non-Parquet given as Parquet, or binary data (NUL
            bytes, another encoding, an archive) given as CSV or JSON; the message names the file,
            what it looks like and the option to change.
    """
    if fmt not in ("csv", "json", "parquet"):
        return
    try:
        sample = _first_bytes(spark, path)
    except BatchrecError:
        raise
    except Exception as exc:  # sniffing is a courtesy; the reader reports what it finds
        log.debug("cannot sample %s: %s", path, exc)
        return
    if sample is None:
        return
    uri, head = sample
    is_parquet = head.startswith(PARQUET_MAGIC)
    expected = {"csv": "UTF-8 CSV text with a header row", "json": "UTF-8 JSON lines"}
    if fmt == "parquet":
        if not is_parquet and head:
            looks = ("text: " + repr(_preview(head))) if binary_problem(head) is None else "binary data"
            raise DataError(f"{uri}: not a Parquet file (it starts with {looks}); pass --format csv "
                            "or --format json for text files, or --format auto")
        return
    if is_parquet:
        raise DataError(f"{uri}: is a Parquet file, not {fmt}; pass --format parquet (or --format auto)")
    if any(uri.lower().endswith(ext) for ext in _COMPRESSION):
        return  # Hadoop decompresses it; its bytes say nothing about the text inside
    problem = binary_problem(head)
    if problem:
        raise DataError(f"{uri}: not text ({problem}); expected {expected[fmt]}")


def binary_problem(head: bytes) -> Optional[str]:
    """Why the bytes ``head`` (the start of a file) are not UTF-8 text, or None when they are."""
    for magic, name in _MAGIC_NAMES.items():
        if head.startswith(magic):
            return name
    nul = head.find(b"\x00")
    if nul >= 0:
        return f"byte 0x00 at offset {nul}: binary data"
    import codecs

    text = codecs.getincrementaldecoder("utf-8")("replace").decode(head, final=False)
    if not text:
        return None
    odd = sum(1 for c in text if c == "\ufffd" or (ord(c) < 32 and c not in _TEXT_CONTROLS))
    if odd > MAX_NON_TEXT_SHARE * len(text):
        return f"{odd} of its first {len(text)} characters are not UTF-8 text: binary data"
    return None


def _preview(head: bytes) -> str:
    return head[:40].decode("utf-8", "replace").splitlines()[0] if head.strip() else ""


def _first_bytes(spark: "SparkSession", path: str) -> Optional[tuple[str, bytes]]:
    """``(uri, first bytes)`` of the first data file under ``path`` (a file, folder or glob)."""
    fs, hadoop_path = batchrec_fs.hadoop_path(spark, path)
    if _GLOB.search(path):
        matches = fs.globStatus(hadoop_path)
        statuses = sorted(matches or [], key=lambda st: str(st.getPath().getName()))
        statuses = [st for st in statuses if not str(st.getPath().getName()).startswith(("_", "."))]
        if not statuses:
            return None
        status = statuses[0]
    else:
        if not fs.exists(hadoop_path):
            return None
        status = fs.getFileStatus(hadoop_path)
    for _ in range(SNIFF_DEPTH):
        if not status.isDirectory():
            break
        children = sorted((st for st in fs.listStatus(status.getPath())
                           if not str(st.getPath().getName()).startswith(("_", "."))),
                          key=lambda st: (st.isDirectory(), str(st.getPath().getName())))
        if not children:
            return None
        status = children[0]
    if status.isDirectory():
        return None
    stream = fs.open(status.getPath())
    try:
        head = bytes(stream.readNBytes(SNIFF_BYTES))
    finally:
        stream.close()
    return str(status.getPath().toString()), head


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
