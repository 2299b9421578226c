"""Benchmark: filtered vs unfiltered top-N scoring over every user, same model, same session.

Generated data (``batchrec.datasets.generate``: items with CATEGORY and PRICE, users with AGE,
interactions with four event types) and Gaussian factors (the filter cost does not depend on how
the factors were trained). Each run scores every user's top N with seen items masked in the numpy
blocks and writes to the ``noop`` sink; the filtered runs include compiling the filter, collecting
its item sets and attaching each user's sets (everything the batch job's eligibility step does):

* ``unfiltered``;
* ``item_attribute``: ``INCLUDE ItemID WHERE Items.PRICE < 60 | EXCLUDE ItemID WHERE Items.CATEGORY IN ("c1")``
  (request-independent: one global mask);
* ``item_attribute_if``: ``EXCLUDE ItemID WHERE Items.CATEGORY IN ("c1", "c2") IF CurrentUser.AGE < 30``
  (one item set, membership per user);
* ``interactions``: ``EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchase", "cart")``
  (per-user item pairs from each user's latest 100 interactions per event type).

Each filtered output is then checked: no recommended item violates its filter. The ratio
filtered / unfiltered time is reported per filter. Usage (results belong in docs/benchmarks.md)::

    nice -n 10 .venv/bin/python bench/bench_filters.py --workdir /tmp/batchrec-bench-filters
    .venv/bin/python bench/bench_filters.py --users 300 --items 60 --interactions 3000 --rank 8 --top 10  # smoke
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

FILTERS = {
    "item_attribute": 'INCLUDE ItemID WHERE Items.PRICE < 60 | EXCLUDE ItemID WHERE Items.CATEGORY IN ("c1")',
    "item_attribute_if": 'EXCLUDE ItemID WHERE Items.CATEGORY IN ("c1", "c2") IF CurrentUser.AGE < 30',
    "interactions": 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchase", "cart")',
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="/tmp/batchrec-bench-filters")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--interactions", type=int, default=5_000_000)
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--top", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=1, help="Runs per variant; the best time counts.")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="8g")
    args = parser.parse_args(argv)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # executors need this venv's numpy/pyarrow

    from pyspark.sql import functions as F

    from batchrec.columns import ITEM_ID, ITEM_IDX, USER_ID, USER_IDX
    from batchrec.config import SparkSettings
    from batchrec.datasets.generate import generate_datasets
    from batchrec.datasets.indexing import build_id_map
    from batchrec.filters.compile import compile_filter
    from batchrec.scoring import topk
    from batchrec.scoring.masks import attach_filter_columns, collect_filter
    from batchrec.spark import get_spark

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    spark = get_spark(SparkSettings(master=args.master, driver_memory=args.driver_memory, shuffle_partitions=8,
                                    app_name="bench-filters", conf={"spark.local.dir": str(work / "spark-local")}))
    tag = f"{args.users}u-{args.items}i-{args.interactions}x"
    data_dir = work / f"data-{tag}"
    if not (data_dir / "_DONE").exists():
        frames = generate_datasets(spark, args.users, args.items, args.interactions, seed=42,
                                   end_date=dt.date(2026, 11, 22))
        for name, frame in frames.items():
            frame.write.mode("overwrite").parquet(str(data_dir / name))
        (data_dir / "_DONE").write_text("ok\n")
    datasets = {name: spark.read.parquet(str(data_dir / name)) for name in ("items", "users", "interactions")}
    interactions = datasets["interactions"]

    item_map = build_id_map(datasets["items"].select(ITEM_ID), ITEM_ID, ITEM_IDX).persist()
    user_map = build_id_map(datasets["users"].select(USER_ID), USER_ID, USER_IDX).persist()

    def gaussian(seed):
        return F.array(*[(F.randn(seed * 1000 + j) * 0.1).cast("float") for j in range(args.rank)])

    item_factors = item_map.select(ITEM_IDX, ITEM_ID, gaussian(2).alias(topk.FEATURES))
    matrix = topk.collect_item_matrix(item_factors)
    seen = (interactions.select(USER_ID, ITEM_ID).distinct().join(F.broadcast(item_map), ITEM_ID)
            .groupBy(USER_ID).agg(F.collect_set(ITEM_IDX).alias(topk.SEEN)))
    users = (user_map.select(USER_IDX, USER_ID, gaussian(1).alias(topk.FEATURES))
             .join(seen, USER_ID, "left").persist())
    n_users = users.count()
    requests = user_map.select(USER_ID)

    def noop(df):
        df.write.format("noop").mode("overwrite").save()

    def run(expression):
        if expression is None:
            return topk.score_blocks(users, matrix, args.top)
        elig = compile_filter(spark, expression, None, datasets, requests, key=USER_ID)
        scoring = attach_filter_columns(users, elig) if not elig.is_global else users
        return topk.score_blocks(scoring, matrix, args.top, item_filter=collect_filter(elig))

    timings: dict[str, float] = {}
    for name, expression in [("unfiltered", None)] + list(FILTERS.items()):
        best = None
        for _ in range(args.repeats):
            start = time.perf_counter()
            noop(run(expression))
            elapsed = time.perf_counter() - start
            best = elapsed if best is None else min(best, elapsed)
        timings[name] = round(best, 2)
        print(f"{name}: {timings[name]} s", flush=True)

    violations = check(run, datasets)
    result = {"sizes": vars(args), "users_scored": n_users, "timings_s": timings,
              "ratio_to_unfiltered": {name: round(timings[name] / timings["unfiltered"], 2) for name in FILTERS},
              "violations": violations}
    print(json.dumps(result, indent=2))
    (work / f"result-{tag}-r{args.rank}-top{args.top}.json").write_text(json.dumps(result, indent=2))
    spark.stop()
    return 0 if not any(violations.values()) else 1


def check(run, datasets) -> dict:
    """Recommended items that break their filter (all counts must be 0), computed independently."""
    from pyspark.sql import Window, functions as F

    from batchrec.columns import ITEM_ID, TIMESTAMP, USER_ID

    items, users, interactions = datasets["items"], datasets["users"], datasets["interactions"]
    c1 = F.array_contains(F.split("CATEGORY", r"\|"), "c1")
    c12 = c1 | F.array_contains(F.split("CATEGORY", r"\|"), "c2")
    out = {}
    recs = run(FILTERS["item_attribute"]).join(items, ITEM_ID)
    out["item_attribute"] = recs.where(c1 | ~(F.col("PRICE") < 60)).count()
    recs = run(FILTERS["item_attribute_if"]).join(items, ITEM_ID).join(users.select(USER_ID, "AGE"), USER_ID)
    out["item_attribute_if"] = recs.where(c12 & (F.col("AGE") < 30)).count()
    # Each user's latest 100 interactions per event type (ties: item ID descending, as the compiler).
    latest = Window.partitionBy(USER_ID, F.lower("EVENT_TYPE")).orderBy(F.desc(TIMESTAMP), F.desc(ITEM_ID))
    bought = (interactions.withColumn("n", F.row_number().over(latest))
              .where((F.col("n") <= 100) & F.lower("EVENT_TYPE").isin("purchase", "cart"))
              .select(USER_ID, ITEM_ID).distinct())
    out["interactions"] = run(FILTERS["interactions"]).join(bought, [USER_ID, ITEM_ID]).count()
    return out


if __name__ == "__main__":
    sys.exit(main())
