"""batchrec rank: re-ranking by the user's scores, unknown items last, unknown users by popularity."""

from __future__ import annotations

import datetime as dt
import json

from batchrec import registry
from batchrec.commands import rank
from batchrec.scoring import ranking
from batchrec.config import Settings
from batchrec.recipes import TrainedModel
from batchrec.batch import inputs

USERS = {"u1": [1.0, 0.0], "u2": [0.0, 1.0]}
ITEMS = {"a": [1.0, 0.0], "b": [2.0, 0.0], "c": [0.0, 3.0], "d": [1.0, 0.0]}
POPULAR = ["c", "b", "a"]


def model_artifacts(spark):
    users, items = sorted(USERS), sorted(ITEMS)
    return {
        "user_map": spark.createDataFrame([(u, i) for i, u in enumerate(users)], "USER_ID string, user_idx int"),
        "user_factors": spark.createDataFrame([(i, USERS[u]) for i, u in enumerate(users)],
                                              "user_idx int, features array<float>"),
        "item_map": spark.createDataFrame([(k, i) for i, k in enumerate(items)], "ITEM_ID string, item_idx int"),
        "item_factors": spark.createDataFrame([(i, ITEMS[k]) for i, k in enumerate(items)],
                                              "item_idx int, features array<float>"),
        "popular_items": spark.createDataFrame([(k, 9.0 - r, r + 1) for r, k in enumerate(POPULAR)],
                                               "ITEM_ID string, score double, rank int"),
    }


def test_rank_lists_orders_by_score_then_id_with_unknown_items_last(spark):
    requests = spark.createDataFrame(
        [(0, "u1", ["zz", "c", "d", "b", "a", "yy"]), (1, "u2", ["a", "c"]), (2, "new", ["a", "q", "c", "b"]),
         (3, "u1", [])],
        "_position long, USER_ID string, itemList array<string>")
    rows = ranking.rank_lists("user-personalization", model_artifacts(spark), requests, users_per_batch=2)
    got = sorted(tuple(r) for r in rows.collect())
    assert got == [
        # u1: b=2, then a and d tie at 1 (smaller ID first), c=0; unknown zz, yy last in input order.
        (0, "u1", 1, "b", 2.0, "model"), (0, "u1", 2, "a", 1.0, "model"), (0, "u1", 3, "d", 1.0, "model"),
        (0, "u1", 4, "c", 0.0, "model"), (0, "u1", 5, "zz", None, "unscored"),
        (0, "u1", 6, "yy", None, "unscored"),
        (1, "u2", 1, "c", 3.0, "model"), (1, "u2", 2, "a", 0.0, "model"),
        # an unknown user: popularity order (c, b, a), then the rest in input order.
        (2, "new", 1, "c", None, "popular"), (2, "new", 2, "b", None, "popular"),
        (2, "new", 3, "a", None, "popular"), (2, "new", 4, "q", None, "unscored"),
    ]


def save(spark, solution, arts, recipe="user-personalization"):
    model = TrainedModel(recipe=recipe, params={}, artifacts=arts, stats={})
    return registry.save_version(spark, solution, model, {"datasets": {}})


def test_rank_command_writes_delta_and_personalize_lines_and_counts_bad_lines(spark, tmp_path, capsys):
    solution = str(tmp_path / "solution")
    save(spark, solution, model_artifacts(spark))
    source = tmp_path / "ranking.jsonl"
    source.write_text('{"userId": "u2", "itemList": ["a", "x", "c"]}\n{"userId": "u1"}\n'
                      '{"userId": "u1", "itemList": ["a", "b"], "filterValues": {}}\n')
    out, lines_dir = str(tmp_path / "ranked"), tmp_path / "lines"
    summary = rank.run(spark, Settings(), dt.date(2026, 11, 22), solution=solution, output=out,
                       jsonl=str(lines_dir), input_path=str(source))
    assert (summary["requests"], summary["rows"], summary["errors"]) == (2, 5, 1)
    table = sorted((r.user_id, r.rank, r.item_id, r.reason)
                   for r in spark.read.format("delta").load(out).collect())
    assert table == [("u1", 1, "b", "model"), ("u1", 2, "a", "model"),
                     ("u2", 1, "c", "model"), ("u2", 2, "a", "model"), ("u2", 3, "x", "unscored")]
    assert sorted(p.name for p in lines_dir.iterdir()) == ["ranking.jsonl.out"]
    got = [json.loads(x) for x in (lines_dir / "ranking.jsonl.out").read_text().splitlines()]
    assert got[0] == {"input": {"userId": "u2", "itemList": ["a", "x", "c"]},
                      "output": {"recommendedItems": ["c", "a", "x"], "scores": [3.0, 0.0, None]}, "error": None}
    assert got[1]["input"] == '{"userId": "u1"}' and got[1]["output"] is None
    assert got[1]["error"].startswith("line 2 of ") and got[1]["error"].endswith(
        'no "itemList"; expected an array of item IDs')
    assert got[2]["output"] == {"recommendedItems": ["b", "a"], "scores": [2.0, 1.0]}
    assert got[2]["input"]["filterValues"] == {}
    assert inputs.ITEM_LIST == "itemList"
