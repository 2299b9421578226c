"""The batch-job runner shared by ``recommend``, ``rank`` (and ``related``, ``segment``).

Every batch job is the same sequence; a job only declares what differs (:class:`BatchJob`):

1. resolve every location the job reads and writes (``batchrec.locations``): an output that would
   overwrite an input, the solution or another output is refused before anything is written, and
   the solution is named by its one canonical, qualified URI in every output row;
2. open the solution version trained for the run date (``registry.load_version``) and check that
   its recipe can answer the job's question (``catalogue``), before reading any data;
3. read the requests: a Personalize JSON-lines input file, or every user/item the model knows;
   a file without a usable line stops the job before anything is written;
4. eligibility: the pairs each requester has already seen (``batchrec.batch.eligibility``);
5. score: the job's ``score`` function, which calls the recipe's scorer;
6. write: the result is computed once and written through the sinks: the Delta table (one
   atomic commit per run date and solution), with ``--jsonl`` Personalize's JSON lines (the result
   is cached for them, so it is scored once), with
   ``--current`` the committed run merged into a table of each key's latest list
   (``batchrec.sinks.current``), and with ``--dynamodb-table`` the committed run exported to a
   DynamoDB-compatible store;
7. count (from the committed rows) and return the run summary (the CLI prints it and writes
   ``--summary-file``).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from pyspark.sql import DataFrame, functions as F

from batchrec import catalogue, logs, registry
from batchrec.batch import eligibility, inputs
from batchrec.batch.shapes import REASON, OutputShape
from batchrec.columns import REASON_POPULAR
from batchrec.errors import DataError, UsageError
from batchrec.filters.compile import FILTER_VALUES
from batchrec.locations import KIND_DELTA, KIND_FOLDER, KIND_SOLUTION, Location, check_locations
from batchrec.scoring.model import Model
from batchrec.sinks import delta, jsonl as jsonl_sink, runs
from batchrec.spark import scoped_conf

log = logging.getLogger(__name__)

ARROW_BATCH_CONF = "spark.sql.execution.arrow.maxRecordsPerBatch"


@dataclass(frozen=True)
class JobContext:
    """What a job's ``score`` function receives."""

    spark: Any
    run_date: dt.date
    model: Model
    version: registry.SolutionVersion
    requests: DataFrame  # usable request rows (``batchrec.batch.inputs`` columns)
    seen: Optional[DataFrame]  # [USER_ID, ITEM_ID] already seen, or None
    items: Optional[DataFrame] = None  # fresher items (light read), when --items is given
    settings: Any = None  # the job's settings section
    items_source: Optional[str] = None  # the items dataset: --items, else the version's
    read_items: Optional[Callable[[], DataFrame]] = None
    item_filter: Any = None  # the compiled --filter (batchrec.filters.Eligibility), or None
    filter_settings: Any = None  # the [filters] section when item_filter is set

    def item_attributes(self) -> DataFrame:
        """The whole items dataset (every attribute column), read when a job asks for it.

        Raises:
            DataError: neither ``--items`` nor the solution version names an items dataset.
        """
        if self.read_items is None:
            raise DataError("this job needs the items dataset: pass --items (the solution version "
                            "records none)")
        return self.read_items()


@dataclass(frozen=True)
class BatchJob:
    """The declaration of one batch job.

    Attributes:
        command: the CLI command, for the summary.
        capability: what the model must answer (``catalogue.ITEMS_FOR_USER``, ...).
        what: the question in words, for the error when a model cannot answer it.
        request_kind: the input lines' kind (``batchrec.batch.inputs.KIND_*``).
        request_key: the column joining a request line to its results (``USER_ID`` when requests
            with the same user share one answer, ``_position`` when every line is its own request).
        shape: the output shape (Delta columns, JSON-lines field).
        score: ``score(context) -> DataFrame`` of ``shape``'s result columns plus ``request_key``.
        all_requests: the requests when ``--input`` is absent (from the model), or None when an input
            file is required.
        uses_seen: whether the job excludes already-seen pairs.
        count_label: the summary's name for the number of requests ("users", "requests", ...).
        prepare_requests: ``f(spark, requests) -> requests`` run on the read requests (adds the
            request key, marks lines the job cannot serve with an ``error``).
        filter_context: what a ``--filter`` may say in this job (``batchrec.filters.FilterContext``);
            None: the job takes no filter.
        filter_in_scorer: the recipe's scorer applies the filter inside its kernel (it must declare
            ``APPLIES_FILTERS``); else the job's ``score`` applies ``context.item_filter`` itself.
        filter_candidates: ``f(model, requests) -> [ID]``, every ID the job may return (default:
            the model's items and stored lists).
    """

    command: str
    capability: str
    what: str
    request_kind: str
    request_key: str
    shape: OutputShape
    score: Callable[[JobContext], DataFrame]
    all_requests: Optional[Callable[[Model], DataFrame]] = None
    uses_seen: bool = True
    count_label: str = "requests"
    summary_extra: dict = field(default_factory=dict)
    prepare_requests: Optional[Callable[[Any, DataFrame], DataFrame]] = None
    filter_context: Any = None
    filter_in_scorer: bool = False
    filter_candidates: Optional[Callable[[Model, DataFrame], DataFrame]] = None


def run_batch_job(spark, job: BatchJob, settings, run_date: dt.date, *, solution: str,
                  version: str = registry.LATEST, output: str, jsonl: Optional[str] = None,
                  input_path: Optional[str] = None, interactions: Optional[str] = None,
                  items: Optional[str] = None, data_format: str = "auto", job_settings: Any = None,
                  exclude_seen: bool = True, seen_event_types=(), users_per_batch: int = 2048,
                  dynamodb_table: Optional[str] = None, current: Optional[str] = None,
                  current_delete_absent: bool = False, users: Optional[str] = None,
                  filter_expression: Optional[str] = None, filter_values: Optional[str] = None,
                  filter_name: Optional[str] = None) -> dict:
    """Run ``job`` for ``run_date`` (the steps in the module docstring); returns the run summary.

    The filter (``--filter``, ``--filter-values``, ``--filter-name``) is checked against the job's
    ``filter_context`` before anything is read, compiled after the requests are read (reading only
    the datasets it uses: ``--items``/``--interactions``/``--users`` or those recorded with the
    version) and applied before any scoring; a line whose ``"filterValues"`` cannot be used gets an
    ``error``.

    Raises:
        UsageError: the model's recipe cannot answer the job's question, or cannot apply a filter;
            a filter's field the datasets lack.
        JobError: unknown solution or version, missing or corrupt artifact files.
        DataError: unreadable input or datasets, or an input file without a single usable line.
    """
    started = time.perf_counter()
    if job.filter_context is None and (filter_expression or filter_name or filter_values):
        raise UsageError(f"{job.command} takes no --filter")
    job_filter = (None if job.filter_context is None else eligibility.job_filter_options(
        settings.filters, job.filter_context, filter_expression, filter_values, filter_name, input_path))
    if current_delete_absent and not current:
        raise UsageError("--current-delete-absent needs --current: the table whose absent keys it deletes")
    solution = check_job_locations(spark, solution=solution, output=output, jsonl=jsonl,
                                   input_path=input_path, interactions=interactions, items=items,
                                   users=users, current=current)
    # Arrow batches are the scoring blocks' upper bound; the scorers also slice them themselves.
    with scoped_conf(spark, {ARROW_BATCH_CONF: users_per_batch}):
        version_ = registry.load_version(spark, solution, version, run_date=run_date)
        spec = catalogue.require(version_.recipe, job.capability, job.what)
        if (job_filter is not None and job.filter_in_scorer
                and not getattr(spec.scoring_module(), "APPLIES_FILTERS", False)):
            raise UsageError(f"recipe {spec.name} cannot apply --filter in {job.command} yet; filters "
                             "work with user-personalization, popularity-count and trending-now")
        model = Model(spec, registry.load_artifacts(spark, version_), version_.metadata.get("params", {}))
        recorded = version_.metadata.get("datasets") or {}
        delimiter = settings.validation.csv_delimiter

        requests, errors = _requests(spark, job, model, input_path)
        carrying = eligibility.filter_values_lines(requests) if input_path else 0  # synthetic: none
        unapplied = 0 if job_filter is not None else unapplied_filter_values(requests, carrying)
        if jsonl and input_path:  # two input files named alike would share an .out file: refuse now
            jsonl_sink.output_names(requests)
        seen = None
        if job.uses_seen and exclude_seen:
            fresher = interactions or (None if model.has(catalogue.SEEN_ITEMS) else recorded.get("interactions"))
            fresh_frame = (eligibility.light_interactions(
                spark, fresher, recorded, _format(data_format, interactions, recorded), delimiter)
                if fresher else None)
            seen = eligibility.seen_pairs(model.artifacts, fresh_frame, seen_event_types)
        fresh_items = (eligibility.light_items(spark, items, recorded, data_format, delimiter)
                       if items else None)
        items_source = items or recorded.get("items")
        read_items = (None if not items_source else lambda: eligibility.items_dataset(
            spark, items_source, recorded, _format(data_format, items, recorded), delimiter))
        item_filter = None
        if job_filter is not None:
            interactions_sources = [p for p in (recorded.get("interactions"), interactions) if p]
            users_source = users or recorded.get("users")
            read = {"items": read_items,
                    "interactions": (None if not interactions_sources else lambda: (
                        eligibility.filter_interactions(spark, interactions_sources, recorded,
                                                        _format(data_format, interactions, recorded),
                                                        delimiter))),
                    "users": (None if not users_source else lambda: eligibility.users_dataset(
                        spark, users_source, recorded, _format(data_format, users, recorded), delimiter))}
            candidates = (job.filter_candidates(model, requests) if job.filter_candidates is not None
                          else eligibility.candidate_items(model.artifacts))
            item_filter, marked = eligibility.apply_job_filter(
                spark, job_filter, requests, job.request_key, carrying > 0, read, candidates)
            if marked is not requests:
                marked = marked.persist()
                requests.unpersist()
                requests = marked
                # Lines the filter could not use get an error: check again that one is usable.
                errors = (check_requests(requests, input_path) if input_path
                          else requests.where(F.col(inputs.ERROR).isNotNull()).count())
        usable = requests.where(F.col(inputs.ERROR).isNull())
        context = JobContext(spark, run_date, model, version_, usable, seen, fresh_items, job_settings,
                             items_source, read_items, item_filter,
                             job_filter.settings if job_filter is not None else None)
        with logs.stage(log, "score", command=job.command, recipe=spec.name):
            result = job.score(context)
            if jsonl:  # the JSON lines read the rows again: cache them rather than score twice
                result = result.persist()
        try:
            summary = _write(spark, job, version_, run_date, result, requests, output, jsonl,
                             with_scores=spec.can(catalogue.SCORED) and job.shape.jsonl_scores)
            summary["filter_values_not_applied"] = unapplied
            summary[job.count_label] = usable.select(job.request_key).distinct().count()
        finally:
            result.unpersist()
            requests.unpersist()
        if current:
            summary["current"] = _update_current(spark, output, current, run_date, version_.solution,
                                                 summary["rows"], current_delete_absent)
        if dynamodb_table:
            from batchrec.sinks import dynamodb

            with logs.stage(log, "export_dynamodb", table=dynamodb_table):
                # From the committed Delta rows: the store gets exactly what the table holds.
                exported = dynamodb.export_run(spark, output, run_date, version_.solution, settings,
                                               dynamodb_table)
            summary["dynamodb"] = {k: exported.get(k) for k in ("table", "items", "acknowledged",
                                                                 "retries", "throttles", "seconds")}
    return {"command": job.command, "run_date": run_date.isoformat(), "solution": version_.solution,
            "version": version_.version, "recipe": version_.recipe, **summary, "errors": errors,
            "seconds": round(time.perf_counter() - started, 1), "output": output, "jsonl": jsonl,
            **job.summary_extra,
            **({"filter": job_filter.text if job_filter is not None else None}
               if job.filter_context is not None else {}),
            "warnings": _warnings(unapplied)}


def check_job_locations(spark, *, solution: str, output: str, jsonl: Optional[str] = None,
                        input_path: Optional[str] = None, interactions: Optional[str] = None,
                        items: Optional[str] = None, users: Optional[str] = None,
                        current: Optional[str] = None) -> str:
    """Refuse outputs that would overwrite an input, the solution or each other (UsageError, exit 2);
    returns the solution's canonical URI, the key its rows are written under."""
    reads = [Location("--solution", solution, KIND_SOLUTION)]
    reads += [Location(option, path) for option, path in
              (("--input", input_path), ("--interactions", interactions), ("--items", items),
               ("--users", users)) if path]
    writes = [Location("--output", output, KIND_DELTA)]
    writes += [Location("--jsonl", jsonl, KIND_FOLDER)] if jsonl else []
    writes += [Location("--current", current, KIND_DELTA)] if current else []
    return check_locations(spark, reads, writes)["--solution"]


def _update_current(spark, output: str, current: str, run_date: dt.date, solution: str, rows: int,
                    delete_absent: bool = False) -> dict:
    """Merge the run just committed to ``output`` into the ``current`` table (its counts); a run
    without rows changes nothing there (its keys keep their latest lists). ``delete_absent``: also
    delete the solution's keys this run does not have."""
    if not rows:
        log.warning("current table %s left as it was: run %s of %s has no rows", current,
                    run_date.isoformat(), solution)
        return {"rows": 0, "inserted": 0, "updated": 0, "deleted": 0}
    from batchrec.sinks import current as current_sink

    with logs.stage(log, "update_current", path=current):
        merged = current_sink.update_current(spark, output, current, run_date, solution,
                                             delete_absent=delete_absent)
    return {k: merged[k] for k in ("rows", "inserted", "updated", "deleted")}


def _format(data_format: str, given: Optional[str], recorded: dict) -> str:
    """The format of the interactions read: as given, else as recorded when the path is recorded."""
    if data_format != "auto" or given:
        return data_format
    return recorded.get("format") or "auto"


def _requests(spark, job: BatchJob, model: Model, input_path: Optional[str]) -> tuple[DataFrame, int]:
    if input_path:
        requests = inputs.read_requests(spark, input_path, job.request_kind)
        if job.prepare_requests is not None:
            requests = job.prepare_requests(spark, requests)
        requests = requests.persist()
        return requests, check_requests(requests, input_path)
    if job.all_requests is None:
        raise DataError(f"{job.command} needs --input: a JSON-lines file of requests")
    return job.all_requests(model).persist(), 0


def check_requests(requests: DataFrame, input_path: str) -> int:
    """Count the bad lines; a file with no usable line at all is a DataError and nothing is written."""
    row = requests.agg(F.count(F.lit(1)).alias("n"),
                       F.count(F.col(inputs.ERROR)).alias("bad"),
                       F.first(F.col(inputs.ERROR), ignorenulls=True).alias("example")).first()
    if not row["n"]:
        raise DataError(f"--input {input_path}: no request line in it (empty or blank); "
                        f"nothing was written")
    if row["bad"] == row["n"]:
        raise DataError(f"--input {input_path}: none of its {row['n']} lines is usable; "
                        f"first problem: {row['example']}; nothing was written")
    if row["bad"]:
        log.warning("%d of %d input lines are unusable (first: %s); they get an error line",
                    row["bad"], row["n"], row["example"])
    return int(row["bad"] or 0)


def unapplied_filter_values(requests: DataFrame, found: Optional[int] = None) -> int:
    """Count (and warn about) the usable request lines that carry ``"filterValues"``.

    Without ``--filter`` such values cannot be applied: the lines are served unfiltered, and the
    run says so (log and summary) instead of dropping the values silently. ``found``: the count,
    when already known.
    """
    if found is None:
        found = eligibility.filter_values_lines(requests)
    if found:
        log.warning("%s", _warnings(found)[0])
    return found


def _warnings(unapplied: int) -> list[str]:
    if not unapplied:
        return []
    return [f"{unapplied} input line(s) carry \"{FILTER_VALUES}\", which only a --filter "
            "applies (no filter is set): their results are unfiltered"]


def _write(spark, job: BatchJob, version_, run_date, result: DataFrame, requests: DataFrame,
           output: str, jsonl: Optional[str], with_scores: bool) -> dict:
    shape = job.shape
    with logs.stage(log, "write_delta", path=output) as info:
        rows = delta.write_run(result.select(*(c for c, _, _ in shape.columns)), output, run_date,
                               version_.solution, version_.version, version_.recipe, shape)
        info["rows"] = rows
    files: list = []
    # Counted from the committed run, not from the result: a Delta-only run is not cached in full.
    out = {source: name for source, name, _ in shape.columns}
    committed = (spark.read.format("delta").load(output)
                 .where(runs.run_filter(run_date, version_.solution)))
    popular = (F.col(out[REASON]) == REASON_POPULAR).cast("int") if REASON in out else F.lit(0)
    # One grouping by owner, not two distinct counts: a distinct count each would expand and
    # shuffle every row twice.
    counts = (committed.where(F.col(out[shape.owner]).isNotNull())
              .groupBy(out[shape.owner]).agg(F.max(popular).alias("popular"))
              .agg(F.count(F.lit(1)).alias("with_results"), F.sum("popular").alias("backfilled")).first())
    if jsonl:
        with logs.stage(log, "write_jsonl", path=jsonl):
            lines = jsonl_sink.recommendation_lines(requests, result, with_scores=with_scores,
                                                    key=job.request_key, shape=shape)
            files = jsonl_sink.write_lines(lines, jsonl, order_by=(inputs.FILE, inputs.POSITION, job.request_key),
                                           unnamed=jsonl_sink.unnamed_output(job.request_kind))
    owner = shape.owner.lower().replace("_id", "s")  # USER_ID -> users, ITEM_ID -> items, segment_id -> segments
    return {f"{owner}_with_results": int(counts["with_results"]), "rows": rows,
            f"backfilled_{owner}": int(counts["backfilled"] or 0), "jsonl_files": files}


def all_owner_requests(frame: DataFrame, key: str, json_key: str) -> DataFrame:
    """Synthetic request rows ``{"<json_key>": ...}`` for every value of ``frame[key]``, ordered by it."""
    return (frame.select(key).where(F.col(key).isNotNull()).distinct().select(
        F.lit("").alias(inputs.FILE), F.lit(None).cast("long").alias(inputs.POSITION),
        F.lit(None).cast("long").alias(inputs.LINE),
        F.to_json(F.struct(F.col(key).alias(json_key))).alias(inputs.RAW),
        F.col(key), F.lit(None).cast("string").alias(inputs.ERROR)))
