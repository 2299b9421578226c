"""The recipe catalogue: declarations read by config, CLI, HPO and scoring; a toy recipe added
through the catalogue alone is trained, saved and scored by the shared batch-job runner."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest

from batchrec import catalogue
from batchrec.config import Settings, ValidationSettings, load_settings
from batchrec.errors import ConfigError, UsageError

RUN_DATE = dt.date(2026, 1, 10)
END = int(dt.datetime(2026, 1, 10, tzinfo=dt.timezone.utc).timestamp())


def test_every_recipe_declares_what_the_rest_reads():
    for spec in catalogue.RECIPES.values():
        assert spec.scorer and spec.training_module().train  # importable, with a train function
        assert set(spec.search_space) <= set(spec.params)
        assert spec.answers and set(spec.answers) <= set(catalogue.CAPABILITIES)
        assert hasattr(Settings(), spec.settings_section)  # config built its section from the entry


def test_params_are_checked_by_type_and_range_with_the_valid_values_listed():
    assert catalogue.resolve_params("trending-now", None, {"window_days": 3})["window_days"] == 3.0
    with pytest.raises(UsageError, match=r"window_days=0.0 for recipe trending-now; expected float > 0.0"):
        catalogue.resolve_params("trending-now", None, {"window_days": 0})
    with pytest.raises(UsageError, match="unknown parameter 'rnak' .* valid parameters: alpha, cgKernel, cgMaxBroadcastMb"):
        catalogue.resolve_params("user-personalization", None, {"rnak": 3})
    with pytest.raises(UsageError, match="a popularity-count model cannot recommend users for an item; "
                                         "recipes that can: user-personalization"):
        catalogue.require("popularity-count", catalogue.USERS_FOR_ITEM, "recommend users for an item")


def test_configuration_ranges_come_from_the_catalogue(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[als]\nmaxIter = 0\n")
    with pytest.raises(ConfigError, match=r"bad.toml: parameter als.maxIter=0; expected int >= 1"):
        load_settings(config_file=bad, environ={})


def test_the_cli_lists_the_catalogue_and_the_catalogue_imports_no_spark():
    from batchrec import cli

    assert cli.RECIPE_NAMES == catalogue.names()
    code = "import sys, batchrec.catalogue, batchrec.config; print('pyspark' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("command, params, message", [
    ("train", ["rank=0"], "parameter rank=0 for recipe user-personalization; expected int >= 1"),
    ("train", ["solver=spark"], "parameter solver='spark' for recipe user-personalization; "
                                "expected one of cg, mllib"),
    ("train", ["rnak=3"], "unknown parameter 'rnak' for recipe user-personalization; valid parameters: alpha,"),
    ("evaluate", ["rank=8", "window_days=0"], "parameter window_days=0.0 for recipe trending-now; "
                                              "expected float > 0.0"),
    ("evaluate", ["regParam=nan"], "parameter regParam=nan for recipe user-personalization; "
                                   "expected a finite float >= 0.0"),
    ("evaluate", ["rnak=3"], "--param rnak=3: no evaluated recipe (user-personalization, trending-now) "
                             "has a parameter 'rnak'"),
])
def test_param_errors_stop_train_and_evaluate_before_spark_starts(monkeypatch, capsys, tmp_path, command,
                                                                  params, message):
    import batchrec.spark
    from batchrec.cli import main

    def no_spark(*args, **kwargs):
        raise AssertionError("Spark must not start for a --param error")

    monkeypatch.setattr(batchrec.spark, "get_spark", no_spark)
    absent = str(tmp_path / "absent.csv")  # never read: the parameters are checked first
    if command == "train":
        args = ["train", "--recipe", "user-personalization", "--solution", str(tmp_path / "s")]
    else:
        args = ["evaluate", "--recipe", "user-personalization", "--recipe", "trending-now",
                "--report", str(tmp_path / "report.json")]
    args += ["--interactions", absent] + [a for p in params for a in ("--param", p)]
    assert main(args) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], lines
    assert not any(tmp_path.iterdir())  # nothing written


# ---------------------------------------------------------------- a toy recipe, end to end

TOY = "reverse-alphabetical"
TOY_LIST = "toy_list"


def train(spark, data, params):
    """Toy training: every item once, ranked by ID descending, the first ``size`` kept."""
    from pyspark.sql import Window, functions as F

    items = data.prepared.select("ITEM_ID").distinct()
    ranked = (items.withColumn("rank", F.row_number().over(Window.orderBy(F.col("ITEM_ID").desc())))
              .where(F.col("rank") <= params["size"])
              .select("ITEM_ID", F.lit(None).cast("double").alias("score"), F.col("rank").cast("int")))
    return {TOY_LIST: ranked}, {"toy_items": ranked.count()}


@pytest.fixture
def toy_recipe():
    spec = catalogue.register(catalogue.RecipeSpec(
        name=TOY, module=__name__, settings_section="toy", summary="items by ID, last first",
        params={"size": catalogue.Param(3, minimum=1)},
        artifacts={TOY_LIST: catalogue.RANKED_LIST_SCHEMA},
        answers=frozenset({catalogue.ITEMS_FOR_USER, catalogue.RANKS_ITEMS}),
        scorer="batchrec.scoring.lists", scorer_options={"lists": ((TOY_LIST, "model"),)}))
    yield spec
    catalogue.unregister(TOY)


def test_a_recipe_added_through_the_catalogue_trains_and_scores_through_the_runner(
        spark, tmp_path, toy_recipe):
    from batchrec.commands import rank, recommend, train as train_command

    csv = tmp_path / "interactions.csv"
    rows = [(u, i) for u in ("u1", "u2", "u3") for i in ("a", "b", "c", "d", "e") if (u, i) != ("u3", "e")]
    csv.write_text("USER_ID,ITEM_ID,TIMESTAMP\n" + "".join(f"{u},{i},{END - 60}\n" for u, i in rows
                                                          if not (u == "u1" and i in "de")))
    settings = Settings(validation=ValidationSettings(min_interactions=1, min_users_with_two_interactions=1))
    solution = str(tmp_path / "toy")
    trained = train_command.run(spark, settings, RUN_DATE, interactions=str(csv), recipe=TOY,
                                solution=solution, params=(("size", 4),))
    assert trained["params"] == {"size": 4}

    out = str(tmp_path / "recs")
    summary = recommend.run(spark, settings, RUN_DATE, solution=solution, output=out)
    got = sorted((r.user_id, r.rank, r.item_id, r.reason) for r in spark.read.format("delta").load(out).collect())
    # The toy list is e, d, c, b; each user gets it minus what they saw (u1 saw a, b, c; u2 all five).
    assert got == [("u1", 1, "e", "model"), ("u1", 2, "d", "model"), ("u3", 1, "e", "model")]
    assert (summary["users"], summary["rows"], summary["recipe"]) == (3, 3, TOY)

    source = tmp_path / "ranking.jsonl"
    source.write_text('{"userId": "u1", "itemList": ["a", "c", "e"]}\n')
    ranked = rank.run(spark, settings, RUN_DATE, solution=solution, output=str(tmp_path / "ranked"),
                      input_path=str(source))
    table = sorted((r.rank, r.item_id, r.reason)
                   for r in spark.read.format("delta").load(str(tmp_path / "ranked")).collect())
    assert table == [(1, "e", "model"), (2, "c", "model"), (3, "a", "unscored")] and ranked["rows"] == 3
