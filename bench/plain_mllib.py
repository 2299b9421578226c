"""The nightly job as a team would write it with plain Spark MLlib: the baseline of bench_e2e.py.

Read the interactions CSV, index user and item IDs with ``StringIndexer``, train ``ALS`` (implicit
feedback, MLlib's defaults but for ``--rank``) on the number of interactions per user-item pair,
``recommendForAllUsers(num_results + largest history)`` so that ``num_results`` are left after the
anti-join that drops the pairs each user has seen, keep the top ``num_results`` per user by score
(``row_number``, ties by item ID), and write Parquet (user_id, item_id, rank, score). No validation,
no rejects, no solution version, no Delta.

Usage::

    python bench/plain_mllib.py --interactions DIR/interactions --output OUT.parquet --rank 64
"""

from __future__ import annotations

import argparse
import json
import time

USER_ID, ITEM_ID = "USER_ID", "ITEM_ID"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interactions", required=True, help="CSV file or folder with a header row")
    parser.add_argument("--output", required=True, help="Parquet folder for the recommendations")
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--num-results", type=int, default=100)
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--shuffle-partitions", type=int, default=8)
    args = parser.parse_args(argv)

    from pyspark.ml.feature import IndexToString, StringIndexer
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import SparkSession, Window
    from pyspark.sql import functions as F

    started = time.perf_counter()
    spark = (SparkSession.builder.master(args.master).appName("plain-mllib")
             .config("spark.driver.memory", args.driver_memory)
             .config("spark.sql.shuffle.partitions", str(args.shuffle_partitions))
             .config("spark.ui.enabled", "false").getOrCreate())
    spark.sparkContext.setLogLevel("WARN")
    timings = {"start_spark": time.perf_counter() - started}

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = now - since
        return now

    t = time.perf_counter()
    events = spark.read.option("header", True).csv(args.interactions).select(USER_ID, ITEM_ID)
    pairs = events.groupBy(USER_ID, ITEM_ID).agg(F.count(F.lit(1)).cast("float").alias("rating"))
    users = StringIndexer(inputCol=USER_ID, outputCol="user").fit(pairs)
    items = StringIndexer(inputCol=ITEM_ID, outputCol="item").fit(pairs)
    indexed = items.transform(users.transform(pairs)).select(
        F.col("user").cast("int"), F.col("item").cast("int"), "rating").cache()
    longest = indexed.groupBy("user").count().agg(F.max("count")).first()[0]
    t = lap("read_index", t)

    model = ALS(rank=args.rank, implicitPrefs=True, userCol="user", itemCol="item",
                ratingCol="rating").fit(indexed)
    t = lap("fit", t)

    candidates = (model.recommendForAllUsers(args.num_results + longest)
                  .select("user", F.explode("recommendations").alias("r"))
                  .select("user", F.col("r.item").alias("item"), F.col("r.rating").alias("score")))
    unseen = candidates.join(indexed.select("user", "item"), ["user", "item"], "left_anti")
    named = IndexToString(inputCol="item", outputCol="item_id", labels=items.labelsArray[0]).transform(
        IndexToString(inputCol="user", outputCol="user_id", labels=users.labelsArray[0]).transform(unseen))
    order = Window.partitionBy("user").orderBy(F.col("score").desc(), F.col("item_id").asc())
    top = (named.withColumn("rank", F.row_number().over(order)).where(F.col("rank") <= args.num_results)
           .select("user_id", "item_id", "rank", "score"))
    top.write.mode("overwrite").parquet(args.output)
    lap("recommend_write", t)
    timings["total"] = time.perf_counter() - started
    print(json.dumps({"plain_mllib": {k: round(v, 2) for k, v in timings.items()},
                      "largest_history": longest}))
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
