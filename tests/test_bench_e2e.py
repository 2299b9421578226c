"""bench/bench_e2e.py runs end to end at a tiny size, so the whole-process benchmark cannot rot.

One run of the real script as a subprocess (generate, then validate -> train -> recommend and the
plain MLlib baseline, each its own Spark process, and the same three stages as one ``batchrec run``
process), then checks on the JSON it writes: every process
of the nightly path is there with its wall time, share and the ``stage=...`` lines batchrec logged,
and the growth table is computed from two sizes (the second one derived from the measured one, so the
exponent is known in advance).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench" / "bench_e2e.py"
TINY_INTERACTIONS = 3000
TINY_USERS = 75
TINY_ITEMS = 30
# Every Spark process of the benchmark gets a small driver: the data is tiny and the machine is shared.
SMALL_SPARK = {"BATCHREC_SPARK__DRIVER_MEMORY": "1g", "BATCHREC_SPARK__SHUFFLE_PARTITIONS": "2"}
RUN_TIMEOUT_SECONDS = 1800
NIGHTLY = ("validate", "train", "recommend")
# Stages each process must log (batchrec.logs.stage): the table of stage timings is built from them.
EXPECTED_STAGES = {
    "validate": {"read_interactions", "validate_interactions", "read_items", "read_users"},
    "train": {"prepare", "index", "train", "save"},
    "recommend": {"score", "write_delta"},
}


def _load_bench_module():
    spec = importlib.util.spec_from_file_location("bench_e2e", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The benchmark's JSON result and working folder after one run at a tiny size."""
    work = tmp_path_factory.mktemp("bench-e2e")
    command = [sys.executable, str(BENCH), "--workdir", str(work), "--sizes", str(TINY_INTERACTIONS),
               "--users", str(TINY_USERS), "--items", str(TINY_ITEMS), "--master", "local[2]",
               "--sample-seconds", "0.5", "--pipeline"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS,
                          env={**os.environ, **SMALL_SPARK})
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads((work / "bench_e2e.json").read_text(encoding="utf-8"))
    return results, work, done.stdout


def test_every_process_of_the_nightly_path_is_measured(tiny_run):
    results, work, stdout = tiny_run
    assert [entry["interactions"] for entry in results["sizes"]] == [TINY_INTERACTIONS]
    entry = results["sizes"][0]
    assert (entry["users"], entry["items"]) == (TINY_USERS, TINY_ITEMS)
    assert set(entry["processes"]) == {"generate", *NIGHTLY, "plain_mllib", "pipeline"}
    for name, process in entry["processes"].items():
        assert process["wall_seconds"] > 0, name
        assert process["cpu_seconds_tree"] > 0, name  # the /proc sampler saw the process tree
        assert process["peak_pss_mb_tree"] > 0 and process["peak_rss_mb_largest_process"] > 0, name
    walls = [entry["processes"][name]["wall_seconds"] for name in NIGHTLY]
    assert entry["nightly_wall_seconds"] == pytest.approx(sum(walls), abs=0.05)
    assert sum(entry["processes"][name]["share"] for name in NIGHTLY) == pytest.approx(1.0, abs=0.01)
    assert entry["nightly_vs_plain"] == pytest.approx(
        entry["nightly_wall_seconds"] / entry["processes"]["plain_mllib"]["wall_seconds"], rel=0.01)
    assert entry["pipeline_vs_nightly"] == pytest.approx(
        entry["processes"]["pipeline"]["wall_seconds"] / entry["nightly_wall_seconds"], rel=0.01)
    # The markdown is written beside the JSON and printed.
    markdown = (work / "bench_e2e.md").read_text(encoding="utf-8")
    assert "**nightly total**" in markdown and markdown.strip() in stdout


def test_each_process_logs_its_stages(tiny_run):
    results, work, _ = tiny_run
    processes = results["sizes"][0]["processes"]
    for name, expected in EXPECTED_STAGES.items():
        stages = processes[name]["stages"]
        assert expected <= {s["stage"] for s in stages}, (name, stages)
        # Each stage is timed inside its process.
        assert all(0 <= s["seconds"] <= processes[name]["wall_seconds"] for s in stages), stages
    # The nightly path produced real outputs: a solution version and the recommendations table.
    run = work / f"run-{TINY_INTERACTIONS}"
    assert (run / "recommendations" / "_delta_log").is_dir()
    assert (run / "plain-recommendations.parquet").is_dir()
    assert json.loads((run / "validation.json").read_text(encoding="utf-8"))
    # The one-process pipeline ran the same stages, validating the datasets once for two stages.
    pipeline = {s["stage"] for s in processes["pipeline"]["stages"]}
    assert {"validate_interactions", "train", "write_delta"} <= pipeline, pipeline
    assert sum(s["stage"] == "validate_interactions" for s in processes["pipeline"]["stages"]) == 1
    assert (run / "pipeline" / "recommendations" / "_delta_log").is_dir()


def test_growth_exponent_from_two_sizes(tiny_run):
    """Doubling the data and every time gives exponent 1 (linear); a quadrupled time gives 2."""
    bench = _load_bench_module()
    results, _, _ = tiny_run
    small = results["sizes"][0]
    doubled = json.loads(json.dumps(small))
    doubled["interactions"] = 2 * small["interactions"]
    for name, process in doubled["processes"].items():
        process["wall_seconds"] *= 4 if name == "train" else 2
    doubled["nightly_wall_seconds"] = sum(doubled["processes"][n]["wall_seconds"] for n in NIGHTLY)
    (row,) = bench.growth([small, doubled])
    assert (row["from"], row["to"]) == (TINY_INTERACTIONS, 2 * TINY_INTERACTIONS)
    assert row["validate"] == row["recommend"] == row["plain_mllib"] == pytest.approx(1.0, abs=0.01)
    assert row["train"] == pytest.approx(2.0, abs=0.01)
    assert 1.0 < row["nightly"] < 2.0
    markdown = bench.to_markdown({**results, "sizes": [small, doubled], "growth": [row]})
    assert "Cost growth" in markdown and f"| {TINY_INTERACTIONS:,} | {2 * TINY_INTERACTIONS:,} |" in markdown
