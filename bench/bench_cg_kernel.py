"""Benchmark: the cg solver's kernels (numba, numpy) against the ``implicit`` package's CG kernel.

Each updates every row of one side once (a half-iteration) with 3 conjugate-gradient steps from
the same start, on the same CSR ratings, in one thread (BLAS limited to one thread; Spark runs one
Python worker per core, so one thread is the per-core comparison):

* ``numba`` and ``numpy``: :func:`batchrec.recipes.als_cg_numba.solve_chunk` and
  :func:`batchrec.recipes.als_cg_kernel.solve_chunk` over the rows split by
  :func:`~batchrec.recipes.als_cg_kernel.chunk_bounds`, as an executor runs them (numba's
  compilation happens in a warm-up call, untimed: a Python worker compiles once, or loads the
  on-disk cache);
* ``implicit``: ``implicit.cpu._als._least_squares_cg`` (the kernel behind
  ``AlternatingLeastSquares``), with one thread.

Both use constant regularization so the two solve the same systems (batchrec's confidence
``1 + alpha·r`` with alpha 1 is ``implicit``'s ``1 + r``), and the script reports the largest
difference between each kernel's result and ``implicit``'s as a check that the work is the same. Ratings: ``--users`` x
``--items`` with ``--ratings`` pairs drawn with Zipf-distributed item popularity (seed 0); the
user side (many short rows) and the item side (few long rows) are both timed, best of
``--repeats``. Usage::

    .venv/bin/python bench/bench_cg_kernel.py
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--ratings", type=int, default=1_500_000)
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--reg", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import scipy.sparse
    from threadpoolctl import threadpool_limits
    from implicit.cpu import _als

    from batchrec.recipes import als_cg_kernel, als_cg_numba
    from batchrec.recipes.als_cg_kernel import initial_factors

    rng = np.random.default_rng(0)
    users = rng.integers(0, args.users, args.ratings)
    items = (rng.zipf(1.3, args.ratings) - 1) % args.items
    ratings = scipy.sparse.csr_matrix((np.ones(args.ratings, np.float32), (users, items)),
                                      shape=(args.users, args.items))
    ratings.sum_duplicates()  # a pair drawn k times is one rating of k
    result = {"args": vars(args), "pairs": int(ratings.nnz), "load_average": os.getloadavg()}
    for side, matrix in (("users", ratings), ("items", ratings.T.tocsr())):
        matrix = matrix[np.diff(matrix.indptr) > 0]  # rows with ratings only, as training has
        fixed = initial_factors(matrix.shape[1], args.rank, 1) * 0.1
        start = initial_factors(matrix.shape[0], args.rank, 2) * 0.1
        gram = fixed.astype(np.float64).T @ fixed.astype(np.float64)
        chunks = _chunks(matrix, args.rank)
        confidences = matrix.copy()
        confidences.data = (1.0 + confidences.data).astype(np.float32)

        def ours(kernel):
            def run():
                return np.concatenate([
                    kernel.solve_chunk(c, start[c.rows], fixed, gram, alpha=1.0, reg_param=args.reg,
                                       regularization="constant", steps=3).factors for c in chunks])
            return run

        def theirs():
            out = start.copy()
            _als._least_squares_cg(confidences.indptr, confidences.indices, confidences.data, out, fixed,
                                   args.reg, 1, 3)
            return out

        timings = {}
        with threadpool_limits(1, "blas"):
            kernels = (("numba", ours(als_cg_numba)), ("numpy", ours(als_cg_kernel)), ("implicit", theirs))
            for name, fn in kernels:
                fn()  # warm-up: numba compiles (or loads its cache) on the first call
                best = float("inf")
                for _ in range(args.repeats):
                    began = time.perf_counter()
                    factors = fn()
                    best = min(best, time.perf_counter() - began)
                timings[name] = (best, factors)
        reference_s, reference = timings["implicit"]
        result[side] = {"rows": int(matrix.shape[0]), "implicit_s": round(reference_s, 4)}
        for name in ("numba", "numpy"):
            seconds, factors = timings[name]
            result[side].update({f"{name}_s": round(seconds, 4), f"{name}_ratio": round(seconds / reference_s, 2),
                                 f"{name}_largest_factor_difference": float(np.abs(factors - reference).max())})
    print(json.dumps(result, indent=2))
    return 0


def _chunks(matrix, rank):
    """The rows of a CSR matrix as the kernel's chunks, split as an executor splits them."""
    from batchrec.recipes.als_cg_kernel import CsrChunk, chunk_bounds

    indptr = matrix.indptr.astype(np.int64)
    out = []
    for first, last in chunk_bounds(indptr, rank):
        low, high = indptr[first], indptr[last]
        out.append(CsrChunk(np.arange(first, last, dtype=np.int32),
                              (indptr[first:last + 1] - low).astype(np.int32),
                              matrix.indices[low:high].astype(np.int32),
                              matrix.data[low:high].astype(np.float32)))
    return out


if __name__ == "__main__":
    raise SystemExit(main())
