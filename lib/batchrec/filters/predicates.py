"""Spark Column expressions for conditions; values are always Columns, never SQL text.

A condition's values arrive as an ``array<string>`` Column (literals, a placeholder's values, or a
query item's multi-valued field) and, for comparisons, one ``string`` Column. Semantics:

* ``IN``: any of the field's ``|``-separated values equals any listed value (exact strings); a null
  field matches nothing. ``NOT IN`` is its negation, so a null field is ``NOT IN`` any list.
* ordering comparisons (``< <= > >=``) are numeric; a field or value that is not a number fails.
* ``=`` / ``!=`` compare numerically when the value is a number, else as strings against each of
  the field's values; a null field fails both.
* event types match case-insensitively and ``"*"`` matches every event type.
"""

from __future__ import annotations

from typing import Callable

from pyspark.sql import Column, functions as F

from batchrec.filters import nodes as N
from batchrec.filters.check import NUMBER_FIELD
from batchrec.filters.values import NUMBER_PATTERN

MULTI_VALUE_SEPARATOR = "|"
_SPLIT_PATTERN = r"\|"

_COMPARE: dict[str, Callable[[Column, Column], Column]] = {
    N.EQ: lambda a, b: a == b, N.NE: lambda a, b: a != b,
    N.LT: lambda a, b: a < b, N.LE: lambda a, b: a <= b,
    N.GT: lambda a, b: a > b, N.GE: lambda a, b: a >= b,
}


def values_of(field: Column) -> Column:
    """The ``|``-separated values of a categorical field as ``array<string>`` (null stays null)."""
    return F.split(field.cast("string"), _SPLIT_PATTERN)


def as_number(value: Column, field_class: str = "string") -> Column:
    """A double, or null when the value is not a number (NaN counts as not a number)."""
    if field_class == NUMBER_FIELD:
        number = value.cast("double")
        return F.when(~F.isnan(number), number)
    text = value.cast("string")
    return F.when(text.rlike(NUMBER_PATTERN), text.try_cast("double"))


def attribute_condition(operator: str, field: Column, field_class: str, listed: Column,
                        single: Column) -> Column:
    """An attribute condition as a never-null boolean Column.

    Args:
        operator: one of :data:`batchrec.filters.nodes.OPERATORS`.
        field: the dataset field.
        field_class: ``"number"`` or ``"string"`` (see :mod:`batchrec.filters.check`).
        listed: ``array<string>`` of the values (IN / NOT IN).
        single: the one value of a comparison (``string``).
    """
    if operator in N.SET_OPERATORS:
        hit = F.coalesce(F.arrays_overlap(values_of(field), listed), F.lit(False))
        return hit if operator == N.IN else ~hit
    compare = _COMPARE[operator]
    number = as_number(single)
    numeric = F.coalesce(compare(as_number(field, field_class), number), F.lit(False))
    if operator in N.ORDERINGS:
        return numeric
    equal = F.coalesce(F.exists(values_of(field), lambda part: part == single), F.lit(False))
    textual = equal if operator == N.EQ else (field.isNotNull() & ~equal)
    return F.when(number.isNotNull(), numeric).otherwise(textual)


def event_condition(operator: str, event_type: Column, listed: Column) -> Column:
    """``EVENT_TYPE IN / NOT IN`` over one interaction row; ``event_type`` is already lower-case."""
    hit = F.coalesce(F.exists(listed, lambda v: (v == N.ALL_EVENT_TYPES) | (F.lower(v) == event_type)),
                     F.lit(False))
    return hit if operator == N.IN else ~hit


def combine(node: N.Node, leaf: Callable[[N.Condition], Column]) -> Column:
    """The WHERE tree as one Column, with ``leaf`` compiling each condition."""
    if isinstance(node, N.Condition):
        return leaf(node)
    parts = [combine(p, leaf) for p in node.parts]
    out = parts[0]
    for part in parts[1:]:
        out = (out & part) if isinstance(node, N.And) else (out | part)
    return out
