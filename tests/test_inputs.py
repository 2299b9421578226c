"""Personalize batch input JSON lines: parsed fields, line numbers, and an error per bad line."""

from __future__ import annotations

import pytest

from batchrec.columns import USER_ID
from batchrec.errors import DataError
from batchrec.batch import inputs

USER_LINES = [
    '{"userId": "u1"}',
    '{"userId": "u2", "filterValues": {"GENRES": "\\"horror\\""}}',
    "not json at all",
    "",
    '{"itemId": "i1"}',
    '{"userId": 42}',
    '["u3"]',
    '{"userId": ""}',
]


def read(spark, tmp_path, lines, kind=inputs.KIND_USERS):
    path = tmp_path / "input.jsonl"
    path.write_text("\n".join(lines) + "\n")
    rows = inputs.read_requests(spark, str(path), kind).orderBy(inputs.POSITION).collect()
    return path, rows


def test_user_lines_keep_their_raw_text_and_line_numbers_and_flag_bad_ones(spark, tmp_path):
    path, rows = read(spark, tmp_path, USER_LINES)
    got = [(r[inputs.LINE], r[USER_ID], r[inputs.RAW], r[inputs.ERROR]) for r in rows]
    where = f"of {rows[0][inputs.FILE]}: "
    assert rows[0][inputs.FILE].endswith(str(path))
    assert got == [
        (1, "u1", USER_LINES[0], None),
        (2, "u2", USER_LINES[1], None),
        (3, None, "not json at all", f'line 3 {where}not a JSON object; expected {{"userId": "..."}}'),
        # line 4 is blank: not a record, no output line
        (5, None, USER_LINES[4], f'line 5 {where}no "userId"; expected a non-empty string'),
        (6, "42", USER_LINES[5], None),  # IDs are strings at every boundary
        (7, None, '["u3"]', f'line 7 {where}not a JSON object; expected {{"userId": "..."}}'),
        (8, "", USER_LINES[7], f'line 8 {where}no "userId"; expected a non-empty string'),
    ]


def test_ranking_lines_need_an_item_list(spark, tmp_path):
    lines = ['{"userId": "u1", "itemList": ["a", "b", null]}', '{"userId": "u2"}',
             '{"userId": "u3", "itemList": "a"}']
    _, rows = read(spark, tmp_path, lines, inputs.KIND_RANKING)
    assert [(r[USER_ID], r[inputs.ITEM_LIST], r[inputs.ERROR] is None) for r in rows] == [
        ("u1", ["a", "b"], True), ("u2", None, False), ("u3", None, False)]
    assert rows[1][inputs.ERROR].startswith("line 2 of ")
    assert rows[1][inputs.ERROR].endswith('no "itemList"; expected an array of item IDs')


def test_a_missing_input_is_a_data_error_naming_the_path(spark, tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(DataError, match=rf"--input {missing}: cannot read the JSON-lines input"):
        inputs.read_requests(spark, str(missing))
