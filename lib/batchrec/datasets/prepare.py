"""Training-data preparation: from validated interactions to one confidence per (user, item).

The rules, applied in this order (each one is optional and configured in ``[prepare]``):

1. **event types**: keep only the listed types (matched case-insensitively; rows without a type are
   dropped when a list is given);
2. **event value threshold**: keep events with ``EVENT_VALUE >= t``, as Personalize's
   ``eventValueThreshold`` does; rows without a value are dropped when a threshold is set;
3. **look-back window**: keep events with ``reference_time - lookback_days < TIMESTAMP <= reference_time``;
4. **history cap**: the ``max_user_history_length_percentile``-th percentile of the per-user event
   counts (Spark's ``percentile_approx``) caps every user's history to their most recent events;
5. **weights**: each event weighs ``event_weights[type]`` (unlisted types weigh 1), times
   ``0.5 ** (age_days / half_life_days)`` when a half-life is set (age counted back from the
   reference time, never negative);
6. **aggregation**: confidence = sum of the weights per (user, item), with the latest timestamp.

``reference_time`` is epoch seconds (the end of ``--run-date`` for jobs); when None it is the latest
timestamp of the data left after rules 1 and 2.
"""

from __future__ import annotations

import logging
from typing import Optional

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from batchrec.columns import CONFIDENCE, EVENT_TYPE, EVENT_VALUE, ITEM_ID, TIMESTAMP, USER_ID
from batchrec.config import PrepareSettings
from batchrec.dates import SECONDS_PER_DAY
from batchrec.errors import ConfigError, DataError

log = logging.getLogger(__name__)

WEIGHT = "weight"
# percentile_approx's default accuracy: relative error 1/10000 of the number of users.
PERCENTILE_ACCURACY = 10000


def check_prepare_settings(settings: PrepareSettings) -> None:
    """Reject settings that cannot describe a training set.

    Raises:
        ConfigError: naming the ``prepare.*`` key, its value and the expected range.
    """
    for event_type, weight in settings.event_weights.items():
        if not weight > 0:
            raise ConfigError(f"prepare.event_weights.{event_type} = {weight}; expected a weight > 0 "
                              f"(to drop an event type, leave it out of prepare.event_types)")
    if settings.lookback_days is not None and settings.lookback_days < 1:
        raise ConfigError(f"prepare.lookback_days = {settings.lookback_days}; expected >= 1")
    if settings.half_life_days is not None and not settings.half_life_days > 0:
        raise ConfigError(f"prepare.half_life_days = {settings.half_life_days}; expected > 0")
    if not 0 <= settings.max_user_history_length_percentile <= 1:
        raise ConfigError(f"prepare.max_user_history_length_percentile = "
                          f"{settings.max_user_history_length_percentile}; expected 0 to 1")


def latest_timestamp(events: DataFrame) -> Optional[int]:
    """The largest TIMESTAMP of ``events`` (one small aggregation), None when empty."""
    value = events.agg(F.max(TIMESTAMP)).first()[0]
    return None if value is None else int(value)


def select_events(
    interactions: DataFrame, settings: PrepareSettings, reference_time: Optional[int] = None
) -> DataFrame:
    """Apply the event-type, value, window and history-cap rules (1-4); one row per kept event.

    The result keeps the input's columns plus ``weight`` (rule 5). Personalize's minimum-data
    checks apply to these rows, and popularity/trending count them.

    Args:
        interactions: validated interactions (USER_ID, ITEM_ID, TIMESTAMP, optional EVENT_TYPE,
            EVENT_VALUE).
        settings: the ``[prepare]`` section.
        reference_time: epoch seconds the window and decay count back from; default the latest
            timestamp.

    Raises:
        ConfigError: impossible settings.
        DataError: a rule needs a column the interactions do not have.
    """
    check_prepare_settings(settings)
    columns = set(interactions.columns)
    events = interactions
    if settings.event_types:
        if EVENT_TYPE not in columns:
            raise DataError(f"prepare.event_types = {list(settings.event_types)} but the interactions "
                            f"have no {EVENT_TYPE} column")
        wanted = sorted({t.lower() for t in settings.event_types})
        events = events.where(F.lower(F.col(EVENT_TYPE)).isin(wanted))
    if settings.event_value_threshold is not None:
        if EVENT_VALUE not in columns:
            raise DataError(f"prepare.event_value_threshold = {settings.event_value_threshold} but "
                            f"the interactions have no {EVENT_VALUE} column")
        # A null comparison is null, which where() treats as false: rows without a value go.
        events = events.where(F.col(EVENT_VALUE) >= F.lit(float(settings.event_value_threshold)))

    needs_reference = settings.lookback_days is not None or settings.half_life_days is not None
    if reference_time is None and needs_reference:
        reference_time = latest_timestamp(events)
    if settings.lookback_days is not None and reference_time is not None:
        start = reference_time - int(settings.lookback_days * SECONDS_PER_DAY)
        events = events.where((F.col(TIMESTAMP) > F.lit(start)) & (F.col(TIMESTAMP) <= F.lit(reference_time)))

    events = _cap_user_history(events, settings.max_user_history_length_percentile)
    return events.withColumn(WEIGHT, _weight(settings, columns, reference_time))


def prepare_interactions(
    interactions: DataFrame, prepare_settings: PrepareSettings, reference_time: Optional[int] = None
) -> DataFrame:
    """Turn validated interactions into one confidence per (user, item).

    Args:
        interactions: validated interactions (see :func:`select_events`).
        prepare_settings: the ``[prepare]`` section.
        reference_time: epoch seconds; default the latest timestamp.

    Returns:
        DataFrame[USER_ID string, ITEM_ID string, confidence double, TIMESTAMP long (latest)].

    Raises:
        ConfigError, DataError: see :func:`select_events`.
    """
    events = select_events(interactions, prepare_settings, reference_time)
    return aggregate_events(events)


def aggregate_events(events: DataFrame) -> DataFrame:
    """Sum the ``weight`` of :func:`select_events` rows per (user, item) into ``confidence``."""
    return (
        events.groupBy(USER_ID, ITEM_ID)
        .agg(F.sum(WEIGHT).cast("double").alias(CONFIDENCE),
             F.max(TIMESTAMP).cast("long").alias(TIMESTAMP))
    )


def history_cap(events: DataFrame, percentile: float) -> Optional[int]:
    """The ``percentile``-th percentile of the per-user event counts; None when no user."""
    counts = events.groupBy(USER_ID).count()
    value = counts.agg(F.percentile_approx("count", float(percentile), PERCENTILE_ACCURACY)).first()[0]
    return None if value is None else int(value)


# Up to this share of users over the cap, their IDs are broadcast and only their events are sorted.
SPLIT_SHARE = 0.05


def _cap_user_history(events: DataFrame, percentile: float) -> DataFrame:
    if percentile >= 1:  # the 100th percentile is the longest history: nothing to cut
        return events
    cap = history_cap(events, percentile)
    if cap is None:
        return events
    cap = max(cap, 1)
    log.info("max_user_history_length_percentile=%s keeps each user's latest %d events", percentile, cap)
    # ITEM_ID breaks timestamp ties so the same data always keeps the same events.
    order = [F.col(TIMESTAMP).desc(), F.col(ITEM_ID).asc()]
    if EVENT_TYPE in events.columns:
        order.append(F.col(EVENT_TYPE).asc_nulls_last())
    recent_first = Window.partitionBy(USER_ID).orderBy(*order)

    def latest(rows: DataFrame) -> DataFrame:
        return (rows.withColumn("_recency", F.row_number().over(recent_first))
                .where(F.col("_recency") <= F.lit(cap)).drop("_recency"))

    if 1 - percentile > SPLIT_SHARE:
        return latest(events)
    # The same rows, cheaper: only the few users over the cap (about 1 - percentile of them) need
    # their events sorted; everyone else's pass through without a shuffle.
    over = F.broadcast(events.groupBy(USER_ID).count().where(F.col("count") > F.lit(cap)).select(USER_ID))
    return events.join(over, USER_ID, "left_anti").unionByName(latest(events.join(over, USER_ID, "left_semi")))


def _weight(settings: PrepareSettings, columns: set, reference_time: Optional[int]):
    weight = F.lit(1.0)
    if settings.event_weights and EVENT_TYPE in columns:
        lowered = F.lower(F.col(EVENT_TYPE))
        chain = None
        for event_type, value in sorted(settings.event_weights.items()):
            condition = lowered == F.lit(event_type.lower())
            chain = (F.when(condition, F.lit(float(value))) if chain is None
                     else chain.when(condition, F.lit(float(value))))
        weight = chain.otherwise(F.lit(1.0))
    if settings.half_life_days is not None and reference_time is not None:
        age_days = F.greatest(F.lit(0.0), (F.lit(reference_time) - F.col(TIMESTAMP)) / F.lit(SECONDS_PER_DAY))
        weight = weight * F.pow(F.lit(0.5), age_days / F.lit(float(settings.half_life_days)))
    return weight.cast("double")

