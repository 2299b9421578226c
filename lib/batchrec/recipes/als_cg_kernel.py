"""Batched conjugate-gradient updates of implicit-ALS factor rows, in numpy and scipy.sparse.

No Spark here: :mod:`batchrec.recipes.als_cg` calls :func:`solve_chunk` on the executors, one CSR
chunk of rows at a time. For each row ``u`` of a chunk (the side being solved) with the fixed
side's factors ``Y`` and Gram matrix ``G = YᵀY``, implicit ALS (Hu, Koren & Volinsky 2008) solves::

    (G + Yᵀ(C_u − I)Y + λ_u I) x_u = Yᵀ C_u p_u

with MLlib's conventions for a rating ``r``: confidence ``c = 1 + alpha·|r|``, preference
``p = 1`` when ``r > 0`` else 0. Rather than forming and factoring each row's r x r matrix (MLlib's
O(n_u·r² + r³) per row), a few conjugate-gradient steps warm-started from the previous factors
(Takács, Pilászy & Tikk 2011) touch the row's ratings once per step: O(n_u·r + r²) per row and step.

All rows of a chunk move together: the matrix-vector product ``A_u v_u`` for every row at once is
``V G + λ ∘ V`` (one BLAS product) plus the sparse part, gathered factor rows and a row-wise dot
product followed by one scipy CSR x dense product. No Python loop runs per row or per rating.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse

# A chunk's gathered factor rows (nnz x rank float32) are its largest temporaries (two of that
# size live through the CG steps): about 8 MB keeps a Python worker's memory small whatever the
# partition's size and the temporaries in cache; 64 MB chunks took 2x the CPU time.
CHUNK_BYTES = 8 * 2**20
SCALED = "scaled"
CONSTANT = "constant"
REGULARIZATIONS = (SCALED, CONSTANT)


@dataclass(frozen=True)
class CsrChunk:
    """Consecutive rows of the side being solved, with their ratings in CSR form.

    Attributes:
        rows: int32 (m,), the rows' global indexes (user_idx or item_idx), ascending.
        indptr: int32 (m + 1,), ``indices[indptr[j]:indptr[j + 1]]`` are row j's ratings.
        indices: int32 (nnz,), indexes into the fixed side's factors.
        ratings: float32 (nnz,), the prepared confidences (MLlib's "ratings").
    """

    rows: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    ratings: np.ndarray

    @property
    def nnz(self) -> int:
        return int(self.indices.shape[0])


@dataclass(frozen=True)
class ChunkResult:
    """Updated factors of one chunk and what the driver needs from them.

    Attributes:
        factors: float32 (m, rank), in ``rows`` order.
        gram: float64 (rank, rank), ``factorsᵀ factors`` (the next half-iteration's ``G``).
        loss: this chunk's part of the objective: the confidence-weighted squared error of its
            rows against every column (observed or not) plus its rows' regularization.
        penalty: the rows' regularization alone, ``Σ λ_u ‖x_u‖²``.
    """

    factors: np.ndarray
    gram: np.ndarray
    loss: float
    penalty: float


def chunk_bounds(indptr: np.ndarray, rank: int, chunk_bytes: int = CHUNK_BYTES) -> list[tuple[int, int]]:
    """Split rows ``[0, m)`` into runs of about ``chunk_bytes`` of gathered factors each.

    A row is never split; a row larger than the budget is a chunk of its own.
    """
    m = len(indptr) - 1
    budget = max(1, chunk_bytes // (4 * rank))
    bounds, start = [], 0
    while start < m:
        stop = int(np.searchsorted(indptr, indptr[start] + budget, side="right")) - 1
        stop = min(m, max(stop, start + 1))
        bounds.append((start, stop))
        start = stop
    return bounds


def row_regularization(chunk: CsrChunk, reg_param: float, regularization: str) -> np.ndarray:
    """λ per row (float32): ``reg_param·n_u`` (MLlib's ALS-WR, ``scaled``) or ``reg_param`` (``constant``).

    ``n_u`` counts the row's positive ratings, as MLlib counts them.
    """
    if regularization == CONSTANT:
        return np.full(len(chunk.rows), reg_param, dtype=np.float32)
    running = np.concatenate(([0], np.cumsum(chunk.ratings > 0, dtype=np.int64)))
    positive = running[chunk.indptr[1:]] - running[chunk.indptr[:-1]]
    return (reg_param * positive).astype(np.float32)


def solve_chunk(chunk: CsrChunk, start: np.ndarray, fixed: np.ndarray, gram: np.ndarray, *,
                alpha: float, reg_param: float, regularization: str, steps: int) -> ChunkResult:
    """``steps`` conjugate-gradient steps on every row of ``chunk`` from ``start``.

    Args:
        chunk: the rows to update; every row has at least one rating.
        start: float32 (m, rank) factors to warm-start from (zeros on the first solve).
        fixed: float32 (n, rank) factors of the other side, indexed by ``chunk.indices``.
        gram: (rank, rank) ``fixedᵀ fixed``.
        alpha, reg_param, regularization: as in MLlib (see :func:`row_regularization`).
        steps: CG steps; ``rank`` steps solve each row's system exactly up to rounding.
    """
    m, rank = start.shape
    n_fixed = fixed.shape[0]
    counts = np.diff(chunk.indptr).astype(np.intp)
    gathered = fixed[chunk.indices]  # (nnz, rank): each rated column's factors, read every step
    c1 = (alpha * np.abs(chunk.ratings)).astype(np.float32)  # confidence - 1
    lam = row_regularization(chunk, reg_param, regularization)[:, None]
    gram32 = gram.astype(np.float32)

    def sparse_rows(weights: np.ndarray) -> np.ndarray:
        """Σ_i weights_ui · y_i for every row u: one CSR x dense product."""
        matrix = scipy.sparse.csr_array((weights, chunk.indices, chunk.indptr), shape=(m, n_fixed))
        return np.asarray(matrix @ fixed, dtype=np.float32)

    def product(v: np.ndarray) -> np.ndarray:
        """A_u v_u for every row: (G + Yᵀ(C_u − I)Y + λ_u I) v_u."""
        dots = np.einsum("ij,ij->i", gathered, np.repeat(v, counts, axis=0))
        return v @ gram32 + lam * v + sparse_rows(c1 * dots)

    positive = chunk.ratings > 0
    b = sparse_rows(np.where(positive, 1.0 + c1, 0.0).astype(np.float32))
    x = np.array(start, dtype=np.float32, copy=True)
    residual = b - product(x)
    direction = residual.copy()
    rs = np.einsum("ij,ij->i", residual, residual)
    for _ in range(steps):
        moved = product(direction)
        curvature = np.einsum("ij,ij->i", direction, moved)
        # rows already solved (zero residual) take no step instead of dividing by zero
        step = np.divide(rs, curvature, out=np.zeros_like(rs), where=curvature > 0)[:, None]
        x += step * direction
        residual -= step * moved
        rs_next = np.einsum("ij,ij->i", residual, residual)
        beta = np.divide(rs_next, rs, out=np.zeros_like(rs), where=rs > 0)[:, None]
        direction = residual + beta * direction
        rs = rs_next

    # f(x) = xᵀAx − 2bᵀx + Σ c·p² with Ax = b − residual; Σ c·p² sums 1 + c1 over positive ratings
    constant = float(np.where(positive, 1.0 + c1, 0.0).sum(dtype=np.float64))
    loss = constant - float(np.einsum("ij,ij->", x, b + residual, dtype=np.float64))
    norms = np.einsum("ij,ij->i", x, x, dtype=np.float64)
    penalty = float((lam[:, 0] * norms).sum(dtype=np.float64))
    x64 = x.astype(np.float64)
    return ChunkResult(x, x64.T @ x64, loss, penalty)


def initial_factors(n: int, rank: int, seed: int) -> np.ndarray:
    """float32 (n, rank) rows drawn from a normal distribution and scaled to unit norm (as MLlib).

    The same ``seed`` gives the same matrix whatever the partitioning.
    """
    factors = np.random.default_rng(seed).standard_normal((n, rank), dtype=np.float32)
    factors /= np.linalg.norm(factors, axis=1, keepdims=True)
    return factors


__all__ = ["CsrChunk", "ChunkResult", "chunk_bounds", "row_regularization", "solve_chunk",
           "initial_factors", "REGULARIZATIONS", "SCALED", "CONSTANT"]
