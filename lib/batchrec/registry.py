"""Solution versions: immutable trained models in a solution directory (local path or Hadoop URI).

Layout::

    <solution>/versions/<version>/artifacts/<name>/part-*.parquet
    <solution>/versions/<version>/metadata.json
    <solution>/versions/<version>/_COMPLETE          written last: a version without it is ignored

Version ids sort by creation time (``20261122T101500123Z-3f9a``: UTC to the millisecond, then a
random suffix). ``metadata.json`` records the recipe, parameters, datasets, data statistics,
metrics, creation time, package version, and for each artifact its schema, row count, the size of
every file and each file's rows and content digest (a sum of row hashes), so a missing, truncated,
overwritten or corrupted file is reported by name (a :class:`JobError`) when the version is opened,
not as a task failure somewhere in the job. Verifying the digest reads every artifact once
(``read_artifact(..., verify=False)`` skips it).

Files are listed, read and written through the Hadoop FileSystem API of the session, so s3a://,
hdfs:// and local paths behave alike.

Housekeeping (``batchrec versions``): :func:`version_infos` lists every version folder, complete or
not; :func:`prune_plan` decides which complete versions to remove (keeping the newest N, pinned
ones, and every version the run-date-aware ``latest`` resolves to), and :func:`remove_version`
removes one, marker first.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Sequence, TypeVar

from pyspark.sql import DataFrame

import batchrec
from batchrec import catalogue
from batchrec.errors import JobError, UsageError
from batchrec.fs import (delete, exists, hadoop_path, join, list_dirs, list_files, read_text,
                         write_text)

log = logging.getLogger(__name__)

VERSIONS_DIR = "versions"
ARTIFACTS_DIR = "artifacts"
METADATA_FILE = "metadata.json"
COMPLETE_MARKER = "_COMPLETE"
LATEST = "latest"

# Artifact names and schemas are declared in the recipe catalogue; re-exported here for readers.
USER_MAP = catalogue.USER_MAP
ITEM_MAP = catalogue.ITEM_MAP
USER_FACTORS = catalogue.USER_FACTORS
ITEM_FACTORS = catalogue.ITEM_FACTORS
POPULAR_ITEMS = catalogue.POPULAR_ITEMS
TRENDING_ITEMS = catalogue.TRENDING_ITEMS
ITEM_STATS = catalogue.ITEM_STATS
SEEN_ITEMS = catalogue.SEEN_ITEMS
# Small artifacts are written as one file: fewer objects to list and check on object stores.
_SINGLE_FILE = {POPULAR_ITEMS, TRENDING_ITEMS}
# Artifacts are written and verified concurrently, each its own Spark jobs: most are small, so a
# sequential save or load is mostly per-job latency (planning, scheduling, listing), not work.
ARTIFACT_THREADS = 4

_T = TypeVar("_T")


@dataclass(frozen=True)
class SolutionVersion:
    """One complete, immutable version of a solution."""

    solution: str
    version: str
    path: str
    recipe: str
    metadata: dict


def new_version_id(now: Optional[dt.datetime] = None) -> str:
    """A version id that sorts by creation time, e.g. ``20261122T101500123Z-3f9a``."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y%m%dT%H%M%S}{now.microsecond // 1000:03d}Z-{secrets.token_hex(2)}"


def save_version(spark, solution: str, model, metadata: dict) -> SolutionVersion:
    """Write ``model``'s artifacts and metadata as a new version; the marker goes last.

    Args:
        spark: the SparkSession.
        solution: the solution directory (created when missing).
        model: a :class:`batchrec.recipes.TrainedModel`.
        metadata: what the caller knows: ``datasets``, ``metrics`` (and anything else to keep).

    Returns:
        The new :class:`SolutionVersion`.
    """
    created = dt.datetime.now(dt.timezone.utc)
    version = new_version_id(created)
    path = join(solution, VERSIONS_DIR, version)

    def write(name: str) -> dict:
        df = model.artifacts[name]
        _check_schema(name, df)
        target = join(path, ARTIFACTS_DIR, name)
        (df.coalesce(1) if name in _SINGLE_FILE else df).write.mode("errorifexists").parquet(target)
        written = spark.read.parquet(target)
        content = file_digests(written)
        return {
            "schema": written.schema.simpleString(),
            "rows": sum(rows for rows, _ in content.values()),
            "files": {f: size for f, size in list_files(spark, target).items() if f.endswith(".parquet")},
            "content": {f: {"rows": rows, "digest": digest} for f, (rows, digest) in content.items()},
        }

    artifacts = _each_artifact(sorted(model.artifacts), write)
    full = {
        **metadata,
        "version": version,
        "recipe": model.recipe,
        "params": model.params,
        "data_stats": model.stats,
        "metrics": metadata.get("metrics", {}),
        "created_at": created.isoformat(),
        "package_version": batchrec.__version__,
        "artifacts": artifacts,
    }
    write_text(spark, join(path, METADATA_FILE), json.dumps(full, indent=2, sort_keys=True, default=str))
    write_text(spark, join(path, COMPLETE_MARKER), version + "\n")
    log.info("saved solution version %s at %s", version, path)
    if full.get("run_date"):
        _drop_same_run_date(spark, solution, full["run_date"], keep=version)
    return SolutionVersion(solution, version, path, model.recipe, full)


def _drop_same_run_date(spark, solution: str, run_date: str, keep: str) -> None:
    """A re-run of ``train`` for a run date replaces that date's version (Airflow retries and
    backfills): the older versions of the same run date are removed once the new one is complete."""
    for other in list_versions(spark, solution):
        if other != keep and version_run_date(spark, solution, other) == run_date:
            log.info("removing solution version %s: replaced by %s for run date %s", other, keep, run_date)
            remove_version(spark, solution, other)


def _check_schema(name: str, df: DataFrame) -> None:
    """Refuse to save an artifact whose columns differ from the contract readers rely on."""
    from pyspark.sql.types import _parse_datatype_string

    expected = catalogue.artifact_schemas().get(name)
    if expected is None:
        return
    wanted = _parse_datatype_string(expected).simpleString()
    if df.schema.simpleString() != wanted:
        raise JobError(f"artifact {name} has schema {df.schema.simpleString()}; expected {wanted}")


def list_versions(spark, solution: str) -> list[str]:
    """Ids of the complete versions of ``solution``, oldest first.

    Raises:
        JobError: ``solution`` does not exist.
    """
    root = join(solution, VERSIONS_DIR)
    if not exists(spark, solution):
        raise JobError(f"no solution at {solution}")
    if not exists(spark, root):
        return []
    return sorted(v for v in list_dirs(spark, root) if exists(spark, join(root, v, COMPLETE_MARKER)))


def version_run_date(spark, solution: str, version: str) -> Optional[str]:
    """The run date (``YYYY-MM-DD``) a version was trained for, or None when it records none."""
    metadata = _read_metadata(spark, join(solution, VERSIONS_DIR, version, METADATA_FILE))
    return metadata.get("run_date") or None


def load_version(spark, solution: str, version: str = LATEST,
                 run_date: Optional[dt.date] = None) -> SolutionVersion:
    """Open a complete version.

    ``latest`` is the newest complete version trained for a run date on or before ``run_date``
    (any run date when None), so a backfill of an old date never scores with a newer model. A
    version that records no run date (saved through the library without one) serves any run date,
    after every dated one.

    Raises:
        JobError: the solution does not exist, has no complete version (for the run date), the
            version is unknown or incomplete (the message lists the available ones), or its
            metadata is unreadable.
    """
    available = list_versions(spark, solution)
    if not available:
        raise JobError(f"no complete solution version in {solution}; train one with batchrec train")
    if version == LATEST:
        version = _latest(spark, solution, available, run_date)
    elif version not in available:
        raise JobError(f"solution version {version!r} not found (or incomplete) in {solution}; "
                       f"available versions: {', '.join(available)}")
    path = join(solution, VERSIONS_DIR, version)
    metadata = _read_metadata(spark, join(path, METADATA_FILE))
    if "recipe" not in metadata:
        raise JobError(f"corrupt solution metadata {join(path, METADATA_FILE)}: no recipe recorded")
    return SolutionVersion(solution, version, path, metadata["recipe"], metadata)


def _latest(spark, solution: str, available: list[str], run_date: Optional[dt.date]) -> str:
    if run_date is None:
        return available[-1]
    dated = [(version_run_date(spark, solution, v) or "", v) for v in available]  # "" sorts first
    chosen = pick_latest(dated, run_date)
    if chosen is None:
        raise JobError(f"no solution version in {solution} was trained for a run date on or before "
                       f"{run_date.isoformat()}; versions: "
                       f"{', '.join(f'{v} ({d})' for d, v in dated)}")
    return chosen


def pick_latest(dated: Iterable[tuple[str, str]], run_date: dt.date) -> Optional[str]:
    """The version ``latest`` means for ``run_date``: the newest of those trained for a run date on
    or before it (``dated`` holds ``(run date or "", version)``; "" serves any date, after every
    dated version), or None when there is none."""
    eligible = [(d, v) for d, v in dated if d <= run_date.isoformat()]
    return max(eligible)[1] if eligible else None


def latest_version(spark, solution: str, run_date: Optional[dt.date] = None) -> str:
    """The id ``--solution-version latest`` resolves to for ``run_date`` (see :func:`load_version`).

    Raises:
        JobError: no solution, or no complete version for the run date.
    """
    available = list_versions(spark, solution)
    if not available:
        raise JobError(f"no complete solution version in {solution}; train one with batchrec train")
    return _latest(spark, solution, available, run_date)


@dataclass(frozen=True)
class VersionInfo:
    """A version folder as ``batchrec versions`` shows it.

    Attributes:
        version: its id. path: its folder.
        complete: it has its ``_COMPLETE`` marker (else a training is running, or died).
        metadata: its ``metadata.json`` ({} when there is none yet).
        problem: why the metadata could not be read (a listing shows it rather than failing).
    """

    version: str
    path: str
    complete: bool
    metadata: dict = field(default_factory=dict)
    problem: Optional[str] = None

    @property
    def run_date(self) -> Optional[str]:
        return self.metadata.get("run_date") or None

    @property
    def recipe(self) -> Optional[str]:
        return self.metadata.get("recipe")


def version_infos(spark, solution: str) -> list[VersionInfo]:
    """Every version folder of ``solution``, complete or not, oldest first.

    Raises:
        JobError: ``solution`` does not exist.
    """
    if not exists(spark, solution):
        raise JobError(f"no solution at {solution}")
    root = join(solution, VERSIONS_DIR)
    if not exists(spark, root):
        return []
    infos = []
    for version in list_dirs(spark, root):
        path = join(root, version)
        complete = exists(spark, join(path, COMPLETE_MARKER))
        metadata, problem = {}, None
        if exists(spark, join(path, METADATA_FILE)):
            try:
                metadata = _read_metadata(spark, join(path, METADATA_FILE))
            except JobError as exc:
                problem = str(exc)
        infos.append(VersionInfo(version, path, complete, metadata, problem))
    return infos


def describe_version(spark, solution: str, version: str) -> dict:
    """What ``batchrec versions describe`` shows: run date, recipe, parameters, metrics, data
    statistics, datasets, size, and per artifact its rows, files and bytes.

    Raises:
        JobError: unknown solution or version (the message lists the versions there are).
    """
    infos = {info.version: info for info in version_infos(spark, solution)}
    if version == LATEST:
        version = latest_version(spark, solution)
    info = infos.get(version)
    if info is None:
        raise JobError(f"solution version {version!r} not found in {solution}; versions: "
                       f"{', '.join(infos) or 'none'}")
    meta = info.metadata
    artifacts = {name: {"rows": a.get("rows"), "files": len(a.get("files") or {}),
                        "bytes": sum((a.get("files") or {}).values())}
                 for name, a in sorted((meta.get("artifacts") or {}).items())}
    return {"version": info.version, "path": info.path, "complete": info.complete,
            "run_date": info.run_date, "recipe": info.recipe, "created_at": meta.get("created_at"),
            "package_version": meta.get("package_version"), "params": meta.get("params"),
            "metrics": meta.get("metrics"), "data_stats": meta.get("data_stats"),
            "datasets": meta.get("datasets"), "prepare": meta.get("prepare"),
            "hpo_trials": len(meta.get("hpo_trials") or []), "size_bytes": folder_size(spark, info.path),
            "artifacts": artifacts, **({"problem": info.problem} if info.problem else {})}


def folder_size(spark, uri: str) -> int:
    """Bytes under ``uri`` (every file, recursively)."""
    filesystem, path = hadoop_path(spark, uri)
    return int(filesystem.getContentSummary(path).getLength())


@dataclass(frozen=True)
class PrunePlan:
    """What ``versions prune`` keeps (with why) and removes, newest first."""

    keep: dict[str, list[str]]
    remove: list[str]


def prune_plan(dated: Sequence[tuple[str, str]], keep: int, pins: Sequence[str] = (),
               run_date: Optional[dt.date] = None) -> PrunePlan:
    """Decide which complete versions to remove; a pure function of the versions' run dates.

    Kept: the ``keep`` newest versions (ids sort by creation time), every pinned one (what a
    ``--solution-version`` pin needs), and every version the run-date-aware ``latest`` needs: the
    one it resolves to at ``run_date`` (default today, UTC) and at every later run date a version
    was trained for (a version trained ahead of its date). The rest is removed.

    Args:
        dated: ``(run date or "", version)`` of every complete version.
        keep: how many of the newest versions to keep, at least 1.
        pins: version ids to keep whatever their age.
        run_date: the date batch jobs resolve ``latest`` for.

    Raises:
        UsageError: ``keep`` below 1, or a pin that is not a complete version of the solution.
    """
    if keep < 1:
        raise UsageError(f"--keep {keep}: keep at least 1 version")
    versions = sorted(v for _, v in dated)
    unknown = [p for p in pins if p not in versions]
    if unknown:
        raise UsageError(f"--pin {unknown[0]}: not a complete version of the solution; versions: "
                         f"{', '.join(versions) or 'none'}")
    as_of = run_date or dt.datetime.now(dt.timezone.utc).date()
    reasons: dict[str, list[str]] = {}
    for version in versions[-keep:]:
        reasons.setdefault(version, []).append(f"one of the newest {keep}")
    for version in pins:
        reasons.setdefault(version, []).append("pinned")
    later = sorted({d for d, _ in dated if d > as_of.isoformat()})
    for date in [as_of.isoformat()] + later:
        chosen = pick_latest(dated, dt.date.fromisoformat(date))
        if chosen is not None:
            reasons.setdefault(chosen, []).append(f"latest for run date {date}")
    newest_first = sorted(versions, reverse=True)
    return PrunePlan({v: reasons[v] for v in newest_first if v in reasons},
                     [v for v in newest_first if v not in reasons])


def remove_version(spark, solution: str, version: str) -> None:
    """Remove one version: its ``_COMPLETE`` marker first, so no reader opens it half deleted."""
    path = join(solution, VERSIONS_DIR, version)
    delete(spark, join(path, COMPLETE_MARKER))
    delete(spark, path)


def _read_metadata(spark, metadata_path: str) -> dict:
    try:
        metadata = json.loads(read_text(spark, metadata_path))
    except (ValueError, JobError) as exc:
        raise JobError(f"corrupt solution metadata {metadata_path}: {exc}") from exc
    if not isinstance(metadata, dict):
        raise JobError(f"corrupt solution metadata {metadata_path}: not a JSON object")
    return metadata


def file_digests(df: DataFrame) -> dict[str, tuple[int, str]]:
    """``{file name: (rows, digest)}`` of a Parquet-backed frame, in one pass over every value.

    The digest is the sum of the rows' xxhash64 over all columns, so it does not depend on row
    order, and reading it decodes every page: a corrupted page fails here, not later in the job.
    """
    from pyspark.sql import functions as F

    row_hash = F.xxhash64(*[F.col(f"`{c}`") for c in df.columns]).cast("decimal(38,0)")
    rows = (df.groupBy(F.col("_metadata.file_name").alias("file"))
            .agg(F.count(F.lit(1)).alias("rows"), F.sum(row_hash).alias("digest")).collect())
    return {r["file"]: (int(r["rows"]), str(r["digest"] if r["digest"] is not None else 0)) for r in rows}


def read_artifact(spark, version: SolutionVersion, name: str, verify: bool = True) -> DataFrame:
    """Read one artifact of a version after checking its files against the metadata.

    With ``verify`` every file is read once and its rows and content digest compared with those
    recorded when it was written (versions saved before digests were recorded: the total row
    count), so garbage inside a file of the right size is caught here.

    Raises:
        JobError: the artifact is not part of the version, or a file is missing, has another size
            than when it was written, is not readable Parquet, or holds other content than was
            written (the message names the file).
    """
    recorded = version.metadata.get("artifacts", {})
    target = join(version.path, ARTIFACTS_DIR, name)
    if name not in recorded:
        raise JobError(f"solution version {version.version} has no artifact {name!r} ({target}); "
                       f"it has: {', '.join(sorted(recorded)) or 'none'}")
    present = list_files(spark, target) if exists(spark, target) else {}
    for file_name, size in sorted(recorded[name].get("files", {}).items()):
        file_path = join(target, file_name)
        if file_name not in present:
            raise JobError(f"artifact file missing: {file_path} (solution version {version.version})")
        if present[file_name] != size:
            raise JobError(f"corrupt artifact file {file_path}: {present[file_name]} bytes, "
                           f"{size} when written (solution version {version.version})")
    try:
        df = spark.read.parquet(target)
        df.schema  # noqa: B018 - forces the footer read so a bad file fails here
    except Exception as exc:  # Spark raises AnalysisException or a Py4J error for unreadable Parquet
        raise _corrupt(exc, version, target, recorded[name]) from exc
    if verify:
        _verify_content(df, version, name, target, recorded[name])
    return df


def _corrupt(exc: Exception, version: SolutionVersion, target: str, recorded: dict) -> JobError:
    """A one-line JobError naming the artifact file the failure was about (or the artifact)."""
    from batchrec.failures import java_chain, one_line

    text = "\n".join(f"{c}: {m}" for c, m in java_chain(exc)) or str(exc)
    named = next((f for f in sorted(recorded.get("files", {})) if f in text), None)
    where = f"corrupt artifact file {join(target, named)}" if named else f"corrupt artifact {target}"
    return JobError(f"{where}: {one_line(exc)} (solution version {version.version})")


def _verify_content(df: DataFrame, version: SolutionVersion, name: str, target: str, recorded: dict) -> None:
    """Compare every file's rows and digest with the metadata; a decoding failure names its file."""
    try:
        found = file_digests(df)
    except Exception as exc:  # a page that does not decode: Spark names the file it was reading
        raise _corrupt(exc, version, target, recorded) from exc
    content = recorded.get("content")
    if content is None:  # written before digests were recorded: the row count is what we know
        rows = sum(n for n, _ in found.values())
        if "rows" in recorded and rows != recorded["rows"]:
            raise JobError(f"corrupt artifact {target}: {rows} rows, {recorded['rows']} when written "
                           f"(solution version {version.version})")
        return
    for file_name, expected in sorted(content.items()):
        rows, digest = found.get(file_name, (0, "0"))
        if (rows, digest) != (expected["rows"], expected["digest"]):
            raise JobError(f"corrupt artifact file {join(target, file_name)}: its content differs from "
                           f"what was written ({rows} rows, {expected['rows']} when written; content "
                           f"digest differs) (solution version {version.version})")


def load_artifacts(spark, version: SolutionVersion, verify: bool = True) -> dict[str, DataFrame]:
    """Every artifact of ``version`` by name (see :func:`read_artifact`), verified concurrently."""
    return _each_artifact(sorted(version.metadata.get("artifacts", {})),
                          lambda name: read_artifact(spark, version, name, verify))


def _each_artifact(names: Sequence[str], work: Callable[[str], _T]) -> dict[str, _T]:
    """``{name: work(name)}`` with up to :data:`ARTIFACT_THREADS` artifacts at a time.

    Every call finishes before this returns; when several fail, the error of the first name in
    ``names`` order is raised, so the message does not depend on thread timing.
    """
    if len(names) <= 1:
        return {name: work(name) for name in names}
    with ThreadPoolExecutor(max_workers=ARTIFACT_THREADS, thread_name_prefix="artifact") as pool:
        futures = {name: pool.submit(work, name) for name in names}
    return {name: future.result() for name, future in futures.items()}
