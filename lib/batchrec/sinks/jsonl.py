"""Personalize batch output JSON lines, written atomically.

One output line per input line, in input order::

    {"input": {"userId": "u1"}, "output": {"recommendedItems": ["i1", ...], "scores": [0.9, ...]}, "error": null}
    {"input": "<the raw line>", "output": null, "error": "line 3 of ...: not a JSON object; ..."}

``input`` echoes the request line as it was (so ``filterValues`` and other keys survive); a line that
could not be served, or that is not exactly one JSON object, is echoed as a JSON string (bytes that
are not UTF-8 replaced by U+FFFD), so every output line is valid JSON. ``scores`` appear only for models that score
(user-personalization and personalized ranking), as in Personalize; an item that came from the
popular backfill has a ``null`` score so the two arrays stay aligned.

Files, as Personalize names them: one ``<input file name>.out`` per input file (``--input
users.jsonl`` gives ``DIR/users.jsonl.out``; a folder of inputs gives one ``.out`` per file in it),
each holding its input's lines in input order. Without ``--input`` (every user or item of the model)
the one file is ``all-users.out`` (``recommend``) or ``all-items.out`` (``related``, ``segment``).
The folder holds nothing else: no Spark part files, ``_SUCCESS`` or ``.crc`` checksums.

The folder is written under a temporary sibling name and renamed into place; an existing folder (a
previous run) is moved aside first and deleted after the rename, so a reader never sees a half
written folder.
"""

from __future__ import annotations

import logging
import posixpath
import urllib.parse
import uuid
from typing import Sequence

from pyspark.sql import Column, DataFrame, functions as F

from batchrec import fs
from batchrec.batch.shapes import RECOMMENDATIONS, OutputShape
from batchrec.columns import USER_ID
from batchrec.batch.inputs import ERROR, FILE, KIND_USERS, POSITION, RAW
from batchrec.errors import JobError, UsageError
from batchrec.jsontext import json_string, parse_object
from batchrec.locations import KIND_FOLDER, OUT_SUFFIX, Location, check_locations

log = logging.getLogger(__name__)

VALUE = "value"
RANK = "rank"
SCORE = "score"
SCORES = "scores"
_RECS = "_recs"
_INDEX = "jsonl_file"  # which output file a line goes to (the index of its name)
_PARTS = "_parts"  # Spark's own output, inside the temporary folder, before the files are named
# The one output file of a run without --input, by the kind of request (every user, every item).
ALL_USERS = "all-users" + OUT_SUFFIX
ALL_ITEMS = "all-items" + OUT_SUFFIX


def recommendation_lines(requests: DataFrame, recs: DataFrame, with_scores: bool,
                         key: str = USER_ID, shape: OutputShape = RECOMMENDATIONS) -> DataFrame:
    """Join each request with its ranked results and format the Personalize output line.

    Args:
        requests: ``[_file, _position, _raw, <key>, error]`` (see ``batchrec.batch.inputs``).
        recs: ``[<key>, rank, <shape.list_column>, score]``; ``key`` identifies a request's result set.
        with_scores: include ``scores`` (models that score: user-personalization and ranking).
        shape: the output shape: which column is listed, under which Personalize field.

    Returns:
        ``[_file, _position, <key>, value]`` where ``value`` is the JSON line.
    """
    listed = shape.list_column
    ranked = (recs.groupBy(key)
              .agg(F.sort_array(F.collect_list(F.struct(RANK, listed, SCORE))).alias(_RECS)))
    joined = requests.join(ranked, key, "left")
    items = F.coalesce(F.col(f"{_RECS}.{listed}"), F.array().cast("array<string>"))
    fields = [items.alias(shape.jsonl_field)]
    if with_scores:
        fields.append(F.coalesce(F.col(f"{_RECS}.{SCORE}"), F.array().cast("array<double>")).alias(SCORES))
    good = F.concat(F.lit('{"input": '), echo_input(F.col(RAW)), F.lit(', "output": '),
                    F.to_json(F.struct(*fields), {"ignoreNullFields": "false"}), F.lit(', "error": null}'))
    bad = F.to_json(F.struct(F.make_valid_utf8(F.col(RAW)).alias("input"),
                             F.lit(None).cast("string").alias("output"),
                             F.make_valid_utf8(F.col(ERROR)).alias("error")), {"ignoreNullFields": "false"})
    value = F.when(F.col(ERROR).isNull(), good).otherwise(bad)
    keep = list(dict.fromkeys([FILE, POSITION, key]))
    return joined.select(*keep, value.alias(VALUE))


def echo_input(raw: Column) -> Column:
    """The request line for ``input``: as is when it is exactly one JSON object, else as a JSON string.

    The request reader only serves such lines, but the sink does not rely on it: whatever reaches
    it, every output line is valid JSON.
    """
    return F.when(parse_object(raw).isNotNull(), F.trim(raw)).otherwise(json_string(raw))


def unnamed_output(request_kind: str) -> str:
    """The output file of a run without ``--input``: ``all-users.out`` for user requests, else
    ``all-items.out`` (related items and segments are asked per item)."""
    return ALL_USERS if request_kind == KIND_USERS else ALL_ITEMS


def output_name(input_file: str, unnamed: str = ALL_USERS) -> str:
    """``<input file name>.out`` for an input file URI as Spark names it (``input_file_name()``,
    percent-encoded), or ``unnamed`` for requests that came from no file."""
    if not input_file:
        return unnamed
    name = posixpath.basename(urllib.parse.unquote(urllib.parse.urlsplit(input_file).path).rstrip("/"))
    return (name or unnamed.removesuffix(OUT_SUFFIX)) + OUT_SUFFIX


def write_lines(lines: DataFrame, path: str, order_by=(FILE, POSITION, USER_ID),
                unnamed: str = ALL_USERS) -> list[str]:
    """Write ``lines[value]`` as Personalize's output files in the folder ``path``, atomically.

    Each input file's lines go to ``<input file name>.out`` (:func:`output_name`), sorted by
    ``order_by`` (input order); lines that came from no file (every user or item of the model) go
    to ``unnamed``. One Spark task writes each file, so a file is written in one piece, like
    Personalize's; the files are then moved out of Spark's part-file layout and the folder is
    renamed into place (:func:`batchrec.fs.replace`).

    Whatever is at ``path`` is replaced only when it is a previous JSON-lines output (see
    :data:`batchrec.locations.KIND_FOLDER`); a Delta table, a solution or any other folder or file
    is refused (UsageError), never deleted, even when the caller did not check its locations.

    Returns:
        The names of the files written, sorted.

    Raises:
        UsageError: two input files have the same name (their ``.out`` files would collide).
        JobError: Spark's output could not be moved into place.
    """
    spark = lines.sparkSession
    check_locations(spark, [], [Location("--jsonl", path, KIND_FOLDER)])
    target = path.rstrip("/")
    files, names = output_names(lines, unnamed)
    mapping = spark.createDataFrame([(f, i) for i, f in enumerate(files)], f"{FILE} string, {_INDEX} int")
    temporary = f"{target}.tmp-{uuid.uuid4().hex[:8]}"
    parts = fs.join(temporary, _PARTS)
    try:
        indexed = lines.withColumn(FILE, F.coalesce(F.col(FILE), F.lit(""))).join(F.broadcast(mapping), FILE)
        # All lines of a file in one task, in input order: the write keeps this order because it
        # starts with the partition column (no second sort), and one task writes one file.
        (indexed.repartition(len(files), _INDEX).sortWithinPartitions(_INDEX, *order_by)
         .select(_INDEX, VALUE).write.partitionBy(_INDEX)
         .option("maxRecordsPerFile", 0).option("compression", "none").text(parts))
        for index, name in enumerate(names):
            _move_part(spark, fs.join(parts, f"{_INDEX}={index}"), fs.join(temporary, name))
        fs.delete(spark, parts)
        fs.replace(spark, temporary, target)
    except Exception:
        fs.delete(spark, temporary)
        raise
    log.info("wrote JSON lines to %s: %s", target, ", ".join(names))
    return sorted(names)


def output_names(frame: DataFrame, unnamed: str = ALL_USERS) -> tuple[list[str], list[str]]:
    """``(input files, their output names)`` of the request lines in ``frame`` (its ``_file``).

    Raises:
        UsageError: two input files have the same name: their ``.out`` files would collide (the
            batch runner asks before it writes anything).
    """
    # One row per input file (Personalize takes at most 1000 per job): small, on the driver.
    files = sorted({r[0] or "" for r in frame.select(FILE).distinct().collect()}) or [""]
    return files, _names(files, unnamed)


def _names(files: Sequence[str], unnamed: str) -> list[str]:
    """The output name of each input file; two inputs with one name would overwrite each other."""
    names = [output_name(f, unnamed) for f in files]
    seen: dict[str, str] = {}
    for file, name in zip(files, names):
        if name in seen:
            raise UsageError(f"--input: two input files are named {name.removesuffix(OUT_SUFFIX)!r} "
                             f"({seen[name]} and {file}); each input file's output is "
                             f"<input file name>{OUT_SUFFIX}, so their outputs would collide: give "
                             "files with distinct names")
        seen[name] = file
    return names


def _move_part(spark, folder: str, final: str) -> None:
    """Rename the one Spark part file in ``folder`` to ``final`` without its checksum file; no
    folder (nothing to write, e.g. a model without users) gives an empty file.

    On the local file system Hadoop's checksummed wrapper would carry the hidden ``.crc`` file
    along; the raw file system moves the data file only (the checksum stays in the part folder,
    which is deleted).
    """
    filesystem, folder_path = fs.hadoop_path(spark, folder)
    if not filesystem.exists(folder_path):
        fs.write_text(spark, final, "")
        return
    data = [s.getPath() for s in filesystem.listStatus(folder_path)
            if s.isFile() and not s.getPath().getName().startswith((".", "_"))]
    if len(data) != 1:
        raise JobError(f"expected one JSON-lines part file in {folder}, found {len(data)}")
    checksummed = spark.sparkContext._jvm.java.lang.Class.forName(fs.CHECKSUM_FS)
    if checksummed.isInstance(filesystem):
        filesystem = filesystem.getRawFileSystem()
    if not filesystem.rename(data[0], fs.hadoop_path(spark, final)[1]):
        raise JobError(f"could not rename {data[0].toString()} to {final}")
