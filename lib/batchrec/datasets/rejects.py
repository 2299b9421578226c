"""The rejects table: rejected rows with their reasons, replaced per run date in a Delta table."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from batchrec import columns
from batchrec.datasets import readers
from batchrec.datasets.rules import FIELD_COLUMN, REASON_COLUMN, REASONS_COLUMN, data_columns
from batchrec.datasets.schema import quote_name

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import Column, DataFrame

TRUNCATED_MARK = "...[truncated]"
# Longest string kept per field in a rejected record's JSON.
RECORD_FIELD_LIMIT = 1000

# Rejects table columns.
REJECT_RUN_DATE = "run_date"
REJECT_DATASET = "dataset"
REJECT_REASON = "reason"
REJECT_FIELD = "field"
REJECT_REASONS = "reasons"
REJECT_RECORD = "record"
REJECT_SOURCE_FILE = "source_file"


def record_json(flagged: "DataFrame") -> "Column":
    """The rejected row as JSON, long strings cut so a 10 MB field does not bloat the rejects table."""
    from pyspark.sql import functions as F

    names = [n for n in data_columns(flagged) if not n.startswith("__")]
    if readers.CORRUPT_RECORD in flagged.columns:
        names.append(readers.CORRUPT_RECORD)
    dtypes = dict(flagged.dtypes)
    limit = RECORD_FIELD_LIMIT
    parts = []
    for n in names:
        c = F.col(quote_name(n))
        if dtypes[n] == "string":
            c = F.when(F.length(c) > limit, F.concat(F.substring(c, 1, limit), F.lit(TRUNCATED_MARK))) \
                .otherwise(c)
        parts.append(c.alias(n))
    return F.to_json(F.struct(*parts))


def reject_rows(flagged: "DataFrame", kind: str, run_date: dt.date) -> "DataFrame":
    """Rejected rows in the rejects table's layout."""
    from pyspark.sql import functions as F

    return flagged.filter(F.col(REASON_COLUMN).isNotNull()).select(
        F.lit(run_date).cast("date").alias(REJECT_RUN_DATE), F.lit(kind).alias(REJECT_DATASET),
        F.col(REASON_COLUMN).alias(REJECT_REASON), F.col(FIELD_COLUMN).alias(REJECT_FIELD),
        F.col(REASONS_COLUMN)["reason"].alias(REJECT_REASONS),
        F.col(columns.SOURCE_FILE).alias(REJECT_SOURCE_FILE), record_json(flagged).alias(REJECT_RECORD))


def write_rejects(rejects: "DataFrame", path: str, run_date: dt.date) -> None:
    """Replace this run date's rejects in the Delta table at ``path`` in one commit."""
    (rejects.write.format("delta").mode("overwrite").partitionBy(REJECT_RUN_DATE)
     .option("replaceWhere", f"{REJECT_RUN_DATE} = DATE'{run_date.isoformat()}'").save(path))
