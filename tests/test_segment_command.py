"""``batchrec segment`` on the runner: item-affinity and attribute segments into Delta and
Personalize JSON lines, checked against numpy brute force; exclusions; bad lines; empty input."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import numpy as np
import pytest

from batchrec import cli, registry
from batchrec.commands import segment
from batchrec.config import SegmentSettings, Settings
from batchrec.recipes import TrainedModel
from batchrec.scoring.attribute_query import attribute_segment_id

from test_recommend import ITEMS, USERS, artifacts

RUN_DATE = dt.date(2026, 11, 22)
NOW = 1_700_000_000


def brute_force(item, n, excluded=()):
    """Users by dot product with ``item``'s vector, score desc then user ID asc."""
    vec = ITEMS[item][1]
    scored = sorted((-float(np.dot(USERS[u], vec)), u) for u in USERS if u not in excluded)
    return [(u, -neg) for neg, u in scored[:n]]


@pytest.fixture
def solution(spark, tmp_path):
    interactions = tmp_path / "interactions.csv"
    interactions.write_text(f"USER_ID,ITEM_ID,TIMESTAMP\nu1,a,{NOW}\nu3,c,{NOW}\n")
    items = tmp_path / "items.csv"
    items.write_text("ITEM_ID,GENRES\na,Comedy|Drama\nb,Drama\nc,Action\nd,Comedy\ne,Action|Comedy\n")
    path = str(tmp_path / "solution")
    model = TrainedModel(recipe="user-personalization", params={}, artifacts=artifacts(spark), stats={})
    registry.save_version(spark, path, model, {"datasets": {"interactions": str(interactions),
                                                            "items": str(items), "format": "csv"}})
    return path


def settings(**segment_values):
    return dataclasses.replace(Settings(), segment=SegmentSettings(**segment_values))


def test_item_affinity_segments_equal_brute_force_and_exclude_past_interactors(spark, tmp_path, solution):
    source = tmp_path / "items.jsonl"
    source.write_text('{"itemId": "a"}\n{"itemId": "c"}\n{"userId": "u1"}\n{"itemId": "zz"}\n')
    out, lines = str(tmp_path / "segments"), tmp_path / "lines"
    summary = segment.run(spark, settings(num_results=3, exclude_interacted=True), RUN_DATE,
                          solution=solution, output=out, jsonl=str(lines), input_path=str(source))
    rows = spark.read.format("delta").load(out).collect()
    got = {}
    for r in sorted(rows, key=lambda r: (r.segment_id, r.rank)):
        got.setdefault(r.segment_id, []).append((r.user_id, pytest.approx(r.score)))
    # u1 interacted with a and u3 with c: they are left out of those segments.
    assert got == {"a": brute_force("a", 3, {"u1"}), "c": brute_force("c", 3, {"u3"})}
    assert (summary["rows"], summary["errors"], summary["segments"]) == (6, 1, 3)
    out_lines = [json.loads(x) for f in sorted(lines.glob("*")) if not f.name.startswith(("_", "."))
                 for x in f.read_text().splitlines()]
    assert out_lines[0] == {"input": {"itemId": "a"},
                            "output": {"usersList": [u for u, _ in brute_force("a", 3, {"u1"})]},
                            "error": None}
    assert out_lines[2]["output"] is None and 'no "itemId"' in out_lines[2]["error"]
    assert out_lines[3]["output"] == {"usersList": []}  # an item the model does not know


def test_attribute_segments_score_the_mean_item_vector(spark, tmp_path, solution):
    source = tmp_path / "attributes.jsonl"
    source.write_text('{"itemAttributes": "ITEMS.GENRES = \\"Comedy\\""}\n'
                      '{"itemAttributes": "ITEMS.GENRES = "}\n')
    out, lines = str(tmp_path / "segments"), tmp_path / "lines"
    summary = segment.run(spark, settings(num_results=2), RUN_DATE, solution=solution, output=out,
                          jsonl=str(lines), input_path=str(source))
    table = spark.read.format("delta").load(out)
    assert table.columns == ["run_date", "solution", "solution_version", "recipe", "segment_id", "query",
                             "rank", "user_id", "score"]
    rows = sorted(table.collect(), key=lambda r: r.rank)
    comedy = np.mean([ITEMS[i][1] for i in ("a", "d", "e")], axis=0)
    expected = sorted((-float(np.dot(v, comedy)), u) for u, v in USERS.items())[:2]
    assert [(r.user_id, pytest.approx(r.score)) for r in rows] == [(u, -s) for s, u in expected]
    assert {r.query for r in rows} == {'ITEMS.GENRES = "Comedy"'}
    # The same query spelled otherwise (spacing, a repeated condition) has the same stable ID.
    same = attribute_segment_id('ITEMS.GENRES  =  "Comedy" AND ITEMS.GENRES = "Comedy"')
    assert {r.segment_id for r in rows} == {same} and same.startswith("attributes-")
    assert summary["errors"] == 1  # the query without a value
    out_lines = [json.loads(x) for f in sorted(lines.glob("*")) if not f.name.startswith(("_", "."))
                 for x in f.read_text().splitlines()]
    assert out_lines[0] == {"input": {"itemAttributes": 'ITEMS.GENRES = "Comedy"'},
                            "output": {"usersList": [u for _, u in expected]}, "error": None}
    assert out_lines[1]["output"] is None and out_lines[1]["error"]


def test_an_empty_request_file_writes_nothing_and_keeps_the_run_date(spark, tmp_path, solution, capsys):
    out = str(tmp_path / "segments")
    source = tmp_path / "items.jsonl"
    source.write_text('{"itemId": "a"}\n')
    args = ["segment", "--solution", solution, "--output", out, "--run-date", str(RUN_DATE)]
    assert cli.main(args + ["--input", str(source)]) == 0
    before = sorted(tuple(r) for r in spark.read.format("delta").load(out).collect())
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n")
    assert cli.main(args + ["--input", str(empty)]) == 1
    assert "no request line in it" in capsys.readouterr().err
    assert sorted(tuple(r) for r in spark.read.format("delta").load(out).collect()) == before
    assert cli.main(args + ["--num-results", "3", "--fraction", "0.5"]) == 2
