"""Property tests: random bytes and JSON into the request reader, random CSV into validation.

Only batchrec's own errors may come out, every output line is valid JSON, and every accepted row
holds exactly the field values an RFC 4180 / strict JSON reader gets from the same text. Each
example is a whole file read by Spark, so the number of examples is small and fixed by default; set
``BATCHREC_PROPERTY_EXAMPLES`` for a longer run and ``BATCHREC_PROPERTY_RANDOM=1`` to explore new
examples instead of the fixed ones.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchrec.batch import inputs
from batchrec.config import load_settings
from batchrec.errors import BatchrecError
from batchrec.sinks import jsonl as jsonl_sink

EXAMPLES = int(os.environ.get("BATCHREC_PROPERTY_EXAMPLES", "12"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None,
                    derandomize=os.environ.get("BATCHREC_PROPERTY_RANDOM") != "1",
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
BASE_TIME = 1_600_000_000

# --- strict JSON reference --------------------------------------------------------------------


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate key")
    return dict(pairs)


def _no_constants(name):
    raise ValueError(f"{name} is not JSON")


def strict_loads(text: str):
    return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)


def expected_request(raw: bytes):
    """None for a blank line, else (served, user id or None, echoed input) by a strict reference."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False, None, raw.decode("utf-8", "replace")
    if not text.strip(" "):
        return None
    try:
        value = strict_loads(text)
    except ValueError:
        return False, None, text
    if not isinstance(value, dict):
        return False, None, text
    user = value.get("userId")
    if isinstance(user, bool) or not isinstance(user, (str, int)):
        return False, None, text
    if isinstance(user, int) and not -2**63 <= user < 2**63:  # IDs are strings or 64-bit integers
        return False, None, text
    user = str(user)
    if not user.strip(" "):
        return False, None, text
    return True, user, value


json_scalars = (st.none() | st.booleans() | st.integers(-10**30, 10**30)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)
user_ids = st.text(max_size=6) | st.integers(-10**20, 10**20) | json_values
request_objects = st.builds(lambda user, extra, drop: {**({} if drop else {"userId": user}), **extra},
                            user_ids, st.dictionaries(st.text(max_size=5).filter(lambda k: k != "userId"),
                                                      json_values, max_size=2), st.booleans())
trailers = st.sampled_from(["", " ", " trailing", "}", "]", ",{}", '{"userId": "z"}', "\t", " // c"])
no_newline_bytes = st.binary(max_size=30).map(lambda b: b.replace(b"\n", b" ").replace(b"\r", b" "))
request_lines = st.one_of(
    st.builds(lambda obj, tail: (json.dumps(obj) + tail).encode(), request_objects, trailers),
    st.builds(lambda value: json.dumps(value).encode(), json_values),
    no_newline_bytes,
    st.builds(lambda obj, junk: json.dumps(obj).encode() + junk, request_objects, no_newline_bytes),
)


@PROPERTY
@given(lines=st.lists(request_lines, min_size=1, max_size=8))
def test_request_reader_serves_exactly_the_strict_json_objects(spark, lines):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "requests.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        try:
            requests = inputs.read_requests(spark, str(path)).orderBy(inputs.POSITION)
            rows = requests.collect()
            recs = spark.createDataFrame([], "USER_ID string, rank int, ITEM_ID string, score double")
            out = [r[0] for r in jsonl_sink.recommendation_lines(requests, recs, with_scores=True)
                   .orderBy(inputs.POSITION).select(jsonl_sink.VALUE).collect()]
        except BatchrecError:
            return
    expected = [e for e in map(expected_request, lines) if e is not None]
    assert len(rows) == len(expected) == len(out)
    for row, line, (served, user, echoed) in zip(rows, out, expected):
        assert (row[inputs.ERROR] is None) == served, (row[inputs.RAW], row[inputs.ERROR])
        parsed = strict_loads(line)  # every output line is valid JSON
        assert set(parsed) == {"input", "output", "error"}
        assert parsed["input"] == echoed
        if served:
            assert row["USER_ID"] == user
            assert parsed["output"] == {"recommendedItems": [], "scores": []} and parsed["error"] is None
        else:
            assert parsed["output"] is None and parsed["error"] == row[inputs.ERROR]


item_lists = st.lists(st.text(max_size=4) | st.integers(-5, 5) | st.none(), max_size=3) | json_values
ranking_objects = st.builds(lambda user, items, extra: {"userId": user, "itemList": items, **extra},
                            user_ids, item_lists,
                            st.dictionaries(st.sampled_from(["x", "filterValues", "itemList"]), json_values,
                                            max_size=1))
item_objects = st.builds(lambda item, extra: {"itemId": item, **extra}, user_ids,
                         st.dictionaries(st.sampled_from(["x", "userId"]), json_values, max_size=1))
kind_lines = {
    inputs.KIND_RANKING: st.one_of(st.builds(lambda o, t: (json.dumps(o) + t).encode(), ranking_objects, trailers),
                                   no_newline_bytes, st.builds(lambda v: json.dumps(v).encode(), json_values)),
    inputs.KIND_ITEMS: st.one_of(st.builds(lambda o, t: (json.dumps(o) + t).encode(), item_objects, trailers),
                                 no_newline_bytes, st.builds(lambda v: json.dumps(v).encode(), json_values)),
}


@PROPERTY
@given(kind=st.sampled_from(sorted(kind_lines)), data=st.data())
def test_ranking_and_item_request_readers_answer_every_line_in_valid_json(spark, kind, data):
    """Only batchrec's errors come out; every non-blank line is one row, served only when it is
    exactly one JSON object; every output line is valid JSON echoing that object."""
    lines = data.draw(st.lists(kind_lines[kind], min_size=1, max_size=8))
    key, column = inputs.SUBJECT[kind]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "requests.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        try:
            requests = inputs.read_requests(spark, str(path), kind).orderBy(inputs.POSITION)
            rows = requests.collect()
            recs = spark.createDataFrame([], f"{inputs.POSITION} long, rank int, ITEM_ID string, score double")
            out = [r[0] for r in jsonl_sink.recommendation_lines(requests, recs, with_scores=True, key=inputs.POSITION)
                   .orderBy(inputs.POSITION).select(jsonl_sink.VALUE).collect()]
        except BatchrecError:
            return
    expected = [e for e in map(expected_request, lines) if e is not None]
    assert len(rows) == len(expected) == len(out)
    for row, line, raw in zip(rows, out, [x for x in lines if expected_request(x) is not None]):
        parsed = strict_loads(line)
        assert set(parsed) == {"input", "output", "error"}
        if row[inputs.ERROR] is None:
            source = strict_loads(raw.decode("utf-8"))  # served: exactly one JSON object
            assert isinstance(source, dict) and parsed["input"] == source and parsed["error"] is None
            assert row[column] == str(source[key])
        else:
            assert parsed["output"] is None and parsed["error"] == row[inputs.ERROR]


# --- RFC 4180 CSV ---------------------------------------------------------------------------------

HEADER = ["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE"]
# Quotes, delimiters, line breaks, spaces, a comment sign, a backslash and some non-ASCII text.
FIELD_ALPHABET = st.sampled_from(list('ab"\',;#\\ \n\r\t|xyz') + ["é", "日", "😀"])
fields = st.text(FIELD_ALPHABET, max_size=6)


def limits():
    return load_settings(environ={}, overrides={"validation": {
        "min_interactions": 0, "min_users_with_two_interactions": 0, "max_reject_fraction": 1.0}})


def validate(spark, text: bytes):
    """Accepted rows ``(USER_ID, ITEM_ID, TIMESTAMP, EVENT_TYPE)`` of ``text`` as interactions CSV."""
    from batchrec.datasets.validation import load_datasets

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "interactions.csv"
        path.write_bytes(text)
        result = load_datasets(spark, limits(), str(path), run_date=None, enforce=False)
        rows = [(r.USER_ID, r.ITEM_ID, r.TIMESTAMP, r.EVENT_TYPE) for r in result.interactions.collect()]
        result.interactions.unpersist()
        return rows


def acceptable(row: list[str]) -> bool:
    """Validation's rules for the generated rows: IDs not blank (Spark trims spaces only)."""
    return bool(row[0].strip(" ")) and bool(row[1].strip(" "))


@PROPERTY
@given(rows=st.lists(st.tuples(fields, fields, fields), min_size=1, max_size=8),
       terminator=st.sampled_from(["\n", "\r\n"]), quote_all=st.booleans())
def test_well_formed_csv_rows_come_back_exactly(spark, rows, terminator, quote_all):
    records = [[user, item, str(BASE_TIME + i), event] for i, (user, item, event) in enumerate(rows)]
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator=terminator,
                        quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
    writer.writerows([HEADER] + records)
    got = validate(spark, buffer.getvalue().encode("utf-8"))

    def read_back(value: str):
        # Inside quotes the parser reads the file's own line break as \n (documented in readers).
        return value.replace("\r\n", "\n") if terminator == "\r\n" else value

    expected = [(read_back(u), read_back(i), int(t), read_back(e) or None)
                for u, i, t, e in records if acceptable([u, i])]
    assert Counter(got) == Counter(expected)


class NotCsv(Exception):
    """The reference parser met text after a closing quote."""


def rfc4180_records(text: str, delimiter: str = ",") -> list[list[str]]:
    """An independent RFC 4180 reader, the reference for what validation must accept.

    Records end at the file's own line break (the first one in the text: CRLF, LF or CR), as in
    batchrec's reader; a quoted field holds anything, with ``""`` for a quote; a quote inside an
    unquoted field is a literal character; text after a closing quote is an error; empty lines are
    skipped; an unclosed quote runs to the end of the text.
    """
    first = next((i for i, c in enumerate(text) if c in "\r\n"), None)
    separator = "\n" if first is None else ("\r\n" if text[first:first + 2] == "\r\n" else text[first])
    records, record, i, n = [], [], 0, len(text)
    while i < n:
        if text.startswith(separator, i) and not record:  # an empty line
            i += len(separator)
            continue
        if text[i] == '"':
            i += 1
            value = []
            while i < n:
                if text[i] == '"':
                    if i + 1 < n and text[i + 1] == '"':
                        value.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                value.append(text[i])
                i += 1
            field = "".join(value)
            if i < n and text[i] != delimiter and not text.startswith(separator, i):
                raise NotCsv(text[i:i + 10])
        else:
            start = i
            while i < n and text[i] != delimiter and not text.startswith(separator, i):
                i += 1
            field = text[start:i]
        record.append(field)
        if i < n and text[i] == delimiter:
            i += 1
            if i == n or text.startswith(separator, i):
                record.append("")
            else:
                continue
        if i < n:
            i += len(separator)
        records.append(record)
        record = []
    if record:
        records.append(record)
    return records


def accepted_rows(records: list[list[str]]) -> list[tuple]:
    """What validation keeps of the reference records: four fields, IDs not blank, a whole-number
    timestamp in seconds up to now, and one copy of rows that are exact duplicates."""
    rows, seen = [], set()
    for record in records:
        raw = tuple(value or None for value in record)  # an empty field is null
        if len(record) != len(HEADER) or not acceptable(record) or raw in seen:
            continue
        seen.add(raw)
        stamp = record[2].strip(" \t\n\r")
        if stamp.isdigit() and int(stamp) <= time.time():
            rows.append((record[0], record[1], int(stamp), record[3] or None))
    return rows


fragments = st.text(st.sampled_from(list('ab",\n\r 1')), min_size=1, max_size=6)


@PROPERTY
@given(parts=st.lists(st.one_of(st.tuples(fields, fields, fields).map(lambda r: ("row", r)),
                                fragments.map(lambda f: ("fragment", f))), min_size=1, max_size=8),
       terminator=st.sampled_from(["\n", "\r\n"]))
def test_csv_fragments_never_give_half_a_row(spark, parts, terminator):
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator=terminator)
    writer.writerow(HEADER)
    for i, (kind, value) in enumerate(parts):
        if kind == "row":
            user, item, event = value
            writer.writerow([user, item, str(BASE_TIME + i), event])
        else:
            buffer.write(value)
    text = buffer.getvalue()
    try:
        reference = accepted_rows(rfc4180_records(text)[1:])
    except NotCsv:
        reference = None
    try:
        got = validate(spark, text.encode("utf-8"))
    except BatchrecError as exc:  # only batchrec's errors come out, and only for text that is not CSV
        assert reference is None, (text, str(exc))
        return
    assert reference is not None, (text, got)

    def read_back(value):
        return value.replace("\r\n", "\n") if terminator == "\r\n" and isinstance(value, str) else value

    assert Counter(got) == Counter(tuple(read_back(v) for v in row) for row in reference), text
