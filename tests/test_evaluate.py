"""``batchrec evaluate`` end to end, the runner used by ``train``, parameter search and reports."""

from __future__ import annotations

import dataclasses
import json
import random
import re

import pytest

from batchrec import cli
from batchrec.columns import EVENT_TYPE, ITEM_ID, TIMESTAMP, USER_ID
from batchrec.config import load_settings
from batchrec.errors import UsageError
from batchrec.evaluation import hpo, runner
from batchrec.evaluation import report as reports

SMALL = ["--min-interactions", "0", "--min-users", "0"]


def _two_tastes(n_a=26, n_b=14, per_user=8, seed=5):
    """Users of taste A pick among items a0..a9, users of taste B among b0..b9.

    A is the larger group, so the most popular items are all A items: popularity serves B users
    badly, a collaborative model serves both.
    """
    rng = random.Random(seed)
    rows = []
    for group, n in (("a", n_a), ("b", n_b)):
        for u in range(n):
            for t, item in enumerate(rng.sample(range(10), per_user)):
                rows.append((f"{group}{u:02d}", f"{group}{item}", 1_600_000_000 + 3600 * t, "click"))
    return rows


def _write_csv(path, rows):
    lines = [f"{USER_ID},{ITEM_ID},{TIMESTAMP},{EVENT_TYPE}"] + [",".join(map(str, r)) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def tastes_csv(tmp_path_factory):
    return _write_csv(tmp_path_factory.mktemp("eval") / "interactions.csv", _two_tastes())


def test_evaluate_compares_recipes_and_writes_reports(spark, tastes_csv, tmp_path, capsys):
    report, page = tmp_path / "report.json", tmp_path / "report.html"
    code = cli.main(["evaluate", "--interactions", str(tastes_csv), "--recipe", "user-personalization",
                     "--recipe", "popularity-count", "--protocol", "stratified-user", "--k", "2,5",
                     "--param", "rank=4", "--param", "maxIter=8", "--param", "alpha=5.0",
                     "--report", str(report), "--html", str(page), *SMALL])
    assert code == 0
    doc = json.loads(report.read_text())
    assert doc["protocol"] == "stratified-user" and doc["seed"] == 42 and doc["k"] == [2, 5]
    # 40 users x 8 interactions: bround(0.75 * 8) = 6 train rows each.
    assert doc["split"]["interactions"] == 320 and doc["split"]["train_interactions"] == 240
    assert doc["split"]["evaluated_users"] == 40 and doc["catalog_items"] == 20
    by_recipe = {r["recipe"]: r for r in doc["recipes"]}
    als, pop = by_recipe["user-personalization"], by_recipe["popularity-count"]
    assert als["params"]["rank"] == 4 and als["params"]["maxIter"] == 8
    for name in ("precision@2", "recall@5", "ndcg@5", "mrr@5", "map@5", "hit_rate@2", "coverage",
                 "novelty", "popularity_percentile"):
        assert name in als["metrics"] and name in pop["metrics"]
    assert als["metrics"]["ndcg@5"] > pop["metrics"]["ndcg@5"] + 0.1
    # Popularity pushes the A items to everyone; ALS also serves B users their B items.
    assert pop["metrics"]["coverage"] < als["metrics"]["coverage"]
    assert pop["metrics"]["popularity_percentile"] > als["metrics"]["popularity_percentile"]
    assert sum(pop["popularity_histogram"]["recommended"]) == 40 * 5
    assert set(als["seconds"]) == {"train", "recommend", "metrics"}
    # hpo_metric ndcg@10 is not evaluated at K 2,5: recipes are compared on ndcg at the largest K.
    versus = pop["versus_first"]
    assert als["versus_first"] is None
    assert versus["baseline"] == "user-personalization" and versus["metric"] == "ndcg@5"
    assert versus["ratio"] == pytest.approx(pop["metrics"]["ndcg@5"] / als["metrics"]["ndcg@5"])
    assert versus["low"] <= versus["ratio"] <= versus["high"] < 1
    assert versus["wins"] + versus["losses"] + versus["ties"] == versus["users"] == 40
    out = capsys.readouterr().out
    assert "protocol=stratified-user" in out and "ndcg@5" in out and "popularity-count" in out
    assert "popularity-count / user-personalization ndcg@5: " in out

    text = page.read_text()
    assert text.count("src='data:image/png;base64,") == 3
    assert f"<p>popularity-count / user-personalization ndcg@5: {versus['ratio']:.2f}x (90% interval" in text
    # Self-contained: no link, script or image reaches outside the file.
    assert not re.search(r"(src|href)=['\"](?!data:)", text)
    assert "http://" not in text and "https://" not in text and "<script" not in text


def test_unknown_protocol_exits_2(tastes_csv, tmp_path, capsys):
    code = cli.main(["evaluate", "--interactions", str(tastes_csv), "--recipe", "popularity-count",
                     "--protocol", "random", "--report", str(tmp_path / "r.json")])
    assert code == 2
    assert "random" in capsys.readouterr().err


def test_unknown_protocol_in_settings_is_a_usage_error(spark, tastes_csv, tmp_path):
    from batchrec.commands import evaluate

    settings = load_settings()
    settings = dataclasses.replace(settings, evaluate=dataclasses.replace(
        settings.evaluate, protocol="leave-one-out"))
    with pytest.raises(UsageError, match="unknown evaluation protocol 'leave-one-out'"):
        evaluate.run(spark, settings, None, interactions=str(tastes_csv),
                     recipes=("popularity-count",), report=tmp_path / "r.json")


def test_k_larger_than_catalogue_exits_2(spark, tastes_csv, tmp_path, capsys):
    code = cli.main(["evaluate", "--interactions", str(tastes_csv), "--recipe", "popularity-count",
                     "--protocol", "stratified-item", "--k", "5,50", "--report",
                     str(tmp_path / "r.json"), *SMALL])
    assert code == 2
    assert "K=50 is larger than the catalogue of 20 items" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_too_few_users_exits_1_naming_the_counts(spark, tmp_path, capsys):
    path = _write_csv(tmp_path / "few.csv", _two_tastes(n_a=3, n_b=2, per_user=4))
    code = cli.main(["evaluate", "--interactions", str(path), "--recipe", "popularity-count",
                     "--protocol", "personalize", "--report", str(tmp_path / "r.json"), *SMALL])
    assert code == 1
    assert "found 5 such users, expected at least 10" in capsys.readouterr().err


def test_unknown_param_for_every_recipe_is_a_usage_error():
    from batchrec.commands.evaluate import route_params

    assert route_params(("user-personalization", "trending-now"),
                        (("rank", 8), ("window_days", 3.0))) == {
        "user-personalization": {"rank": 8}, "trending-now": {"window_days": 3.0}}
    with pytest.raises(UsageError, match=r"--param rnk=8: no evaluated recipe.*valid parameters: .*rank"):
        route_params(("user-personalization",), (("rnk", 8),))


def _frame(spark, rows):
    schema = f"{USER_ID} string, {ITEM_ID} string, {TIMESTAMP} long, {EVENT_TYPE} string"
    return spark.createDataFrame(rows, schema)


def test_holdout_metrics_for_train_and_skip_on_tiny_data(spark):
    settings = load_settings()
    settings = dataclasses.replace(settings, evaluate=dataclasses.replace(
        settings.evaluate, protocol="stratified-user", k=(3,)))
    got = runner.holdout_metrics(spark, "popularity-count", _frame(spark, _two_tastes()), settings)
    assert got["protocol"] == "stratified-user" and got["k"] == [3]
    assert got["split"]["evaluated_users"] == 40 and 0 < got["precision@3"] <= 1
    tiny = dataclasses.replace(settings, evaluate=dataclasses.replace(settings.evaluate,
                                                                      protocol="personalize"))
    skipped = runner.holdout_metrics(spark, "popularity-count",
                                     _frame(spark, _two_tastes(2, 1, 3)), tiny)
    assert skipped["protocol"] == "personalize" and "found 3 such users" in skipped["skipped"]


def test_search_parameters_records_every_trial_and_returns_the_best(spark):
    settings = load_settings()
    settings = dataclasses.replace(settings, evaluate=dataclasses.replace(
        settings.evaluate, protocol="temporal", hpo_trials=3, hpo_metric="recall@3"))
    # Recent interactions favour the B items: a short trending window sees that.
    rows = _two_tastes() + [(f"a{u:02d}", "b0", 1_600_100_000 + u, "click") for u in range(26)]
    best, trials = runner.search_parameters(spark, "trending-now", _frame(spark, rows), settings)
    assert [t["trial"] for t in trials] == [0, 1, 2]
    assert trials[0]["params"] == {"window_days": 7.0}  # the current settings come first
    assert all(t["metric"] == "recall@3" and t["seconds"] >= 0 for t in trials)
    assert best == max(trials, key=lambda t: t["value"])["params"]
    fixed, none = runner.search_parameters(spark, "trending-now", _frame(spark, rows), settings,
                                           {"window_days": 2.0})
    assert fixed == {"window_days": 2.0} and none == []


def test_candidates_keep_base_first_fixed_params_and_budget():
    base = {"rank": 64, "regParam": 0.1, "alpha": 10.0, "maxIter": 15, "seed": 42}
    points = hpo.candidates("user-personalization", base, 6, seed=1, fixed={"rank": 64})
    assert points[0] == base and len(points) == 6
    assert all(p["rank"] == 64 and p["seed"] == 42 for p in points)
    assert len({json.dumps(p, sort_keys=True) for p in points}) == 6
    assert points == hpo.candidates("user-personalization", base, 6, seed=1, fixed={"rank": 64})
    grid = hpo.candidates("trending-now", {"window_days": 7.0}, 10, seed=0, method="grid")
    assert [p["window_days"] for p in grid] == [7.0, 1.0, 3.0, 14.0, 30.0]
    with pytest.raises(UsageError, match="evaluate.hpo_method = 'bayes'"):
        hpo.candidates("trending-now", {"window_days": 7.0}, 3, seed=0, method="bayes")
    with pytest.raises(UsageError, match="evaluate.hpo_metric = 'ndcg'"):
        runner.check_hpo_metric("ndcg", (10,))


def test_console_table_lists_each_metric_per_recipe():
    doc = {"protocol": "temporal", "seed": 1, "k": [5],
           "split": {"evaluated_users": 3, "truth_pairs": 4, "train_interactions": 10},
           "recipes": [{"recipe": "x", "metrics": {"ndcg@5": 0.5, "coverage": 0.25},
                        "seconds": {"train": 1.5}}]}
    table = reports.format_table(doc).splitlines()
    assert table[0] == "protocol=temporal seed=1 evaluated_users=3 truth_pairs=4 train_interactions=10"
    assert table[3].split() == ["ndcg@5", "0.5000"] and table[4].split() == ["coverage", "0.2500"]
