"""bench/bench_cg_kernel.py at a tiny size: it cannot rot, and its check is a real one.

The script runs both cg kernels and the ``implicit`` package's compiled CG kernel (an independent
implementation) on the same ratings from the same start; with constant regularization they solve
the same systems, so their factors must agree to float32 rounding on both sides.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_cg_kernel.py"


def test_both_kernels_take_the_same_steps_as_implicits_kernel(capsys):
    spec = importlib.util.spec_from_file_location("bench_cg_kernel", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--users", "300", "--items", "80", "--ratings", "4000", "--rank", "16",
                       "--repeats", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    for side in ("users", "items"):
        timed = result[side]
        assert timed["rows"] > 0
        for kernel in ("numba", "numpy"):
            assert timed[f"{kernel}_ratio"] > 0
            # factors are ~0.1 in size: 1e-5 is float32 rounding over 3 steps, a wrong step is ~1e-2
            assert timed[f"{kernel}_largest_factor_difference"] < 1e-5, (side, kernel, timed)
