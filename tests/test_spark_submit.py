"""spark-submit.sh runs a job on local Spark and passes its exit code through."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "spark-submit.sh"


def submit(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "MASTER": "local[1]"}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=REPO)


def test_generate_job_runs_under_spark_submit(tmp_path):
    out = tmp_path / "data"
    result = submit("generate", "--users", "30", "--items", "10", "--interactions", "300",
                    "--output", str(out), "--run-date", "2026-11-01")
    assert result.returncode == 0, result.stderr[-3000:]
    header = next((out / "interactions").glob("part-*.csv")).read_text().splitlines()[0]
    assert header.split(",") == ["USER_ID", "ITEM_ID", "EVENT_TYPE", "EVENT_VALUE", "TIMESTAMP"]
    # spark-submit's PythonRunner forwards the driver's stdout and stderr on its own stdout.
    assert "command=generate run_date=2026-11-01" in result.stdout + result.stderr


def test_usage_error_exit_code_reaches_the_caller(tmp_path):
    result = submit("generate", "--users", "30", "--items", "10", "--interactions", "300",
                    "--output", str(tmp_path), "--run-date", "2026-02-30")
    assert result.returncode == 2
    assert "'2026-02-30' is not a date" in result.stdout + result.stderr


def test_unknown_job_is_a_usage_error():
    result = submit("nosuchjob")
    assert result.returncode == 2
    assert "no job 'nosuchjob'" in result.stderr
