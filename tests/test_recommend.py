"""recommend_for_users on artifacts built inline: exactness, exclusions, backfill, exploration."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from batchrec.config import RecommendSettings
from batchrec.errors import UsageError
from batchrec.scoring.recommend import recommend_for_users, seen_items

DAY = 86400
NOW = 1_700_000_000
USERS = {"u1": [1.0, 0.0], "u2": [0.0, 1.0], "u3": [1.0, 1.0], "u4": [2.0, -1.0]}
# item_idx deliberately not in ID order: ties must still go to the smaller ID.
ITEMS = {"a": (3, [1.0, 0.0]), "b": (0, [1.0, 0.0]), "c": (2, [0.0, 2.0]), "d": (1, [0.5, 0.5]),
         "e": (4, [-1.0, 1.5])}
POPULAR = ["c", "x", "a", "y", "b"]  # x and y have no factors (outside the model)


def artifacts(spark, recipe_lists=None):
    users = sorted(USERS)
    out = {
        "user_map": spark.createDataFrame([(u, i) for i, u in enumerate(users)], "USER_ID string, user_idx int"),
        "user_factors": spark.createDataFrame([(i, USERS[u]) for i, u in enumerate(users)],
                                              "user_idx int, features array<float>"),
        "item_map": spark.createDataFrame([(k, v[0]) for k, v in ITEMS.items()], "ITEM_ID string, item_idx int"),
        "item_factors": spark.createDataFrame([(v[0], v[1]) for v in ITEMS.values()],
                                              "item_idx int, features array<float>"),
        "popular_items": spark.createDataFrame([(k, 10.0 - r, r + 1) for r, k in enumerate(POPULAR)],
                                               "ITEM_ID string, score double, rank int"),
        "item_stats": spark.createDataFrame(
            # e is two days old and unseen; the others are old.
            [(k, v[0], 0 if k == "e" else 50, NOW - 100 * DAY, NOW - 2 * DAY if k == "e" else None)
             for k, v in ITEMS.items()],
            "ITEM_ID string, item_idx int, n_interactions long, first_timestamp long, creation_timestamp long"),
    }
    return out


def brute_force(users, seen, n):
    """Expected (USER_ID, rank, ITEM_ID, score, reason) rows from plain Python."""
    rows = []
    for user in users:
        got = []
        if user in USERS:
            scored = sorted((-float(np.dot(USERS[user], vec)), item) for item, (_, vec) in ITEMS.items()
                            if item not in seen.get(user, ()))
            got = [(item, -neg, "model") for neg, item in scored[:n]]
        listed = {item for item, _, _ in got} | set(seen.get(user, ()))
        for item in POPULAR:
            if len(got) < n and item not in listed and (user not in USERS or item not in ITEMS):
                got.append((item, None, "popular"))
        rows += [(user, r + 1, item, score, reason) for r, (item, score, reason) in enumerate(got)]
    return sorted(rows)


def run(spark, users, seen, n, settings=RecommendSettings(), recipe="user-personalization", arts=None):
    user_df = spark.createDataFrame([(u,) for u in users], "USER_ID string")
    seen_df = (spark.createDataFrame([(u, i) for u, items in seen.items() for i in items],
                                     "USER_ID string, ITEM_ID string") if seen is not None else None)
    out = recommend_for_users(spark, recipe, arts or artifacts(spark), user_df, seen_df, n, settings,
                              reference_time=NOW)
    return sorted(tuple(r) for r in out.collect())


def test_user_personalization_matches_brute_force_with_exclusions_and_backfill(spark):
    seen = {"u1": ["a"], "u3": ["c", "x"], "u4": ["a", "b", "c", "d"], "new": ["c"]}
    users = ["u1", "u2", "u3", "u4", "new", "u1"]
    got = run(spark, users, seen, 3)
    assert got == brute_force(set(users), seen, 3)
    # u4 has one unseen model item (e); the list continues with popular items outside the model.
    assert [r for r in got if r[0] == "u4"] == [("u4", 1, "e", -3.5, "model"), ("u4", 2, "x", None, "popular"),
                                               ("u4", 3, "y", None, "popular")]
    # The unknown user gets popular items minus what they have seen, without scores.
    assert [r for r in got if r[0] == "new"] == [("new", 1, "x", None, "popular"), ("new", 2, "a", None, "popular"),
                                                ("new", 3, "y", None, "popular")]
    # Ties: a, b and d all score 1 for u3 (c is seen): smaller ID first, whatever the item_idx.
    assert [r[2] for r in got if r[0] == "u3"] == ["a", "b", "d"]


def test_results_are_deterministic_and_exclusion_can_be_switched_off(spark):
    seen = {"u1": ["b", "a"]}
    first = run(spark, ["u1", "u2"], seen, 2)
    assert first == run(spark, ["u1", "u2"], seen, 2)
    assert [r[2] for r in first if r[0] == "u1"] == ["d", "c"]
    kept = run(spark, ["u1"], seen, 2, RecommendSettings(exclude_seen=False))
    assert kept == [("u1", 1, "a", 1.0, "model"), ("u1", 2, "b", 1.0, "model")]


def test_seen_items_only_counts_the_listed_event_types_case_insensitively(spark):
    interactions = spark.createDataFrame(
        [("u1", "a", "Purchase"), ("u1", "b", "click"), ("u1", "c", None)],
        "USER_ID string, ITEM_ID string, EVENT_TYPE string")
    got = sorted(tuple(r) for r in seen_items(interactions, ("purchase",)).collect())
    assert got == [("u1", "a")]
    assert len(seen_items(interactions).collect()) == 3


def test_exploration_weight_zero_changes_nothing_and_a_positive_weight_explores_young_items(spark):
    arts = artifacts(spark)
    plain = run(spark, ["u1", "u3"], {}, 2, arts=arts)
    zero = run(spark, ["u1", "u3"], {}, 2, RecommendSettings(exploration_weight=0.0,
                                                                exploration_item_age_cut_off=5.0), arts=arts)
    assert zero == plain
    explored = run(spark, ["u1", "u3"], {}, 2, RecommendSettings(exploration_weight=1.0,
                                                                    exploration_item_age_cut_off=5.0), arts=arts)
    # e (2 days old, never seen) gets weight * scale / (1 + 0) with scale = median user norm (1)
    # x median item norm (1) = 1: for u1 e goes from -1 to 0, still outside the top 2 (a, b at 1);
    # for u3 from 0.5 to 1.5, above a, b, d (1), below c (2), and only thanks to the bonus.
    u1 = [r for r in explored if r[0] == "u1"]
    u3 = [r for r in explored if r[0] == "u3"]
    assert [(r[2], r[4]) for r in u1] == [("a", "model"), ("b", "model")]
    assert [(r[2], r[4]) for r in u3] == [("c", "model"), ("e", "exploration")]
    assert u3[1][3] == pytest.approx(1.5)
    # A cut-off shorter than e's age explores nothing.
    old = run(spark, ["u3"], {}, 2, RecommendSettings(exploration_weight=1.0, exploration_item_age_cut_off=1.0),
              arts=arts)
    assert old == [r for r in plain if r[0] == "u3"]


def test_popularity_and_trending_recipes_return_the_list_minus_seen_without_scores(spark):
    arts = artifacts(spark)
    arts["trending_items"] = spark.createDataFrame([("y", 5.0, 1), ("c", 4.0, 2)],
                                                   "ITEM_ID string, score double, rank int")
    pop = run(spark, ["u1", "zz"], {"u1": ["c"]}, 2, recipe="popularity-count", arts=arts)
    assert pop == [("u1", 1, "x", None, "popular"), ("u1", 2, "a", None, "popular"),
                   ("zz", 1, "c", None, "popular"), ("zz", 2, "x", None, "popular")]
    trend = run(spark, ["u1"], {"u1": ["c"]}, 3, recipe="trending-now", arts=arts)
    assert trend == [("u1", 1, "y", None, "trending"), ("u1", 2, "x", None, "popular"),
                     ("u1", 3, "a", None, "popular")]


@pytest.mark.parametrize("n", [0, 501])
def test_num_results_out_of_range_is_a_usage_error(spark, n):
    with pytest.raises(UsageError, match=rf"num_results = {n}; expected an integer from 1 to 500"):
        run(spark, ["u1"], None, n)


def test_exploration_weight_out_of_range_is_a_usage_error(spark):
    with pytest.raises(UsageError, match=r"exploration_weight = 1.5; expected a number from 0 to 1"):
        run(spark, ["u1"], None, 2, dataclasses.replace(RecommendSettings(), exploration_weight=1.5))


# --- the recommend command and the CLI, on versions saved through the registry ---------------------

import datetime as dt  # noqa: E402
import json  # noqa: E402

from batchrec import cli, registry  # noqa: E402
from batchrec.commands import recommend as recommend_command  # noqa: E402
from batchrec.config import Settings  # noqa: E402
from batchrec.recipes import TrainedModel  # noqa: E402

RUN_DATE = dt.date(2026, 11, 22)


def saved_version(spark, tmp_path):
    interactions = tmp_path / "interactions.csv"
    interactions.write_text("USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\n"
                            f"u1,a,{NOW},purchase\nu1,b,{NOW},click\nu3,c,{NOW},view\nnew,c,{NOW},view\n")
    solution = str(tmp_path / "solution")
    model = TrainedModel(recipe="user-personalization", params={}, artifacts=artifacts(spark), stats={})
    version = registry.save_version(spark, solution, model,
                                    {"datasets": {"interactions": str(interactions), "format": "csv"}})
    return solution, version


def lines_of(folder):
    """The lines of the one Personalize output file in ``folder`` (nothing else may be there)."""
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 1 and names[0].endswith(".out"), names
    return [json.loads(x) for x in (folder / names[0]).read_text().splitlines()]


def test_recommend_command_writes_delta_and_jsonl_and_reruns_idempotently(spark, tmp_path, capsys):
    solution, version = saved_version(spark, tmp_path)
    source = tmp_path / "users.jsonl"
    source.write_text('{"userId": "u1"}\n{oops\n{"userId": "new", "filterValues": {"G": "\\"x\\""}}\n'
                      '{"userId": "u1"}\n')
    settings = dataclasses.replace(Settings(), recommend=RecommendSettings(
        num_results=2, exclude_event_types=("PURCHASE",)))
    out, lines_dir = str(tmp_path / "recs"), tmp_path / "lines"
    kwargs = dict(solution=solution, output=out, jsonl=str(lines_dir), input_path=str(source))
    summary = recommend_command.run(spark, settings, RUN_DATE, **kwargs)
    assert {k: summary[k] for k in ("users", "rows", "errors", "backfilled_users", "version")} == {
        "users": 2, "rows": 4, "errors": 1, "backfilled_users": 1, "version": version.version}
    key = f"file:{solution}"  # the one canonical spelling of the solution
    assert summary["solution"] == key
    expected = [
        # only purchases count as seen: u1 bought a, so b (clicked) may come back, and the viewed c
        # still heads the popular list of the unknown user "new".
        (RUN_DATE, key, version.version, "user-personalization", "new", 1, "c", None, "popular"),
        (RUN_DATE, key, version.version, "user-personalization", "new", 2, "x", None, "popular"),
        (RUN_DATE, key, version.version, "user-personalization", "u1", 1, "b", 1.0, "model"),
        (RUN_DATE, key, version.version, "user-personalization", "u1", 2, "d", 0.5, "model"),
    ]
    assert sorted(tuple(r) for r in spark.read.format("delta").load(out).collect()) == expected
    got = lines_of(lines_dir)
    assert got[0] == {"input": {"userId": "u1"}, "output": {"recommendedItems": ["b", "d"], "scores": [1.0, 0.5]},
                      "error": None}
    assert got[1]["input"] == "{oops" and got[1]["output"] is None
    assert got[1]["error"].startswith("line 2 of ") and "not a JSON object" in got[1]["error"]
    assert got[2] == {"input": {"userId": "new", "filterValues": {"G": '"x"'}},
                      "output": {"recommendedItems": ["c", "x"], "scores": [None, None]}, "error": None}
    assert got[3] == got[0] and len(got) == 4

    # A re-run of the same run date replaces its rows and its JSON lines (other run dates and
    # solutions are left alone: tests/test_sinks.py).
    assert recommend_command.run(spark, settings, RUN_DATE, **kwargs)["rows"] == 4
    assert sorted(tuple(r) for r in spark.read.format("delta").load(out).collect()) == expected
    assert lines_of(lines_dir) == got


def test_cli_failures_name_what_is_wrong(spark, tmp_path, capsys):
    solution, version = saved_version(spark, tmp_path)
    out = str(tmp_path / "recs")
    missing = str(tmp_path / "nowhere")
    assert cli.main(["recommend", "--solution", missing, "--output", out]) == 1
    assert f"no solution at file:{missing}" in capsys.readouterr().err
    assert cli.main(["recommend", "--solution", solution, "--version", "v0", "--output", out]) == 1
    err = capsys.readouterr().err
    assert "solution version 'v0' not found" in err and version.version in err
    assert cli.main(["recommend", "--solution", solution, "--output", out, "--num-results", "501"]) == 2
    assert "501" in capsys.readouterr().err

    factors = tmp_path / "solution" / "versions" / version.version / "artifacts" / "item_factors"
    part = sorted(factors.glob("*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:20])
    assert cli.main(["recommend", "--solution", solution, "--output", out]) == 1
    err = capsys.readouterr().err
    assert "corrupt artifact file" in err and part.name in err


def test_train_then_recommend_end_to_end(spark, tmp_path, capsys):
    rows = ["USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE"]
    for u in range(30):
        for j in range(6):
            rows.append(f"u{u:02d},i{(u % 5) * 3 + j:02d},{NOW + u * 60 + j},view")
    data = tmp_path / "interactions.csv"
    data.write_text("\n".join(rows) + "\n")
    solution, out, lines_dir = str(tmp_path / "sol"), str(tmp_path / "recs"), tmp_path / "lines"
    assert cli.main(["train", "--recipe", "user-personalization", "--interactions", str(data),
                     "--solution", solution, "--param", "rank=4", "--param", "maxIter=3",
                     "--min-interactions", "10", "--min-users", "2", "--no-evaluate",
                     "--run-date", str(RUN_DATE)]) == 0
    assert cli.main(["recommend", "--solution", solution, "--output", out, "--num-results", "3",
                     "--jsonl", str(lines_dir), "--run-date", str(RUN_DATE)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["users"], summary["rows"], summary["errors"]) == (30, 90, 0)
    recs = spark.read.format("delta").load(out)
    seen = {(r[0], r[1]) for r in (x.split(",")[:2] for x in rows[1:])}
    got = [(r.user_id, r.item_id, r.rank, r.reason) for r in recs.collect()]
    assert not [g for g in got if (g[0], g[1]) in seen]
    assert sorted(r for _, _, r, _ in got) == sorted(list(range(1, 4)) * 30)
    assert {g[3] for g in got} == {"model"}
    lines = lines_of(lines_dir)
    assert [line["input"]["userId"] for line in lines] == [f"u{u:02d}" for u in range(30)]
    assert all(len(line["output"]["recommendedItems"]) == 3 == len(line["output"]["scores"]) for line in lines)
