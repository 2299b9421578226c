"""Paired bootstrap comparison of two recipes' per-user metric values."""

import numpy as np
import pytest

from batchrec.errors import UsageError
from batchrec.evaluation.compare import paired_ratio


def test_a_constant_ratio_has_a_zero_width_interval():
    baseline = {f"u{i}": v for i, v in enumerate([0.2, 0.5, 0.0, 1.0, 0.3])}
    candidate = {u: 2 * v for u, v in baseline.items()}
    result = paired_ratio(baseline, candidate)
    assert result["ratio"] == pytest.approx(2.0)
    assert result["low"] == pytest.approx(2.0) and result["high"] == pytest.approx(2.0)
    # u2 scores 0 for both: a tie; every other user is better.
    assert (result["wins"], result["losses"], result["ties"], result["users"]) == (4, 0, 1, 5)


def test_hand_counted_wins_losses_and_ratio():
    baseline = {"a": 1.0, "b": 0.0, "c": 1.0, "d": 0.0}
    candidate = {"a": 1.0, "b": 1.0, "c": 0.0, "d": 0.0}
    result = paired_ratio(baseline, candidate, resamples=500)
    assert result["ratio"] == pytest.approx(1.0)  # mean 0.5 against 0.5
    assert (result["wins"], result["losses"], result["ties"]) == (1, 1, 2)
    assert result["low"] < 1.0 < result["high"]


def test_interval_matches_an_independent_bootstrap_and_narrows_with_users():
    rng = np.random.default_rng(3)
    base = rng.uniform(0, 1, 400)
    cand = base * 1.3 + rng.normal(0, 0.2, 400)
    result = paired_ratio({i: b for i, b in enumerate(base)}, {i: c for i, c in enumerate(cand)},
                          resamples=3000, seed=9)
    # An independent percentile bootstrap (different draws): the ends agree to sampling error.
    draws = np.random.default_rng(123).integers(0, 400, (3000, 400))
    ratios = cand[draws].mean(1) / base[draws].mean(1)
    assert result["low"] == pytest.approx(np.percentile(ratios, 5), abs=0.01)
    assert result["high"] == pytest.approx(np.percentile(ratios, 95), abs=0.01)
    few = paired_ratio({i: b for i, b in enumerate(base[:25])}, {i: c for i, c in enumerate(cand[:25])},
                       resamples=3000, seed=9)
    assert few["high"] - few["low"] > 2 * (result["high"] - result["low"])


def test_same_seed_same_interval():
    baseline = {i: float(i % 3) for i in range(30)}
    candidate = {i: float((i * 7) % 4) for i in range(30)}
    assert paired_ratio(baseline, candidate, seed=5) == paired_ratio(baseline, candidate, seed=5)


def test_zero_baseline_has_no_ratio():
    result = paired_ratio({"a": 0.0, "b": 0.0}, {"a": 0.5, "b": 0.0})
    assert result["ratio"] is None and result["low"] is None and result["wins"] == 1


def test_different_users_or_none_is_a_usage_error():
    with pytest.raises(UsageError, match="same users: 2 baseline and 2 candidate users, 2 in only one"):
        paired_ratio({"a": 1.0, "b": 1.0}, {"a": 1.0, "c": 1.0})
    with pytest.raises(UsageError, match="at least one evaluated user"):
        paired_ratio({}, {})
