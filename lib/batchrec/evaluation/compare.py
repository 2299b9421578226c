"""Is one recipe really better than another on this split? A paired bootstrap over users.

A difference of means over a few dozen users can be noise. Both recipes are measured on the same
evaluated users, so the comparison is paired: each bootstrap sample draws users with replacement
and takes the ratio of the two means over the same draw. The interval is the percentile interval
of those ratios (Efron & Tibshirani, ch. 13). Wins, losses and ties count the users for whom the
candidate's value is above, below or equal to the baseline's.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

from batchrec.errors import UsageError

RESAMPLES = 2000
LEVEL = 0.9
SEED = 42
# Resamples drawn per numpy call: bounds memory to CHUNK x users indexes.
_CHUNK = 100


def paired_ratio(baseline: Mapping[str, float], candidate: Mapping[str, float],
                 resamples: int = RESAMPLES, level: float = LEVEL, seed: int = SEED) -> dict:
    """The ratio of the candidate's mean to the baseline's, with a paired bootstrap interval.

    Args:
        baseline: per-user values of the baseline recipe, ``{user_id: value}``.
        candidate: per-user values of the compared recipe; must cover the same users.
        resamples: bootstrap samples.
        level: coverage of the interval (0.9 gives the 5th and 95th percentiles).
        seed: seed of the bootstrap draws, so a report is reproducible.

    Returns:
        ``{"users", "ratio", "low", "high", "level", "wins", "losses", "ties"}``; ``ratio``,
        ``low`` and ``high`` are None when the baseline's mean is 0 (no ratio exists).

    Raises:
        UsageError: the two recipes were measured on different users, or no user at all.
    """
    if set(baseline) != set(candidate):
        raise UsageError(f"paired comparison needs the same users: {len(baseline)} baseline and "
                         f"{len(candidate)} candidate users, "
                         f"{len(set(baseline) ^ set(candidate))} in only one of them")
    if not baseline:
        raise UsageError("paired comparison needs at least one evaluated user")
    users = sorted(baseline)
    base = np.array([baseline[u] for u in users], dtype=np.float64)
    cand = np.array([candidate[u] for u in users], dtype=np.float64)
    result = {"users": len(users), "level": level, "wins": int((cand > base).sum()),
              "losses": int((cand < base).sum()), "ties": int((cand == base).sum()),
              "ratio": None, "low": None, "high": None}
    if base.mean() == 0:
        return result
    rng = np.random.default_rng(seed)
    ratios = []
    for start in range(0, resamples, _CHUNK):
        draw = rng.integers(0, len(users), size=(min(_CHUNK, resamples - start), len(users)))
        base_means = base[draw].mean(axis=1)
        # A draw where the baseline scores 0 everywhere has no ratio; it is left out.
        usable = base_means > 0
        ratios.append(cand[draw].mean(axis=1)[usable] / base_means[usable])
    ratios = np.concatenate(ratios)
    tail = (1 - level) / 2 * 100
    result.update(ratio=float(cand.mean() / base.mean()),
                  low=float(np.percentile(ratios, tail)),
                  high=float(np.percentile(ratios, 100 - tail)))
    return result


def versus_first(results: Sequence, metric: str, seed: int = SEED) -> list[Optional[dict]]:
    """Each recipe result against the first one (the baseline) on ``metric``.

    Args:
        results: ``RecipeResult``s of one split, measured with ``per_user_metric=metric``.
        metric: the compared metric, e.g. ``ndcg@10``.
        seed: seed of the bootstrap draws.

    Returns:
        One entry per result: None for the first, else :func:`paired_ratio` of its per-user values
        against the first's, with ``baseline`` (the first recipe) and ``metric`` added.
    """
    if not results:
        return []
    first = results[0]
    return [None] + [{"baseline": first.recipe, "metric": metric,
                      **paired_ratio(first.per_user, r.per_user, seed=seed)} for r in results[1:]]
