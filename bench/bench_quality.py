"""Recommendation quality on MovieLens (ml-latest-small) under batchrec's hold-out protocols.

Examples (results in docs/benchmarks.md)::

    # the published-table protocol: per-item random 75/25, K=10, every test rating relevant
    nice .venv/bin/python bench/bench_quality.py --protocol stratified-item --k 10
    # Personalize's metrics for each recipe
    nice .venv/bin/python bench/bench_quality.py --protocol personalize --k 5,10,25 \
        --recipes user-personalization popularity-count trending-now
    # ALS parameter sweep on validation data carved from the training part (never the test truth)
    nice .venv/bin/python bench/bench_quality.py --protocol stratified-item --tune --k 10

``--weights rating`` makes each rating its own event type weighted by its value (confidence =
1 + alpha * rating); the default ``binary`` gives every rating the weight 1 (confidence = 1 + alpha).
``--prepare KEY=VALUE`` overrides a ``[prepare]`` setting (e.g. ``half_life_days=365``); in a
``--grid``, keys written ``prepare.KEY`` sweep ``[prepare]`` settings beside ALS parameters.

Every recipe after the first is compared with the first on ndcg at the largest K: the ratio of
the means and a 90% paired bootstrap interval over the evaluated users
(``batchrec.evaluation.compare``), so a margin can be told from noise.

``--variant KEY=VALUE`` (repeatable) adds one more user-personalization run after the recipes,
with the ``--param`` values overlaid by the variant's: with ``--recipes user-personalization``
it compares two ALS configurations on the same split, e.g. the cg solver against MLlib's::

    nice .venv/bin/python bench/bench_quality.py --protocol stratified-item --k 10 \
        --recipes user-personalization --variant solver=cg
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import sys
import time
from pathlib import Path

from pyspark.sql import functions as F

from batchrec import logs
from batchrec.columns import EVENT_TYPE, EVENT_VALUE, ITEM_ID, TIMESTAMP, USER_ID
from batchrec.config import SparkSettings, load_settings, parse_literal
from batchrec.evaluation import compare, runner, splits
from batchrec.spark import get_spark

PREPARE_PREFIX = "prepare."
RATINGS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small" / "ratings.csv"
GRID = {"rank": (32, 64, 128), "regParam": (0.1, 1.0, 10.0), "alpha": (1.0, 5.0, 20.0, 40.0),
        "maxIter": (15,)}


def read_ratings(spark, path: Path, weights: str):
    raw = spark.read.csv(str(path), header=True, inferSchema=False)
    df = raw.select(F.col("userId").alias(USER_ID), F.col("movieId").alias(ITEM_ID),
                    F.col("rating").cast("double").alias(EVENT_VALUE),
                    F.col("timestamp").cast("long").alias(TIMESTAMP))
    kind = (F.concat(F.lit("rating_"), F.col(EVENT_VALUE).cast("string")) if weights == "rating"
            else F.lit("rating"))
    return df.withColumn(EVENT_TYPE, kind)


def settings_for(args):
    base = load_settings()
    ks = tuple(int(k) for k in args.k.split(","))
    evaluate = dataclasses.replace(base.evaluate, protocol=args.protocol, k=ks, seed=args.seed)
    prepare = dataclasses.replace(base.prepare, **{k: json.loads(v) for k, v in
                                                   (p.split("=", 1) for p in args.prepare)})
    if args.weights == "rating":
        values = [x / 2 for x in range(1, 11)]
        prepare = dataclasses.replace(prepare, event_weights={f"rating_{v}": v for v in values})
    return dataclasses.replace(base, evaluate=evaluate, prepare=prepare)


def evaluate_all(spark, settings, frame, runs):
    """Evaluate each ``(label, recipe, params)`` of ``runs`` on one split; the first is the baseline."""
    config = settings.evaluate
    split = splits.split_interactions(frame, config.protocol, config, settings.prepare).persist()
    context = runner.prepare_context(frame, split, config.k)
    compared = f"ndcg@{max(config.k)}"
    results = []
    for label, recipe, params in runs:
        result = runner.evaluate_recipe(spark, recipe, context, settings, params, per_user_metric=compared)
        result.recipe = label  # the comparison names its baseline by this label
        results.append(result)
    out = [{"recipe": r.recipe, "params": r.params, "metrics": r.metrics, "seconds": r.seconds,
            "versus_first": versus}
           for r, versus in zip(results, compare.versus_first(results, compared, config.seed))]
    return split, out


def parse_pairs(pairs):
    """``KEY=VALUE`` strings -> dict, values read as TOML literals (``64``, ``0.1``, ``cg``)."""
    return {k: parse_literal(v) for k, v in (p.split("=", 1) for p in pairs)}


def with_point(settings, point):
    """``settings`` with the grid point's ``prepare.*`` keys applied; the rest are ALS parameters."""
    prepare = {k[len(PREPARE_PREFIX):]: v for k, v in point.items() if k.startswith(PREPARE_PREFIX)}
    als = {k: v for k, v in point.items() if not k.startswith(PREPARE_PREFIX)}
    return dataclasses.replace(settings, prepare=dataclasses.replace(settings.prepare, **prepare)), als


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="stratified-item", choices=splits.PROTOCOLS)
    parser.add_argument("--k", default="10")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--recipes", nargs="+", default=["popularity-count", "user-personalization"],
                        help="the first is the baseline the others are compared with")
    parser.add_argument("--param", action="append", default=[], help="ALS KEY=VALUE")
    parser.add_argument("--variant", action="append", default=[],
                        help="ALS KEY=VALUE of one more user-personalization run (see above)")
    parser.add_argument("--prepare", action="append", default=[], help="[prepare] KEY=VALUE")
    parser.add_argument("--weights", choices=("binary", "rating"), default="binary")
    parser.add_argument("--tune", action="store_true")
    parser.add_argument("--grid", default=None, help="JSON grid overriding the default sweep")
    parser.add_argument("--ratings", default=str(RATINGS))
    parser.add_argument("--output", default=None, help="append JSON lines here")
    args = parser.parse_args(argv)

    logs.configure("INFO")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # executors need this venv's numpy
    spark = get_spark(SparkSettings(master="local[2]", driver_memory="4g", shuffle_partitions=4,
                                    log_level="ERROR"))
    settings = settings_for(args)
    frame = read_ratings(spark, Path(args.ratings), args.weights).persist()
    als_params = parse_pairs(args.param)
    lines = []
    if args.tune:
        config = settings.evaluate
        outer = splits.split_interactions(frame, config.protocol, config, settings.prepare).persist()
        inner = splits.split_interactions(outer.train, config.protocol, config, settings.prepare,
                                          seed=config.seed + 1).persist()
        context = runner.prepare_context(outer.train, inner, config.k)
        grid = json.loads(args.grid) if args.grid else GRID
        names = sorted(grid)
        for values in itertools.product(*(grid[n] for n in names)):
            point = {**als_params, **dict(zip(names, values))}
            start = time.perf_counter()
            point_settings, als_point = with_point(settings, point)
            result = runner.evaluate_recipe(spark, "user-personalization", context, point_settings,
                                            als_point)
            line = {"mode": "tune", "protocol": config.protocol, "weights": args.weights,
                    "params": point, "seconds": round(time.perf_counter() - start, 1),
                    **{k: round(v, 4) for k, v in result.metrics.items() if isinstance(v, float)}}
            print(json.dumps(line), flush=True)
            lines.append(line)
    else:
        started = time.perf_counter()
        runs = [(recipe, recipe, als_params if recipe == "user-personalization" else None)
                for recipe in args.recipes]
        if args.variant:
            variant = parse_pairs(args.variant)
            label = "user-personalization[" + ",".join(f"{k}={v}" for k, v in variant.items()) + "]"
            runs.append((label, "user-personalization", {**als_params, **variant}))
        split, results = evaluate_all(spark, settings, frame, runs)
        print(json.dumps({"split": split.stats}))
        for r in results:
            line = {"mode": "evaluate", "protocol": args.protocol, "weights": args.weights,
                    "prepare": args.prepare, "recipe": r["recipe"], "params": r["params"],
                    "seconds": r["seconds"], "versus_first": r["versus_first"],
                    **{k: round(v, 4) for k, v in r["metrics"].items() if isinstance(v, float)}}
            print(json.dumps(line), flush=True)
            lines.append(line)
        print(f"total seconds {time.perf_counter() - started:.0f}", file=sys.stderr)
    if args.output:
        with open(args.output, "a") as handle:
            for line in lines:
                handle.write(json.dumps(line) + "\n")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
