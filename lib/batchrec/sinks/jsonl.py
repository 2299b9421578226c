"""Personalize batch output JSON lines, written atomically.

One output line per input line, in input order::

    {"input": {"userId": "u1"}, "output": {"recommendedItems": ["i1", ...], "scores": [0.9, ...]}, "error": null}
    {"input": "<the raw line>", "output": null, "error": "line 3 of ...: not a JSON object; ..."}

``input`` echoes the request line as it was (so ``filterValues`` and other keys survive); a line that
could not be served, or that is not exactly one JSON object, is echoed as a JSON string (bytes that
are not UTF-8 replaced by U+FFFD), so every output line is valid JSON. ``scores`` appear only for models that score
(user-personalization and personalized ranking), as in Personalize; an item that came from the
popular backfill has a ``null`` score so the two arrays stay aligned.

The folder is written under a temporary sibling name and renamed into place; an existing folder (a
previous run) is moved aside first and deleted after the rename, so a reader never sees a half
written folder.
"""

from __future__ import annotations

import logging
import uuid

from pyspark.sql import Column, DataFrame, functions as F

from batchrec import fs
from batchrec.batch.shapes import RECOMMENDATIONS, OutputShape
from batchrec.columns import USER_ID
from batchrec.batch.inputs import ERROR, FILE, POSITION, RAW
from batchrec.jsontext import json_string, parse_object
from batchrec.locations import KIND_FOLDER, Location, check_locations

log = logging.getLogger(__name__)

VALUE = "value"
RANK = "rank"
SCORE = "score"
SCORES = "scores"
_RECS = "_recs"


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


def write_lines(lines: DataFrame, path: str, order_by=(FILE, POSITION, USER_ID)) -> None:
    """Write ``lines[value]`` sorted by ``order_by`` as text files in the folder ``path``, atomically.

    Whatever is at ``path`` is replaced only when it is a previous JSON-lines output (see
    :data:`batchrec.locations.KIND_FOLDER`); a Delta table, a solution or any other folder or file
    is refused (UsageError), never deleted, even when the caller did not check its locations.
    """
    check_locations(lines.sparkSession, [], [Location("--jsonl", path, KIND_FOLDER)])
    target = path.rstrip("/")
    temporary = f"{target}.tmp-{uuid.uuid4().hex[:8]}"
    lines.orderBy(*order_by).select(VALUE).write.text(temporary)
    fs.replace(lines.sparkSession, temporary, target)
    log.info("wrote JSON lines to %s", target)
