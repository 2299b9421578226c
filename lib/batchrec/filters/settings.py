"""Settings of the filter step (pure: importable without Spark)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from batchrec.errors import ConfigError

# Personalize considers the latest 100 interactions per user per event type (adjustable quota).
DEFAULT_INTERACTIONS_PER_EVENT_TYPE = 100
# Collected to the driver for the scoring kernels: allowed/denied IDs and set contents.
DEFAULT_MAX_COLLECTED_IDS = 5_000_000


@dataclass(frozen=True)
class FilterSettings:
    """How filters are evaluated.

    Attributes:
        interactions_per_event_type: an Interactions condition sees each user's latest N
            interactions of each event type.
        backfill: when fewer than N items pass the filter, fill the list with popular items that
            pass it (reason ``popular``); False returns fewer items.
        max_collected_ids: the most IDs (allowed, denied and set rows together) brought to the
            driver for one scoring kernel; more is a JobError naming the filter.
        named: filter expressions by name (``[filters.named]``), for ``--filter-name``: the
            configuration keeps a team's filters in one reviewed place, as Personalize's filter
            resources do.
    """

    interactions_per_event_type: int = DEFAULT_INTERACTIONS_PER_EVENT_TYPE
    backfill: bool = True
    max_collected_ids: int = DEFAULT_MAX_COLLECTED_IDS
    named: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self):
        for name in ("interactions_per_event_type", "max_collected_ids"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"filters.{name} = {value!r}; expected a positive integer")
        if not isinstance(self.backfill, bool):
            raise ConfigError(f"filters.backfill = {self.backfill!r}; expected true or false")
