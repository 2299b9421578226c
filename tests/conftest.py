"""Shared fixtures: one local SparkSession for the whole test session (Delta configured)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _origin_checkout():
    """The checkout this one was cloned from, when it is a local folder (CI clones the repository)."""
    try:
        url = subprocess.run(["git", "-C", str(REPO), "config", "--get", "remote.origin.url"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    path = Path(url.removeprefix("file://")) if url else None
    return path if path is not None and path.is_dir() else None


# $BATCHREC_SHARED_DATA, else ../shared/data beside the checkout, else beside the checkout it was
# cloned from. Nothing names a folder of a particular machine.
SHARED_DATA_CANDIDATES = [
    Path(os.environ["BATCHREC_SHARED_DATA"]) if os.environ.get("BATCHREC_SHARED_DATA") else None,
    REPO.parent / "shared" / "data",
    (_origin_checkout() or REPO).parent / "shared" / "data",
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
            # Delta rebuilds a table's snapshot with 50 tasks by default; the tests' tables have a
            # handful of log files, and hundreds of reads each paid for 50 tiny tasks.
            "spark.databricks.delta.snapshotPartitions": "2",
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


SLOW_MODULES = {"test_demo", "test_spark_submit", "test_evaluate", "test_generate", "test_bench_e2e", "test_airflow_dag", "test_wheel"}


def pytest_configure(config):
    config.addinivalue_line("markers", "unit: no Spark session (seconds)")
    config.addinivalue_line("markers", "spark: uses the shared local Spark session")
    config.addinivalue_line("markers", "slow: end-to-end runs, subprocesses or real datasets (minutes); "
                                       "skip with -m 'not slow'")


def pytest_collection_modifyitems(config, items):
    """Mark every test ``spark`` or ``unit`` by the fixtures it uses; whole end-to-end modules and
    tests on the MovieLens data are ``slow``."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        item.add_marker(pytest.mark.spark if "spark" in fixtures else pytest.mark.unit)
        if item.module.__name__.rpartition(".")[2] in SLOW_MODULES or "movielens_ratings" in fixtures:
            item.add_marker(pytest.mark.slow)
