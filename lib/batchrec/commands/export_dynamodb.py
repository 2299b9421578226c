"""``batchrec export-dynamodb``: one run of a batch output Delta table into a DynamoDB-compatible table.

The work is ``batchrec.sinks.dynamodb.export_run``; the CLI prints its summary line on stdout (also
when the export is incomplete: the ``ExportIncomplete`` error carries it, and the command exits 1).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Optional

from pyspark.sql import functions as F

from batchrec.errors import DataError
from batchrec.locations import qualify
from batchrec.sinks import runs
from batchrec.sinks.dynamodb import export_run

log = logging.getLogger(__name__)


def run(spark, settings, run_date: dt.date, *, input: str, table: str, endpoint_url: Optional[str] = None,
        region: Optional[str] = None, ttl_days: Optional[int] = None, create_table: bool = True,
        solution: Optional[str] = None, shape: Optional[str] = None, allow_older_run: bool = False) -> dict:
    """Export the rows of ``run_date`` (and ``solution``) of the Delta table ``input`` to ``table``.

    ``ttl_days`` None takes ``[dynamodb] ttl_days``. Returns the summary of
    :func:`batchrec.sinks.dynamodb.export_run`.

    Raises:
        UsageError, ConfigError, DataError, JobError: see ``export_run``; ExportIncomplete (a
        JobError, exit 1, carrying the summary) when items are missing.
    """
    if solution:
        solution = _stored_key(spark, input, run_date, solution)
    # The CLI prints the summary (batchrec.summary), also the one an ExportIncomplete carries.
    return export_run(spark, input, run_date, solution, settings, table, endpoint_url, region,
                      shape=shape, ttl_days=ttl_days, create_table=create_table,
                      allow_older_run=allow_older_run)


def _stored_key(spark, path: str, run_date: dt.date, solution: str) -> str:
    """The solution key the run's rows carry for ``--solution``: as given when rows carry that exact
    key, else its canonical, qualified URI (the key batch jobs write: ``DIR``, ``DIR/`` and
    ``file://DIR`` all name ``file:/abs/DIR``)."""
    try:
        table = runs.read_table(spark, path)
    except DataError:  # export_run reports the missing or unreadable table itself
        return solution
    found = table.where(runs.run_filter(run_date, solution)).select(F.lit(1)).limit(1).collect()
    return solution if found else qualify(spark, solution)
