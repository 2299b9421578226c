"""Shared fixtures: one local SparkSession for the whole test session (Delta configured)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# $BATCHREC_SHARED_DATA, else ../shared/data beside the checkout (CI clones the repository next
# to shared/), else the workspace copy.
SHARED_DATA_CANDIDATES = [
    Path(os.environ["BATCHREC_SHARED_DATA"]) if os.environ.get("BATCHREC_SHARED_DATA") else None,
    Path(__file__).resolve().parents[2] / "shared" / "data",
    Path("/work/shared/data"),
]
SHARED_DATA = next((p for p in SHARED_DATA_CANDIDATES if p and p.is_dir()), SHARED_DATA_CANDIDATES[1])


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
