"""Item metadata as unit vectors whose dot product is a similarity between 0 and 1.

Every column of the Items dataset except ITEM_ID and CREATION_TIMESTAMP is a field:

* **categorical** (string or boolean columns; several values separated by ``|``, as Personalize's
  categorical fields): a TF-IDF vector over the field's values, ``idf(v) = ln((1 + N) / (1 + df_v)) + 1``
  with N the catalogue size and ``df_v`` the items carrying v, normalised to length 1. Only values
  shared by at least two items count (a value of one item relates it to nothing), and at most the
  ``max_values_per_field`` most frequent ones (ties to the smaller value), which bounds the vector
  size whatever the cardinality;
* **numeric** (integer and floating columns): the value's position between the field's 1st and
  99th percentile (clipped), ``t`` in ``[0, bins - 1]``, spread over the two nearest bins
  (``1 - frac(t)`` on ``floor(t)``, ``frac(t)`` on the next), normalised to length 1. Two values in
  the same place score 1, and the score falls to 0 once they are about a bin or more apart.

Each field's vector is scaled by ``1 / sqrt(F)`` (F fields), so the dot product of two items is the
mean over fields of the per-field cosines. A field an item lacks contributes 0.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batchrec.columns import CREATION_TIMESTAMP, ITEM_ID
from batchrec.datasets.prepare import PERCENTILE_ACCURACY

log = logging.getLogger(__name__)

MULTI_VALUE_SEPARATOR = "|"
LOW_PERCENTILE = 0.01
HIGH_PERCENTILE = 0.99
DIM = "dim"
WEIGHT = "weight"
_VALUE = "_value"
_CATEGORICAL_TYPES = (T.StringType, T.BooleanType)
_NUMERIC_TYPES = (T.IntegerType, T.LongType, T.ShortType, T.ByteType, T.FloatType, T.DoubleType,
                  T.DecimalType)


@dataclass(frozen=True)
class MetadataVectors:
    """Dense metadata vectors on the driver, rows in ITEM_ID order."""

    item_ids: np.ndarray  # object (str), ascending
    vectors: np.ndarray  # float32 (n_items, dimensions)
    fields: tuple[str, ...]  # the fields used

    @property
    def dimensions(self) -> int:
        """Length of each vector."""
        return int(self.vectors.shape[1])


def metadata_fields(items: DataFrame) -> tuple[list[str], list[str]]:
    """(categorical, numeric) field names of an Items dataset, in column order."""
    categorical, numeric = [], []
    for field in items.schema.fields:
        if field.name in (ITEM_ID, CREATION_TIMESTAMP):
            continue
        if isinstance(field.dataType, _CATEGORICAL_TYPES):
            categorical.append(field.name)
        elif isinstance(field.dataType, _NUMERIC_TYPES):
            numeric.append(field.name)
    return categorical, numeric


def metadata_vectors(items: Optional[DataFrame], max_values_per_field: int, numeric_bins: int
                     ) -> Optional[MetadataVectors]:
    """The items' metadata vectors (see the module docstring), None without a usable field.

    Collects one row per catalogue item (bounded by the catalogue, like the item factors of
    ``batchrec.scoring.topk``) and one small vocabulary per categorical field.
    """
    if items is None:
        return None
    categorical, numeric = metadata_fields(items)
    catalog = items.where(F.col(ITEM_ID).isNotNull()).dropDuplicates([ITEM_ID])
    n_items = catalog.count()
    parts: list[DataFrame] = []
    fields: list[str] = []
    offset = 0
    for name in categorical:
        part, size = _categorical(catalog, name, n_items, max_values_per_field, offset)
        if size:
            parts.append(part)
            fields.append(name)
            offset += size
    for name in numeric:
        part, size = _numeric(catalog, name, numeric_bins, offset)
        if size:
            parts.append(part)
            fields.append(name)
            offset += size
    if not parts:
        log.warning("item metadata: no categorical value shared by two items and no numeric field "
                    "with a spread; metadata similarity is off")
        return None
    scale = 1.0 / math.sqrt(len(fields))
    entries = parts[0]
    for part in parts[1:]:
        entries = entries.unionByName(part)
    table = entries.select(ITEM_ID, DIM, (F.col(WEIGHT) * F.lit(scale)).alias(WEIGHT)).toArrow()
    ids = catalog.select(ITEM_ID).toArrow().column(ITEM_ID).to_numpy(zero_copy_only=False).astype(object)
    ids = np.sort(ids)
    vectors = np.zeros((len(ids), offset), dtype=np.float32)
    rows = np.searchsorted(ids, table.column(ITEM_ID).to_numpy(zero_copy_only=False).astype(object))
    vectors[rows, table.column(DIM).to_numpy()] = table.column(WEIGHT).to_numpy()
    log.info("item metadata: %d items, fields %s, %d dimensions", len(ids), fields, offset)
    return MetadataVectors(ids, vectors, tuple(fields))


def _categorical(catalog: DataFrame, name: str, n_items: int, max_values: int, offset: int):
    """Entries ``[ITEM_ID, dim, weight]`` of one categorical field, and its number of dimensions."""
    values = (catalog.select(ITEM_ID, F.explode(F.split(F.col(name).cast("string"),
                                                        "\\" + MULTI_VALUE_SEPARATOR)).alias(_VALUE))
              .select(ITEM_ID, F.trim(F.col(_VALUE)).alias(_VALUE))
              .where(F.col(_VALUE) != "").distinct())
    vocabulary = (values.groupBy(_VALUE).agg(F.count(F.lit(1)).alias("_df")).where(F.col("_df") >= 2)
                  .orderBy(F.col("_df").desc(), F.col(_VALUE).asc()).limit(max_values).toArrow())
    size = vocabulary.num_rows
    if not size:
        return None, 0
    df = vocabulary.column("_df").to_numpy().astype(np.float64)
    idf = np.log((1.0 + n_items) / (1.0 + df)) + 1.0
    spark = catalog.sparkSession
    vocab = spark.createDataFrame(
        [(v, offset + k, float(w)) for k, (v, w) in
         enumerate(zip(vocabulary.column(_VALUE).to_pylist(), idf))],
        f"{_VALUE} string, {DIM} int, _idf double")
    weighted = values.join(F.broadcast(vocab), _VALUE)
    norm = weighted.groupBy(ITEM_ID).agg(F.sqrt(F.sum(F.col("_idf") * F.col("_idf"))).alias("_norm"))
    part = weighted.join(norm, ITEM_ID).select(
        ITEM_ID, F.col(DIM).cast("int").alias(DIM), (F.col("_idf") / F.col("_norm")).cast("double").alias(WEIGHT))
    return part, size


def _numeric(catalog: DataFrame, name: str, bins: int, offset: int):
    """Entries ``[ITEM_ID, dim, weight]`` of one numeric field (soft bins), and its dimensions."""
    value = F.col(name).cast("double")
    present = catalog.select(ITEM_ID, value.alias(_VALUE)).where(
        F.col(_VALUE).isNotNull() & ~F.isnan(F.col(_VALUE)))
    cuts = present.agg(F.percentile_approx(_VALUE, F.array(F.lit(LOW_PERCENTILE), F.lit(HIGH_PERCENTILE)),
                                           PERCENTILE_ACCURACY)).first()[0]
    if cuts is None or not cuts[1] > cuts[0]:
        return None, 0
    low, high = float(cuts[0]), float(cuts[1])
    t = F.least(F.greatest((F.col(_VALUE) - F.lit(low)) / F.lit(high - low), F.lit(0.0)), F.lit(1.0)) \
        * F.lit(float(bins - 1))
    k = F.least(F.floor(t), F.lit(bins - 2)).cast("int")
    spread = present.select(ITEM_ID, t.alias("_t"), k.alias("_k")).select(
        ITEM_ID, "_k", (F.col("_t") - F.col("_k")).alias("_frac"))
    norm = F.sqrt((F.lit(1.0) - F.col("_frac")) ** 2 + F.col("_frac") ** 2)
    lower = spread.select(ITEM_ID, (F.col("_k") + F.lit(offset)).alias(DIM),
                          ((F.lit(1.0) - F.col("_frac")) / norm).alias(WEIGHT))
    upper = spread.select(ITEM_ID, (F.col("_k") + F.lit(offset + 1)).alias(DIM),
                          (F.col("_frac") / norm).alias(WEIGHT))
    part = lower.unionByName(upper).where(F.col(WEIGHT) > 0).select(
        ITEM_ID, F.col(DIM).cast("int").alias(DIM), F.col(WEIGHT).cast("double").alias(WEIGHT))
    return part, bins
