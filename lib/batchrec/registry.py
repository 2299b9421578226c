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
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Optional

from pyspark.sql import DataFrame

import batchrec
from batchrec import catalogue
from batchrec.errors import JobError
from batchrec.fs import delete, exists, join, list_dirs, list_files, read_text, write_text

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
    artifacts = {}
    for name in sorted(model.artifacts):
        df = model.artifacts[name]
        _check_schema(name, df)
        target = join(path, ARTIFACTS_DIR, name)
        (df.coalesce(1) if name in _SINGLE_FILE else df).write.mode("errorifexists").parquet(target)
        written = spark.read.parquet(target)
        content = file_digests(written)
        artifacts[name] = {
            "schema": written.schema.simpleString(),
            "rows": sum(rows for rows, _ in content.values()),
            "files": {f: size for f, size in list_files(spark, target).items() if f.endswith(".parquet")},
            "content": {f: {"rows": rows, "digest": digest} for f, (rows, digest) in content.items()},
        }
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
            # The marker goes first, so a reader never opens a half-deleted version.
            delete(spark, join(solution, VERSIONS_DIR, other, COMPLETE_MARKER))
            delete(spark, join(solution, VERSIONS_DIR, other))


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
    eligible = [(d, v) for d, v in dated if d <= run_date.isoformat()]
    if not eligible:
        raise JobError(f"no solution version in {solution} was trained for a run date on or before "
                       f"{run_date.isoformat()}; versions: "
                       f"{', '.join(f'{v} ({d})' for d, v in dated)}")
    return max(eligible)[1]


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
    """Every artifact of ``version`` by name (see :func:`read_artifact`)."""
    return {name: read_artifact(spark, version, name, verify)
            for name in sorted(version.metadata.get("artifacts", {}))}
