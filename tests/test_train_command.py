"""``batchrec train`` end to end on a tiny CSV: versions written, minimums after filtering, bad params."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from batchrec import registry
from batchrec.cli import main
from batchrec.commands import train
from batchrec.config import EvaluateSettings, Settings, ValidationSettings
from batchrec.errors import JobError

RUN_DATE = dt.date(2026, 1, 10)
DAY = 86400
END = int(dt.datetime(2026, 1, 10, tzinfo=dt.timezone.utc).timestamp())


@pytest.fixture(scope="module")
def interactions_csv(tmp_path_factory):
    """30 users x 4 events: clicks everywhere, a purchase for every third user."""
    lines = ["USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE"]
    for user in range(30):
        for k in range(4):
            event = "purchase" if user % 3 == 0 and k == 0 else "click"
            lines.append(f"u{user:02d},i{(user + k) % 10},{END + DAY - 1 - (user + k) * 3600},{event}")
    path = tmp_path_factory.mktemp("data") / "interactions.csv"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def cli_args(recipe, interactions, solution, *extra):
    return ["train", "--recipe", recipe, "--interactions", interactions, "--solution", solution,
            "--run-date", RUN_DATE.isoformat(), "--master", "local[2]", "--min-interactions", "50",
            "--min-users", "10", "--no-evaluate", *extra]


def test_cli_trains_popularity_into_a_new_version(spark, tmp_path, interactions_csv, capsys):
    solution = str(tmp_path / "popular")
    assert main(cli_args("popularity-count", interactions_csv, solution)) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    loaded = registry.load_version(spark, solution)
    assert (loaded.version, loaded.path) == (summary["version"], summary["path"])
    assert (summary["command"], summary["recipe"], summary["interactions"]) == ("train", "popularity-count", 120)
    meta = loaded.metadata
    assert meta["recipe"] == "popularity-count" and meta["run_date"] == "2026-01-10"
    assert meta["datasets"] == {"interactions": interactions_csv, "items": None, "users": None, "format": "auto",
                                "schemas": [], "renames": []}
    assert meta["data_stats"]["interactions"] == 120 and meta["data_stats"]["users"] == 30
    # The reference time is the end of the run date, not the latest event.
    assert meta["data_stats"]["reference_time"] == END + DAY
    popular = registry.read_artifact(spark, loaded, "popular_items").orderBy("rank").collect()
    assert len(popular) == 10 and popular[0]["score"] == 12.0  # every item has 12 distinct users


def test_cli_trains_als_with_params(spark, tmp_path, interactions_csv, capsys):
    solution = str(tmp_path / "als")
    code = main(cli_args("user-personalization", interactions_csv, solution,
                         "--param", "rank=3", "--param", "maxIter=2", "--param", "regParam=0.5"))
    assert code == 0, capsys.readouterr().err
    loaded = registry.load_version(spark, solution)
    assert loaded.metadata["params"]["rank"] == 3 and loaded.metadata["params"]["regParam"] == 0.5
    factors = registry.read_artifact(spark, loaded, "user_factors").collect()
    assert len(factors) == 30 and all(len(r["features"]) == 3 for r in factors)


def test_minimums_apply_after_event_filtering(tmp_path, interactions_csv, capsys):
    # 10 purchases survive --event-type purchase: below the 50 interactions asked for.
    code = main(cli_args("popularity-count", interactions_csv, str(tmp_path / "s"),
                         "--event-type", "purchase"))
    assert code == 1
    err = capsys.readouterr().err
    assert "after event filtering: only 10 valid interactions; at least 50 are needed" in err
    assert not (tmp_path / "s" / registry.VERSIONS_DIR).exists()


def test_bad_param_is_a_usage_error_before_reading_data(tmp_path, capsys):
    code = main(cli_args("user-personalization", str(tmp_path / "absent.csv"), str(tmp_path / "s"),
                         "--param", "rnk=4"))
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown parameter 'rnk' for recipe user-personalization; valid parameters: alpha," in err


def test_direct_call_returns_the_summary(spark, tmp_path, interactions_csv):
    settings = Settings(validation=ValidationSettings(min_interactions=50, min_users_with_two_interactions=10))
    summary = train.run(spark, settings, RUN_DATE, interactions=interactions_csv, recipe="trending-now",
                        solution=str(tmp_path / "t"), params=(("window_days", 1),), hpo=False,
                        evaluate=False)
    version = registry.load_version(spark, str(tmp_path / "t"))
    assert (summary["version"], summary["path"]) == (version.version, version.path)
    assert summary["params"] == version.metadata["params"] == {"window_days": 1.0}
    trending = registry.read_artifact(spark, version, "trending_items").count()
    assert trending > 0 and version.metadata["data_stats"]["trending_fallback"] is None


def test_evaluate_stores_holdout_metrics(spark, tmp_path, interactions_csv):
    settings = Settings(validation=ValidationSettings(min_interactions=50, min_users_with_two_interactions=10),
                        evaluate=EvaluateSettings(protocol="stratified-user", k=(5,)))  # 10 items
    summary = train.run(spark, settings, RUN_DATE, interactions=interactions_csv, recipe="popularity-count",
                        solution=str(tmp_path / "e"), hpo=False, evaluate=True)
    stored = registry.load_version(spark, str(tmp_path / "e")).metadata["metrics"]
    assert stored == summary["metrics"]
    assert stored["protocol"] == "stratified-user" and "skipped" not in stored
    # Every user holds out a quarter of their 4 events; popularity's hits are real numbers in [0, 1].
    assert stored["split"]["evaluated_users"] > 0 and 0.0 <= stored["ndcg@5"] <= 1.0
    assert stored["hit_rate@5"] > 0


def test_default_training_trains_once_and_stores_no_metrics(spark, tmp_path, interactions_csv):
    settings = Settings(validation=ValidationSettings(min_interactions=50, min_users_with_two_interactions=10))
    summary = train.run(spark, settings, RUN_DATE, interactions=interactions_csv, recipe="popularity-count",
                        solution=str(tmp_path / "d"))
    assert summary["metrics"] == {}
    assert registry.load_version(spark, str(tmp_path / "d")).metadata["metrics"] == {}


def test_retraining_a_run_date_replaces_its_version_and_latest_follows_the_run_date(
        spark, tmp_path, interactions_csv):
    settings = Settings(validation=ValidationSettings(min_interactions=50, min_users_with_two_interactions=10))
    solution = str(tmp_path / "r")
    first = train.run(spark, settings, RUN_DATE, interactions=interactions_csv, recipe="popularity-count",
                      solution=solution)
    later = train.run(spark, settings, RUN_DATE + dt.timedelta(days=2), interactions=interactions_csv,
                      recipe="popularity-count", solution=solution)
    again = train.run(spark, settings, RUN_DATE, interactions=interactions_csv, recipe="popularity-count",
                      solution=solution)
    # The retry of RUN_DATE replaced the first version instead of adding a second one.
    assert registry.list_versions(spark, solution) == sorted([later["version"], again["version"]])
    assert first["version"] not in registry.list_versions(spark, solution)
    # A backfill of RUN_DATE + 1 uses the version of RUN_DATE, never the newer one.
    assert registry.load_version(spark, solution, run_date=RUN_DATE + dt.timedelta(days=1)).version == again["version"]
    assert registry.load_version(spark, solution, run_date=RUN_DATE + dt.timedelta(days=2)).version == later["version"]
    assert registry.load_version(spark, solution).version == again["version"]  # newest id without a date
    with pytest.raises(JobError, match="trained for a run date on or before 2026-01-09"):
        registry.load_version(spark, solution, run_date=RUN_DATE - dt.timedelta(days=1))
