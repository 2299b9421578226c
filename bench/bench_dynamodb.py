"""Benchmark: items per second of ``export-dynamodb`` into a local DynamoDB-compatible server.

Writes a recommendations Delta table of ``--users`` users x ``--items`` items (default 100k x 25,
one run date), starts dynalite or moto's server on a free port (``tests/dynamo_servers.py``) unless
``--endpoint-url`` names one already running, exports the run with no write budget (or
``--write-rate``) and prints one JSON line: users, items, rows, seconds (whole export and write
phase), items per second, retries, throttles, WCU. The export's own reconciliation and read-back
sample must pass, so the figure is for a complete, verified export. Usage (see docs/benchmarks.md)::

    nice -n 10 .venv/bin/python bench/bench_dynamodb.py --workdir /tmp/batchrec-bench-ddb
    .venv/bin/python bench/bench_dynamodb.py --users 200 --items 25   # a quick check that it runs

A local server measures the exporter (Spark, item building, batching, HTTP) and the server, not
DynamoDB: a real table's rate is set by its capacity and by ``[dynamodb] write_rate``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUN_DATE = dt.date(2026, 11, 22)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="/tmp/batchrec-bench-ddb")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=25)
    parser.add_argument("--server", choices=("dynalite", "moto"), default="dynalite")
    parser.add_argument("--endpoint-url", default=None, help="Use this running server instead of starting one.")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--writers", type=int, default=0, help="Writer tasks (0: Spark's default parallelism).")
    parser.add_argument("--write-rate", type=float, default=0.0, help="Global budget, WCU/s (0: unlimited).")
    parser.add_argument("--verify-sample", type=int, default=100)
    args = parser.parse_args(argv)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # executors need this venv's boto3/pyarrow
    sys.path.insert(0, str(REPO / "tests"))
    from dynamo_servers import START, TEST_CREDENTIALS

    for name, value in TEST_CREDENTIALS.items():  # local servers take any credentials
        os.environ.setdefault(name, value)

    from pyspark.sql import functions as F

    from batchrec.columns import ITEM_ID, USER_ID
    from batchrec.config import DynamoDBSettings, Settings, SparkSettings
    from batchrec.sinks import delta
    from batchrec.sinks.dynamodb import export_run
    from batchrec.spark import get_spark

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    spark = get_spark(SparkSettings(master=args.master, driver_memory="4g", shuffle_partitions=8,
                                    app_name="bench-dynamodb", conf={"spark.local.dir": str(work / "spark-local")}))
    table_path = work / f"recs-{args.users}u-{args.items}i"
    if not (table_path / "_delta_log").is_dir():
        recs = (spark.range(args.users).select(F.format_string("user-%07d", "id").alias(USER_ID), F.col("id"))
                .select(USER_ID, "id", F.explode(F.sequence(F.lit(1), F.lit(args.items))).alias("rank"))
                .select(USER_ID, "rank",
                        F.format_string("item-%06d", (F.col("id") * 7919 + F.col("rank") * 104729) % 50_000)
                        .alias(ITEM_ID),
                        (F.lit(1.0) / F.col("rank")).alias("score"), F.lit("model").alias("reason")))
        delta.write_run(recs, str(table_path), RUN_DATE, "bench", "v1", "user-personalization")

    server = None
    endpoint = args.endpoint_url
    if endpoint is None:
        server = START[args.server](work)
        endpoint = server.url
    try:
        settings = Settings(dynamodb=dataclasses.replace(
            DynamoDBSettings(), write_rate=args.write_rate, writers=args.writers,
            verify_sample=args.verify_sample, progress_seconds=30.0))
        started = time.perf_counter()
        summary = export_run(spark, str(table_path), RUN_DATE, "bench", settings,
                             f"bench-{uuid.uuid4().hex[:8]}", endpoint, "us-east-1")
        seconds = time.perf_counter() - started
    finally:
        if server is not None:
            server.stop()
    result = {"benchmark": "export-dynamodb", "server": args.endpoint_url or args.server, "master": args.master,
              "users": args.users, "items_per_user": args.items, "rows": summary["rows"],
              "items": summary["items"], "seconds": round(seconds, 1), "write_seconds": summary["write_seconds"],
              "items_per_second": summary["items_per_second"],
              "rows_per_second": round(summary["rows"] / summary["write_seconds"], 1)
              if summary["write_seconds"] else 0.0,
              "retries": summary["retries"], "throttles": summary["throttles"],
              "write_units": summary["write_units"], "verified": summary["verified"]}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
