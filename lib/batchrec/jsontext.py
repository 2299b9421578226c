"""Strict JSON for text lines: a line is accepted only when it is exactly one JSON object.

Spark's JSON parsers (``from_json``, ``spark.read.json``, ``parse_json``) stop after the first value
and ignore whatever follows, so ``{"userId": "u13"} trailing`` would pass as ``{"userId": "u13"}``
and be echoed into output that is not JSON. :func:`parse_object` closes that gap with built-ins only:
the line is parsed inside an array followed by a sentinel, ``[<line>,"<sha256 of line>"]``. The
parser consumes the line as one array element and then must meet the sentinel as the second, which
only happens when the line is exactly one JSON value (a line that closed the array early or added
elements would have to contain its own SHA-256). The first element must then be an object, and
the line valid UTF-8.

Duplicate keys, ``NaN``/``Infinity``, comments, single quotes and unquoted control characters are
refused (the line gets an error), like any strict JSON parser would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import Column

SHA_BITS = 256
OBJECT_SCHEMA_PREFIX = "OBJECT"


def parse_object(raw: "Column") -> "Column":
    """The line as a VARIANT when it is exactly one JSON object in valid UTF-8, else null."""
    from pyspark.sql import functions as F

    sentinel = F.sha2(raw, SHA_BITS)
    wrapped = F.try_parse_json(F.concat(F.lit("["), raw, F.lit(',"'), sentinel, F.lit('"]')))
    first = F.try_variant_get(wrapped, "$[0]", "variant")
    second = F.try_variant_get(wrapped, "$[1]", "string")
    exact = (F.is_valid_utf8(raw) & (second == sentinel)
             & F.schema_of_variant(first).startswith(OBJECT_SCHEMA_PREFIX))
    return F.when(F.coalesce(exact, F.lit(False)), first)


def json_string(text: "Column") -> "Column":
    """``text`` as a JSON string literal (quoted and escaped; bytes that are not UTF-8 replaced)."""
    from pyspark.sql import functions as F

    array = F.to_json(F.array(F.make_valid_utf8(text)))  # ["..."]: to_json escapes it for us
    return F.regexp_extract(array, r"(?s)^\[(.*)\]$", 1)
