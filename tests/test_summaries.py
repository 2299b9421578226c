"""One summary shape for every command: the last line on stdout is one JSON object (``command`` and
``run_date`` first, ``seconds`` last), and ``--summary-file`` holds exactly that line. Every command
runs here on a small generated dataset, in process (the session's Spark)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from batchrec import summary as run_summary
from batchrec.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dynamo_servers import TEST_CREDENTIALS, start_moto  # noqa: E402

# Spark's Python workers inherit the JVM's environment: the local server's dummy credentials must
# be there before the session starts (as in test_dynamodb).
for _name, _value in TEST_CREDENTIALS.items():
    os.environ.setdefault(_name, _value)

RUN_DATE = "2026-11-20"
COMMON = ["--master", "local[2]", "--run-date", RUN_DATE, "--log-level", "WARNING"]
SMALL = ["--min-interactions", "1", "--min-users", "0"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("summaries")


def run_with_summary(capsys, workdir: Path, name: str, *args) -> dict:
    """Run a command with ``--summary-file``; check the file holds the stdout's last line."""
    summary_file = workdir / f"{name}.summary.json"
    code = main([*(str(a) for a in args), "--summary-file", str(summary_file)])
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    last = out.strip().splitlines()[-1]
    line = json.loads(last)
    written = summary_file.read_text()
    assert written == last + "\n"                       # the same line, byte for byte
    from_file = json.loads(written)
    assert list(from_file) == list(line)                # the same keys, in the same order
    assert list(line)[:2] == [run_summary.COMMAND, run_summary.RUN_DATE]
    assert list(line)[-1] == run_summary.SECONDS and line[run_summary.RUN_DATE] == RUN_DATE
    return line


def test_every_command_prints_one_summary_line_and_writes_it_to_the_summary_file(spark, capsys, workdir):
    data = workdir / "data"
    generated = run_with_summary(capsys, workdir, "generate", "generate", *COMMON, "--num-users", 40,
                                 "--num-items", 20, "--num-interactions", 800, "--clusters", 3,
                                 "--output", data)
    assert generated["command"] == "generate" and generated["interactions"] == 800
    assert set(generated["paths"]) >= {"interactions", "items", "users"}
    interactions = data / "interactions"

    validated = run_with_summary(capsys, workdir, "validate", "validate", *COMMON, *SMALL, "--interactions",
                                 interactions, "--items", data / "items", "--format", "csv",
                                 "--report", workdir / "validation.json")
    assert validated["command"] == "validate" and validated["passed"] is True
    assert validated["datasets"]["interactions"]["rows_read"] == 800
    assert validated["interactions"] == validated["datasets"]["interactions"]["rows_valid"]
    assert validated["report"] == str(workdir / "validation.json")

    solutions = {}
    for recipe, params in (("user-personalization", ["--param", "rank=4", "--param", "maxIter=2"]),
                           ("sims", ["--param", "min_cointeraction_count=1"])):
        solution = workdir / recipe
        trained = run_with_summary(capsys, workdir, f"train-{recipe}", "train", *COMMON, *SMALL, "--recipe",
                                   recipe, "--interactions", interactions, "--format", "csv",
                                   "--solution", solution, *params)
        assert trained["command"] == "train" and trained["recipe"] == recipe
        assert trained["version"] and trained["path"].endswith(trained["version"])
        assert "metrics" in trained
        solutions[recipe] = solution
    als = solutions["user-personalization"]

    recommended = run_with_summary(capsys, workdir, "recommend", "recommend", *COMMON, "--solution", als,
                                   "--output", workdir / "recs", "--num-results", 3)
    assert recommended["command"] == "recommend" and recommended["rows"] > 0 and recommended["users"] > 0

    ranking = workdir / "ranking.jsonl"
    ranking.write_text('{"userId": "u1", "itemList": ["i1", "i2", "i3"]}\n')
    ranked = run_with_summary(capsys, workdir, "rank", "rank", *COMMON, "--solution", als, "--input", ranking,
                              "--output", workdir / "ranked")
    assert ranked["command"] == "rank" and ranked["requests"] == 1

    related = run_with_summary(capsys, workdir, "related", "related", *COMMON, "--solution",
                               solutions["sims"], "--output", workdir / "related", "--num-results", 2)
    assert related["command"] == "related" and related["items"] > 0

    segmented = run_with_summary(capsys, workdir, "segment", "segment", *COMMON, "--solution", als,
                                 "--output", workdir / "segments", "--num-results", 2)
    assert segmented["command"] == "segment" and segmented["segments"] > 0

    evaluated = run_with_summary(capsys, workdir, "evaluate", "evaluate", *COMMON, *SMALL, "--interactions",
                                 interactions, "--format", "csv", "--recipe", "popularity-count",
                                 "--protocol", "stratified-user", "--k", "2,5",
                                 "--report", workdir / "evaluation.json")
    # The counts only: the full report is its --report file.
    assert evaluated["command"] == "evaluate" and evaluated["metric"] == "ndcg@5"
    assert set(evaluated["recipes"]) == {"popularity-count"} and evaluated["evaluated_users"] > 0
    assert evaluated["report"] == str(workdir / "evaluation.json")
    assert json.loads((workdir / "evaluation.json").read_text())["recipes"][0]["metrics"]

    moto = start_moto(workdir)
    try:
        exported = run_with_summary(capsys, workdir, "export", "export-dynamodb", *COMMON, "--input",
                                    workdir / "recs", "--table", "summaries-test", "--endpoint-url",
                                    moto.url, "--region", "us-east-1")
    finally:
        moto.stop()
    assert exported["command"] == "export-dynamodb" and exported["missing"] == 0
    assert exported["items"] == recommended["users_with_results"]

    pruned = run_with_summary(capsys, workdir, "prune", "versions", "prune", *COMMON, "--solution", als,
                              "--keep", 1, "--dry-run")
    assert pruned["command"] == "versions prune" and pruned["removed"] == []


def test_a_failed_validation_still_prints_and_writes_its_counts(spark, capsys, workdir, tmp_path):
    csv = tmp_path / "few.csv"
    csv.write_text("USER_ID,ITEM_ID,TIMESTAMP\nu1,i1,1700000000\nu2,i1,1700000060\n")
    summary_file = tmp_path / "summary.json"
    code = main(["validate", *COMMON, "--interactions", str(csv), "--summary-file", str(summary_file)])
    out, err = capsys.readouterr()
    assert code == 1 and "validation failed" in err
    line = json.loads(out.strip().splitlines()[-1])
    assert line == json.loads(summary_file.read_text())
    assert line["passed"] is False and line["interactions"] == 2 and line["failures"]


def test_shape_puts_command_and_run_date_first_and_seconds_last():
    shaped = run_summary.shape("train", {"version": "v", "seconds": 3.0, "command": "train"}, "2026-11-20", 9.0)
    assert list(shaped) == ["command", "run_date", "version", "seconds"] and shaped["seconds"] == 3.0
    assert run_summary.shape("generate", {"users": 3}, "2026-11-20", 1.234)["seconds"] == 1.2
