"""Export one run of a batch output Delta table to DynamoDB or a DynamoDB-compatible store, losslessly.

:func:`export_run` reads the rows of one run date (optionally one solution) from the Delta table,
groups them into one item per key (``dynamodb_items`` describes the data model), and writes them
from the executors (``mapInArrow``: one boto3 client per partition, ``BatchWriteItem`` of at most
25 puts, retries with backoff and jitter, a write budget divided across the concurrent tasks, see
``dynamodb_writer``). The executors return counts that the driver adds up and reconciles with the
number of items it expected; a sample of items is read back and compared. Anything missing raises
:class:`ExportIncomplete` (a JobError: exit 1) after the summary has been logged. Every item is a
whole-item put on a deterministic key, so running the export again replaces items and completes an
interrupted export; it never duplicates them.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import re
import threading
import time
import uuid
from dataclasses import replace
from typing import Optional

from pyspark.sql import DataFrame, SparkSession, functions as F

from batchrec.columns import (OUT_RANK, OUT_REASON, OUT_RECIPE, OUT_RUN_DATE, OUT_SCORE, OUT_SOLUTION,
                              OUT_SOLUTION_VERSION, OUT_USER_ID)
from batchrec.errors import ConfigError, DataError, JobError, UsageError
from batchrec.sinks import runs
from batchrec.sinks.dynamodb_items import (ENTRIES, GENERATED_AT, KIND, MAX_ITEM_BYTES, MAX_PK_BYTES,
                                           MAX_SK_BYTES, PAGE_DIGITS, PK, RECOMMENDATIONS_VIEW, RELATED_VIEW,
                                           SEGMENT_MEMBERS_VIEW, SK, USER_SEGMENTS_VIEW, VIEWS, ItemTooLarge,
                                           Stamp, build_item, plain_item)
from batchrec.sinks.dynamodb_table import (check_table_name, describe_failure, ensure_table, make_client,
                                           redact_text, redact_url)
from batchrec.sinks.dynamodb_writer import (COUNT_FIELDS, RATE_ITEMS, RATE_WCU, WriterConfig, backoff_seconds,
                                            counts_ddl, write_partition)

log = logging.getLogger(__name__)

SEGMENT_VIEW_OPTIONS = {"members": SEGMENT_MEMBERS_VIEW, "user": USER_SEGMENTS_VIEW}
SHAPE_VIEWS = {runs.RECOMMENDATIONS: (RECOMMENDATIONS_VIEW,), runs.RELATED: (RELATED_VIEW,)}
MAX_BATCH_GET_KEYS = 100
MAX_PAGE_SIZE = 10_000
MIN_ITEM_BYTES = 1024
SECONDS_PER_DAY = 86_400
LISTED_FAILURES = 5
_WRITE_ERROR = re.compile(r"WriteError: (.+)")
# Attribute names an item already uses; the TTL attribute must be another one.
RESERVED_ATTRIBUTES = frozenset({PK, SK, KIND, GENERATED_AT} | {
    name for view in VIEWS.values() for name in view.strings + view.numbers + tuple(a.name for a in view.lists)})


class ExportIncomplete(JobError):
    """Items were not acknowledged or did not read back as written; ``summary`` has the counts."""

    def __init__(self, message: str, summary: dict):
        super().__init__(message)
        self.summary = summary


def check_settings(ds, ttl_days: int) -> None:
    """Reject ``[dynamodb]`` values the export cannot work with (before any I/O).

    Raises:
        ConfigError: a value out of range, naming the key and the expected range.
    """
    problems = []
    if ds.write_rate < 0:
        problems.append(f"write_rate = {ds.write_rate}: expected >= 0 (0 = unlimited)")
    if ds.write_rate_unit not in (RATE_WCU, RATE_ITEMS):
        problems.append(f"write_rate_unit = {ds.write_rate_unit!r}: expected '{RATE_WCU}' or '{RATE_ITEMS}'")
    if ds.writers < 0:
        problems.append(f"writers = {ds.writers}: expected >= 0 (0 = Spark's default parallelism)")
    if ds.retry_deadline_seconds <= 0:
        problems.append(f"retry_deadline_seconds = {ds.retry_deadline_seconds}: expected > 0")
    if ds.backoff_base_seconds <= 0 or ds.backoff_max_seconds < ds.backoff_base_seconds:
        problems.append("backoff_base_seconds and backoff_max_seconds: expected 0 < base <= max")
    if not MIN_ITEM_BYTES <= ds.max_item_bytes <= MAX_ITEM_BYTES:
        problems.append(f"max_item_bytes = {ds.max_item_bytes}: expected {MIN_ITEM_BYTES} to {MAX_ITEM_BYTES}")
    if not 1 <= ds.segment_page_size <= MAX_PAGE_SIZE:
        problems.append(f"segment_page_size = {ds.segment_page_size}: expected 1 to {MAX_PAGE_SIZE}")
    unknown = [v for v in ds.segment_views if v not in SEGMENT_VIEW_OPTIONS]
    if unknown or not ds.segment_views:
        problems.append(f"segment_views = {list(ds.segment_views)}: expected one or both of "
                        f"{sorted(SEGMENT_VIEW_OPTIONS)}")
    if ds.verify_sample < 0:
        problems.append(f"verify_sample = {ds.verify_sample}: expected >= 0")
    if ttl_days < 0:
        problems.append(f"ttl_days = {ttl_days}: expected >= 0 (0 = no TTL)")
    if ttl_days and (not ds.ttl_attribute or ds.ttl_attribute in RESERVED_ATTRIBUTES):
        problems.append(f"ttl_attribute = {ds.ttl_attribute!r}: expected a name the items do not use "
                        f"(not one of {', '.join(sorted(RESERVED_ATTRIBUTES))})")
    if ds.progress_seconds < 0 or ds.table_wait_seconds <= 0:
        problems.append("progress_seconds >= 0 and table_wait_seconds > 0 expected")
    if problems:
        raise ConfigError("[dynamodb] " + "; ".join(problems))


def _escaped(column: str):
    """A key component: '%' and '#' percent-encoded (``dynamodb_items.key_part`` in Spark)."""
    return F.replace(F.replace(F.col(column).cast("string"), F.lit("%"), F.lit("%25")), F.lit("#"), F.lit("%23"))


def _run_fields():
    return [F.max(OUT_SOLUTION_VERSION).alias(OUT_SOLUTION_VERSION), F.max(OUT_RECIPE).alias(OUT_RECIPE),
            F.max(OUT_RUN_DATE).cast("string").alias(OUT_RUN_DATE)]


def view_frame(rows: DataFrame, view: str, page_size: int = 100) -> DataFrame:
    """One row per DynamoDB item of ``view``: ``pk``, ``sk``, the scalar attributes and ``entries``.

    Args:
        rows: one run's rows of the matching shape (``runs.read_run``).
        view: one of ``dynamodb_items.VIEWS``.
        page_size: members per page (``segment_members`` only).
    """
    run = (OUT_SOLUTION, OUT_SOLUTION_VERSION, OUT_RECIPE, OUT_RUN_DATE)
    if view in (RECOMMENDATIONS_VIEW, RELATED_VIEW):
        entity, member = ((OUT_USER_ID, "item_id") if view == RECOMMENDATIONS_VIEW
                          else ("item_id", runs.OUT_RELATED_ITEM_ID))
        pk_prefix, sk_prefix = ("U#", "RECS#") if view == RECOMMENDATIONS_VIEW else ("I#", "RELATED#")
        grouped = rows.groupBy(OUT_SOLUTION, entity).agg(
            *_run_fields(),
            F.collect_list(F.struct(OUT_RANK, member, OUT_SCORE, OUT_REASON)).alias(ENTRIES))
        return grouped.select(F.concat(F.lit(pk_prefix), _escaped(entity)).alias(PK),
                              F.concat(F.lit(sk_prefix), _escaped(OUT_SOLUTION)).alias(SK),
                              entity, *run, ENTRIES)
    if view == USER_SEGMENTS_VIEW:
        grouped = rows.groupBy(OUT_SOLUTION, OUT_USER_ID).agg(
            *_run_fields(),
            F.collect_list(F.struct(runs.OUT_SEGMENT_ID, OUT_RANK, OUT_SCORE)).alias(ENTRIES))
        return grouped.select(F.concat(F.lit("U#"), _escaped(OUT_USER_ID)).alias(PK),
                              F.concat(F.lit("SEGS#"), _escaped(OUT_SOLUTION)).alias(SK),
                              OUT_USER_ID, *run, ENTRIES)
    if view == SEGMENT_MEMBERS_VIEW:
        segment = (OUT_SOLUTION, runs.OUT_SEGMENT_ID)
        paged = rows.withColumn("page", F.floor((F.col(OUT_RANK) - 1) / page_size).cast("int"))
        stats = paged.groupBy(*segment).agg(F.count(F.lit(1)).alias("members"),
                                            (F.max("page") + 1).alias("pages"))
        pages = paged.groupBy(*segment, "page").agg(
            *_run_fields(), F.max(runs.OUT_QUERY).alias(runs.OUT_QUERY),
            F.min(OUT_RANK).alias("first_rank"),
            F.collect_list(F.struct(OUT_RANK, OUT_USER_ID, OUT_SCORE)).alias(ENTRIES))
        joined = pages.join(stats, list(segment))
        return joined.select(
            F.concat(F.lit("SEG#"), _escaped(OUT_SOLUTION), F.lit("#"), _escaped(runs.OUT_SEGMENT_ID)).alias(PK),
            F.concat(F.lit("P#"), F.lpad(F.col("page").cast("string"), PAGE_DIGITS, "0")).alias(SK),
            runs.OUT_SEGMENT_ID, runs.OUT_QUERY, *run, "page", "first_rank", "members", "pages", ENTRIES)
    raise ValueError(f"unknown view {view!r}")


def views_for(shape: str, segment_views=("members", "user")) -> tuple[str, ...]:
    """The item views one shape is exported as."""
    if shape == runs.SEGMENTS:
        return tuple(SEGMENT_VIEW_OPTIONS[v] for v in segment_views)
    return SHAPE_VIEWS[shape]


def task_slots(spark: SparkSession) -> int:
    """How many tasks can run at once: N of ``local[N]``, else Spark's default parallelism."""
    sc = spark.sparkContext
    match = re.match(r"local\[(\d+|\*)", sc.master)
    if match:
        return (os.cpu_count() or 1) if match.group(1) == "*" else int(match.group(1))
    if sc.master == "local":
        return 1
    return max(1, sc.defaultParallelism)


def check_key_sizes(frame: DataFrame, view: str, path: str) -> int:
    """Count the view's items; keys over DynamoDB's limits are a DataError naming an example."""
    row = frame.agg(F.count(F.lit(1)).alias("n"), F.max(F.octet_length(PK)).alias("pk"),
                    F.max(F.octet_length(SK)).alias("sk")).first()
    for column, limit in ((PK, MAX_PK_BYTES), (SK, MAX_SK_BYTES)):
        if (row[column] or 0) > limit:
            example = frame.where(F.octet_length(column) > limit).select(column).first()[0]
            raise DataError(f"--input {path}: {view} key {column} {example[:80]!r}... is {row[column]} bytes; "
                            f"DynamoDB allows {limit} (shorten the IDs or the solution name)")
    return int(row["n"])


class Progress(threading.Thread):
    """Logs the export's task progress every ``interval`` seconds while a Spark job group runs."""

    def __init__(self, spark: SparkSession, group: str, label: str, expected: int, interval: float):
        super().__init__(daemon=True)
        self.tracker = spark.sparkContext.statusTracker()
        self.group, self.label, self.expected, self.interval = group, label, expected, interval
        self.stopped = threading.Event()
        self.started = time.monotonic()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            done = total = 0
            for job in self.tracker.getJobIdsForGroup(self.group):
                info = self.tracker.getJobInfo(job)
                for stage in (info.stageIds if info else ()):
                    stage_info = self.tracker.getStageInfo(stage)
                    if stage_info:
                        done += stage_info.numCompletedTasks
                        total += stage_info.numTasks
            log.info("export progress: %s: %d of %d tasks done, %d items to write, %.0f s elapsed",
                     self.label, done, total, self.expected, time.monotonic() - self.started)

    def stop(self) -> None:
        self.stopped.set()


def write_view(spark: SparkSession, frame: DataFrame, config: WriterConfig, writers: int, expected: int,
               progress_seconds: float) -> dict:
    """Run the writers over ``frame`` (``writers`` tasks) and return the summed counts."""
    sc = spark.sparkContext
    group = f"batchrec-dynamodb-{uuid.uuid4().hex[:8]}"
    sc.setJobGroup(group, f"export {config.view.name} to DynamoDB table {config.table}")
    progress = Progress(spark, group, f"{config.table}/{config.view.name}", expected, progress_seconds)
    if progress_seconds:
        progress.start()
    try:
        rows = (frame.repartition(writers)
                .mapInArrow(functools.partial(write_partition, config=config), counts_ddl()).collect())
    except Exception as exc:
        match = _WRITE_ERROR.search(str(exc))
        if match:
            raise JobError(redact_text(match.group(1).strip())) from exc
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise JobError(f"writing to DynamoDB table {config.table} failed: {redact_text(first.strip())}") from exc
    finally:
        progress.stop()
        sc.setLocalProperty("spark.jobGroup.id", None)
        sc.setLocalProperty("spark.job.description", None)
    return {name: sum(int(r[name]) for r in rows) for name in COUNT_FIELDS}


def read_back(client, keys_and_items: list[tuple[dict, dict]], table: str, deadline_seconds: float,
              base: float, cap: float) -> dict:
    """Fetch the given keys with strongly consistent BatchGetItem calls; returns {(pk, sk): item}."""
    found: dict = {}
    keys = [key for key, _ in keys_and_items]
    for start in range(0, len(keys), MAX_BATCH_GET_KEYS):
        request = {table: {"Keys": keys[start:start + MAX_BATCH_GET_KEYS], "ConsistentRead": True}}
        deadline = time.monotonic() + deadline_seconds
        attempt = 0
        while request:
            try:
                response = client.batch_get_item(RequestItems=request)
            except Exception as exc:  # noqa: BLE001 - any failure of the read-back is reported as such
                code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
                if "Throughput" not in code and "Throttl" not in code:
                    raise JobError(f"reading back items from table {table}: {describe_failure(exc)}") from exc
                response = {"UnprocessedKeys": request}
            for item in response.get("Responses", {}).get(table, []):
                found[(item[PK]["S"], item[SK]["S"])] = item
            request = response.get("UnprocessedKeys") or {}
            if request:
                pause = backoff_seconds(attempt, base, cap)
                if time.monotonic() + pause > deadline:
                    raise JobError(f"reading back items from table {table}: still throttled after "
                                   f"{deadline_seconds:.0f} s")
                attempt += 1
                time.sleep(pause)
    return found


def verify_sample(client, frame: DataFrame, config: WriterConfig, sample: int) -> tuple[int, list[str]]:
    """Read back up to ``sample`` items (a fixed hash order of the keys) and compare them with what was written.

    Returns:
        ``(items checked, descriptions of the items that are missing or differ)``.
    """
    if sample <= 0:
        return 0, []
    rows = frame.orderBy(F.xxhash64(PK, SK), PK, SK).limit(sample).collect()
    expected = []
    for row in rows:
        try:
            built = build_item(row.asDict(recursive=True), config.view, config.stamp, config.max_item_bytes)
        except ItemTooLarge:
            continue  # counted as oversized by the writer
        expected.append(({PK: built.item[PK], SK: built.item[SK]}, built.item))
    found = read_back(client, expected, config.table, config.retry_deadline_seconds,
                      config.backoff_base_seconds, config.backoff_max_seconds)
    failures = []
    for key, item in expected:
        pk, sk = key[PK]["S"], key[SK]["S"]
        got = found.get((pk, sk))
        if got is None:
            failures.append(f"{pk}/{sk} is missing")
        elif plain_item(got) != plain_item(item):
            diff = sorted(k for k in set(item) | set(got) if plain_item({k: item[k]} if k in item else {})
                          != plain_item({k: got[k]} if k in got else {}))
            failures.append(f"{pk}/{sk} differs in {', '.join(diff)}")
    return len(expected), failures


def export_run(spark: SparkSession, delta_path: str, run_date: dt.date, solution: Optional[str], settings,
               table: str, endpoint_url: Optional[str] = None, region: Optional[str] = None, *,
               shape: Optional[str] = None, ttl_days: Optional[int] = None, create_table: bool = True,
               allow_older_run: bool = False, now: Optional[dt.datetime] = None) -> dict:
    """Export the rows of ``run_date`` (and ``solution``, when given) of a batch output table to ``table``.

    Args:
        spark: the session.
        delta_path: the batch job's Delta output table (recommendations, related items or segments).
        run_date: the run to export; ``solution`` narrows it to one solution.
        settings: :class:`batchrec.config.Settings`; ``settings.dynamodb`` holds the write budget,
            retries, size guard and TTL defaults.
        table: the DynamoDB table; created (on-demand capacity, TTL on) unless ``create_table`` is off.
        endpoint_url, region: override ``[dynamodb]`` and boto3's chain (a compatible store's URL).
        shape: ``recommendations``, ``related`` or ``segments``; detected from the columns when None.
        ttl_days: days until the items expire; None = ``[dynamodb] ttl_days``; 0 = no TTL.
        allow_older_run: export even when the table holds a later run of the same solution (the
            items of that later run would be overwritten by older ones).
        now: the export time written as ``generated_at`` and the TTL base (tests).

    Returns:
        The summary: counts (``items``, ``attempted``, ``acknowledged``, ``missing``, ``retries``,
        ``throttles``, ``trimmed_items``, ``trimmed_entries``, ...), ``verified``, ``seconds``,
        ``items_per_second`` and what was exported where.

    Raises:
        UsageError: bad table name, no region, or a later run exists (without ``allow_older_run``).
        ConfigError: ``[dynamodb]`` values out of range.
        DataError: no Delta table, unknown columns, no rows for the run, null or too long keys.
        JobError: endpoint, table or write failures.
        ExportIncomplete: items not acknowledged or not read back as written (after logging the summary).
    """
    started = time.perf_counter()
    ds = settings.dynamodb
    ttl_days = ds.ttl_days if ttl_days is None else ttl_days
    check_table_name(table)
    check_settings(ds, ttl_days)
    endpoint = endpoint_url or ds.endpoint_url or None
    client = make_client(endpoint, region or ds.region or None, ds.connect_timeout_seconds,
                         ds.read_timeout_seconds)
    region_name = client.meta.region_name

    rows, found_shape, stats = runs.read_run(spark, delta_path, run_date, solution, shape)
    if stats.later and not allow_older_run:
        raise UsageError(
            f"--input {delta_path} has later runs of the same solutions ("
            + ", ".join(f"{s} {d}" for s, d in stats.later)
            + f"); exporting {run_date.isoformat()} would overwrite their items in {table}. "
              f"Pass --allow-older-run to do it anyway")

    admin = ensure_table(client, table, create=create_table, ttl_attribute=ds.ttl_attribute if ttl_days else None,
                         wait_seconds=ds.table_wait_seconds, endpoint=endpoint)
    now = now or dt.datetime.now(dt.timezone.utc)
    stamp = Stamp(generated_at=now.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                  ttl_attribute=ds.ttl_attribute,
                  ttl_epoch=int(now.timestamp()) + ttl_days * SECONDS_PER_DAY if ttl_days else 0)
    slots = task_slots(spark)
    writers = ds.writers or spark.sparkContext.defaultParallelism
    base_config = WriterConfig(
        table=table, endpoint_url=endpoint, region=region_name, view=VIEWS[RECOMMENDATIONS_VIEW], stamp=stamp,
        # The budget is global: each of the tasks that can run at once gets an equal share.
        rate_per_task=ds.write_rate / min(writers, slots), rate_unit=ds.write_rate_unit,
        retry_deadline_seconds=ds.retry_deadline_seconds, backoff_base_seconds=ds.backoff_base_seconds,
        backoff_max_seconds=ds.backoff_max_seconds, max_item_bytes=ds.max_item_bytes,
        connect_timeout_seconds=ds.connect_timeout_seconds, read_timeout_seconds=ds.read_timeout_seconds,
        progress_seconds=ds.progress_seconds)

    totals = {name: 0 for name in COUNT_FIELDS}
    expected_items = verified = 0
    failures: list[str] = []
    write_seconds = 0.0
    views = views_for(found_shape.name, ds.segment_views)
    for view in views:
        frame = view_frame(rows, view, ds.segment_page_size).persist()
        try:
            expected = check_key_sizes(frame, view, delta_path)
            config = replace(base_config, view=VIEWS[view])
            log.info("exporting %d %s items to %s (%d writer tasks, %.0f %s/s per task)", expected, view, table,
                     writers, config.rate_per_task, ds.write_rate_unit)
            write_started = time.perf_counter()
            counts = write_view(spark, frame, config, writers, expected, ds.progress_seconds)
            write_seconds += time.perf_counter() - write_started
            checked, bad = verify_sample(client, frame, config, ds.verify_sample)
        finally:
            frame.unpersist()
        expected_items += expected
        verified += checked
        failures += bad
        for name in COUNT_FIELDS:
            totals[name] += counts[name]

    seconds = time.perf_counter() - started
    missing = expected_items - totals["acknowledged"]
    summary = {
        "command": "export-dynamodb", "run_date": run_date.isoformat(), "solutions": list(stats.solutions),
        "shape": found_shape.name, "views": list(views), "input": delta_path, "table": table,
        "endpoint_url": redact_url(endpoint) or "", "region": region_name or "", "rows": stats.rows,
        "items": expected_items, **{k: v for k, v in totals.items() if k != "items"},
        "missing": missing, "verified": verified, "verify_failures": len(failures),
        "table_created": admin["table_created"], "ttl": admin["ttl"], "ttl_attribute": ds.ttl_attribute if ttl_days else "",
        "ttl_epoch": stamp.ttl_epoch, "generated_at": stamp.generated_at,
        "seconds": round(seconds, 2), "write_seconds": round(write_seconds, 2),
        "items_per_second": round(totals["acknowledged"] / write_seconds, 1) if write_seconds else 0.0,
    }
    log.info("summary %s", " ".join(f"{k}={v}" for k, v in summary.items()))
    if totals["trimmed_items"]:
        log.warning("%d items were over %d bytes: %d lowest-ranked list entries were left out",
                    totals["trimmed_items"], ds.max_item_bytes, totals["trimmed_entries"])
    check_complete(summary, totals["items"], failures, ds.retry_deadline_seconds)
    return summary


def check_complete(summary: dict, items_written: int, failures: list[str], deadline: float) -> None:
    """Reconcile the summed task counts with the expected items and the read-back sample.

    Raises:
        ExportIncomplete: items not acknowledged (or tasks that saw other items than expected), or
        sampled items missing or different; the message says how many and why.
    """
    problems = []
    if summary["missing"] or items_written != summary["items"]:
        problems.append(f"{summary['missing']} of {summary['items']} items were not acknowledged "
                        f"({summary['abandoned']} given up after the {deadline:g} s retry deadline, "
                        f"{summary['oversized']} too large for DynamoDB even without list entries)")
    if failures:
        problems.append(f"{len(failures)} of {summary['verified']} items read back differ from what was written: "
                        + "; ".join(failures[:LISTED_FAILURES]))
    if problems:
        raise ExportIncomplete(f"export of {summary['input']} run {summary['run_date']} to table {summary['table']} "
                               f"is incomplete: " + "; ".join(problems)
                               + ". Run the export again: it replaces items, never duplicates them", summary)
