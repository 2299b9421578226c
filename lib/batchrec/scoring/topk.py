"""Exact top-k per user without a users x items cross join.

The item side of a model is small (at most a few hundred thousand rows), so it is collected once on
the driver into one float32 matrix and broadcast. Users are scored on the executors in blocks:
Arrow batches (``mapInArrow``) of at most ``users_per_batch`` rows, one BLAS matrix product per
block, seen items masked inside the block, and ``argpartition`` to keep the k best per row. No
Python code runs per (user, item) pair and no row of the full score matrix ever leaves the block.

A filter (``batchrec.scoring.masks``) is applied inside the block too, before the top-k cut, so a
user still gets k items whenever k pass; a user with fewer can be backfilled, in the same block,
with items of a ranked list (popular) that pass the filter.

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
from batchrec.scoring.masks import FILTER_COLUMNS, CollectedFilter, ItemMask, block_allowed, item_mask

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
# The float32 product picks k + RESCORE_MARGIN candidates per user, which are then scored again in
# float64, one (user, item) pair at a time. BLAS rounds a product differently with the block's shape,
# so without this the last bits of a score, and the order of two items one rounding apart, would
# depend on how the users were split into blocks (partitioning, users_per_batch, catalogue size).
RESCORE_MARGIN = 8
# float64 cells gathered at once while re-scoring (32 MB).
MAX_RESCORE_CELLS = 1 << 22


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
    item_filter: Optional[CollectedFilter] = None,
) -> DataFrame:
    """Top ``k`` items per user by dot product, exact, seen items excluded.

    Args:
        user_factors: ``[user_idx, features]``, plus the filter columns of
            ``batchrec.scoring.masks.attach_filter_columns`` when ``item_filter`` has per-request parts.
        item_factors: ``[item_idx, features]`` (optionally ``ITEM_ID`` for the tie order).
        k: items per user; a user gets fewer only when fewer unseen items exist.
        exclude: ``[user_idx, item_idx]`` pairs that must not be recommended.
        item_bonus: ``[item_idx, bonus]`` added to the scores (see ``batchrec.scoring.exploration``).
        users_per_batch: users scored per numpy block.
        item_filter: only items this filter allows (needs ``ITEM_ID`` in ``item_factors``).

    Returns:
        ``[user_idx, rank, item_idx, score]`` (plus ``explored`` when ``item_bonus`` is given),
        rank 1..k by score descending, then item ID ascending.
    """
    users = user_factors.select(USER_IDX, FEATURES,
                                *[c for c in FILTER_COLUMNS if c in user_factors.columns])
    if exclude is not None:
        seen = exclude.groupBy(USER_IDX).agg(F.collect_set(ITEM_IDX).alias(SEEN))
        users = users.join(seen, USER_IDX, "left")
    matrix = collect_item_matrix(item_factors, item_bonus)
    return score_blocks(users, matrix, k, users_per_batch, item_filter=item_filter)


@dataclass(frozen=True)
class _Kernel:
    """Everything a scoring task needs, broadcast once."""

    neg_vectors: np.ndarray  # scores are negated so argpartition sorts ascending
    item_idx: np.ndarray
    item_ids: Optional[np.ndarray]
    bonus: Optional[np.ndarray]
    position: np.ndarray  # item_idx -> matrix position
    mask: Optional[ItemMask]  # the filter over matrix positions
    fill_ids: Optional[np.ndarray]  # backfill list, rank order
    fill_reasons: Optional[np.ndarray]
    fill_outside: Optional[np.ndarray]  # bool: the list item has no row in the matrix
    fill_mask: Optional[ItemMask]  # the filter over list positions


def score_blocks(users: DataFrame, matrix: ItemMatrix, k: int,
                 users_per_batch: int = DEFAULT_USERS_PER_BATCH,
                 item_filter: Optional[CollectedFilter] = None,
                 backfill: Optional[Sequence[tuple[str, str]]] = None,
                 key: Optional[str] = None) -> DataFrame:
    """Score ``users`` (``user_idx, features`` and optional ``seen`` item_idx array, ``USER_ID``).

    ``USER_ID`` passes through when present; ``ITEM_ID`` is added when the matrix knows the IDs.

    Args:
        users: as above, plus the filter columns (``batchrec.scoring.masks.attach_filter_columns``)
            when ``item_filter`` has per-request parts, and optionally ``seen_ids array<string>``
            (seen items outside the matrix, for the backfill).
        matrix: the broadcast item side.
        k: items per user.
        users_per_batch: users per numpy block.
        item_filter: items the filter rejects are masked before the top-k cut (needs item IDs).
        backfill: ``(ITEM_ID, reason)`` in rank order. A user left with fewer than k items gets the
            next list items that pass the filter and are not seen; as such a user already has every
            allowed unseen matrix item, only list items outside the matrix can be added. None:
            such users get fewer items.
        key: a request key column passed through to the output (e.g. the input line when one user
            has several requests with different filter values).

    Returns:
        ``[user_idx, USER_ID?, key?, rank, item_idx, ITEM_ID?, score, explored?, reason?]``: ``reason`` only
        with ``backfill`` (null for scored items, the list's reason for backfilled ones, whose
        ``score`` and ``item_idx`` are null).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if (item_filter is not None or backfill is not None) and matrix.item_ids is None:
        raise JobError("item_factors: a filter or a backfill needs the ITEM_ID of each item")
    spark = users.sparkSession
    with_user_id = USER_ID in users.columns
    with_seen = SEEN in users.columns
    columns = [USER_IDX, FEATURES] + ([SEEN] if with_seen else []) + ([USER_ID] if with_user_id else [])
    key_field = _key_field(users, key, columns)
    columns += [key] if key_field is not None else []
    columns += [c for c in FILTER_COLUMNS if c in users.columns and item_filter is not None]
    columns += [SEEN_IDS] if backfill is not None and SEEN_IDS in users.columns else []
    users = users.select(*columns)

    n = matrix.size
    rows_per_block = max(1, min(users_per_batch, MAX_BLOCK_CELLS // max(n, 1)))
    kernel = _kernel(matrix, item_filter, backfill)
    payload = spark.sparkContext.broadcast(kernel)

    fields = [pa.field(USER_IDX, pa.int32())]
    fields += [pa.field(USER_ID, pa.string())] if with_user_id else []
    fields += [key_field] if key_field is not None else []
    fields += [pa.field(RANK, pa.int32()), pa.field(ITEM_IDX, pa.int32())]
    fields += [pa.field(ITEM_ID, pa.string())] if matrix.item_ids is not None else []
    fields += [pa.field(SCORE, pa.float64())]
    fields += [pa.field(EXPLORED, pa.bool_())] if matrix.bonus is not None else []
    fields += [pa.field(REASON, pa.string())] if backfill is not None else []
    out_schema = pa.schema(fields)

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        kern = payload.value
        indexes = _Indexes(kern)
        for batch in batches:
            for start in range(0, batch.num_rows, rows_per_block):
                block = batch.slice(start, rows_per_block)
                if block.num_rows and n:
                    yield from _score_block(block, kern, k, out_schema, indexes)

    return users.mapInArrow(score, _ddl(out_schema, users))


def _key_field(users: DataFrame, key: Optional[str], taken: Sequence[str]) -> Optional[pa.Field]:
    """The Arrow field of a pass-through key column (None when there is none to add)."""
    if key is None or key in taken:
        return None
    if key not in users.columns:
        raise JobError(f"the scored rows have no key column {key!r}")
    from pyspark.sql.pandas.types import to_arrow_type

    return pa.field(key, to_arrow_type(users.schema[key].dataType))


def _ddl(schema: pa.Schema, users: DataFrame) -> str:
    """Spark DDL of an output schema; pass-through columns keep their input type."""
    return ", ".join(f"{f.name} {users.schema[f.name].dataType.simpleString()}" if f.type not in _DDL
                     else f"{f.name} {_DDL[f.type]}" for f in schema)


def _passed_through(block: pa.RecordBatch, schema: pa.Schema, rows: pa.Array) -> dict[str, pa.Array]:
    """The request columns copied to the output rows (``USER_ID``, a key), by name."""
    names = block.schema.names
    known = {USER_IDX, RANK, ITEM_IDX, ITEM_ID, SCORE, EXPLORED, REASON}
    return {f.name: block.column(names.index(f.name)).take(rows).cast(f.type)
            for f in schema if f.name not in known and f.name in names}


def _kernel(matrix: ItemMatrix, item_filter: Optional[CollectedFilter],
            backfill: Optional[Sequence[tuple[str, str]]]) -> _Kernel:
    mask = item_mask(item_filter, matrix.item_ids) if item_filter is not None else None
    fill_ids = fill_reasons = fill_outside = fill_mask = None
    if backfill is not None:
        fill_ids = np.array([item for item, _ in backfill], dtype=object)
        fill_reasons = np.array([reason for _, reason in backfill], dtype=object)
        fill_outside = ~np.isin(fill_ids, matrix.item_ids)
        fill_mask = item_mask(item_filter, fill_ids) if item_filter is not None else None
    return _Kernel(np.ascontiguousarray(-matrix.vectors), matrix.item_idx, matrix.item_ids, matrix.bonus,
                   _position_lookup(matrix.item_idx), mask, fill_ids, fill_reasons, fill_outside, fill_mask)


class _Indexes:
    """pandas Indexes over the kernel's ID arrays, built at most once per task."""

    def __init__(self, kernel: _Kernel):
        self.kernel = kernel
        self._items = self._fill = None

    @property
    def items(self):
        if self._items is None:
            import pandas as pd

            self._items = pd.Index(self.kernel.item_ids)
        return self._items

    @property
    def fill(self):
        if self._fill is None:
            import pandas as pd

            self._fill = pd.Index(self.kernel.fill_ids)
        return self._fill


_DDL = {pa.int32(): "int", pa.string(): "string", pa.float64(): "double", pa.bool_(): "boolean"}


def _position_lookup(item_idx: np.ndarray) -> np.ndarray:
    """Dense item_idx -> matrix position array (-1: not in the matrix)."""
    if len(item_idx) and item_idx.min() < 0:
        raise JobError("item_factors: negative item_idx; expected indexes from 0")
    lookup = np.full(int(item_idx.max()) + 1 if len(item_idx) else 0, -1, dtype=np.int64)
    lookup[item_idx] = np.arange(len(item_idx))
    return lookup


def _score_block(block: pa.RecordBatch, kern: _Kernel, k: int, schema: pa.Schema,
                 indexes: _Indexes) -> list[pa.RecordBatch]:
    neg_v, item_idx, item_ids, bonus, pos_of = (kern.neg_vectors, kern.item_idx, kern.item_ids,
                                                kern.bonus, kern.position)
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
    if kern.mask is not None:
        _mask_out(neg, block_allowed(kern.mask, block, indexes.items if kern.mask.per_request else None))
    base = neg
    if bonus is not None:
        neg = neg - bonus[None, :]
    top_pos, top_neg = _rescored_top_k(neg, users, neg_v, bonus, k)
    valid = np.isfinite(top_neg)
    r, j = np.nonzero(valid)  # excluded items (inf) sort last, so valid entries are a prefix
    pos = top_pos[r, j]
    columns = {USER_IDX: block.column(names.index(USER_IDX)).take(pa.array(r)),
               RANK: pa.array((j + 1).astype(np.int32)),
               ITEM_IDX: pa.array(item_idx[pos].astype(np.int32)),
               SCORE: pa.array((-top_neg[r, j]).astype(np.float64))}
    columns.update(_passed_through(block, schema, pa.array(r)))
    if item_ids is not None:
        columns[ITEM_ID] = pa.array(item_ids[pos], type=pa.string())
    if bonus is not None:
        columns[EXPLORED] = pa.array(_explored(base, bonus, r, pos, k))
    if kern.fill_ids is not None:
        columns[REASON] = pa.nulls(len(r), pa.string())  # scored: the caller names model/exploration
    scored = pa.RecordBatch.from_arrays([columns[f.name] for f in schema], schema=schema)
    if kern.fill_ids is None:
        return [scored]
    return [scored, _backfill_block(block, kern, valid.sum(axis=1), k, schema, indexes)]


def _rescored_top_k(neg: np.ndarray, users: np.ndarray, neg_v: np.ndarray, bonus: Optional[np.ndarray],
                    k: int) -> tuple[np.ndarray, np.ndarray]:
    """``select_top_k`` over exact float64 scores, independent of the block's shape.

    The block product (float32, BLAS) chooses ``k + RESCORE_MARGIN`` candidates; each candidate is
    scored again as a float64 dot product of its two float32 vectors (the products are exact and
    the sum runs in a fixed order), and the best k by (value, position) are kept. Excluded
    candidates (+inf) stay +inf.
    """
    cand, approx = select_top_k(neg, min(neg.shape[1], k + RESCORE_MARGIN))
    exact = np.empty(cand.shape, dtype=np.float64)
    step = max(1, MAX_RESCORE_CELLS // max(1, cand.shape[1] * neg_v.shape[1]))
    for s in range(0, len(cand), step):
        u = users[s:s + step].astype(np.float64)[:, None, :]
        exact[s:s + step] = (u * neg_v[cand[s:s + step]].astype(np.float64)).sum(axis=2)
    if bonus is not None:
        exact -= bonus[cand]
    exact[~np.isfinite(approx)] = np.inf
    order = np.lexsort((cand, exact), axis=1)[:, :k]
    return np.take_along_axis(cand, order, axis=1), np.take_along_axis(exact, order, axis=1)


def _mask_out(neg: np.ndarray, allowed: Optional[np.ndarray]) -> None:
    """Give items a request may not get the score that sorts last (+inf, negated)."""
    if allowed is None:
        return
    if allowed.ndim == 1:
        neg[:, ~allowed] = np.inf
    else:
        neg[~allowed] = np.inf


def _backfill_block(block: pa.RecordBatch, kern: _Kernel, count: np.ndarray, k: int, schema: pa.Schema,
                    indexes: _Indexes) -> pa.RecordBatch:
    """Rows for users with fewer than k scored items: the next backfill items they may get.

    A short user already holds every allowed, unseen matrix item (they all have finite scores and
    the top k keeps every finite one when there are fewer than k), so candidates are the list items
    outside the matrix that pass the filter and are not in the user's ``seen_ids``.
    """
    names = block.schema.names
    short = np.flatnonzero(count < k)
    ok = np.broadcast_to(kern.fill_outside, (len(short), len(kern.fill_ids))).copy()
    if len(short) and kern.fill_mask is not None:
        allowed = block_allowed(kern.fill_mask, block, indexes.fill if kern.fill_mask.per_request else None)
        if allowed is not None:
            ok &= allowed[short] if allowed.ndim == 2 else allowed
    if len(short) and SEEN_IDS in names:
        seen = block.column(names.index(SEEN_IDS))
        rows = pc.list_parent_indices(seen).to_numpy()
        pos = indexes.fill.get_indexer(seen.flatten().to_numpy(zero_copy_only=False))
        where = np.full(block.num_rows, -1, dtype=np.int64)
        where[short] = np.arange(len(short))
        hit = (pos >= 0) & (where[rows] >= 0)
        ok[where[rows[hit]], pos[hit]] = False
    cum = np.cumsum(ok, axis=1)
    need = k - count[short]
    rr, jj = np.nonzero(ok & (cum <= need[:, None]))
    rows = short[rr]
    columns = {USER_IDX: block.column(names.index(USER_IDX)).take(pa.array(rows, type=pa.int64())),
               RANK: pa.array((count[rows] + cum[rr, jj]).astype(np.int32)),
               ITEM_IDX: pa.nulls(len(rows), pa.int32()),
               ITEM_ID: pa.array(kern.fill_ids[jj], type=pa.string()),
               SCORE: pa.nulls(len(rows), pa.float64()),
               EXPLORED: pa.array(np.zeros(len(rows), dtype=bool)),
               REASON: pa.array(kern.fill_reasons[jj], type=pa.string())}
    columns.update(_passed_through(block, schema, pa.array(rows, type=pa.int64())))
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
                    users_per_batch: int = DEFAULT_USERS_PER_BATCH,
                    item_filter: Optional[CollectedFilter] = None, key: Optional[str] = None) -> DataFrame:
    """Fill each user's list from one ranked item list (popular, trending), skipping seen items.

    Args:
        users: ``[USER_ID, start int, need int, seen_ids array<string>]``: ranks ``start+1`` to
            ``start+need`` are filled with the first items of ``ranked`` not in ``seen_ids``; plus
            the filter columns (``batchrec.scoring.masks``) when ``item_filter`` has per-request parts.
        ranked: ``(ITEM_ID, reason)`` in rank order, distinct IDs, small (at most a few thousand).
        users_per_batch: users per numpy block.
        item_filter: only items this filter allows are used.
        key: a request key column passed through to the output.

    Returns:
        ``[USER_ID, key?, rank, ITEM_ID, reason]``.
    """
    ids = np.array([item for item, _ in ranked], dtype=object)
    reasons = np.array([reason for _, reason in ranked], dtype=object)
    key_field = _key_field(users, key, (USER_ID, START, NEED, SEEN_IDS))
    schema = pa.schema([pa.field(USER_ID, pa.string())] + ([key_field] if key_field is not None else [])
                       + [pa.field(RANK, pa.int32()), pa.field(ITEM_ID, pa.string()), pa.field(REASON, pa.string())])
    mask = item_mask(item_filter, ids) if item_filter is not None else None
    extra = [c for c in FILTER_COLUMNS if c in users.columns and mask is not None]
    extra += [key] if key_field is not None else []
    users = users.select(USER_ID, START, NEED, SEEN_IDS, *extra)
    payload = users.sparkSession.sparkContext.broadcast((ids, reasons, mask))

    def fill(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pandas as pd

        list_ids, list_reasons, list_mask = payload.value
        index = pd.Index(list_ids)
        for batch in batches:
            for start in range(0, batch.num_rows, users_per_batch):
                block = batch.slice(start, users_per_batch)
                if block.num_rows and len(list_ids):
                    yield _fill_block(block, index, list_ids, list_reasons, list_mask, schema)

    return users.mapInArrow(fill, _ddl(schema, users))


def _fill_block(block: pa.RecordBatch, index, ids, reasons, mask: Optional[ItemMask], schema) -> pa.RecordBatch:
    b = block.num_rows
    seen = block.column(3)
    rows = pc.list_parent_indices(seen).to_numpy()
    pos = index.get_indexer(seen.flatten().to_numpy(zero_copy_only=False))
    allowed = np.ones((b, len(ids)), dtype=bool)
    allowed[rows[pos >= 0], pos[pos >= 0]] = False
    if mask is not None:
        passing = block_allowed(mask, block, index)
        if passing is not None:
            allowed &= passing
    count = np.cumsum(allowed, axis=1)
    start = block.column(1).fill_null(0).to_numpy().astype(np.int64)
    need = block.column(2).fill_null(0).to_numpy().astype(np.int64)
    r, j = np.nonzero(allowed & (count <= need[:, None]))
    columns = {RANK: pa.array((start[r] + count[r, j]).astype(np.int32)), ITEM_ID: pa.array(ids[j], type=pa.string()),
               REASON: pa.array(reasons[j], type=pa.string())}
    columns.update(_passed_through(block, schema, pa.array(r)))
    return pa.RecordBatch.from_arrays([columns[f.name] for f in schema], schema=schema)
