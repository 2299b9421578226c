"""spark-submit.sh runs a job on local Spark and passes its exit code through."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
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


def test_a_failing_pipeline_stage_exits_1_and_records_the_failure(tmp_path):
    data = tmp_path / "interactions.csv"
    data.write_text("USER_ID,ITEM_ID,TIMESTAMP\nu1,a,1763000000\nu2,b,1763000000\n")
    pipeline = tmp_path / "nightly.toml"
    pipeline.write_text(f'[pipeline]\nruns = "{tmp_path}/runs"\n[datasets]\ninteractions = "{data}"\n'
                        f'format = "csv"\n')
    result = submit("run", str(pipeline), "--run-date", "2026-11-01", timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    # Personalize's minimum of 1000 interactions is not met: the validate stage fails.
    assert "stage=validate status=failed" in output and "validation failed" in output
    state = json.loads((tmp_path / "runs" / "2026-11-01" / "state.json").read_text())
    assert state["stages"]["validate"]["status"] == "failed"
    assert not (tmp_path / "runs" / "2026-11-01" / "_SUCCESS").exists()


def test_a_bad_option_of_the_script_itself_is_exit_2_before_anything_runs():
    result = submit("--bogus", "generate")
    assert result.returncode == 2
    assert "unknown option --bogus" in result.stderr
    assert submit().returncode == 2


def fake_spark_submit(tmp_path: Path) -> tuple[dict, Path]:
    """A spark-submit stand-in that records its arguments, one per line."""
    recorded = tmp_path / "args"
    fake = tmp_path / "spark-submit"
    fake.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > {recorded}\nexit 0\n')
    fake.chmod(0o755)
    return {**os.environ, "SPARK_SUBMIT": str(fake)}, recorded


def test_ship_jars_passes_the_cached_delta_jars_and_cluster_mode_ships_the_pipeline_file(tmp_path):
    from batchrec.spark import cached_delta_jars

    env, recorded = fake_spark_submit(tmp_path)
    pipeline = REPO / "examples" / "pipeline.toml"
    result = subprocess.run([str(SCRIPT), "--ship-jars", "run", str(pipeline), "--run-date", "2026-11-22"],
                            capture_output=True, text=True, env={**env, "DEPLOY_MODE": "cluster"},
                            timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    args = recorded.read_text().splitlines()
    jars = args[args.index("--jars") + 1].split(",")
    assert jars == cached_delta_jars() and any("delta-spark" in j for j in jars)
    assert "--packages" not in args and args[args.index("--deploy-mode") + 1] == "cluster"
    assert args[args.index("--files") + 1].split(",")[-1] == str(pipeline)
    # In cluster mode the driver reads the shipped copy from its working folder.
    assert args[-4:] == [str(REPO / "jobs" / "run.py"), "pipeline.toml", "--run-date", "2026-11-22"]


def test_pack_env_builds_a_relocatable_environment_and_ships_it(tmp_path):
    env, recorded = fake_spark_submit(tmp_path)
    built = subprocess.run([str(SCRIPT), "--pack-env", "--build-only"], capture_output=True, text=True,
                           env=env, timeout=1800, cwd=REPO)
    assert built.returncode == 0, built.stderr[-3000:]
    archive = REPO / "build" / "env.tar.gz"
    assert built.stdout.split() == [str(REPO / "build" / "batchrec.zip"), str(archive)]
    assert not recorded.exists()  # --build-only submits nothing
    unpacked = tmp_path / "environment"
    unpacked.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(unpacked)
    # What the executors get: batchrec's dependencies, and no pyspark (the cluster brings Spark).
    check = subprocess.run([str(unpacked / "bin" / "python"), "-c",
                            "import numpy, pyarrow, scipy, numba, pandas, boto3, click, importlib.util, sys; "
                            "assert importlib.util.find_spec('pyspark') is None; print(sys.prefix)"],
                           capture_output=True, text=True, timeout=120, env={"PATH": os.environ["PATH"]})
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == str(unpacked)

    result = subprocess.run([str(SCRIPT), "--pack-env", "generate", "--help"], capture_output=True, text=True,
                            env=env, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    args = recorded.read_text().splitlines()
    assert args[args.index("--archives") + 1] == f"{archive}#environment"
    assert "spark.pyspark.python=./environment/bin/python" in args
    assert f"spark.pyspark.driver.python={REPO / '.venv' / 'bin' / 'python'}" in args or any(
        a.startswith("spark.pyspark.driver.python=") for a in args)
