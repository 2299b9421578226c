"""The ``cg`` solver of user-personalization: implicit ALS with conjugate-gradient row updates.

The default solver of user-personalization (``solver=cg``); ``solver=mllib`` is Spark MLlib's ALS.

**Model.** Implicit ALS (Hu, Koren & Volinsky 2008) with MLlib's conventions, so the parameters
keep MLlib's meaning: a rating ``r`` (the prepared confidence) gives confidence ``c = 1 + alpha·|r|``
and preference ``p = 1`` for ``r > 0``; every unobserved pair has ``c = 1``, ``p = 0``. Each
half-iteration solves, for every row ``u`` of one side with the other side ``Y`` fixed::

    (YᵀY + Yᵀ(C_u − I)Y + λ_u I) x_u = Yᵀ C_u p_u

approximately, with ``cgSteps`` conjugate-gradient steps warm-started from the row's previous
factors (Takács, Pilászy & Tikk 2011), instead of MLlib's exact Cholesky solve: the per-row work
drops from O(n_u·r² + r³) to O(cgSteps·(n_u·r + r²)). ``cgKernel`` picks the kernel:
:mod:`batchrec.recipes.als_cg_numba` (compiled by numba, row by row; the default whenever numba
imports) or :mod:`batchrec.recipes.als_cg_kernel` (numpy + scipy.sparse, batched over a chunk's
rows; 2 to 3x slower per core). Both take the same steps and agree to float32 rounding.

**Regularization.** ``regularization=scaled`` (default) is MLlib's ALS-WR: ``λ_u = regParam·n_u``
with ``n_u`` the row's number of positive ratings, so ``solver=cg`` and ``solver=mllib`` optimise
the same objective for the same parameters. ``regularization=constant`` uses ``λ_u = regParam``
for every row, as the ``implicit`` package and Hu et al. do. Converting between the two: a scaled
``regParam`` of ``s`` regularizes a row with ``n`` ratings like a constant ``s·n``, so a constant
``λ`` matches a scaled ``λ / n̄`` for rows of typical length ``n̄`` (e.g. the mean number of
ratings per user and per item, which differ: scaled regularization is stronger on long rows). The
``implicit`` package's ``AlternatingLeastSquares(alpha=a, regularization=λ)`` uses ``c = a·r``
(not ``1 + a·r``); on binary data it matches ``solver=cg regularization=constant regParam=λ
alpha=a−1``. MLlib has no constant form, so ``regularization=constant`` needs ``solver=cg``.

**Spark plan.** The ratings are grouped twice, by user and by item, into ``numUserBlocks`` /
``numItemBlocks`` partitions (0 = default parallelism) of CSR chunks (about 8 MB of gathered
factors each), built once and cached. Each half-iteration is one Spark stage over one side's
blocks: one broadcast carries the fixed side's factors, their Gram matrix ``YᵀY`` and the solved
side's previous factors (the warm start); each partition updates its rows, and the new rows (with
their Gram matrix, summed on the driver) are collected for the next broadcast. No state lives on
the executors between stages, so the lineage never grows (``checkpointInterval`` only concerns the
MLlib solver), a lost task reruns from the cached blocks, and no shuffle runs after the two
groupings. An earlier plan kept each side's previous factors on the executors and zipped them
with the blocks; PySpark re-serialises both sides of a zip through extra Python workers, which
cost more than the broadcast (docs/benchmarks.md).

**Limits.** Each broadcast holds both sides' factors ((users + items) x rank x 4 bytes; rank 64 x
10M rows is 2.5 GB), which must fit in every Python worker's memory; the driver holds both sides
plus one collected side. Before training, that size is checked against ``cgMaxBroadcastMb``;
beyond it, training falls back to MLlib's block solver (which never holds a whole side in one
place) with a warning saying why. With ``regularization=constant`` there is no fallback: the job
stops with a usage error.

**Determinism.** The user factors start from unit-norm Gaussian rows drawn from ``seed`` (as
MLlib does; the item side is solved first, from zero), so the same seed, data and partitioning give
the same factors.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Iterator, Optional

import numpy as np
import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batchrec.columns import CONFIDENCE, ITEM_IDX, USER_IDX
from batchrec.errors import UsageError
from batchrec.recipes import als_cg_kernel, als_cg_numba
from batchrec.recipes.als_cg_kernel import CONSTANT, CsrChunk, chunk_bounds, initial_factors

log = logging.getLogger(__name__)

FEATURES = "features"
MB = 2**20
AUTO, NUMBA, NUMPY = "auto", "numba", "numpy"
_BLOCK_SCHEMA = "rows binary, indptr binary, indices binary, ratings binary"
_ARROW_ROWS = 1 << 20  # rows per Arrow batch of the exported factors (list offsets stay int32)


@dataclass(frozen=True)
class Plan:
    """Sizes of one training problem and whether the cg solver may take it."""

    n_users: int
    n_items: int
    ratings: int
    rank: int
    limit_mb: float

    @property
    def broadcast_mb(self) -> float:
        """Both sides' factors: what each half-iteration broadcasts."""
        return (self.n_users + self.n_items) * self.rank * 4 / MB

    @property
    def fits(self) -> bool:
        return self.broadcast_mb <= self.limit_mb

    @property
    def reason(self) -> str:
        return (f"solver=cg broadcasts both sides' factors whole; ({self.n_users:,} users + "
                f"{self.n_items:,} items) x rank {self.rank} = {self.broadcast_mb:,.0f} MB exceeds "
                f"cgMaxBroadcastMb={self.limit_mb:g}")


@dataclass
class CgFactors:
    """The result of :func:`fit`: both sides' factors on the driver and the run's history."""

    user_factors: np.ndarray  # float32 (n_users, rank); rows without ratings are zero
    item_factors: np.ndarray
    user_present: np.ndarray  # bool (n_users,): rows that have ratings (the exported ones)
    item_present: np.ndarray
    loss: list = field(default_factory=list)  # objective after each iteration
    seconds: list = field(default_factory=list)  # wall time of each iteration


@dataclass(frozen=True)
class _Solved:
    """One partition's rows after a half-iteration (what the factor RDDs hold)."""

    rows: np.ndarray
    factors: np.ndarray
    gram: np.ndarray
    loss: float
    penalty: float


def plan(rated: DataFrame, params: dict, sizes: Optional[tuple[int, int, int]] = None) -> Plan:
    """Size the problem's broadcast against ``cgMaxBroadcastMb``.

    ``sizes`` is (users, items, ratings) when the caller counted them already (training indexes
    users and items as 0..n-1); without it, one aggregation over ``rated`` counts them.
    """
    if sizes is not None:
        return Plan(*sizes, params["rank"], params["cgMaxBroadcastMb"])
    row = rated.agg(F.max(USER_IDX), F.max(ITEM_IDX), F.count(F.lit(1))).first()
    n_users = 0 if row[0] is None else int(row[0]) + 1
    n_items = 0 if row[1] is None else int(row[1]) + 1
    return Plan(n_users, n_items, int(row[2]), params["rank"], params["cgMaxBroadcastMb"])


def check_fallback(problem: Plan, params: dict) -> Optional[str]:
    """The reason to fall back to MLlib, or None when cg takes the problem.

    Raises:
        UsageError: the problem is too large and ``regularization=constant``, which MLlib lacks.
    """
    if problem.fits:
        return None
    if params["regularization"] == CONSTANT:
        raise UsageError(f"{problem.reason}, and MLlib's solver (the fallback) has no "
                         "regularization=constant; raise cgMaxBroadcastMb (the executors and the "
                         "driver need the memory) or use regularization=scaled")
    return problem.reason


def fit(spark, rated: DataFrame, params: dict, blocks: tuple[int, int],
        problem: Optional[Plan] = None) -> CgFactors:
    """Train implicit ALS with the cg solver on :func:`batchrec.recipes.als.ratings` rows.

    Args:
        spark: the SparkSession.
        rated: DataFrame[user_idx int, item_idx int, confidence float].
        params: the resolved user-personalization parameters (rank, regParam, alpha, maxIter,
            seed, regularization, cgSteps, checkpointInterval).
        blocks: (user partitions, item partitions).
        problem: :func:`plan`'s result when already computed.
    """
    problem = problem or plan(rated, params)
    context = spark.sparkContext
    rank = params["rank"]
    kernel = als_cg_numba if kernel_name(params) == NUMBA else als_cg_kernel
    settings = {"alpha": params["alpha"], "reg_param": params["regParam"],
                "regularization": params["regularization"], "steps": params["cgSteps"]}
    user_blocks = csr_blocks(rated, USER_IDX, ITEM_IDX, blocks[0], rank).persist(StorageLevel.MEMORY_AND_DISK)
    item_blocks = csr_blocks(rated, ITEM_IDX, USER_IDX, blocks[1], rank).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        user_present = _present(user_blocks, problem.n_users)  # also caches the user blocks
        users = initial_factors(problem.n_users, rank, params["seed"])
        users[~user_present] = 0.0
        user_gram = users.astype(np.float64).T @ users.astype(np.float64)
        result = CgFactors(users, np.zeros((problem.n_items, rank), np.float32), user_present,
                           np.zeros(problem.n_items, bool))
        for iteration in range(1, params["maxIter"] + 1):
            start = time.perf_counter()
            # each side's first solve starts from zero, later ones from the side's last factors
            warm = iteration > 1
            item_parts = _half_iteration(context, item_blocks, result.user_factors, user_gram,
                                         result.item_factors if warm else None, kernel, settings)
            item_gram, _, item_penalty = _assemble(item_parts, result.item_factors, result.item_present)
            user_parts = _half_iteration(context, user_blocks, result.item_factors, item_gram,
                                         result.user_factors if warm else None, kernel, settings)
            user_gram, user_loss, _ = _assemble(user_parts, result.user_factors, result.user_present)
            result.loss.append(user_loss + item_penalty)
            result.seconds.append(time.perf_counter() - start)
            log.info("cg iteration %d/%d: loss %.6g, %.1f s", iteration, params["maxIter"],
                     result.loss[-1], result.seconds[-1])
    finally:
        user_blocks.unpersist()
        item_blocks.unpersist()
    return result


def kernel_name(params: dict) -> str:
    """The kernel ``cgKernel`` names: ``auto`` is numba's when numba imports, else numpy's (logged)."""
    wanted = params.get("cgKernel", AUTO)
    if wanted == NUMBA and not als_cg_numba.available():
        raise UsageError("cgKernel=numba needs the numba package on the driver and the executors "
                         "(pip install numba), or cgKernel=numpy")
    if wanted != AUTO:
        return wanted
    if als_cg_numba.available():
        return NUMBA
    log.warning("numba is not installed: the cg solver runs its numpy kernel, 2 to 3x slower per core")
    return NUMPY


def csr_blocks(rated: DataFrame, solved: str, fixed: str, partitions: int, rank: int):
    """The ratings grouped by ``solved`` into ``partitions`` partitions of CSR chunks.

    Returns:
        RDD with exactly one element per partition: the partition's list of
        :class:`~batchrec.recipes.als_cg_kernel.CsrChunk` (empty for an empty partition).
    """
    chunks = (rated.select(F.col(solved).cast("int"), F.col(fixed).cast("int"),
                           F.col(CONFIDENCE).cast("float"))
              .repartition(partitions, solved)
              .mapInArrow(partial(_arrow_chunks, solved=solved, fixed=fixed, rank=rank), _BLOCK_SCHEMA))
    return chunks.rdd.mapPartitions(_one_block, preservesPartitioning=True)


def factor_frame(spark, factors: np.ndarray, present: np.ndarray, idx_col: str) -> DataFrame:
    """``DataFrame[idx_col int, features array<float>]`` of the present rows, ascending."""
    rows = np.flatnonzero(present).astype(np.int32)
    rank = factors.shape[1]
    batches = []
    for start in range(0, len(rows), _ARROW_ROWS):
        chosen = rows[start:start + _ARROW_ROWS]
        values = pa.array(np.ascontiguousarray(factors[chosen]).reshape(-1))
        offsets = pa.array(np.arange(0, (len(chosen) + 1) * rank, rank, dtype=np.int32))
        batches.append(pa.RecordBatch.from_arrays(
            [pa.array(chosen), pa.ListArray.from_arrays(offsets, values)], names=[idx_col, FEATURES]))
    schema = pa.schema([(idx_col, pa.int32()), (FEATURES, pa.list_(pa.float32()))])
    return spark.createDataFrame(pa.Table.from_batches(batches, schema=schema))


def _half_iteration(context, blocks, fixed: np.ndarray, gram: np.ndarray, previous: Optional[np.ndarray],
                    kernel, settings: dict) -> list:
    """Update one side: one stage over its cached blocks; returns the partitions' :class:`_Solved`.

    The fixed side, its Gram matrix and the solved side's previous factors (the warm start; None
    on the side's first solve) travel in one broadcast, so no state lives on the executors between
    stages: a task lost mid-training reruns from the cached blocks and the broadcast.
    """
    shared = context.broadcast((fixed, gram, previous))
    try:
        return blocks.map(partial(_solve_block, shared=shared, kernel=kernel, settings=settings)).collect()
    finally:
        shared.destroy()


def _assemble(parts, factors: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Scatter the parts' rows into ``factors``; returns (Gram matrix, loss, penalty) summed."""
    gram = np.zeros((factors.shape[1],) * 2)
    loss = penalty = 0.0
    for part in parts:
        factors[part.rows] = part.factors
        present[part.rows] = True
        gram += part.gram
        loss += part.loss
        penalty += part.penalty
    return gram, loss, penalty


def _present(blocks, n: int) -> np.ndarray:
    present = np.zeros(n, bool)
    for rows in blocks.map(lambda chunks: [c.rows for c in chunks]).collect():
        for part in rows:
            present[part] = True
    return present


def _solve_block(chunks, shared, kernel, settings) -> _Solved:
    """Update every chunk of one partition with ``kernel``'s ``solve_chunk`` (executor side)."""
    fixed, gram, previous = shared.value
    rank = fixed.shape[1]
    results = []
    for chunk in chunks:
        start = np.zeros((len(chunk.rows), rank), np.float32) if previous is None else previous[chunk.rows]
        results.append(kernel.solve_chunk(chunk, start, fixed, gram, **settings))
    if not results:
        return _Solved(np.zeros(0, np.int32), np.zeros((0, rank), np.float32), np.zeros((rank, rank)), 0.0, 0.0)
    return _Solved(np.concatenate([c.rows for c in chunks]),
                   np.concatenate([r.factors for r in results]),
                   sum(r.gram for r in results), sum(r.loss for r in results),
                   sum(r.penalty for r in results))


def _arrow_chunks(batches: Iterator[pa.RecordBatch], solved: str, fixed: str, rank: int
                  ) -> Iterator[pa.RecordBatch]:
    """One partition's ratings (in any order) -> CSR chunks, one output row per chunk (executor side)."""
    batches = list(batches)
    if not batches:  # an empty partition (more partitions than rows) yields no batch at all
        return
    table = pa.Table.from_batches(batches)
    if table.num_rows == 0:
        return
    # sorted here rather than by Spark (sortWithinPartitions, 2x this whole step): one int64 key
    # (row, column) sorts about 7x faster than numpy's lexsort of the two int32 keys
    rows = table.column(solved).to_numpy().astype(np.int32)
    indices = table.column(fixed).to_numpy().astype(np.int32)
    order = np.argsort((rows.astype(np.int64) << 32) | indices)
    rows, indices = rows[order], indices[order]
    ratings = table.column(CONFIDENCE).to_numpy()[order].astype(np.float32)
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    indptr = np.r_[starts, len(rows)].astype(np.int64)
    unique_rows = rows[starts]
    for first, last in chunk_bounds(indptr, rank):
        low, high = indptr[first], indptr[last]
        yield pa.RecordBatch.from_pydict({
            "rows": [unique_rows[first:last].tobytes()],
            "indptr": [(indptr[first:last + 1] - low).astype(np.int32).tobytes()],
            "indices": [indices[low:high].tobytes()],
            "ratings": [ratings[low:high].tobytes()],
        }, schema=pa.schema([(name, pa.binary()) for name in ("rows", "indptr", "indices", "ratings")]))


def _one_block(rows) -> Iterator[list]:
    """Collect a partition's chunk rows into one list (so every partition has exactly one element)."""
    yield [CsrChunk(np.frombuffer(r["rows"], np.int32), np.frombuffer(r["indptr"], np.int32),
                    np.frombuffer(r["indices"], np.int32), np.frombuffer(r["ratings"], np.float32))
           for r in rows]


__all__ = ["Plan", "CgFactors", "plan", "check_fallback", "fit", "csr_blocks", "factor_frame"]
