"""The filter language's syntax tree: frozen dataclasses, each node with its 1-based column.

A :class:`Filter` is one or more :class:`Expression` chained with ``|``. An expression's ``where``
is a tree of :class:`And` / :class:`Or` over :class:`Condition` leaves (``AND`` binds tighter than
``OR``), and ``when`` holds the conditions of its trailing ``IF`` (all joined by ``AND``).

The parser keeps identifiers as written; :func:`batchrec.filters.check.check_filter` returns a copy
with dataset names in their canonical spelling (:data:`DATASETS`) and fields spelled like the
dataset's columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Union

INCLUDE = "INCLUDE"
EXCLUDE = "EXCLUDE"
ACTIONS = (INCLUDE, EXCLUDE)

ITEM_ID_TARGET = "ItemID"
USER_ID_TARGET = "UserID"
ACTION_ID_TARGET = "ActionID"
TARGETS = (ITEM_ID_TARGET, USER_ID_TARGET, ACTION_ID_TARGET)

# Canonical dataset names.
ITEMS = "Items"
INTERACTIONS = "Interactions"
USERS = "Users"
CURRENT_USER = "CurrentUser"
CURRENT_ITEM = "CurrentItem"
DATASETS = (ITEMS, INTERACTIONS, USERS, CURRENT_USER, CURRENT_ITEM)

IN = "IN"
NOT_IN = "NOT IN"
EQ, NE, LT, LE, GT, GE = "=", "!=", "<", "<=", ">", ">="
SET_OPERATORS = (IN, NOT_IN)
COMPARISONS = (EQ, NE, LT, LE, GT, GE)
OPERATORS = SET_OPERATORS + COMPARISONS
ORDERINGS = (LT, LE, GT, GE)

# The value that stands for every event type (Interactions.EVENT_TYPE only).
ALL_EVENT_TYPES = "*"


@dataclass(frozen=True)
class Literal:
    """A quoted string or a bare number; ``number`` is set for numbers only."""

    text: str
    column: int
    number: Union[float, None] = None

    @property
    def is_number(self) -> bool:
        return self.number is not None


@dataclass(frozen=True)
class Placeholder:
    """``$NAME``: a value supplied at request time (``filterValues``); the name is case-sensitive."""

    name: str
    column: int


@dataclass(frozen=True)
class FieldValue:
    """A dataset field used as a value, e.g. ``CurrentItem.GENRE``."""

    dataset: str
    field: str
    column: int
    field_column: int = 0


Value = Union[Literal, Placeholder, FieldValue]


@dataclass(frozen=True)
class FieldRef:
    """``Dataset.FIELD`` on the left of a condition (``column`` of the dataset, ``field_column`` of the field)."""

    dataset: str
    field: str
    column: int
    field_column: int = 0


@dataclass(frozen=True)
class Condition:
    """``field op values``: IN / NOT IN take one or more values, comparisons exactly one."""

    field: FieldRef
    operator: str
    values: tuple[Value, ...]
    operator_column: int

    @property
    def column(self) -> int:
        return self.field.column


@dataclass(frozen=True)
class And:
    """All parts hold."""

    parts: tuple["Node", ...]


@dataclass(frozen=True)
class Or:
    """At least one part holds."""

    parts: tuple["Node", ...]


Node = Union[Condition, And, Or]


@dataclass(frozen=True)
class Expression:
    """``INCLUDE|EXCLUDE target WHERE where [IF when]``; ``text`` is the expression as written."""

    action: str
    target: str
    where: Node
    when: tuple[Condition, ...]
    column: int
    text: str
    target_column: int = 0

    def conditions(self) -> Iterator[Condition]:
        """Every condition of the WHERE, left to right, then those of the IF."""
        yield from leaves(self.where)
        yield from self.when

    def placeholders(self) -> Iterator[Placeholder]:
        """Every placeholder of the expression, left to right (repeats included)."""
        for cond in self.conditions():
            yield from (v for v in cond.values if isinstance(v, Placeholder))

    @property
    def dataset(self) -> str:
        """The dataset of the WHERE (its first condition's; checked to be the same for all)."""
        return next(leaves(self.where)).field.dataset


@dataclass(frozen=True)
class Filter:
    """Expressions chained with ``|``: ``allowed = (union of INCLUDEs, or everything) - union of EXCLUDEs``."""

    expressions: tuple[Expression, ...]
    text: str

    @property
    def target(self) -> str:
        return self.expressions[0].target

    def placeholder_names(self) -> tuple[str, ...]:
        """Distinct placeholder names in order of first use."""
        seen: dict[str, None] = {}
        for expr in self.expressions:
            for p in expr.placeholders():
                seen.setdefault(p.name, None)
        return tuple(seen)


def leaves(node: Node) -> Iterator[Condition]:
    """The conditions of a WHERE tree, left to right."""
    if isinstance(node, Condition):
        yield node
    else:
        for part in node.parts:
            yield from leaves(part)


def render(filt: Filter) -> str:
    """The filter in one canonical spelling (``parse_filter(render(f))`` gives back the same tree,
    columns aside): keywords upper-case, one space between tokens, strings double-quoted."""
    return " | ".join(render_expression(e) for e in filt.expressions)


def render_expression(expr: Expression) -> str:
    """One expression in the canonical spelling of :func:`render`."""
    text = f"{expr.action} {expr.target} WHERE {_render_node(expr.where)}"
    if expr.when:
        text += " IF " + " AND ".join(_render_condition(c) for c in expr.when)
    return text


def _render_node(node: Node) -> str:
    if isinstance(node, Condition):
        return _render_condition(node)
    word = " AND " if isinstance(node, And) else " OR "
    return word.join(_render_node(p) for p in node.parts)


def _render_condition(cond: Condition) -> str:
    values = cond.values
    if cond.operator in SET_OPERATORS and not isinstance(values[0], FieldValue):
        shown = "(" + ", ".join(_render_value(v) for v in values) + ")"
    else:
        shown = _render_value(values[0])
    return f"{cond.field.dataset}.{cond.field.field} {cond.operator} {shown}"


def _render_value(value: Value) -> str:
    if isinstance(value, Placeholder):
        return f"${value.name}"
    if isinstance(value, FieldValue):
        return f"{value.dataset}.{value.field}"
    if value.is_number:
        return value.text
    return '"' + value.text.replace("\\", "\\\\").replace('"', '\\"') + '"'
