"""The one-line JSON summary every command ends with: on stdout, in the log, and with
``--summary-file`` in a file written through ``batchrec.fs`` (for Airflow in cluster deploy mode,
where the driver's stdout never reaches the scheduler).

One shape for every command: ``command`` and ``run_date`` first, then what the command did as
counts and locations, ``seconds`` last. ``train`` adds the version id, path and metrics; the batch
jobs (``recommend``, ``rank``, ``related``, ``segment``) their request and row counts;
``validate`` its row counts per dataset; ``evaluate`` the split's sizes and each recipe's compared
metric (the full report is its ``--report`` file). The summary is the last line on stdout, also
when a command fails after it has counts to report (an incomplete export, a failed validation).
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Mapping, Optional

log = logging.getLogger(__name__)

COMMAND = "command"
RUN_DATE = "run_date"
SECONDS = "seconds"


def emit(summary: dict, spark=None, summary_file: Optional[str] = None) -> None:
    """Log ``summary``, print it as one JSON line, and write it to ``summary_file`` atomically."""
    line = json.dumps(summary, sort_keys=False, default=str)
    log.info("summary %s", " ".join(f"{k}={v}" for k, v in summary.items()))
    print(line, flush=True)
    if summary_file:
        from batchrec import fs

        fs.write_text_atomic(spark, summary_file, line + "\n")


def shape(command: str, result: Mapping[str, Any], run_date: Optional[str] = None,
          seconds: Optional[float] = None, options: Optional[Mapping[str, Any]] = None) -> dict:
    """The summary line of ``command`` from what its ``run`` returned.

    Commands whose result is a longer document (``validate``'s summary, ``evaluate``'s report) are
    cut down to their counts; every summary gets ``command`` and ``run_date`` first and ``seconds``
    (the command's wall time, unless it measured its own) last.

    Args:
        command: the CLI command name.
        result: what ``batchrec.commands.<command>.run`` returned.
        run_date: the run date (ISO), used when the result does not carry one.
        seconds: the command's wall time.
        options: the command's options (report paths the result does not name).
    """
    body = dict(_SHAPERS.get(command, _as_is)(dict(result), dict(options or {})))
    head = {COMMAND: body.pop(COMMAND, command), RUN_DATE: body.pop(RUN_DATE, run_date)}
    tail_seconds = body.pop(SECONDS, None)
    if tail_seconds is None and seconds is not None:
        tail_seconds = round(seconds, 1)
    return {**head, **body, **({SECONDS: tail_seconds} if tail_seconds is not None else {})}


def _as_is(result: dict, options: dict) -> dict:
    return result


def _validate(result: dict, options: dict) -> dict:
    minimums = result.get("minimums") or {}
    datasets = {
        kind: {key: summary.get(key) for key in ("path", "rows_read", "rows_valid", "rows_rejected",
                                                 "rows_after_run_date", "rejects_by_reason")}
        for kind, summary in (result.get("datasets") or {}).items()
    }
    return {RUN_DATE: result.get(RUN_DATE), "passed": result.get("passed"), "datasets": datasets,
            "interactions": minimums.get("interactions"), "users": minimums.get("users"),
            "users_with_two_interactions": minimums.get("users_with_two_interactions"),
            "failures": result.get("failures", []), "rejects": result.get("rejects_path"),
            "report": _text(options.get("report"))}


def _evaluate(result: dict, options: dict) -> dict:
    split = result.get("split") or {}
    recipes = result.get("recipes") or []
    k = result.get("k") or []
    first = (recipes[0].get("metrics") or {}) if recipes else {}
    metric = result.get("hpo_metric")
    if metric not in first and k:
        metric = f"ndcg@{max(k)}"  # evaluate compares on ndcg at the largest K then
    return {RUN_DATE: result.get(RUN_DATE), "protocol": result.get("protocol"), "k": k,
            "interactions": split.get("interactions"), "users": split.get("users"),
            "evaluated_users": split.get("evaluated_users"), "items": result.get("catalog_items"),
            "metric": metric,
            "recipes": {r.get("recipe"): {metric: (r.get("metrics") or {}).get(metric),
                                          "versus_first": (r.get("versus_first") or {}).get("ratio")}
                        for r in recipes},
            "report": _text(options.get("report")), "html": _text(options.get("html")),
            SECONDS: result.get(SECONDS)}


def _text(value: Any) -> Optional[str]:
    return None if value is None else str(value)


_SHAPERS: dict[str, Callable[[dict, dict], dict]] = {"validate": _validate, "evaluate": _evaluate}
