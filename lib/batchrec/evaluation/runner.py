"""Train a recipe on a split, recommend for the held-out users and measure the lists.

Used by ``batchrec evaluate`` (several recipes on one split) and by ``batchrec train``
(:func:`holdout_metrics` for ``--evaluate``, :func:`search_parameters` for ``--hpo``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batchrec import logs
from batchrec.columns import ITEM_ID, USER_ID
from batchrec.errors import DataError, UsageError
from batchrec.evaluation import hpo, metrics, splits

log = logging.getLogger(__name__)

def per_user(recipe: str) -> bool:
    """Whether ``recipe`` answers items for a user (the catalogue says so); related-items recipes
    train and serve ``related`` but have no per-user lists to evaluate."""
    from batchrec import catalogue

    return catalogue.get(recipe).can(catalogue.ITEMS_FOR_USER)


def check_per_user(recipe: str) -> None:
    """Raises UsageError for a recipe that produces related items instead of per-user lists."""
    if not per_user(recipe):
        raise UsageError(f"--recipe {recipe} relates items to items and has no per-user "
                         f"recommendations to evaluate; evaluate per-user recipes instead")


@dataclass
class RecipeResult:
    """The measurements of one recipe on one split."""

    recipe: str
    params: dict
    metrics: dict
    seconds: dict
    histogram: Optional[dict] = None
    trials: list = field(default_factory=list)
    per_user: Optional[dict] = None  # {user_id: value} of one metric, for paired comparisons


@dataclass
class EvaluationContext:
    """What every recipe evaluated on one split shares: the catalogue and item popularity."""

    split: splits.Split
    ks: tuple[int, ...]
    catalog_size: int
    popularity: Optional[DataFrame] = None
    items: Optional[DataFrame] = None


def catalog_items(interactions: DataFrame, items: Optional[DataFrame] = None) -> DataFrame:
    """``ITEM_ID`` of every item in the interactions and items datasets (Personalize's coverage)."""
    catalog = interactions.select(ITEM_ID)
    if items is not None:
        catalog = catalog.unionByName(items.select(ITEM_ID))
    return catalog.where(F.col(ITEM_ID).isNotNull()).distinct()


def prepare_context(interactions: DataFrame, split: splits.Split, ks: Sequence[int],
                    items: Optional[DataFrame] = None, with_popularity: bool = True
                    ) -> EvaluationContext:
    """Catalogue size (checked against K) and the training popularity of every catalogue item.

    Raises:
        UsageError: a K larger than the catalogue.
    """
    catalog = catalog_items(interactions, items)
    popularity = None
    if with_popularity:
        popularity = metrics.item_popularity(split.train, catalog).persist()
        catalog_size = popularity.count()
    else:
        catalog_size = catalog.count()
    metrics.check_k(ks, catalog_size)
    return EvaluationContext(split, tuple(sorted(set(ks))), catalog_size, popularity, items)


def evaluate_recipe(spark, recipe: str, context: EvaluationContext, settings,
                    params: Optional[Mapping[str, Any]] = None, histogram: bool = False,
                    per_user_metric: Optional[str] = None) -> RecipeResult:
    """Train ``recipe`` on the split's training part and measure its lists for the held-out users.

    Seen (training) items are always excluded from the candidates, whatever
    ``recommend.exclude_seen`` says. With ``per_user_metric`` (e.g. ``ndcg@10``) the result also
    carries that metric for every evaluated user (one float per user reaches the driver).
    """
    from batchrec import catalogue
    from batchrec.recipes import resolve_params, train_recipe
    from batchrec.scoring.recommend import recommend_for_users

    split, ks = context.split, context.ks
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    model = train_recipe(spark, recipe, split.train, settings.prepare,
                         resolve_params(recipe, settings, params), items=context.items)
    # Every model artifact but the ID maps and bookkeeping, materialized now so the timings split
    # where the work is.
    materialized = [name for name in model.artifacts if name not in (
        catalogue.USER_MAP, catalogue.ITEM_MAP, catalogue.ITEM_STATS, catalogue.SEEN_ITEMS)]
    for name in materialized:
        if name in model.artifacts:  # materialize now so the timings split where the work is
            model.artifacts[name] = model.artifacts[name].persist()
            model.artifacts[name].count()
    seconds["train"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    recommend = dataclasses.replace(settings.recommend, exclude_seen=True)
    recs = recommend_for_users(spark, recipe, model.artifacts, split.users, split.seen, max(ks),
                               recommend, items=context.items,
                               reference_time=model.stats.get("reference_time")).persist()
    recs.count()
    seconds["recommend"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    per_user_frame = metrics.per_user_metrics(recs, split.truth, ks, users=split.users)
    per_user = None
    if per_user_metric is not None:  # the mean and the per-user values from one computation
        per_user_frame = per_user_frame.persist()
        per_user = {row[0]: row[1]
                    for row in per_user_frame.select(USER_ID, per_user_metric).collect()}
    values = metrics.mean_metrics(per_user_frame, ks)
    per_user_frame.unpersist()
    n_train_users = split.stats.get("train_users")
    values.update(metrics.list_metrics(recs, ks, context.catalog_size, context.popularity,
                                       n_train_users=n_train_users))
    hist = (metrics.popularity_histogram(recs, context.popularity)
            if histogram and context.popularity is not None else None)
    seconds["metrics"] = round(time.perf_counter() - start, 2)
    recs.unpersist()
    for name in materialized:
        if name in model.artifacts:
            model.artifacts[name].unpersist()
    model.release()
    log.info("recipe=%s %s", recipe, " ".join(
        f"{k}={values[k]:.4f}" for k in metrics.metric_names(ks[-1:]) if k.startswith("ndcg")))
    return RecipeResult(recipe, dict(model.params), values, seconds, hist, per_user=per_user)


def holdout_metrics(spark, recipe: str, interactions: DataFrame, settings,
                    params: Optional[Mapping[str, Any]] = None) -> dict:
    """Metrics of ``recipe`` under the configured protocol, for ``train --evaluate``.

    Returns:
        ``{"protocol", "seed", "k", "split": {...sizes}, "seconds": {...}, "precision@5": ...}``.
        When the data is too small for the protocol the training still succeeds: the result is
        ``{"protocol": ..., "skipped": "<why>"}`` and a warning is logged.
    """
    config = settings.evaluate
    if not per_user(recipe):
        return {"protocol": config.protocol, "skipped": f"recipe {recipe} relates items to items; "
                                                        f"per-user hold-out metrics do not apply"}
    try:
        split = splits.split_interactions(interactions, config.protocol, config, settings.prepare)
    except DataError as exc:
        log.warning("hold-out metrics skipped: %s", exc)
        return {"protocol": config.protocol, "skipped": str(exc)}
    split.persist()
    try:
        context = prepare_context(interactions, split, config.k)
        result = evaluate_recipe(spark, recipe, context, settings, params)
    finally:
        split.unpersist()
    out = {"protocol": config.protocol, "seed": config.seed, "k": list(context.ks),
           "split": split.stats, "seconds": result.seconds}
    out.update(result.metrics)
    if context.popularity is not None:
        context.popularity.unpersist()
    return out


def check_hpo_metric(metric: str, ks: Sequence[int]) -> None:
    """Raises UsageError unless ``metric`` is one the evaluation computes (e.g. ``ndcg@10``)."""
    name, _, k = metric.partition("@")
    if name not in metrics.RANKED_METRICS or not k.isdigit() or int(k) < 1:
        raise UsageError(f"evaluate.hpo_metric = {metric!r}; expected <metric>@<K> with metric one "
                         f"of {', '.join(metrics.RANKED_METRICS)}, e.g. ndcg@10")


def search_parameters(spark, recipe: str, interactions: DataFrame, settings,
                      params: Optional[Mapping[str, Any]] = None, *,
                      protocol: Optional[str] = None) -> tuple[dict, list[dict]]:
    """Search ``recipe``'s parameters on validation data carved from ``interactions``.

    The validation split uses the configured protocol (or ``protocol``) with seed
    ``evaluate.seed + 1``, so it never reuses the evaluation's own held-out truth when
    ``interactions`` is an evaluation's training part. The best parameters are those with the
    highest ``evaluate.hpo_metric``; the caller trains the final model with them.

    Args:
        params: parameters fixed by the user; they are kept and never searched.

    Returns:
        (the best full parameter set, every trial as ``{trial, params, metric, value, seconds}``).
    """
    from batchrec.recipes import resolve_params

    config = settings.evaluate
    fixed = dict(params or {})
    base = resolve_params(recipe, settings, fixed)
    metric = config.hpo_metric
    k = int(metric.partition("@")[2]) if metric.partition("@")[2].isdigit() else 0
    check_hpo_metric(metric, (k,))
    points = hpo.candidates(recipe, base, config.hpo_trials, config.seed, config.hpo_method, fixed)
    if len(points) == 1:
        log.info("hpo: recipe %s has nothing to search; keeping %s", recipe, base)
        return base, []
    validation = splits.split_interactions(interactions, protocol or config.protocol, config,
                                           settings.prepare, seed=config.seed + 1).persist()
    try:
        context = prepare_context(validation.train, validation, (k,), with_popularity=False)
        with logs.stage(log, "hpo", recipe=recipe, trials=len(points)):
            def score(point: dict) -> float:
                return evaluate_recipe(spark, recipe, context, settings, point).metrics[metric]

            best, trials = hpo.run_search(score, points, metric)
    finally:
        validation.unpersist()
    return best, trials
