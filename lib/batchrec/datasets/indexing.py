"""String IDs to contiguous int32 indexes 0..n-1, computed on the executors.

The distinct IDs are range-partitioned and sorted (Spark's distributed sort), so index = number of
smaller IDs: the same IDs always get the same indexes, whatever the partitioning. Each partition's
size is collected (one number per partition, never the IDs), turned into offsets on the driver and
added to each row's position inside its partition.

The sorted IDs are checkpointed before their positions are read: range boundaries come from a
random sample, and a re-computation with other boundaries would shift positions between the count
and the numbering.
"""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, LongType, StructField, StructType

from batchrec.errors import JobError

log = logging.getLogger(__name__)

MAX_INDEX = 2**31 - 1  # MLlib ALS takes int32 user and item columns
_PARTITION = "_partition"
_POSITION = "_position"
_OFFSET = "_offset"
# monotonically_increasing_id puts the partition id in the upper 31 bits, the position in the lower 33.
_POSITION_BITS = 33


def build_id_map(ids: DataFrame, id_col: str, idx_col: str) -> DataFrame:
    """Index the distinct non-null values of ``ids[id_col]`` as 0..n-1 in ascending ID order.

    Args:
        ids: any DataFrame holding ``id_col`` (duplicates and nulls are fine).
        id_col: the string ID column, e.g. ``USER_ID``.
        idx_col: the name of the int index column, e.g. ``user_idx``.

    Returns:
        DataFrame[id_col, idx_col int], one row per distinct ID, checkpointed (cheap to reuse).

    Raises:
        JobError: more distinct IDs than an int32 index can hold.
    """
    spark = ids.sparkSession
    partitions = max(1, int(spark.conf.get("spark.sql.shuffle.partitions")))
    distinct = ids.select(id_col).where(F.col(id_col).isNotNull()).distinct()
    ranked = (
        distinct.repartitionByRange(partitions, F.col(id_col))
        .sortWithinPartitions(id_col)
        .withColumn("_mid", F.monotonically_increasing_id())
    )
    ranked = _pin(ranked)
    located = ranked.select(
        id_col,
        F.shiftright(F.col("_mid"), _POSITION_BITS).cast("int").alias(_PARTITION),
        (F.col("_mid").bitwiseAND(F.lit((1 << _POSITION_BITS) - 1))).alias(_POSITION),
    )
    sizes = sorted((int(r[0]), int(r[1])) for r in located.groupBy(_PARTITION).count().collect())
    offsets, total = [], 0
    for partition, size in sizes:
        offsets.append((partition, total))
        total += size
    if total - 1 > MAX_INDEX:
        raise JobError(f"{total} distinct values of {id_col}: more than an int32 index holds "
                       f"({MAX_INDEX + 1}); MLlib ALS cannot train on them")
    offset_schema = StructType([StructField(_PARTITION, IntegerType()), StructField(_OFFSET, LongType())])
    offset_df = spark.createDataFrame(offsets, offset_schema)
    log.info("indexed %d distinct %s over %d partitions", total, id_col, len(sizes))
    return located.join(F.broadcast(offset_df), _PARTITION).select(
        id_col, (F.col(_OFFSET) + F.col(_POSITION)).cast("int").alias(idx_col)
    )


def attach_index(df: DataFrame, id_map: DataFrame, id_col: str, idx_col: str) -> DataFrame:
    """Add ``idx_col`` to ``df`` by a left join on ``id_col``: IDs unknown to the map get null."""
    return df.join(id_map.select(id_col, idx_col), on=id_col, how="left")


def _pin(df: DataFrame) -> DataFrame:
    """Materialise ``df`` once so every later read sees the same partitions and positions."""
    if df.sparkSession.sparkContext.getCheckpointDir():
        return df.checkpoint(eager=True)
    return df.localCheckpoint(eager=True)
