"""Compiled filters on a hand-made catalogue: each documented expression yields exactly the items
or users the documentation describes (expected sets written out by hand from tests/filter_data.py).

The Eligibility is read back by :func:`eligible`, a direct transcription of the documented rule
``(union of INCLUDEs, or everything) - union of EXCLUDEs`` per request, so these tests check the
compiled sets, memberships and pairs, not the scoring kernel (see test_topk.py and the end-to-end
test at the bottom for the kernel).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from pyspark.sql import functions as F

from batchrec.columns import ITEM_ID, USER_ID, USER_IDX
from batchrec.filters import ITEM_SEGMENT, RELATED, FilterError, FilterSettings
from batchrec.filters.compile import FILTER_VALUES, compile_filter, filter_values_column
from batchrec.filters.eligibility import ACTION, ERROR, EXCLUDE, INCLUDE, SET_ID
from batchrec.scoring import topk
from batchrec.scoring.masks import attach_filter_columns, collect_filter
from filter_data import (ALL_ITEMS, ALL_USERS, INTERACTION_COLUMNS, INTERACTIONS, ITEM_COLUMNS, ITEMS,
                         USER_COLUMNS, USERS)

USER_KEYS = ["u1", "u2", "u3", "u4", "u5", "u6"]
A = ALL_ITEMS


def items(*ids):
    return frozenset(ids)


@pytest.fixture(scope="module")
def datasets(spark):
    return {"items": spark.createDataFrame(ITEMS, ITEM_COLUMNS),
            "users": spark.createDataFrame(USERS, USER_COLUMNS),
            "interactions": spark.createDataFrame(INTERACTIONS, INTERACTION_COLUMNS)}


@pytest.fixture(scope="module")
def user_requests(spark):
    return spark.createDataFrame([(u,) for u in USER_KEYS], f"{USER_ID} string")


def rows(df, *columns):
    return [] if df is None else [tuple(r) for r in df.select(*columns).collect()]


def eligible(elig, keys, universe):
    """{key: eligible IDs} by the documented combination rule, from the compiled tables."""
    ident, key = elig.id_column, elig.key
    allowed = {r[0] for r in rows(elig.allowed, ident)} if elig.allowed is not None else set(universe)
    denied = {r[0] for r in rows(elig.denied, ident)}
    sets = defaultdict(set)
    for set_id, item in rows(elig.sets, SET_ID, ident):
        sets[set_id].add(item)
    applied = defaultdict(list)
    for k, set_id, action in rows(elig.membership, key, SET_ID, ACTION):
        applied[k].append((set_id, action))
    pairs = defaultdict(set)
    for k, set_id, item, action in rows(elig.pairs, key, SET_ID, ident, ACTION):
        # Pairs exist only for sets that apply to the request, with the set's action.
        assert (set_id, action) in applied[k] + list(elig.common), (k, set_id, action)
        pairs[(k, set_id)].add(item)
    errors = {r[0] for r in rows(elig.errors, key)}
    out = {}
    for k in keys:
        if k in errors:
            continue
        result = allowed - denied
        sets_here = applied[k] + list(elig.common)
        includes = [s for s, a in sets_here if a == INCLUDE]
        if includes:
            result &= set().union(*(sets[s] | pairs[(k, s)] for s in includes))
        for s, a in sets_here:
            if a == EXCLUDE:
                result -= sets[s] | pairs[(k, s)]
        out[k] = frozenset(result)
    return out


def per_user(**by_user):
    return {u: frozenset(v) for u, v in by_user.items()}


def every_user(ids):
    return {u: frozenset(ids) for u in USER_KEYS}


CLICK = '{"EVENT_TYPE": "\\"purchase\\""}'
ITEM_CASES = [
    # (documented expression, global values, expected per user)
    ("EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ($EVENT_TYPE)", CLICK,
     {**every_user(A), "u1": A - {"i3"}}),
    ("EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ($EVENT_TYPE)", None, every_user(A)),
    ('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click", "stream")', None,
     per_user(u1=A - {"i1", "i2"}, u2=A - {"i4"}, u3=A - {"i6"}, u4=A, u5=A - {"i3"}, u6=A - {"i8"})),
    ('INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")', None,
     per_user(u1={"i1"}, u2={"i4"}, u3={"i6"}, u4=set(), u5={"i3"}, u6={"i8"})),
    ('INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")', None,
     per_user(u1={"i1", "i2", "i3"}, u2={"i1", "i4", "i5"}, u3={"i2", "i6"}, u4={"i6", "i7"}, u5={"i3"},
              u6={"i8"})),
    ('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchased")', None, {**every_user(A), "u3": A - {"i2"}}),
    ("EXCLUDE ItemID WHERE Items.CATEGORY IN ($CATEGORY)", '{"CATEGORY": "\\"shoe\\""}',
     every_user({"i3", "i4", "i5", "i6", "i8"})),
    ('EXCLUDE ItemID WHERE Items.CATEGORY IN ("shoe") AND Items.DESCRIPTION NOT IN ("boot")', None,
     every_user(A - {"i2", "i7"})),
    ('EXCLUDE ItemID WHERE Items.CATEGORY_L1 IN ("shoe") AND Items.CATEGORY_L2 NOT IN ("boot")', None,
     every_user(A - {"i2", "i7"})),
    ("INCLUDE ItemID WHERE Items.PRICE <= $PRICE", '{"PRICE": "\\"25\\""}', every_user({"i1", "i2", "i7"})),
    ("INCLUDE ItemID WHERE Items.CREATION_TIMESTAMP < $DATE", '{"DATE": "\\"1625000000\\""}',
     every_user({"i1", "i2", "i3"})),
    ("INCLUDE ItemID WHERE Items.GENRE IN ($GENRE)", '{"GENRE": "\\"Drama\\",\\"Thriller\\""}',
     every_user({"i1", "i4", "i5"})),
    ("INCLUDE ItemID WHERE Items.NUMBER_OF_DOWNLOADS < 20", None, every_user({"i1", "i3", "i5"})),
    ("INCLUDE ItemID WHERE Items.NUMBER_OF_DOWNLOADS = $NUMBER_OF_DOWNLOADS", '{"NUMBER_OF_DOWNLOADS": "\\"50\\""}',
     every_user({"i2"})),
    ("INCLUDE ItemID WHERE Items.NUMBER_OF_DOWNLOADS = $NUMBER_OF_DOWNLOADS", '{"NUMBER_OF_DOWNLOADS": "\\"5.0\\""}',
     every_user({"i1"})),
    ("INCLUDE ItemID WHERE Items.CREATION_TIMESTAMP > $TIMESTAMP", '{"TIMESTAMP": "\\"1645000000\\""}',
     every_user({"i6", "i7"})),
    ('INCLUDE ItemID WHERE Items.OWNER IN ("in-house")', None, every_user({"i1", "i3", "i5"})),
    ('INCLUDE ItemID WHERE Items.CATEGORY IN ("clothing") AND Items.AVAILABLE IN ("True")', None, every_user({"i5"})),
    ("EXCLUDE ItemID WHERE Items.GENRE IN ($GENRE) IF CurrentUser.AGE = $AGE",
     '{"GENRE": "\\"Horror\\"", "AGE": "\\"25\\""}', {**every_user(A), "u2": A - {"i3", "i5"}}),
    ('INCLUDE ItemID WHERE Items.CATEGORY IN ("watch") AND Items.DESCRIPTION IN ("luxury") IF CurrentUser.AGE > 18',
     None, per_user(u1=A, u2={"i3"}, u3={"i3"}, u4=A, u5={"i3"}, u6=A)),
    ('INCLUDE ItemID WHERE Items.CATEGORY_L1 IN ("watch") AND Items.CATEGORY_L2 IN ("luxury") '
     "IF CurrentUser.AGE > 18", None, per_user(u1=A, u2={"i3"}, u3={"i3"}, u4=A, u5={"i3"}, u6=A)),
    ("EXCLUDE ItemID WHERE Items.NUMBER_OF_DOWNLOADS < 20 IF CurrentUser.AGE > 18 AND CurrentUser.AGE < 30", None,
     {**every_user(A), "u2": A - {"i1", "i3", "i5"}}),
    ("INCLUDE ItemID WHERE Items.CATEGORY IN ($CATEGORY) | "
     'INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("favorite")', '{"CATEGORY": "\\"watch\\""}',
     {**every_user({"i3", "i4"}), "u2": items("i3", "i4", "i5")}),
    ("INCLUDE ItemID WHERE Items.GENRE IN ($GENRE) | "
     'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click", "stream")', '{"GENRE": "\\"Comedy\\""}',
     {**every_user({"i1", "i2"}), "u1": items()}),
    ('INCLUDE ItemID WHERE Items.GENRE IN ("drama") | '
     'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click", "stream")', None, every_user({"i7"})),
    # A 2020 spelling (the others are shown equal to the current ones in test_filters_parse.py) and the
    # AWS sample forms
    ('EXCLUDE ItemID WHERE Interaction.event_type IN ("click", "stream")', None,
     per_user(u1=A - {"i1", "i2"}, u2=A - {"i4"}, u3=A - {"i6"}, u4=A, u5=A - {"i3"}, u6=A - {"i8"})),
    ("INCLUDE ItemID WHERE Interactions.event_type IN ('watched','favorited')", None,
     {**every_user(set()), "u4": items("i6")}),
    ("EXCLUDE ItemID WHERE Items.out_of_stock IN ('yes')", None, every_user(A - {"i2"})),
    ("INCLUDE ItemID WHERE Items.genre IN ($GENRES)", '{"GENRES": "\\"Horror\\""}', every_user({"i3", "i5"})),
    ("INCLUDE ItemID WHERE Items.creation_timestamp > 1633240824", None, every_user({"i5", "i6", "i7"})),
    ("INCLUDE ItemID WHERE Items.published_date > 20211001", None, every_user({"i2"})),
]


@pytest.mark.parametrize("expression, values, expected", ITEM_CASES)
def test_documented_item_filters_yield_the_documented_items(spark, datasets, user_requests, expression, values,
                                                            expected):
    elig = compile_filter(spark, expression, values, datasets, user_requests, key=USER_ID)
    assert eligible(elig, USER_KEYS, ALL_ITEMS) == expected


def test_request_independent_filters_fold_into_allowed_and_denied(spark, datasets, user_requests):
    elig = compile_filter(spark, 'EXCLUDE ItemID WHERE Items.OWNER IN ("partner") | '
                          'INCLUDE ItemID WHERE Items.PRICE < 50', None, datasets, user_requests, key=USER_ID)
    assert elig.is_global and elig.membership is None and elig.pairs is None
    assert sorted(rows(elig.allowed, ITEM_ID)) == [("i1",), ("i2",), ("i5",), ("i7",)]
    assert sorted(rows(elig.denied, ITEM_ID)) == [("i2",), ("i4",), ("i7",)]
    dropped = compile_filter(spark, "EXCLUDE ItemID WHERE Items.GENRE IN ($G)", None, datasets, user_requests,
                             key=USER_ID)
    assert dropped.is_empty and dropped.dropped == ("EXCLUDE ItemID WHERE Items.GENRE IN ($G)",)


RELATED_QUERIES = {"q1": "i4", "q2": "i5", "q3": "i3", "q4": "i2", "q5": "i8", "q6": "i6"}


@pytest.mark.parametrize("expression, values, expected", [
    ("INCLUDE ItemID WHERE Items.PRICE < CurrentItem.PRICE AND Items.GENRE IN CurrentItem.GENRE", None,
     {"q1": items("i1"), "q2": items(), "q3": items("i5"), "q4": items("i1"), "q5": items(), "q6": items()}),
    ("INCLUDE ItemID WHERE Items.PRICE < CurrentItem.PRICE AND Items.CREATION_TIMESTAMP > $DATE",
     '{"DATE": "\\"1605000000\\""}',
     {"q1": items("i2", "i5", "i7"), "q2": items("i2", "i7"), "q3": items("i2", "i4", "i5", "i7"),
      "q4": items("i7"), "q5": items(), "q6": items()}),
])
def test_current_item_filters_use_the_query_items_fields(spark, datasets, expression, values, expected):
    queries = spark.createDataFrame(list(RELATED_QUERIES.items()), f"q string, {ITEM_ID} string")
    elig = compile_filter(spark, expression, values, datasets, queries, key="q", context=RELATED)
    assert eligible(elig, list(RELATED_QUERIES), ALL_ITEMS) == expected
    # One set per distinct query-item binding, none per (query, item) pair.
    assert len(rows(elig.membership, "q")) == len(RELATED_QUERIES)


def test_bindings_that_differ_only_by_where_a_null_is_get_different_sets(spark):
    catalogue = spark.createDataFrame([("qa", None, "shoe"), ("qb", "shoe", None), ("i1", "shoe", None),
                                       ("i2", None, "shoe")], f"{ITEM_ID} string, GENRE string, CATEGORY string")
    queries = spark.createDataFrame([("a", "qa"), ("b", "qb")], f"q string, {ITEM_ID} string")
    elig = compile_filter(spark, "INCLUDE ItemID WHERE Items.GENRE IN CurrentItem.GENRE OR "
                          "Items.CATEGORY IN CurrentItem.CATEGORY", None, {"items": catalogue}, queries, key="q",
                          context=RELATED)
    assert eligible(elig, ["a", "b"], {"qa", "qb", "i1", "i2"}) == {"a": items("qa", "i2"), "b": items("qb", "i1")}


SEGMENT_QUERIES = {"q1": "i1", "q2": "i3", "q3": "i4"}
U = ALL_USERS


@pytest.mark.parametrize("expression, values, expected", [
    ("INCLUDE UserID WHERE Users.MEMBERSHIP_STATUS IN ($MEMBERSHIP)", '{"MEMBERSHIP": "\\"gold\\""}',
     {q: frozenset({"u1", "u3"}) for q in SEGMENT_QUERIES}),
    ("EXCLUDE UserID WHERE Users.AGE < $AGE", '{"AGE": "\\"20\\""}',
     {q: frozenset({"u2", "u3", "u5", "u6"}) for q in SEGMENT_QUERIES}),
    ("EXCLUDE UserID WHERE Users.AGE < 18", None, {q: U - {"u1"} for q in SEGMENT_QUERIES}),
    ('INCLUDE UserID WHERE Interactions.EVENT_TYPE IN ("click", "rating")', None,
     {"q1": frozenset({"u1", "u2"}), "q2": frozenset({"u5"}), "q3": frozenset({"u2"})}),
    ("EXCLUDE UserID WHERE Interactions.EVENT_TYPE IN ($EVENT_TYPE)", '{"EVENT_TYPE": "\\"purchase\\""}',
     {"q1": U, "q2": U - {"u1"}, "q3": U}),
])
def test_documented_segment_filters_yield_the_documented_users(spark, datasets, expression, values, expected):
    queries = spark.createDataFrame(list(SEGMENT_QUERIES.items()), f"q string, {ITEM_ID} string")
    elig = compile_filter(spark, expression, values, datasets, queries, key="q", context=ITEM_SEGMENT)
    assert elig.id_column == USER_ID
    assert eligible(elig, list(SEGMENT_QUERIES), ALL_USERS) == expected


def test_interaction_conditions_are_per_item_and_see_the_latest_n_per_event_type(spark, datasets, user_requests):
    both = compile_filter(spark, 'INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click") AND '
                          'Interactions.EVENT_TYPE IN ("stream")', None, datasets, user_requests, key=USER_ID)
    assert eligible(both, USER_KEYS, A) == {**every_user(set()), "u5": items("i3")}
    either = compile_filter(spark, 'INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchase") OR '
                            'Interactions.EVENT_TYPE NOT IN ("click", "view", "watched", "favorite")', None,
                            datasets, user_requests, key=USER_ID)
    assert eligible(either, USER_KEYS, A) == per_user(u1={"i2", "i3"}, u2={"i1"}, u3={"i2"}, u4=set(), u5={"i3"},
                                                      u6=set())
    history = spark.createDataFrame(
        [("u7", "i1", "click", 1), ("u7", "i2", "CLICK", 2), ("u7", "i3", "click", 3), ("u7", "i4", "view", 1),
         ("u7", "i5", "click", 3)], INTERACTION_COLUMNS)
    u7 = spark.createDataFrame([("u7",)], f"{USER_ID} string")
    frames = {**datasets, "interactions": history}
    text = 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click", "view")'
    latest2 = compile_filter(spark, text, None, frames, u7, key=USER_ID,
                             settings=FilterSettings(interactions_per_event_type=2))
    # Clicks at 3, 3 (ties broken by item ID, descending) and 2; the one view is within its own quota.
    assert eligible(latest2, ["u7"], A) == {"u7": A - {"i5", "i3", "i4"}}
    everything = compile_filter(spark, text, None, frames, u7, key=USER_ID)
    assert eligible(everything, ["u7"], A) == {"u7": A - {"i1", "i2", "i3", "i4", "i5"}}


def test_per_line_values_override_global_ones_and_bad_lines_become_errors(spark, datasets):
    lines = [
        (0, "u1", {"G": '"Comedy"'}),  # Comedy, and the global MAX of 20
        (1, "u2", {"G": '"Horror", "Drama"', "MAX": '"100"'}),  # price > 100 excluded
        (2, "u3", None),  # no G: the INCLUDE cannot be served
        (3, "u4", {"G": "Comedy"}),  # not quoted
        (4, "u5", {"G": '"Drama"', "MAX": '"cheap"'}),  # not a number
        (5, "u6", {"G": '"Thriller"', "MAX": ""}),  # empty MAX: the global 20 excludes i5 (40)
        (6, "u1", {"G": '"a","b"', "MAX": '"1","2"'}),  # two values for a comparison
        (7, "u2", {"G": '"Comedy"', **{f"K{i}": '"x"' for i in range(25)}}),  # 26 names
    ]
    requests = spark.createDataFrame(lines, f"line int, {USER_ID} string, {FILTER_VALUES} map<string,string>")
    text = "INCLUDE ItemID WHERE Items.GENRE IN ($G) | EXCLUDE ItemID WHERE Items.PRICE > $MAX"
    elig = compile_filter(spark, text, '{"MAX": "\\"20\\""}', datasets, requests, key="line")
    assert eligible(elig, list(range(8)), A) == {0: items("i1"), 1: items("i1", "i4", "i5"), 5: items()}
    quoted = 'filterValues "G": expected comma-separated quoted values such as "\\"comedy\\",\\"drama\\""'
    assert dict(rows(elig.errors, "line", ERROR)) == {
        2: 'filterValues has no "G", which the INCLUDE expression needs',
        3: quoted,
        4: 'filterValues "MAX": not a number, which > needs',
        6: 'filterValues "MAX": a comparison (>) takes one value',
        7: "filterValues has more than 25 names",
    }
    # Two lines with the same values share one set.
    same = spark.createDataFrame([(0, "u1", {"G": '"Comedy"'}), (1, "u2", {"G": '"Comedy"'})],
                                 f"line int, {USER_ID} string, {FILTER_VALUES} map<string,string>")
    shared = compile_filter(spark, "INCLUDE ItemID WHERE Items.GENRE IN ($G)", None, datasets, same, key="line")
    assert len({s for _, s in rows(shared.membership, "line", SET_ID)}) == 1
    # Without a global value, an EXCLUDE placeholder missing on a line skips that expression there.
    skip = compile_filter(spark, "EXCLUDE ItemID WHERE Items.PRICE > $MAX", None, datasets, requests.where("line < 2"),
                          key="line")
    assert eligible(skip, [0, 1], A) == {0: A, 1: A - {"i3"}}


def test_per_line_event_types_for_an_interactions_filter(spark, datasets):
    lines = spark.createDataFrame([(0, "u1", {"E": '"click"'}), (1, "u2", {"E": '"favorite","CLICK"'}), (2, "u3", {})],
                                  f"line int, {USER_ID} string, {FILTER_VALUES} map<string,string>")
    elig = compile_filter(spark, "EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ($E)", None, datasets, lines,
                          key="line")
    assert eligible(elig, [0, 1, 2], A) == {0: A - {"i1"}, 1: A - {"i4", "i5"}, 2: A}
    assert rows(elig.errors, "line") == []


def test_filter_values_are_read_from_the_raw_request_line(spark):
    raw = spark.createDataFrame([('{"userId": "5","filterValues":{"GENRES":"\\"horror\\",\\"comedy\\",\\"drama\\""}}',),
                                 ('{"userId": "3"}',), ('{"userId": "4", "filterValues": {"N": 3}}',)], "value string")
    got = [r[0] for r in raw.select(filter_values_column(F.col("value"))).collect()]
    assert got == [{"GENRES": '"horror","comedy","drama"'}, None, {"N": "3"}]


def test_request_columns_the_filter_needs_are_checked(spark, datasets):
    no_user = spark.createDataFrame([("k",)], "key string")
    with pytest.raises(FilterError, match="the requests have no USER_ID"):
        compile_filter(spark, "EXCLUDE ItemID WHERE Items.PRICE > 3 IF CurrentUser.AGE > 3", None, datasets,
                       no_user, key="key")
    with pytest.raises(FilterError, match="the requests have no key column 'line'"):
        compile_filter(spark, "EXCLUDE ItemID WHERE Items.PRICE > 3", None, datasets, no_user, key="line")
    with pytest.raises(FilterError, match="the items dataset has no field 'RATING'"):
        compile_filter(spark, 'EXCLUDE ItemID WHERE Items.RATING IN ("R")', None, datasets, no_user, key="key")
    with pytest.raises(FilterError, match=r"column 28: Items.IS_NEW is boolean"):
        compile_filter(spark, 'EXCLUDE ItemID WHERE Items.IS_NEW IN ("true")', None, datasets, no_user, key="key")


def _plan(df) -> str:
    return df._jdf.queryExecution().executedPlan().toString()


def test_a_current_user_filter_over_many_users_stays_small(spark):
    from batchrec.datasets.generate import generate_datasets

    frames = generate_datasets(spark, 3000, 200, 6000, seed=3)
    users = frames["users"].select(USER_ID)
    elig = compile_filter(spark, 'EXCLUDE ItemID WHERE Items.CATEGORY IN ("c1") IF CurrentUser.AGE < 25', None,
                          frames, users, key=USER_ID)
    n_sets, n_members = elig.sets.count(), elig.membership.count()
    category_c1 = frames["items"].where(F.array_contains(F.split("CATEGORY", r"\|"), "c1")).count()
    minors = frames["users"].where(F.col("AGE") < 25).count()
    assert (n_sets, n_members) == (category_c1, minors)
    assert 0 < n_sets < 200 and 0 < n_members < 3000
    assert elig.pairs is None and elig.allowed is None and elig.denied is None
    for df in (elig.sets, elig.membership):
        plan = _plan(df)
        for forbidden in ("CartesianProduct", "NestedLoopJoin", "BatchEvalPython", "ArrowEvalPython"):
            assert forbidden not in plan


def test_no_python_udf_in_any_compiled_table(spark, datasets):
    lines = spark.createDataFrame([(0, "u1", {"G": '"Comedy"'})],
                                  f"line int, {USER_ID} string, {FILTER_VALUES} map<string,string>")
    elig = compile_filter(spark, 'INCLUDE ItemID WHERE Items.GENRE IN ($G) IF CurrentUser.AGE > 1 | '
                          'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ($G)', None, datasets, lines, key="line")
    for df in (elig.sets, elig.membership, elig.pairs, elig.errors):
        plan = _plan(df)
        assert "BatchEvalPython" not in plan and "ArrowEvalPython" not in plan


# --- end to end: compiled filter -> masked top-k, against a numpy brute force --------------------

@pytest.mark.parametrize("expression, values", [
    ('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click", "stream")', None),
    ('INCLUDE ItemID WHERE Items.CATEGORY IN ("watch") AND Items.DESCRIPTION IN ("luxury") IF CurrentUser.AGE > 18',
     None),
    ("INCLUDE ItemID WHERE Items.CATEGORY IN ($CATEGORY) | INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN "
     '("favorite")', '{"CATEGORY": "\\"watch\\""}'),
    ("INCLUDE ItemID WHERE Items.PRICE < 100 | EXCLUDE ItemID WHERE Items.GENRE IN ($GENRE) IF CurrentUser.AGE = $AGE",
     '{"GENRE": "\\"Horror\\"", "AGE": "\\"25\\""}'),
])
def test_masked_top_k_equals_brute_force_over_the_eligible_items(spark, datasets, user_requests, expression, values):
    rng = np.random.default_rng(5)
    item_ids = sorted(ALL_ITEMS)
    vectors = {i: rng.normal(size=3).astype(np.float32) for i in item_ids}
    user_vectors = {u: rng.normal(size=3).astype(np.float32) for u in USER_KEYS}
    seen = {"u3": {"i7"}, "u5": {"i1", "i5"}}
    elig = compile_filter(spark, expression, values, datasets, user_requests, key=USER_ID)
    expected_sets = eligible(elig, USER_KEYS, ALL_ITEMS)

    item_df = spark.createDataFrame([(n, vectors[i].tolist(), i) for n, i in enumerate(item_ids)],
                                    f"item_idx int, features array<float>, {ITEM_ID} string")
    position = {i: n for n, i in enumerate(item_ids)}
    users = spark.createDataFrame(
        [(n, u, user_vectors[u].tolist(), sorted(position[i] for i in seen.get(u, ())))
         for n, u in enumerate(USER_KEYS)], f"{USER_IDX} int, {USER_ID} string, features array<float>, seen array<int>")
    users = attach_filter_columns(users, elig)
    k = 3
    result = topk.score_blocks(users, topk.collect_item_matrix(item_df), k, users_per_batch=2,
                               item_filter=collect_filter(elig))
    got = defaultdict(list)
    for r in result.orderBy(USER_ID, "rank").collect():
        got[r[USER_ID]].append(r[ITEM_ID])
    for u in USER_KEYS:
        candidates = sorted(expected_sets[u] - seen.get(u, set()))
        ranked = sorted(candidates, key=lambda i: (-float(user_vectors[u] @ vectors[i]), i))
        assert got.get(u, []) == ranked[:k], u
