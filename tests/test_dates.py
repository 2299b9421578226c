"""The run date's end is every job's "now" (no Spark)."""

import datetime as dt

from batchrec.dates import SECONDS_PER_DAY, end_of_day, end_of_day_or_now


def test_end_of_day_is_the_next_utc_midnight():
    assert end_of_day(dt.date(1970, 1, 1)) == SECONDS_PER_DAY
    assert end_of_day(dt.date(2026, 11, 22)) == 1795392000  # 2026-11-23T00:00:00Z
    assert end_of_day(dt.date(2024, 2, 29)) - end_of_day(dt.date(2024, 2, 28)) == SECONDS_PER_DAY


def test_without_a_run_date_it_is_now():
    before = int(dt.datetime.now(dt.timezone.utc).timestamp())
    assert before <= end_of_day_or_now(None) <= before + 5
    assert end_of_day_or_now(dt.date(2026, 11, 22)) == 1795392000
