"""Validation summary: counts per reason and per file, the JSON report, Personalize's minimums.

One aggregation per dataset over its cached outcome counts rows per reason and per file
(:func:`summarize`) and fails a dataset whose reject fraction exceeds the limit;
:func:`check_minimums` enforces Personalize's minimum interaction counts.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Mapping

from batchrec import columns
from batchrec.config import ValidationSettings
from batchrec.datasets.rules import (AFTER_RUN_DATE_COLUMN, FIELD_FIELD, MILLISECONDS_THRESHOLD,
                                     REASON_FIELD, REASON_ORDER, RECORD_FIELD, REJECT_COLUMN, rejected,
                                     timestamp_column)
from batchrec.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

# Summary key: valid rows left out because they lie after the end of the run date.
ROWS_AFTER_RUN_DATE = "rows_after_run_date"


def summarize(outcome: "DataFrame", kind: str, path: str, limits: ValidationSettings) -> dict:
    """Counts per reason and per file in one aggregation, plus notes on timestamp units.

    Args:
        outcome: :func:`batchrec.datasets.rules.outcome_rows` of the dataset.
        kind, path: what the counts and failures name.
        limits: the reject fraction allowed.

    ``rows_valid`` counts the rows the job keeps; valid rows after the end of the run date are
    counted apart (``rows_after_run_date``): outside the run's window, but not bad data.
    """
    from pyspark.sql import functions as F

    ts_name = timestamp_column(outcome)
    ts = F.col(ts_name) if ts_name else F.lit(None).cast("long")
    reject = F.col(REJECT_COLUMN)
    reason, field = reject[REASON_FIELD].alias(REASON_FIELD), reject[FIELD_FIELD].alias(FIELD_FIELD)
    # Fixed-width sums only, so Spark aggregates with a hash map instead of sorting every row.
    rows = (outcome.groupBy(columns.SOURCE_FILE, reason, field, AFTER_RUN_DATE_COLUMN)
            .agg(F.count(F.lit(1)).alias("n"),
                 F.sum((ts >= MILLISECONDS_THRESHOLD).cast("long")).alias("ms"),
                 F.sum(((ts >= 0) & (ts < MILLISECONDS_THRESHOLD)).cast("long")).alias("sec"))
            .collect())  # bounded: files x reasons x 2
    examples = {(r[REASON_FIELD], r[FIELD_FIELD]): r["example"] for r in
                outcome.filter(rejected(outcome)).groupBy(reason, field)
                .agg(F.min(reject[RECORD_FIELD]).alias("example")).collect()
                } if any(r[REASON_FIELD] is not None for r in rows) else {}
    by_reason: dict[tuple[str, str], dict] = {}
    per_file: dict[str, list[int]] = {}
    read = rejected_rows = after = 0
    for r in rows:
        read += r["n"]
        counts = per_file.setdefault(r[columns.SOURCE_FILE] or path, [0, 0])
        counts[0] += r["ms"] or 0
        counts[1] += r["sec"] or 0
        if r[REASON_FIELD] is None:
            after += r["n"] if r[AFTER_RUN_DATE_COLUMN] else 0
            continue
        rejected_rows += r["n"]
        key = (r[REASON_FIELD], r[FIELD_FIELD])
        by_reason.setdefault(key, {"rows": 0, "example": examples.get(key)})["rows"] += r["n"]
    notes = []
    for source, (ms, sec) in sorted(per_file.items()):
        if ms and sec:
            notes.append(f"{source}: mixed timestamp units: {ms} rows look like milliseconds, "
                         f"{sec} like seconds; Personalize expects epoch seconds")
        elif ms:
            notes.append(f"{source}: all {ms} timestamps look like milliseconds; Personalize expects "
                         "epoch seconds: divide them by 1000")
    reasons = [{"reason": r, "field": f, **v} for (r, f), v in
               sorted(by_reason.items(), key=lambda kv: (REASON_ORDER.index(kv[0][0]), kv[0][1]))]
    fraction = rejected_rows / read if read else 0.0
    failures = []
    if read == 0:
        failures.append(f"{kind} {path}: no rows")
    elif fraction > limits.max_reject_fraction:
        top = ", ".join(f"{x['reason']}{' (' + x['field'] + ')' if x['field'] else ''}: {x['rows']}"
                        for x in reasons)
        failures.append(f"{kind} {path}: {rejected_rows} of {read} rows rejected ({fraction:.2%}), more "
                        f"than the allowed {limits.max_reject_fraction:.2%}: {top}"
                        + "".join(f"; {n}" for n in notes))
    return {"dataset": kind, "path": path, "files": len(per_file), "rows_read": read,
            "rows_valid": read - rejected_rows - after, "rows_rejected": rejected_rows,
            ROWS_AFTER_RUN_DATE: after, "reject_fraction": fraction,
            "max_reject_fraction": limits.max_reject_fraction,
            "rejects_by_reason": _sum_by_reason(reasons),
            "reasons": reasons, "notes": notes, "failures": failures, "passed": not failures}


def _sum_by_reason(reasons: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in reasons:
        out[r["reason"]] = out.get(r["reason"], 0) + r["rows"]
    return out


def write_report(spark, summary: Mapping[str, Any], uri: str) -> None:
    """Write the summary as JSON to ``uri`` (any Hadoop path) atomically, leaving no temporary file.

    Raises:
        JobError: the file could not be written; UsageError: ``uri`` is a folder.
    """
    from batchrec import fs

    fs.write_text_atomic(spark, str(uri), json.dumps(summary, indent=2, default=str) + "\n")


def minimum_counts(interactions: "DataFrame", limits: ValidationSettings) -> dict:
    """Interactions and users with two or more interactions, against Personalize's minimums."""
    from pyspark.sql import functions as F

    per_user = interactions.groupBy(columns.USER_ID).agg(F.count(F.lit(1)).alias("n"))
    row = per_user.agg(F.sum("n").alias("rows"), F.count(F.lit(1)).alias("users"),
                       F.sum((F.col("n") >= 2).cast("long")).alias("users2")).first()
    n, users2 = row["rows"] or 0, row["users2"] or 0
    failures = []
    if n < limits.min_interactions:
        failures.append(f"only {n} valid interactions; at least {limits.min_interactions} are needed "
                        "(Personalize's minimum; lower it with --min-interactions)")
    if users2 < limits.min_users_with_two_interactions:
        failures.append(f"only {users2} users with at least 2 interactions; at least "
                        f"{limits.min_users_with_two_interactions} are needed (lower with --min-users)")
    return {"interactions": n, "users": row["users"], "users_with_two_interactions": users2,
            "min_interactions": limits.min_interactions,
            "min_users_with_two_interactions": limits.min_users_with_two_interactions,
            "failures": failures, "passed": not failures}


def check_minimums(interactions_df: "DataFrame", validation_settings: ValidationSettings,
                   context: str = "") -> dict:
    """:func:`minimum_counts`, raising DataError when a minimum is not met.

    Raises:
        DataError: fewer than ``min_interactions`` rows or ``min_users_with_two_interactions`` users.
    """
    result = minimum_counts(interactions_df, validation_settings)
    if result["failures"]:
        raise DataError(f"{context + ': ' if context else ''}{'; '.join(result['failures'])}")
    return result
