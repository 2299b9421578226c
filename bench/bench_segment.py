"""User segments: quality on MovieLens (lift over random users) and speed against a cross join.

``quality``: ml-latest-small ratings with a per-user random 80/20 hold-out (the stratified-user
protocol, seeded); an ALS model (the user-personalization recipe, default settings) trained on
the 80%. For the most popular items of the training part and for genre queries on movies.csv:

* already_interacted: the share of a segment's users who rated the item (any item of the genre)
  in training: the hold-out holds no second rating of the same movie, so they cannot be hits;
* hit rate@N: the share of a segment's N users who rate the item (for a genre: any item of it) in
  the hold-out; lift@N: hit rate / base rate, the base rate being the share of all users who do
  (a random segment has lift 1). Also the mean number of hold-out ratings of the segment's items
  per segment user over the same mean for all users (``count_lift``).
* variants: ALS segments with and without ``exclude_interacted`` (training ratings), genre
  segments with each aggregation (mean, max), and baselines: the N most active users (by training
  ratings) and, for genres, the N users with most training ratings in the genre (both also with
  the exclusion). Hit rates are pooled over the items or queries of a group.

``speed``: segments of a fraction of the users (default 1% of 100k) for many items (default 500)
on generated data with random factors, timed against the cross-join baseline (users x query items,
dot product by ``aggregate(zip_with)``, window ``row_number``), both written to the ``noop`` sink,
in the same run, alternately ``--repeats`` times (the best time of each is reported, so the first
run's Python worker start-up does not count); the two outputs are then compared. Examples::

    nice .venv/bin/python bench/bench_segment.py quality
    nice .venv/bin/python bench/bench_segment.py speed --users 100000 --items 20000 --queries 500
    nice .venv/bin/python bench/bench_segment.py speed --users 2000 --items 600 --queries 50  # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# $BATCHREC_SHARED_DATA (as the tests), else ../shared/data beside the checkout.
DATA = Path(os.environ.get("BATCHREC_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data") \
    / "ml-latest-small"
POPULAR_ITEMS = 20
SIZES = (25, 50)
GENRE_QUERIES = (
    'ITEMS.genres = "Comedy"', 'ITEMS.genres = "Drama"', 'ITEMS.genres = "Horror"',
    'ITEMS.genres = "Animation"', 'ITEMS.genres = "Documentary"', 'ITEMS.genres = "Musical"',
    'ITEMS.genres = "Western"', 'ITEMS.genres = "War"', 'ITEMS.genres = "Film-Noir"',
    'ITEMS.genres = "Sci-Fi" AND ITEMS.genres = "Action"',
    'ITEMS.genres = "Comedy" AND ITEMS.genres = "Romance"',
    'ITEMS.genres = "Animation" AND ITEMS.genres = "Children"',
    'ITEMS.genres = "Crime" AND ITEMS.genres = "Thriller"',
)


def spark_session(args, name):
    from batchrec.config import SparkSettings
    from batchrec.spark import get_spark

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # executors need this venv's numpy
    return get_spark(SparkSettings(master=args.master, driver_memory=args.driver_memory, shuffle_partitions=4,
                                   app_name=name, log_level="ERROR"))


# --- quality -------------------------------------------------------------------------------------

def quality(args) -> dict:
    from pyspark.sql import Window, functions as F

    from batchrec.columns import EVENT_TYPE, EVENT_VALUE, ITEM_ID, TIMESTAMP, USER_ID
    from batchrec.config import EvaluateSettings, load_settings
    from batchrec.evaluation import splits
    from batchrec.recipes import resolve_params, train_recipe
    from batchrec.scoring import segments as S
    from batchrec.scoring.attribute_query import SEGMENT_ID, matching_items, parse_attribute_query

    spark = spark_session(args, "bench-segment-quality")
    data = Path(args.data)
    raw = spark.read.csv(str(data / "ratings.csv"), header=True)
    ratings = raw.select(F.col("userId").alias(USER_ID), F.col("movieId").alias(ITEM_ID),
                         F.col("rating").cast("double").alias(EVENT_VALUE),
                         F.col("timestamp").cast("long").alias(TIMESTAMP), F.lit("rating").alias(EVENT_TYPE))
    items = spark.read.csv(str(data / "movies.csv"), header=True).select(
        F.col("movieId").alias(ITEM_ID), F.col("genres").alias("GENRES"))
    settings = load_settings()
    split = splits.split_interactions(ratings, splits.STRATIFIED_USER,
                                      EvaluateSettings(test_fraction=args.holdout, seed=args.seed))
    train = split.train.persist()
    truth = split.truth.select(USER_ID, ITEM_ID).persist()  # hold-out pairs, none seen in training
    started = time.perf_counter()
    model = train_recipe(spark, "user-personalization", train, settings.prepare,
                         resolve_params("user-personalization", settings))
    arts = {k: v.persist() for k, v in model.artifacts.items()}
    train_seconds = time.perf_counter() - started
    seen = train.select(USER_ID, ITEM_ID).distinct().persist()
    users = arts["user_map"].select(USER_ID).persist()
    n_users = users.count()
    activity = seen.groupBy(USER_ID).count()

    popular = [r[ITEM_ID] for r in seen.groupBy(ITEM_ID).count()
               .orderBy(F.desc("count"), ITEM_ID).limit(args.popular).collect()]
    item_groups = spark.createDataFrame([(i, i) for i in popular], f"{SEGMENT_ID} string, {ITEM_ID} string")
    queries = [parse_attribute_query(t) for t in GENRE_QUERIES]
    genre_groups = matching_items(items, queries).join(arts["item_map"].select(ITEM_ID), ITEM_ID, "left_semi")
    genre_groups = genre_groups.persist()
    names = {q.segment_id: q.text for q in queries}

    def hits_of(group_items):
        """Hold-out ratings per (segment, user) of the segment's items, and per-segment totals:
        hold-out raters and ratings among all users and among the eligible users (those without a
        training rating of the segment's items: the population ``exclude_interacted`` leaves)."""
        hits = (truth.join(group_items, ITEM_ID).groupBy(SEGMENT_ID, USER_ID)
                .agg(F.count(F.lit(1)).alias("ratings"))).persist()
        touched = seen.join(group_items, ITEM_ID).select(SEGMENT_ID, USER_ID).distinct()
        fresh = hits.join(touched, [SEGMENT_ID, USER_ID], "left_anti")
        stats = {}
        for name, frame in (("all", hits), ("eligible", fresh)):
            for r in frame.groupBy(SEGMENT_ID).agg(F.count(F.lit(1)).alias("raters"),
                                                   F.sum("ratings").alias("ratings")).collect():
                stats.setdefault(r[SEGMENT_ID], {})[name] = (r["raters"], r["ratings"])
        touched = touched.persist()
        for r in touched.groupBy(SEGMENT_ID).count().collect():
            stats.setdefault(r[SEGMENT_ID], {})["touched"] = r["count"]
        totals = {}
        for sid in (r[SEGMENT_ID] for r in group_items.select(SEGMENT_ID).distinct().collect()):
            one = stats.get(sid, {})
            totals[sid] = (*one.get("all", (0, 0)), n_users - one.get("touched", 0), *one.get("eligible", (0, 0)))
        return hits, totals, touched.withColumn("_seen", F.lit(1))

    def evaluate(group, segment_rows, n):
        """Pooled hit rate, base rate and lifts of ``[segment_id, USER_ID]`` rows, and per segment."""
        hits, totals, touched = group
        joined = (segment_rows.select(SEGMENT_ID, USER_ID).join(hits, [SEGMENT_ID, USER_ID], "left")
                  .join(touched, [SEGMENT_ID, USER_ID], "left"))
        per_segment = {r[SEGMENT_ID]: (r["slots"], r["hits"], r["ratings"], r["seen"]) for r in
                       joined.groupBy(SEGMENT_ID).agg(
                           F.count(F.lit(1)).alias("slots"), F.count("ratings").alias("hits"),
                           F.coalesce(F.sum("ratings"), F.lit(0)).alias("ratings"),
                           F.count("_seen").alias("seen")).collect()}
        return pooled(per_segment, totals, n), {sid: pooled(per_segment, totals, n, [sid]) for sid in totals}

    def pooled(per_segment, totals, n, only=None):
        """lift: against a random user; eligible_lift: against a random eligible user (the fair
        baseline under exclude_interacted: a random user who never rated the segment's items)."""
        sids = list(totals) if only is None else only
        slots, hit, rated, seen_before = (sum(per_segment.get(s, (0, 0, 0, 0))[i] for s in sids) for i in range(4))
        raters, ratings, eligible, fresh_raters, fresh_ratings = (sum(totals[s][i] for s in sids) for i in range(5))
        base_rate, base_count = raters / (n_users * len(sids)), ratings / (n_users * len(sids))
        fresh_rate = fresh_raters / eligible if eligible else 0.0
        hit_rate = hit / max(slots, 1)
        return {"N": n, "segments": len(sids), "slots": slots,
                "already_interacted": round(seen_before / max(slots, 1), 4), "hit_rate": round(hit_rate, 4),
                "base_rate": round(base_rate, 4), "lift": round(hit_rate / base_rate, 2) if base_rate else None,
                "count_lift": round(rated / max(slots, 1) / base_count, 2) if base_count else None,
                "eligible_base_rate": round(fresh_rate, 4),
                "eligible_lift": round(hit_rate / fresh_rate, 2) if fresh_rate else None}

    def top_users(counts, group_items, n, exclude):
        """Baseline: the n users with the highest ``count`` per segment (then USER_ID), optionally
        without the users who rated the segment's items in training."""
        pairs = group_items.select(SEGMENT_ID).distinct().crossJoin(counts)
        if exclude:
            touched = seen.join(group_items, ITEM_ID).select(SEGMENT_ID, USER_ID).distinct()
            pairs = pairs.join(touched, [SEGMENT_ID, USER_ID], "left_anti")
        order = Window.partitionBy(SEGMENT_ID).orderBy(F.desc("count"), USER_ID)
        return pairs.withColumn("r", F.row_number().over(order)).where(F.col("r") <= n)

    results = {"split": {k: split.stats[k] for k in ("users", "items", "train_interactions", "test_interactions")},
               "train_seconds": round(train_seconds, 1), "popular_items": [], "genres": [], "per_genre": []}
    item_judge, genre_judge = hits_of(item_groups), hits_of(genre_groups)
    for n in args.sizes:
        for exclude in (False, True):
            tag = {"exclude_interacted": exclude}
            excluded = seen if exclude else None
            rows = S.item_affinity(arts, item_groups, S.segment_size(n), exclude=excluded)
            results["popular_items"].append({"method": "als item-affinity", **tag,
                                             **evaluate(item_judge, rows, n)[0]})
            rows = top_users(activity, item_groups, n, exclude)
            results["popular_items"].append({"method": "most active users", **tag,
                                             **evaluate(item_judge, rows, n)[0]})
            for aggregation in S.AGGREGATIONS:
                rows = S.item_attribute_affinity(arts, items, queries, S.segment_size(n), exclude=excluded,
                                                 aggregation=aggregation)
                total, by_segment = evaluate(genre_judge, rows, n)
                results["genres"].append({"method": f"als attribute-affinity ({aggregation})", **tag, **total})
                if n == max(args.sizes):
                    results["per_genre"] += [{"query": names[sid], "aggregation": aggregation, **tag, **one}
                                             for sid, one in sorted(by_segment.items(), key=lambda x: names[x[0]])]
            rows = top_users(activity, genre_groups, n, exclude)
            results["genres"].append({"method": "most active users", **tag,
                                      **evaluate(genre_judge, rows, n)[0]})
            if not exclude:  # with the exclusion nobody keeps a training rating in the genre
                genre_activity = seen.join(genre_groups, ITEM_ID).groupBy(SEGMENT_ID, USER_ID).count()
                rows = _top_in_group(genre_activity, n)
                results["genres"].append({"method": "most active in the genre", **tag,
                                          **evaluate(genre_judge, rows, n)[0]})
    spark.stop()
    return results


def _top_in_group(group_activity, n):
    """Baseline: the n users with most training ratings of the segment's items."""
    from pyspark.sql import Window, functions as F

    from batchrec.columns import USER_ID
    from batchrec.scoring.attribute_query import SEGMENT_ID

    order = Window.partitionBy(SEGMENT_ID).orderBy(F.desc("count"), USER_ID)
    return group_activity.withColumn("r", F.row_number().over(order)).where(F.col("r") <= n)


# --- speed ---------------------------------------------------------------------------------------

def speed(args) -> dict:
    import datetime as dt

    from pyspark.sql import Window, functions as F

    from batchrec.columns import ITEM_ID, ITEM_IDX, USER_ID, USER_IDX
    from batchrec.datasets.generate import generate_datasets
    from batchrec.datasets.indexing import build_id_map
    from batchrec.scoring import segments as S
    from batchrec.scoring.attribute_query import SEGMENT_ID

    spark = spark_session(args, "bench-segment-speed")
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def timed(name, func):
        start = time.perf_counter()
        result = func()
        timings[name] = round(time.perf_counter() - start, 2)
        print(f"{name}: {timings[name]} s", flush=True)
        return result

    tag = f"{args.users}u-{args.items}i-r{args.rank}"
    model_dir = work / f"segment-model-{tag}"
    if not (model_dir / "_DONE").exists():
        def build():
            frames = generate_datasets(spark, args.users, args.items, args.interactions, seed=42,
                                       end_date=dt.date(2026, 11, 22))
            for kind, col, idx in (("users", USER_ID, USER_IDX), ("items", ITEM_ID, ITEM_IDX)):
                id_map = build_id_map(frames[kind], col, idx)
                id_map.write.mode("overwrite").parquet(str(model_dir / f"{kind[:-1]}_map"))
                ids = spark.read.parquet(str(model_dir / f"{kind[:-1]}_map"))
                vec = F.array(*[(F.randn(7 * (kind == "users") + 1000 * j) * 0.1).cast("float")
                                for j in range(args.rank)])
                ids.select(idx, vec.alias("features")).write.mode("overwrite").parquet(
                    str(model_dir / f"{kind[:-1]}_factors"))
            (model_dir / "_DONE").write_text("ok\n")
        timed("generate_model", build)
    arts = {name: spark.read.parquet(str(model_dir / name)).persist()
            for name in ("user_map", "item_map", "user_factors", "item_factors")}
    for frame in arts.values():
        frame.count()
    queries = (arts["item_map"].orderBy(F.xxhash64(ITEM_ID)).limit(args.queries)
               .select(F.col(ITEM_ID).alias(SEGMENT_ID), ITEM_ID).persist())
    queries.count()
    size = S.segment_size(fraction=args.fraction)
    n = size.users(args.users)

    def ours():
        return S.item_affinity(arts, queries, size)

    def cross_join():
        users = arts["user_factors"].join(arts["user_map"], USER_IDX).select(USER_ID, F.col("features").alias("u"))
        qv = (queries.join(arts["item_map"], ITEM_ID).join(arts["item_factors"], ITEM_IDX)
              .select(SEGMENT_ID, F.col("features").alias("v")))
        dot = F.aggregate(F.zip_with("u", "v", lambda x, y: x * y), F.lit(0.0).cast("float"), lambda a, x: a + x)
        scored = users.crossJoin(F.broadcast(qv)).select(SEGMENT_ID, USER_ID, dot.cast("double").alias("score"))
        order = Window.partitionBy(SEGMENT_ID).orderBy(F.desc("score"), USER_ID)
        return scored.withColumn("rank", F.row_number().over(order)).where(F.col("rank") <= n)

    noop = lambda df: df.write.format("noop").mode("overwrite").save()  # noqa: E731
    runs: dict[str, list] = {}
    for attempt in range(args.repeats):  # alternated; the best of each is reported
        for name, build in (("batchrec_item_affinity_noop", ours), ("cross_join_window_noop", cross_join)):
            if name.startswith("cross") and args.skip_baseline:
                continue
            timed(f"{name}#{attempt + 1}", lambda: noop(build()))
            runs.setdefault(name, []).append(timings.pop(f"{name}#{attempt + 1}"))
    timings.update({name: min(values) for name, values in runs.items()})
    # Same segments? Compare the user sets of a sample of segments (float32 BLAS vs Spark's
    # float sums may order near-equal scores differently).
    sample = queries.orderBy(SEGMENT_ID).limit(args.compare_segments).select(SEGMENT_ID)
    mine = ours().join(sample, SEGMENT_ID).select(SEGMENT_ID, USER_ID).collect()
    comparison = {}
    if not args.skip_baseline:
        theirs = cross_join().join(sample, SEGMENT_ID).select(SEGMENT_ID, USER_ID).collect()
        a, b = {}, {}
        for rows, into in ((mine, a), (theirs, b)):
            for r in rows:
                into.setdefault(r[SEGMENT_ID], set()).add(r[USER_ID])
        overlaps = [len(a.get(s, set()) & b.get(s, set())) / max(len(b.get(s, ())), 1) for s in b]
        comparison = {"compared_segments": len(b), "identical_sets": sum(a.get(s) == b[s] for s in b),
                      "mean_overlap": round(sum(overlaps) / max(len(overlaps), 1), 6)}
    result = {"sizes": {k: v for k, v in vars(args).items() if k != "func"}, "users_per_segment": n,
              "plan": S.plan_scans(args.queries, n)[0], "timings_s": timings, "all_runs_s": runs, **comparison}
    if "cross_join_window_noop" in timings:
        result["speedup"] = round(timings["cross_join_window_noop"] / timings["batchrec_item_affinity_noop"], 2)
    spark.stop()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--output", default=None, help="write the JSON result here too")
    sub = parser.add_subparsers(dest="command", required=True)
    q = sub.add_parser("quality", help="lift on MovieLens ml-latest-small")
    q.add_argument("--data", default=str(DATA), help="folder with ratings.csv and movies.csv")
    q.add_argument("--holdout", type=float, default=0.2)
    q.add_argument("--seed", type=int, default=42)
    q.add_argument("--popular", type=int, default=POPULAR_ITEMS)
    q.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=list(SIZES))
    q.set_defaults(func=quality)
    s = sub.add_parser("speed", help="item-affinity vs a cross join on generated data")
    s.add_argument("--workdir", default="/tmp/batchrec-bench-segment")
    s.add_argument("--users", type=int, default=100_000)
    s.add_argument("--items", type=int, default=20_000)
    s.add_argument("--interactions", type=int, default=1_000)
    s.add_argument("--rank", type=int, default=64)
    s.add_argument("--queries", type=int, default=500)
    s.add_argument("--fraction", type=float, default=0.01)
    s.add_argument("--compare-segments", type=int, default=20)
    s.add_argument("--skip-baseline", action="store_true")
    s.add_argument("--repeats", type=int, default=2, help="timed runs of each (alternated); the best is kept")
    s.set_defaults(func=speed)
    args = parser.parse_args(argv)
    result = args.func(args)
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
