"""The SparkSession factory: Delta jars resolve, tables round-trip, nothing starts at import."""

from __future__ import annotations

import subprocess
import sys

from pyspark.sql import Row

from batchrec.spark import delta_coordinates


def test_delta_round_trip(spark, tmp_path):
    path = str(tmp_path / "table")
    rows = [Row(USER_ID="u1", ITEM_ID="i1", TIMESTAMP=1), Row(USER_ID="u2", ITEM_ID="i2", TIMESTAMP=2)]
    spark.createDataFrame(rows).write.format("delta").save(path)
    spark.createDataFrame([Row(USER_ID="u3", ITEM_ID="i3", TIMESTAMP=3)]).write.format("delta") \
        .mode("append").save(path)
    back = spark.read.format("delta").load(path).orderBy("TIMESTAMP").collect()
    assert [(r.USER_ID, r.ITEM_ID, r.TIMESTAMP) for r in back] == [("u1", "i1", 1), ("u2", "i2", 2),
                                                                   ("u3", "i3", 3)]
    # Two commits: the table really is a Delta table with a transaction log.
    history = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").count()
    assert history == 2


def test_session_is_configured_for_delta_and_quiet(spark):
    assert spark.conf.get("spark.sql.extensions") == "io.delta.sql.DeltaSparkSessionExtension"
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.sparkContext.master == "local[2]"


def test_coordinates_match_the_installed_wheel():
    from importlib.metadata import version

    coords = delta_coordinates()
    assert coords[0] == f"io.delta:delta-spark_2.13:{version('delta-spark')}"
    assert coords[1].startswith("io.delta:delta-storage:")


def test_importing_every_module_starts_no_jvm():
    code = (
        "import importlib, pkgutil, batchrec\n"
        "for m in pkgutil.walk_packages(batchrec.__path__, 'batchrec.'):\n"
        "    importlib.import_module(m.name)\n"
        "from pyspark import SparkContext\n"
        "assert SparkContext._active_spark_context is None\n"
        "assert SparkContext._gateway is None\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
