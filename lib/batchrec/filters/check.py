"""Semantic checks: which datasets, fields, operators and placeholders an expression may use.

Everything here is pure Python and runs before any Spark work. :func:`check_filter` returns the
filter with canonical dataset names (``Items``, ``Interactions``, ``Users``, ``CurrentUser``,
``CurrentItem``; the singular and lower-case spellings of older documentation are accepted) and with
field names spelled like the dataset's columns (matched case-insensitively).

The job decides what a filter may refer to (:class:`FilterContext`): item recommendations may test
the current user in an ``IF``; only related-items jobs have a ``CurrentItem``; user segments return
users; item-attribute segments have no query item, so no Interactions filter.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from batchrec.filters import nodes as N
from batchrec.filters.errors import FilterError

# Dataset kinds, as in batchrec.datasets.schema (not imported: that module is not needed to parse).
ITEMS_KIND, USERS_KIND, INTERACTIONS_KIND = "items", "users", "interactions"
KIND_OF = {N.ITEMS: ITEMS_KIND, N.CURRENT_ITEM: ITEMS_KIND, N.USERS: USERS_KIND,
           N.CURRENT_USER: USERS_KIND, N.INTERACTIONS: INTERACTIONS_KIND}
EVENT_TYPE_FIELD = "EVENT_TYPE"

# Field classes (see fields_of_dataframe / fields_of_schema).
STRING_FIELD, NUMBER_FIELD, BOOLEAN_FIELD, TEXTUAL_FIELD, OTHER_FIELD = (
    "string", "number", "boolean", "textual", "other")
FieldTypes = Mapping[str, Mapping[str, str]]

# Personalize's limits: distinct dataset fields per filter (current documentation; 5 before
# Nov 2022) and filterValues keys (at most 25, names [A-Za-z0-9_]{1,50}).
MAX_DISTINCT_FIELDS = 10
MAX_PLACEHOLDERS = 25
MAX_PLACEHOLDER_LENGTH = 50
MAX_LISTED_FIELDS = 20

_ALIASES = {
    "items": N.ITEMS, "item": N.ITEMS,
    "interactions": N.INTERACTIONS, "interaction": N.INTERACTIONS,
    "users": N.USERS, "user": N.USERS,
    "currentuser": N.CURRENT_USER, "currentitem": N.CURRENT_ITEM,
}
_ACTION_DATASETS = ("actions", "action", "action_interactions", "actioninteractions")
_NUMBER_TYPES = ("tinyint", "smallint", "int", "bigint", "float", "double", "decimal")


@dataclass(frozen=True)
class FilterContext:
    """What a batch job's requests carry, which decides what its filter may use.

    Attributes:
        job: named in error messages.
        target: the job returns items (``ItemID``) or users (``UserID``).
        current_user: requests name a user (``IF CurrentUser.x``, Interactions filters on items).
        current_item: requests name a query item whose fields ``CurrentItem.x`` can be values.
        interactions: Interactions filters are possible (not for item-attribute segments).
    """

    job: str
    target: str = N.ITEM_ID_TARGET
    current_user: bool = True
    current_item: bool = False
    interactions: bool = True


RECOMMEND = FilterContext("recommend")
RANK = FilterContext("rank")
RELATED = FilterContext("related", current_user=False, current_item=True)
# Item-affinity segments: an Interactions condition selects users by their interactions with the
# query item (see batchrec.filters.compile).
ITEM_SEGMENT = FilterContext("segment", N.USER_ID_TARGET, current_user=False)
ATTRIBUTE_SEGMENT = FilterContext("segment by item attributes", N.USER_ID_TARGET, current_user=False,
                                  interactions=False)


def field_class(simple_type: str) -> str:
    """The field class of a Spark type's ``simpleString()`` (``"int"``, ``"string"``, ...)."""
    name = simple_type.lower()
    if name == "string" or name.startswith("varchar") or name.startswith("char"):
        return STRING_FIELD
    if name == "boolean":
        return BOOLEAN_FIELD
    if name.split("(")[0] in _NUMBER_TYPES:
        return NUMBER_FIELD
    return OTHER_FIELD


def fields_of_dataframe(df: Any) -> dict[str, str]:
    """``{COLUMN: field class}`` of a DataFrame; internal columns (``_...``) are left out."""
    return {f.name: field_class(f.dataType.simpleString()) for f in df.schema.fields
            if not f.name.startswith("_")}


def fields_of_schema(schema: Any) -> dict[str, str]:
    """``{FIELD: field class}`` of a :class:`batchrec.datasets.schema.DatasetSchema`; textual and
    boolean fields are marked so that filters on them are refused before reading any data."""
    out = {}
    for f in schema.fields:
        if f.textual:
            out[f.name] = TEXTUAL_FIELD
        elif f.type == "boolean":
            out[f.name] = BOOLEAN_FIELD
        elif f.type in ("int", "long", "float", "double"):
            out[f.name] = NUMBER_FIELD
        else:
            out[f.name] = STRING_FIELD
    return out


def check_filter(filt: N.Filter, context: FilterContext = RECOMMEND,
                 fields: Optional[FieldTypes] = None) -> N.Filter:
    """Check a parsed filter against the job and the datasets' fields.

    Args:
        filt: from :func:`batchrec.filters.parser.parse_filter`.
        context: what the job's requests carry (:data:`RECOMMEND`, :data:`RELATED`, ...).
        fields: ``{"items"|"users"|"interactions": {FIELD: field class}}`` of the datasets the job
            has; None skips the field checks (parse-time checks before the datasets are known).

    Returns:
        The same filter with canonical dataset names and field names spelled as the columns.

    Raises:
        FilterError: the first problem, with its column.
    """
    checker = _Checker(filt.text, context, fields)
    expressions = tuple(checker.expression(e) for e in filt.expressions)
    checker.limits(expressions)
    return N.Filter(expressions, filt.text)


class _Checker:
    def __init__(self, text: str, context: FilterContext, fields: Optional[FieldTypes]):
        self.text = text
        self.context = context
        self.fields = fields

    def fail(self, reason: str, column: int, expected=()):
        raise FilterError(reason, self.text, column, expected)

    # --- expressions ---------------------------------------------------------------------------

    def expression(self, expr: N.Expression) -> N.Expression:
        ctx = self.context
        if expr.target == N.ACTION_ID_TARGET:
            self.fail("ActionID filters are for action recommendations, which batchrec does not make",
                      expr.target_column, (ctx.target,))
        if expr.target != ctx.target:
            returns = "items" if ctx.target == N.ITEM_ID_TARGET else "users"
            self.fail(f"a {ctx.job} job returns {returns}, not {expr.target}s", expr.target_column,
                      (ctx.target,))
        where = self.where(expr)
        when = tuple(self.if_condition(c) for c in expr.when)
        if when and ctx.target == N.USER_ID_TARGET:
            self.fail("a UserID filter has no current user to test in an IF", when[0].column)
        return dataclasses.replace(expr, where=where, when=when)

    def where(self, expr: N.Expression) -> N.Node:
        first = next(N.leaves(expr.where))
        dataset = self.dataset(first.field.dataset, first.column)
        allowed = ((N.ITEMS, N.INTERACTIONS) if expr.target == N.ITEM_ID_TARGET
                   else (N.USERS, N.INTERACTIONS))
        if dataset == N.CURRENT_USER:
            self.fail("CurrentUser fields can only be tested in the IF at the end of an expression, "
                      "e.g. IF CurrentUser.AGE > 18", first.column, allowed)
        if dataset == N.CURRENT_ITEM:
            self.fail("CurrentItem fields can only be values, e.g. Items.GENRE IN CurrentItem.GENRE",
                      first.column, allowed)
        if dataset not in allowed:
            hint = ("; test the current user's fields with IF CurrentUser.FIELD"
                    if dataset == N.USERS else "")
            self.fail(f"a {expr.target} filter cannot test {dataset} fields in its WHERE{hint}",
                      first.column, allowed)
        if dataset == N.INTERACTIONS:
            if not self.context.interactions:
                self.fail(f"a {self.context.job} job has no query item, so it cannot use an "
                          "Interactions filter", first.column)
            if expr.target == N.ITEM_ID_TARGET and not self.context.current_user:
                self.fail(f"Interactions filters need requests with a userId; a {self.context.job} "
                          "job has none", first.column)
        return self.node(expr.where, dataset)

    def node(self, node: N.Node, dataset: str) -> N.Node:
        if isinstance(node, N.Condition):
            return self.where_condition(node, dataset)
        return type(node)(tuple(self.node(p, dataset) for p in node.parts))

    def where_condition(self, cond: N.Condition, dataset: str) -> N.Condition:
        own = self.dataset(cond.field.dataset, cond.column)
        if own != dataset:
            self.fail(f"one WHERE cannot mix {dataset} and {own} fields; chain two expressions "
                      "with |", cond.column, (f"{dataset}.FIELD",))
        if dataset == N.INTERACTIONS and cond.field.field.upper() != EVENT_TYPE_FIELD:
            self.fail("Interactions filters can only test EVENT_TYPE", cond.field.field_column,
                      ("Interactions.EVENT_TYPE",))
        field = self.field(dataset, cond.field.field, cond.field.field_column)
        if dataset == N.INTERACTIONS:
            if cond.operator not in N.SET_OPERATORS:
                self.fail(f"Interactions.EVENT_TYPE takes IN or NOT IN, not {cond.operator}",
                          cond.operator_column, N.SET_OPERATORS)
        values = self.values(cond, dataset)
        return N.Condition(N.FieldRef(dataset, field, cond.field.column, cond.field.field_column),
                           cond.operator, values,
                           cond.operator_column)

    def if_condition(self, cond: N.Condition) -> N.Condition:
        dataset = self.dataset(cond.field.dataset, cond.column)
        if dataset != N.CURRENT_USER:
            self.fail(f"an IF can only test CurrentUser fields, not {dataset} fields", cond.column,
                      ("CurrentUser.FIELD",))
        if not self.context.current_user:
            self.fail(f"a {self.context.job} job has no current user to test", cond.column)
        field = self.field(dataset, cond.field.field, cond.field.field_column)
        values = self.values(cond, dataset)
        return N.Condition(N.FieldRef(dataset, field, cond.field.column, cond.field.field_column),
                           cond.operator, values,
                           cond.operator_column)

    # --- values -------------------------------------------------------------------------------

    def values(self, cond: N.Condition, dataset: str) -> tuple[N.Value, ...]:
        out = []
        for value in cond.values:
            if isinstance(value, N.Placeholder):
                if cond.operator == N.NOT_IN:
                    self.fail(f"placeholders are not allowed with NOT IN (${value.name}); use IN with "
                              "the opposite action, e.g. EXCLUDE ... IN ($X) instead of "
                              "INCLUDE ... NOT IN ($X)", value.column)
                if len(value.name) > MAX_PLACEHOLDER_LENGTH:
                    self.fail(f"placeholder ${value.name[:20]}... is longer than "
                              f"{MAX_PLACEHOLDER_LENGTH} characters", value.column)
                out.append(value)
            elif isinstance(value, N.FieldValue):
                out.append(self.field_value(value, dataset))
            else:
                if value.text == N.ALL_EVENT_TYPES and dataset != N.INTERACTIONS:
                    self.fail('"*" stands for every event type and only works with '
                              "Interactions.EVENT_TYPE", value.column)
                out.append(value)
        return tuple(out)

    def field_value(self, value: N.FieldValue, dataset: str) -> N.FieldValue:
        source = self.dataset(value.dataset, value.column)
        if source != N.CURRENT_ITEM:
            self.fail(f"only CurrentItem fields can be values, not {source} fields", value.column,
                      ("a quoted string", "a number", "$PARAMETER", "CurrentItem.FIELD"))
        if not self.context.current_item:
            self.fail(f"CurrentItem is only for related-items jobs (the query item); a {self.context.job} "
                      "job has none", value.column)
        if dataset != N.ITEMS:
            self.fail("CurrentItem fields can only be compared with Items fields", value.column)
        return N.FieldValue(source, self.field(source, value.field, value.field_column), value.column,
                            value.field_column)

    # --- names --------------------------------------------------------------------------------

    def dataset(self, name: str, column: int) -> str:
        canonical = _ALIASES.get(name.lower())
        if canonical:
            return canonical
        if name.lower() in _ACTION_DATASETS:
            self.fail(f"{name} is an action dataset; batchrec recommends items, not actions", column,
                      (N.ITEMS, N.INTERACTIONS, N.USERS))
        self.fail(f"unknown dataset {name!r}", column, N.DATASETS)

    def field(self, dataset: str, name: str, field_column: int) -> str:
        if self.fields is None:
            return name.upper()
        kind = KIND_OF[dataset]
        if kind not in self.fields or self.fields[kind] is None:
            self.fail(f"the filter tests {dataset}.{name} but the job has no {kind} dataset",
                      field_column)
        columns = self.fields[kind]
        match = next((c for c in columns if c.upper() == name.upper()), None)
        if match is None:
            known = [f"{dataset}.{c}" for c in sorted(columns)]
            if len(known) > MAX_LISTED_FIELDS:
                known = known[:MAX_LISTED_FIELDS] + ["..."]
            self.fail(f"the {kind} dataset has no field {name!r}", field_column, known)
        kind_of_field = columns[match]
        if kind_of_field == BOOLEAN_FIELD:
            self.fail(f"{dataset}.{match} is boolean, which filters cannot test; store it as a string "
                      '("True"/"False") or a number (0/1)', field_column)
        if kind_of_field == TEXTUAL_FIELD:
            self.fail(f"{dataset}.{match} is free text, which filters cannot test", field_column)
        if kind_of_field == OTHER_FIELD:
            self.fail(f"{dataset}.{match} is neither a string nor a number", field_column)
        return match

    # --- limits -------------------------------------------------------------------------------

    def limits(self, expressions: tuple[N.Expression, ...]) -> None:
        distinct: dict[tuple[str, str], None] = {}
        params: dict[str, None] = {}
        for expr in expressions:
            for cond in expr.conditions():
                refs = [(cond.field.dataset, cond.field.field, cond.field.field_column)]
                refs += [(v.dataset, v.field, v.field_column) for v in cond.values
                         if isinstance(v, N.FieldValue)]
                for dataset, field, column in refs:
                    distinct.setdefault((KIND_OF[dataset], field.upper()), None)
                    if len(distinct) > MAX_DISTINCT_FIELDS:
                        self.fail(f"the filter uses more than {MAX_DISTINCT_FIELDS} distinct dataset "
                                  "fields, Personalize's limit", column)
                for value in cond.values:
                    if isinstance(value, N.Placeholder):
                        params.setdefault(value.name, None)
                        if len(params) > MAX_PLACEHOLDERS:
                            self.fail(f"the filter uses more than {MAX_PLACEHOLDERS} placeholders, the "
                                      "most filterValues can supply", value.column)
