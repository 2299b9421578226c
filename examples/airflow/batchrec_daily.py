"""Nightly batchrec run: validate, train, recommend for the run date ``{{ ds }}``.

Every task is idempotent for its run date (outputs are replaced atomically), so Airflow retries and
backfills are safe. Exit code 1 (data or job failure) and 2 (usage or configuration) fail the task.
"""

import pendulum
from airflow import DAG
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

BATCHREC = "/opt/batchrec"           # a checkout of this repository on the Airflow worker
DATA = "s3a://example-bucket/datasets"
SOLUTION = "s3a://example-bucket/solutions/user-personalization"
OUTPUT = "s3a://example-bucket/recommendations"
COMMON = ["--run-date", "{{ ds }}", "--env", "cluster"]
SPARK_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def job(task_id: str, name: str, args: list[str]) -> SparkSubmitOperator:
    return SparkSubmitOperator(
        task_id=task_id,
        application=f"{BATCHREC}/jobs/{name}.py",
        application_args=args + COMMON,
        py_files=f"{BATCHREC}/build/batchrec.zip",
        files=f"{BATCHREC}/conf/base.toml,{BATCHREC}/conf/cluster.toml",
        packages="io.delta:delta-spark_2.13:4.0.1,io.delta:delta-storage:4.0.1",
        conf=SPARK_CONF,
        retries=2,
    )


with DAG(
    dag_id="batchrec_daily",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
) as dag:
    validate = job("validate", "validate", ["--interactions", f"{DATA}/interactions",
                                            "--rejects", f"{OUTPUT}/_rejects"])
    train = job("train", "train", ["--recipe", "user-personalization",
                                   "--interactions", f"{DATA}/interactions", "--solution", SOLUTION])
    recommend = job("recommend", "recommend", ["--solution", SOLUTION, "--output", OUTPUT,
                                               "--jsonl", f"{OUTPUT}_jsonl/{{{{ ds }}}}"])
    validate >> train >> recommend
