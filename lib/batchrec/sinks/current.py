"""A ``current`` Delta table: the latest result list of every key, kept up to date with one MERGE per run.

The history table (``batchrec.sinks.delta``) keeps every run, partitioned by ``run_date``. Readers
that want "the latest recommendations of user U" would have to find U's latest run first; the
current table answers directly. It has the history table's columns and rows; for each key
(``solution`` + the shape's entity: ``user_id``, ``item_id`` or ``segment_id``) it holds the rows of
the latest run that contained the key.

One ``DeltaTable.merge`` per run, matched on (solution, entity, rank), makes the update atomic:

* rows of the run update or insert their (solution, entity, rank);
* rows of a replaced list that the new list no longer has (rank 25 when the new list has 20) are
  deleted through delete markers added to the merge source;
* a list whose current rows come from a *later* run is left alone, so a backfill of an older run
  date never replaces newer results;
* with ``delete_absent``, keys of the run's solutions that the run does not contain are deleted
  (``whenNotMatchedBySourceDelete``), for runs that cover every key.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Optional

from pyspark.sql import DataFrame, SparkSession, functions as F

from batchrec.columns import OUT_RANK, OUT_RUN_DATE, OUT_SOLUTION
from batchrec.errors import JobError
from batchrec.sinks import runs

log = logging.getLogger(__name__)

DELETE_MARKER = "_delete"
SOURCE = "s"
TARGET = "t"


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def merge_source(run_rows: DataFrame, current: DataFrame, shape: runs.Shape, run_date: dt.date) -> DataFrame:
    """The MERGE source: the run's rows to upsert plus delete markers for stale rows.

    Args:
        run_rows: one run's rows (the shape's columns).
        current: the current table's rows.
        shape: the tables' shape.
        run_date: the run's date.

    Returns:
        The shape's columns plus ``_delete`` (boolean): False for rows to upsert, True for rows of
        the current table to delete (their other payload columns are null).
    """
    key = [OUT_SOLUTION, shape.entity]
    row_key = key + [OUT_RANK]
    # Keys whose current list comes from a later run keep it.
    newer = current.where(F.col(OUT_RUN_DATE) > F.lit(run_date)).select(*key).distinct()
    upserts = run_rows.join(newer, key, "left_anti")
    replaced = upserts.select(*key).distinct()
    stale = (current.join(replaced, key, "left_semi").join(upserts.select(*row_key), row_key, "left_anti")
             .select(*row_key))
    return (upserts.withColumn(DELETE_MARKER, F.lit(False))
            .unionByName(stale.withColumn(DELETE_MARKER, F.lit(True)), allowMissingColumns=True))


def update_current(spark: SparkSession, history_path: str, current_path: str, run_date: dt.date,
                   solution: Optional[str] = None, *, shape: Optional[str] = None,
                   delete_absent: bool = False) -> dict:
    """Upsert the rows of ``run_date`` (and ``solution``) from the history table into the current table.

    Args:
        history_path: a batch job's Delta output table.
        current_path: the current table (created with the history table's columns if missing).
        run_date, solution: the run to apply.
        shape: the tables' shape; detected from the history table's columns when None.
        delete_absent: also delete the keys of the run's solutions that this run does not have
            (only when it is at least as new as their current rows).

    Returns:
        ``{"rows": n, "inserted": n, "updated": n, "deleted": n, "version": delta_version}``.

    Raises:
        DataError: no history table, no rows for the run, unknown columns or null keys.
        JobError: the current table exists with other columns.
    """
    from delta.tables import DeltaTable
    from pyspark.sql.utils import AnalysisException

    run_rows, found, stats = runs.read_run(spark, history_path, run_date, solution, shape)
    run_rows = run_rows.persist()
    try:
        if not DeltaTable.isDeltaTable(spark, current_path):
            run_rows.limit(0).write.format("delta").mode("append").save(current_path)
        target = DeltaTable.forPath(spark, current_path)
        current = target.toDF()
        missing = [c for c in found.columns if c not in current.columns]
        if missing:
            raise JobError(f"current table {current_path} lacks the columns {', '.join(missing)}; it holds "
                           f"another shape than {history_path} ({found.name})")
        source = merge_source(run_rows, current, found, run_date)
        row_key = [OUT_SOLUTION, found.entity, OUT_RANK]
        on = " AND ".join(f"{TARGET}.`{c}` = {SOURCE}.`{c}`" for c in row_key)
        values = {f"`{c}`": f"{SOURCE}.`{c}`" for c in found.columns}
        merge = (target.alias(TARGET).merge(source.alias(SOURCE), on)
                 .whenMatchedDelete(condition=f"{SOURCE}.{DELETE_MARKER}")
                 .whenMatchedUpdate(set=values)
                 .whenNotMatchedInsert(condition=f"NOT {SOURCE}.{DELETE_MARKER}", values=values))
        if delete_absent:
            solutions = stats.solutions
            merge = merge.whenNotMatchedBySourceDelete(
                condition=f"{TARGET}.{OUT_SOLUTION} IN ({', '.join(_sql_string(s) for s in solutions)}) "
                          f"AND {TARGET}.{OUT_RUN_DATE} <= DATE'{run_date.isoformat()}'")
        merge.execute()
    except AnalysisException as exc:
        first = next((line for line in str(exc).splitlines() if line.strip()), "")
        raise JobError(f"cannot merge run {run_date.isoformat()} into current table {current_path}: "
                       f"{first.strip()}") from exc
    finally:
        run_rows.unpersist()
    last = DeltaTable.forPath(spark, current_path).history(1).select("version", "operationMetrics").first()
    metrics = last["operationMetrics"] or {}
    result = {"rows": stats.rows, "inserted": int(metrics.get("numTargetRowsInserted", 0)),
              "updated": int(metrics.get("numTargetRowsUpdated", 0)),
              "deleted": int(metrics.get("numTargetRowsDeleted", 0)), "version": int(last["version"])}
    log.info("current table %s: run %s merged: %s", current_path, run_date.isoformat(),
             " ".join(f"{k}={v}" for k, v in result.items()))
    return result
