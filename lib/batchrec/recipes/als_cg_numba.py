"""The cg kernel compiled by numba: :func:`batchrec.recipes.als_cg_kernel.solve_chunk`'s updates, row by row.

The numpy kernel batches all rows of a chunk, so every CG step makes several passes over the
chunk's gathered factor rows (gather, repeat, row-wise dot, sparse product), each through memory.
Compiled, one row's ratings and vectors stay in cache through all of its steps: per core it takes
2 to 3x less time than the numpy kernel and less than the ``implicit`` package's Cython kernel
(bench/bench_cg_kernel.py, docs/benchmarks.md), and unlike that kernel it takes a regularization
per row, which MLlib's scaled form (ALS-WR) needs.

The arithmetic is the numpy kernel's, in float32 with float64 sums for the loss. The two agree to
float32 rounding, not bit for bit: ``fastmath`` lets the compiler reorder the rank-length dot
products into SIMD lanes.

numba is a dependency of batchrec; this module still imports without it (``available()`` is then
False) so a cluster image lacking it trains with the numpy kernel instead (``cgKernel=auto``).
"""

from __future__ import annotations

import numpy as np

from batchrec.recipes.als_cg_kernel import ChunkResult, CsrChunk, row_regularization

try:
    import numba
except ImportError:  # pragma: no cover - the CI installs numba; exercised by cgKernel=numpy
    numba = None

# fastmath: reorder the rank-length sums into SIMD lanes; nogil: Spark's Python worker threads
_OPTIONS = {"nogil": True, "fastmath": True, "boundscheck": False}


def available() -> bool:
    """Whether numba imports here (on the driver; executors run the same image)."""
    return numba is not None


def solve_chunk(chunk: CsrChunk, start: np.ndarray, fixed: np.ndarray, gram: np.ndarray, *,
                alpha: float, reg_param: float, regularization: str, steps: int) -> ChunkResult:
    """``steps`` conjugate-gradient steps on every row of ``chunk`` from ``start``.

    The arguments and the result are those of :func:`batchrec.recipes.als_cg_kernel.solve_chunk`.
    """
    if numba is None:
        raise ImportError("the numba cg kernel needs numba (pip install numba), or use cgKernel=numpy")
    x = np.array(start, dtype=np.float32, copy=True, order="C")
    lam = row_regularization(chunk, reg_param, regularization)
    loss, penalty = _cg_rows(chunk.indptr, chunk.indices, chunk.ratings, np.float32(alpha), lam,
                              np.ascontiguousarray(fixed, dtype=np.float32),
                              np.ascontiguousarray(gram, dtype=np.float32), x, steps)
    x64 = x.astype(np.float64)
    return ChunkResult(x, x64.T @ x64, float(loss), float(penalty))


def _jit(function):
    """``function`` compiled by numba (lazily, on its first call), or as is without numba."""
    if numba is None:
        return function
    try:
        # the on-disk cache saves each Python worker the compilation (1.4 s here; 0.01 s from the cache)
        return numba.njit(cache=True, **_OPTIONS)(function)
    except RuntimeError:  # no writable cache location (e.g. imported from a --py-files zip)
        return numba.njit(**_OPTIONS)(function)


@_jit
def _product(v, indices, ratings, alpha, lam, fixed, gram, low, high, out):  # pragma: no cover
    """``out = (G + Yᵀ(C_u − I)Y + λ_u I) v`` for one row."""
    rank = v.shape[0]
    for k in range(rank):
        total = lam * v[k]
        g = gram[k]
        for l in range(rank):
            total += g[l] * v[l]
        out[k] = total
    for j in range(low, high):
        y = fixed[indices[j]]
        dot = np.float32(0.0)
        for k in range(rank):
            dot += y[k] * v[k]
        weight = alpha * abs(ratings[j]) * dot
        for k in range(rank):
            out[k] += weight * y[k]


@_jit
def _cg_rows(indptr, indices, ratings, alpha, lam, fixed, gram, x, steps):  # pragma: no cover - compiled
    """Update ``x`` in place, row by row; returns (loss, penalty) summed over the rows.

    Row ``u`` solves ``(G + Yᵀ(C_u − I)Y + λ_u I) x_u = Yᵀ C_u p_u`` with confidence − 1 =
    ``alpha·|r|`` and ``p = 1`` for ``r > 0``; the loss is ``Σ c·p² − x_uᵀ(b_u + residual_u)``
    (the objective at ``x_u``, as the numpy kernel computes it).
    """
    m, rank = x.shape
    b = np.empty(rank, np.float32)
    residual = np.empty(rank, np.float32)
    direction = np.empty(rank, np.float32)
    moved = np.empty(rank, np.float32)
    loss = 0.0
    penalty = 0.0
    for u in range(m):
        low, high = indptr[u], indptr[u + 1]
        row = x[u]
        constant = 0.0
        b[:] = 0.0
        for j in range(low, high):
            r = ratings[j]
            if r > 0:
                weight = np.float32(1.0) + alpha * r
                constant += weight
                y = fixed[indices[j]]
                for k in range(rank):
                    b[k] += weight * y[k]
        _product(row, indices, ratings, alpha, lam[u], fixed, gram, low, high, moved)
        rs = np.float32(0.0)
        for k in range(rank):
            residual[k] = b[k] - moved[k]
            direction[k] = residual[k]
            rs += residual[k] * residual[k]
        for _ in range(steps):
            _product(direction, indices, ratings, alpha, lam[u], fixed, gram, low, high, moved)
            curvature = np.float32(0.0)
            for k in range(rank):
                curvature += direction[k] * moved[k]
            # a row already solved (zero residual) takes no step instead of dividing by zero
            step = rs / curvature if curvature > 0 else np.float32(0.0)
            rs_next = np.float32(0.0)
            for k in range(rank):
                row[k] += step * direction[k]
                residual[k] -= step * moved[k]
                rs_next += residual[k] * residual[k]
            beta = rs_next / rs if rs > 0 else np.float32(0.0)
            for k in range(rank):
                direction[k] = residual[k] + beta * direction[k]
            rs = rs_next
        fit = 0.0
        norm = 0.0
        for k in range(rank):
            fit += np.float64(row[k]) * (np.float64(b[k]) + np.float64(residual[k]))
            norm += np.float64(row[k]) * np.float64(row[k])
        loss += constant - fit
        penalty += lam[u] * norm
    return loss, penalty


__all__ = ["available", "solve_chunk"]
