"""Benchmark: validation of the interactions against a plain read-and-count of the same CSV.

* data: ``batchrec generate`` (default 50k users, 10k items, 2M interactions) written once under
  ``--workdir`` as CSV and reused; ``--run-date`` is the data's last day;
* ``plain_count``: ``spark.read.option("header", True).csv(path).count()``;
* ``plain_parse``: the same read with every column parsed (written to Spark's ``noop`` sink), the
  fairer floor since validation must look at every value;
* ``read_cache``: no rule at all: the dataset read as validation reads it (``read_raw``: every
  value as text, RFC 4180, the source file per row), cached, counted and released; the floor of
  any validator that keeps the rows for the stages that follow, as the issue asks;
* ``hash_duplicates``: no rule but one: the same read grouped by a 64-bit hash of every value,
  groups of two or more counted; the cheapest form of the exact-duplicate rule;
* ``validate``: ``load_datasets`` on the interactions with the generated schema (rules, duplicates,
  summary; rejects not written), then one count of the valid rows (read from its cache), then
  ``release()``;
* ``arrow_floor``: not a validator, a floor for one built outside Spark's CSV reader: Arrow's
  multi-threaded C++ reader parses the same files on the driver, the numbers and timestamps are
  cast, the ID lengths checked and exact duplicates found by hashing each row (pandas). No rejects,
  no summary, nothing handed to Spark: what any validator reading every value costs at least.

Each is timed ``--repeats`` times in turn after a warm-up and the fastest counts (as ``timeit``).
The target: ``validate`` within 2x of ``plain_count``. The load average is recorded with the result
because the figures mean little on a busy machine. Usage::

    nice .venv/bin/python bench/bench_validation.py --workdir /tmp/batchrec-bench-validation
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import time
from pathlib import Path

RUN_DATE = "2024-06-30"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="/tmp/batchrec-bench-validation")
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--interactions", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="4g")
    args = parser.parse_args(argv)

    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyarrow import csv

    from pyspark.sql import functions as F

    from batchrec import columns
    from batchrec.config import Settings, SparkSettings
    from batchrec.datasets import readers
    from batchrec.datasets.generate import generate_datasets, write_datasets
    from batchrec.datasets.schema import INTERACTIONS
    from batchrec.datasets.validation import load_datasets
    from batchrec.spark import get_spark

    work = Path(args.workdir)
    spark = get_spark(SparkSettings(master=args.master, app_name="bench-validation",
                                    driver_memory=args.driver_memory, shuffle_partitions=8,
                                    conf={"spark.local.dir": str(work / "spark-local")}))
    run_date = dt.date.fromisoformat(RUN_DATE)
    data = work / f"data-{args.users}u-{args.items}i-{args.interactions}x"
    if not (data / "interactions" / "_SUCCESS").exists():
        write_datasets(generate_datasets(spark, args.users, args.items, args.interactions,
                                         end_date=run_date), str(data))
    path, schema = str(data / "interactions"), str(data / "schemas" / "interactions.json")
    settings = Settings()

    def plain_count():
        return spark.read.option("header", True).csv(path).count()

    def plain_parse():
        spark.read.option("header", True).csv(path).write.format("noop").mode("overwrite").save()

    def read_as_validation_does():
        return readers.read_raw(spark, path, INTERACTIONS, "csv", ",", None, ())[0]

    def read_cache():
        frame = read_as_validation_does().persist()
        try:
            return frame.count()
        finally:
            frame.unpersist()

    def hash_duplicates():
        frame = read_as_validation_does()
        key = F.xxhash64(*[F.col(c) for c in frame.columns if c != columns.SOURCE_FILE])
        return frame.groupBy(key).count().filter("count > 1").count()

    def validate():
        with load_datasets(spark, settings, path, schemas=[schema], run_date=run_date) as result:
            return result.interactions.count()

    as_text = csv.ConvertOptions(column_types={c: pa.string() for c in
                                               spark.read.option("header", True).csv(path).columns})
    files = sorted(glob.glob(f"{path}/*.csv"))

    def arrow_floor():
        table = pa.concat_tables([csv.read_csv(f, convert_options=as_text) for f in files])
        typed = [pc.cast(table["TIMESTAMP"], pa.int64()), pc.cast(table["EVENT_VALUE"], pa.float64())]
        too_long = pc.greater(pc.utf8_length(table["USER_ID"]), settings.validation.max_id_length)
        duplicates = pd.util.hash_pandas_object(table.to_pandas(), index=False).duplicated()
        return int(duplicates.sum()) + int(pc.sum(too_long).as_py() or 0), typed

    timings = {"plain_count": plain_count, "plain_parse": plain_parse, "read_cache": read_cache,
               "hash_duplicates": hash_duplicates, "validate": validate, "arrow_floor": arrow_floor}
    for fn in timings.values():
        fn()  # warm-up: JIT, file cache
    each: dict[str, list[float]] = {name: [] for name in timings}
    for _ in range(args.repeats):
        for name, fn in timings.items():
            start = time.perf_counter()
            fn()
            each[name].append(round(time.perf_counter() - start, 2))
    best = {name: min(values) for name, values in each.items()}
    result = {"args": vars(args), "rows": plain_count(), "seconds_each": each, "seconds": best,
              "ratio_to_plain_count": round(best["validate"] / best["plain_count"], 2),
              "ratio_to_plain_parse": round(best["validate"] / best["plain_parse"], 2),
              "read_cache_ratio_to_plain_count": round(best["read_cache"] / best["plain_count"], 2),
              "hash_duplicates_ratio_to_plain_count": round(best["hash_duplicates"] / best["plain_count"], 2),
              "arrow_floor_ratio_to_plain_count": round(best["arrow_floor"] / best["plain_count"], 2),
              "load_average": os.getloadavg(), "cpus": os.cpu_count()}
    print(json.dumps(result, indent=2))
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
