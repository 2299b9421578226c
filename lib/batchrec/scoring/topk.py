"""Exact top-k per user without a users x items cross join.

The item side of a model is small (at most a few hundred thousand rows), so it is collected once on
the driver into one float32 matrix and broadcast. Users are scored on the executors in blocks:
Arrow batches (``mapInArrow``) of at most ``users_per_batch`` rows, one BLAS matrix product per
block, seen items masked inside the block, and ``argpartition`` to keep the k best per row. No
Python code runs per (user, item) pair and no row of the full score matrix ever leaves the block.

Order is deterministic: score descending, then item ID ascending. Ties are resolved by the item's
position in the broadcast matrix, and the matrix is sorted by ``ITEM_ID`` (code-point order, which
equals Spark's binary UTF-8 string order) whenever the item factors carry that column; without it,
by ``item_idx`` (batchrec's indexer assigns indexes in ID order, so both agree).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, functions as F

from batchrec.columns import ITEM_ID, ITEM_IDX, USER_ID, USER_IDX
from batchrec.errors import JobError

log = logging.getLogger(__name__)

FEATURES = "features"
SEEN = "seen"
RANK = "rank"
SCORE = "score"
BONUS = "bonus"
EXPLORED = "explored"
REASON = "reason"
START = "start"
NEED = "need"
SEEN_IDS = "seen_ids"
DEFAULT_USERS_PER_BATCH = 2048
# Upper bound on the scores held at once by one block (float32): 16M cells = 64 MB, so a block
# shrinks below users_per_batch when the catalogue is large.
MAX_BLOCK_CELLS = 1 << 24


@dataclass(frozen=True)
class ItemMatrix:
    """Item factors on the driver, rows in tie-break order (item ID ascending)."""

    item_idx: np.ndarray  # int32, position -> item_idx
    item_ids: Optional[np.ndarray]  # object (str), position -> ITEM_ID, when known
    vectors: np.ndarray  # float32 (n_items, rank)
    bonus: Optional[np.ndarray]  # float32 (n_items,), exploration bonus per position

    @property
    def size(self) -> int:
        """Number of items with factors."""
        return int(self.vectors.shape[0])


def collect_item_matrix(item_factors: DataFrame, item_bonus: Optional[DataFrame] = None) -> ItemMatrix:
    """Collect item factors (bounded by the catalogue size) into one float32 matrix.

    Args:
        item_factors: ``[item_idx, features array<float>]`` and optionally ``ITEM_ID``.
        item_bonus: ``[item_idx, bonus]`` added to every user's score of that item (exploration).

    Raises:
        JobError: a factor row is null or the vectors do not all have the same length.
    """
    with_ids = ITEM_ID in item_factors.columns
    pdf = _to_pandas(item_factors.select(ITEM_IDX, FEATURES, *([ITEM_ID] if with_ids else [])))
    if pdf[FEATURES].isna().any():
        raise JobError("item_factors: a row has no features; expected one vector per item")
    lengths = {len(v) for v in pdf[FEATURES]}
    if len(lengths) > 1:
        raise JobError(f"item_factors: vectors of different lengths {sorted(lengths)}; expected one rank")
    order = np.argsort(pdf[ITEM_ID if with_ids else ITEM_IDX].to_numpy(dtype=object if with_ids else None),
                       kind="stable")
    pdf = pdf.iloc[order]
    rank = lengths.pop() if lengths else 0
    vectors = (np.stack(pdf[FEATURES].to_numpy()).astype(np.float32) if len(pdf)
               else np.zeros((0, rank), np.float32))
    matrix = ItemMatrix(
        item_idx=pdf[ITEM_IDX].to_numpy(dtype=np.int32),
        item_ids=pdf[ITEM_ID].to_numpy(dtype=object) if with_ids else None,
        vectors=np.ascontiguousarray(vectors),
        bonus=None,
    )
    return attach_bonus(matrix, item_bonus) if item_bonus is not None else matrix


def attach_bonus(matrix: ItemMatrix, item_bonus: DataFrame) -> ItemMatrix:
    """A copy of ``matrix`` with the ``[item_idx, bonus]`` rows as a per-position bonus (0 elsewhere)."""
    pdf = _to_pandas(item_bonus.select(ITEM_IDX, BONUS))
    bonus = np.zeros(matrix.size, dtype=np.float32)
    lookup = _position_lookup(matrix.item_idx)
    idx = pdf[ITEM_IDX].to_numpy(dtype=np.int64)
    ok = (idx >= 0) & (idx < len(lookup))
    pos = lookup[idx[ok]]
    bonus[pos[pos >= 0]] = pdf[BONUS].to_numpy(dtype=np.float32)[ok][pos >= 0]
    return ItemMatrix(matrix.item_idx, matrix.item_ids, matrix.vectors, bonus)


def _to_pandas(df: DataFrame):
    """``toPandas`` through Arrow (array columns are slow without it), restoring the setting."""
    conf = df.sparkSession.conf
    key = "spark.sql.execution.arrow.pyspark.enabled"
    before = conf.get(key, "false")
    conf.set(key, "true")
    try:
        return df.toPandas()
    finally:
        conf.set(key, before)


def top_k_by_factors(
    user_factors: DataFrame,
    item_factors: DataFrame,
    k: int,
    exclude: Optional[DataFrame] = None,
    item_bonus: Optional[DataFrame] = None,
    users_per_batch: int = DEFAULT_USERS_PER_BATCH,
) -> DataFrame:
    """Top ``k`` items per user by dot product, exact, seen items excluded.

    Args:
        user_factors: ``[user_idx, features]``.
        item_factors: ``[item_idx, features]`` (optionally ``ITEM_ID`` for the tie order).
        k: items per user; a user gets fewer only when fewer unseen items exist.
        exclude: ``[user_idx, item_idx]`` pairs that must not be recommended.
        item_bonus: ``[item_idx, bonus]`` added to the scores (see ``batchrec.scoring.exploration``).
        users_per_batch: users scored per numpy block.

    Returns:
        ``[user_idx, rank, item_idx, score]`` (plus ``explored`` when ``item_bonus`` is given),
        rank 1..k by score descending, then item ID ascending.
    """
    users = user_factors.select(USER_IDX, FEATURES)
    if exclude is not None:
        seen = exclude.groupBy(USER_IDX).agg(F.collect_set(ITEM_IDX).alias(SEEN))
        users = users.join(seen, USER_IDX, "left")
    matrix = collect_item_matrix(item_factors, item_bonus)
    return score_blocks(users, matrix, k, users_per_batch)


def score_blocks(users: DataFrame, matrix: ItemMatrix, k: int,
                 users_per_batch: int = DEFAULT_USERS_PER_BATCH) -> DataFrame:
    """Score ``users`` (``user_idx, features`` and optional ``seen`` item_idx array, ``USER_ID``).

    ``USER_ID`` passes through when present; ``ITEM_ID`` is added when the matrix knows the IDs.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    spark = users.sparkSession
    with_user_id = USER_ID in users.columns
    with_seen = SEEN in users.columns
    columns = [USER_IDX, FEATURES] + ([SEEN] if with_seen else []) + ([USER_ID] if with_user_id else [])
    users = users.select(*columns)

    n = matrix.size
    neg_vectors = np.ascontiguousarray(-matrix.vectors)  # scores are negated so argpartition sorts ascending
    position = _position_lookup(matrix.item_idx)
    rows_per_block = max(1, min(users_per_batch, MAX_BLOCK_CELLS // max(n, 1)))
    payload = spark.sparkContext.broadcast(
        (neg_vectors, matrix.item_idx, matrix.item_ids, matrix.bonus, position))

    fields = [pa.field(USER_IDX, pa.int32())]
    fields += [pa.field(USER_ID, pa.string())] if with_user_id else []
    fields += [pa.field(RANK, pa.int32()), pa.field(ITEM_IDX, pa.int32())]
    fields += [pa.field(ITEM_ID, pa.string())] if matrix.item_ids is not None else []
    fields += [pa.field(SCORE, pa.float64())]
    fields += [pa.field(EXPLORED, pa.bool_())] if matrix.bonus is not None else []
    out_schema = pa.schema(fields)

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        neg_v, item_idx, item_ids, bonus, pos_of = payload.value
        for batch in batches:
            for start in range(0, batch.num_rows, rows_per_block):
                block = batch.slice(start, rows_per_block)
                if block.num_rows and n:
                    yield _score_block(block, neg_v, item_idx, item_ids, bonus, pos_of, k, out_schema)

    ddl = ", ".join(f"{f.name} {_DDL[f.type]}" for f in out_schema)
    return users.mapInArrow(score, ddl)


_DDL = {pa.int32(): "int", pa.string(): "string", pa.float64(): "double", pa.bool_(): "boolean"}


def _position_lookup(item_idx: np.ndarray) -> np.ndarray:
    """Dense item_idx -> matrix position array (-1: not in the matrix)."""
    if len(item_idx) and item_idx.min() < 0:
        raise JobError("item_factors: negative item_idx; expected indexes from 0")
    lookup = np.full(int(item_idx.max()) + 1 if len(item_idx) else 0, -1, dtype=np.int64)
    lookup[item_idx] = np.arange(len(item_idx))
    return lookup


def _score_block(block: pa.RecordBatch, neg_v, item_idx, item_ids, bonus, pos_of, k, schema):
    names = block.schema.names
    b = block.num_rows
    flat = block.column(names.index(FEATURES)).flatten().to_numpy(zero_copy_only=False)
    if flat.size != b * neg_v.shape[1]:
        raise ValueError(f"user_factors: vectors of a block do not all have rank {neg_v.shape[1]}")
    users = flat.reshape(b, neg_v.shape[1]).astype(np.float32, copy=False)
    neg = users @ neg_v.T  # (b, n) negated scores: one BLAS call per block
    if SEEN in names:
        seen = block.column(names.index(SEEN))
        rows = pc.list_parent_indices(seen).to_numpy()
        idx = seen.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
        ok = (idx >= 0) & (idx < len(pos_of))
        rows, pos = rows[ok], pos_of[idx[ok]]
        neg[rows[pos >= 0], pos[pos >= 0]] = np.inf
    base = neg
    if bonus is not None:
        neg = neg - bonus[None, :]
    top_pos, top_neg = select_top_k(neg, k)
    valid = np.isfinite(top_neg)
    r, j = np.nonzero(valid)  # excluded items (inf) sort last, so valid entries are a prefix
    pos = top_pos[r, j]
    columns = {USER_IDX: block.column(names.index(USER_IDX)).take(pa.array(r)),
               RANK: pa.array((j + 1).astype(np.int32)),
               ITEM_IDX: pa.array(item_idx[pos].astype(np.int32)),
               SCORE: pa.array((-top_neg[r, j]).astype(np.float64))}
    if USER_ID in names:
        columns[USER_ID] = block.column(names.index(USER_ID)).take(pa.array(r))
    if item_ids is not None:
        columns[ITEM_ID] = pa.array(item_ids[pos], type=pa.string())
    if bonus is not None:
        columns[EXPLORED] = pa.array(_explored(base, bonus, r, pos, k))
    return pa.RecordBatch.from_arrays([columns[f.name] for f in schema], schema=schema)


def _explored(base: np.ndarray, bonus: np.ndarray, rows: np.ndarray, pos: np.ndarray, k: int) -> np.ndarray:
    """True where an item has a bonus and would be strictly outside the top k without it."""
    if k >= base.shape[1]:
        return np.zeros(len(rows), dtype=bool)
    kth = np.partition(base, k - 1, axis=1)[:, k - 1]  # k-th best negated score before the bonus
    return (bonus[pos] > 0) & (base[rows, pos] > kth[rows])


def select_top_k(neg: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k smallest negated scores per row, ordered by (value, position) ascending.

    ``argpartition`` keeps the k+1 best of each row in O(n); when the k-th and (k+1)-th values
    differ, the top k set is unique and only those k+1 values are sorted. A row with a tie across
    the boundary (rare with real factors) is redone exactly: every item at least as good as the
    k-th value, sorted by (value, position). Excluded items carry +inf and sort last.

    Returns:
        ``(positions, values)``, each of shape ``(rows, min(k, n))``.
    """
    b, n = neg.shape
    if k >= n:
        cand = np.broadcast_to(np.arange(n), (b, n))
    else:
        cand = np.argpartition(neg, k, axis=1)[:, : k + 1]
    vals = np.take_along_axis(neg, cand, axis=1)
    order = np.lexsort((cand, vals), axis=1)
    cand = np.take_along_axis(cand, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    if k >= n:
        return cand, vals
    top, top_vals = cand[:, :k].copy(), vals[:, :k].copy()
    for r in np.flatnonzero((vals[:, k - 1] == vals[:, k]) & np.isfinite(vals[:, k - 1])):
        row = neg[r]
        js = np.flatnonzero(row <= vals[r, k - 1])
        best = js[np.lexsort((js, row[js]))[:k]]
        top[r], top_vals[r] = best, row[best]
    return top, top_vals


def top_k_from_list(users: DataFrame, ranked: Sequence[tuple[str, str]],
                    users_per_batch: int = DEFAULT_USERS_PER_BATCH) -> DataFrame:
    """Fill each user's list from one ranked item list (popular, trending), skipping seen items.

    Args:
        users: ``[USER_ID, start int, need int, seen_ids array<string>]``: ranks ``start+1`` to
            ``start+need`` are filled with the first items of ``ranked`` not in ``seen_ids``.
        ranked: ``(ITEM_ID, reason)`` in rank order, distinct IDs, small (at most a few thousand).

    Returns:
        ``[USER_ID, rank, ITEM_ID, reason]``.
    """
    ids = np.array([item for item, _ in ranked], dtype=object)
    reasons = np.array([reason for _, reason in ranked], dtype=object)
    schema = pa.schema([pa.field(USER_ID, pa.string()), pa.field(RANK, pa.int32()),
                        pa.field(ITEM_ID, pa.string()), pa.field(REASON, pa.string())])
    users = users.select(USER_ID, START, NEED, SEEN_IDS)

    def fill(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pandas as pd

        index = pd.Index(ids)
        for batch in batches:
            for start in range(0, batch.num_rows, users_per_batch):
                block = batch.slice(start, users_per_batch)
                if block.num_rows and len(ids):
                    yield _fill_block(block, index, ids, reasons, schema)

    return users.mapInArrow(fill, f"{USER_ID} string, {RANK} int, {ITEM_ID} string, {REASON} string")


def _fill_block(block: pa.RecordBatch, index, ids, reasons, schema) -> pa.RecordBatch:
    b = block.num_rows
    seen = block.column(3)
    rows = pc.list_parent_indices(seen).to_numpy()
    pos = index.get_indexer(seen.flatten().to_numpy(zero_copy_only=False))
    allowed = np.ones((b, len(ids)), dtype=bool)
    allowed[rows[pos >= 0], pos[pos >= 0]] = False
    count = np.cumsum(allowed, axis=1)
    start = block.column(1).fill_null(0).to_numpy().astype(np.int64)
    need = block.column(2).fill_null(0).to_numpy().astype(np.int64)
    r, j = np.nonzero(allowed & (count <= need[:, None]))
    return pa.RecordBatch.from_arrays(
        [block.column(0).take(pa.array(r)), pa.array((start[r] + count[r, j]).astype(np.int32)),
         pa.array(ids[j], type=pa.string()), pa.array(reasons[j], type=pa.string())], schema=schema)
