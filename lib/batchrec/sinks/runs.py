"""One run's rows of a batch output Delta table, and the three shapes those tables come in.

Every batch job writes a Delta table partitioned by ``run_date`` with one ``replaceWhere`` commit per
(run_date, solution) (``batchrec.sinks.delta``). Three shapes exist; each has an *entity* (what one
result list belongs to), a *member* (what the list holds) and a ``rank`` ordering the list:

============== ========================================================================== ========== ===============
shape          columns                                                                    entity     member
============== ========================================================================== ========== ===============
recommendations run_date, solution, solution_version, recipe, user_id, rank, item_id,       user_id    item_id
               score, reason
related        run_date, solution, solution_version, recipe, item_id, rank,               item_id    related_item_id
               related_item_id, score, reason
segments       run_date, solution, solution_version, recipe, segment_id, query, rank,     segment_id user_id
               user_id, score
============== ========================================================================== ========== ===============
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Optional, Sequence

from pyspark.sql import DataFrame, SparkSession, functions as F
from pyspark.sql.utils import AnalysisException

from batchrec.columns import (OUT_ITEM_ID, OUT_RANK, OUT_REASON, OUT_RECIPE, OUT_RUN_DATE, OUT_SCORE,
                              OUT_SOLUTION, OUT_SOLUTION_VERSION, OUT_USER_ID)
from batchrec.errors import DataError, UsageError

# Columns of the related-items and segment tables (their jobs write them with these names).
OUT_RELATED_ITEM_ID = "related_item_id"
OUT_SEGMENT_ID = "segment_id"
OUT_QUERY = "query"

RECOMMENDATIONS = "recommendations"
RELATED = "related"
SEGMENTS = "segments"
RUN_COLUMNS = (OUT_RUN_DATE, OUT_SOLUTION, OUT_SOLUTION_VERSION, OUT_RECIPE)
# How many run dates an error message lists.
LISTED_RUN_DATES = 10


@dataclass(frozen=True)
class Shape:
    """A batch output table's layout: its columns, the list owner (entity) and the list element (member)."""

    name: str
    columns: tuple[str, ...]
    entity: str
    member: str


SHAPES = {
    RECOMMENDATIONS: Shape(RECOMMENDATIONS, RUN_COLUMNS + (OUT_USER_ID, OUT_RANK, OUT_ITEM_ID, OUT_SCORE,
                                                         OUT_REASON), OUT_USER_ID, OUT_ITEM_ID),
    RELATED: Shape(RELATED, RUN_COLUMNS + (OUT_ITEM_ID, OUT_RANK, OUT_RELATED_ITEM_ID, OUT_SCORE, OUT_REASON),
                   OUT_ITEM_ID, OUT_RELATED_ITEM_ID),
    SEGMENTS: Shape(SEGMENTS, RUN_COLUMNS + (OUT_SEGMENT_ID, OUT_QUERY, OUT_RANK, OUT_USER_ID, OUT_SCORE),
                    OUT_SEGMENT_ID, OUT_USER_ID),
}
# The column that tells a shape apart, most specific first (a segment table also has user_id).
_MARKERS = ((OUT_SEGMENT_ID, SEGMENTS), (OUT_RELATED_ITEM_ID, RELATED), (OUT_USER_ID, RECOMMENDATIONS))


def detect_shape(columns: Sequence[str], source: str, name: Optional[str] = None) -> Shape:
    """The shape of a table with ``columns``, or the one named ``name`` after checking its columns.

    Raises:
        UsageError: ``name`` is not a known shape.
        DataError: the columns fit no shape, or lack some of the named shape's columns.
    """
    present = set(columns)
    if name is not None:
        if name not in SHAPES:
            raise UsageError(f"unknown shape {name!r}; expected one of {', '.join(SHAPES)}")
        shape = SHAPES[name]
    else:
        shape = next((SHAPES[s] for marker, s in _MARKERS if marker in present), None)
        if shape is None:
            raise DataError(
                f"{source}: columns {', '.join(columns)} fit none of the batch output shapes; expected "
                + "; or ".join(f"{s.name} ({', '.join(s.columns)})" for s in SHAPES.values()))
    missing = [c for c in shape.columns if c not in present]
    if missing:
        raise DataError(f"{source}: a {shape.name} table needs the columns {', '.join(missing)}; "
                        f"it has {', '.join(columns)}")
    return shape


def read_table(spark: SparkSession, path: str) -> DataFrame:
    """The Delta table at ``path``.

    Raises:
        DataError: there is no Delta table at ``path``.
    """
    try:
        return spark.read.format("delta").load(path)
    except AnalysisException as exc:
        first = next((line for line in str(exc).splitlines() if line.strip()), "")
        raise DataError(f"--input {path}: not a readable Delta table ({first.strip()}); expected the "
                        f"--output table of a batch job (recommend, related, segment)") from exc


@dataclass(frozen=True)
class RunStats:
    """What one aggregation over the run (and the later runs of its solutions) found."""

    rows: int
    solutions: tuple[str, ...]
    later: tuple[tuple[str, str], ...]   # (solution, latest run date) where a later run exists


def read_run(spark: SparkSession, path: str, run_date: dt.date, solution: Optional[str] = None,
             shape: Optional[str] = None) -> tuple[DataFrame, Shape, RunStats]:
    """The rows of ``run_date`` (and of ``solution`` when given) in the batch output table at ``path``.

    One aggregation (grouped by solution, over this run date and later ones) counts the rows,
    checks that no key column is null, and finds later runs of the same solutions.

    Returns:
        ``(rows, shape, stats)``: the run's rows with exactly the shape's columns (lazy), the shape,
        and the :class:`RunStats`.

    Raises:
        DataError: no Delta table, columns of no known shape, no row for the run date (and
        solution; the message lists the run dates and solutions the table does have), or a null
        solution, entity, member or rank.
    """
    table = read_table(spark, path)
    found = detect_shape(table.columns, f"--input {path}", shape)
    selected = table.where(run_filter(run_date, solution)).select(*found.columns)
    stats = run_stats(table, found, path, run_date, solution)
    return selected, found, stats


def run_stats(table: DataFrame, shape: Shape, path: str, run_date: dt.date,
              solution: Optional[str] = None) -> RunStats:
    """Count the run's rows per solution, check its keys, and find later runs (one Spark job).

    Raises:
        DataError: no rows for the run, or null keys (naming the column and the count).
    """
    scope = table.where(F.col(OUT_RUN_DATE) >= F.lit(run_date))
    if solution is not None:
        scope = scope.where(F.col(OUT_SOLUTION) == F.lit(solution))
    in_run = F.col(OUT_RUN_DATE) == F.lit(run_date)
    keys = (shape.entity, OUT_RANK, shape.member)
    # Grouped by solution: a handful of rows, one per solution in the table.
    groups = scope.groupBy(OUT_SOLUTION).agg(
        F.count(F.when(in_run, 1)).alias("_rows"), F.max(OUT_RUN_DATE).alias("_latest"),
        *[F.count(F.when(in_run & F.col(c).isNull(), 1)).alias(c) for c in keys]).collect()
    groups = [g for g in groups if g["_rows"]] + [g for g in groups if not g["_rows"]]
    total = sum(g["_rows"] for g in groups)
    if total == 0:
        raise DataError(no_rows_message(table, path, run_date, solution))
    nulls = {OUT_SOLUTION: sum(g["_rows"] for g in groups if g[OUT_SOLUTION] is None)}
    nulls.update({c: sum(g[c] for g in groups) for c in keys})
    nulls = {c: n for c, n in nulls.items() if n}
    if nulls:
        raise DataError(f"--input {path}: " + ", ".join(f"{n} rows with a null {c}" for c, n in nulls.items())
                        + f" on {run_date.isoformat()}; every {shape.name} row needs "
                        + ", ".join((OUT_SOLUTION,) + keys))
    present = sorted(g[OUT_SOLUTION] for g in groups if g["_rows"])
    later = sorted((g[OUT_SOLUTION], g["_latest"].isoformat()) for g in groups
                   if g["_rows"] and g["_latest"] > run_date)
    return RunStats(int(total), tuple(present), tuple(later))


def run_filter(run_date: dt.date, solution: Optional[str] = None):
    """Column predicate for one run date and, when given, one solution (partition pruning on run_date)."""
    predicate = F.col(OUT_RUN_DATE) == F.lit(run_date)
    if solution is not None:
        predicate = predicate & (F.col(OUT_SOLUTION) == F.lit(solution))
    return predicate


def no_rows_message(table: DataFrame, path: str, run_date: dt.date, solution: Optional[str]) -> str:
    """Why a run selected nothing, naming what the table does hold (a few run dates and solutions)."""
    wanted = f"run_date {run_date.isoformat()}" + (f" and solution {solution!r}" if solution else "")
    dates = [r[0].isoformat() for r in table.select(OUT_RUN_DATE).distinct()
             .orderBy(F.col(OUT_RUN_DATE).desc()).limit(LISTED_RUN_DATES).collect()]
    if not dates:
        return f"--input {path}: the table is empty; expected the rows of {wanted}"
    message = f"--input {path}: no rows for {wanted}; latest run dates in the table: {', '.join(dates)}"
    if solution:
        solutions = [r[0] for r in table.where(F.col(OUT_RUN_DATE) == F.lit(run_date))
                     .select(OUT_SOLUTION).distinct().orderBy(OUT_SOLUTION).limit(LISTED_RUN_DATES).collect()]
        if solutions:
            message += f"; solutions on {run_date.isoformat()}: {', '.join(solutions)}"
    return message
