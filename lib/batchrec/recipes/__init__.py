"""Recipes: pure DataFrame-in, artifacts-out training, one module per recipe.

:func:`train_recipe` is the one entry point: it prepares the interactions (``batchrec.datasets.prepare``),
indexes the IDs (``batchrec.datasets.indexing``), builds the artifacts every recipe stores (ID maps,
``popular_items`` for backfill, ``item_stats`` for exploration, ``seen_items`` for exclusions) and
hands the rest to the recipe's module, which only has to provide ``train(spark, data, params)``.
What a recipe is called, its parameters, defaults, search space, artifacts and what its model can
answer are declared once in :mod:`batchrec.catalogue`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batchrec import catalogue, logs
from batchrec.columns import EVENT_TYPE, ITEM_ID, ITEM_IDX, TIMESTAMP, USER_ID, USER_IDX
from batchrec.datasets.indexing import build_id_map
from batchrec.datasets.prepare import aggregate_events, select_events
from batchrec.errors import DataError

log = logging.getLogger(__name__)


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
    items: Optional[DataFrame] = None  # the validated Items dataset, for recipes that use metadata
    # (users, items, user-item pairs) of ``prepared``, counted while indexing: the maps index
    # exactly these users and items as 0..n-1, so recipes can size their problem without a job
    sizes: Optional[tuple[int, int, int]] = None
    cached: list = field(default_factory=list, repr=False)

    def keep(self, df: DataFrame) -> DataFrame:
        """Persist ``df`` until the model is released (for inputs the artifacts read several times)."""
        self.cached.append(df.persist())
        return df


def recipe_settings(settings, recipe: str):
    """The configuration section holding ``recipe``'s defaults (``settings.als`` for ALS, ...), or None
    for a recipe registered after the configuration was built (its catalogue defaults apply)."""
    return getattr(settings, catalogue.get(recipe).settings_section, None)


def resolve_params(recipe: str, settings, params: Optional[Mapping[str, Any]] = None) -> dict:
    """Recipe defaults from the whole ``settings`` overlaid with ``params``, checked by the catalogue.

    Raises:
        UsageError: an unknown recipe or parameter (listing the valid ones), a wrong type or an
            out-of-range value.
    """
    return catalogue.resolve_params(recipe, recipe_settings(settings, recipe), params)


def train_recipe(
    spark,
    recipe: str,
    interactions: DataFrame,
    prepare,
    params: Optional[Mapping[str, Any]] = None,
    items: Optional[DataFrame] = None,
    *,
    reference_time: Optional[int] = None,
    checkpoint_dir: Optional[str] = None,
    events: Optional[DataFrame] = None,
) -> TrainedModel:
    """Prepare, index and train ``recipe`` on validated interactions.

    Args:
        spark: the SparkSession.
        recipe: a name in :mod:`batchrec.catalogue`.
        interactions: validated, typed interactions (``load_datasets(...).interactions``).
        prepare: the ``[prepare]`` settings (event types and weights, window, decay, caps).
        params: the recipe's parameters, usually :func:`resolve_params`'s result; a missing one takes
            the catalogue default.
        items: the validated items dataset, when there is one (creation times, item metadata).
        reference_time: epoch seconds of "now" for windows and decay; default the latest timestamp.
        checkpoint_dir: a Hadoop URI for checkpoints on long runs (default: a local temp dir on
            a local master; none on a cluster).
        events: ``select_events(interactions, prepare, reference_time)`` when the caller has it
            already (``train`` checks the minimums on it), so the data is prepared once.

    Returns:
        The :class:`TrainedModel`; its artifacts are lazy DataFrames over cached inputs, so call
        :meth:`TrainedModel.release` once they are saved.

    Raises:
        UsageError: an unknown recipe or parameter.
        DataError: no interaction is left after preparation.
    """
    spec = catalogue.get(recipe)
    resolved = catalogue.resolve_params(recipe, None, params)
    if events is None:
        events = select_events(interactions, prepare, reference_time)
    events = events.persist()
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
        catalogue.USER_MAP: user_map,
        catalogue.ITEM_MAP: item_map,
        catalogue.POPULAR_ITEMS: popular_items(events, event_type=resolved.get("event_type") or None),
        catalogue.ITEM_STATS: item_stats(events, item_map, items),
        catalogue.SEEN_ITEMS: seen_items(interactions),
    }
    data = TrainingData(events, prepared, user_map, item_map, int(reference_time), checkpoint_dir, items,
                        sizes=(stats["users"], stats["items"], stats["user_item_pairs"]))
    with logs.stage(log, "train", recipe=recipe):
        own_artifacts, own_stats = spec.training_module().train(spark, data, resolved)
    artifacts.update(own_artifacts)
    stats.update(own_stats)
    return TrainedModel(recipe, resolved, artifacts, stats, cached=[events, prepared, *data.cached])


def seen_items(interactions: DataFrame) -> DataFrame:
    """Distinct ``[USER_ID, ITEM_ID, EVENT_TYPE]`` of every valid interaction (the whole history, not
    only the training window): what batch jobs exclude as already seen."""
    event_type = (F.col(EVENT_TYPE).cast("string") if EVENT_TYPE in interactions.columns
                  else F.lit(None).cast("string"))
    return interactions.select(USER_ID, ITEM_ID, event_type.alias(EVENT_TYPE)).distinct()


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


__all__ = ["TrainedModel", "TrainingData", "train_recipe", "resolve_params", "recipe_settings",
           "data_stats", "seen_items"]
