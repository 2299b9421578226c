"""Solution versions: round trip, latest never picks an incomplete version, errors name what is wrong."""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest

import batchrec
from batchrec import registry
from batchrec.errors import JobError
from batchrec.recipes import TrainedModel


@pytest.fixture()
def model(spark):
    artifacts = {
        "user_map": spark.createDataFrame([("u1", 0), ("u2", 1)], "USER_ID string, user_idx int"),
        "popular_items": spark.createDataFrame([("i2", 2.0, 1), ("i1", 1.0, 2)],
                                               "ITEM_ID string, score double, rank int"),
    }
    return TrainedModel("popularity-count", {"event_type": ""}, artifacts, {"interactions": 3})


def part_file(version, name) -> str:
    folder = os.path.join(version.path, registry.ARTIFACTS_DIR, name)
    return os.path.join(folder, next(f for f in sorted(os.listdir(folder)) if f.endswith(".parquet")))


def test_save_and_load_round_trip(spark, tmp_path, model):
    solution = str(tmp_path / "solution")
    saved = registry.save_version(spark, solution, model, {"datasets": {"interactions": "x.csv"},
                                                           "metrics": {"ndcg@10": 0.5}})
    loaded = registry.load_version(spark, solution, "latest")
    assert (loaded.version, loaded.path, loaded.recipe) == (saved.version, saved.path, "popularity-count")
    meta = loaded.metadata
    assert meta["params"] == {"event_type": ""} and meta["data_stats"] == {"interactions": 3}
    assert meta["metrics"] == {"ndcg@10": 0.5} and meta["datasets"] == {"interactions": "x.csv"}
    assert meta["package_version"] == batchrec.__version__
    assert dt.datetime.fromisoformat(meta["created_at"]).tzinfo is not None
    assert meta["artifacts"]["popular_items"]["rows"] == 2
    artifacts = registry.load_artifacts(spark, loaded)
    assert sorted(artifacts) == ["popular_items", "user_map"]
    assert sorted(map(tuple, artifacts["popular_items"].collect())) == [("i1", 1.0, 2), ("i2", 2.0, 1)]
    assert registry.load_version(spark, solution, saved.version).version == saved.version
    # The marker is written last and names the version.
    marker = os.path.join(saved.path, registry.COMPLETE_MARKER)
    assert open(marker).read().strip() == saved.version


def test_version_ids_sort_by_creation_time():
    early = registry.new_version_id(dt.datetime(2026, 11, 22, 10, 15, 0, 5000, tzinfo=dt.timezone.utc))
    late = registry.new_version_id(dt.datetime(2026, 11, 22, 10, 15, 0, 6000, tzinfo=dt.timezone.utc))
    assert early.startswith("20261122T101500005Z-") and early < late


def test_latest_skips_an_incomplete_version(spark, tmp_path, model):
    solution = str(tmp_path / "solution")
    complete = registry.save_version(spark, solution, model, {})
    # A newer version whose writer died before the marker: files present, no _COMPLETE.
    newer = tmp_path / "solution" / registry.VERSIONS_DIR / "29991231T235959999Z-dead"
    newer.mkdir(parents=True)
    (newer / registry.METADATA_FILE).write_text(json.dumps({"recipe": "popularity-count"}))
    assert registry.load_version(spark, solution).version == complete.version
    assert registry.list_versions(spark, solution) == [complete.version]
    with pytest.raises(JobError, match=rf"'29991231T235959999Z-dead' not found \(or incomplete\).*"
                                       rf"available versions: {complete.version}"):
        registry.load_version(spark, solution, "29991231T235959999Z-dead")


def test_unknown_solution_directory(spark, tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(JobError, match=f"no solution at {missing}"):
        registry.load_version(spark, missing)


def test_solution_without_complete_version(spark, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(JobError, match=r"no complete solution version in .*empty"):
        registry.load_version(spark, str(tmp_path / "empty"))


def test_unknown_version_lists_the_available_ones(spark, tmp_path, model):
    solution = str(tmp_path / "solution")
    first = registry.save_version(spark, solution, model, {})
    second = registry.save_version(spark, solution, model, {})
    assert first.version < second.version
    with pytest.raises(JobError, match=rf"'v0' not found .*available versions: {first.version}, {second.version}"):
        registry.load_version(spark, solution, "v0")


def test_garbage_in_an_artifact_file_names_the_file(spark, tmp_path, model):
    version = registry.save_version(spark, str(tmp_path / "solution"), model, {})
    path = part_file(version, "popular_items")
    with open(path, "wb") as handle:
        handle.write(b"not parquet at all")
    with pytest.raises(JobError, match=rf"corrupt artifact file {path}: 18 bytes"):
        registry.read_artifact(spark, version, "popular_items")


def test_same_size_garbage_is_caught_when_reading_the_footer(spark, tmp_path, model):
    version = registry.save_version(spark, str(tmp_path / "solution"), model, {})
    path = part_file(version, "user_map")
    size = os.path.getsize(path)
    with open(path, "wb") as handle:
        handle.write(b"x" * size)
    with pytest.raises(JobError, match=r"corrupt artifact .*user_map"):
        registry.read_artifact(spark, version, "user_map")


def test_missing_artifact_file_or_artifact(spark, tmp_path, model):
    version = registry.save_version(spark, str(tmp_path / "solution"), model, {})
    path = part_file(version, "user_map")
    os.remove(path)
    with pytest.raises(JobError, match=rf"artifact file missing: {path}"):
        registry.read_artifact(spark, version, "user_map")
    with pytest.raises(JobError, match=r"has no artifact 'user_factors' .*it has: popular_items, user_map"):
        registry.read_artifact(spark, version, "user_factors")


def test_corrupt_metadata_names_the_file(spark, tmp_path, model):
    version = registry.save_version(spark, str(tmp_path / "solution"), model, {})
    metadata = os.path.join(version.path, registry.METADATA_FILE)
    with open(metadata, "w") as handle:
        handle.write("{not json")
    with pytest.raises(JobError, match=rf"corrupt solution metadata {metadata}"):
        registry.load_version(spark, str(tmp_path / "solution"))


def test_an_artifact_with_the_wrong_columns_is_not_saved(spark, tmp_path):
    bad = TrainedModel("popularity-count", {}, {
        "user_map": spark.createDataFrame([("u1", 0)], "USER_ID string, user_idx long")}, {})
    with pytest.raises(JobError, match=r"artifact user_map has schema struct<USER_ID:string,user_idx:bigint>; "
                                       r"expected struct<USER_ID:string,user_idx:int>"):
        registry.save_version(spark, str(tmp_path / "solution"), bad, {})
