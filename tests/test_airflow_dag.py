"""examples/airflow/batchrec_daily.py loads in a real Airflow and every command it would run is
accepted by the real batchrec CLI.

Airflow and the Spark provider are installed into their own virtual environment (they cannot share
batchrec's), built once and cached under ~/.cache/batchrec/airflow-venv-<key> (``$BATCHREC_CACHE_DIR``
moves it), keyed by the pinned versions and the Python version; the first run takes a few minutes.
A script in that environment fills a DagBag from examples/airflow/, renders each task's templates
for a run date and asks the Spark provider's own hook for the spark-submit command line it would
run; this test checks the DAG's shape and runs each command's batchrec arguments through
``batchrec run ... --dry-run``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from batchrec import cli, pipeline as P

REPO = Path(__file__).resolve().parents[1]
PINS = ("apache-airflow==2.10.5", "apache-airflow-providers-apache-spark==5.0.1",
        # the provider needs pyspark; the version batchrec already installs is a cached wheel
        "pyspark==4.0.1")
RUN_DATE = "2026-11-22"
INSTALL_TIMEOUT = 1800

PROBE = r"""
import json, sys
from airflow.models import DagBag

bag = DagBag(dag_folder=sys.argv[1], include_examples=False)
found = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": sorted(bag.dags)}
dag = bag.dags.get("batchrec_daily")
if dag is not None:
    found["schedule"] = str(dag.schedule_interval)
    found["tasks"] = []
    for task in dag.tasks:  # in the order they were added
        task.render_template_fields({"ds": sys.argv[2]})
        found["tasks"].append({
            "task_id": task.task_id, "type": type(task).__name__,
            "upstream": sorted(task.upstream_task_ids), "downstream": sorted(task.downstream_task_ids),
            "retries": task.retries, "outlets": [o.uri for o in task.outlets],
            "command": task._get_hook()._build_spark_submit_command(task.application),
        })
print("PROBE" + json.dumps(found))
"""


def cache_root() -> Path:
    root = os.environ.get("BATCHREC_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "batchrec")
    return Path(root)


def airflow_python() -> Path:
    """The cached Airflow environment's interpreter, built when missing (pip from PyPI)."""
    key = hashlib.sha256("\n".join((sys.version, *PINS)).encode()).hexdigest()[:12]
    venv = cache_root() / f"airflow-venv-{key}"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if stamp.is_file():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    base = getattr(sys, "_base_executable", None) or sys.executable
    subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=300)
    result = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PINS],
                            capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    if result.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        raise RuntimeError(f"could not install {' '.join(PINS)}: {result.stderr[-3000:]}")
    stamp.write_text("\n".join(PINS) + "\n")
    return python


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    python = airflow_python()
    home = tmp_path_factory.mktemp("airflow-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTHON"))}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "examples" / "airflow"),
        # A connection given by the environment needs no metadata database.
        "AIRFLOW_CONN_SPARK_DEFAULT": "spark://yarn",
        "BATCHREC_HOME": str(REPO),
        "BATCHREC_PIPELINE": str(REPO / "examples" / "pipeline.toml"),
    })
    result = subprocess.run([str(python), "-c", PROBE, str(REPO / "examples" / "airflow"), RUN_DATE],
                            capture_output=True, text=True, env=env, timeout=600, cwd=home)
    lines = [line for line in result.stdout.splitlines() if line.startswith("PROBE")]
    assert result.returncode == 0 and lines, result.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("PROBE"))


def test_the_dag_imports_without_errors(probe):
    assert probe["import_errors"] == {}
    assert probe["dags"] == ["batchrec_daily"] and probe["schedule"] == "@daily"


def test_one_task_per_stage_in_pipeline_order_with_retries(probe):
    tasks = probe["tasks"]
    ids = [t["task_id"] for t in tasks]
    assert ids == [s.replace("-", "_") for s in P.STAGES]
    assert all(t["type"] == "SparkSubmitOperator" and t["retries"] == 2 for t in tasks)
    for upstream, task in zip([None] + ids, tasks):
        assert task["upstream"] == ([upstream] if upstream else [])
    assert tasks[-1]["downstream"] == []
    # The last task writes the run's manifest: its outlet is the runs folder of the pipeline.
    assert [t["outlets"] for t in tasks[:-1]] == [[]] * 5
    assert tasks[-1]["outlets"] == [f"file://{REPO}/batchrec-demo/runs"]


def _split(command: list[str]) -> tuple[dict, str, list[str]]:
    """spark-submit options, the application and its arguments."""
    options, i = {}, 1
    while command[i].startswith("--"):
        key, value = command[i], command[i + 1]
        options.setdefault(key, []).append(value)
        i += 2
    return options, command[i], command[i + 1:]


def test_every_command_line_is_accepted_by_the_batchrec_cli(probe, capsys):
    built = subprocess.run([str(REPO / "spark-submit.sh"), "--build-only"], capture_output=True, text=True,
                           timeout=300, cwd=REPO)
    assert built.returncode == 0, built.stderr
    assert built.stdout.split() == [str(REPO / "build" / "batchrec.zip")]
    for task in probe["tasks"]:
        options, application, args = _split(task["command"])
        assert task["command"][0] == "spark-submit" and application == str(REPO / "jobs" / "run.py")
        assert Path(application).is_file()
        assert options["--py-files"] == [str(REPO / "build" / "batchrec.zip")]
        assert all(Path(f).is_file() for f in options["--files"][0].split(","))
        assert options["--archives"] == [f"{REPO}/build/env.tar.gz#environment"]
        assert "spark.pyspark.python=./environment/bin/python" in options["--conf"]
        stage = task["task_id"].replace("_", "-")
        assert args[:5] == [str(REPO / "examples" / "pipeline.toml"), "--run-date", RUN_DATE, "--stage", stage]
        # What jobs/run.py hands to the CLI, checked by the CLI itself (no Spark: --dry-run).
        assert cli.main(["run", *args, "--dry-run"]) == 0, capsys.readouterr().err
        plan = json.loads(capsys.readouterr().out)
        assert plan["stage"] == stage and plan["run_date"] == RUN_DATE and stage in plan["stages"]
