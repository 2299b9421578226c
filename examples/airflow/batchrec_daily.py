"""Nightly batchrec pipeline in Airflow: one SparkSubmitOperator task per stage of a pipeline file.

Each task runs ``batchrec run PIPELINE.toml --run-date {{ ds }} --stage <stage>`` (``jobs/run.py``),
so the tasks share the pipeline's state file ``<runs>/<ds>/state.json``: a task whose stage is
already complete for the date is a no-op, a stage refuses to start before the stages it needs, and
a retry (or a cleared task) resumes exactly there. Every stage is idempotent for its run date, so
retries and backfills are safe. The last task writes ``<runs>/<ds>/manifest.json`` and ``_SUCCESS``
(its outlet: downstream DAGs can be scheduled on it). Exit code 1 (data or job failure) and 2
(usage or configuration) fail the task; 2 is not worth a retry, but Airflow cannot tell them apart.

Setup on the Airflow worker (a checkout of this repository at BATCHREC_HOME)::

    ./spark-submit.sh --build-only --pack-env    # build/batchrec.zip and build/env.tar.gz

and a ``spark_default`` connection pointing at the cluster (master yarn, k8s://..., spark://...).
Settings below come from the environment so that one file serves every installation.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta

import pendulum
from airflow import DAG
from airflow.datasets import Dataset
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BATCHREC = os.environ.get("BATCHREC_HOME", "/opt/batchrec")  # the checkout on the Airflow worker
PIPELINE = os.environ.get("BATCHREC_PIPELINE", f"{BATCHREC}/examples/pipeline.toml")
DEPLOY_MODE = os.environ.get("BATCHREC_DEPLOY_MODE", "client")  # cluster: the driver runs on the cluster
EXTRA_ARGS = os.environ.get("BATCHREC_ARGS", "--env cluster").split()  # e.g. "--env cluster --quiet"
PACKED_ENV = f"{BATCHREC}/build/env.tar.gz"  # ./spark-submit.sh --build-only --pack-env
DELTA = "4.0.1"  # delta-spark, matching the cluster's Spark 4.0 (setup.py pins the same pair)
STAGES = ("validate", "train", "recommend", "related", "segment", "export-dynamodb")


def configured_stages(pipeline: dict) -> list[str]:
    """The stages the pipeline file runs: [pipeline] stages, else every stage whose section is there
    (the rule of ``batchrec run``)."""
    if "stages" in pipeline.get("pipeline", {}):
        return list(pipeline["pipeline"]["stages"])
    present = {"validate": "datasets" in pipeline, "train": "datasets" in pipeline and "solutions" in pipeline}
    return [s for s in STAGES if present.get(s, s in pipeline)]


with open(PIPELINE, "rb") as handle:
    PIPELINE_DOC = tomllib.load(handle)
RUNS = PIPELINE_DOC["pipeline"]["runs"]
# In cluster mode the pipeline file travels with --files and is read from the driver's working folder.
PIPELINE_ARG = os.path.basename(PIPELINE) if DEPLOY_MODE == "cluster" else PIPELINE
CONF_FILES = ",".join([f"{BATCHREC}/conf/base.toml", f"{BATCHREC}/conf/cluster.toml", PIPELINE])
SPARK_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.sql.session.timeZone": "UTC",
    # Executors run the packed environment (numpy, pyarrow, scipy, boto3); see --pack-env.
    "spark.pyspark.python": "./environment/bin/python",
}
if DEPLOY_MODE == "client":  # the driver runs on the worker, with the worker's Python
    SPARK_CONF["spark.pyspark.driver.python"] = os.environ.get("BATCHREC_PYTHON", f"{BATCHREC}/.venv/bin/python")


# The last task writes the run's manifest and _SUCCESS: its outlet (relative runs folders are taken
# under BATCHREC_HOME here; a pipeline run by Airflow is best given absolute paths or URIs).
MANIFESTS = Dataset(RUNS.rstrip("/") if "://" in RUNS else f"file://{os.path.join(BATCHREC, RUNS)}")


def stage_task(stage: str, last: bool) -> SparkSubmitOperator:
    doc = f"`batchrec run {os.path.basename(PIPELINE)} --run-date {{{{ ds }}}} --stage {stage}`"
    if last:
        doc += f"; writes `{RUNS}/{{{{ ds }}}}/manifest.json` and `_SUCCESS`"
    return SparkSubmitOperator(
        task_id=stage.replace("-", "_"),
        name=f"batchrec-{stage}-{{{{ ds }}}}",
        application=f"{BATCHREC}/jobs/run.py",
        application_args=[PIPELINE_ARG, "--run-date", "{{ ds }}", "--stage", stage, *EXTRA_ARGS],
        py_files=f"{BATCHREC}/build/batchrec.zip",
        files=CONF_FILES,
        archives=f"{PACKED_ENV}#environment",
        packages=f"io.delta:delta-spark_2.13:{DELTA},io.delta:delta-storage:{DELTA}",
        conf=SPARK_CONF,
        deploy_mode=DEPLOY_MODE,
        retries=2,
        retry_delay=timedelta(minutes=10),
        retry_exponential_backoff=True,
        execution_timeout=timedelta(hours=6),
        doc_md=doc,
        outlets=[MANIFESTS] if last else [],
    )


with DAG(
    dag_id="batchrec_daily",
    description="batchrec nightly pipeline, one task per stage",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # run dates share solutions: one at a time, in order
    default_args={"owner": "batchrec"},
    tags=["batchrec"],
    doc_md=__doc__,
) as dag:
    stages = configured_stages(PIPELINE_DOC)
    tasks = [stage_task(stage, last=i == len(stages) - 1) for i, stage in enumerate(stages)]
    for upstream, downstream in zip(tasks, tasks[1:]):
        upstream >> downstream
