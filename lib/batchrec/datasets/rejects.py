"""The rejects table: rejected rows with their reasons, replaced per run date in a Delta table."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from batchrec import columns
from batchrec.datasets.rules import (FIELD_FIELD, REASON_FIELD, REASONS_FIELD, RECORD_FIELD,
                                     RECORD_FIELD_LIMIT, REJECT_COLUMN, TRUNCATED_MARK, record_json,
                                     rejected)

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

__all__ = ["RECORD_FIELD_LIMIT", "TRUNCATED_MARK", "record_json", "reject_rows", "write_rejects"]

# Rejects table columns.
REJECT_RUN_DATE = "run_date"
REJECT_DATASET = "dataset"
REJECT_REASON = "reason"
REJECT_FIELD = "field"
REJECT_REASONS = "reasons"
REJECT_RECORD = "record"
REJECT_SOURCE_FILE = "source_file"


def reject_rows(outcome: "DataFrame", kind: str, run_date: dt.date) -> "DataFrame":
    """Rejected rows of :func:`batchrec.datasets.rules.outcome_rows` in the rejects table's layout."""
    from pyspark.sql import functions as F

    reject = F.col(REJECT_COLUMN)
    return outcome.filter(rejected(outcome)).select(
        F.lit(run_date).cast("date").alias(REJECT_RUN_DATE), F.lit(kind).alias(REJECT_DATASET),
        reject[REASON_FIELD].alias(REJECT_REASON), reject[FIELD_FIELD].alias(REJECT_FIELD),
        reject[REASONS_FIELD].alias(REJECT_REASONS),
        F.col(columns.SOURCE_FILE).alias(REJECT_SOURCE_FILE), reject[RECORD_FIELD].alias(REJECT_RECORD))


def write_rejects(rejects: "DataFrame", path: str, run_date: dt.date) -> None:
    """Replace this run date's rejects in the Delta table at ``path`` in one commit."""
    (rejects.write.format("delta").mode("overwrite").partitionBy(REJECT_RUN_DATE)
     .option("replaceWhere", f"{REJECT_RUN_DATE} = DATE'{run_date.isoformat()}'").save(path))
