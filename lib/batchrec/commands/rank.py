"""``batchrec rank``: re-rank each input line's ``itemList`` for its user (personalized ranking).

Input lines are ``{"userId": "...", "itemList": ["...", ...]}``. For a user known to a
user-personalization model every listed item the model knows is scored by dot product on the
executors (item factors broadcast, the request's items gathered and multiplied in Arrow batches, no
cross join) and ordered by score descending, then item ID ascending; reason ``model``.

Decisions, where Personalize is silent:

* Items unknown to the model go last, in input order, without a score (reason ``unscored``).
* A user unknown to the model gets the listed items in popularity order (reason ``popular``, no
  score), like the cold-start answer of ``recommend``; listed items outside the popular list
  follow in input order (``unscored``). Keeping the list unchanged would hide that nothing was
  personalised; popularity is the better guess and the reason column says what happened.
* popularity-count and trending-now versions rank every user's list by their stored list.
* Each input line is its own request: a user on two lines gets two rankings (two sets of rows).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Iterator, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, functions as F

from batchrec import logs, registry
from batchrec.columns import (ITEM_ID, ITEM_IDX, REASON_MODEL, REASON_UNSCORED, USER_ID, USER_IDX)
from batchrec.commands.recommend import (ARROW_BATCH_CONF, check_requests, report, run_counts)
from batchrec.scoring import inputs, topk
from batchrec.scoring.recommend import (RECIPE_POPULARITY, RECIPE_USER_PERSONALIZATION, artifact,
                                        ranked_list)
from batchrec.sinks import delta, jsonl as jsonl_sink

log = logging.getLogger(__name__)

RANK, SCORE, REASON = topk.RANK, topk.SCORE, topk.REASON
OUTPUT_DDL = (f"{inputs.POSITION} long, {USER_ID} string, {RANK} int, {ITEM_ID} string, "
              f"{SCORE} double, {REASON} string")


def run(spark, settings, run_date: dt.date, *, solution: str, version: str = registry.LATEST,
        output: str, jsonl: Optional[str] = None, interactions: Optional[str] = None,
        items: Optional[str] = None, users: Optional[str] = None, data_format: str = "auto",
        input_path: str) -> dict:
    """Rank every input line's items; Delta rows per line, optional Personalize JSON lines.

    ``interactions``/``items``/``users`` are accepted for the common batch-job contract; ranking
    excludes nothing, so it reads no dataset.

    Raises:
        JobError: unknown solution or version, missing or corrupt artifact files.
        DataError: the input cannot be read or has no usable line.
    """
    started = time.perf_counter()
    rs = settings.recommend
    spark.conf.set(ARROW_BATCH_CONF, str(rs.users_per_batch))
    version_ = registry.load_version(spark, solution, version)
    artifacts = registry.load_artifacts(spark, version_)
    requests = inputs.read_requests(spark, input_path, inputs.KIND_RANKING).persist()
    errors = check_requests(requests, input_path)
    ranked = rank_lists(version_.recipe, artifacts,
                        requests.where(F.col(inputs.ERROR).isNull()), rs.users_per_batch)
    with logs.stage(log, "write_delta", path=output) as info:
        rows = delta.write_run(ranked, output, run_date, version_.solution, version_.version,
                               version_.recipe)
        info["rows"] = rows
    counts = run_counts(spark, output, run_date, version_.solution)
    if jsonl:
        with logs.stage(log, "write_jsonl", path=jsonl):
            # The JSON lines need the line identity, which the Delta table does not keep: rank again
            # (cheap, no model-sized work) rather than widen the table's schema.
            lines = jsonl_sink.recommendation_lines(
                requests, ranked.drop(USER_ID), with_scores=version_.recipe == RECIPE_USER_PERSONALIZATION,
                key=inputs.POSITION)
            jsonl_sink.write_lines(lines, jsonl, order_by=(inputs.FILE, inputs.POSITION))
    n_requests = requests.count() - errors
    requests.unpersist()
    summary = {"command": "rank", "run_date": run_date.isoformat(), "solution": version_.solution,
               "version": version_.version, "recipe": version_.recipe, "requests": n_requests,
               "users_with_results": counts["users_with_results"], "rows": rows, "errors": errors,
               "backfilled_users": counts["backfilled_users"],
               "seconds": round(time.perf_counter() - started, 1), "output": output, "jsonl": jsonl}
    report(summary)
    return summary


def rank_lists(recipe: str, artifacts, requests: DataFrame,
               users_per_batch: int = topk.DEFAULT_USERS_PER_BATCH) -> DataFrame:
    """Re-rank ``requests[_position, USER_ID, itemList]``.

    Returns:
        ``[_position, USER_ID, rank, ITEM_ID, score, reason]``, ranks 1..len(itemList) per line.
    """
    requests = requests.select(inputs.POSITION, USER_ID, inputs.ITEM_LIST)
    matrix = None
    if recipe == RECIPE_USER_PERSONALIZATION:
        item_map = artifact(artifacts, registry.ITEM_MAP).select(ITEM_ID, ITEM_IDX)
        model_items = (artifact(artifacts, registry.ITEM_FACTORS).select(ITEM_IDX, topk.FEATURES)
                       .join(item_map, ITEM_IDX))
        matrix = topk.collect_item_matrix(model_items)
        user_factors = (artifact(artifacts, registry.USER_MAP).select(USER_ID, USER_IDX)
                        .join(artifact(artifacts, registry.USER_FACTORS), USER_IDX)
                        .select(USER_ID, topk.FEATURES))
        requests = requests.join(user_factors, USER_ID, "left")
        fallback = ranked_list(artifacts, RECIPE_POPULARITY) if registry.POPULAR_ITEMS in artifacts else []
    else:
        requests = requests.withColumn(topk.FEATURES, F.lit(None).cast("array<float>"))
        fallback = ranked_list(artifacts, recipe)
    requests = requests.select(inputs.POSITION, USER_ID, inputs.ITEM_LIST, topk.FEATURES)
    spark = requests.sparkSession
    payload = spark.sparkContext.broadcast((
        matrix.vectors if matrix is not None else np.zeros((0, 0), np.float32),
        matrix.item_ids if matrix is not None else np.array([], dtype=object),
        np.array([i for i, _ in fallback], dtype=object), np.array([r for _, r in fallback], dtype=object)))

    def rank(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pandas as pd

        vectors, item_ids, list_ids, list_reasons = payload.value
        indexes = (pd.Index(item_ids), pd.Index(list_ids))
        for batch in batches:
            for start in range(0, batch.num_rows, users_per_batch):
                block = batch.slice(start, users_per_batch)
                if block.num_rows:
                    yield rank_block(block, vectors, indexes, list_reasons)

    return requests.mapInArrow(rank, OUTPUT_DDL)


def rank_block(block: pa.RecordBatch, vectors: np.ndarray, indexes, list_reasons) -> pa.RecordBatch:
    """Rank one Arrow block of requests ``[_position, USER_ID, itemList, features]``."""
    model_index, list_index = indexes
    item_list = block.column(2)
    parent = pc.list_parent_indices(item_list).to_numpy()
    listed = item_list.flatten()
    names = listed.to_numpy(zero_copy_only=False)
    features = block.column(3)
    known_user = features.is_valid().to_numpy(zero_copy_only=False)[parent] if len(parent) else np.zeros(0, bool)
    model_pos = model_index.get_indexer(names) if len(model_index) else np.full(len(names), -1)
    list_pos = list_index.get_indexer(names) if len(list_index) else np.full(len(names), -1)
    order_in_input = np.arange(len(names))

    scored = known_user & (model_pos >= 0)
    scores = np.full(len(names), np.nan)
    if scored.any():
        rank_dim = vectors.shape[1]
        user_rows = np.zeros((block.num_rows, rank_dim), np.float32)
        valid_rows = np.flatnonzero(features.is_valid().to_numpy(zero_copy_only=False))
        flat = pc.list_flatten(features.take(pa.array(valid_rows))).to_numpy(zero_copy_only=False)
        user_rows[valid_rows] = flat.reshape(len(valid_rows), rank_dim)
        scores[scored] = np.einsum("ij,ij->i", user_rows[parent[scored]], vectors[model_pos[scored]])
    by_list = ~known_user & (list_pos >= 0)
    group = np.where(scored | by_list, 0, 1)  # unscored items go last
    primary = np.where(scored, -np.nan_to_num(scores), np.where(by_list, list_pos, 0)).astype(np.float64)
    secondary = np.where(scored, model_pos, order_in_input)  # model position = item ID order
    order = np.lexsort((secondary, primary, group, parent))
    parent_sorted = parent[order]
    first = np.searchsorted(parent_sorted, parent_sorted, side="left")
    ranks = (np.arange(len(order)) - first + 1).astype(np.int32)
    reasons = np.where(scored, REASON_MODEL,
                       np.where(by_list, list_reasons[np.maximum(list_pos, 0)] if len(list_reasons)
                                else REASON_UNSCORED, REASON_UNSCORED)).astype(object)
    take = pa.array(parent_sorted)
    return pa.RecordBatch.from_arrays(
        [block.column(0).take(take), block.column(1).take(take), pa.array(ranks),
         pa.array(names[order], type=pa.string()),
         pa.array(np.where(scored, scores, np.nan)[order], type=pa.float64(), from_pandas=True),
         pa.array(reasons[order], type=pa.string())],
        names=[inputs.POSITION, USER_ID, RANK, ITEM_ID, SCORE, REASON])
