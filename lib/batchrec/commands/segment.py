"""``batchrec segment``: user segments per item or per item-attribute query (batch segment job).

A batch job on the shared runner. Each input line is ``{"itemId": ...}`` (item affinity: the users
most likely to interact with the item; ``segment_id`` is the item ID) or ``{"itemAttributes":
"ITEMS.GENRES = \\"Comedy\\" AND ..."}`` (item-attribute affinity: the users most drawn to the items
the query selects; ``segment_id`` is a stable ID of the normalized query). Without ``--input``,
one segment per item of the model. ``--exclude-interacted`` leaves out users who already
interacted with a segment's items (campaigns for new buyers). Sizes: ``--num-results N`` (25 by
default, Personalize's) or ``--fraction P`` of all users. JSON lines carry ``usersList``.

``--filter`` takes UserID filters (``INCLUDE UserID WHERE Users.MEMBERSHIP IN ("gold")``, or
Interactions conditions: users with such an interaction with the segment's item); the users it
rejects are left out before each segment's cut, so segments stay full when enough users pass.
"""

from __future__ import annotations

import datetime as dt
from typing import Optional

from pyspark.sql import DataFrame, functions as F

from batchrec import catalogue, registry
from batchrec.batch import inputs
from batchrec.batch.runner import BatchJob, JobContext, all_owner_requests, run_batch_job
from batchrec.batch.shapes import QUERY, SEGMENT_ID, SEGMENTS
from batchrec.columns import ITEM_ID, USER_ID
from batchrec.errors import BatchrecError, DataError
from batchrec.filters import ATTRIBUTE_SEGMENT, ITEM_SEGMENT
from batchrec.scoring.attribute_query import attribute_segment_id
from batchrec.scoring.pair_filter import segment_masks
from batchrec.scoring.segments import segment_size

# Segment jobs take bounded request files (Personalize: up to 500 queries per job); the distinct
# attribute queries are parsed on the driver.
MAX_ATTRIBUTE_QUERIES = 10_000


def size_of(settings):
    """The segment size: ``fraction`` of the users when set, else ``num_results`` users."""
    if settings.fraction is not None:
        return segment_size(None, settings.fraction)
    return segment_size(settings.num_results, None)


def _masks(context: JobContext):
    """The ``--filter`` as the segment kernel's user masks (None without a filter)."""
    if context.item_filter is None:
        return None
    return segment_masks(context.item_filter, context.requests.select(SEGMENT_ID), SEGMENT_ID)


def _score_items(context: JobContext) -> DataFrame:
    model, settings = context.model, context.settings
    queries = context.requests.select(F.col(ITEM_ID).alias(SEGMENT_ID), ITEM_ID).distinct()
    segments = model.spec.scoring_module().users_for_items(
        model, queries, size_of(settings), context.seen,
        context.settings.users_per_batch, masks=_masks(context))
    return segments.withColumn(QUERY, F.col(SEGMENT_ID))


def _score_attributes(context: JobContext) -> DataFrame:
    model, settings = context.model, context.settings
    # The requests carry each query's segment_id (parsed once, in _with_attribute_segment_ids).
    queries = context.requests.select(SEGMENT_ID, F.col(inputs.ITEM_ATTRIBUTES).alias(QUERY)).distinct()
    texts = [r[QUERY] for r in queries.collect()]  # bounded by MAX_ATTRIBUTE_QUERIES
    segments = model.spec.scoring_module().users_for_attributes(
        model, context.item_attributes(), texts, size_of(settings), context.seen, settings.aggregation,
        settings.users_per_batch, masks=_masks(context))
    return segments.join(F.broadcast(queries), SEGMENT_ID)


def _with_attribute_segment_ids(spark, requests: DataFrame) -> DataFrame:
    """Each attribute request with its ``segment_id``; a query that does not parse gets its error
    (with the position) on its line, like any other bad line."""
    texts = [r[0] for r in requests.where(F.col(inputs.ERROR).isNull()).select(inputs.ITEM_ATTRIBUTES)
             .distinct().limit(MAX_ATTRIBUTE_QUERIES + 1).collect()]
    if len(texts) > MAX_ATTRIBUTE_QUERIES:
        raise DataError(f"more than {MAX_ATTRIBUTE_QUERIES} distinct attribute queries in one job; "
                        f"split the input file")
    parsed = []
    for text in texts:
        try:
            parsed.append((text, attribute_segment_id(text), None))
        except BatchrecError as exc:
            parsed.append((text, None, f'"{inputs.JSON_ITEM_ATTRIBUTES}": {exc}'))
    mapping = spark.createDataFrame(parsed, f"{inputs.ITEM_ATTRIBUTES} string, {SEGMENT_ID} string, _qerr string")
    where = F.concat(F.lit("line "), F.col(inputs.LINE).cast("string"), F.lit(" of "), F.col(inputs.FILE),
                     F.lit(": "))
    return (requests.join(F.broadcast(mapping), inputs.ITEM_ATTRIBUTES, "left")
            .withColumn(inputs.ERROR, F.coalesce(F.col(inputs.ERROR), F.concat(where, F.col("_qerr"))))
            .drop("_qerr"))


def _job(kind: str) -> BatchJob:
    attributes = kind == inputs.KIND_ATTRIBUTES
    return BatchJob(
        command="segment",
        capability=catalogue.USERS_FOR_ITEM,
        what="find users for an item",
        request_kind=kind,
        request_key=SEGMENT_ID,
        shape=SEGMENTS,
        score=_score_attributes if attributes else _score_items,
        all_requests=None if attributes else (
            lambda model: all_owner_requests(model.artifact(catalogue.ITEM_MAP), ITEM_ID, inputs.JSON_ITEM_ID)
            .withColumn(SEGMENT_ID, F.col(ITEM_ID))),
        prepare_requests=_with_attribute_segment_ids if attributes
        else (lambda spark, requests: requests.withColumn(SEGMENT_ID, F.col(ITEM_ID))),
        count_label="segments",
        filter_context=ATTRIBUTE_SEGMENT if attributes else ITEM_SEGMENT,
        filter_candidates=lambda model, requests: model.artifact(catalogue.USER_MAP).select(USER_ID).distinct(),
    )


def request_kind(spark, input_path: Optional[str]) -> str:
    """``attributes`` when the input's lines carry ``itemAttributes``, else ``items``."""
    if not input_path:
        return inputs.KIND_ITEMS
    sample = spark.read.text(input_path).where(F.col("value").contains(f'"{inputs.JSON_ITEM_ATTRIBUTES}"'))
    return inputs.KIND_ATTRIBUTES if sample.limit(1).count() else inputs.KIND_ITEMS


def run(spark, settings, run_date: dt.date, *, solution: str, version: str = registry.LATEST,
        output: str, jsonl: Optional[str] = None, dynamodb_table: Optional[str] = None,
        current: Optional[str] = None, current_delete_absent: bool = False,
        input_path: Optional[str] = None,
        interactions: Optional[str] = None, items: Optional[str] = None, users: Optional[str] = None,
        data_format: str = "auto", filter_expression: Optional[str] = None,
        filter_values: Optional[str] = None, filter_name: Optional[str] = None) -> dict:
    """Segments for each requested item or attribute query; returns the run summary.

    ``users`` (default: the users dataset recorded with the version) and ``interactions`` feed a
    filter's Users and Interactions conditions.

    Raises:
        UsageError: a bad size or filter, or a model that cannot find users for items.
        JobError: unknown solution or version, missing or corrupt artifact files.
        DataError: unreadable input, or an input file without a single usable line.
    """
    ss = settings.segment
    size_of(ss)  # a bad size fails before any work
    job = _job(request_kind(spark, input_path))
    return run_batch_job(spark, job, settings, run_date,
                         solution=solution, version=version,
                         dynamodb_table=dynamodb_table, current=current,
                         current_delete_absent=current_delete_absent, output=output, jsonl=jsonl,
                         input_path=input_path, interactions=interactions, items=items,
                         data_format=data_format, job_settings=ss, exclude_seen=ss.exclude_interacted,
                         users=users, users_per_batch=ss.users_per_batch,
                         filter_expression=filter_expression, filter_values=filter_values,
                         filter_name=filter_name)
