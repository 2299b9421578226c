"""Item-attribute queries of Personalize's batch segment jobs: ``ITEMS.genres = "Comedy" AND ...``.

Grammar (Personalize documents only ``=`` and ``AND``; anything else is rejected with its position)::

    query     := condition ( AND condition )*
    condition := dataset "." field "=" value
    dataset   := ITEMS                        (any letter case)
    field     := [A-Za-z_][A-Za-z0-9_]*       (an Items column, any letter case)
    value     := '"' chars '"'                (backslash escapes any character: \\" \\\\ ...)
               | number                       (compared numerically: ``ITEMS.PRICE = 10``)
    AND       := and                          (any letter case)

Matching: a string value matches an item when it equals, exactly and case-sensitively (as
Personalize's filters compare exact strings), one of the ``|``-separated values of the field,
so ``ITEMS.genres = "Comedy"`` matches ``Adventure|Comedy``; a number matches when one of those
values, read as a number, equals it. ``AND`` of two conditions on the same multi-valued field
selects items having both values. A null field matches nothing.

Errors are :class:`AttributeQueryError` (a ``UsageError``, exit 2) carrying the 0-based character
``position`` in the query text. A query usually comes from one line of a JSON-lines input file:
the batch job should then report the message in that line's ``error`` field (as Personalize does)
rather than fail the whole job; ``str(error)`` names the query, the character and what was expected.

Queries become Spark Column expressions built from literals (``F.lit``): no user text is ever
spliced into SQL. Each query has a stable ``segment_id``: a short hash of its normalized text
(dataset and fields upper-cased, conditions de-duplicated and sorted, canonical quoting), so the
same segment asked with other spacing, letter case or condition order keeps its ID across runs.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Sequence, Union

from pyspark.sql import Column, DataFrame, functions as F

from batchrec.columns import ITEM_ID
from batchrec.errors import DataError, UsageError

DATASET = "ITEMS"
KEYWORD_AND = "AND"
MULTI_VALUE_SEPARATOR = "|"
SEGMENT_ID = "segment_id"
SEGMENT_ID_PREFIX = "attributes-"
SEGMENT_ID_HEX_DIGITS = 16
# Personalize's item-attribute-affinity accepts at most 10 queries per input file; batchrec does
# not enforce it here (the batch job may), the limit is only documented for callers.
PERSONALIZE_MAX_QUERIES = 10

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")
_SPACE = re.compile(r"\s*")
_OTHER_OPERATORS = ("!=", "<>", "<=", ">=", "<", ">")
_EXAMPLE = 'ITEMS.genres = "Comedy" AND ITEMS.genres = "Action"'


class AttributeQueryError(UsageError):
    """An item-attribute query that does not parse or names an unknown field.

    Attributes:
        query: the query text as given.
        position: 0-based character offset of the problem in ``query``.
    """

    def __init__(self, query: str, position: int, problem: str):
        self.query = query
        self.position = position
        self.problem = problem
        super().__init__(f"item attribute query {query!r}: at character {position + 1}: {problem}")


class UnknownAttributeError(AttributeQueryError):
    """A field that is not a column of the Items dataset."""


@dataclass(frozen=True)
class Condition:
    """``ITEMS.<field> = <value>``; ``field`` upper-cased, ``position`` where the field starts."""

    field: str
    value: Union[str, float]
    position: int

    @property
    def numeric(self) -> bool:
        """True for a bare number (compared numerically)."""
        return isinstance(self.value, float)

    def normalized(self) -> str:
        """``ITEMS.FIELD = "value"`` with canonical escapes (or ``= 10.0`` for a number)."""
        if self.numeric:
            return f"{DATASET}.{self.field} = {self.value!r}"
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{DATASET}.{self.field} = "{escaped}"'


@dataclass(frozen=True)
class AttributeQuery:
    """A parsed query: the text as given and its conditions in the given order."""

    text: str
    conditions: tuple[Condition, ...]

    @property
    def normalized(self) -> str:
        """The conditions, de-duplicated and sorted, joined by `` AND ``: equal for equal queries."""
        return f" {KEYWORD_AND} ".join(sorted({c.normalized() for c in self.conditions}))

    @property
    def segment_id(self) -> str:
        """``attributes-`` and the first 16 hex digits of the SHA-256 of :attr:`normalized`."""
        digest = hashlib.sha256(self.normalized.encode("utf-8")).hexdigest()
        return SEGMENT_ID_PREFIX + digest[:SEGMENT_ID_HEX_DIGITS]

    @property
    def fields(self) -> tuple[str, ...]:
        """The distinct fields named, upper-cased, in order of first use."""
        return tuple(dict.fromkeys(c.field for c in self.conditions))


def parse_attribute_query(text: str) -> AttributeQuery:
    """Parse one query.

    Raises:
        AttributeQueryError: not a string, empty, or a syntax error (with its position).
    """
    if not isinstance(text, str):
        raise AttributeQueryError(repr(text), 0, f"expected a string like {_EXAMPLE}")
    return _Parser(text).query()


def attribute_segment_id(text: str) -> str:
    """The ``segment_id`` of a query text (see :attr:`AttributeQuery.segment_id`)."""
    return parse_attribute_query(text).segment_id


def resolve_fields(query: AttributeQuery, item_columns: Sequence[str]) -> dict[str, str]:
    """Map each field of ``query`` to the Items column it names (matched case-insensitively).

    Columns starting with ``_`` are batchrec's own (e.g. the source file) and never match.

    Raises:
        UnknownAttributeError: a field with no such column, at the field's position.
    """
    by_upper = {c.upper(): c for c in item_columns if not c.startswith("_")}
    resolved = {}
    for condition in query.conditions:
        column = by_upper.get(condition.field)
        if column is None:
            known = ", ".join(sorted(c for c in by_upper.values() if c.upper() != ITEM_ID)) or "none"
            raise UnknownAttributeError(query.text, condition.position,
                                        f"ITEMS has no field {condition.field}; expected one of: {known}")
        resolved[condition.field] = column
    return resolved


def query_column(query: AttributeQuery, item_columns: Sequence[str]) -> Column:
    """A boolean Column over the Items dataset: true for the items ``query`` selects (never null).

    Raises:
        UnknownAttributeError: see :func:`resolve_fields`.
    """
    columns = resolve_fields(query, item_columns)
    predicate = None
    for condition in query.conditions:
        values = F.split(F.col(columns[condition.field]).cast("string"), re.escape(MULTI_VALUE_SEPARATOR))
        if condition.numeric:
            match = F.exists(values, _equals_number(condition.value))
        else:
            match = F.array_contains(values, F.lit(condition.value))
        match = F.coalesce(match, F.lit(False))
        predicate = match if predicate is None else predicate & match
    return predicate


def _equals_number(value: float):
    """A one-argument lambda for ``F.exists`` (Spark counts the parameters, defaults included)."""
    target = F.lit(value)
    return lambda v: v.cast("double") == target


def matching_items(items: DataFrame, queries: Sequence[AttributeQuery]) -> DataFrame:
    """The items each query selects, in one pass over ``items``.

    Args:
        items: the Items dataset (``ITEM_ID`` and attribute columns).
        queries: parsed queries; duplicates (same ``segment_id``) count once.

    Returns:
        ``[segment_id, ITEM_ID]``, one row per matching (query, item); a query that matches no
        item has no row.

    Raises:
        DataError: ``items`` has no ``ITEM_ID`` column.
        UnknownAttributeError: a query names a field that ``items`` lacks.
    """
    if ITEM_ID not in items.columns:
        raise DataError(f"the Items dataset has columns {items.columns}; expected {ITEM_ID} and the "
                        f"attribute columns the segment queries name")
    unique = list({q.segment_id: q for q in queries}.values())
    if not unique:
        return items.sparkSession.createDataFrame([], f"{SEGMENT_ID} string, {ITEM_ID} string")
    labels = F.array(*[F.when(query_column(q, items.columns), F.lit(q.segment_id)) for q in unique])
    return (items.where(F.col(ITEM_ID).isNotNull())
            .select(F.explode(F.array_compact(labels)).alias(SEGMENT_ID), ITEM_ID)
            .distinct())


class _Parser:
    """Recursive-descent parser over the raw text; ``pos`` is the next unread character."""

    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def fail(self, problem: str, position=None):
        raise AttributeQueryError(self.text, self.pos if position is None else position, problem)

    def skip_space(self) -> None:
        self.pos = _SPACE.match(self.text, self.pos).end()

    def at_end(self) -> bool:
        self.skip_space()
        return self.pos >= len(self.text)

    def identifier(self, what: str) -> tuple[str, int]:
        self.skip_space()
        match = _IDENTIFIER.match(self.text, self.pos)
        if not match:
            found = self.text[self.pos] if self.pos < len(self.text) else "the end of the query"
            self.fail(f"expected {what}, found {found!r}" if self.pos < len(self.text)
                      else f"expected {what}, found {found}")
        self.pos = match.end()
        return match.group(0), match.start()

    def query(self) -> AttributeQuery:
        if self.at_end():
            self.fail(f"the query is empty; expected a condition like {_EXAMPLE}")
        conditions = [self.condition()]
        while not self.at_end():
            word_start = self.pos
            word = _IDENTIFIER.match(self.text, self.pos)
            if word and word.group(0).upper() == KEYWORD_AND:
                self.pos = word.end()
                if self.at_end():
                    self.fail("expected a condition after AND, found the end of the query")
                conditions.append(self.condition())
            elif word and word.group(0).upper() == "OR":
                self.fail("only AND can join conditions (Personalize's segment queries have no OR)",
                          word_start)
            else:
                self.fail(f"expected AND or the end of the query, found {self.text[self.pos:][:20]!r}")
        return AttributeQuery(self.text, tuple(conditions))

    def condition(self) -> Condition:
        dataset, start = self.identifier(f'{DATASET}.<field> (e.g. {_EXAMPLE})')
        if dataset.upper() != DATASET:
            self.fail(f"expected the dataset {DATASET}, found {dataset!r}: segment queries select items",
                      start)
        if not self.text.startswith(".", self.pos):
            self.fail(f"expected '.' and a field name after {dataset}")
        self.pos += 1
        field, field_start = self.identifier("a field name")
        self.skip_space()
        for op in _OTHER_OPERATORS:
            if self.text.startswith(op, self.pos):
                self.fail(f"operator {op!r} is not supported; segment queries compare with '=' only")
        word = _IDENTIFIER.match(self.text, self.pos)
        if word and word.group(0).upper() in ("IN", "NOT"):
            self.fail(f"{word.group(0)} is not supported; segment queries compare with '=' only")
        if not self.text.startswith("=", self.pos):
            self.fail(f"expected '=' after {DATASET}.{field}")
        self.pos += 1
        return Condition(field.upper(), self.value(), field_start)

    def value(self):
        self.skip_space()
        start = self.pos
        if self.text.startswith('"', start):
            return self.string(start)
        number = _NUMBER.match(self.text, start)
        if number:
            self.pos = number.end()
            value = float(number.group(0))
            if not math.isfinite(value):
                self.fail(f"the number {number.group(0)} is out of range", start)
            return value
        if self.text.startswith("'", start):
            self.fail('values are quoted with double quotes ("Comedy"), not single quotes')
        found = repr(self.text[start]) if start < len(self.text) else "the end of the query"
        self.fail(f'expected a value in double quotes (e.g. "Comedy") or a number, found {found}')

    def string(self, start: int) -> str:
        out, i, text = [], start + 1, self.text
        while i < len(text):
            ch = text[i]
            if ch == "\\":
                if i + 1 >= len(text):
                    self.fail("a backslash ends the query; expected an escaped character after it", i)
                out.append(text[i + 1])
                i += 2
            elif ch == '"':
                self.pos = i + 1
                if not out:
                    self.fail('the value "" is empty; expected a non-empty value', start)
                return "".join(out)
            else:
                out.append(ch)
                i += 1
        self.fail('unterminated value: expected a closing double quote (escape a quote inside as \\")', start)
