"""similar-items: related items from co-occurrence blended with item-metadata similarity.

As Personalize's Similar-Items, it uses the interactions and the Items dataset, so that cold items
(few or no interactions) still get related items. For a query item i and a candidate j::

    score(i, j) = a_i * cooc(i, j) + (1 - a_i) * meta(i, j),      a_i = n_i / (n_i + s)

* ``cooc``: the cosine of the items' binary user vectors, ``C_ij / sqrt(n_i n_j)``, for pairs with
  at least ``min_cointeraction_count`` co-interacting users (``batchrec.recipes.cooccurrence``),
  else 0;
* ``meta``: the mean over metadata fields of per-field cosines: shared categorical values
  (TF-IDF) and closeness of numeric fields (``batchrec.recipes.item_metadata``);
* ``n_i``: the query item's number of users; ``s`` = ``interaction_shrinkage`` (default 5): an item
  without interactions is related by metadata alone, one with 5 half and half, one with 95 almost
  only by behaviour.

Candidates are every catalogue item (interactions and Items dataset), scored exactly in blocks on
the executors (the metadata vectors are broadcast; ``cooc`` enters as each query item's best
``4 * num_neighbours`` co-occurrence neighbours). Without an Items dataset, or without a usable
field, the score is ``cooc`` alone and a warning says so. Cost: catalogue² x metadata dimensions
multiply-adds, fine up to a few hundred thousand items.

Artifact ``item_neighbours`` as the sims recipe's: ``[ITEM_ID, rank, NEIGHBOUR_ID, score]``, score
descending then NEIGHBOUR_ID ascending, positive scores only, never the item itself.
"""

from __future__ import annotations

import logging
from typing import Iterator, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batchrec.columns import ITEM_ID, ITEM_IDX, NEIGHBOUR_ID
from batchrec.recipes import cooccurrence as cooc
from batchrec.recipes import item_metadata
from batchrec.scoring.topk import MAX_BLOCK_CELLS, select_top_k

log = logging.getLogger(__name__)

RECIPE = "similar-items"
CANDIDATE_FACTOR = 4
POSITION = "position"
COOC = "cooc"
_COOC_POS = "cooc_position"






def train(spark, data, params: dict) -> tuple[dict, dict]:
    """Blended neighbours of every catalogue item: artifact ``item_neighbours``."""
    k = params["num_neighbours"]
    histories = cooc.user_item_values(data.prepared, data.item_map, binary=True)
    histories, cuts = cooc.apply_caps(histories, cooc.caps_of(params))
    histories = data.keep(histories)
    counts = data.keep(cooc.item_counts(histories))
    # The cosine of binary user vectors: co-occurrence with the popularity discount 0.5.
    candidates = cooc.top_similar(histories, counts, cooc.COOCCURRENCE, CANDIDATE_FACTOR * k,
                                  max(1, params["min_cointeraction_count"]), discount=0.5)
    if data.items is None:
        log.warning("similar-items: no Items dataset; related items come from co-occurrence only")
    meta = item_metadata.metadata_vectors(data.items, params["max_values_per_field"],
                                          params["numeric_bins"])
    item_ids = data.item_map.select(ITEM_ID).toArrow().column(ITEM_ID).to_numpy(zero_copy_only=False)
    catalog = np.unique(np.concatenate([item_ids.astype(object),
                                        meta.item_ids if meta is not None else np.array([], object)]))
    positions = _positions(spark, data.item_map, catalog)
    n_users = np.zeros(len(catalog), dtype=np.float64)
    with_counts = counts.join(positions, ITEM_IDX).select(POSITION, cooc.N_USERS).toArrow()
    n_users[with_counts.column(POSITION).to_numpy()] = with_counts.column(cooc.N_USERS).to_numpy()
    shrinkage = params["interaction_shrinkage"]
    alpha = np.where(n_users > 0, n_users / np.maximum(n_users + shrinkage, 1e-12), 0.0)
    vectors = _aligned(meta, catalog)
    queries = _query_rows(spark, candidates, positions, len(catalog))
    neighbours = blended_neighbours(queries, catalog, vectors, alpha.astype(np.float32), k)
    stats = {"caps": cuts, "catalog_items": int(len(catalog)),
             "metadata_fields": list(meta.fields) if meta is not None else [],
             "metadata_dimensions": meta.dimensions if meta is not None else 0}
    return {cooc.ITEM_NEIGHBOURS: neighbours}, stats


def _positions(spark, item_map: DataFrame, catalog: np.ndarray) -> DataFrame:
    """[item_idx, position] for the interacted items (position = index in the sorted catalogue)."""
    table = pa.table({ITEM_ID: pa.array(catalog.tolist(), pa.string()),
                      POSITION: pa.array(np.arange(len(catalog), dtype=np.int32))})
    return (spark.createDataFrame(table).join(item_map.select(ITEM_ID, ITEM_IDX), ITEM_ID)
            .select(ITEM_IDX, POSITION))


def _aligned(meta: Optional[item_metadata.MetadataVectors], catalog: np.ndarray) -> np.ndarray:
    """Metadata vectors in catalogue order (zero rows for items without metadata)."""
    if meta is None:
        return np.zeros((len(catalog), 0), dtype=np.float32)
    vectors = np.zeros((len(catalog), meta.dimensions), dtype=np.float32)
    vectors[np.searchsorted(catalog, meta.item_ids)] = meta.vectors
    return vectors


def _query_rows(spark, candidates: DataFrame, positions: DataFrame, n: int) -> DataFrame:
    """One row per catalogue position with its co-occurrence candidates (positions and scores)."""
    left = positions.select(F.col(ITEM_IDX), F.col(POSITION))
    right = positions.select(F.col(ITEM_IDX).alias(cooc.NEIGHBOUR_IDX), F.col(POSITION).alias(_COOC_POS))
    lists = (candidates.join(left, ITEM_IDX).join(right, cooc.NEIGHBOUR_IDX)
             .groupBy(POSITION)
             .agg(F.collect_list(F.struct(F.col(_COOC_POS).cast("int").alias(_COOC_POS),
                                          F.col(cooc.SCORE).cast("float").alias(cooc.SCORE))).alias(COOC)))
    everything = spark.range(n).select(F.col("id").cast("int").alias(POSITION))
    return everything.join(lists, POSITION, "left")


def blended_neighbours(queries: DataFrame, catalog: np.ndarray, vectors: np.ndarray, alpha: np.ndarray,
                       k: int) -> DataFrame:
    """Top ``k`` blended neighbours of each query row (see the module docstring).

    Args:
        queries: ``[position int, cooc array<struct<cooc_position int, score float>>]``.
        catalog: ITEM_ID per position, ascending.
        vectors: float32 metadata vectors per position (may have 0 columns).
        alpha: float32 co-occurrence weight per position.
        k: neighbours per item.

    Returns:
        DataFrame[ITEM_ID, rank, NEIGHBOUR_ID, score] (the ``item_neighbours`` schema).
    """
    n = len(catalog)
    rows_per_block = max(1, MAX_BLOCK_CELLS // max(n, 1))
    payload = queries.sparkSession.sparkContext.broadcast((catalog, vectors, alpha))
    schema = pa.schema([pa.field(ITEM_ID, pa.string()), pa.field(cooc.RANK, pa.int32()),
                        pa.field(NEIGHBOUR_ID, pa.string()), pa.field(cooc.SCORE, pa.float64())])

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        ids, vecs, weights = payload.value
        for batch in batches:
            for start in range(0, batch.num_rows, rows_per_block):
                block = batch.slice(start, rows_per_block)
                if block.num_rows:
                    yield _blend_block(block, ids, vecs, weights, k, schema)

    return queries.select(POSITION, COOC).mapInArrow(
        score, f"{ITEM_ID} string, {cooc.RANK} int, {NEIGHBOUR_ID} string, {cooc.SCORE} double")


def _blend_block(block: pa.RecordBatch, ids, vectors, alpha, k, schema) -> pa.RecordBatch:
    query = block.column(0).to_numpy(zero_copy_only=False).astype(np.int64)
    b, n = len(query), len(ids)
    a = alpha[query]
    if vectors.shape[1]:
        blended = (vectors[query] @ vectors.T) * (1.0 - a)[:, None]
    else:
        blended = np.zeros((b, n), dtype=np.float32)
    lists = block.column(1)
    if lists.null_count < b:
        rows = pc.list_parent_indices(lists).to_numpy()
        flat = lists.flatten()
        cols = flat.field(0).to_numpy(zero_copy_only=False).astype(np.int64)
        values = flat.field(1).to_numpy(zero_copy_only=False).astype(np.float32)
        blended[rows, cols] += a[rows] * values
    blended[np.arange(b), query] = 0.0  # never the item itself
    neg = np.where(blended > 0, -blended, np.inf).astype(np.float32)
    top_pos, top_neg = select_top_k(neg, k)
    r, j = np.nonzero(np.isfinite(top_neg))
    pos = top_pos[r, j]
    return pa.RecordBatch.from_arrays(
        [pa.array(ids[query[r]], pa.string()), pa.array((j + 1).astype(np.int32)),
         pa.array(ids[pos], pa.string()), pa.array((-top_neg[r, j]).astype(np.float64))], schema=schema)
