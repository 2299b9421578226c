"""``batchrec versions list|describe|prune``: prune never removes a version in use (pinned, or what
``latest`` resolves to for the run date or a later one), and leaves incomplete folders alone."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import random

import pytest

from batchrec import registry
from batchrec.cli import main
from batchrec.errors import UsageError
from batchrec.recipes import TrainedModel

COMMON = ["--master", "local[2]", "--log-level", "WARNING"]


# --- the plan: a pure function ------------------------------------------------------------------

def test_prune_keeps_the_newest_the_pinned_and_what_latest_needs():
    dated = [("2026-10-01", "v0"), ("2026-11-01", "v1"), ("2026-11-02", "v2"), ("2026-11-03", "v3"),
             ("2026-10-15", "v4")]  # v4: a backfill trained last, for an old run date
    plan = registry.prune_plan(dated, keep=1, pins=["v1"], run_date=dt.date(2026, 11, 2))
    assert plan.remove == ["v0"]
    assert plan.keep == {"v4": ["one of the newest 1"], "v3": ["latest for run date 2026-11-03"],
                         "v2": ["latest for run date 2026-11-02"], "v1": ["pinned"]}
    plan = registry.prune_plan(dated, keep=2, run_date=dt.date(2026, 12, 1))
    assert plan.remove == ["v2", "v1", "v0"] and set(plan.keep) == {"v4", "v3"}


def test_prune_refuses_a_bad_keep_and_an_unknown_pin():
    with pytest.raises(UsageError, match="keep at least 1"):
        registry.prune_plan([("", "v1")], keep=0)
    with pytest.raises(UsageError, match="--pin v9: not a complete version"):
        registry.prune_plan([("", "v1")], keep=1, pins=["v9"])


def test_prune_never_removes_a_version_in_use_whatever_the_versions():
    rng = random.Random(7)
    dates = [None] + [f"2026-11-{d:02d}" for d in range(1, 11)]
    for _ in range(300):
        n = rng.randint(1, 8)
        dated = [(rng.choice(dates) or "", f"v{i}") for i in range(n)]
        keep, pins = rng.randint(1, 3), rng.sample([v for _, v in dated], rng.randint(0, min(2, n)))
        as_of = dt.date(2026, 11, rng.randint(1, 12))
        plan = registry.prune_plan(dated, keep, pins, as_of)
        kept = [(d, v) for d, v in dated if v not in plan.remove]
        assert set(plan.remove).isdisjoint(pins)
        assert sorted(v for _, v in dated)[-keep:] == sorted(v for _, v in kept)[-keep:]
        # latest resolves to the same version before and after, for the run date and every later one
        for day in itertools.chain([as_of], (dt.date.fromisoformat(d) for d, _ in dated if d)):
            if day >= as_of:
                assert registry.pick_latest(kept, day) == registry.pick_latest(dated, day)


# --- the command --------------------------------------------------------------------------------

@pytest.fixture()
def solution(spark, tmp_path):
    """Versions v0..v4 as in the first test (a popularity model each), and one incomplete folder."""
    path = str(tmp_path / "solution")
    ids = {}
    for name, run_date in (("v0", "2026-10-01"), ("v1", "2026-11-01"), ("v2", "2026-11-02"),
                           ("v3", "2026-11-03"), ("v4", "2026-10-15")):
        artifacts = {
            "user_map": spark.createDataFrame([("u1", 0)], "USER_ID string, user_idx int"),
            "popular_items": spark.createDataFrame([(f"i-{name}", 1.0, 1)], "ITEM_ID string, score double, rank int"),
        }
        model = TrainedModel("popularity-count", {"event_type": ""}, artifacts, {"interactions": 1})
        ids[name] = registry.save_version(spark, path, model, {"run_date": run_date, "datasets": {},
                                                                "metrics": {"coverage": 0.5}}).version
    incomplete = tmp_path / "solution" / "versions" / "29991231T000000000Z-dead"
    (incomplete / "artifacts").mkdir(parents=True)
    return path, ids, incomplete


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_versions_list_and_describe(spark, capsys, solution):
    path, ids, incomplete = solution
    code, out, _ = cli(capsys, "versions", "list", *COMMON, "--solution", path, "--run-date", "2026-11-02", "--json")
    assert code == 0
    rows = json.loads(out.strip().splitlines()[-1])
    assert [r["version"] for r in rows] == sorted(ids.values()) + [incomplete.name]
    by_id = {r["version"]: r for r in rows}
    assert by_id[ids["v2"]]["latest"] and sum(r["latest"] for r in rows) == 1
    assert by_id[incomplete.name]["status"] == "incomplete" and by_id[ids["v0"]]["status"] == "complete"
    assert by_id[ids["v4"]]["run_date"] == "2026-10-15" and by_id[ids["v4"]]["recipe"] == "popularity-count"
    assert all(r["size_bytes"] > 0 for r in rows if r["status"] == "complete")

    code, out, _ = cli(capsys, "versions", "list", *COMMON, "--solution", path, "--run-date", "2026-11-02")
    assert code == 0 and "latest" in out and "incomplete" in out and ids["v3"] in out

    code, out, _ = cli(capsys, "versions", "describe", *COMMON, "--solution", path, ids["v1"])
    described = json.loads(out)
    assert described["version"] == ids["v1"] and described["run_date"] == "2026-11-01"
    assert described["recipe"] == "popularity-count" and described["params"] == {"event_type": ""}
    assert described["metrics"] == {"coverage": 0.5} and described["data_stats"] == {"interactions": 1}
    assert described["size_bytes"] > 0 and described["artifacts"]["popular_items"]["rows"] == 1

    code, _, err = cli(capsys, "versions", "describe", *COMMON, "--solution", path, "nope")
    assert code == 1 and "solution version 'nope' not found" in err


def test_versions_prune_never_removes_a_version_in_use(spark, capsys, solution):
    path, ids, incomplete = solution
    before = registry.latest_version(spark, path, dt.date(2026, 11, 2))
    args = ["versions", "prune", *COMMON, "--solution", path, "--keep", "1", "--pin", ids["v1"],
            "--run-date", "2026-11-02"]
    code, out, _ = cli(capsys, *args, "--dry-run")
    assert code == 0 and f"would remove {ids['v0']}" in out
    assert registry.list_versions(spark, path) == sorted(ids.values())  # a dry run removes nothing

    code, out, _ = cli(capsys, *args)
    assert code == 0 and f"removed {ids['v0']}" in out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["removed"] == [ids["v0"]] and summary["bytes_freed"] > 0
    assert summary["kept"][ids["v1"]] == ["pinned"]
    assert summary["kept"][ids["v2"]] == ["latest for run date 2026-11-02"]
    assert summary["incomplete"] == [incomplete.name] and incomplete.is_dir()
    assert registry.list_versions(spark, path) == sorted(ids[v] for v in ("v1", "v2", "v3", "v4"))
    assert registry.latest_version(spark, path, dt.date(2026, 11, 2)) == before
    assert registry.load_version(spark, path, ids["v1"]).version == ids["v1"]  # the pin still works

    code, _, err = cli(capsys, "versions", "prune", *COMMON, "--solution", path, "--keep", "1", "--pin", "v9")
    assert code == 2 and "--pin v9: not a complete version" in err
    assert registry.list_versions(spark, path) == sorted(ids[v] for v in ("v1", "v2", "v3", "v4"))
