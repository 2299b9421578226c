"""Item-item co-occurrence: batchrec's row-block Gram against a naive self-join, same data, same output.

Both compute the upper triangle of XᵀX (co-counts of every item pair) from the same prepared,
indexed and capped histories (SIMS's default caps), which are cached and counted before timing:

* ``blocked``: ``batchrec.recipes.cooccurrence.gram_pairs`` (histories shipped per row block,
  scipy sparse products, no shuffle of pairs);
* ``naive``: ``naive_gram_pairs``, the interactions joined with themselves on the user, then
  grouped by (item, item): every one of the ``sum h^2 / 2`` pairs is a Spark row.

Each is forced with Spark's ``noop`` writer; the outputs are then compared exactly (``exceptAll``
both ways, or an order-free checksum with ``--check checksum`` on large runs). Also timed: the SIMS
neighbours (``top_similar``: the similarity and the top-K per item applied where the rows are
complete), which is what the sims/similar-items/sar recipes run.

Targets (docs/benchmarks.md): ``blocked`` at least 3x faster than ``naive``, and 10M
interactions within 15 minutes on an idle 2-core machine::

    nice .venv/bin/python bench/bench_related.py                       # 10M interactions
    nice .venv/bin/python bench/bench_related.py --users 1000 --items 300 --interactions 20000   # smoke
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=40_000)
    parser.add_argument("--interactions", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--driver-memory", default="8g")
    parser.add_argument("--workdir", default=None, help="Generated data and Spark scratch (default: a temp dir).")
    parser.add_argument("--blocks", type=int, default=0, help="Row blocks (0: one per core).")
    parser.add_argument("--neighbours", type=int, default=100)
    parser.add_argument("--skip-naive", action="store_true", help="Time only batchrec's computation.")
    parser.add_argument("--check", choices=("exact", "checksum", "none"), default="exact")
    parser.add_argument("--output", type=Path, default=None, help="Also write the JSON result here.")
    args = parser.parse_args(argv)

    from pyspark.sql import functions as F

    from batchrec import logs
    from batchrec.columns import ITEM_ID, ITEM_IDX, USER_ID
    from batchrec.config import Settings, SparkSettings
    from batchrec.datasets.generate import generate_datasets
    from batchrec.datasets.indexing import build_id_map
    from batchrec.datasets.prepare import aggregate_events, select_events
    from batchrec.recipes import cooccurrence as cooc
    from batchrec.recipes import resolve_params
    from batchrec.spark import get_spark

    logs.configure("INFO")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-related-"))
    spark = get_spark(SparkSettings(master=args.master, app_name="bench-related", driver_memory=args.driver_memory,
                                    shuffle_partitions=8, conf={"spark.local.dir": str(work / "spark-local")}))
    sc = spark.sparkContext
    sc.setCheckpointDir(str(work / "checkpoints"))
    result: dict = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    "default_parallelism": sc.defaultParallelism, "spark_version": spark.version}

    data_dir = work / f"data-{args.users}u-{args.items}i-{args.interactions}x-{args.seed}"
    if not (data_dir / "_SUCCESS").exists():
        frames = generate_datasets(spark, args.users, args.items, args.interactions, seed=args.seed)
        frames["interactions"].write.mode("overwrite").parquet(str(data_dir))
    interactions = spark.read.parquet(str(data_dir))

    settings = Settings()
    params = resolve_params("sims", settings)
    start = time.perf_counter()
    prepared = aggregate_events(select_events(interactions, settings.prepare)).persist()
    item_map = build_id_map(prepared, ITEM_ID, ITEM_IDX)
    n_items = item_map.count()
    histories, cuts = cooc.apply_caps(cooc.user_item_values(prepared, item_map), cooc.caps_of(params))
    histories = histories.persist()
    lengths = histories.groupBy(USER_ID).count()
    stats = lengths.agg(F.count(F.lit(1)), F.sum("count"), F.sum(F.col("count") * (F.col("count") - 1) / 2),
                        F.max("count")).first()
    result["data"] = {"users": int(stats[0]), "items": n_items, "pairs_in": int(stats[1]),
                      "pair_updates": int(stats[2]), "longest_history": int(stats[3]), "caps": cuts,
                      "prepare_seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(result["data"]), file=sys.stderr)

    def timed(name, df):
        start = time.perf_counter()
        df.write.format("noop").mode("overwrite").save()
        result.setdefault("seconds", {})[name] = round(time.perf_counter() - start, 2)
        print(f"{name}: {result['seconds'][name]} s", file=sys.stderr)

    blocked = cooc.gram_pairs(histories, n_items=n_items, blocks=args.blocks)
    timed("blocked", blocked)
    counts = cooc.item_counts(histories)
    timed("sims_neighbours", cooc.top_similar(histories, counts, params["similarity"], args.neighbours,
                                              params["min_cointeraction_count"],
                                              params["popularity_discount_factor"], blocks=args.blocks))
    if not args.skip_naive:
        naive = cooc.naive_gram_pairs(histories)
        timed("naive", naive)
        result["speedup"] = round(result["seconds"]["naive"] / max(result["seconds"]["blocked"], 1e-9), 2)
        if args.check != "none":
            result["same_output"] = _same(blocked, naive, args.check)
    result["distinct_pairs"] = blocked.count()
    print(json.dumps(result))
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    if not args.skip_naive and args.check != "none" and not result["same_output"]:
        raise SystemExit("blocked and naive co-occurrence differ")
    spark.stop()
    return result


def _same(left, right, check: str) -> bool:
    """Equal multisets of (item_i, item_j, co_count) rows."""
    from pyspark.sql import functions as F

    columns = ["item_i", "item_j", "co_count"]
    left, right = left.select(*columns), right.select(*columns)
    if check == "exact":
        return left.exceptAll(right).limit(1).count() == 0 and right.exceptAll(left).limit(1).count() == 0
    digest = [F.count(F.lit(1)), F.sum("co_count"), F.sum(F.xxhash64(*columns) % (1 << 40))]
    return tuple(left.agg(*digest).first()) == tuple(right.agg(*digest).first())


if __name__ == "__main__":
    main()
