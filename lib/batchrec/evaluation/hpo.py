"""Parameter search: random or grid search over a recipe's parameters within a trial budget.

Trials are chosen here and scored by a caller-supplied function (``runner.search_parameters`` trains
on a validation split carved from the training data and measures ``evaluate.hpo_metric``). The first
trial is always the current parameters, so the search never returns something worse on the
validation data than what it started from. Parameters the user fixed with ``--param`` are not
searched. Every trial is recorded: parameters, metric value, seconds.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from typing import Any, Callable, Mapping, Optional, Sequence

from batchrec.errors import UsageError

log = logging.getLogger(__name__)

RANDOM = "random"
GRID = "grid"
METHODS = (RANDOM, GRID)

# Values around the tuned defaults (docs/benchmarks.md); MLlib's names for ALS.
SEARCH_SPACES: dict[str, dict[str, tuple]] = {
    "user-personalization": {
        "rank": (16, 32, 64, 128),
        "regParam": (0.03, 0.1, 0.3, 1.0),
        "alpha": (0.5, 1.0, 2.0, 5.0, 20.0),
        "maxIter": (5, 10, 15),
    },
    "popularity-count": {},
    "trending-now": {"window_days": (1.0, 3.0, 7.0, 14.0, 30.0)},
    "ease": {"regularization": (25.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0)},
    "sar": {"similarity": ("jaccard", "lift"), "time_decay_half_life_days": (0.0, 7.0, 30.0, 90.0, 365.0)},
}


def search_space(recipe: str, fixed: Mapping[str, Any] = ()) -> dict[str, tuple]:
    """The searched parameters of ``recipe`` minus those in ``fixed``."""
    space = SEARCH_SPACES.get(recipe, {})
    return {k: v for k, v in space.items() if k not in dict(fixed)}


def candidates(recipe: str, base: Mapping[str, Any], trials: int, seed: int,
               method: str = RANDOM, fixed: Mapping[str, Any] = ()) -> list[dict]:
    """Parameter sets to try, the first being ``base`` itself.

    Args:
        recipe: recipe name.
        base: the full current parameters (defaults with the user's values).
        trials: budget, at least 1.
        seed: seeds the random draws.
        method: ``random`` (distinct points drawn from the grid) or ``grid`` (the grid in order,
            cut at the budget).
        fixed: parameters the user set explicitly; never changed.

    Raises:
        UsageError: an unknown method or a budget below 1.
    """
    if method not in METHODS:
        raise UsageError(f"evaluate.hpo_method = {method!r}; expected one of {', '.join(METHODS)}")
    if trials < 1:
        raise UsageError(f"evaluate.hpo_trials = {trials}; expected at least 1")
    space = search_space(recipe, fixed)
    chosen = [dict(base)]
    if not space:
        return chosen
    names = sorted(space)
    grid = [dict(zip(names, values)) for values in itertools.product(*(space[n] for n in names))]
    if method == RANDOM:
        random.Random(seed).shuffle(grid)
    for point in grid:
        if len(chosen) >= trials:
            break
        candidate = {**base, **point}
        if candidate not in chosen:
            chosen.append(candidate)
    return chosen


def run_search(score: Callable[[dict], float], points: Sequence[dict], metric: str
               ) -> tuple[dict, list[dict]]:
    """Score every point and return the best one (first wins ties) and every trial.

    Args:
        score: trains and measures one parameter set, returning the metric value.
        points: from :func:`candidates`.
        metric: the metric's name, recorded with each trial.
    """
    trials: list[dict] = []
    best: Optional[dict] = None
    best_value = float("-inf")
    for number, params in enumerate(points):
        start = time.perf_counter()
        value = float(score(params))
        seconds = round(time.perf_counter() - start, 2)
        trials.append({"trial": number, "params": dict(params), "metric": metric, "value": value,
                       "seconds": seconds})
        log.info("hpo trial=%d %s=%.5f seconds=%.1f params=%s", number, metric, value, seconds, params)
        if value > best_value:
            best, best_value = dict(params), value
    return best or dict(points[0]), trials
