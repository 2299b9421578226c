"""ease: Steck's "Embarrassingly Shallow Autoencoders for Sparse Data" (WWW 2019).

With X the binary users x items matrix of the prepared interactions and G = XᵀX its Gram matrix
(``batchrec.recipes.cooccurrence``, computed on Spark), EASE's item-item weights are the closed form::

    P = (G + λ I)^-1
    B = I - P · diag(1 / diag(P))        i.e.  B_ij = -P_ij / P_jj,  B_jj = 0

and a user's scores are their history times B: ``score_j = sum_i x_ui B_ij``
(``batchrec.scoring.item_based``). λ = ``regularization`` (default 200, chosen on validation data:
docs/benchmarks.md; ``train --hpo`` searches it).

The inversion runs on the driver in float32 (Cholesky, LAPACK ``spotrf``/``spotri``): memory is
about 4 bytes x items², so the model holds at most ``max_items`` items (default 30,000: 3.6 GB).
Beyond that it keeps the most frequent items (ties to the smaller ID) and says so in the log; the
others are never recommended by the model but still reach users through the popular backfill.

Artifacts:

* ``item_weights``: ``[item_idx int, weights array<float>]``, one row of B per model item; the
  k-th weight belongs to the k-th model item in item_idx (= ITEM_ID) order.
* ``user_history``: ``[user_idx int, item_idx int, value float]``, the users' model items (value 1).
"""

from __future__ import annotations

import logging

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batchrec import catalogue, logs
from batchrec.columns import ITEM_IDX, USER_ID, USER_IDX
from batchrec.errors import JobError
from batchrec.recipes import cooccurrence as cooc

log = logging.getLogger(__name__)

RECIPE = "ease"
ITEM_WEIGHTS = catalogue.ITEM_WEIGHTS
USER_HISTORY = cooc.USER_HISTORY
WEIGHTS = "weights"
ITEM_WEIGHTS_SCHEMA = catalogue.ITEM_WEIGHTS_SCHEMA
# Rows of the symmetric inverse mirrored at a time (bounds the temporary index arrays).
_MIRROR_BLOCK = 1024
# Bytes of weights per Arrow batch (= Spark partition) of the item_weights artifact.
BATCH_BYTES = 8 << 20






def train(spark, data, params: dict) -> tuple[dict, dict]:
    """Gram matrix on Spark, B on the driver: artifacts ``item_weights`` and ``user_history``."""
    histories = cooc.user_item_values(data.prepared, data.item_map, binary=True)
    histories, cuts = cooc.apply_caps(histories, cooc.caps_of(params))
    histories = data.keep(histories)
    counts = cooc.item_counts(histories)
    chosen = (counts.orderBy(F.col(cooc.N_USERS).desc(), F.col(ITEM_IDX).asc())
              .limit(params["max_items"]).select(ITEM_IDX, cooc.N_USERS))
    model = chosen.toArrow()  # at most max_items rows
    item_idx = model.column(ITEM_IDX).to_numpy().astype(np.int64)
    order = np.argsort(item_idx)
    item_idx, n_users = item_idx[order], model.column(cooc.N_USERS).to_numpy()[order]
    n_total = counts.count()
    if n_total > len(item_idx):
        log.info("ease: %d items exceed max_items=%d; the model keeps the %d most frequent",
                 n_total, params["max_items"], len(item_idx))
    if len(item_idx) == 0:
        raise JobError("ease: no item left after the caps; nothing to train on")
    kept = histories.join(F.broadcast(chosen.select(ITEM_IDX)), ITEM_IDX, "left_semi")
    with logs.stage(log, "ease_gram", items=len(item_idx)):
        pairs = cooc.gram_pairs(kept, n_items=int(item_idx[-1]) + 1)
        gram = dense_gram(pairs, item_idx, n_users.astype(np.float32))
    with logs.stage(log, "ease_inverse", items=len(item_idx)):
        weights = ease_weights(gram, params["regularization"])
    del gram
    artifacts = {
        ITEM_WEIGHTS: weights_frame(spark, item_idx, weights),
        USER_HISTORY: user_history(kept, data.user_map),
    }
    return artifacts, {"caps": cuts, "model_items": int(len(item_idx)), "items_total": int(n_total)}


def dense_gram(pairs: DataFrame, item_idx: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The dense float32 Gram matrix of the model items from upper-triangle pairs and the counts.

    Args:
        pairs: :func:`cooccurrence.gram_pairs` rows over the model items only.
        item_idx: the model items, ascending (row/column k = item_idx[k]).
        counts: each model item's number of users (the diagonal).
    """
    m = len(item_idx)
    position = np.full(int(item_idx.max()) + 1, -1, dtype=np.int64)
    position[item_idx] = np.arange(m)
    # At most m^2 / 2 rows; 12 bytes each.
    table = pairs.select(cooc.ITEM_I, cooc.ITEM_J, F.col(cooc.CO_COUNT).cast("int").alias(cooc.CO_COUNT)).toArrow()
    gram = np.zeros((m, m), dtype=np.float32)
    i = position[table.column(cooc.ITEM_I).to_numpy().astype(np.int64)]
    j = position[table.column(cooc.ITEM_J).to_numpy().astype(np.int64)]
    values = table.column(cooc.CO_COUNT).to_numpy().astype(np.float32)
    del table
    gram[i, j] = values
    gram[j, i] = values
    gram[np.arange(m), np.arange(m)] = counts
    return gram


def ease_weights(gram: np.ndarray, regularization: float) -> np.ndarray:
    """B = I - P diag(1/diag(P)), P = (gram + λI)^-1, in float32 (``gram`` is overwritten).

    Raises:
        JobError: the regularized Gram matrix is not positive definite (cannot happen for λ > 0
            unless the counts are corrupt).
    """
    from scipy.linalg import lapack

    a = np.asarray(gram, dtype=np.float32)
    m = a.shape[0]
    a[np.arange(m), np.arange(m)] += np.float32(regularization)
    # a is symmetric, so its transpose is the Fortran-ordered matrix LAPACK wants, without a copy.
    factor, info = lapack.spotrf(a.T, lower=0, overwrite_a=1, clean=0)
    if info != 0:
        raise JobError(f"ease: Cholesky factorisation failed (LAPACK info {info}); the Gram matrix "
                       f"plus regularization={regularization} is not positive definite")
    inverse, info = lapack.spotri(factor, lower=0, overwrite_c=1)
    if info != 0:
        raise JobError(f"ease: inversion failed (LAPACK info {info})")
    p = np.ascontiguousarray(inverse.T)  # spotri fills the upper triangle (Fortran order)
    _mirror_lower(p)
    diagonal = p[np.arange(m), np.arange(m)].copy()
    p /= -diagonal[None, :]
    p[np.arange(m), np.arange(m)] = 0.0
    return p


def _mirror_lower(p: np.ndarray) -> None:
    """Copy the valid lower triangle of C-ordered ``p`` (the upper of its Fortran view) upward."""
    m = p.shape[0]
    for start in range(0, m, _MIRROR_BLOCK):
        stop = min(m, start + _MIRROR_BLOCK)
        p[:start, start:stop] = p[start:stop, :start].T
        block = p[start:stop, start:stop]
        upper = np.triu_indices(stop - start, 1)
        block[upper] = block.T[upper]


def weights_frame(spark, item_idx: np.ndarray, weights: np.ndarray) -> DataFrame:
    """The ``item_weights`` artifact from the model items and B (row k of B for item_idx[k]).

    Spark makes one partition per Arrow batch, so B goes over in batches of about
    :data:`BATCH_BYTES`: no single task ever holds the whole matrix.
    """
    import pyarrow as pa

    m = weights.shape[1]
    rows = max(1, BATCH_BYTES // max(4 * m, 1))
    batches = []
    for start in range(0, len(item_idx), rows):
        block = weights[start:start + rows]
        values = pa.array(np.ascontiguousarray(block).reshape(-1), type=pa.float32())
        offsets = pa.array(np.arange(0, block.size + 1, m, dtype=np.int32))
        batches.append(pa.RecordBatch.from_arrays(
            [pa.array(item_idx[start:start + rows].astype(np.int32)), pa.ListArray.from_arrays(offsets, values)],
            names=[ITEM_IDX, WEIGHTS]))
    table = pa.Table.from_batches(batches)
    return spark.createDataFrame(table).select(
        F.col(ITEM_IDX).cast("int").alias(ITEM_IDX), F.col(WEIGHTS).cast("array<float>").alias(WEIGHTS))


def user_history(histories: DataFrame, user_map: DataFrame) -> DataFrame:
    """The ``user_history`` artifact: DataFrame[user_idx int, item_idx int, value float]."""
    return histories.join(user_map.select(USER_ID, USER_IDX), USER_ID).select(
        F.col(USER_IDX).cast("int").alias(USER_IDX), F.col(ITEM_IDX).cast("int").alias(ITEM_IDX),
        F.col(cooc.VALUE).cast("float").alias(cooc.VALUE))
