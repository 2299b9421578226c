"""Benchmark: what Spark itself costs per step of the cg solver, with no arithmetic at all.

The cg solver runs one Spark stage per half-iteration (``batchrec.recipes.als_cg``). These
measurements bound from below what any design built from such steps can cost, on this machine:

* ``sql_job``: ``spark.range(2).count()``: a job that never starts a Python worker;
* ``python_job``: ``rdd.map(identity).collect()`` over a cached 2-partition RDD, timed before any
  task has imported batchrec: the floor of every job whose tasks run Python (the Python workers are
  already started and reused), as for any PySpark program;
* ``python_job_batchrec``: the same job whose function imports batchrec, which stops the workers
  from re-reading ``pyspark.zip`` before every task on Python 3.10 and 3.11
  (:mod:`batchrec.zipimports`); every measurement after it runs with that fix, as batchrec's own
  tasks do;
* ``half_iteration_transport``: a cg half-iteration's data movement with no solve: one broadcast of
  (users x rank, rank x rank, items x rank) float32 factors, read by every task, and half of the
  users' rows returned by each of the two tasks;
* ``grouping_shuffle``: ``--ratings`` cached (user, item, rating) rows repartitioned by user into
  one partition per core, to Spark's ``noop`` sink: the JVM shuffle that grouping one side costs;
* ``grouping_to_python``: the same shuffle with every row handed to Python as Arrow batches
  (``mapInArrow`` counting them): what building one side's blocks in Python costs at least;
* ``barrier_exchange_empty`` / ``barrier_exchange_factors``: the other way to keep state between
  half-iterations inside one Spark job, a barrier stage whose tasks swap their rows with
  ``BarrierTaskContext.allGather``: seconds per exchange, of a 1-byte message and of half the
  users' rows (base64, as allGather carries strings).

Each is timed ``--repeats`` times after a warm-up; the median and the minimum are printed, with the
load average, as JSON. Usage::

    .venv/bin/python bench/bench_spark_floor.py
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--ratings", type=int, default=4_000_000)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--exchanges", type=int, default=5)
    args = parser.parse_args(argv)

    import numpy as np
    import pyarrow as pa
    from pyspark.sql import functions as F

    from batchrec.config import SparkSettings
    from batchrec.spark import get_spark

    spark = get_spark(SparkSettings(master=args.master, app_name="bench-spark-floor", driver_memory="4g"))
    context = spark.sparkContext
    tasks = context.defaultParallelism
    cached = context.parallelize(range(tasks), tasks).cache()
    cached.count()
    rng = np.random.default_rng(0)
    users = rng.standard_normal((args.users, args.rank), dtype=np.float32)
    items = rng.standard_normal((args.items, args.rank), dtype=np.float32)
    share = args.users // tasks

    def sql_job():
        spark.range(2).count()

    def python_job():
        cached.map(lambda x: x).collect()

    def with_batchrec(x):
        importlib.import_module("batchrec")  # installs batchrec.zipimports in the worker
        return x

    def python_job_batchrec():
        cached.map(with_batchrec).collect()

    def half_iteration_transport():
        shared = context.broadcast((users, np.eye(args.rank), items))
        try:
            cached.map(lambda part: shared.value[0][part * share:(part + 1) * share].copy()).collect()
        finally:
            shared.destroy()

    ratings = spark.range(args.ratings).select(
        (F.rand(1) * args.users).cast("int").alias("user"), (F.rand(2) * args.items).cast("int").alias("item"),
        F.rand(3).cast("float").alias("rating")).cache()
    ratings.count()

    def grouping_shuffle():
        ratings.repartition(tasks, "user").write.format("noop").mode("overwrite").save()

    def count_rows(batches):
        yield pa.RecordBatch.from_pydict({"rows": [sum(b.num_rows for b in batches)]})

    def grouping_to_python():
        ratings.repartition(tasks, "user").mapInArrow(count_rows, "rows long").collect()

    timings = {"sql_job": sql_job, "python_job": python_job, "python_job_batchrec": python_job_batchrec,
               "half_iteration_transport": half_iteration_transport,
               "grouping_shuffle": grouping_shuffle, "grouping_to_python": grouping_to_python}
    each: dict[str, list[float]] = {}
    for name, fn in timings.items():
        fn()  # warm-up: Python workers started, code paths loaded
        each[name] = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            each[name].append(time.perf_counter() - start)
    for name, rows in (("barrier_exchange_empty", 0), ("barrier_exchange_factors", share)):
        each[name] = _barrier_exchanges(cached, rows, args.rank, args.exchanges)
    result = {"args": vars(args), "tasks": tasks,
              "seconds_median": {k: round(statistics.median(v), 3) for k, v in each.items()},
              "seconds_min": {k: round(min(v), 3) for k, v in each.items()},
              "load_average": os.getloadavg(), "cpus": os.cpu_count()}
    print(json.dumps(result, indent=2))
    spark.stop()
    return 0


def _barrier_exchanges(cached, rows: int, rank: int, exchanges: int) -> list[float]:
    """Seconds of each ``allGather`` of ``rows`` x ``rank`` float32 values per task (after the first)."""

    def exchange(_):
        import base64

        import numpy as np
        from pyspark import BarrierTaskContext

        task = BarrierTaskContext.get()
        message = base64.b64encode(np.ones((rows, rank), np.float32).tobytes()).decode("ascii")
        seconds = []
        for _ in range(exchanges + 1):
            start = time.perf_counter()
            gathered = task.allGather(message)
            np.concatenate([np.frombuffer(base64.b64decode(m), np.float32) for m in gathered])
            seconds.append(time.perf_counter() - start)
        return seconds[1:]

    return cached.barrier().mapPartitions(exchange).collect()


if __name__ == "__main__":
    raise SystemExit(main())
