"""Shared fixtures: one local SparkSession for the whole test session (Delta configured)."""

from __future__ import annotations

import pytest

SHARED_DATA = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """A ``local[2]`` SparkSession built by batchrec's own factory, stopped at the end."""
    from batchrec.config import SparkSettings
    from batchrec.spark import get_spark

    scratch = tmp_path_factory.mktemp("spark")
    settings = SparkSettings(
        master="local[2]",
        app_name="batchrec-tests",
        driver_memory="3g",
        shuffle_partitions=4,
        conf={
            "spark.sql.warehouse.dir": str(scratch / "warehouse"),
            "spark.local.dir": str(scratch / "local"),
            "spark.default.parallelism": "4",
        },
    )
    session = get_spark(settings)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def movielens_ratings():
    """Path of ../shared/data/ml-latest-small/ratings.csv (skips when the shared data is absent)."""
    path = SHARED_DATA / "ml-latest-small" / "ratings.csv"
    if not path.is_file():
        pytest.skip(f"shared MovieLens data not found at {path}")
    return path
