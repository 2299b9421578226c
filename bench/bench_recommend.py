"""Benchmark: batchrec's blocked top-N against ALSModel.recommendForAllUsers + join, same model.

One process, one SparkSession, one ALS model trained on generated data (default 100k users,
20k items, 5M interactions, rank 64), one fixed seen-set (the distinct user-item pairs of the data):

* batchrec: ``recommend_for_users`` (top N with seen items masked inside the numpy blocks), written
  to the ``noop`` sink (and, separately, to a Delta table, as the ``recommend`` command does);
* Spark: ``recommendForAllUsers(N + largest history)``, explode, anti-join the seen pairs, keep the
  top N per user by score (then item index), written to the ``noop`` sink. Integer IDs are left
  as they are (no mapping back to string IDs): the baseline is timed at its cheapest.

Then both top-N lists are compared for a sample of users. Usage (see docs/benchmarks.md)::

    nice -n 10 .venv/bin/python bench/bench_recommend.py --workdir /tmp/batchrec-bench
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="/tmp/batchrec-bench")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--interactions", type=int, default=5_000_000)
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--max-iter", type=int, default=5)
    parser.add_argument("--top", type=int, default=100)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="8g")
    parser.add_argument("--sample-users", type=int, default=500)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--compare-only", action="store_true",
                        help="Skip the timings; compare the Delta output of an earlier run with the baseline.")
    parser.add_argument("--random-factors", action="store_true",
                        help="Gaussian factors instead of training ALS (when training is too slow).")
    args = parser.parse_args(argv)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # executors need this venv's numpy/pyarrow

    from pyspark.ml.recommendation import ALS, ALSModel
    from pyspark.sql import Window, functions as F

    from batchrec.columns import ITEM_ID, ITEM_IDX, USER_ID, USER_IDX
    from batchrec.config import RecommendSettings, SparkSettings
    from batchrec.datasets.generate import generate_datasets
    from batchrec.datasets.indexing import build_id_map
    from batchrec.scoring.recommend import recommend_for_users
    from batchrec.sinks import delta
    from batchrec.spark import get_spark

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    spark = get_spark(SparkSettings(master=args.master, driver_memory=args.driver_memory,
                                    shuffle_partitions=8, app_name="bench-recommend",
                                    conf={"spark.local.dir": str(work / "spark-local")}))
    spark.sparkContext.setCheckpointDir(str(work / "checkpoints"))
    tag = f"{args.users}u-{args.items}i-{args.interactions}x-r{args.rank}-it{args.max_iter}"
    data_dir, model_dir = work / f"data-{args.users}u-{args.items}i-{args.interactions}x", work / f"als-{tag}"
    timings: dict[str, float] = {}

    def timed(name, func):
        start = time.perf_counter()
        result = func()
        timings[name] = round(time.perf_counter() - start, 1)
        print(f"{name}: {timings[name]} s", flush=True)
        return result

    if not (data_dir / "_DONE").exists():
        def generate():
            frames = generate_datasets(spark, args.users, args.items, args.interactions, seed=42,
                                       end_date=dt.date(2026, 11, 22))
            frames["interactions"].select(USER_ID, ITEM_ID).write.mode("overwrite").parquet(str(data_dir / "pairs"))
            pairs = spark.read.parquet(str(data_dir / "pairs"))
            build_id_map(pairs, USER_ID, USER_IDX).write.mode("overwrite").parquet(str(data_dir / "user_map"))
            build_id_map(pairs, ITEM_ID, ITEM_IDX).write.mode("overwrite").parquet(str(data_dir / "item_map"))
            (data_dir / "_DONE").write_text("ok\n")
        timed("generate_and_index", generate)
    pairs = spark.read.parquet(str(data_dir / "pairs"))
    user_map = spark.read.parquet(str(data_dir / "user_map"))
    item_map = spark.read.parquet(str(data_dir / "item_map"))
    indexed = (pairs.join(F.broadcast(item_map), ITEM_ID).join(user_map, USER_ID)
               .groupBy(USER_IDX, ITEM_IDX).agg(F.count(F.lit(1)).cast("float").alias("confidence")))

    if args.random_factors:
        model_dir = work / f"random-{tag}"
        if not (model_dir / "_DONE").exists():
            def random_model():
                for name, frame in (("userFactors", user_map.select(F.col(USER_IDX).alias("id"))),
                                    ("itemFactors", item_map.select(F.col(ITEM_IDX).alias("id")))):
                    seed = 1 if name == "userFactors" else 2
                    vec = F.array(*[(F.randn(seed * 1000 + j) * 0.1).cast("float") for j in range(args.rank)])
                    frame.select("id", vec.alias("features")).write.mode("overwrite").parquet(str(model_dir / name))
                (model_dir / "_DONE").write_text("ok\n")
            timed("random_factors", random_model)
        jmodel = spark._jvm.org.apache.spark.ml.recommendation.ALSModel(
            "als-random", args.rank, spark.read.parquet(str(model_dir / "userFactors"))._jdf,
            spark.read.parquet(str(model_dir / "itemFactors"))._jdf)
        jmodel.setUserCol(USER_IDX).setItemCol(ITEM_IDX)
        model = ALSModel(jmodel)
    elif not (model_dir / "_DONE").exists():
        def train():
            als = ALS(rank=args.rank, maxIter=args.max_iter, regParam=0.1, alpha=10.0, implicitPrefs=True,
                      userCol=USER_IDX, itemCol=ITEM_IDX, ratingCol="confidence", seed=42,
                      coldStartStrategy="drop")
            als.fit(indexed).write().overwrite().save(str(model_dir / "model"))
            (model_dir / "_DONE").write_text("ok\n")
        timed("train_als", train)
    if not args.random_factors:
        model = ALSModel.load(str(model_dir / "model"))
    seen_idx = indexed.select(USER_IDX, ITEM_IDX).persist()
    n_seen = seen_idx.count()
    largest_history = seen_idx.groupBy(USER_IDX).count().agg(F.max("count")).first()[0]
    print(f"seen pairs {n_seen}, largest history {largest_history}", flush=True)

    artifacts = {
        "user_map": user_map, "item_map": item_map,
        "user_factors": model.userFactors.select(F.col("id").alias(USER_IDX), "features"),
        "item_factors": model.itemFactors.select(F.col("id").alias(ITEM_IDX), "features"),
        "popular_items": pairs.groupBy(ITEM_ID).agg(F.countDistinct(USER_ID).cast("double").alias("score"))
        .withColumn("rank", F.row_number().over(Window.orderBy(F.desc("score"), ITEM_ID)))
        .where(F.col("rank") <= 1000),
    }
    for name in ("user_factors", "item_factors", "popular_items"):
        artifacts[name] = artifacts[name].persist()
        artifacts[name].count()
    seen_pairs = pairs.select(USER_ID, ITEM_ID).persist()
    seen_pairs.count()
    settings = dataclasses.replace(RecommendSettings(), num_results=args.top)
    users = user_map.select(USER_ID)

    def ours():
        return recommend_for_users(spark, "user-personalization", artifacts, users, seen_pairs, args.top, settings)

    def baseline(subset=None):
        wanted = args.top + largest_history
        recs = (model.recommendForAllUsers(wanted) if subset is None
                else model.recommendForUserSubset(subset, wanted))
        flat = recs.select(F.col(USER_IDX), F.posexplode("recommendations").alias("pos", "rec")).select(
            USER_IDX, F.col(f"rec.{ITEM_IDX}").alias(ITEM_IDX), F.col("rec.rating").alias("score"))
        unseen = flat.join(seen_idx, [USER_IDX, ITEM_IDX], "left_anti")
        order = Window.partitionBy(USER_IDX).orderBy(F.desc("score"), F.asc(ITEM_IDX))
        return unseen.withColumn("rank", F.row_number().over(order)).where(F.col("rank") <= args.top)

    noop = lambda df: df.write.format("noop").mode("overwrite").save()  # noqa: E731
    out = str(work / "recs-delta")
    rows = None
    if not args.compare_only:
        timed("batchrec_noop", lambda: noop(ours()))
        if not args.skip_baseline:
            timed("spark_recommendForAllUsers_noop", lambda: noop(baseline()))
        rows = timed("batchrec_delta", lambda: delta.write_run(ours(), out, dt.date(2026, 11, 22), "bench",
                                                                tag, "user-personalization"))

    # Same top-N? Compare a sample of users from the Delta output with the baseline's lists.
    sample = user_map.orderBy(F.xxhash64(USER_ID)).limit(args.sample_users)
    if rows is not None:  # the Delta table just written
        mine = (spark.read.format("delta").load(out).join(sample.withColumnRenamed(USER_ID, "user_id"), "user_id")
                .join(item_map.withColumnRenamed(ITEM_ID, "item_id"), "item_id")
                .select(USER_IDX, "rank", ITEM_IDX, "score").collect())
    else:  # --compare-only: the same function, for the sampled users
        mine = (recommend_for_users(spark, "user-personalization", artifacts, sample.select(USER_ID), seen_pairs,
                                    args.top, settings)
                .join(sample, USER_ID).join(item_map, ITEM_ID).select(USER_IDX, "rank", ITEM_IDX, "score").collect())
    comparison = {}
    if not args.skip_baseline:
        # The same baseline pipeline, for the sampled users only (recommendForUserSubset).
        theirs = baseline(sample.select(USER_IDX)).select(USER_IDX, "rank", ITEM_IDX, "score").collect()
        comparison = compare(mine, theirs, args.top)
    result = {"sizes": vars(args), "seen_pairs": n_seen, "largest_history": largest_history,
              "rows": rows, "timings_s": timings, **comparison}
    if "spark_recommendForAllUsers_noop" in timings and "batchrec_noop" in timings:
        result["speedup_noop"] = round(timings["spark_recommendForAllUsers_noop"] / timings["batchrec_noop"], 2)
    print(json.dumps(result, indent=2))
    (work / f"result-{tag}.json").write_text(json.dumps(result, indent=2))
    spark.stop()
    return 0


def compare(mine, theirs, top) -> dict:
    """Exact list agreement, set overlap, and score differences on the sampled users."""
    def lists(rows):
        out = {}
        for r in sorted(rows, key=lambda r: (r[0], r[1])):
            out.setdefault(r[0], []).append((r[2], r[3]))
        return out

    a, b = lists(mine), lists(theirs)
    users = sorted(set(a) | set(b))
    exact = sum(1 for u in users if [i for i, _ in a.get(u, [])] == [i for i, _ in b.get(u, [])])
    overlap = [len({i for i, _ in a.get(u, [])} & {i for i, _ in b.get(u, [])}) / top for u in users]
    diffs = [abs(sa - dict(b[u])[i]) for u in users if u in b for i, sa in a.get(u, []) if i in dict(b[u])]
    # Where the lists differ, is it only near-ties at float32 precision?
    boundary = [abs(a[u][-1][1] - b[u][-1][1]) for u in users if u in a and u in b]
    return {"sample_users": len(users), "identical_lists": exact,
            "mean_set_overlap": round(sum(overlap) / max(len(overlap), 1), 6),
            "max_score_diff_common_items": max(diffs) if diffs else None,
            "max_last_score_diff": max(boundary) if boundary else None}


if __name__ == "__main__":
    sys.exit(main())
