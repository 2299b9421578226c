"""Recipes: pure DataFrame-in, artifacts-out training, one module per recipe.

:func:`train_recipe` is the one entry point: it prepares the interactions (``batchrec.datasets.prepare``),
indexes the IDs (``batchrec.datasets.indexing``), builds the artifacts every recipe stores (ID maps,
``popular_items`` for backfill, ``item_stats`` for exploration) and hands the rest to the recipe's
module, which exposes ``PARAM_TYPES``, ``defaults(settings)``, ``check(params)`` and
``train(spark, data, params)``.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batchrec import logs
from batchrec.columns import ITEM_ID, ITEM_IDX, TIMESTAMP, USER_ID, USER_IDX
from batchrec.datasets.indexing import build_id_map
from batchrec.datasets.prepare import aggregate_events, select_events
from batchrec.errors import DataError, UsageError

log = logging.getLogger(__name__)

USER_PERSONALIZATION = "user-personalization"
POPULARITY_COUNT = "popularity-count"
TRENDING_NOW = "trending-now"
RECIPES: dict[str, str] = {
    USER_PERSONALIZATION: "batchrec.recipes.als",
    POPULARITY_COUNT: "batchrec.recipes.popularity",
    TRENDING_NOW: "batchrec.recipes.trending",
    "sims": "batchrec.recipes.sims",
    "similar-items": "batchrec.recipes.similar_items",
    "ease": "batchrec.recipes.ease",
    "sar": "batchrec.recipes.sar",
}


@dataclass
class TrainedModel:
    """A trained recipe before it is saved as a solution version.

    Attributes:
        recipe: the recipe name, e.g. ``user-personalization``.
        params: every parameter the recipe used (defaults filled in).
        artifacts: artifact name -> DataFrame (names and schemas in ``batchrec.registry``).
        stats: data statistics (interactions, users, items, time range, reference time).
    """

    recipe: str
    params: dict
    artifacts: dict[str, DataFrame]
    stats: dict
    cached: list = field(default_factory=list, repr=False)

    def release(self) -> None:
        """Drop the cached DataFrames the artifacts were computed from (call after saving)."""
        for df in self.cached:
            df.unpersist()
        self.cached.clear()


@dataclass(frozen=True)
class TrainingData:
    """What a recipe module's ``train`` receives."""

    events: DataFrame  # select_events rows: one per kept event, with ``weight``
    prepared: DataFrame  # one confidence per (user, item)
    user_map: DataFrame
    item_map: DataFrame
    reference_time: Optional[int]
    checkpoint_dir: Optional[str] = None
    items: Optional[DataFrame] = None  # the validated items dataset, when there is one
    cached: list = field(default_factory=list, repr=False)

    def keep(self, df: DataFrame) -> DataFrame:
        """Persist ``df`` until the model is released (for inputs the artifacts read several times)."""
        self.cached.append(df.persist())
        return df


def recipe_module(recipe: str):
    """The module implementing ``recipe``.

    Raises:
        UsageError: an unknown recipe, listing the known ones.
    """
    if recipe not in RECIPES:
        raise UsageError(f"unknown recipe {recipe!r}; expected one of {', '.join(sorted(RECIPES))}")
    return importlib.import_module(RECIPES[recipe])


def resolve_params(recipe: str, settings, params: Optional[Mapping[str, Any]] = None) -> dict:
    """Recipe defaults from ``settings`` overlaid with ``params``, checked by name, type and range.

    Raises:
        UsageError: an unknown key (listing the valid ones), a wrong type or an out-of-range value.
    """
    module = recipe_module(recipe)
    resolved = dict(module.defaults(settings))
    for key, value in (params or {}).items():
        expected = module.PARAM_TYPES.get(key)
        if expected is None:
            raise UsageError(f"unknown parameter {key!r} for recipe {recipe}; valid parameters: "
                             f"{', '.join(sorted(module.PARAM_TYPES)) or 'none'}")
        resolved[key] = _check_type(recipe, key, value, expected)
    module.check(resolved)
    return resolved


def train_recipe(
    spark,
    recipe: str,
    interactions: DataFrame,
    settings,
    params: Optional[Mapping[str, Any]] = None,
    items: Optional[DataFrame] = None,
    *,
    reference_time: Optional[int] = None,
    checkpoint_dir: Optional[str] = None,
) -> TrainedModel:
    """Prepare, index and train ``recipe`` on validated interactions.

    Args:
        spark: the SparkSession.
        recipe: a name of :data:`RECIPES`.
        interactions: validated, typed interactions (``load_datasets(...).interactions``).
        settings: the whole :class:`batchrec.config.Settings`.
        params: recipe parameters overriding the settings (MLlib names for ALS).
        items: the validated items dataset, when there is one (creation times for ``item_stats``).
        reference_time: epoch seconds of "now" for windows and decay; default the latest timestamp.
        checkpoint_dir: a Hadoop URI for ALS checkpoints on long runs (default: a local temp dir on
            a local master; none on a cluster).

    Returns:
        The :class:`TrainedModel`; its artifacts are lazy DataFrames over cached inputs, so call
        :meth:`TrainedModel.release` once they are saved.

    Raises:
        UsageError: an unknown recipe or parameter.
        DataError: no interaction is left after preparation.
    """
    module = recipe_module(recipe)
    resolved = resolve_params(recipe, settings, params)
    events = select_events(interactions, settings.prepare, reference_time).persist()
    with logs.stage(log, "prepare", recipe=recipe) as info:
        stats = data_stats(events)
        info["rows"] = stats["interactions"]
    if stats["interactions"] == 0:
        events.unpersist()
        raise DataError("no interactions left after preparation (event types, value threshold, "
                        "look-back window); nothing to train on")
    if reference_time is None:
        reference_time = stats["last_timestamp"]
    stats["reference_time"] = int(reference_time)
    prepared = aggregate_events(events).persist()
    with logs.stage(log, "index") as info:
        user_map = build_id_map(prepared, USER_ID, USER_IDX)
        item_map = build_id_map(prepared, ITEM_ID, ITEM_IDX)
        stats["user_item_pairs"] = prepared.count()
        info["rows"] = stats["user_item_pairs"]

    from batchrec.recipes.popularity import item_stats, popular_items

    artifacts = {
        "user_map": user_map,
        "item_map": item_map,
        "popular_items": popular_items(events, event_type=resolved.get("event_type") or None),
        "item_stats": item_stats(events, item_map, items),
    }
    data = TrainingData(events, prepared, user_map, item_map, int(reference_time), checkpoint_dir, items)
    with logs.stage(log, "train", recipe=recipe):
        own_artifacts, own_stats = module.train(spark, data, resolved)
    artifacts.update(own_artifacts)
    stats.update(own_stats)
    return TrainedModel(recipe, resolved, artifacts, stats, cached=[events, prepared, *data.cached])


def data_stats(events: DataFrame) -> dict:
    """Rows, distinct users and items and the time range of ``events`` (one aggregation)."""
    row = events.agg(
        F.count(F.lit(1)).alias("interactions"),
        F.countDistinct(USER_ID).alias("users"),
        F.countDistinct(ITEM_ID).alias("items"),
        F.min(TIMESTAMP).alias("first_timestamp"),
        F.max(TIMESTAMP).alias("last_timestamp"),
    ).first()
    return {k: (None if v is None else int(v)) for k, v in row.asDict().items()}


def _check_type(recipe: str, key: str, value: Any, expected: type) -> Any:
    ok = (
        (expected is bool and isinstance(value, bool))
        or (expected is int and isinstance(value, int) and not isinstance(value, bool))
        or (expected is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (expected is str and isinstance(value, str))
    )
    if not ok:
        raise UsageError(f"parameter {key}={value!r} for recipe {recipe} has type "
                         f"{type(value).__name__}; expected {expected.__name__}")
    return float(value) if expected is float else value


__all__ = ["RECIPES", "TrainedModel", "TrainingData", "train_recipe", "resolve_params", "recipe_module",
           "data_stats"]
