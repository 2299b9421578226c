"""Benchmark: ALS training with batchrec's defaults against MLlib's defaults, same data, same session.

* data: ``generate_datasets`` (default 100k users, 20k items, 5M interactions), written once to
  Parquet under ``--workdir`` and reused; prepared with batchrec's default ``[prepare]`` rules
  (every event weighs 1, confidences summed per user-item pair, history cap at the 99th percentile);
* split: a per-user random hold-out (a hash of user, item and seed: ``--holdout`` of each user's
  pairs for users with at least 2 pairs), the rest is the training set, cached before timing;
* ``batchrec``: ``batchrec.recipes.als.build_als`` with the ``[als]`` defaults (blocks sized to the
  cluster: default parallelism; ``maxIter`` 7, chosen on MovieLens validation data) and ``rank``
  set to ``--rank``;
* ``mllib_defaults``: ``ALS(rank, implicitPrefs=True)`` and every other parameter at MLlib's
  default (10 user and item blocks, maxIter 10, regParam 0.1, alpha 1.0);
* ``batchrec_mllib_iterations``: batchrec's defaults with MLlib's 10 iterations, which separates
  the two differences (block sizing and iteration count);
* ``cg``: batchrec's conjugate-gradient solver (``batchrec.recipes.als_cg.fit``) with the ``[als]``
  defaults and ``solver=cg``, the same data, rank, iterations and (scaled) regularization as
  ``batchrec``; its fit includes grouping the ratings into CSR blocks and collecting the factors;
* ``implicit``: the ``implicit`` package's CPU conjugate-gradient ALS (``pip install .[bench]``) on
  the driver alone, the single-node reference: the training pairs are collected into one scipy
  CSR matrix (not timed) with values ``1 + alpha·r``, so the confidences equal MLlib's; its
  regularization is constant, ``--implicit-reg`` (default: regParam times the mean number of
  training pairs per user, what the scaled form gives a typical user);
* quality: ndcg@10 for ``--eval-users`` sampled hold-out users, scored by brute force with numpy
  over all items, training items removed (binary relevance, ideal DCG over min(|truth|, 10)).

``--configs`` picks the configurations (default all but ``batchrec_mllib_iterations``, which runs
when named or when ``--configs`` is not given and the iteration counts differ); the first named is
the baseline of the ``speedup`` figures (default ``mllib_defaults``). ``seconds_per_iteration`` is
the median iteration of ``cg`` (timed inside the fit) and fit time / iterations for the others.
For time per iteration at several sizes, run once per ``--interactions`` (1M, 5M, 10M); each size
writes ``bench_train_results-<interactions>.json``.

``--max-iter`` forces one iteration count on every configuration. After a one-iteration warm-up
fit of each, the configurations are timed ``--repeats`` times in turn (A B C A B C) and the fastest
fit of each counts, as ``timeit`` does, so the cold first slot does not decide the result; every
time is recorded. Timing is the wall time of ``fit`` (MLlib materialises
both factor matrices inside ``fit``); ndcg@10 comes from each configuration's last fit.
Memory: the JVM's used heap sampled every 0.5 s during each fit, the JVM's peak RSS (VmHWM)
and the Python driver's peak RSS at the end. Usage (see docs/benchmarks.md)::

    nice -n 10 .venv/bin/python bench/bench_train.py --workdir /tmp/batchrec-bench-train
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="/tmp/batchrec-bench-train")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--interactions", type=int, default=5_000_000)
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--max-iter", type=int, default=None,
                        help="one iteration count for every configuration")
    parser.add_argument("--repeats", type=int, default=2, help="timed fits per configuration")
    parser.add_argument("--holdout", type=float, default=0.2)
    parser.add_argument("--eval-users", type=int, default=10_000)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="8g")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--configs", default=None,
                        help="comma-separated: mllib_defaults,batchrec,batchrec_mllib_iterations,cg,implicit")
    parser.add_argument("--implicit-reg", type=float, default=None)
    parser.add_argument("--threads", type=int, default=2, help="implicit's threads (the cores Spark uses)")
    args = parser.parse_args(argv)

    from pyspark.sql import functions as F

    from batchrec import logs
    from batchrec.columns import CONFIDENCE, ITEM_ID, ITEM_IDX, USER_ID, USER_IDX
    from batchrec.config import Settings, SparkSettings
    from batchrec.datasets.indexing import build_id_map
    from batchrec.datasets.prepare import prepare_interactions
    from batchrec.recipes import als, resolve_params
    from batchrec.spark import get_spark

    logs.configure("INFO")
    work = Path(args.workdir)
    spark = get_spark(SparkSettings(
        master=args.master, app_name="bench-train", driver_memory=args.driver_memory, shuffle_partitions=8,
        conf={"spark.local.dir": str(work / "spark-local")},
    ))
    sc = spark.sparkContext
    sc.setCheckpointDir(str(work / "checkpoints"))
    results: dict = {"args": vars(args), "default_parallelism": sc.defaultParallelism,
                     "spark_version": spark.version}

    data_dir = work / f"data-{args.users}u-{args.items}i-{args.interactions}x"
    if not (data_dir / "interactions" / "_SUCCESS").exists():
        from batchrec.datasets.generate import generate_datasets

        start = time.perf_counter()
        frames = generate_datasets(spark, args.users, args.items, args.interactions, seed=args.seed)
        frames["interactions"].write.mode("overwrite").parquet(str(data_dir / "interactions"))
        results["generate_seconds"] = round(time.perf_counter() - start, 1)
    interactions = spark.read.parquet(str(data_dir / "interactions"))

    start = time.perf_counter()
    settings = Settings()
    prepared = prepare_interactions(interactions, settings.prepare).persist()
    user_map = build_id_map(prepared, USER_ID, USER_IDX)
    item_map = build_id_map(prepared, ITEM_ID, ITEM_IDX)
    rated = als.ratings(prepared, user_map, item_map)
    per_user = rated.groupBy(USER_IDX).count().withColumnRenamed("count", "n")
    bucket = (F.abs(F.xxhash64(USER_IDX, ITEM_IDX, F.lit(args.seed))) % 10_000) / 10_000.0
    flagged = (rated.join(per_user, USER_IDX)
               .withColumn("test", (F.col("n") >= 2) & (bucket < args.holdout))
               .drop("n").persist())
    train = flagged.where(~F.col("test")).drop("test").persist()
    test = flagged.where(F.col("test")).select(USER_IDX, ITEM_IDX).persist()
    n_train, n_test = train.count(), test.count()
    n_users, n_items = user_map.count(), item_map.count()
    results["data"] = {"prepared_pairs": prepared.count(), "train_pairs": n_train, "test_pairs": n_test,
                       "users": n_users, "items": n_items,
                       "prepare_split_seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(results["data"]), file=sys.stderr)

    from pyspark.ml.recommendation import ALS

    ours_params = resolve_params("user-personalization", settings, {"rank": args.rank})
    mllib_iterations = ALS().getMaxIter()
    blocks = als.block_counts(spark, ours_params)

    def mllib_fit(make):
        def fit(data, iterations):
            estimator = make(iterations)
            model = estimator.fit(data)
            return model, {p.name: v for p, v in estimator.extractParamMap().items()
                           if p.name in ("rank", "maxIter", "regParam", "alpha", "numUserBlocks",
                                         "numItemBlocks", "checkpointInterval", "implicitPrefs")}
        return fit

    def ours(iterations):
        return als.build_als(spark, {**ours_params, "maxIter": iterations})

    def mllib(iterations):
        return ALS(rank=args.rank, maxIter=iterations, implicitPrefs=True,
                   userCol=USER_IDX, itemCol=ITEM_IDX, ratingCol=CONFIDENCE)

    cg_params = {**ours_params, "solver": "cg"}

    def cg_fit(data, iterations):
        from batchrec.recipes import als_cg

        params = {**cg_params, "maxIter": iterations}
        return als_cg.fit(spark, data, params, blocks), {
            k: params[k] for k in ("rank", "maxIter", "regParam", "alpha", "regularization", "cgSteps")}

    implicit_reg = args.implicit_reg if args.implicit_reg is not None else round(
        ours_params["regParam"] * n_train / max(1, n_users), 4)
    implicit_data = {}

    def implicit_fit(data, iterations):
        from implicit.cpu.als import AlternatingLeastSquares

        if id(data) not in implicit_data:  # the driver-side CSR matrix is built once, outside the timing
            implicit_data[id(data)] = _csr(data, n_users, n_items, ours_params["alpha"])
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):  # implicit threads over rows itself (its own advice)
            model = AlternatingLeastSquares(factors=args.rank, regularization=implicit_reg, alpha=1.0,
                                            iterations=iterations, use_cg=True, random_state=args.seed,
                                            num_threads=args.threads, calculate_training_loss=False)
            timed = _Timed(model, implicit_data[id(data)])
        return timed, {
            "rank": args.rank, "maxIter": iterations, "regularization (constant)": implicit_reg,
            "confidence": f"1 + {ours_params['alpha']} * r", "cg_steps": model.cg_steps,
            "threads": args.threads}

    available = {  # name: (fit(data, iterations) -> (model, params), iterations)
        "mllib_defaults": (mllib_fit(mllib), args.max_iter or mllib_iterations),
        "batchrec": (mllib_fit(ours), args.max_iter or ours_params["maxIter"]),
        "batchrec_mllib_iterations": (mllib_fit(ours), mllib_iterations),
        "cg": (cg_fit, args.max_iter or ours_params["maxIter"]),
        "implicit": (implicit_fit, args.max_iter or ours_params["maxIter"]),
    }
    if args.configs:
        names = [n.strip() for n in args.configs.split(",") if n.strip()]
        unknown = sorted(set(names) - set(available))
        if unknown:
            parser.error(f"unknown --configs {unknown}; expected some of {', '.join(available)}")
    else:
        names = ["mllib_defaults", "batchrec", "cg", "implicit"]
        if args.max_iter is None and ours_params["maxIter"] != mllib_iterations:
            names.insert(2, "batchrec_mllib_iterations")
    configs = {name: available[name] for name in names}
    warm = train.where(F.col(USER_IDX) % 20 == 0).persist()
    for name, (fit, _) in configs.items():  # JIT and code paths warm for every configuration
        _factors(fit(warm, 1)[0], n_users, n_items, args.rank)

    jvm_pid = int(spark._jvm.java.lang.ProcessHandle.current().pid())
    runtime = spark._jvm.java.lang.Runtime.getRuntime()
    sample_users = _sample_users(test, args.eval_users, args.seed)
    truth = _pairs(test, sample_users)
    seen = _pairs(train, sample_users)
    for round_ in range(args.repeats):
        for name, (fit, iterations) in configs.items():
            peak = _HeapSampler(runtime)
            peak.start()
            start = time.perf_counter()
            model, params = fit(train, iterations)
            seconds = time.perf_counter() - start
            peak.stop()
            U, V = _factors(model, n_users, n_items, args.rank)
            entry = results.setdefault(name, {"params": params, "fit_seconds_each": [],
                                              "seconds_per_iteration_each": [], "jvm_used_heap_peak_mb": 0})
            entry["fit_seconds_each"].append(round(seconds, 1))
            entry["fit_seconds"] = min(entry["fit_seconds_each"])
            per_iteration = (float(np.median(model.seconds)) if hasattr(model, "loss")
                             else getattr(model, "seconds", seconds) / iterations)
            entry["seconds_per_iteration_each"].append(round(per_iteration, 2))
            entry["seconds_per_iteration"] = min(entry["seconds_per_iteration_each"])
            entry["ndcg@10"] = round(_ndcg(U, V, sample_users, truth, seen, 10), 4)
            entry["jvm_used_heap_peak_mb"] = max(entry["jvm_used_heap_peak_mb"], round(peak.peak / 2**20))
            if hasattr(model, "loss"):
                entry["loss_each_iteration"] = [round(v, 1) for v in model.loss]
            print(json.dumps({name: entry, "round": round_ + 1}), file=sys.stderr)
            if hasattr(model, "userFactors"):
                model.userFactors.unpersist()
                model.itemFactors.unpersist()
    first = names[0]
    results["speedup_baseline"] = first
    results["speedup"] = {name: round(results[first]["fit_seconds"] / results[name]["fit_seconds"], 2)
                          for name in configs if name != first}
    results["speedup_per_iteration"] = {
        name: round(results[first]["seconds_per_iteration"] / results[name]["seconds_per_iteration"], 2)
        for name in configs if name != first}
    results["jvm_peak_rss_mb"] = _vm_hwm_mb(jvm_pid)
    results["python_driver_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    results["load_average_at_end"] = _loadavg()
    print(json.dumps(results, indent=2))
    (work / f"bench_train_results-{args.interactions}.json").write_text(json.dumps(results, indent=2))
    spark.stop()
    return 0


class _HeapSampler(threading.Thread):
    """Samples the JVM's used heap (total - free) twice a second until stopped."""

    def __init__(self, runtime):
        super().__init__(daemon=True)
        self.runtime, self.peak, self._stop_event = runtime, 0, threading.Event()

    def run(self):
        while not self._stop_event.is_set():
            self.peak = max(self.peak, int(self.runtime.totalMemory()) - int(self.runtime.freeMemory()))
            self._stop_event.wait(0.5)

    def stop(self):
        self._stop_event.set()
        self.join()


def _sample_users(test, n: int, seed: int) -> np.ndarray:
    from pyspark.sql import functions as F

    users = (test.select("user_idx").distinct()
             .orderBy(F.xxhash64("user_idx", F.lit(seed))).limit(n).collect())
    return np.array(sorted(r[0] for r in users), dtype=np.int64)


def _pairs(df, users: np.ndarray) -> dict[int, np.ndarray]:
    """{user: item indexes} for the sampled users (bounded: a few hundred thousand rows)."""
    from pyspark.sql import functions as F

    wanted = df.sparkSession.createDataFrame([(int(u),) for u in users], "user_idx int")
    rows = (df.join(F.broadcast(wanted), "user_idx").groupBy("user_idx")
            .agg(F.collect_list("item_idx").alias("items")).collect())
    return {r[0]: np.array(r[1], dtype=np.int64) for r in rows}


class _Timed:
    """Runs an ``implicit`` model's fit on construction and keeps its wall time and factors."""

    def __init__(self, model, matrix):
        start = time.perf_counter()
        model.fit(matrix, show_progress=False)
        self.seconds = time.perf_counter() - start
        self.user_factors, self.item_factors = model.user_factors, model.item_factors


def _csr(data, n_users: int, n_items: int, alpha: float):
    """The training pairs as a users x items scipy CSR matrix of confidences ``1 + alpha·r``."""
    import scipy.sparse

    table = data.select("user_idx", "item_idx", "confidence").toArrow()
    users = table.column("user_idx").to_numpy()
    items = table.column("item_idx").to_numpy()
    values = 1.0 + alpha * np.abs(table.column("confidence").to_numpy().astype(np.float32))
    return scipy.sparse.csr_matrix((values.astype(np.float32), (users, items)), shape=(n_users, n_items))


def _factors(model, n_users: int, n_items: int, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """(U, V) float32 matrices of an MLlib model, a cg result or a timed ``implicit`` model."""
    if hasattr(model, "userFactors"):
        return _matrix(model.userFactors, n_users, rank), _matrix(model.itemFactors, n_items, rank)
    return _padded(model.user_factors, n_users, rank), _padded(model.item_factors, n_items, rank)


def _padded(factors, n: int, rank: int) -> np.ndarray:
    """``factors`` with zero rows appended up to ``n`` (ids absent from the training part)."""
    out = np.zeros((n, rank), np.float32)
    out[: min(n, len(factors))] = np.asarray(factors, np.float32)[:n]
    return out


def _matrix(factors, n: int, rank: int) -> np.ndarray:
    out = np.zeros((n, rank), dtype=np.float32)
    for row in factors.toLocalIterator():
        out[row["id"]] = row["features"]
    return out


def _ndcg(U, V, users, truth, seen, k: int) -> float:
    """Mean ndcg@k over ``users``: brute-force scores, seen items masked, ties by item index."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    total = 0.0
    for start in range(0, len(users), 1000):
        block = users[start:start + 1000]
        scores = U[block] @ V.T
        for row, user in enumerate(block):
            scores[row, seen.get(int(user), [])] = -np.inf
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        for row, user in enumerate(block):
            relevant = truth[int(user)]
            hits = np.isin(top[row], relevant)
            ideal = discounts[: min(len(relevant), k)].sum()
            total += float((hits * discounts).sum() / ideal)
    return total / len(users)


def _vm_hwm_mb(pid: int):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    except OSError:
        return None
    return None


def _loadavg() -> str:
    try:
        return open("/proc/loadavg").read().split(" ")[:3]
    except OSError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
