"""Item-item co-occurrence, the Gram matrix XᵀX, on Spark without a self-join.

X is the users x items matrix of the prepared interactions, one value per (user, item): 1 for
"interacted" (binary) or the prepared confidence. For items i != j its Gram matrix G = XᵀX holds
the co-count ``C_ij`` (users who interacted with both, from binary X) and, when asked, the weighted
co-occurrence ``W_ij = sum_u x_ui x_uj``; its diagonal holds the item counts ``n_i`` and
``sum_u x_ui^2`` (:func:`item_counts`). SIMS, similar-items, EASE and SAR all start here.

How the work stays bounded:

1. **Caps** (:class:`Caps`, Personalize's SIMS featurization) run before any pair exists: items
   below a count percentile are dropped, items above one keep only their most recent users, users
   below a history-length percentile are dropped and users above one keep only their most recent
   items. Pairs cost ``sum_u h_u^2``, so the history cap bounds the heaviest users' share.
2. **Early pruning**: with ``min_count`` > 1, items with fewer than ``min_count`` users cannot reach
   that co-count and are removed before pairing; users left with one item add no pair.
3. **Row blocks, not pairs, cross the network**: the items are cut into ``blocks`` ranges of
   item indexes (default: one per core). Each user's history travels, as one row of arrays, to
   every block holding one of its items (at most ``min(h_u, blocks)`` copies, against ``h_u^2 / 2``
   pair rows for a self-join). A block's task then owns the *complete* rows of G for its items:
   scipy sparse products (``X_bᵀ X``, in compiled code, over sub-ranges of at most ``pair_budget``
   pair updates) sum every user's pairs without any shuffle of pairs.
4. Because the rows are complete in one task, ``co_count >= min_count``, the similarity and the
   top-K per item (:func:`top_similar`) are applied right there: only the kept neighbours leave
   the executors. :func:`gram_pairs` returns the upper triangle itself (EASE needs G).

The naive alternative, a self-join of the interactions on the user, materialises every one of the
``sum_u h_u^2 / 2`` pairs as a Spark row before grouping (:func:`naive_gram_pairs`, kept as the
reference of ``bench/bench_related.py`` and the tests).

Similarities (:func:`similarity_values`), for items i, j with counts ``n_i``, ``n_j``, co-count
``C``, ``N`` users:

* ``cooccurrence``: ``C / (n_i n_j)^p`` with ``p`` the popularity discount (SIMS): 0 is the raw
  co-count (popular items win), 0.5 the cosine of the binary vectors, 1 the lift;
* ``cosine``: ``W_ij / sqrt(sum_u x_ui^2 * sum_u x_uj^2)`` over the (weighted) values;
* ``jaccard``: ``C / (n_i + n_j - C)``;
* ``lift``: ``C / (n_i n_j)``;
* ``llr``: Dunning's log-likelihood ratio G² of the 2x2 table (k11 = C, k12 = n_i - C,
  k21 = n_j - C, k22 = N - n_i - n_j + C) as Mahout computes it; pairs that co-occur no more than
  chance (k11 N <= n_i n_j) score 0, since G² is also large for items that avoid each other.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Iterator, Mapping, Optional

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from batchrec import catalogue
from batchrec.columns import CONFIDENCE, ITEM_ID, ITEM_IDX, NEIGHBOUR_ID, TIMESTAMP, USER_ID
from batchrec.datasets.prepare import PERCENTILE_ACCURACY
from batchrec.errors import UsageError

log = logging.getLogger(__name__)

VALUE = "value"
HISTORY = "history"
BLOCK = "block"
ITEM_I = "item_i"
ITEM_J = "item_j"
CO_COUNT = "co_count"
CO_WEIGHT = "co_weight"
N_USERS = "n_users"
SUM_SQUARES = "sum_squares"
SCORE = "score"
RANK = "rank"
NEIGHBOUR_IDX = "neighbour_idx"
# Pair updates per scipy product; a product's result has at most this many entries (~12 bytes each).
DEFAULT_PAIR_BUDGET = 8_000_000
# Rows per Arrow batch handed back to Spark.
MAX_OUTPUT_ROWS = 1 << 20

COOCCURRENCE = "cooccurrence"
COSINE = "cosine"
JACCARD = "jaccard"
LIFT = "lift"
LLR = "llr"
SIMILARITIES = (COOCCURRENCE, COSINE, JACCARD, LIFT, LLR)

ITEM_NEIGHBOURS = "item_neighbours"
ITEM_NEIGHBOURS_SCHEMA = f"{ITEM_ID} string, {RANK} int, {NEIGHBOUR_ID} string, {SCORE} double"
MAX_NEIGHBOURS = 1000
# What ease and sar score a user's history with: [user_idx int, item_idx int, value float].
USER_HISTORY = catalogue.USER_HISTORY
USER_HISTORY_SCHEMA = catalogue.USER_HISTORY_SCHEMA


@dataclass(frozen=True)
class Caps:
    """History and item-count caps (Personalize's SIMS featurization parameters), each 0 to 1.

    A ``min_*`` percentile drops the users (items) below that percentile of history lengths (user
    counts); a ``max_*`` percentile keeps, for each user (item) above it, only its most recent
    items (users) up to that percentile's length. 0 and 1 switch a cap off.
    """

    min_user_history_length_percentile: float = 0.0
    max_user_history_length_percentile: float = 1.0
    min_item_interaction_count_percentile: float = 0.0
    max_item_interaction_count_percentile: float = 1.0


CAP_PARAMS = tuple(f.name for f in dataclasses.fields(Caps))


def caps_of(params: Mapping) -> Caps:
    """The :class:`Caps` named in a recipe's parameters."""
    return Caps(**{name: float(params[name]) for name in CAP_PARAMS})












# ---------------------------------------------------------------- histories and caps

def user_item_values(prepared: DataFrame, item_map: DataFrame, binary: bool = True) -> DataFrame:
    """One row per prepared (user, item) with the item's index.

    Args:
        prepared: ``[USER_ID, ITEM_ID, confidence, TIMESTAMP]``, one row per pair.
        item_map: ``[ITEM_ID, item_idx]``.
        binary: value 1.0 for every pair; else the confidence.

    Returns:
        DataFrame[USER_ID string, item_idx int, value double, TIMESTAMP long].
    """
    value = F.lit(1.0) if binary else F.col(CONFIDENCE)
    return prepared.join(item_map.select(ITEM_ID, ITEM_IDX), ITEM_ID).select(
        USER_ID, F.col(ITEM_IDX).cast("int").alias(ITEM_IDX), value.cast("double").alias(VALUE),
        F.col(TIMESTAMP).cast("long").alias(TIMESTAMP))


def apply_caps(histories: DataFrame, caps: Caps) -> tuple[DataFrame, dict]:
    """Apply the item-count caps, then the history-length caps, to :func:`user_item_values` rows.

    "Most recent" orders by TIMESTAMP descending, then by the other key ascending, so the same data
    always keeps the same rows.

    Returns:
        (the kept rows, the cut-offs used: ``{"item_count_min": .., "item_count_max": ..,
        "history_length_min": .., "history_length_max": ..}``, None where a cap is off).
    """
    stats: dict = {}
    histories, stats["item_count_min"], stats["item_count_max"] = _cap(
        histories, ITEM_IDX, USER_ID, caps.min_item_interaction_count_percentile,
        caps.max_item_interaction_count_percentile)
    histories, stats["history_length_min"], stats["history_length_max"] = _cap(
        histories, USER_ID, ITEM_IDX, caps.min_user_history_length_percentile,
        caps.max_user_history_length_percentile)
    if any(v is not None for v in stats.values()):
        log.info("co-occurrence caps: %s", stats)
    return histories, stats


def _cap(rows: DataFrame, key: str, other: str, low: float, high: float):
    """Drop ``key`` groups below the ``low`` percentile of group sizes, cut groups above ``high``."""
    if low <= 0 and high >= 1:
        return rows, None, None
    sizes = rows.groupBy(key).agg(F.count(F.lit(1)).alias("_size"))
    cuts = sizes.agg(F.percentile_approx("_size", F.array(F.lit(float(low)), F.lit(float(high))),
                                         PERCENTILE_ACCURACY)).first()[0]
    if cuts is None:  # no rows at all
        return rows, None, None
    lowest, highest = (int(cuts[0]) if low > 0 else None), (int(cuts[1]) if high < 1 else None)
    if lowest is not None and lowest > 1:
        rows = rows.join(sizes.where(F.col("_size") >= lowest).select(key), key, "left_semi")
    if highest is not None:
        recent_first = Window.partitionBy(key).orderBy(F.col(TIMESTAMP).desc(), F.col(other).asc())
        rows = (rows.withColumn("_recency", F.row_number().over(recent_first))
                .where(F.col("_recency") <= F.lit(max(highest, 1))).drop("_recency"))
    return rows, lowest, highest


def item_counts(histories: DataFrame) -> DataFrame:
    """The Gram diagonal: DataFrame[item_idx int, n_users long, sum_squares double]."""
    return histories.groupBy(ITEM_IDX).agg(
        F.count(F.lit(1)).cast("long").alias(N_USERS),
        F.sum(F.col(VALUE) * F.col(VALUE)).cast("double").alias(SUM_SQUARES))


# ---------------------------------------------------------------- the Gram matrix

def block_count(spark, blocks: int = 0) -> int:
    """``blocks``, or Spark's default parallelism when 0 (one row block per core)."""
    return blocks if blocks > 0 else max(1, spark.sparkContext.defaultParallelism)


def blocked_histories(histories: DataFrame, n_items: int, blocks: int) -> DataFrame:
    """Each user's history (users with at least 2 items) once per row block it touches.

    Block ``b`` holds the items with ``item_idx * blocks // n_items == b``; partition ``b`` holds
    block ``b`` alone (:func:`partition_keys`).

    Returns:
        DataFrame[block int, history array<struct<item_idx int, value double>>].
    """
    per_user = (
        histories.groupBy(USER_ID)
        .agg(F.collect_list(F.struct(F.col(ITEM_IDX).cast("int").alias(ITEM_IDX),
                                     F.col(VALUE).cast("double").alias(VALUE))).alias(HISTORY))
        .where(F.size(HISTORY) >= 2)
    )
    block_of = lambda x: F.floor(x[ITEM_IDX].cast("long") * F.lit(blocks) / F.lit(n_items)).cast("int")  # noqa: E731
    exploded = per_user.select(F.explode(F.array_distinct(F.transform(HISTORY, block_of))).alias(BLOCK), HISTORY)
    keys = partition_keys(histories.sparkSession, blocks)
    if keys is None:  # not expected: fall back to range partitioning (a sampling pass)
        return exploded.repartitionByRange(blocks, BLOCK).sortWithinPartitions(BLOCK)
    key = F.element_at(F.array(*[F.lit(k).cast("long") for k in keys]), F.col(BLOCK) + 1)
    return exploded.repartition(blocks, key).select(BLOCK, HISTORY)


def partition_keys(spark, blocks: int, tries: int = 64) -> Optional[list[int]]:
    """For each block ``b``, a long whose Spark hash partition among ``blocks`` is ``b``.

    ``repartition(n, col)`` sends a row to ``pmod(hash(col), n)`` (Murmur3, seed 42, the same as
    ``F.hash``); choosing keys that land one per partition gives every block its own task without
    a sampling pass (range partitioning) or collisions (hashing the block number itself).
    """
    candidates = spark.range(blocks * tries).select(
        "id", F.expr(f"pmod(hash(id), {blocks})").alias("_partition")).toArrow()
    ids = candidates.column("id").to_numpy()
    partition = candidates.column("_partition").to_numpy()
    keys = []
    for block in range(blocks):
        hits = ids[partition == block]
        if not len(hits):
            return None
        keys.append(int(hits[0]))
    return keys


def block_rows(block: int, n_items: int, blocks: int) -> tuple[int, int]:
    """The item_idx range ``[lo, hi)`` of a row block (the inverse of :func:`blocked_histories`)."""
    return -(-block * n_items // blocks), -(-(block + 1) * n_items // blocks)


def _grouped(batches: Iterator[pa.RecordBatch]) -> Iterator[tuple[int, pa.Array]]:
    """(block, histories) for each block of a partition sorted by block."""
    current, parts = None, []
    for batch in batches:
        keys = batch.column(0).to_numpy(zero_copy_only=False)
        if not len(keys):
            continue
        cuts = np.flatnonzero(np.diff(keys)) + 1
        starts, ends = np.concatenate([[0], cuts]), np.concatenate([cuts, [len(keys)]])
        for start, end in zip(starts, ends):
            key = int(keys[start])
            if current is not None and key != current:
                yield current, pa.concat_arrays(parts)
                parts = []
            current = key
            parts.append(batch.column(1).slice(start, end - start))
    if current is not None:
        yield current, pa.concat_arrays(parts)


def _flatten(histories: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """History lengths, item indexes and values of a list<struct<item_idx, value>> array."""
    import pyarrow.compute as pc

    lengths = pc.list_value_length(histories).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = histories.flatten()
    items = flat.field(0).to_numpy(zero_copy_only=False).astype(np.int64)
    values = flat.field(1).to_numpy(zero_copy_only=False).astype(np.float64)
    return lengths, items, values


def block_gram(lengths: np.ndarray, items: np.ndarray, values: np.ndarray, lo: int, hi: int,
               n_items: int, weighted: bool = False, pair_budget: int = DEFAULT_PAIR_BUDGET
               ) -> Iterator[tuple[np.ndarray, ...]]:
    """Complete rows ``lo <= i < hi`` of G over the given users, off the diagonal (numpy/scipy).

    Args:
        lengths: history length of each user, in order.
        items: the users' item indexes, concatenated (no item twice within one user).
        values: the matching values.
        lo, hi: the rows to compute.
        n_items: the number of columns (largest item_idx + 1).
        weighted: also return the sums of value products.
        pair_budget: rows are computed in sub-ranges of at most this many pair updates (at least one row).

    Yields:
        ``(item_i, item_j, co_count[, co_weight])`` arrays, every (i, j != i) with a co-count in
        exactly one of them, rows of one sub-range together.
    """
    import scipy.sparse as sp

    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    shape = (len(lengths), n_items)
    x = sp.csr_matrix((np.ones(len(items), np.int32), items, indptr), shape=shape)
    columns = x.tocsc()
    xw = sp.csr_matrix((values, items, indptr), shape=shape) if weighted else None
    columns_w = xw.tocsc() if weighted else None
    # Pair updates of row i: the history lengths of its users; cut the rows by that work.
    work = np.cumsum(np.asarray(columns[:, lo:hi].T @ lengths).astype(np.int64).ravel())
    start, n_rows = 0, hi - lo
    while start < n_rows:
        spent = work[start - 1] if start else 0
        end = max(start + 1, int(np.searchsorted(work, spent + pair_budget, side="right")))
        counts = _product(columns[:, lo + start:lo + end].T, x)
        rows = counts.row + (lo + start)
        off_diagonal = rows != counts.col
        out = [rows[off_diagonal], counts.col[off_diagonal].astype(np.int64),
               counts.data[off_diagonal].astype(np.int64)]
        if weighted:
            sums = _product(columns_w[:, lo + start:lo + end].T, xw)
            if sums.nnz != counts.nnz:  # positive values give the same pattern in the same order
                raise ValueError("co-occurrence values must be positive")
            out.append(sums.data[off_diagonal])
        if len(out[0]):
            yield tuple(out)
        start = end


def _product(left, right):
    product = (left.tocsr() @ right).tocsr()
    product.sum_duplicates()
    product.sort_indices()
    return product.tocoo()


def _n_items(histories: DataFrame, n_items: Optional[int]) -> int:
    if n_items is not None:
        return int(n_items)
    largest = histories.agg(F.max(ITEM_IDX)).first()[0]
    return 0 if largest is None else int(largest) + 1


def _prune(histories: DataFrame, min_count: int) -> DataFrame:
    """Drop items with fewer than ``min_count`` users: they cannot reach that co-count."""
    if min_count <= 1:
        return histories
    frequent = histories.groupBy(ITEM_IDX).count().where(F.col("count") >= min_count)
    return histories.join(frequent.select(ITEM_IDX), ITEM_IDX, "left_semi")


def gram_pairs(histories: DataFrame, min_count: int = 1, weighted: bool = False,
               n_items: Optional[int] = None, blocks: int = 0,
               pair_budget: int = DEFAULT_PAIR_BUDGET) -> DataFrame:
    """The upper triangle of XᵀX: co-counts (and weighted co-occurrences) of item pairs.

    Args:
        histories: ``[USER_ID, item_idx, value]``, at most one row per (user, item).
        min_count: keep pairs with at least this many co-interacting users.
        weighted: also sum ``x_ui * x_uj`` (``co_weight``).
        n_items: largest item_idx + 1 (computed when None).
        blocks: row blocks (0: one per core).
        pair_budget: pair updates per scipy product (bounds one product's memory).

    Returns:
        DataFrame[item_i int, item_j int, co_count long(, co_weight double)] with item_i < item_j.
    """
    n = _n_items(histories, n_items)
    blocks = block_count(histories.sparkSession, blocks)
    schema = _schema([(ITEM_I, pa.int32()), (ITEM_J, pa.int32()), (CO_COUNT, pa.int64())]
                     + ([(CO_WEIGHT, pa.float64())] if weighted else []))

    def pairs(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for block, history in _grouped(batches):
            lo, hi = block_rows(block, n, blocks)
            for arrays in block_gram(*_flatten(history), lo, hi, n, weighted, pair_budget):
                keep = (arrays[0] < arrays[1]) & (arrays[2] >= min_count)
                yield from _batches([a[keep] for a in arrays], schema)

    return blocked_histories(_prune(histories, min_count), max(n, 1), blocks).mapInArrow(pairs, _ddl(schema))


def top_similar(histories: DataFrame, counts: DataFrame, kind: str, k: int, min_count: int = 1,
                discount: float = 0.5, n_users: Optional[int] = None, blocks: int = 0,
                pair_budget: int = DEFAULT_PAIR_BUDGET) -> DataFrame:
    """The ``k`` most similar items of every item, computed where its Gram row is complete.

    Args:
        histories: ``[USER_ID, item_idx, value]`` (values used by ``cosine`` only).
        counts: :func:`item_counts` of ``histories`` (collected: one row per item).
        kind: a similarity of :data:`SIMILARITIES`.
        k: neighbours kept per item.
        min_count: pairs need at least this many co-interacting users.
        discount: the popularity discount ``p`` of ``cooccurrence``.
        n_users: users in the histories (``llr`` only; counted when None).
        blocks, pair_budget: as :func:`gram_pairs`.

    Returns:
        DataFrame[item_idx int, rank int, neighbour_idx int, score double]: positive scores, rank 1
        = best, by score descending then neighbour_idx ascending; never the item itself.
    """
    if kind not in SIMILARITIES:
        raise UsageError(f"similarity {kind!r}; expected one of {', '.join(SIMILARITIES)}")
    table = counts.select(ITEM_IDX, N_USERS, SUM_SQUARES).toArrow()  # one row per item
    idx = table.column(ITEM_IDX).to_numpy().astype(np.int64)
    n = int(idx.max()) + 1 if len(idx) else 0
    item_n, item_sq = np.zeros(n), np.zeros(n)
    item_n[idx] = table.column(N_USERS).to_numpy()
    item_sq[idx] = table.column(SUM_SQUARES).to_numpy()
    if kind == LLR and n_users is None:
        n_users = count_users(histories)
    blocks = block_count(histories.sparkSession, blocks)
    weighted = kind == COSINE
    payload = histories.sparkSession.sparkContext.broadcast((item_n, item_sq))
    schema = _schema([(ITEM_IDX, pa.int32()), (RANK, pa.int32()), (NEIGHBOUR_IDX, pa.int32()),
                      (SCORE, pa.float64())])

    def neighbours(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        counts_n, counts_sq = payload.value
        for block, history in _grouped(batches):
            lo, hi = block_rows(block, n, blocks)
            for arrays in block_gram(*_flatten(history), lo, hi, n, weighted, pair_budget):
                i, j, c = arrays[:3]
                w = arrays[3] if weighted else None
                score = similarity_values(kind, c, w, counts_n[i], counts_n[j], counts_sq[i], counts_sq[j],
                                          n_users, discount)
                keep = (c >= min_count) & (score > 0)
                yield from _batches(top_per_row(i[keep], j[keep], score[keep], k), schema)

    return blocked_histories(_prune(histories, min_count), max(n, 1), blocks).mapInArrow(neighbours, _ddl(schema))


def top_per_row(rows: np.ndarray, cols: np.ndarray, scores: np.ndarray, k: int) -> list[np.ndarray]:
    """The ``k`` best entries of each row: [row, rank, col, score] by score desc, then col asc."""
    order = np.lexsort((cols, -scores, rows))
    rows, cols, scores = rows[order], cols[order], scores[order]
    first = np.concatenate([[0], np.flatnonzero(np.diff(rows)) + 1]) if len(rows) else np.zeros(0, np.int64)
    starts = np.repeat(first, np.diff(np.concatenate([first, [len(rows)]])))
    rank = np.arange(len(rows)) - starts + 1
    keep = rank <= k
    return [rows[keep], rank[keep], cols[keep], scores[keep]]


def similarity_values(kind: str, c: np.ndarray, w: Optional[np.ndarray], ni: np.ndarray, nj: np.ndarray,
                      si: np.ndarray, sj: np.ndarray, n_users: Optional[int], discount: float) -> np.ndarray:
    """Vectorised similarities of :data:`SIMILARITIES` (see the module docstring)."""
    c = c.astype(np.float64)
    if kind == COOCCURRENCE:
        return c / (ni * nj) ** discount
    if kind == COSINE:
        return w / np.sqrt(si * sj)
    if kind == JACCARD:
        return c / (ni + nj - c)
    if kind == LIFT:
        return c / (ni * nj)
    if kind == LLR:
        n = float(n_users)
        score = log_likelihood_ratio(c, ni - c, nj - c, n - ni - nj + c)
        return np.where(c * n > ni * nj, score, 0.0)
    raise UsageError(f"similarity {kind!r}; expected one of {', '.join(SIMILARITIES)}")


def _xlogx(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0)), 0.0)


def _entropy(*counts: np.ndarray) -> np.ndarray:
    """Mahout's unnormalised entropy: xlogx(sum) - sum(xlogx)."""
    result = _xlogx(sum(counts))
    for c in counts:
        result = result - _xlogx(c)
    return result


def log_likelihood_ratio(k11, k12, k21, k22) -> np.ndarray:
    """Dunning's G² of 2x2 contingency tables, as Mahout's ``LogLikelihood.logLikelihoodRatio``."""
    k11, k12, k21, k22 = (np.asarray(v, dtype=np.float64) for v in (k11, k12, k21, k22))
    rows = _entropy(k11 + k12, k21 + k22)
    cols = _entropy(k11 + k21, k12 + k22)
    matrix = _entropy(k11, k12, k21, k22)
    # Round-off can make the difference slightly negative for independent counts.
    return np.maximum(0.0, 2.0 * (rows + cols - matrix))


def _schema(fields) -> pa.Schema:
    return pa.schema([pa.field(name, kind) for name, kind in fields])


_DDL = {pa.int32(): "int", pa.int64(): "long", pa.float64(): "double"}


def _ddl(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name} {_DDL[f.type]}" for f in schema)


def _batches(arrays, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    for start in range(0, len(arrays[0]), MAX_OUTPUT_ROWS):
        yield pa.RecordBatch.from_arrays(
            [pa.array(a[start:start + MAX_OUTPUT_ROWS]).cast(f.type) for a, f in zip(arrays, schema)],
            schema=schema)


def naive_gram_pairs(histories: DataFrame, min_count: int = 1, weighted: bool = False) -> DataFrame:
    """The same result as :func:`gram_pairs` by a self-join on the user (reference and benchmark)."""
    left = histories.select(USER_ID, F.col(ITEM_IDX).alias(ITEM_I), F.col(VALUE).alias("_vi"))
    right = histories.select(USER_ID, F.col(ITEM_IDX).alias(ITEM_J), F.col(VALUE).alias("_vj"))
    sums = [F.count(F.lit(1)).cast("long").alias(CO_COUNT)]
    sums += [F.sum(F.col("_vi") * F.col("_vj")).cast("double").alias(CO_WEIGHT)] if weighted else []
    pairs = (left.join(right, USER_ID).where(F.col(ITEM_I) < F.col(ITEM_J))
             .groupBy(ITEM_I, ITEM_J).agg(*sums))
    return pairs.where(F.col(CO_COUNT) >= F.lit(min_count)) if min_count > 1 else pairs


# ---------------------------------------------------------------- neighbours

def with_ids(top: DataFrame, item_map: DataFrame) -> DataFrame:
    """:func:`top_similar` rows with string IDs: the ``item_neighbours`` artifact.

    Returns:
        DataFrame[ITEM_ID string, rank int, NEIGHBOUR_ID string, score double]
        (:data:`ITEM_NEIGHBOURS_SCHEMA`).
    """
    ids = item_map.select(ITEM_ID, ITEM_IDX)
    neighbour_ids = item_map.select(F.col(ITEM_ID).alias(NEIGHBOUR_ID), F.col(ITEM_IDX).alias(NEIGHBOUR_IDX))
    return top.join(ids, ITEM_IDX).join(neighbour_ids, NEIGHBOUR_IDX).select(
        ITEM_ID, F.col(RANK).cast("int").alias(RANK), NEIGHBOUR_ID, F.col(SCORE).cast("double").alias(SCORE))


def count_users(histories: DataFrame) -> int:
    """Distinct users of ``histories`` (one small aggregation)."""
    return int(histories.agg(F.countDistinct(USER_ID)).first()[0])
