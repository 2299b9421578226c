"""``batchrec related`` on the runner: a sims model's neighbours, popular items for unknown items,
Personalize JSON lines without scores."""

from __future__ import annotations

import datetime as dt
import json

from batchrec.commands import related, train
from batchrec.config import Settings, ValidationSettings

RUN_DATE = dt.date(2026, 1, 10)
END = int(dt.datetime(2026, 1, 10, tzinfo=dt.timezone.utc).timestamp())
# Every user who has a also has b; c goes with d; e is on its own.
BASKETS = {f"u{n}": items for n, items in enumerate(
    ["ab", "ab", "ab", "abc", "cd", "cd", "cd", "cde", "e", "ab"])}


def test_related_items_come_from_co_occurrence_and_unknown_items_get_popular_ones(spark, tmp_path):
    csv = tmp_path / "interactions.csv"
    csv.write_text("USER_ID,ITEM_ID,TIMESTAMP\n" + "".join(
        f"{u},{i},{END - 60}\n" for u, items in BASKETS.items() for i in items))
    settings = Settings(validation=ValidationSettings(min_interactions=1, min_users_with_two_interactions=1))
    solution = str(tmp_path / "sims")
    train.run(spark, settings, RUN_DATE, interactions=str(csv), recipe="sims", solution=solution,
              params=(("min_cointeraction_count", 1), ("min_user_history_length_percentile", 0.0),
                      ("max_user_history_length_percentile", 1.0),
                      ("min_item_interaction_count_percentile", 0.0)))
    source = tmp_path / "items.jsonl"
    source.write_text('{"itemId": "a"}\n{"itemId": "nope"}\n')
    out, lines = str(tmp_path / "related"), tmp_path / "lines"
    summary = related.run(spark, settings, RUN_DATE, solution=solution, output=out, jsonl=str(lines),
                          input_path=str(source))
    table = spark.read.format("delta").load(out)
    assert table.columns == ["run_date", "solution", "solution_version", "recipe", "item_id", "rank",
                             "related_item_id", "score", "reason"]
    rows = sorted((r.item_id, r.rank, r.related_item_id, r.reason) for r in table.collect())
    by_item = {}
    for item, rank, other, reason in rows:
        by_item.setdefault(item, []).append((other, reason))
    # a co-occurs with b (5 users) far more than with c (1 user); it is never its own neighbour.
    assert by_item["a"][0] == ("b", "model") and "a" not in [o for o, _ in by_item["a"]]
    assert [o for o, why in by_item["a"] if why == "model"] == ["b", "c"]
    # An unknown item gets popular items only: a, b and c (5 users each, by ID), then d (4), e (2).
    assert by_item["nope"][:3] == [("a", "popular"), ("b", "popular"), ("c", "popular")]
    assert summary["backfilled_items"] >= 1 and summary["items"] == 2
    assert sorted(p.name for p in lines.iterdir()) == ["items.jsonl.out"]
    got = [json.loads(x) for x in (lines / "items.jsonl.out").read_text().splitlines()]
    assert got[0]["input"] == {"itemId": "a"} and got[0]["error"] is None
    assert got[0]["output"]["recommendedItems"][:2] == ["b", "c"] and "scores" not in got[0]["output"]
