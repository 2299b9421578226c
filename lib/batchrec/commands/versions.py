"""``batchrec versions list|describe|prune --solution DIR``: the versions of a solution.

* ``list``: one line per version folder: id, status (complete, or incomplete: a training running or
  one that died before its ``_COMPLETE`` marker), run date, recipe, creation time, size, and which
  version ``latest`` resolves to for ``--run-date`` (today by default). ``--json`` prints the same
  as one JSON array.
* ``describe VERSION``: run date, recipe, parameters, metrics, data statistics, datasets, size and
  artifacts of one version (``latest`` allowed), as JSON.
* ``prune --keep N``: removes complete versions, keeping the N newest, every ``--pin V`` (a
  ``--solution-version`` some job is pinned to) and every version the run-date-aware ``latest``
  needs (:func:`batchrec.registry.prune_plan`); prints what it removed (``--dry-run``: what it
  would remove) and the summary line. Incomplete folders are left alone: one may be a training
  in progress.

Everything goes through the Hadoop FileSystem API (``batchrec.registry``), so ``s3a://`` solutions
work like local ones.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Optional, Sequence

import click

from batchrec import registry

log = logging.getLogger(__name__)

LIST, DESCRIBE, PRUNE = "list", "describe", "prune"


def run(spark, settings, run_date: dt.date, *, action: str, solution: str, version: Optional[str] = None,
        keep: Optional[int] = None, pins: Sequence[str] = (), dry_run: bool = False,
        as_json: bool = False) -> dict:
    """Run ``action`` on ``solution``; returns the summary for ``prune`` ({} otherwise: the listing
    is the output).

    Raises:
        JobError: no solution there, an unknown version, unreadable metadata.
        UsageError: a bad ``--keep`` or an unknown ``--pin``.
    """
    if action == LIST:
        rows = list_rows(spark, solution, run_date)
        click.echo(json.dumps(rows) if as_json else format_rows(rows))
        return {}
    if action == DESCRIBE:
        click.echo(json.dumps(registry.describe_version(spark, solution, version or registry.LATEST),
                              indent=2, default=str))
        return {}
    if action == PRUNE:
        return prune(spark, solution, keep, pins, run_date, dry_run)
    raise ValueError(f"unknown versions action {action!r}")


def list_rows(spark, solution: str, run_date: dt.date) -> list[dict]:
    """One dict per version folder, oldest first, with ``latest`` marking the version batch jobs
    use for ``run_date``."""
    infos = registry.version_infos(spark, solution)
    dated = [(i.run_date or "", i.version) for i in infos if i.complete]
    latest = registry.pick_latest(dated, run_date)
    return [{"version": i.version, "status": "complete" if i.complete else "incomplete",
             "run_date": i.run_date, "recipe": i.recipe, "created_at": i.metadata.get("created_at"),
             "size_bytes": registry.folder_size(spark, i.path), "latest": i.version == latest,
             **({"problem": i.problem} if i.problem else {})} for i in infos]


def format_rows(rows: list[dict]) -> str:
    """The listing as an aligned table."""
    if not rows:
        return "no versions"
    header = ("version", "status", "run date", "recipe", "created", "size", "")
    table = [(r["version"], r["status"], r["run_date"] or "-", r["recipe"] or "-",
              (r["created_at"] or "-")[:19], human_size(r["size_bytes"]),
              "latest" if r["latest"] else r.get("problem", "")) for r in rows]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *table)]
    return "\n".join("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip()
                     for line in [header] + table)


def prune(spark, solution: str, keep: Optional[int], pins: Sequence[str], run_date: dt.date,
          dry_run: bool) -> dict:
    """Remove the complete versions :func:`batchrec.registry.prune_plan` does not keep."""
    infos = registry.version_infos(spark, solution)
    complete = {i.version: i for i in infos if i.complete}
    plan = registry.prune_plan([(i.run_date or "", v) for v, i in complete.items()], keep or 0,
                               tuple(dict.fromkeys(pins)), run_date)
    freed = 0
    verb = "would remove" if dry_run else "removed"
    for version in plan.remove:
        info = complete[version]
        size = registry.folder_size(spark, info.path)
        if not dry_run:
            registry.remove_version(spark, solution, version)
        freed += size
        click.echo(f"{verb} {version}  run date {info.run_date or '-'}  {info.recipe or '-'}  "
                   f"{human_size(size)}")
    for version, reasons in plan.keep.items():
        log.info("kept %s: %s", version, "; ".join(reasons))
    left = [i.version for i in infos if not i.complete]
    if left:
        log.info("left %d incomplete version folder(s) alone (no _COMPLETE marker; a training may be "
                 "running): %s", len(left), ", ".join(left))
    if not plan.remove:
        click.echo(f"nothing to remove: {len(plan.keep)} version(s) kept")
    return {"command": "versions prune", "run_date": run_date.isoformat(), "solution": solution,
            "dry_run": dry_run, "removed": plan.remove, "kept": plan.keep, "incomplete": left,
            "bytes_freed": freed}


def human_size(size: Optional[int]) -> str:
    """``512 B``, ``1.2 MB``, ..."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover
