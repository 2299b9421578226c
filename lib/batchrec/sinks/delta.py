"""Batch results into a Delta table, one atomic commit per run.

Table schema: ``run_date date, solution string, solution_version string, recipe string`` followed
by the payload columns of the job's output shape (``batchrec.batch.shapes``; for recommendations
``user_id string, rank int, item_id string, score double (nullable), reason string``), partitioned by
``run_date``. A re-run of the same run date and solution replaces exactly that run's rows
(``replaceWhere``) in one commit, so readers see either the old or the new run, never both or a mix,
and other run dates and solutions are untouched. Delta's default protocol keeps the table readable by
delta-rs (the ``deltalake`` Python package) as well.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Optional

from pyspark.sql import DataFrame, functions as F
from pyspark.sql.utils import AnalysisException

from batchrec.batch.shapes import RECOMMENDATIONS, OutputShape
from batchrec.columns import OUT_RECIPE, OUT_RUN_DATE, OUT_SOLUTION, OUT_SOLUTION_VERSION
from batchrec.errors import JobError

log = logging.getLogger(__name__)

RUN_COLUMNS = (OUT_RUN_DATE, OUT_SOLUTION, OUT_SOLUTION_VERSION, OUT_RECIPE)
OUTPUT_COLUMNS = RUN_COLUMNS + RECOMMENDATIONS.output_columns


def with_run_columns(recs: DataFrame, run_date: dt.date, solution: str, solution_version: str,
                     recipe: str, shape: OutputShape = RECOMMENDATIONS) -> DataFrame:
    """Result rows of ``shape`` -> the output table's columns and types."""
    return recs.select(
        F.lit(run_date.isoformat()).cast("date").alias(OUT_RUN_DATE),
        F.lit(solution).alias(OUT_SOLUTION),
        F.lit(solution_version).alias(OUT_SOLUTION_VERSION),
        F.lit(recipe).alias(OUT_RECIPE),
        *[F.col(source).cast(kind).alias(out) for source, out, kind in shape.columns],
    )


def run_predicate(run_date: dt.date, solution: str) -> str:
    """SQL predicate selecting one run's rows (the ``replaceWhere`` condition)."""
    quoted = solution.replace("\\", "\\\\").replace("'", "\\'")
    return f"{OUT_RUN_DATE} = DATE'{run_date.isoformat()}' AND {OUT_SOLUTION} = '{quoted}'"


def write_run(recs: DataFrame, path: str, run_date: dt.date, solution: str, solution_version: str,
              recipe: str, shape: OutputShape = RECOMMENDATIONS) -> int:
    """Replace the rows of (run_date, solution) in the Delta table at ``path`` in one commit.

    Args:
        recs: result rows of ``shape`` (recommendations: ``[USER_ID, rank, ITEM_ID, score, reason]``).
        path: the table (created on the first run).
        run_date, solution, solution_version, recipe: written on every row.

    Returns:
        The number of rows written (from the commit's metrics: the result is computed once).

    Raises:
        JobError: the table exists with another schema or partitioning.
    """
    out = with_run_columns(recs, run_date, solution, solution_version, recipe, shape)
    try:
        (out.write.format("delta").mode("overwrite")
         .option("replaceWhere", run_predicate(run_date, solution))
         .partitionBy(OUT_RUN_DATE).save(path))
    except AnalysisException as exc:  # schema or partitioning differs from the existing table
        raise JobError(f"cannot write results to Delta table {path}: "
                       f"{str(exc).strip().splitlines()[0]}; expected columns "
                       f"{', '.join(RUN_COLUMNS + shape.output_columns)} "
                       f"partitioned by {OUT_RUN_DATE}") from exc
    rows = last_commit_rows(recs.sparkSession, path)
    log.info("wrote %s rows to %s for run_date=%s solution=%s", rows, path, run_date, solution)
    return rows if rows is not None else -1


def last_commit_rows(spark, path: str) -> Optional[int]:
    """``numOutputRows`` of the table's latest commit (None when Delta did not record it)."""
    from delta.tables import DeltaTable

    metrics = DeltaTable.forPath(spark, path).history(1).select("operationMetrics").first()[0] or {}
    value = metrics.get("numOutputRows")
    return int(value) if value is not None else None
