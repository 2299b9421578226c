"""Delta sink (idempotent re-runs, delta-rs readable) and Personalize JSON lines sink."""

from __future__ import annotations

import datetime as dt
import json

from batchrec.columns import USER_ID
from batchrec.batch import inputs
from batchrec.sinks import delta, jsonl

RECS_SCHEMA = "USER_ID string, rank int, ITEM_ID string, score double, reason string"


def recs(spark, rows):
    return spark.createDataFrame(rows, RECS_SCHEMA)


def test_rerun_of_a_run_date_replaces_only_that_run(spark, tmp_path):
    path = str(tmp_path / "recs")
    day1, day2 = dt.date(2026, 11, 21), dt.date(2026, 11, 22)
    first = recs(spark, [("u1", 1, "a", 0.5, "model"), ("u1", 2, "b", None, "popular")])
    assert delta.write_run(first, path, day1, "sol", "v1", "user-personalization") == 2
    assert delta.write_run(first, path, day2, "sol", "v1", "user-personalization") == 2
    assert delta.write_run(first, path, day2, "other", "v9", "popularity-count") == 2
    again = recs(spark, [("u1", 1, "c", 0.9, "model"), ("u2", 1, "a", 0.1, "model")])
    assert delta.write_run(again, path, day2, "sol", "v2", "user-personalization") == 2
    assert delta.write_run(again, path, day2, "sol", "v2", "user-personalization") == 2
    table = spark.read.format("delta").load(path)
    rows = sorted(tuple(r) for r in table.collect())
    assert rows == [
        (day1, "sol", "v1", "user-personalization", "u1", 1, "a", 0.5, "model"),
        (day1, "sol", "v1", "user-personalization", "u1", 2, "b", None, "popular"),
        (day2, "other", "v9", "popularity-count", "u1", 1, "a", 0.5, "model"),
        (day2, "other", "v9", "popularity-count", "u1", 2, "b", None, "popular"),
        (day2, "sol", "v2", "user-personalization", "u1", 1, "c", 0.9, "model"),
        (day2, "sol", "v2", "user-personalization", "u2", 1, "a", 0.1, "model"),
    ]
    assert table.schema.simpleString() == (
        "struct<run_date:date,solution:string,solution_version:string,recipe:string,user_id:string,"
        "rank:int,item_id:string,score:double,reason:string>")

    from deltalake import DeltaTable

    arrow = DeltaTable(path).to_pyarrow_table()
    assert arrow.num_rows == 6
    assert sorted(arrow.column("item_id").to_pylist()) == ["a", "a", "a", "b", "b", "c"]
    assert DeltaTable(path).metadata().partition_columns == ["run_date"]


def test_jsonl_lines_follow_the_personalize_batch_output_format(spark, tmp_path):
    requests = spark.createDataFrame(
        [("f", 0, 1, '{"userId": "u1", "filterValues": {"G": "\\"x\\""}}', "u1", None),
         ("f", 1, 2, "garbage", None, "line 2 of f: not a JSON object"),
         ("f", 2, 3, ' {"userId": "u9"} ', "u9", None)],
        "_file string, _position long, _line long, _raw string, USER_ID string, error string")
    results = recs(spark, [("u1", 2, "b", None, "popular"), ("u1", 1, "a", 0.25, "model")])
    out = tmp_path / "out"
    out.mkdir()
    (out / "part-00000-old-c000.txt").write_text("from an earlier run\n")  # an earlier version's output
    assert jsonl.write_lines(jsonl.recommendation_lines(requests, results, with_scores=True), str(out)) == ["f.out"]
    assert sorted(p.name for p in out.iterdir()) == ["f.out"]
    lines = (out / "f.out").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"input": {"userId": "u1", "filterValues": {"G": '"x"'}},
         "output": {"recommendedItems": ["a", "b"], "scores": [0.25, None]}, "error": None},
        {"input": "garbage", "output": None, "error": "line 2 of f: not a JSON object"},
        {"input": {"userId": "u9"}, "output": {"recommendedItems": [], "scores": []}, "error": None},
    ]
    assert not (out / "part-00000-old-c000.txt").exists()  # the folder was replaced as a whole
    assert not list(tmp_path.glob("out.tmp-*")) and not list(tmp_path.glob("out.old-*"))

    popular = jsonl.recommendation_lines(requests.limit(1), results, with_scores=False)
    line = json.loads(popular.select(jsonl.VALUE).first()[0])
    assert line["output"] == {"recommendedItems": ["a", "b"]}  # no scores, as in Personalize
    assert USER_ID in popular.columns and inputs.POSITION in popular.columns
