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
3. **Block-sparse products**: each user's history becomes one row (item indexes and values); per
   Arrow batch (``mapInArrow``) users are grouped into chunks of at most ``pair_budget`` pairs and
   each chunk's Gram ``X_cᵀ X_c`` is one scipy sparse product in compiled code, which already sums
   the pairs the chunk's users share (the combiner). Only the upper triangle (i < j) leaves.
4. Spark sums the chunks' partial Grams per (i, j) (partial aggregation before the shuffle) and
   keeps ``co_count >= min_count`` right there, before similarities or mirroring.

The naive alternative, a self-join of the interactions on the user, materialises every one of the
``sum_u h_u^2 / 2`` pairs as a Spark row before grouping (:func:`naive_gram_pairs`, kept as the
reference of ``bench/bench_related.py`` and the tests).

Similarities (:func:`similarity`), for items i, j with counts ``n_i``, ``n_j``, co-count ``C``,
``N`` users:

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
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from batchrec.columns import CONFIDENCE, ITEM_ID, ITEM_IDX, NEIGHBOUR_ID, TIMESTAMP, USER_ID, USER_IDX
from batchrec.datasets.prepare import PERCENTILE_ACCURACY
from batchrec.errors import UsageError

log = logging.getLogger(__name__)

VALUE = "value"
HISTORY = "history"
ITEM_I = "item_i"
ITEM_J = "item_j"
CO_COUNT = "co_count"
CO_WEIGHT = "co_weight"
N_USERS = "n_users"
SUM_SQUARES = "sum_squares"
SCORE = "score"
RANK = "rank"
NEIGHBOUR_IDX = "neighbour_idx"
# Pairs per scipy product: ~16 bytes per partial-Gram entry, so a chunk stays near 100 MB at worst.
DEFAULT_PAIR_BUDGET = 4_000_000
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
USER_HISTORY = "user_history"
USER_HISTORY_SCHEMA = f"{USER_IDX} int, {ITEM_IDX} int, {VALUE} float"


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
CAP_PARAM_TYPES = {name: float for name in CAP_PARAMS}


def caps_of(params: Mapping) -> Caps:
    """The :class:`Caps` named in a recipe's parameters."""
    return Caps(**{name: float(params[name]) for name in CAP_PARAMS})


def cap_defaults(section) -> dict:
    """The four cap parameters of a settings section."""
    return {name: getattr(section, name) for name in CAP_PARAMS}


def check_caps(recipe: str, params: Mapping) -> None:
    """Raises UsageError for a cap outside [0, 1] or a min above its max."""
    for name in CAP_PARAMS:
        if not 0.0 <= params[name] <= 1.0:
            raise UsageError(f"parameter {name}={params[name]} for recipe {recipe}; expected 0 to 1")
    for low, high in ((CAP_PARAMS[0], CAP_PARAMS[1]), (CAP_PARAMS[2], CAP_PARAMS[3])):
        if params[low] > params[high]:
            raise UsageError(f"parameters {low}={params[low]} > {high}={params[high]} for recipe "
                             f"{recipe}; expected the minimum percentile at most the maximum")


def check_choice(recipe: str, name: str, value: str, choices) -> None:
    """Raises UsageError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise UsageError(f"parameter {name}={value!r} for recipe {recipe}; expected one of "
                         f"{', '.join(choices)}")


def check_at_least(recipe: str, params: Mapping, minimums: Mapping) -> None:
    """Raises UsageError for a parameter below its minimum."""
    for name, minimum in minimums.items():
        if params[name] < minimum:
            raise UsageError(f"parameter {name}={params[name]} for recipe {recipe}; "
                             f"expected >= {minimum}")


def check_neighbours(recipe: str, params: Mapping, name: str = "num_neighbours") -> None:
    """Raises UsageError unless 1 <= ``params[name]`` <= :data:`MAX_NEIGHBOURS`."""
    if not 1 <= params[name] <= MAX_NEIGHBOURS:
        raise UsageError(f"parameter {name}={params[name]} for recipe {recipe}; expected 1 to "
                         f"{MAX_NEIGHBOURS}")


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

def gram_pairs(histories: DataFrame, min_count: int = 1, weighted: bool = False,
               pair_budget: int = DEFAULT_PAIR_BUDGET) -> DataFrame:
    """The upper triangle of XᵀX: co-counts (and weighted co-occurrences) of item pairs.

    Args:
        histories: ``[USER_ID, item_idx, value]``, at most one row per (user, item).
        min_count: keep pairs with at least this many co-interacting users.
        weighted: also sum ``x_ui * x_uj`` (``co_weight``).
        pair_budget: pairs per scipy product (bounds the memory of one chunk).

    Returns:
        DataFrame[item_i int, item_j int, co_count long(, co_weight double)] with item_i < item_j.
    """
    if min_count > 1:  # an item with fewer users cannot reach min_count with anyone
        frequent = histories.groupBy(ITEM_IDX).count().where(F.col("count") >= min_count)
        histories = histories.join(frequent.select(ITEM_IDX), ITEM_IDX, "left_semi")
    per_user = (
        histories.groupBy(USER_ID)
        .agg(F.collect_list(F.struct(F.col(ITEM_IDX).cast("int").alias(ITEM_IDX),
                                     F.col(VALUE).cast("double").alias(VALUE))).alias(HISTORY))
        .where(F.size(HISTORY) >= 2)
        .select(HISTORY)
    )
    fields = [pa.field(ITEM_I, pa.int32()), pa.field(ITEM_J, pa.int32()), pa.field(CO_COUNT, pa.int64())]
    fields += [pa.field(CO_WEIGHT, pa.float64())] if weighted else []
    schema = pa.schema(fields)

    def partial(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            history = batch.column(0)
            lengths = _list_lengths(history)
            flat = history.flatten()
            items = flat.field(0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
            values = flat.field(1).to_numpy(zero_copy_only=False)
            for arrays in partial_grams(lengths, items, values, weighted, pair_budget):
                for start in range(0, len(arrays[0]), MAX_OUTPUT_ROWS):
                    part = [pa.array(a[start:start + MAX_OUTPUT_ROWS]) for a in arrays]
                    yield pa.RecordBatch.from_arrays(
                        [p.cast(f.type) for p, f in zip(part, schema)], schema=schema)

    ddl = f"{ITEM_I} int, {ITEM_J} int, {CO_COUNT} long" + (f", {CO_WEIGHT} double" if weighted else "")
    sums = [F.sum(CO_COUNT).cast("long").alias(CO_COUNT)]
    sums += [F.sum(CO_WEIGHT).cast("double").alias(CO_WEIGHT)] if weighted else []
    reduced = per_user.mapInArrow(partial, ddl).groupBy(ITEM_I, ITEM_J).agg(*sums)
    return reduced.where(F.col(CO_COUNT) >= F.lit(min_count)) if min_count > 1 else reduced


def _list_lengths(array: pa.Array) -> np.ndarray:
    import pyarrow.compute as pc

    return pc.list_value_length(array).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)


def partial_grams(lengths: np.ndarray, items: np.ndarray, values: np.ndarray, weighted: bool,
                  pair_budget: int = DEFAULT_PAIR_BUDGET) -> Iterator[tuple[np.ndarray, ...]]:
    """Upper-triangle Gram entries of consecutive chunks of user histories (numpy/scipy only).

    Args:
        lengths: history length of each user, in order.
        items: the users' item indexes, concatenated (no item twice within one user).
        values: the matching values.
        weighted: also return the sums of value products.
        pair_budget: a chunk holds users until their ``sum h^2`` would exceed this (at least one).

    Yields:
        ``(item_i, item_j, co_count[, co_weight])`` arrays for one chunk, item_i < item_j; the same
        pair may appear in several chunks (Spark sums them).
    """
    import scipy.sparse as sp

    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    cost = np.cumsum(lengths.astype(np.int64) ** 2)
    start, n = 0, len(lengths)
    while start < n:
        spent = cost[start - 1] if start else 0
        end = max(start + 1, int(np.searchsorted(cost, spent + pair_budget, side="right")))
        lo, hi = offsets[start], offsets[end]
        if hi - lo >= 2:
            # Columns renumbered to the chunk's own items: the product's work and memory follow
            # the chunk, not the catalogue. np.unique sorts, so local order keeps i < j.
            local, columns = np.unique(items[lo:hi], return_inverse=True)
            indptr = offsets[start:end + 1] - lo
            shape = (end - start, len(local))
            ones = sp.csr_matrix((np.ones(hi - lo, np.int32), columns, indptr), shape=shape)
            counts = sp.triu(_gram(ones), k=1, format="coo")
            out = [local[counts.row], local[counts.col], counts.data.astype(np.int64)]
            if weighted:
                x = sp.csr_matrix((values[lo:hi].astype(np.float64), columns, indptr), shape=shape)
                weights = sp.triu(_gram(x), k=1, format="coo")
                # Positive values give the same sparsity pattern in the same canonical order.
                if weights.nnz != counts.nnz:
                    raise ValueError("co-occurrence values must be positive")
                out.append(weights.data)
            if len(out[0]):
                yield tuple(out)
        start = end


def _gram(x):
    gram = (x.T.tocsr() @ x).tocsr()
    gram.sum_duplicates()
    gram.sort_indices()
    return gram


def naive_gram_pairs(histories: DataFrame, min_count: int = 1, weighted: bool = False) -> DataFrame:
    """The same result as :func:`gram_pairs` by a self-join on the user (reference and benchmark)."""
    left = histories.select(USER_ID, F.col(ITEM_IDX).alias(ITEM_I), F.col(VALUE).alias("_vi"))
    right = histories.select(USER_ID, F.col(ITEM_IDX).alias(ITEM_J), F.col(VALUE).alias("_vj"))
    sums = [F.count(F.lit(1)).cast("long").alias(CO_COUNT)]
    sums += [F.sum(F.col("_vi") * F.col("_vj")).cast("double").alias(CO_WEIGHT)] if weighted else []
    pairs = (left.join(right, USER_ID).where(F.col(ITEM_I) < F.col(ITEM_J))
             .groupBy(ITEM_I, ITEM_J).agg(*sums))
    return pairs.where(F.col(CO_COUNT) >= F.lit(min_count)) if min_count > 1 else pairs


# ---------------------------------------------------------------- similarities and neighbours

def similarity(pairs: DataFrame, counts: DataFrame, kind: str, n_users: Optional[int] = None,
               discount: float = 0.5) -> DataFrame:
    """Score upper-triangle pairs with a similarity of :data:`SIMILARITIES` (see module docstring).

    Args:
        pairs: :func:`gram_pairs` rows (``co_weight`` needed for ``cosine``).
        counts: :func:`item_counts` rows.
        kind: the similarity's name.
        n_users: users in the histories (``llr`` only).
        discount: the popularity discount ``p`` of ``cooccurrence``.

    Returns:
        DataFrame[item_i int, item_j int, co_count long, score double], rows with score > 0.
    """
    if kind not in SIMILARITIES:
        raise UsageError(f"similarity {kind!r}; expected one of {', '.join(SIMILARITIES)}")
    if kind == LLR and n_users is None:
        raise ValueError("llr needs the number of users")
    ci = counts.select(F.col(ITEM_IDX).alias(ITEM_I), F.col(N_USERS).alias("_ni"),
                       F.col(SUM_SQUARES).alias("_si"))
    cj = counts.select(F.col(ITEM_IDX).alias(ITEM_J), F.col(N_USERS).alias("_nj"),
                       F.col(SUM_SQUARES).alias("_sj"))
    joined = pairs.join(F.broadcast(ci), ITEM_I).join(F.broadcast(cj), ITEM_J)
    c, ni, nj = (F.col(CO_COUNT).cast("double"), F.col("_ni").cast("double"), F.col("_nj").cast("double"))
    if kind == COOCCURRENCE:
        score = c / F.pow(ni * nj, F.lit(float(discount)))
    elif kind == COSINE:
        score = F.col(CO_WEIGHT) / F.sqrt(F.col("_si") * F.col("_sj"))
    elif kind == JACCARD:
        score = c / (ni + nj - c)
    elif kind == LIFT:
        score = c / (ni * nj)
    else:
        score = log_likelihood_ratio(c, ni - c, nj - c, F.lit(float(n_users)) - ni - nj + c)
        score = F.when(c * F.lit(float(n_users)) > ni * nj, score).otherwise(F.lit(0.0))
    return (joined.select(ITEM_I, ITEM_J, CO_COUNT, score.cast("double").alias(SCORE))
            .where(F.col(SCORE) > 0))


def _xlogx(x: Column) -> Column:
    return F.when(x > 0, x * F.log(x)).otherwise(F.lit(0.0))


def _entropy(*counts: Column) -> Column:
    """Mahout's unnormalised entropy: xlogx(sum) - sum(xlogx)."""
    total = counts[0]
    for c in counts[1:]:
        total = total + c
    result = _xlogx(total)
    for c in counts:
        result = result - _xlogx(c)
    return result


def log_likelihood_ratio(k11: Column, k12: Column, k21: Column, k22: Column) -> Column:
    """Dunning's G² of a 2x2 contingency table, as Mahout's ``LogLikelihood.logLikelihoodRatio``."""
    rows = _entropy(k11 + k12, k21 + k22)
    cols = _entropy(k11 + k21, k12 + k22)
    matrix = _entropy(k11, k12, k21, k22)
    # Round-off can make the difference slightly negative for independent counts.
    return F.greatest(F.lit(0.0), F.lit(2.0) * (rows + cols - matrix))


def mirrored(scored: DataFrame) -> DataFrame:
    """Both directions of upper-triangle pairs: DataFrame[item_idx, neighbour_idx, score]."""
    forward = scored.select(F.col(ITEM_I).alias(ITEM_IDX), F.col(ITEM_J).alias(NEIGHBOUR_IDX), SCORE)
    backward = scored.select(F.col(ITEM_J).alias(ITEM_IDX), F.col(ITEM_I).alias(NEIGHBOUR_IDX), SCORE)
    return forward.unionByName(backward)


def top_neighbours(scored: DataFrame, item_map: DataFrame, k: int) -> DataFrame:
    """The ``k`` best neighbours of every item as the ``item_neighbours`` artifact.

    Order: score descending, then neighbour ID ascending (item indexes follow ID order, see
    ``batchrec.datasets.indexing``, so the index breaks ties the same way).

    Args:
        scored: :func:`similarity` rows (upper triangle; mirrored here).
        item_map: ``[ITEM_ID, item_idx]``.
        k: neighbours kept per item.

    Returns:
        DataFrame[ITEM_ID string, rank int, NEIGHBOUR_ID string, score double] (:data:`ITEM_NEIGHBOURS_SCHEMA`).
    """
    return ranked_neighbours(mirrored(scored), item_map, k)


def ranked_neighbours(both: DataFrame, item_map: DataFrame, k: int) -> DataFrame:
    """Rank ``[item_idx, neighbour_idx, score]`` rows per item and keep the best ``k`` (see
    :func:`top_neighbours`); the self pair is never kept."""
    order = Window.partitionBy(ITEM_IDX).orderBy(F.col(SCORE).desc(), F.col(NEIGHBOUR_IDX).asc())
    top = (both.where(F.col(ITEM_IDX) != F.col(NEIGHBOUR_IDX))
           .withColumn(RANK, F.row_number().over(order)).where(F.col(RANK) <= F.lit(k)))
    ids = item_map.select(ITEM_ID, ITEM_IDX)
    neighbour_ids = item_map.select(F.col(ITEM_ID).alias(NEIGHBOUR_ID), F.col(ITEM_IDX).alias(NEIGHBOUR_IDX))
    return top.join(ids, ITEM_IDX).join(neighbour_ids, NEIGHBOUR_IDX).select(
        ITEM_ID, F.col(RANK).cast("int").alias(RANK), NEIGHBOUR_ID, F.col(SCORE).cast("double").alias(SCORE))


def count_users(histories: DataFrame) -> int:
    """Distinct users of ``histories`` (one small aggregation)."""
    return int(histories.agg(F.countDistinct(USER_ID)).first()[0])
