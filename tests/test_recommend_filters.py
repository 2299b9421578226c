"""``batchrec recommend --filter``: Personalize's filter language applied before the top-N cut, on a
popularity-count and a user-personalization solution trained on a tiny catalogue.

Catalogue: i1..i8 with a CATEGORY and a numeric PRICE; user uK interacted with i1..i(9-K), so the
popularity order is i1 (8 users) > i2 > ... > i8 (1 user), and u5 has seen i1..i4, u8 only i1.
u5's interactions with i3 and i4 are purchases, every other one a click.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from batchrec.cli import main
from cli_summary import run

RUN_DATE = dt.date(2026, 3, 1)
END = int(dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc).timestamp())
COMMON = ["--master", "local[2]", "--run-date", RUN_DATE.isoformat(), "--log-level", "WARNING"]
ITEMS = {"i1": ("shoes", 30), "i2": ("shoes", 80), "i3": ("hats", 20), "i4": ("hats", 60),
         "i5": ("bags", 40), "i6": ("bags", 90), "i7": ("hats", 10), "i8": ("shoes", 45)}
HISTORY = {f"u{k}": [f"i{j}" for j in range(1, 10 - k)] for k in range(1, 9)}
PURCHASES = {("u5", "i3"), ("u5", "i4")}
SHOES = {item for item, (category, _) in ITEMS.items() if category == "shoes"}
REQUESTS = ["u5", "u8", "new", "u3"]


@pytest.fixture(scope="module")
def data(spark, tmp_path_factory):
    """The datasets and two solutions trained on them: popularity-count and user-personalization."""
    root = tmp_path_factory.mktemp("filters")
    interactions = root / "interactions.csv"
    interactions.write_text("USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\n" + "".join(
        f"{user},{item},{END - 3600 * (10 * k + j + 1)},{'purchase' if (user, item) in PURCHASES else 'click'}\n"
        for k, (user, items) in enumerate(HISTORY.items()) for j, item in enumerate(items)))
    items = root / "items.csv"
    items.write_text("ITEM_ID,CATEGORY,PRICE\n" + "".join(f"{i},{c},{p}\n" for i, (c, p) in ITEMS.items()))
    source = root / "users.jsonl"
    source.write_text("".join(json.dumps({"userId": user}) + "\n" for user in REQUESTS))
    found = {"root": root, "interactions": interactions, "items": items, "input": source}
    train(found, "popularity-count")
    return found


def train(data, recipe, *params):
    data[recipe] = data["root"] / recipe
    assert main(["train", *COMMON, "--min-interactions", "1", "--min-users", "0", "--recipe", recipe,
                 "--interactions", str(data["interactions"]), "--items", str(data["items"]),
                 "--solution", str(data[recipe]), *[x for p in params for x in ("--param", p)]]) == 0


def recommend(capsys, spark, data, tmp_path, recipe, *options, source=None, num_results=3):
    """Run recommend; returns (summary, {user: [(item, reason), ...]}, JSON lines by user)."""
    out, lines = tmp_path / "recs", tmp_path / "lines"
    code, summary, err = run(capsys, "recommend", *COMMON, "--solution", data[recipe], "--input",
                             source or data["input"], "--output", out, "--jsonl", lines,
                             "--num-results", num_results, *options)
    assert code == 0, err
    rows = sorted((r.user_id, r.rank, r.item_id, r.reason) for r in spark.read.format("delta").load(str(out)).collect())
    lists: dict[str, list] = {}
    for user, _, item, reason in rows:
        lists.setdefault(user, []).append((item, reason))
    files = [f for f in sorted(lines.iterdir()) if f.is_file()]
    by_user = {}
    for f in files:
        for line in f.read_text().splitlines():
            parsed = json.loads(line)
            # Error lines echo the request as the raw text (a JSON string), served lines as an object.
            request = parsed["input"] if isinstance(parsed["input"], dict) else json.loads(parsed["input"])
            by_user[request["userId"]] = parsed
    return summary, lists, by_user


def items_of(lists, user):
    return [item for item, _ in lists.get(user, [])]


def test_exclude_shoes_from_popular_lists_keeps_them_full(spark, capsys, data, tmp_path):
    expression = 'EXCLUDE ItemID WHERE Items.CATEGORY IN ("shoes")'
    summary, lists, lines = recommend(capsys, spark, data, tmp_path, "popularity-count", "--filter", expression)
    assert summary["filter"] == expression
    assert {user: items_of(lists, user) for user in REQUESTS} == {
        "u5": ["i5", "i6", "i7"], "u8": ["i3", "i4", "i5"], "new": ["i3", "i4", "i5"],
        "u3": ["i7"]}  # u3 has seen i1..i6; of i7 and i8 only i7 is not a shoe
    assert lines["u5"]["output"]["recommendedItems"] == ["i5", "i6", "i7"] and lines["u5"]["error"] is None


def test_without_a_filter_the_summary_says_null_and_shoes_come_back(spark, capsys, data, tmp_path):
    summary, lists, _ = recommend(capsys, spark, data, tmp_path, "popularity-count")
    assert summary["filter"] is None
    assert items_of(lists, "u8") == ["i2", "i3", "i4"]


def test_include_price_below_a_global_value(spark, capsys, data, tmp_path):
    summary, lists, _ = recommend(capsys, spark, data, tmp_path, "popularity-count", "--filter",
                                  "INCLUDE ItemID WHERE Items.PRICE < $MAX", "--filter-values", '{"MAX": "\\"50\\""}')
    # Under 50: i1 (30), i3 (20), i5 (40), i7 (10), i8 (45).
    assert {user: items_of(lists, user) for user in REQUESTS} == {
        "u5": ["i5", "i7", "i8"], "u8": ["i3", "i5", "i7"], "new": ["i1", "i3", "i5"], "u3": ["i7", "i8"]}
    assert summary["filter_values_not_applied"] == 0


def test_interactions_filter_excludes_what_the_user_purchased(spark, capsys, data, tmp_path):
    # Only clicks count as seen, so u5's purchases i3 and i4 are left to the filter.
    expression = 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchase")'
    _, unfiltered, _ = recommend(capsys, spark, data, tmp_path / "plain", "popularity-count",
                                 "--exclude-event-type", "click")
    assert items_of(unfiltered, "u5") == ["i3", "i4", "i5"]
    _, lists, _ = recommend(capsys, spark, data, tmp_path / "filtered", "popularity-count",
                            "--exclude-event-type", "click", "--filter", expression)
    assert {user: items_of(lists, user) for user in REQUESTS[:3]} == {
        "u5": ["i5", "i6", "i7"], "u8": ["i2", "i3", "i4"], "new": ["i1", "i2", "i3"]}


def test_per_line_filter_values_apply_and_unusable_ones_get_an_error(spark, capsys, data, tmp_path):
    source = tmp_path / "values.jsonl"
    source.write_text('{"userId": "u8", "filterValues": {"MAX": "\\"25\\""}}\n'
                      '{"userId": "u5", "filterValues": {"MAX": "\\"cheap\\""}}\n'
                      '{"userId": "new"}\n')
    summary, lists, lines = recommend(capsys, spark, data, tmp_path, "popularity-count", "--filter",
                                      "INCLUDE ItemID WHERE Items.PRICE < $MAX", "--filter-values",
                                      '{"MAX": "\\"50\\""}', source=source)
    assert items_of(lists, "u8") == ["i3", "i7"]  # under 25 and unseen: only two
    assert items_of(lists, "new") == ["i1", "i3", "i5"]  # the global value
    assert "u5" not in lists
    assert lines["u5"]["output"] is None and "not a number" in lines["u5"]["error"]
    assert summary["errors"] == 1 and summary["filter_values_not_applied"] == 0


def test_a_file_whose_every_line_the_filter_cannot_use_is_a_data_error_and_keeps_the_run(
        spark, capsys, data, tmp_path):
    """Lines the filter marks with an error count as unusable: a file of only such lines must not
    replace the run date's rows with nothing."""
    out = tmp_path / "recs"
    code, _, err = run(capsys, "recommend", *COMMON, "--solution", data["popularity-count"], "--input",
                       data["input"], "--output", out, "--num-results", 2)
    assert code == 0, err
    before = sorted(map(tuple, spark.read.format("delta").load(str(out)).collect()))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"userId": "u8", "filterValues": {"MAX": "\\"cheap\\""}}\n'
                   '{"userId": "u5", "filterValues": {"MAX": "\\"dear\\""}}\n')
    code, _, err = run(capsys, "recommend", *COMMON, "--solution", data["popularity-count"], "--input", bad,
                       "--output", out, "--num-results", 2, "--filter", "INCLUDE ItemID WHERE Items.PRICE < $MAX")
    assert code == 1
    assert f"--input {bad}: none of its 2 lines is usable" in err and "not a number" in err
    assert sorted(map(tuple, spark.read.format("delta").load(str(out)).collect())) == before


def test_a_syntax_error_exits_2_with_its_column_and_writes_nothing(capsys, data, tmp_path):
    out = tmp_path / "recs"
    code, _, err = run(capsys, "recommend", *COMMON, "--solution", data["popularity-count"], "--output", out,
                       "--filter", 'EXCLUDE ItemID WHERE Items.CATEGORY IN ("shoes"')
    assert code == 2
    assert "usage error" in err and "column 48" in err
    assert not out.exists()


def test_an_unknown_field_exits_2_before_anything_is_written(spark, capsys, data, tmp_path):
    out = tmp_path / "recs"
    code, _, err = run(capsys, "recommend", *COMMON, "--solution", data["popularity-count"], "--output", out,
                       "--filter", 'EXCLUDE ItemID WHERE Items.COLOR IN ("red")')
    assert code == 2
    assert "no field 'COLOR'" in err
    assert not out.exists()


def test_few_items_pass_popular_backfill_passes_the_filter_too(spark):
    """Popular items outside the model fill a short filtered list only when they pass the filter;
    ``[filters] backfill = false`` returns fewer items."""
    from batchrec.columns import USER_ID
    from batchrec.config import RecommendSettings
    from batchrec.filters import FilterSettings
    from batchrec.filters.compile import compile_filter
    from batchrec.scoring import factors
    from batchrec.scoring.model import Model

    artifacts = {
        "user_map": spark.createDataFrame([("u1", 0)], "USER_ID string, user_idx int"),
        "user_factors": spark.createDataFrame([(0, [1.0, 0.0])], "user_idx int, features array<float>"),
        "item_map": spark.createDataFrame([("a", 0), ("b", 1), ("c", 2)], "ITEM_ID string, item_idx int"),
        "item_factors": spark.createDataFrame([(0, [1.0, 0.0]), (1, [0.5, 0.0]), (2, [0.2, 0.0])],
                                              "item_idx int, features array<float>"),
        # x and y have no factors: only they can extend a list that is short after filtering.
        "popular_items": spark.createDataFrame([(k, 10.0 - r, r + 1) for r, k in enumerate("cxay")],
                                               "ITEM_ID string, score double, rank int"),
    }
    items = spark.createDataFrame([("a", "red"), ("b", "blue"), ("c", "red"), ("x", "red"), ("y", "blue")],
                                  "ITEM_ID string, CATEGORY string")
    users = spark.createDataFrame([("u1",), ("new",)], "USER_ID string")
    elig = compile_filter(spark, 'EXCLUDE ItemID WHERE Items.CATEGORY IN ("red")', None, {"items": items},
                          users, USER_ID)
    model = Model.of("user-personalization", artifacts)

    def lists(backfill):
        out = factors.items_for_user(model, users, None, 3, RecommendSettings(), item_filter=elig,
                                     filter_settings=FilterSettings(backfill=backfill))
        return sorted((r[USER_ID], r["rank"], r["ITEM_ID"], r["reason"]) for r in out.collect())

    assert lists(True) == [("new", 1, "y", "popular"), ("u1", 1, "b", "model"), ("u1", 2, "y", "popular")]
    assert lists(False) == [("new", 1, "y", "popular"), ("u1", 1, "b", "model")]


def test_trending_without_backfill_returns_only_trending_items_that_pass(spark):
    """trending-now's list is its trending items then popular ones; with ``backfill = false`` a
    filtered list keeps only the trending items that pass."""
    from batchrec.columns import USER_ID
    from batchrec.config import RecommendSettings
    from batchrec.filters import FilterSettings
    from batchrec.filters.compile import compile_filter
    from batchrec.scoring import lists as list_scorer
    from batchrec.scoring.model import Model

    artifacts = {
        "trending_items": spark.createDataFrame([("t1", 3.0, 1), ("t2", 2.0, 2), ("t3", 1.0, 3)],
                                                "ITEM_ID string, score double, rank int"),
        "popular_items": spark.createDataFrame([("p1", 9.0, 1), ("t1", 8.0, 2), ("p2", 7.0, 3)],
                                               "ITEM_ID string, score double, rank int"),
    }
    items = spark.createDataFrame([("t1", "red"), ("t2", "blue"), ("t3", "red"), ("p1", "blue"), ("p2", "blue")],
                                  "ITEM_ID string, CATEGORY string")
    users = spark.createDataFrame([("u1",)], "USER_ID string")
    elig = compile_filter(spark, 'EXCLUDE ItemID WHERE Items.CATEGORY IN ("red")', None, {"items": items},
                          users, USER_ID)
    model = Model.of("trending-now", artifacts)

    def lists(backfill):
        out = list_scorer.items_for_user(model, users, None, 3, RecommendSettings(), item_filter=elig,
                                         filter_settings=FilterSettings(backfill=backfill))
        return [(r["ITEM_ID"], r["reason"]) for r in sorted(out.collect(), key=lambda r: r["rank"])]

    assert lists(True) == [("t2", "trending"), ("p1", "popular"), ("p2", "popular")]
    assert lists(False) == [("t2", "trending")]


def test_user_personalization_applies_the_filter_before_the_cut(spark, capsys, data, tmp_path):
    train(data, "user-personalization", "rank=3", "maxIter=3")
    _, lists, _ = recommend(capsys, spark, data, tmp_path / "shoes", "user-personalization", "--filter",
                            'EXCLUDE ItemID WHERE Items.CATEGORY IN ("shoes")')
    assert not SHOES & {item for user in lists for item in items_of(lists, user)}
    # u5 has seen i1..i4: the non-shoes left are exactly i5, i6, i7, in the model's order.
    assert sorted(items_of(lists, "u5")) == ["i5", "i6", "i7"]
    assert {reason for _, reason in lists["u5"]} == {"model"}
    assert len(items_of(lists, "u8")) == 3 and set(items_of(lists, "u8")) <= {"i3", "i4", "i5", "i6", "i7"}
    assert items_of(lists, "u3") == ["i7"]
    # The unknown user gets the popular items that pass.
    assert lists["new"] == [("i3", "popular"), ("i4", "popular"), ("i5", "popular")]

    _, lists, _ = recommend(capsys, spark, data, tmp_path / "price", "user-personalization", "--filter",
                            "INCLUDE ItemID WHERE Items.PRICE < $MAX", "--filter-values", '{"MAX": "\\"50\\""}')
    assert sorted(items_of(lists, "u5")) == ["i5", "i7", "i8"]
    assert len(items_of(lists, "u8")) == 3 and set(items_of(lists, "u8")) <= {"i3", "i5", "i7", "i8"}
    assert items_of(lists, "new") == ["i1", "i3", "i5"]

    _, lists, _ = recommend(capsys, spark, data, tmp_path / "bought", "user-personalization",
                            "--exclude-event-type", "click", "--filter",
                            'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchase")')
    assert len(items_of(lists, "u5")) == 3 and set(items_of(lists, "u5")) <= {"i5", "i6", "i7", "i8"}


def test_users_dataset_is_an_input_no_output_may_overwrite(capsys, data, tmp_path):
    users = tmp_path / "users.csv"
    users.write_text("USER_ID,AGE\nu1,30\n")
    before = users.read_bytes()
    code, _, err = run(capsys, "recommend", *COMMON, "--solution", data["popularity-count"],
                       "--output", tmp_path / "recs", "--jsonl", users, "--users", users)
    assert code == 2 and "--jsonl" in err and "--users" in err
    assert users.read_bytes() == before and not (tmp_path / "recs").exists()
