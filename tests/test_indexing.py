"""build_id_map: contiguous, deterministic (ID order), distributed; unknown IDs get null."""

from __future__ import annotations

from pyspark.sql import functions as F

from batchrec.datasets.indexing import attach_index, build_id_map


def as_dict(id_map, id_col="ID", idx_col="idx") -> dict:
    return {r[id_col]: r[idx_col] for r in id_map.collect()}


def test_ids_are_numbered_in_ascending_order_with_duplicates_and_nulls_ignored(spark):
    df = spark.createDataFrame([("b",), ("a",), (None,), ("c",), ("a",), ("b",)], "ID string")
    id_map = build_id_map(df, "ID", "idx")
    assert dict(id_map.dtypes) == {"ID": "string", "idx": "int"}
    assert as_dict(id_map) == {"a": 0, "b": 1, "c": 2}


def test_many_partitions_give_contiguous_indexes_equal_to_the_sorted_position(spark):
    ids = [f"user-{n:05d}" for n in range(0, 3000, 3)]
    df = spark.createDataFrame([(i,) for i in reversed(ids)], "ID string").repartition(7)
    with_partitions = spark.conf.get("spark.sql.shuffle.partitions")
    spark.conf.set("spark.sql.shuffle.partitions", "5")
    try:
        id_map = build_id_map(df, "ID", "idx")
        assert id_map.rdd.getNumPartitions() > 1
        got = as_dict(id_map)
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", with_partitions)
    # Independent reference: Python's own sort of the distinct IDs.
    assert got == {value: position for position, value in enumerate(sorted(ids))}


def test_same_ids_in_another_order_get_the_same_indexes(spark):
    ids = [f"{n * 7919 % 1000:04d}" for n in range(500)]
    first = build_id_map(spark.createDataFrame([(i,) for i in ids], "ID string"), "ID", "idx")
    second = build_id_map(
        spark.createDataFrame([(i,) for i in reversed(ids)], "ID string").repartition(3), "ID", "idx"
    )
    assert as_dict(first) == as_dict(second)


def test_empty_input_gives_an_empty_map(spark):
    id_map = build_id_map(spark.createDataFrame([], "ID string"), "ID", "idx")
    assert id_map.count() == 0


def test_unknown_ids_get_a_null_index_and_are_kept(spark):
    id_map = build_id_map(spark.createDataFrame([("a",), ("b",)], "ID string"), "ID", "idx")
    queries = spark.createDataFrame([("b", 1), ("zzz", 2), (None, 3)], "ID string, n int")
    rows = sorted(attach_index(queries, id_map, "ID", "idx").collect(), key=lambda r: r["n"])
    assert [(r["ID"], r["n"], r["idx"]) for r in rows] == [("b", 1, 1), ("zzz", 2, None), (None, 3, None)]


def test_map_is_reusable_without_recomputing_different_indexes(spark):
    df = spark.range(0, 200).select(F.format_string("id%03d", "id").alias("ID"))
    id_map = build_id_map(df, "ID", "idx")
    assert as_dict(id_map) == as_dict(id_map)
    assert sorted(as_dict(id_map).values()) == list(range(200))
