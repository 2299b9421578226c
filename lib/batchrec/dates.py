"""Run dates as time: every job measures "now" as the end of its run date, so re-runs agree."""

from __future__ import annotations

import datetime as dt
from typing import Optional

SECONDS_PER_DAY = 86_400


def end_of_day(run_date: dt.date) -> int:
    """The end of ``run_date`` (the next midnight, UTC) in epoch seconds."""
    start = dt.datetime.combine(run_date, dt.time(), tzinfo=dt.timezone.utc)
    return int(start.timestamp()) + SECONDS_PER_DAY


def end_of_day_or_now(run_date: Optional[dt.date]) -> int:
    """:func:`end_of_day` of ``run_date``, or the current time when there is no run date."""
    if run_date is None:
        return int(dt.datetime.now(dt.timezone.utc).timestamp())
    return end_of_day(run_date)
