"""user-personalization: ALS on implicit feedback (Hu, Koren & Volinsky 2008).

The prepared confidences are the implicit "ratings"; parameters keep MLlib's names (``rank``,
``regParam``, ``alpha``, ``maxIter``, ``seed``, ``numUserBlocks``, ``numItemBlocks``,
``checkpointInterval``, ``nonnegative``). ``solver`` picks the trainer: ``mllib`` (default) is
Spark MLlib's ALS, ``cg`` is batchrec's conjugate-gradient solver (:mod:`batchrec.recipes.als_cg`,
which documents ``regularization``, ``cgSteps`` and ``cgMaxBroadcastMb`` and falls back to MLlib
when a factor side is too large to broadcast). Our MLlib defaults differ from MLlib's in two ways
that matter for speed (see docs/benchmarks.md):

* ``numUserBlocks``/``numItemBlocks`` = 0 size the blocks to the cluster (default parallelism)
  instead of MLlib's fixed 10: every block is a task in every half-iteration, and blocks beyond
  the number of cores add shuffle and scheduling work without adding parallelism.
* checkpointing is only switched on when the run is long enough to need it (``maxIter`` greater
  than ``checkpointInterval``): it cuts the lineage that otherwise overflows the stack, at the cost
  of writing the factors.

We export the factors (``user_factors``/``item_factors``) and never call ``model.transform``:
scoring is done by ``batchrec.scoring`` with numpy, so MLlib's cold-start strategy does not apply;
users and items unknown to the model are handled by the ID maps' left joins.
"""

from __future__ import annotations

import logging
import os
import tempfile

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batchrec.columns import CONFIDENCE, ITEM_ID, ITEM_IDX, USER_ID, USER_IDX

log = logging.getLogger(__name__)

FEATURES = "features"
MLLIB = "mllib"
CG = "cg"
SOLVERS = (MLLIB, CG)
def block_counts(spark, params: dict) -> tuple[int, int]:
    """The user and item block counts: the configured ones, or default parallelism for 0."""
    cores = max(1, spark.sparkContext.defaultParallelism)
    return (params["numUserBlocks"] or cores, params["numItemBlocks"] or cores)


def build_als(spark, params: dict):
    """An MLlib ``ALS`` estimator over (user_idx, item_idx, confidence) for ``params``."""
    from pyspark.ml.recommendation import ALS

    user_blocks, item_blocks = block_counts(spark, params)
    return ALS(
        rank=params["rank"], maxIter=params["maxIter"], regParam=params["regParam"],
        alpha=params["alpha"], seed=params["seed"], nonnegative=params["nonnegative"],
        numUserBlocks=user_blocks, numItemBlocks=item_blocks,
        checkpointInterval=params["checkpointInterval"], implicitPrefs=True,
        userCol=USER_IDX, itemCol=ITEM_IDX, ratingCol=CONFIDENCE,
    )


def ratings(prepared: DataFrame, user_map: DataFrame, item_map: DataFrame) -> DataFrame:
    """Prepared confidences with integer indexes: DataFrame[user_idx int, item_idx int, confidence float]."""
    return (
        prepared.join(user_map, USER_ID).join(item_map, ITEM_ID)
        .select(USER_IDX, ITEM_IDX, F.col(CONFIDENCE).cast("float").alias(CONFIDENCE))
    )


def fit(spark, rated: DataFrame, params: dict):
    """Fit MLlib ALS on :func:`ratings` rows; returns the ``ALSModel``."""
    return build_als(spark, params).fit(rated)


def factor_artifacts(model) -> dict[str, DataFrame]:
    """The model's factors as artifacts: ``user_factors``/``item_factors`` (idx int, features array<float>)."""
    return {
        "user_factors": model.userFactors.select(F.col("id").cast("int").alias(USER_IDX), FEATURES),
        "item_factors": model.itemFactors.select(F.col("id").cast("int").alias(ITEM_IDX), FEATURES),
    }


def train(spark, data, params: dict) -> tuple[dict, dict]:
    """Fit ALS on the prepared confidences; artifacts ``user_factors`` and ``item_factors``.

    Stats: the block counts used and ``solver_used`` (``cg`` falls back to ``mllib`` when a
    factor side exceeds ``cgMaxBroadcastMb``; ``solver_fallback`` then says why). The cg solver
    adds ``cg_loss`` (the objective after each iteration) and ``cg_seconds`` (each iteration's time).
    """
    rated = ratings(data.prepared, data.user_map, data.item_map)
    user_blocks, item_blocks = block_counts(spark, params)
    stats = {"numUserBlocks_used": user_blocks, "numItemBlocks_used": item_blocks, "solver_used": MLLIB}
    if params["solver"] == CG:
        from batchrec.recipes import als_cg

        problem = als_cg.plan(rated, params, data.sizes)
        reason = als_cg.check_fallback(problem, params)
        if reason is None:
            # Grouped twice (by user and by item): joined with the maps once.
            rated = rated.persist()
            try:
                result = als_cg.fit(spark, rated, params, (user_blocks, item_blocks), problem)
            finally:
                rated.unpersist()
            stats.update(solver_used=CG, cg_loss=[round(v, 6) for v in result.loss],
                         cg_seconds=[round(v, 3) for v in result.seconds])
            return {
                "user_factors": als_cg.factor_frame(spark, result.user_factors, result.user_present, USER_IDX),
                "item_factors": als_cg.factor_frame(spark, result.item_factors, result.item_present, ITEM_IDX),
            }, stats
        log.warning("%s; training with MLlib's block solver instead", reason)
        stats["solver_fallback"] = reason
    from batchrec.spark import scoped_checkpoint_dir

    with scoped_checkpoint_dir(spark, _checkpoint_dir(spark, params, data.checkpoint_dir)):
        # ALS materializes its factors inside fit, so the checkpoints are all written by now.
        model = fit(spark, rated, params)
    return factor_artifacts(model), stats


def _checkpoint_dir(spark, params: dict, checkpoint_dir):
    """The checkpoint directory ALS should use for this run, or None (too short to checkpoint, or
    the session already has one)."""
    interval, iterations = params["checkpointInterval"], params["maxIter"]
    context = spark.sparkContext
    if interval <= 0 or iterations <= interval or context.getCheckpointDir():
        return None
    if checkpoint_dir is None and context.master.startswith("local"):
        checkpoint_dir = tempfile.mkdtemp(prefix="batchrec-als-checkpoints-", dir=_local_tmp(spark))
    if checkpoint_dir is None:
        log.warning("maxIter=%d > checkpointInterval=%d but no checkpoint directory: ALS runs "
                    "without checkpoints (a long lineage may overflow the stack)", iterations, interval)
        return None
    log.info("ALS checkpoints go to %s", checkpoint_dir)
    return checkpoint_dir


def _local_tmp(spark) -> str:
    local_dir = spark.conf.get("spark.local.dir", None)
    return local_dir.split(",")[0] if local_dir and os.path.isdir(local_dir.split(",")[0]) else None
