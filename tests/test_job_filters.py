"""``--filter`` in ``rank``, ``related`` (CurrentItem) and ``segment`` (UserID), and ``--filter-name``.

Expectations are computed by hand from the factors and attributes below (the factors of
tests/test_recommend.py: u1 = [1, 0], u2 = [0, 1], u3 = [1, 1], u4 = [2, -1]; a, b = [1, 0],
c = [0, 2], d = [0.5, 0.5], e = [-1, 1.5]).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest

from batchrec import registry
from batchrec.commands import rank, related, segment, train
from batchrec.config import SegmentSettings, Settings, ValidationSettings
from batchrec.errors import UsageError
from batchrec.filters import FilterError
from batchrec.recipes import TrainedModel
from cli_summary import run
from test_recommend import artifacts

RUN_DATE = dt.date(2026, 11, 22)
NOW = 1_700_000_000
GENRES = {"a": "Comedy|Drama", "b": "Drama", "c": "Action", "d": "Comedy", "e": "Action|Comedy"}
TIERS = {"u1": "gold", "u2": "silver", "u3": "gold", "u4": "bronze"}


@pytest.fixture(scope="module")
def als(spark, tmp_path_factory):
    """A user-personalization version with the hand-made factors, items and users recorded."""
    root = tmp_path_factory.mktemp("job-filters")
    interactions = root / "interactions.csv"
    interactions.write_text(f"USER_ID,ITEM_ID,TIMESTAMP\nu1,a,{NOW}\nu3,c,{NOW}\n")
    items = root / "items.csv"
    items.write_text("ITEM_ID,GENRES\n" + "".join(f"{i},{g}\n" for i, g in GENRES.items()))
    users = root / "users.csv"
    users.write_text("USER_ID,TIER\n" + "".join(f"{u},{t}\n" for u, t in TIERS.items()))
    path = str(root / "solution")
    model = TrainedModel(recipe="user-personalization", params={}, artifacts=artifacts(spark), stats={})
    registry.save_version(spark, path, model, {"datasets": {
        "interactions": str(interactions), "items": str(items), "users": str(users), "format": "csv"}})
    return {"root": root, "solution": path}


def read(spark, path, key, value):
    rows = sorted((r[key], r["rank"], r[value]) for r in spark.read.format("delta").load(str(path)).collect())
    out: dict = {}
    for k, position, v in rows:
        out.setdefault(k, []).append(v)
    return out


# --- rank -----------------------------------------------------------------------------------------

def test_rank_drops_rejected_items_and_renumbers_the_rest(spark, tmp_path, als):
    source = tmp_path / "rank.jsonl"
    source.write_text(json.dumps({"userId": "u1", "itemList": ["e", "b", "zz", "a", "c", "d"]}) + "\n"
                      + json.dumps({"userId": "u2", "itemList": ["a", "c", "d", "e"],
                                    "filterValues": {"G": "\"Action\""}}) + "\n")
    out = tmp_path / "ranked"
    summary = rank.run(spark, Settings(), RUN_DATE, solution=als["solution"], output=str(out),
                       input_path=str(source),
                       filter_expression='EXCLUDE ItemID WHERE Items.GENRES IN ("Drama") | '
                                         'EXCLUDE ItemID WHERE Items.GENRES IN ($G)')
    got = {}
    for r in sorted(spark.read.format("delta").load(str(out)).collect(), key=lambda r: (r.user_id, r.rank)):
        got.setdefault(r.user_id, []).append((r.rank, r.item_id))
    # u1 = [1, 0]: a, b (Drama) are gone; d 0.5 > c 0 > e -1; zz (no attributes, unknown) last.
    assert got["u1"] == [(1, "d"), (2, "c"), (3, "e"), (4, "zz")]
    # u2 = [0, 1]: a is Drama; its line's value also drops the Action items c and e.
    assert got["u2"] == [(1, "d")]
    assert summary["filter"].startswith("EXCLUDE ItemID") and summary["errors"] == 0


# --- related --------------------------------------------------------------------------------------

BASKETS = {f"u{n}": items for n, items in enumerate(["ab", "ab", "ab", "abc", "cd", "cd", "cd", "cde", "e", "ab"])}
CATEGORY = {"a": "x", "b": "x", "c": "y", "d": "y", "e": "x"}


@pytest.fixture(scope="module")
def sims(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("related-filters")
    csv = root / "interactions.csv"
    csv.write_text("USER_ID,ITEM_ID,TIMESTAMP\n" + "".join(
        f"{u},{i},{NOW - 60}\n" for u, items in BASKETS.items() for i in items))
    items = root / "items.csv"
    items.write_text("ITEM_ID,CATEGORY\n" + "".join(f"{i},{c}\n" for i, c in CATEGORY.items()))
    settings = Settings(validation=ValidationSettings(min_interactions=1, min_users_with_two_interactions=1))
    solution = str(root / "sims")
    train.run(spark, settings, dt.date.fromtimestamp(NOW), interactions=str(csv), recipe="sims",
              solution=solution,
              params=(("min_cointeraction_count", 1), ("min_user_history_length_percentile", 0.0),
                      ("max_user_history_length_percentile", 1.0),
                      ("min_item_interaction_count_percentile", 0.0)))
    return {"root": root, "solution": solution, "items": str(items), "settings": settings}


def test_related_with_current_item_keeps_other_categories_and_backfills_within_the_filter(spark, tmp_path, sims):
    source = tmp_path / "items.jsonl"
    source.write_text('{"itemId": "a"}\n{"itemId": "c"}\n')
    settings = dataclasses.replace(sims["settings"], recommend=dataclasses.replace(
        sims["settings"].recommend, num_results=3))
    plain, filtered = tmp_path / "plain", tmp_path / "filtered"
    related.run(spark, settings, dt.date.fromtimestamp(NOW), solution=sims["solution"], output=str(plain),
                input_path=str(source))
    summary = related.run(spark, settings, dt.date.fromtimestamp(NOW), solution=sims["solution"],
                          output=str(filtered), input_path=str(source), items=sims["items"],
                          filter_expression="EXCLUDE ItemID WHERE Items.CATEGORY IN (CurrentItem.CATEGORY)")
    before = {k: v for k, v in read(spark, plain, "item_id", "related_item_id").items()}
    after = read(spark, filtered, "item_id", "related_item_id")
    reasons = {(r.item_id, r.related_item_id): r.reason for r in spark.read.format("delta").load(str(filtered)).collect()}
    assert before["a"][:2] == ["b", "c"]  # the unfiltered neighbours of a: b (x) first
    # a is in x: b and e go; c (model) then d, the only other popular item outside x.
    assert after["a"] == ["c", "d"]
    assert reasons[("a", "c")] == "model" and reasons[("a", "d")] == "popular"
    # c is in y: d goes; its x neighbours stay and popular x items fill the list.
    assert all(CATEGORY[i] != "y" for i in after["c"]) and len(after["c"]) == 3
    assert summary["items"] == 2 and summary["errors"] == 0


# --- segment --------------------------------------------------------------------------------------

def test_segment_user_filters_apply_before_the_cut_with_per_line_values(spark, tmp_path, als):
    settings = dataclasses.replace(Settings(), segment=SegmentSettings(num_results=2))
    source = tmp_path / "segments.jsonl"
    source.write_text('{"itemId": "a"}\n')
    out = tmp_path / "global"
    segment.run(spark, settings, RUN_DATE, solution=als["solution"], output=str(out), input_path=str(source),
                filter_expression='EXCLUDE UserID WHERE Users.TIER IN ("bronze")')
    # a = [1, 0]: u4 (2.0, bronze) is out; u1 and u3 tie at 1.0 (by ID); unfiltered would be u4, u1.
    assert read(spark, out, "segment_id", "user_id") == {"a": ["u1", "u3"]}

    source.write_text('{"itemId": "a", "filterValues": {"TIER": "\\"silver\\""}}\n'
                      '{"itemId": "c", "filterValues": {"TIER": "\\"gold\\",\\"bronze\\""}}\n')
    out = tmp_path / "per-line"
    summary = segment.run(spark, settings, RUN_DATE, solution=als["solution"], output=str(out),
                          input_path=str(source), filter_expression="INCLUDE UserID WHERE Users.TIER IN ($TIER)")
    # a: only u2 (silver) may be in it; c = [0, 2]: u3 2.0, u1 0.0 (u4 -2.0 is cut), u2 excluded.
    assert read(spark, out, "segment_id", "user_id") == {"a": ["u2"], "c": ["u3", "u1"]}
    assert summary["filter"] == "INCLUDE UserID WHERE Users.TIER IN ($TIER)"


def test_segment_include_sets_shared_by_every_segment_union_with_per_line_ones(spark, tmp_path, als):
    settings = dataclasses.replace(Settings(), segment=SegmentSettings(num_results=2))
    source = tmp_path / "segments.jsonl"
    source.write_text('{"itemId": "c", "filterValues": {"TIER": "\\"silver\\""}}\n'
                      '{"itemId": "a", "filterValues": {"TIER": "\\"bronze\\""}}\n')
    out = tmp_path / "union"
    segment.run(spark, settings, RUN_DATE, solution=als["solution"], output=str(out), input_path=str(source),
                filter_expression='INCLUDE UserID WHERE Users.TIER IN ("gold") | '
                                  'INCLUDE UserID WHERE Users.TIER IN ($TIER)')
    # c = [0, 2], gold or silver (u1, u2, u3): u2 and u3 tie at 2.0; a = [1, 0], gold or bronze
    # (u1, u3, u4): u4 2.0, then u1 and u3 tie at 1.0.
    assert read(spark, out, "segment_id", "user_id") == {"a": ["u4", "u1"], "c": ["u2", "u3"]}


def test_segment_refuses_item_filters_before_spark_work(spark, tmp_path, als):
    with pytest.raises(FilterError, match="UserID"):
        segment.run(spark, Settings(), RUN_DATE, solution=als["solution"], output=str(tmp_path / "o"),
                    filter_expression='EXCLUDE ItemID WHERE Items.GENRES IN ("Drama")')
    assert not (tmp_path / "o").exists()


# --- named filters --------------------------------------------------------------------------------

def test_filter_name_reads_the_configuration_and_unknown_names_exit_2(spark, tmp_path, capsys, als):
    config = tmp_path / "filters.toml"
    config.write_text("[filters.named]\nno_drama = 'EXCLUDE ItemID WHERE Items.GENRES IN (\"Drama\")'\n")
    source = tmp_path / "rank.jsonl"
    source.write_text(json.dumps({"userId": "u1", "itemList": ["a", "b", "c", "d"]}) + "\n")
    common = ["--master", "local[2]", "--run-date", RUN_DATE.isoformat(), "--config", config,
              "--solution", als["solution"], "--input", source]
    code, summary, err = run(capsys, "rank", *common, "--output", tmp_path / "out", "--filter-name", "no_drama")
    assert code == 0, err
    assert summary["filter"] == 'EXCLUDE ItemID WHERE Items.GENRES IN ("Drama")'
    assert [r.item_id for r in sorted(spark.read.format("delta").load(str(tmp_path / "out")).collect(),
                                      key=lambda r: r.rank)] == ["d", "c"]
    code, _, err = run(capsys, "rank", *common, "--output", tmp_path / "o2", "--filter-name", "nope")
    assert code == 2 and "--filter-name 'nope': no such filter in [filters.named] (no_drama)" in err
    code, _, err = run(capsys, "rank", *common, "--output", tmp_path / "o3", "--filter-name", "no_drama",
                       "--filter", "EXCLUDE ItemID WHERE Items.GENRES IN (\"x\")")
    assert code == 2 and "--filter and --filter-name both given" in err
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()


def test_a_named_filter_that_does_not_parse_is_a_configuration_error(tmp_path):
    from batchrec.config import load_settings
    from batchrec.errors import ConfigError

    config = tmp_path / "bad.toml"
    config.write_text("[filters.named]\nbroken = 'EXCLUDE ItemID WHERE'\n")
    with pytest.raises(ConfigError, match=r"filters.named.*'broken' does not parse"):
        load_settings(config_file=str(config))


def test_filter_values_without_a_filter_is_a_usage_error():
    from batchrec.batch.eligibility import job_filter_options
    from batchrec.filters import RECOMMEND

    with pytest.raises(UsageError, match="--filter-values without --filter"):
        job_filter_options(Settings().filters, RECOMMEND, None, '{"G": "\\"x\\""}')


def test_dataset_options_no_job_or_filter_reads_are_warned_about(capsys):
    from batchrec.cli import _check_filter

    options = {"filter_expression": None, "filter_values": None, "filter_name": None, "input_path": "in.jsonl",
               "interactions": "i.csv", "items": "items.csv", "users": "users.csv"}
    _check_filter("RANK", options)(Settings())
    err = capsys.readouterr().err
    assert all(f"--{kind} {path} is not read" in err for kind, path in
               (("interactions", "i.csv"), ("items", "items.csv"), ("users", "users.csv")))
    options["filter_expression"] = 'EXCLUDE ItemID WHERE Items.GENRES IN ("Drama")'
    _check_filter("RECOMMEND", options, ("interactions",))(Settings())
    err = capsys.readouterr().err
    assert "--users users.csv is not read" in err and "--items" not in err and "--interactions" not in err
