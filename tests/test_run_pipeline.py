"""``batchrec run PIPELINE.toml``: planning (no Spark), and the whole pipeline on generated data in the
session's Spark: manifest, a failure in the middle and the resume, a no-op re-run, --force, one stage
at a time, --quiet, the location guard across stages, progress lines."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import logging
import os
import time
from pathlib import Path

import pytest

from batchrec import cli, logs, pipeline as P
from batchrec.errors import ConfigError

from dynamo_servers import TEST_CREDENTIALS, start_moto

# Spark's Python workers inherit the JVM's environment, which may start after collection.
for _name, _value in TEST_CREDENTIALS.items():
    os.environ.setdefault(_name, _value)

REPO = Path(__file__).resolve().parents[1]
D = dt.date(2026, 11, 20)
SMALL_SETTINGS = """
[settings.spark]
shuffle_partitions = 4
[settings.validation]
min_interactions = 50
min_users_with_two_interactions = 5
[settings.recommend]
num_results = 5
[settings.segment]
num_results = 4
[settings.dynamodb]
writers = 2
verify_sample = 20
progress_seconds = 0.0
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def plan_of(text: str, tmp_path: Path, run_date: dt.date = D) -> P.Pipeline:
    return P.load(write(tmp_path / "p.toml", text), run_date)


# ------------------------------------------------------------------------------------------------
# planning: no Spark

MINIMAL = """
[pipeline]
runs = "runs"
[datasets]
interactions = "data/interactions"
[solutions.pop]
recipe = "popularity-count"
path = "solutions/pop"
[recommend]
solution = "pop"
output = "out/recs"
jsonl = "out/jsonl/{run_date}"
"""


def test_a_pipeline_without_stages_list_runs_every_configured_stage_in_order(tmp_path):
    plan = plan_of(MINIMAL, tmp_path)
    assert plan.stages == ("validate", "train", "recommend")
    assert plan.batch["recommend"].jsonl == "out/jsonl/2026-11-20"
    assert plan.run_dir == "runs/2026-11-20" and plan.state_path == "runs/2026-11-20/state.json"
    assert plan.validate.report == "runs/2026-11-20/validation.json"
    assert plan.solutions_trained() == ("pop",) and plan.solutions_used() == ("pop",)


def test_the_example_pipeline_is_complete():
    plan = P.load(REPO / "examples" / "pipeline.toml", D)
    assert plan.stages == P.STAGES
    assert plan.export.sources == ("recommend", "related", "segment")
    assert {s.recipe for s in plan.solutions.values()} == {"user-personalization", "sims"}


@pytest.mark.parametrize("change, message", [
    (("[pipeline]", "[pipeline]\nstages = [\"train\", \"validate\"]"), "list them in that order"),
    (("[pipeline]", "[pipeline]\nstages = [\"validate\", \"score\"]"), "unknown stage 'score'"),
    (("[pipeline]", "[pipeline]\nstages = [\"validate\", \"related\"]"), "stage related needs a [related] section"),
    (("[pipeline]", "[pipeline]\nretries = 3"), "unknown key 'retries' in [pipeline]"),
    (("runs = \"runs\"", "runs = 3"), "[pipeline] runs = 3; expected a non-empty string"),
    (("solution = \"pop\"", "solution = \"als\""), "[recommend] solution = 'als': no [solutions.als]"),
    (("recipe = \"popularity-count\"", "recipe = \"sims\""), "a sims model cannot recommend items for a user"),
    (("recipe = \"popularity-count\"", "recipe = \"nope\""), "[solutions.pop] recipe = 'nope'"),
    (("path = \"solutions/pop\"", "path = \"solutions/pop\"\nparams = { rank = 3 }"),
     "[solutions.pop] params: unknown parameter 'rank'"),
    (("path = \"solutions/pop\"", "path = \"solutions/pop\"\nmax_version_age_days = -1"),
     "max_version_age_days = -1; expected a whole number >= 0"),
    (("[recommend]", "[export-dynamodb]\ntable = \"t\"\n[recommend]"), "[export-dynamodb] table 't' is not a DynamoDB table name"),
    (("[recommend]", "[export-dynamodb]\ntable = \"recs\"\nfrom = [\"segment\"]\n[recommend]"),
     "stage 'segment' is not part of this pipeline"),
    (("[recommend]", "[scoring]\nx = 1\n[recommend]"), "unknown section [scoring]"),
])
def test_mistakes_are_config_errors_naming_the_key(tmp_path, change, message):
    old, new = change
    with pytest.raises(ConfigError) as caught:
        plan_of(MINIMAL.replace(old, new, 1), tmp_path)
    assert message in str(caught.value)
    assert str(tmp_path / "p.toml") in str(caught.value)


def test_bad_settings_in_the_pipeline_fail_before_spark_with_the_file_named(tmp_path, capsys):
    path = write(tmp_path / "p.toml", MINIMAL + "[settings.recommend]\nnum_results = 0\n")
    assert cli.main(["run", str(path), "--run-date", "2026-11-20", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: [settings] 'recommend.num_results' = 0; expected a number >= 1" in err


def test_dry_run_prints_the_plan_and_a_missing_file_is_exit_2(tmp_path, capsys):
    assert cli.main(["run", str(REPO / "examples" / "pipeline.toml"), "--run-date", "2026-11-22",
                     "--stage", "train", "--dry-run"]) == 0
    line = json.loads(capsys.readouterr().out.strip())
    assert line["dry_run"] and line["stage"] == "train" and line["run_date"] == "2026-11-22"
    assert list(line["stages"]) == list(P.STAGES)
    assert cli.main(["run", str(tmp_path / "none.toml"), "--dry-run"]) == 2
    assert "pipeline file not found" in capsys.readouterr().err
    path = write(tmp_path / "p.toml", MINIMAL)
    assert cli.main(["run", str(path), "--stage", "segment", "--dry-run"]) == 2
    assert "'segment' is not a stage of" in capsys.readouterr().err


def solution(max_age: int) -> P.Solution:
    return P.Solution(name="s", recipe="popularity-count", path="s", max_version_age_days=max_age)


def test_train_is_due_without_a_version_or_when_the_newest_is_too_old():
    versions = [("v1", "2026-11-10"), ("v2", "2026-11-14"), ("v3", "2026-11-30")]
    assert P.train_due(solution(6), D, [])[0] is True
    # v3 is for a later run date: a backfill of D never uses it; v2 is 6 days old, within 6.
    assert P.train_due(solution(6), D, versions)[:1] == (False,)
    assert P.train_due(solution(6), D, versions)[2] == "v2"
    due, reason, version = P.train_due(solution(5), D, versions)
    assert due and version == "v2" and "6 days old (max_version_age_days = 5)" in reason
    assert P.train_due(solution(0), D, [("v", "2026-11-20")])[0] is False
    assert P.train_due(solution(0), D, [("v", "2026-11-20")], force=True)[0] is True
    assert P.train_due(solution(30), D, [("v", None)])[0] is True  # an undated version: age unknown
    assert P.train_due(solution(30), D, [("v", "2026-11-21")])[0] is True


def test_a_subset_of_the_stages_may_leave_other_sections_configured():
    text = (REPO / "examples" / "pipeline.toml").read_text()
    start = text.index("stages = [")
    end = text.index("]", start) + 1
    path = Path(REPO / "examples" / "pipeline.toml")
    plan = P._parse(P.tomllib.loads(text[:start] + 'stages = ["validate", "train"]' + text[end:]), str(path),
                    str(path), "x", D)
    assert plan.stages == ("validate", "train") and plan.export is None


def test_prerequisites_follow_the_configured_stages(tmp_path):
    plan = plan_of(MINIMAL, tmp_path)
    assert P.prerequisites(plan, "validate") == ()
    assert P.prerequisites(plan, "train") == ("validate",)
    assert P.prerequisites(plan, "recommend") == ("train",)
    only_batch = plan_of(MINIMAL.replace("[pipeline]", "[pipeline]\nstages = [\"recommend\"]"), tmp_path)
    assert P.prerequisites(only_batch, "recommend") == ()


class _Info:
    def __init__(self, stage_id, done, total):
        self.stageId, self.name = stage_id, "save at NativeMethodAccessorImpl.java:0"
        self.numCompletedTasks, self.numTasks = done, total


class _FakeSpark:
    """statusTracker() only: active stage 7 with more tasks done on every poll."""

    def __init__(self):
        self.done = 0
        spark = self

        class Tracker:
            def getActiveStageIds(self):
                return [7]

            def getStageInfo(self, stage_id):
                spark.done = min(spark.done + 2, 10)
                return _Info(stage_id, spark.done, 10)

        class Context:
            def statusTracker(self):
                return Tracker()

        self.sparkContext = Context()


def wait_for(condition, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_heartbeat_logs_tasks_rows_and_time_left_while_a_stage_runs(caplog):
    log = logging.getLogger("batchrec.test.heartbeat")
    with caplog.at_level(logging.INFO, logger="batchrec.test.heartbeat"):
        with logs.heartbeat(log, "train", _FakeSpark(), interval=0.05, rows=lambda: 1234) as beat:
            wait_for(lambda: beat.beats >= 3)
        with logs.heartbeat(log, "quick", None, interval=5.0):
            pass
    lines = [r.getMessage() for r in caplog.records]
    assert beat.beats >= 3 and len(lines) == beat.beats  # the quick stage logged nothing
    assert lines[0].startswith("progress stage=train elapsed=0s tasks=2/10 spark_stage=save rows=1234")
    assert "eta=unknown" in lines[0]
    assert any(" eta=" in line and "(active Spark stage)" in line for line in lines[1:])
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="batchrec.test.heartbeat"):
        with logs.heartbeat(log, "train", None, interval=0.05, expected_seconds=600) as beat:
            wait_for(lambda: beat.beats >= 1)
    assert caplog.records[0].getMessage().endswith("eta=10m00s (previous run: 10m00s)")


def test_line_logger_turns_printed_lines_into_log_lines(caplog):
    log = logging.getLogger("batchrec.test.lines")
    stream = logs.LineLogger(log, "validate: ")
    with caplog.at_level(logging.INFO, logger="batchrec.test.lines"):
        stream.write("a table\nsecond ")
        stream.write("line\n\n")
        stream.write("tail")
        stream.flush()
    assert [r.getMessage() for r in caplog.records] == ["validate: a table", "validate: second line",
                                                       "validate: tail"]


# ------------------------------------------------------------------------------------------------
# the whole pipeline, in the session's Spark


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    server = start_moto(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def data(spark, tmp_path_factory):
    from batchrec.commands import generate
    from batchrec.config import Settings

    root = tmp_path_factory.mktemp("pipeline-data")
    generate.run(spark, Settings(), D, n_users=50, n_items=40, n_interactions=600, output=str(root / "data"), seed=7, span_days=30, clusters=3)
    return root / "data"


def full_pipeline(root: Path, data: Path, moto_url: str, table: str) -> str:
    return f"""
[pipeline]
runs = "{root}/runs"
progress_seconds = 5.0
{SMALL_SETTINGS}
[datasets]
interactions = "{data}/interactions"
format = "csv"
schemas = ["{data}/schemas/interactions.json"]
[validate]
rejects = "{root}/out/rejects"
[solutions.personal]
recipe = "user-personalization"
path = "{root}/solutions/personal"
max_version_age_days = 6
params = {{ rank = 4, maxIter = 2 }}
[solutions.similar]
recipe = "sims"
path = "{root}/solutions/similar"
params = {{ min_cointeraction_count = 1 }}
[recommend]
solution = "personal"
output = "{root}/out/recs"
jsonl = "{root}/out/jsonl/recs/{{run_date}}"
[related]
solution = "similar"
output = "{root}/out/related"
[segment]
solution = "personal"
output = "{root}/out/segments"
input = "{root}/requests/segments.jsonl"
[export-dynamodb]
table = "{table}"
endpoint_url = "{moto_url}"
region = "us-east-1"
"""


class _Captured:
    out = err = ""


@contextlib.contextmanager
def captured_std():
    """stdout and stderr of the body (module fixtures cannot use capsys)."""
    out, err, seen = io.StringIO(), io.StringIO(), _Captured()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield seen
    finally:
        seen.out, seen.err = out.getvalue(), err.getvalue()


def run_cli(path: Path, *args: str) -> int:
    return cli.main(["run", str(path), "--run-date", D.isoformat(), *args])


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def delta_version(path: Path) -> int:
    from deltalake import DeltaTable

    return DeltaTable(str(path)).version()


def rows_of(spark, path: Path, run_date: dt.date = D) -> list:
    from pyspark.sql import functions as F

    return spark.read.format("delta").load(str(path)).where(F.col("run_date") == F.lit(run_date)).collect()


@pytest.fixture(scope="module")
def resumed(spark, data, moto, tmp_path_factory):
    """Run 1 fails at segment (its input file does not exist yet); run 2, once the file exists,
    resumes there and completes. Returns what was observed along the way."""
    root = tmp_path_factory.mktemp("pipeline")
    table = f"pipeline-{int(time.time() * 1000) % 10**8}"
    path = write(root / "nightly.toml", full_pipeline(root, data, moto.url, table))
    run_dir = root / "runs" / D.isoformat()
    seen: dict = {"root": root, "path": path, "run_dir": run_dir, "table": table}

    with captured_std() as first:
        seen["first_code"] = run_cli(path)
    seen["first_err"] = first.err
    seen["state_after_failure"] = read_json(run_dir / "state.json")
    seen["manifest_after_failure"] = (run_dir / "manifest.json").exists()
    seen["success_after_failure"] = (run_dir / "_SUCCESS").exists()
    seen["recs_version"] = delta_version(root / "out" / "recs")
    seen["related_version"] = delta_version(root / "out" / "related")
    seen["solution_versions"] = sorted(p.name for p in (root / "solutions" / "personal" / "versions").iterdir())

    (root / "requests").mkdir()
    (root / "requests" / "segments.jsonl").write_text('{"itemId": "i1"}\n{"itemId": "i2"}\nnot json\n')
    with captured_std() as second:
        seen["second_code"] = run_cli(path)
    seen["second_out"], seen["second_err"] = second.out, second.err
    return seen


@pytest.mark.slow  # whole pipeline runs (minutes)
def test_a_failed_stage_keeps_earlier_outputs_and_records_where_to_resume(resumed):
    assert resumed["first_code"] == 1
    assert "batchrec: error:" in resumed["first_err"] and "segments.jsonl" in resumed["first_err"]
    assert "stage=segment status=failed" in resumed["first_err"]
    stages = resumed["state_after_failure"]["stages"]
    assert {k: v["status"] for k, v in stages.items()} == {
        "validate": "succeeded", "train": "succeeded", "recommend": "succeeded", "related": "succeeded",
        "segment": "failed"}
    assert "segments.jsonl" in stages["segment"]["error"]
    assert not resumed["manifest_after_failure"] and not resumed["success_after_failure"]


@pytest.mark.slow  # whole pipeline runs (minutes)
def test_the_resumed_run_completes_from_the_failed_stage_with_exactly_the_expected_outputs(spark, resumed):
    root, run_dir = resumed["root"], resumed["run_dir"]
    assert resumed["second_code"] == 0, resumed["second_err"][-3000:]
    summary = json.loads(resumed["second_out"].strip())  # stdout holds the summary line only
    assert summary["ran"] == ["segment", "export-dynamodb"] and summary["status"] == "succeeded"
    assert summary["manifest"] == f"{run_dir}/manifest.json"
    assert (run_dir / "_SUCCESS").exists()
    state = read_json(run_dir / "state.json")
    assert {k: v["attempts"] for k, v in state["stages"].items()} == {
        "validate": 1, "train": 1, "recommend": 1, "related": 1, "segment": 2, "export-dynamodb": 1}
    # Nothing completed before the failure was written again.
    assert delta_version(root / "out" / "recs") == resumed["recs_version"]
    assert delta_version(root / "out" / "related") == resumed["related_version"]
    versions = sorted(p.name for p in (root / "solutions" / "personal" / "versions").iterdir())
    assert versions == resumed["solution_versions"] and len(versions) == 1
    # Exactly the expected outputs: one list per user, ranks 1..N once each (N = 5 unless a user has
    # seen nearly everything), no item twice; two segments of 4 users.
    recs = rows_of(spark, root / "out" / "recs")
    by_user: dict = {}
    for r in recs:
        by_user.setdefault(r.user_id, []).append((r.rank, r.item_id))
    assert len(by_user) >= 40
    for entries in by_user.values():
        ranks, items = sorted(r for r, _ in entries), {i for _, i in entries}
        assert ranks == list(range(1, len(ranks) + 1)) and len(ranks) <= 5 and len(items) == len(ranks)
    assert sum(len(e) == 5 for e in by_user.values()) >= 0.9 * len(by_user)
    segments = rows_of(spark, root / "out" / "segments")
    assert {r.segment_id for r in segments} == {"i1", "i2"} and len(segments) == 8
    assert {p.name for p in (root / "out" / "jsonl" / "recs").iterdir()} == {D.isoformat()}


@pytest.mark.slow  # whole pipeline runs (minutes)
def test_the_manifest_records_inputs_versions_outputs_stages_and_rejects(spark, resumed):
    import boto3

    root = resumed["root"]
    m = read_json(resumed["run_dir"] / "manifest.json")
    assert m["run_date"] == D.isoformat() and m["status"] == "succeeded"
    assert m["pipeline"] == str(resumed["path"])
    assert [s["name"] for s in m["stages"]] == list(P.STAGES)
    assert all(s["status"] == "succeeded" and s["seconds"] > 0 for s in m["stages"])
    # Inputs with row counts (the generator's sizes; rows after the run date counted apart).
    assert m["inputs"]["interactions"]["rows"] == 600 and m["inputs"]["interactions"]["rows_valid"] == 600
    assert m["inputs"]["interactions"]["rows_rejected"] == 0
    assert m["inputs"]["segment.input"] == {"path": f"{root}/requests/segments.jsonl", "requests": 2,
                                            "unusable_lines": 1}
    # Versions used: the one trained this run, for this run date.
    versions = [p.name for p in (root / "solutions" / "personal" / "versions").iterdir()]
    assert m["solutions"]["personal"]["version"] == versions[0]
    assert m["solutions"]["personal"]["trained"] and m["solutions"]["personal"]["version_run_date"] == D.isoformat()
    assert m["outputs"]["recommend"]["solution_version"] == versions[0]
    assert m["solutions"]["similar"]["recipe"] == "sims"
    # Outputs with row counts equal to what the tables hold for the run date.
    assert m["outputs"]["recommend"]["rows"] == len(rows_of(spark, root / "out" / "recs"))
    assert m["outputs"]["related"]["rows"] == len(rows_of(spark, root / "out" / "related"))
    assert m["outputs"]["segment"]["rows"] == 8
    client = boto3.client("dynamodb", endpoint_url=resumed_url(resumed), region_name="us-east-1")
    assert m["outputs"]["export-dynamodb"]["items"] == client.describe_table(
        TableName=resumed["table"])["Table"]["ItemCount"] or _scan_count(client, resumed["table"])
    assert set(m["outputs"]["export-dynamodb"]["by_source"]) == {"recommend", "related", "segment"}
    # Rejects: the validation's (none in generated data) and the unusable request line.
    assert m["rejects"]["rows"] == 0 and m["rejects"]["path"] == f"{root}/out/rejects"
    assert m["rejects"]["unusable_input_lines"] == {"recommend": 0, "related": 0, "segment": 1}
    assert (resumed["run_dir"] / "validation.json").exists()


def resumed_url(resumed) -> str:
    text = resumed["path"].read_text()
    return text.split('endpoint_url = "')[1].split('"')[0]


def _scan_count(client, table) -> int:
    return sum(page["Count"] for page in client.get_paginator("scan").paginate(TableName=table))


@pytest.mark.slow  # whole pipeline runs (minutes)
def test_a_complete_run_date_is_a_no_op_and_quiet_prints_the_summary_alone(resumed, capsys):
    root = resumed["root"]
    before = (resumed["run_dir"] / "state.json").read_text(), delta_version(root / "out" / "recs")
    capsys.readouterr()
    assert run_cli(resumed["path"], "--quiet") == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert captured.out.count("\n") == 1 and captured.err == ""
    assert summary["status"] == "already complete" and summary["ran"] == []
    assert set(summary["stages"].values()) == {"succeeded"}
    assert ((resumed["run_dir"] / "state.json").read_text(), delta_version(root / "out" / "recs")) == before


@pytest.mark.slow  # whole pipeline runs (minutes)
def test_force_on_one_stage_runs_it_again_and_rewrites_the_manifest(spark, resumed, capsys):
    root, run_dir = resumed["root"], resumed["run_dir"]
    rows_before = sorted(tuple(r) for r in rows_of(spark, root / "out" / "related"))
    version_before = delta_version(root / "out" / "related")
    assert run_cli(resumed["path"], "--stage", "related", "--force") == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["ran"] == ["related"] and summary["manifest"]
    assert delta_version(root / "out" / "related") == version_before + 1
    # Replaced, not duplicated.
    assert sorted(tuple(r) for r in rows_of(spark, root / "out" / "related")) == rows_before
    m = read_json(run_dir / "manifest.json")
    assert {s["name"]: s["attempts"] for s in m["stages"]}["related"] == 2
    assert (run_dir / "_SUCCESS").exists()


SHORT = """
[pipeline]
runs = "{root}/runs"
progress_seconds = 0.0
{settings}
[datasets]
interactions = "{data}/interactions"
format = "csv"
[solutions.pop]
recipe = "popularity-count"
path = "{root}/solutions/pop"
max_version_age_days = 6
[recommend]
solution = "pop"
output = "{root}/out/recs"
"""


@pytest.fixture
def short(tmp_path, data):
    return write(tmp_path / "short.toml", SHORT.format(root=tmp_path, data=data, settings=SMALL_SETTINGS))


@pytest.mark.slow  # whole pipeline runs (minutes)
def test_one_stage_at_a_time_as_airflow_runs_it_then_force_runs_every_stage_again(spark, short, tmp_path,
                                                                                  capsys):
    run = ["run", str(short), "--run-date", D.isoformat()]
    assert cli.main([*run, "--stage", "recommend"]) == 1
    assert f"stage recommend needs stage train completed for {D}" in capsys.readouterr().err
    for stage in ("validate", "train", "recommend"):
        assert cli.main([*run, "--stage", stage]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert [line["status"] for line in lines] == ["stage validate succeeded", "stage train succeeded",
                                                  "stage recommend succeeded"]
    # The manifest and _SUCCESS come with the last stage.
    assert [line["manifest"] is not None for line in lines] == [False, False, True]
    run_dir = tmp_path / "runs" / D.isoformat()
    m = read_json(run_dir / "manifest.json")
    assert [s["status"] for s in m["stages"]] == ["succeeded"] * 3 and (run_dir / "_SUCCESS").exists()
    assert cli.main([*run, "--stage", "validate"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "already complete"

    first = sorted((r.user_id, r.rank, r.item_id) for r in rows_of(spark, tmp_path / "out" / "recs"))
    version = delta_version(tmp_path / "out" / "recs")
    assert cli.main([*run, "--force"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ran"] == ["validate", "train", "recommend"] and summary["status"] == "succeeded"
    # The forced train replaced the run date's version; the run's rows were replaced in one commit.
    assert len(list((tmp_path / "solutions" / "pop" / "versions").iterdir())) == 1
    assert delta_version(tmp_path / "out" / "recs") == version + 1
    assert sorted((r.user_id, r.rank, r.item_id) for r in rows_of(spark, tmp_path / "out" / "recs")) == first
    state = read_json(run_dir / "state.json")
    assert state["stages"]["train"]["summary"]["solutions"]["pop"]["reason"].startswith("--force")
    assert {k: v["attempts"] for k, v in state["stages"].items()} == {"validate": 2, "train": 2, "recommend": 2}
    assert read_json(run_dir / "manifest.json")["solutions"]["pop"]["version"] != m["solutions"]["pop"]["version"]


def test_overlapping_outputs_of_two_stages_are_refused_before_anything_is_written(tmp_path, data, capsys):
    text = SHORT.format(root=tmp_path, data=data, settings=SMALL_SETTINGS).replace(
        "[recommend]", f"[validate]\nrejects = \"{tmp_path}/out/recs\"\n[recommend]")
    path = write(tmp_path / "overlap.toml", text)
    assert run_cli(path) == 2
    err = capsys.readouterr().err
    assert "[recommend] output" in err and "[validate] rejects" in err and "is the same location as" in err
    assert not (tmp_path / "runs").exists()
