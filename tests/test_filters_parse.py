"""The filter language without Spark: every documented expression, every error with its column."""

from __future__ import annotations

import sys

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from batchrec.datasets.schema import DatasetSchema, Field
from batchrec.config import load_settings
from batchrec.errors import ConfigError, UsageError
from batchrec.filters import (ATTRIBUTE_SEGMENT, ITEM_SEGMENT, RECOMMEND, RELATED, FilterError, check_filter,
                              fields_of_schema, parse_filter, parse_filter_values, plan_values, split_values)
from batchrec.filters import nodes as N
from batchrec.filters.nodes import render
from filter_data import FIELDS


def canonical(text, context=RECOMMEND, fields=FIELDS):
    return render(check_filter(parse_filter(text), context, fields))


def error_of(text, context=RECOMMEND, fields=FIELDS) -> FilterError:
    with pytest.raises(FilterError) as info:
        check_filter(parse_filter(text), context, fields)
    return info.value


# --- every documented expression (reference §1.4), in its canonical spelling --------------------

SAME = [
    # item recommendations, interactions (1-5)
    'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ($EVENT_TYPE)',
    'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click", "stream")',
    'INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")',
    'INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")',
    'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchased")',
    # item data (6-11, 14-18)
    'EXCLUDE ItemID WHERE Items.CATEGORY IN ($CATEGORY)',
    'EXCLUDE ItemID WHERE Items.CATEGORY IN ("shoe") AND Items.DESCRIPTION NOT IN ("boot")',
    'EXCLUDE ItemID WHERE Items.CATEGORY_L1 IN ("shoe") AND Items.CATEGORY_L2 NOT IN ("boot")',
    'INCLUDE ItemID WHERE Items.PRICE <= $PRICE',
    'INCLUDE ItemID WHERE Items.CREATION_TIMESTAMP < $DATE',
    'INCLUDE ItemID WHERE Items.GENRE IN ($GENRE)',
    'INCLUDE ItemID WHERE Items.NUMBER_OF_DOWNLOADS < 20',
    'INCLUDE ItemID WHERE Items.NUMBER_OF_DOWNLOADS = $NUMBER_OF_DOWNLOADS',
    'INCLUDE ItemID WHERE Items.CREATION_TIMESTAMP > $TIMESTAMP',
    'INCLUDE ItemID WHERE Items.OWNER IN ("in-house")',
    'INCLUDE ItemID WHERE Items.CATEGORY IN ("clothing") AND Items.AVAILABLE IN ("True")',
    # user data in an IF (19-22)
    'EXCLUDE ItemID WHERE Items.GENRE IN ($GENRE) IF CurrentUser.AGE = $AGE',
    'INCLUDE ItemID WHERE Items.CATEGORY IN ("watch") AND Items.DESCRIPTION IN ("luxury") IF CurrentUser.AGE > 18',
    'INCLUDE ItemID WHERE Items.CATEGORY_L1 IN ("watch") AND Items.CATEGORY_L2 IN ("luxury") IF CurrentUser.AGE > 18',
    'EXCLUDE ItemID WHERE Items.NUMBER_OF_DOWNLOADS < 20 IF CurrentUser.AGE > 18 AND CurrentUser.AGE < 30',
    # chained (23-25)
    'INCLUDE ItemID WHERE Items.CATEGORY IN ($CATEGORY) | INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("favorite")',
    'INCLUDE ItemID WHERE Items.GENRE IN ($GENRE) | EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click", "stream")',
    'INCLUDE ItemID WHERE Items.GENRE IN ("drama") | EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click", "stream")',
]
RELATED_SAME = [  # 12, 13: CurrentItem (related items only)
    'INCLUDE ItemID WHERE Items.PRICE < CurrentItem.PRICE AND Items.GENRE IN CurrentItem.GENRE',
    'INCLUDE ItemID WHERE Items.PRICE < CurrentItem.PRICE AND Items.CREATION_TIMESTAMP > $DATE',
]
SEGMENT_SAME = [  # 26-30
    'INCLUDE UserID WHERE Users.MEMBERSHIP_STATUS IN ($MEMBERSHIP)',
    'EXCLUDE UserID WHERE Users.AGE < $AGE',
    'EXCLUDE UserID WHERE Users.AGE < 18',
    'INCLUDE UserID WHERE Interactions.EVENT_TYPE IN ("click", "rating")',
    'EXCLUDE UserID WHERE Interactions.EVENT_TYPE IN ($EVENT_TYPE)',
]
LEGACY = {  # 41 (2020 lower-case, singular datasets) and 42 (AWS sample) -> canonical
    'EXCLUDE ItemID WHERE Interaction.event_type IN ("click", "stream")':
        'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click", "stream")',
    'INCLUDE ItemID WHERE Interaction.event_type IN ("*")':
        'INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")',
    'EXCLUDE ItemID WHERE item.category IN ("shoe") AND item.description NOT IN ("boot")':
        'EXCLUDE ItemID WHERE Items.CATEGORY IN ("shoe") AND Items.DESCRIPTION NOT IN ("boot")',
    'INCLUDE ItemID WHERE item.number_of_downloads < 20':
        'INCLUDE ItemID WHERE Items.NUMBER_OF_DOWNLOADS < 20',
    'EXCLUDE ItemID WHERE item.number_of_downloads < 20 IF CurrentUser.age > 18 AND CurrentUser.age < 30':
        'EXCLUDE ItemID WHERE Items.NUMBER_OF_DOWNLOADS < 20 IF CurrentUser.AGE > 18 AND CurrentUser.AGE < 30',
    'INCLUDE ItemID WHERE item.category IN ("watch") AND item.description IN ("luxury") IF CurrentUser.age > 18':
        'INCLUDE ItemID WHERE Items.CATEGORY IN ("watch") AND Items.DESCRIPTION IN ("luxury") IF CurrentUser.AGE > 18',
    'INCLUDE ItemID WHERE item.genre IN ("drama") | EXCLUDE ItemID WHERE Interaction.event_type IN ("click", "stream")':
        'INCLUDE ItemID WHERE Items.GENRE IN ("drama") | '
        'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click", "stream")',
    "INCLUDE ItemID WHERE Interactions.event_type IN ('watched','favorited')":
        'INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("watched", "favorited")',
    "EXCLUDE ItemID WHERE Items.out_of_stock IN ('yes')": 'EXCLUDE ItemID WHERE Items.OUT_OF_STOCK IN ("yes")',
    "INCLUDE ItemID WHERE Items.genre IN ($GENRES)": 'INCLUDE ItemID WHERE Items.GENRE IN ($GENRES)',
    "INCLUDE ItemID WHERE Items.creation_timestamp > 1633240824":
        'INCLUDE ItemID WHERE Items.CREATION_TIMESTAMP > 1633240824',
    "INCLUDE ItemID WHERE Items.published_date > 20211001": 'INCLUDE ItemID WHERE Items.PUBLISHED_DATE > 20211001',
}


@pytest.mark.parametrize("text", SAME)
def test_documented_item_expressions_parse_and_check(text):
    assert canonical(text) == text


@pytest.mark.parametrize("text", RELATED_SAME)
def test_documented_current_item_expressions_need_a_related_items_job(text):
    assert canonical(text, RELATED) == text
    err = error_of(text)
    assert "CurrentItem is only for related-items jobs" in err.reason
    assert err.column == text.index("CurrentItem") + 1


@pytest.mark.parametrize("text", SEGMENT_SAME)
def test_documented_segment_expressions_parse_and_check(text):
    assert canonical(text, ITEM_SEGMENT) == text


@pytest.mark.parametrize("text, expected", LEGACY.items())
def test_legacy_spellings_read_as_the_current_ones(text, expected):
    assert canonical(text) == expected


def test_documented_structure_of_a_chained_expression():
    filt = check_filter(parse_filter(SAME[-3]), RECOMMEND, FIELDS)
    first, second = filt.expressions
    assert (first.action, first.target, first.dataset) == (N.INCLUDE, N.ITEM_ID_TARGET, N.ITEMS)
    assert first.where == N.Condition(N.FieldRef(N.ITEMS, "CATEGORY", 22, 28), N.IN,
                                      (N.Placeholder("CATEGORY", 41),), 37)
    assert (second.action, second.dataset, second.column) == (N.INCLUDE, N.INTERACTIONS, 54)
    assert second.text == 'INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("favorite")'
    assert filt.placeholder_names() == ("CATEGORY",)


def test_and_binds_tighter_than_or():
    where = parse_filter('INCLUDE ItemID WHERE Items.A IN ("1") OR Items.B IN ("2") AND Items.C IN ("3")'
                         ).expressions[0].where
    assert isinstance(where, N.Or)
    assert isinstance(where.parts[1], N.And) and len(where.parts[1].parts) == 2


def test_values_in_all_documented_forms():
    # IN CurrentItem.X without parentheses, > ($X) with, <= $X without, = $X in an IF.
    cond = parse_filter("INCLUDE ItemID WHERE Items.VALUE > ($VALUE)").expressions[0].where
    assert cond.values == (N.Placeholder("VALUE", 37),)
    cond = parse_filter("INCLUDE ItemID WHERE Items.X IN (CurrentItem.Y)").expressions[0].where
    assert cond.values == (N.FieldValue("CurrentItem", "Y", 34, 46),)
    cond = parse_filter("INCLUDE ItemID WHERE Items.X IN (-1.5, 2e3, \"a\\\"b\")").expressions[0].where
    assert [(v.text, v.number) for v in cond.values] == [("-1.5", -1.5), ("2e3", 2000.0), ('a"b', None)]


# --- documented negative and edge cases ---------------------------------------------------------

def test_placeholder_with_not_in_is_rejected_at_the_placeholder():
    text = "INCLUDE ItemID WHERE Items.GENRE NOT IN ($GENRE)"
    err = error_of(text)
    assert err.column == text.index("$GENRE") + 1
    assert "placeholders are not allowed with NOT IN ($GENRE)" in err.reason
    assert "EXCLUDE ... IN ($X)" in err.reason
    # The documented replacement is accepted.
    assert canonical("EXCLUDE ItemID WHERE Items.GENRE IN ($GENRE)")


def test_items_and_interactions_in_one_where_are_rejected():
    text = 'INCLUDE ItemID WHERE Items.GENRE IN ("Drama") OR Interactions.EVENT_TYPE IN ("click")'
    err = error_of(text)
    assert err.column == text.index("Interactions") + 1
    assert "cannot mix Items and Interactions fields; chain two expressions with |" in err.reason


def test_boolean_and_textual_fields_are_rejected():
    err = error_of('INCLUDE ItemID WHERE Items.IS_NEW IN ("true")')
    assert (err.column, "IS_NEW is boolean" in err.reason) == (28, True)
    schema = DatasetSchema("items", (Field("ITEM_ID", "string", nullable=False),
                                     Field("DESCRIPTION", "string", textual=True),
                                     Field("GENRE", "string", categorical=True)))
    err = error_of('INCLUDE ItemID WHERE Items.DESCRIPTION IN ("boot")', fields={"items": fields_of_schema(schema)})
    assert (err.column, "free text" in err.reason) == (28, True)


def test_doc_typo_with_a_doubled_quote_is_a_syntax_error_at_the_stray_word():
    text = 'INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN (""click")'
    with pytest.raises(FilterError) as info:
        parse_filter(text)
    assert info.value.column == text.index("click") + 1
    assert info.value.expected == ("','", "')'")
    assert str(info.value).startswith(f"filter, column {text.index('click') + 1}: found 'click'; "
                                      "expected one of ',', ')' (at ")


def test_a_quoted_dollar_value_is_a_literal_not_a_placeholder():
    filt = parse_filter('EXCLUDE ItemID WHERE Items.CATEGORY IN ("$CATEGORY")')
    assert filt.placeholder_names() == ()
    assert filt.expressions[0].where.values == (N.Literal("$CATEGORY", 41),)


def test_one_string_with_a_comma_is_one_event_type():
    where = parse_filter('INCLUDE UserID WHERE Interactions.EVENT_TYPE IN ("click, rating")').expressions[0].where
    assert [v.text for v in where.values] == ["click, rating"]


@pytest.mark.parametrize("text", [
    "INCLUDE ActionID WHERE Action_Interactions.EVENT_TYPE IN ($EVENT_TYPE)",
    'EXCLUDE ActionID WHERE Action_Interactions.EVENT_TYPE IN ("NOT_TAKEN")',
    "EXCLUDE ActionID WHERE Actions.CATEGORY IN ($CATEGORY)",
    "INCLUDE ActionID WHERE Actions.VALUE > ($VALUE)",
    'INCLUDE ActionID WHERE Action.MEMBERSHIP_LEVEL IN ("Premium") IF CurrentUser.MEMBERSHIP = $PREMIUM',
    "EXCLUDE ActionID WHERE Actions.VALUE < ($VALUE) IF CurrentUser.MEMBERSHIP = $PREMIUM",
])
def test_documented_action_filters_parse_but_are_refused(text):
    parse_filter(text)
    err = error_of(text)
    assert (err.column, err.expected) == (9, ("ItemID",))
    assert "ActionID filters are for action recommendations" in err.reason


# --- syntax errors: column and expected tokens ---------------------------------------------------

OPS = ("IN", "NOT IN", "=", "!=", "<", "<=", ">", ">=")
AFTER = ("AND", "OR", "IF", "'|'", "the end of the expression")
SYNTAX = [
    ("", 1, ("INCLUDE", "EXCLUDE"), "the expression is empty"),
    ("INCLUDE", 8, ("ItemID", "UserID", "ActionID"), "found the end of the expression"),
    ('INCLUDE Items WHERE Items.X IN ("a")', 9, ("ItemID", "UserID", "ActionID"), "found 'Items'"),
    ('INCLUDE ItemID Items.X IN ("a")', 16, ("WHERE",), "found 'Items'"),
    ('include ItemID WHERE Items.X IN ("a") | ItemID', 41, ("INCLUDE", "EXCLUDE"), "found 'ItemID'"),
    ("INCLUDE ItemID WHERE", 21, ("Dataset.FIELD (e.g. Items.GENRE)",), "found the end"),
    ('INCLUDE ItemID WHERE "a" IN ("a")', 22, ("Dataset.FIELD (e.g. Items.GENRE)",), "found '\"a\"'"),
    ("INCLUDE ItemID WHERE Items", 27, ("'.' and a field name",), "found the end"),
    ("INCLUDE ItemID WHERE Items.", 28, ("a field name",), "found the end"),
    ("INCLUDE ItemID WHERE Items.GENRE", 33, OPS, "found the end"),
    ('INCLUDE ItemID WHERE Items.GENRE LIKE ("a")', 34, OPS, "found 'LIKE'"),
    ('INCLUDE ItemID WHERE Items.GENRE == 3', 35, ("a number", "$PARAMETER", "CurrentItem.FIELD"), "found '='"),
    ('INCLUDE ItemID WHERE Items.GENRE NOT ("a")', 38, ("IN",), "found '('"),
    ('INCLUDE ItemID WHERE Items.GENRE IN "a"', 37, ('("value", ...)', "($PARAMETER)", "CurrentItem.FIELD"),
     "found '\"a\"'"),
    ("INCLUDE ItemID WHERE Items.GENRE IN ()", 38, ('a quoted string such as "value"', "a number"), "found ')'"),
    ('INCLUDE ItemID WHERE Items.GENRE IN ("a",)', 42, ('a quoted string such as "value"', "a number"), "found ')'"),
    ('INCLUDE ItemID WHERE Items.GENRE IN ("a" "b")', 42, ("','", "')'"), "found '\"b\"'"),
    ("INCLUDE ItemID WHERE Items.GENRE IN ($A, $B)", 40, ("')'",), "found ','"),
    ("INCLUDE ItemID WHERE Items.GENRE IN ($A", 40, ("')'",), "found the end"),
    ('INCLUDE ItemID WHERE Items.PRICE < "5"', 36, ("a number", "$PARAMETER", "CurrentItem.FIELD"),
     'found the string \'"5"\': comparison operators take numbers; use IN ("...") to match strings'),
    ("INCLUDE ItemID WHERE Items.PRICE < ($P", 39, ("')'",), "found the end"),
    ("INCLUDE ItemID WHERE Items.PRICE < 5 OR", 40, ("Dataset.FIELD (e.g. Items.GENRE)",), "found the end"),
    ("INCLUDE ItemID WHERE Items.PRICE < 5 |", 39, ("INCLUDE", "EXCLUDE"), "found the end"),
    ("INCLUDE ItemID WHERE Items.PRICE < 5 5", 38, AFTER, "found '5'"),
    ("INCLUDE ItemID WHERE Items.PRICE < 5 IF CurrentUser.AGE > 1 OR CurrentUser.AGE < 3", 61,
     ("AND", "'|'", "the end of the expression"), "an IF condition can only be extended with AND"),
    ("INCLUDE ItemID WHERE Items.PRICE < 5 IF CurrentUser.AGE > 1 IF", 61,
     ("AND", "'|'", "the end of the expression"), "found 'IF'"),
    ('INCLUDE ItemID WHERE Items.GENRE IN ("abc', 38, ('a closing "',), "unterminated string"),
    ("INCLUDE ItemID WHERE Items.GENRE IN ('abc\")", 38, ("a closing '",), "unterminated string"),
    ("INCLUDE ItemID WHERE Items.GENRE IN ($)", 38, ("a name of letters, digits and _ such as $GENRE",),
     "'$' must be followed by a parameter name"),
    ("INCLUDE ItemID WHERE Items.PRICE ! 5", 34, ("!=",), "'!' must be part of '!='"),
    ("INCLUDE ItemID WHERE Items.PRICE < 5 ;", 38, (), "unexpected character ';'"),
    ("INCLUDE ItemID WHERE Items.PRICE < 1e999", 36, (), "number 1e999 is out of range"),
    ("INCLUDE ItemID WHERE Items.PRICE < 5\x00", 37, (), "unexpected character '\\\\x00'"),
]


@pytest.mark.parametrize("text, column, expected, reason", SYNTAX)
def test_syntax_errors_name_the_column_and_the_expected_tokens(text, column, expected, reason):
    with pytest.raises(FilterError) as info:
        parse_filter(text)
    err = info.value
    assert (err.column, err.expected) == (column, expected)
    assert reason in err.reason
    assert isinstance(err, UsageError) and err.exit_code == 2
    assert f"column {column}: " in str(err) and "\n" not in str(err)


def test_an_expression_longer_than_2500_characters_is_refused_before_parsing():
    base = 'INCLUDE ItemID WHERE Items.GENRE IN ("'
    text = base + "x" * (2500 - len(base) - 2) + '")'
    assert len(text) == 2500
    parse_filter(text)
    with pytest.raises(FilterError, match="2501 characters; Personalize allows at most 2500") as info:
        parse_filter(text + " ")
    assert info.value.column == 2501


def test_error_message_shows_the_expression_around_the_column():
    text = 'INCLUDE ItemID WHERE Items.GENRE IN ("Drama") AND Items.PRICE LIKE 3 AND Items.X IN ("y")'
    with pytest.raises(FilterError) as info:
        parse_filter(text)
    assert str(info.value) == ("filter, column 63: found 'LIKE'; expected one of IN, NOT IN, =, !=, <, <=, >, >= "
                               '(at ...Drama") AND Items.PRICE >>>LIKE 3 AND Items.X IN ("...)')


# --- semantic errors ----------------------------------------------------------------------------

SEMANTIC = [
    # (text, context, column, reason fragment)
    ('INCLUDE ItemID WHERE Products.GENRE IN ("a")', RECOMMEND, 22, "unknown dataset 'Products'"),
    ('INCLUDE ItemID WHERE Items.GENRES IN ("a")', RECOMMEND, 28, "the items dataset has no field 'GENRES'"),
    ("INCLUDE ItemID WHERE CurrentUser.AGE > 3", RECOMMEND, 22, "CurrentUser fields can only be tested in the IF"),
    ("INCLUDE ItemID WHERE CurrentItem.PRICE > 3", RELATED, 22, "CurrentItem fields can only be values"),
    ("INCLUDE ItemID WHERE Users.AGE > 3", RECOMMEND, 22, "cannot test Users fields in its WHERE; test the "
                                                          "current user's fields with IF CurrentUser.FIELD"),
    ('INCLUDE UserID WHERE Items.GENRE IN ("a")', ITEM_SEGMENT, 22, "a UserID filter cannot test Items fields"),
    ("INCLUDE ItemID WHERE Items.PRICE > 3 IF Items.PRICE > 4", RECOMMEND, 41,
     "an IF can only test CurrentUser fields, not Items fields"),
    ("INCLUDE ItemID WHERE Interactions.TIMESTAMP > 3", RECOMMEND, 35, "Interactions filters can only test EVENT_TYPE"),
    ("INCLUDE ItemID WHERE Interactions.EVENT_TYPE = 3", RECOMMEND, 46, "EVENT_TYPE takes IN or NOT IN, not ="),
    ('INCLUDE ItemID WHERE Items.GENRE IN ("Drama", "*")', RECOMMEND, 47, '"*" stands for every event type'),
    ("INCLUDE ItemID WHERE Items.PRICE > 3 IF CurrentUser.TIER NOT IN ($T)", RECOMMEND, 66,
     "placeholders are not allowed with NOT IN ($T)"),
    ("INCLUDE ItemID WHERE Items.PRICE < Items.PRICE", RELATED, 36, "only CurrentItem fields can be values"),
    ("INCLUDE ItemID WHERE Items.PRICE > 3 IF CurrentUser.AGE > CurrentItem.PRICE", RECOMMEND, 59,
     "CurrentItem is only for related-items jobs"),
    ("INCLUDE UserID WHERE Users.AGE > 3", RECOMMEND, 9, "a recommend job returns items, not UserIDs"),
    ('INCLUDE ItemID WHERE Items.GENRE IN ("a")', ITEM_SEGMENT, 9, "a segment job returns users, not ItemIDs"),
    ('INCLUDE ItemID WHERE Items.GENRE IN ("a") | INCLUDE UserID WHERE Users.AGE > 3', RECOMMEND, 53,
     "not UserIDs"),
    ("INCLUDE ItemID WHERE Actions.VALUE > 3", RECOMMEND, 22, "Actions is an action dataset"),
    ("INCLUDE UserID WHERE Users.AGE > 3 IF CurrentUser.AGE > 3", ITEM_SEGMENT, 39,
     "has no current user to test"),
    ('INCLUDE UserID WHERE Interactions.EVENT_TYPE IN ("click")', ATTRIBUTE_SEGMENT, 22,
     "has no query item, so it cannot use an Interactions filter"),
    ('INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")', RELATED, 22,
     "Interactions filters need requests with a userId; a related job has none"),
    ("INCLUDE ItemID WHERE Items.PRICE > 3 IF CurrentUser.AGE > 3", RELATED, 41,
     "a related job has no current user to test"),
]


@pytest.mark.parametrize("text, context, column, reason", SEMANTIC)
def test_semantic_errors_name_the_column(text, context, column, reason):
    err = error_of(text, context)
    assert err.column == column, str(err)
    assert reason in err.reason, str(err)


def test_unknown_field_lists_the_fields_of_the_dataset():
    err = error_of('INCLUDE ItemID WHERE Items.GENRES IN ("a")')
    assert "Items.GENRE" in err.expected and "Items.PRICE" in err.expected
    assert len(err.expected) == len(FIELDS["items"])


def test_a_filter_on_a_dataset_the_job_lacks_is_refused():
    fields = {"items": FIELDS["items"], "interactions": FIELDS["interactions"]}
    err = error_of("INCLUDE ItemID WHERE Items.PRICE > 3 IF CurrentUser.AGE > 18", fields=fields)
    assert (err.column, "the filter tests CurrentUser.AGE but the job has no users dataset" in err.reason) == (
        53, True)
    # Without any field information (before the datasets are read) only the language is checked.
    assert canonical("INCLUDE ItemID WHERE Items.anything > 3", fields=None) == \
        "INCLUDE ItemID WHERE Items.ANYTHING > 3"


def test_at_most_ten_distinct_dataset_fields():
    names = ["GENRE", "CATEGORY", "DESCRIPTION", "CATEGORY_L1", "CATEGORY_L2", "PRICE", "OWNER", "AVAILABLE",
             "OUT_OF_STOCK", "PUBLISHED_DATE", "NUMBER_OF_DOWNLOADS"]
    ten = " AND ".join(f'Items.{n} IN ("a")' for n in names[:10])
    # The same field twice, and CurrentUser/Users, count once per dataset field.
    assert canonical(f"INCLUDE ItemID WHERE {ten} OR Items.GENRE IN (\"b\")")
    text = f'INCLUDE ItemID WHERE {ten} | EXCLUDE ItemID WHERE Items.{names[10]} IN ("a")'
    err = error_of(text)
    assert err.column == text.index(names[10]) + 1
    assert "more than 10 distinct dataset fields" in err.reason


def test_placeholder_limits():
    names = [f"P{i}" for i in range(26)]
    text = "INCLUDE ItemID WHERE " + " OR ".join(f"Items.GENRE IN (${n})" for n in names)
    err = error_of(text)
    assert err.column == text.index("$P25") + 1
    assert "more than 25 placeholders" in err.reason
    long_name = "X" * 51
    text = f"INCLUDE ItemID WHERE Items.GENRE IN (${long_name})"
    assert error_of(text).column == 38
    assert canonical(f"INCLUDE ItemID WHERE Items.GENRE IN (${'X' * 50})")


# --- filterValues --------------------------------------------------------------------------------

def test_filter_values_in_personalizes_escaped_quote_format():
    assert parse_filter_values('{"GENRES": "\\"horror\\",\\"comedy\\",\\"drama\\""}') == {
        "GENRES": ("horror", "comedy", "drama")}
    assert parse_filter_values({"A": '"x\\"y" , "z\\\\w"', "B": "", "C": "  "}) == {"A": ('x"y', "z\\w")}
    assert parse_filter_values(None) == {} and parse_filter_values("  ") == {}
    assert split_values('"only"') == ("only",)
    assert split_values('""') == ("",)


@pytest.mark.parametrize("values, fragment", [
    ("{GENRE: 1}", "not valid JSON (Expecting property name enclosed in double quotes at character 2)"),
    ('["a"]', "a JSON list"),
    ('{"GENRE": 3}', "GENRE: the value is a JSON int"),
    ('{"GEN-RE": "\\"a\\""}', "bad name 'GEN-RE'"),
    ('{"%s": "\\"a\\""}' % ("K" * 51), "bad name"),
    ("{" + ", ".join(f'"K{i}": "\\"a\\""' for i in range(26)) + "}", "26 names; Personalize allows at most 25"),
    ('{"GENRE": "Comedy"}', "GENRE: cannot read 'Comedy'"),
    ('{"GENRE": "\\"a\\","}', "GENRE: cannot read"),
    ('{"GENRE": "\\"a\\"b\\""}', "GENRE: cannot read"),
    ('{"GENRE": "\\"%s\\""}' % ("x" * 999), "GENRE: the value has 1001 characters; at most 1000"),
])
def test_bad_filter_values_are_usage_errors(values, fragment):
    with pytest.raises(FilterError) as info:
        parse_filter_values(values)
    assert fragment in str(info.value)
    assert str(info.value).startswith("--filter-values: ")


def plan(text, values, per_line=False, context=RECOMMEND):
    return plan_values(check_filter(parse_filter(text), context, FIELDS), parse_filter_values(values), per_line)


def test_include_placeholders_need_values_and_exclude_ones_are_skipped_without():
    text = 'INCLUDE ItemID WHERE Items.GENRE IN ($GENRE) | EXCLUDE ItemID WHERE Items.PRICE > $MAX'
    with pytest.raises(FilterError) as info:
        plan(text, None)
    assert info.value.column == text.index("$GENRE") + 1
    assert "$GENRE has no value; an INCLUDE expression needs every placeholder's value" in info.value.reason
    result = plan(text, '{"GENRE": "\\"Drama\\""}')
    assert result.dropped == frozenset({1}) and result.values == {"GENRE": ("Drama",)}
    assert plan(text, '{"GENRE": "\\"Drama\\"", "MAX": "\\"9.5\\""}').dropped == frozenset()
    # With per-line values, a missing value is decided per request.
    assert plan(text, None, per_line=True).dropped == frozenset()


def test_placeholder_values_must_suit_their_operator():
    with pytest.raises(FilterError, match=r"\$MAX: a comparison \(>\) takes one value, got 2"):
        plan("EXCLUDE ItemID WHERE Items.PRICE > $MAX", '{"MAX": "\\"1\\",\\"2\\""}')
    with pytest.raises(FilterError, match=r"\$MAX: 'cheap' is not a number, which > needs"):
        plan("EXCLUDE ItemID WHERE Items.PRICE > $MAX", '{"MAX": "\\"cheap\\""}')
    with pytest.raises(FilterError, match=r"'genre' is not a placeholder of the filter \(names are case-sensitive; "
                                          r"the filter's placeholders: \$GENRE\)"):
        plan("INCLUDE ItemID WHERE Items.GENRE IN ($GENRE)", '{"GENRE": "\\"a\\"", "genre": "\\"b\\""}')
    # = takes a string or a number; IN takes any number of values.
    assert plan("INCLUDE ItemID WHERE Items.OWNER = $O", '{"O": "\\"in-house\\""}').dropped == frozenset()
    assert plan("INCLUDE ItemID WHERE Items.OWNER IN ($O)", '{"O": "\\"a\\",\\"b\\",\\"c\\""}').values == {
        "O": ("a", "b", "c")}


def test_filter_settings_come_from_the_configuration(tmp_path):
    settings = load_settings(conf_dir=tmp_path, environ={})
    assert (settings.filters.interactions_per_event_type, settings.filters.backfill) == (100, True)
    changed = load_settings(conf_dir=tmp_path, environ={}, overrides={"filters": {"interactions_per_event_type": 200,
                                                                      "backfill": False}})
    assert (changed.filters.interactions_per_event_type, changed.filters.backfill) == (200, False)
    with pytest.raises(ConfigError, match=r"filters.interactions_per_event_type = 0; expected a positive integer"):
        load_settings(conf_dir=tmp_path, environ={}, overrides={"filters": {"interactions_per_event_type": 0}})


# --- properties ---------------------------------------------------------------------------------

TOKENS = ["INCLUDE", "EXCLUDE", "ItemID", "UserID", "ActionID", "WHERE", "IF", "AND", "OR", "NOT", "IN", "|",
          "(", ")", ",", ".", "=", "!=", "<", "<=", ">", ">=", "Items", "Interactions", "Users", "CurrentUser",
          "CurrentItem", "Item", "GENRE", "PRICE", "AGE", "EVENT_TYPE", "Items.GENRE", "Items.PRICE",
          "Interactions.EVENT_TYPE", "CurrentUser.AGE", "CurrentItem.GENRE", '"Drama"', '"*"', "'x'", "3",
          "-2.5", "$GENRE", "$AGE", "$", '"', "\\", "!", "*", "1e999"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_arbitrary_text_raises_nothing_but_filter_errors(text):
    for context in (RECOMMEND, RELATED, ITEM_SEGMENT):
        try:
            check_filter(parse_filter(text), context, FIELDS)
        except FilterError:
            pass


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=30).map(" ".join))
def test_token_soup_raises_nothing_but_filter_errors_and_round_trips(text):
    for context in (RECOMMEND, RELATED, ITEM_SEGMENT):
        try:
            checked = check_filter(parse_filter(text), context, FIELDS)
        except FilterError:
            continue
        again = render(checked)
        assert render(check_filter(parse_filter(again), context, FIELDS)) == again


def _condition(datasets, fields):
    values = st.one_of(
        st.lists(st.sampled_from(['"Drama"', '"a\\"b"', '"*"', "'x'", "3", "-2.5"]), min_size=1, max_size=3)
        .map(lambda v: "(" + ", ".join(v) + ")"),
        st.sampled_from(["($GENRE)", "CurrentItem.GENRE", "(CurrentItem.PRICE)"]))
    scalar = st.sampled_from(["3", "-2.5", "$AGE", "($AGE)", "CurrentItem.PRICE", '"s"'])
    return st.one_of(
        st.tuples(datasets, fields, st.sampled_from(["IN", "NOT IN"]), values),
        st.tuples(datasets, fields, st.sampled_from(["=", "!=", "<", "<=", ">", ">="]), scalar),
    ).map(lambda t: f"{t[0]}.{t[1]} {t[2]} {t[3]}")


_DATASETS = st.sampled_from(["Items", "item", "Interactions", "Users", "CurrentUser", "Products"])
_FIELDS = st.sampled_from(["GENRE", "price", "EVENT_TYPE", "AGE", "IS_NEW", "NOPE"])
_EXPRESSION = st.tuples(
    st.sampled_from(["INCLUDE", "EXCLUDE"]), st.sampled_from(["ItemID", "UserID", "ItemID"]),
    st.lists(_condition(_DATASETS, _FIELDS), min_size=1, max_size=3), st.sampled_from([" AND ", " OR "]),
    st.lists(_condition(st.just("CurrentUser"), st.sampled_from(["AGE", "TIER"])), max_size=2),
).map(lambda t: f"{t[0]} {t[1]} WHERE {t[3].join(t[2])}" + (" IF " + " AND ".join(t[4]) if t[4] else ""))
_FILTERS = st.lists(_EXPRESSION, min_size=1, max_size=3).map(" | ".join)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_FILTERS, st.data())
def test_generated_expressions_and_mutations_raise_nothing_but_filter_errors(text, data):
    cut = data.draw(st.integers(0, len(text)))
    mutated = data.draw(st.sampled_from([text, text[:cut], text[:cut] + text[cut + 1:],
                                         text[:cut] + data.draw(st.sampled_from(TOKENS)) + text[cut:]]))
    for context in (RECOMMEND, RELATED, ITEM_SEGMENT, ATTRIBUTE_SEGMENT):
        try:
            checked = check_filter(parse_filter(mutated), context, FIELDS)
        except FilterError:
            continue
        again = render(checked)
        assert render(check_filter(parse_filter(again), context, FIELDS)) == again
        for values in ('{"GENRE": "\\"Drama\\""}', '{"AGE": "\\"x\\""}', None):
            try:
                plan_values(checked, parse_filter_values(values))
            except FilterError:
                pass


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=80), st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=4)))
def test_arbitrary_filter_values_raise_nothing_but_filter_errors(values):
    try:
        parse_filter_values(values)
    except FilterError:
        pass


def test_parsing_does_not_import_spark():
    import subprocess

    code = ("import sys; from batchrec.filters import parse_filter, check_filter; "
            "check_filter(parse_filter('INCLUDE ItemID WHERE Items.X IN (\"a\")')); "
            "print('pyspark' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("expression, events", [
    ('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchase", "Cart")', {"purchase", "Cart"}),
    ('INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click") AND Interactions.EVENT_TYPE IN ("buy")',
     {"click", "buy"}),
    ('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE NOT IN ("click")', None),
    ('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")', None),
    ('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ($EVENTS)', None),
])
def test_only_positive_literal_event_lists_narrow_the_interactions_window(expression, events):
    from batchrec.filters import nodes as N
    from batchrec.filters.compile import _events_that_matter

    leaves = list(N.leaves(parse_filter(expression).expressions[0].where))
    assert _events_that_matter(leaves) == (frozenset(events) if events is not None else None)
