"""Personalized ranking: re-order each request's ``itemList`` by the model's scores, on the executors.

The item factors are broadcast; each Arrow block of requests gathers its listed items' vectors and
takes one dot product per (request, item): no cross join, no Python loop per item. Order: score
descending, then item ID ascending; items the model does not know go last in input order
(``unscored``); a user the model does not know gets the listed items in the stored list's order.
"""

from __future__ import annotations

import logging
from typing import Iterator, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame

from batchrec import catalogue
from batchrec.batch import inputs
from batchrec.columns import ITEM_ID, REASON_MODEL, REASON_UNSCORED, USER_ID
from batchrec.scoring import topk
from batchrec.scoring.model import Model

log = logging.getLogger(__name__)

RANK, SCORE, REASON = topk.RANK, topk.SCORE, topk.REASON
OUTPUT_DDL = (f"{inputs.POSITION} long, {USER_ID} string, {RANK} int, {ITEM_ID} string, "
              f"{SCORE} double, {REASON} string")


def rank_lists(recipe: str, artifacts, requests: DataFrame,
               users_per_batch: int = topk.DEFAULT_USERS_PER_BATCH) -> DataFrame:
    """Re-rank ``requests[_position, USER_ID, itemList]`` with the scorer of ``recipe``.

    Returns:
        ``[_position, USER_ID, rank, ITEM_ID, score, reason]``, ranks 1..len(itemList) per line.

    Raises:
        UsageError: the recipe cannot rank items for a user.
    """
    spec = catalogue.require(recipe, catalogue.RANKS_ITEMS, "rank items for a user")
    model = Model(spec, artifacts)
    return spec.scoring_module().rank_items(
        model, requests.select(inputs.POSITION, USER_ID, inputs.ITEM_LIST), users_per_batch)


def rank_requests(requests: DataFrame, matrix: Optional[topk.ItemMatrix],
                  fallback: Sequence[tuple[str, str]], users_per_batch: int) -> DataFrame:
    """The ranking kernel: ``requests[_position, USER_ID, itemList, features]`` (null features for
    users the model cannot score) ordered by dot product with ``matrix``; requests without features
    follow ``fallback``'s order ``[(ITEM_ID, reason), ...]``."""
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
    parent, names = listed_items(block)
    features = block.column(3)
    known_user = features.is_valid().to_numpy(zero_copy_only=False)[parent] if len(parent) else np.zeros(0, bool)
    model_pos = model_index.get_indexer(names) if len(model_index) else np.full(len(names), -1)
    scored = known_user & (model_pos >= 0)
    scores = np.full(len(names), np.nan)
    if scored.any():
        rank_dim = vectors.shape[1]
        user_rows = np.zeros((block.num_rows, rank_dim), np.float32)
        valid_rows = np.flatnonzero(features.is_valid().to_numpy(zero_copy_only=False))
        flat = pc.list_flatten(features.take(pa.array(valid_rows))).to_numpy(zero_copy_only=False)
        user_rows[valid_rows] = flat.reshape(len(valid_rows), rank_dim)
        scores[scored] = np.einsum("ij,ij->i", user_rows[parent[scored]], vectors[model_pos[scored]])
    # The model index is sorted by item ID, so its position breaks score ties by item ID.
    return order_block(block, parent, names, scores, scored, known_user, model_pos, list_index, list_reasons)


def listed_items(block: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
    """The request row of every listed item of a block's ``itemList`` (column 2), and the item IDs."""
    item_list = block.column(2)
    parent = pc.list_parent_indices(item_list).to_numpy()
    return parent, item_list.flatten().to_numpy(zero_copy_only=False)


def order_block(block: pa.RecordBatch, parent: np.ndarray, names: np.ndarray, scores: np.ndarray,
                scored: np.ndarray, known_user: np.ndarray, tie: np.ndarray, list_index,
                list_reasons) -> pa.RecordBatch:
    """Order every request's listed items: scored items by score descending (``tie`` ascending on
    equal scores: an item-ID order), then, for users the model cannot score, the fallback list's
    order, and last the unscored items in input order; ranks restart at 1 per request row."""
    list_pos = list_index.get_indexer(names) if len(list_index) else np.full(len(names), -1)
    order_in_input = np.arange(len(names))
    by_list = ~known_user & (list_pos >= 0)
    group = np.where(scored | by_list, 0, 1)  # unscored items go last
    primary = np.where(scored, -np.nan_to_num(scores), np.where(by_list, list_pos, 0)).astype(np.float64)
    secondary = np.where(scored, tie, order_in_input)
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
