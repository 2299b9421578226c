"""Per-user top-N for the item-based recipes (ease, sar): the user's history times item weights.

A user's scores are ``x_u · W``: ``x_u`` the stored ``user_history`` (binary for ease, the
time-decayed affinities for sar) and ``W`` the item weights, broadcast once to the executors:

* ease: the dense model-items x model-items matrix B (``item_weights``); every model item gets a
  score;
* sar: the sparse similarity S from ``item_neighbours`` (CSR); items no history item points to get
  no score.

Users are scored in blocks inside ``mapInArrow``: the block's histories become one sparse matrix,
one product gives the block's scores, seen items are masked, ``batchrec.scoring.topk.select_top_k``
keeps the best N (score descending, then item ID ascending) and, in the same pass, popular items
the user has not seen and was not already given fill whatever is left (reason ``popular``, no
score). Users unknown to the model, or without history, get popular items only. The output is the
same as ``batchrec.scoring.recommend.recommend_for_users``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batchrec.columns import (ITEM_ID, ITEM_IDX, NEIGHBOUR_ID, REASON_MODEL, REASON_POPULAR, USER_ID,
                              USER_IDX)
from batchrec.errors import JobError
from batchrec.recipes.cooccurrence import ITEM_NEIGHBOURS, USER_HISTORY, VALUE
from batchrec.recipes.ease import ITEM_WEIGHTS, WEIGHTS
from batchrec.registry import ITEM_MAP, POPULAR_ITEMS, USER_MAP
from batchrec.scoring.topk import (DEFAULT_USERS_PER_BATCH, MAX_BLOCK_CELLS, RANK, REASON, SCORE,
                                   select_top_k)

EASE = "ease"
SAR = "sar"
RECIPES = (EASE, SAR)
HISTORY = "history"
SEEN = "seen"
OUTPUT_COLUMNS = (USER_ID, RANK, ITEM_ID, SCORE, REASON)
MAX_POPULAR = 5000


@dataclass(frozen=True)
class ItemModel:
    """What every scoring block needs, on the driver (bounded by the catalogue)."""

    item_ids: np.ndarray  # object: ITEM_ID of each item_idx (None where no item has that index)
    model_idx: np.ndarray  # int64: item_idx of each model position, ascending
    dense: Optional[np.ndarray]  # float32 (m, m): ease's B by model position
    sparse: Optional[object]  # scipy CSR (m, m): sar's S by model position
    popular: np.ndarray  # int64: item_idx of the popular list, in rank order

    @property
    def size(self) -> int:
        """Number of model items."""
        return int(len(self.model_idx))


def _artifact(artifacts: Mapping[str, DataFrame], name: str) -> DataFrame:
    if name not in artifacts or artifacts[name] is None:
        raise JobError(f"solution version has no '{name}' artifact; expected one of its files "
                       f"(present: {sorted(artifacts)})")
    return artifacts[name]


def load_item_model(recipe: str, artifacts: Mapping[str, DataFrame]) -> ItemModel:
    """Collect the item side of an ease or sar version (ID map, weights, popular list).

    Raises:
        JobError: an unknown recipe, a missing artifact or weights of the wrong length.
    """
    import scipy.sparse as sp

    if recipe not in RECIPES:
        raise JobError(f"recipe {recipe!r} is not item-based; expected one of {', '.join(RECIPES)}")
    item_map = _artifact(artifacts, ITEM_MAP).select(ITEM_ID, ITEM_IDX)
    table = item_map.toArrow()
    idx = table.column(ITEM_IDX).to_numpy().astype(np.int64)
    item_ids = np.full(int(idx.max()) + 1 if len(idx) else 0, None, dtype=object)
    item_ids[idx] = table.column(ITEM_ID).to_numpy(zero_copy_only=False)
    dense = sparse = None
    if recipe == EASE:
        weights = _artifact(artifacts, ITEM_WEIGHTS).select(ITEM_IDX, WEIGHTS).toArrow()
        stored = weights.column(ITEM_IDX).to_numpy().astype(np.int64)
        model_idx = np.sort(stored)
        m = len(model_idx)
        row_of = np.searchsorted(model_idx, stored)  # each stored row's place in item_idx order
        dense = np.empty((m, m), dtype=np.float32)
        done = 0
        for chunk in weights.column(WEIGHTS).chunks:  # chunk by chunk: one copy of B at a time
            flat = chunk.flatten().to_numpy(zero_copy_only=False)
            if flat.size != len(chunk) * m or chunk.null_count:
                raise JobError(f"{ITEM_WEIGHTS}: each of the {m} rows must hold {m} weights")
            dense[row_of[done:done + len(chunk)]] = flat.reshape(len(chunk), m)
            done += len(chunk)
    else:
        model_idx = np.arange(len(item_ids), dtype=np.int64)
        neighbours = _artifact(artifacts, ITEM_NEIGHBOURS)
        ids = item_map.select(F.col(ITEM_ID), F.col(ITEM_IDX).alias("_i"))
        nids = item_map.select(F.col(ITEM_ID).alias(NEIGHBOUR_ID), F.col(ITEM_IDX).alias("_j"))
        rows = neighbours.join(ids, ITEM_ID).join(nids, NEIGHBOUR_ID).select("_i", "_j", SCORE).toArrow()
        sparse = sp.csr_matrix(
            (rows.column(SCORE).to_numpy().astype(np.float32),
             (rows.column("_i").to_numpy().astype(np.int64), rows.column("_j").to_numpy().astype(np.int64))),
            shape=(len(model_idx), len(model_idx)))
    popular = np.zeros(0, dtype=np.int64)
    if POPULAR_ITEMS in artifacts:
        top = (_artifact(artifacts, POPULAR_ITEMS).join(item_map, ITEM_ID)
               .orderBy(F.col(RANK), F.col(ITEM_ID)).select(ITEM_IDX).limit(MAX_POPULAR).toArrow())
        popular = top.column(ITEM_IDX).to_numpy().astype(np.int64)
    return ItemModel(item_ids, model_idx, dense, sparse, popular)


def recommend_item_based(spark, recipe: str, artifacts: Mapping[str, DataFrame], users: DataFrame,
                         exclude: Optional[DataFrame], num_results: int,
                         users_per_batch: int = DEFAULT_USERS_PER_BATCH) -> DataFrame:
    """Top ``num_results`` items per user for an ease or sar version.

    Args:
        spark: the session (broadcasts the item side).
        recipe: ``ease`` or ``sar``.
        artifacts: the version's artifacts (``item_map``, ``user_map``, ``user_history``,
            ``item_weights`` or ``item_neighbours``, ``popular_items``).
        users: ``[USER_ID]``, distinct.
        exclude: ``[USER_ID, ITEM_ID]`` pairs never to recommend, or None.
        num_results: items per user.
        users_per_batch: users per scoring block (fewer when the catalogue is large).

    Returns:
        ``[USER_ID, rank, ITEM_ID, score (null for popular), reason]``, ranks 1..N with no gaps.
    """
    model = load_item_model(recipe, artifacts)
    item_map = _artifact(artifacts, ITEM_MAP).select(ITEM_ID, ITEM_IDX)
    frame = with_history(artifacts, users.select(USER_ID))
    if exclude is not None:
        seen = (exclude.join(users.select(USER_ID), USER_ID, "left_semi").join(item_map, ITEM_ID)
                .groupBy(USER_ID).agg(F.collect_set(F.col(ITEM_IDX).cast("int")).alias(SEEN)))
        frame = frame.join(seen, USER_ID, "left")
    else:
        frame = frame.withColumn(SEEN, F.lit(None).cast("array<int>"))
    return score_users(frame.select(USER_ID, HISTORY, SEEN), model, num_results, users_per_batch)


def with_history(artifacts: Mapping[str, DataFrame], frame: DataFrame) -> DataFrame:
    """``frame`` (with ``USER_ID``) plus each user's stored history ``array<struct<item_idx, value>>``
    (null for users the model does not know)."""
    user_map = _artifact(artifacts, USER_MAP).select(USER_ID, USER_IDX)
    history = (_artifact(artifacts, USER_HISTORY).groupBy(USER_IDX)
               .agg(F.collect_list(F.struct(F.col(ITEM_IDX).cast("int").alias(ITEM_IDX),
                                            F.col(VALUE).cast("float").alias(VALUE))).alias(HISTORY)))
    return frame.join(user_map, USER_ID, "left").join(history, USER_IDX, "left")


def rank_items(model, requests: DataFrame, users_per_batch: int) -> DataFrame:
    """``batchrec rank`` for ease and sar: each request's ``itemList`` ordered by the user's scores
    ``x_u · W`` (only the listed items' columns of W are used); users without a stored history get
    the popular list's order, as ``batchrec.scoring.factors.rank_items`` gives unknown users.

    Args:
        model: a :class:`batchrec.scoring.model.Model` of an ease or sar version.
        requests: ``[_position, USER_ID, itemList]``.
        users_per_batch: request rows per scoring block.

    Returns:
        ``[_position, USER_ID, rank, ITEM_ID, score, reason]`` (see ``batchrec.scoring.ranking``).
    """
    import pandas as pd

    from batchrec.batch import inputs
    from batchrec.scoring import ranking
    from batchrec.scoring.recommend import popular_fallback

    item_model = load_item_model(model.spec.scorer_options["kind"], model.artifacts)
    known = np.flatnonzero(np.array([i is not None for i in item_model.item_ids], dtype=bool))
    position = _model_positions(item_model)
    fallback = popular_fallback(model.artifacts)
    frame = with_history(model.artifacts, requests.select(inputs.POSITION, USER_ID, inputs.ITEM_LIST))
    payload = requests.sparkSession.sparkContext.broadcast(
        (item_model, item_model.item_ids[known], known, position,
         np.array([i for i, _ in fallback], dtype=object), np.array([r for _, r in fallback], dtype=object)))

    def rank(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        weights, ids, idx_of, pos_of, list_ids, list_reasons = payload.value
        id_index, list_index = pd.Index(ids), pd.Index(list_ids)
        for batch in batches:
            for start in range(0, batch.num_rows, users_per_batch):
                block = batch.slice(start, users_per_batch)
                if block.num_rows:
                    yield _rank_block(block, weights, id_index, idx_of, pos_of, list_index, list_reasons)

    return frame.select(inputs.POSITION, USER_ID, inputs.ITEM_LIST, HISTORY).mapInArrow(rank, ranking.OUTPUT_DDL)


def _rank_block(block: pa.RecordBatch, model: ItemModel, id_index, idx_of: np.ndarray, pos_of: np.ndarray,
                list_index, list_reasons) -> pa.RecordBatch:
    """Rank one block ``[_position, USER_ID, itemList, history]``: the scores of the listed model
    items are ``x[request] · W[:, item]``, computed for the block's distinct listed items only."""
    from batchrec.scoring import ranking

    parent, names = ranking.listed_items(block)
    x = _histories(block.column(3), pos_of, model.size)
    has_history = np.diff(x.indptr) > 0
    known_user = has_history[parent] if len(parent) else np.zeros(0, bool)
    found = id_index.get_indexer(names) if len(id_index) else np.full(len(names), -1)
    item_pos = np.where(found >= 0, pos_of[idx_of[np.maximum(found, 0)]] if len(idx_of) else -1, -1)
    scored = known_user & (item_pos >= 0)
    scores = np.full(len(names), np.nan)
    if scored.any():
        columns, column_of = np.unique(item_pos[scored], return_inverse=True)
        if model.dense is not None:
            block_scores = np.asarray(x @ model.dense[:, columns], dtype=np.float32)
        else:
            block_scores = (x @ model.sparse[:, columns]).toarray().astype(np.float32)
        scores[scored] = block_scores[parent[scored], column_of]
    tie = np.unique(names.astype(str), return_inverse=True)[1]  # item ID order on equal scores
    return ranking.order_block(block, parent, names, scores, scored, known_user, tie, list_index, list_reasons)


def _model_positions(model: ItemModel) -> np.ndarray:
    """The model position of every item index (-1 for items outside the model)."""
    n_index = max(len(model.item_ids), int(model.model_idx.max()) + 1 if model.size else 0)
    position = np.full(n_index, -1, dtype=np.int64)
    position[model.model_idx] = np.arange(model.size)
    return position


def _histories(column: pa.Array, pos_of: np.ndarray, m: int):
    """The block's histories as a sparse float32 (rows x model items) matrix; items outside the
    model are left out."""
    import scipy.sparse as sp

    h_rows, h_flat = _pairs(column)
    h_items = h_flat.field(0).to_numpy(zero_copy_only=False).astype(np.int64)
    h_values = h_flat.field(1).to_numpy(zero_copy_only=False).astype(np.float32)
    h_pos = np.where((h_items >= 0) & (h_items < len(pos_of)), pos_of[np.clip(h_items, 0, len(pos_of) - 1)], -1)
    ok = h_pos >= 0
    return sp.csr_matrix((h_values[ok], (h_rows[ok], h_pos[ok])), shape=(len(column), m), dtype=np.float32)


def score_users(frame: DataFrame, model: ItemModel, k: int,
                users_per_batch: int = DEFAULT_USERS_PER_BATCH) -> DataFrame:
    """Score ``[USER_ID, history array<struct<item_idx, value>>, seen array<int>]`` rows (see the
    module docstring); null history means popular items only."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    position = _model_positions(model)
    n_index = len(position)
    popular_position = np.full(n_index, -1, dtype=np.int64)
    popular = model.popular[(model.popular >= 0) & (model.popular < n_index)]
    _, first = np.unique(popular, return_index=True)
    popular = popular[np.sort(first)]  # distinct, rank order kept
    popular_position[popular] = np.arange(len(popular))
    rows_per_block = max(1, min(users_per_batch, MAX_BLOCK_CELLS // max(model.size, 1)))
    payload = frame.sparkSession.sparkContext.broadcast(
        (model, position, popular, popular_position))
    schema = pa.schema([pa.field(USER_ID, pa.string()), pa.field(RANK, pa.int32()),
                        pa.field(ITEM_ID, pa.string()), pa.field(SCORE, pa.float64()),
                        pa.field(REASON, pa.string())])

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        item_model, pos_of, pop, pop_pos_of = payload.value
        for batch in batches:
            for start in range(0, batch.num_rows, rows_per_block):
                block = batch.slice(start, rows_per_block)
                if block.num_rows:
                    yield _score_block(block, item_model, pos_of, pop, pop_pos_of, k, schema)

    return frame.mapInArrow(score, f"{USER_ID} string, {RANK} int, {ITEM_ID} string, {SCORE} double, "
                                   f"{REASON} string")


def _pairs(lists: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Row of each element of a list column, and the flattened elements."""
    return pc.list_parent_indices(lists).to_numpy().astype(np.int64), lists.flatten()


def _score_block(block: pa.RecordBatch, model: ItemModel, pos_of: np.ndarray, popular: np.ndarray,
                 popular_pos_of: np.ndarray, k: int, schema: pa.Schema) -> pa.RecordBatch:
    b, m = block.num_rows, model.size
    x = _histories(block.column(1), pos_of, m)
    if model.dense is not None:
        neg = -np.asarray(x @ model.dense, dtype=np.float32)
        neg[np.diff(x.indptr) == 0] = np.inf  # no history: nothing to score
    else:
        product = (x @ model.sparse).tocoo()
        neg = np.full((b, m), np.inf, dtype=np.float32)
        neg[product.row, product.col] = -product.data
    s_rows, s_flat = _pairs(block.column(2))
    s_items = s_flat.to_numpy(zero_copy_only=False).astype(np.int64)
    s_known = (s_items >= 0) & (s_items < len(pos_of))
    s_rows, s_items = s_rows[s_known], s_items[s_known]
    s_pos = pos_of[s_items]
    neg[s_rows[s_pos >= 0], s_pos[s_pos >= 0]] = np.inf
    top_pos, top_neg = select_top_k(neg, k) if m else (np.zeros((b, 0), np.int64), np.zeros((b, 0)))
    r, j = np.nonzero(np.isfinite(top_neg))  # excluded (inf) sort last: valid entries are a prefix
    chosen = model.model_idx[top_pos[r, j]]
    given = np.bincount(r, minlength=b)

    # Popular backfill: the first popular items neither seen nor already given, after the model's.
    p = len(popular)
    allowed = np.ones((b, p), dtype=bool)
    for rows, items in ((s_rows, s_items), (r, chosen)):
        pp = popular_pos_of[items]
        allowed[rows[pp >= 0], pp[pp >= 0]] = False
    count = np.cumsum(allowed, axis=1)
    need = k - given
    fr, fj = np.nonzero(allowed & (count <= need[:, None]))

    users = block.column(0)
    rows = np.concatenate([r, fr])
    ranks = np.concatenate([j + 1, given[fr] + count[fr, fj]]).astype(np.int32)
    items = np.concatenate([chosen, popular[fj]])
    scores = np.concatenate([-top_neg[r, j].astype(np.float64), np.zeros(len(fr))])
    is_model = np.concatenate([np.ones(len(r), bool), np.zeros(len(fr), bool)])
    return pa.RecordBatch.from_arrays(
        [users.take(pa.array(rows)), pa.array(ranks), pa.array(model.item_ids[items], pa.string()),
         pa.array(scores, mask=~is_model),
         pa.array(np.where(is_model, REASON_MODEL, REASON_POPULAR).astype(object), pa.string())],
        schema=schema)


def items_for_user(model, users: DataFrame, exclude: Optional[DataFrame], num_results: int, settings,
                   **_context) -> DataFrame:
    """The scorer's answer to "items for a user" (``batchrec recommend``, ``evaluate``): EASE's item
    weights or SAR's neighbour similarities, as the catalogue entry's ``scorer_options["kind"]`` says."""
    return recommend_item_based(users.sparkSession, model.spec.scorer_options["kind"], model.artifacts, users, exclude, num_results,
                                settings.users_per_batch)
