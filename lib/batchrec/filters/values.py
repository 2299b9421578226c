"""Placeholder values: Personalize's ``filterValues`` format, checked against the expression.

A value is a string of comma-separated, double-quoted values with ``\\"`` for a quote inside one::

    {"GENRES": "\\"horror\\",\\"comedy\\"", "PRICE": "\\"20\\""}

Values come globally (``--filter-values``, one JSON object) and/or per input line
(``"filterValues"`` in the request JSON, see :mod:`batchrec.filters.compile`); a line's value for a
name wins over the global one. Rules, as documented by Personalize:

* a placeholder of an ``INCLUDE`` expression must have a value;
* an ``EXCLUDE`` expression with a placeholder that has no value is skipped;
* ``IN ($X)`` takes any number of values; a comparison (``= != < <= > >=``) exactly one, and the
  ordering ones a number;
* at most 25 names, each ``[A-Za-z0-9_]{1,50}``; a value string at most 1000 characters. An empty
  value string counts as no value.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from batchrec.filters import nodes as N
from batchrec.filters.errors import FilterError

MAX_KEYS = 25
MAX_KEY_LENGTH = 50
MAX_VALUE_LENGTH = 1000
KEY_PATTERN = r"[A-Za-z0-9_]{1,50}"
# One quoted value (group 1: its escaped contents) and a whole value string; the same Java-compatible
# patterns parse per-line values in Spark (batchrec.filters.compile).
ITEM_PATTERN = r'"((?:[^"\\]|\\.)*)"'
LIST_PATTERN = r'^\s*"(?:[^"\\]|\\.)*"(?:\s*,\s*"(?:[^"\\]|\\.)*")*\s*$'
UNESCAPE_PATTERN = r"\\(.)"
# A value that compares as a number (both here and in Spark: no "inf", "nan" or "1_000").
NUMBER_PATTERN = r"^\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*$"
FORMAT_HINT = 'a string of comma-separated quoted values such as "\\"comedy\\",\\"drama\\""'

_ITEM = re.compile(ITEM_PATTERN)
_LIST = re.compile(LIST_PATTERN, re.DOTALL)
_UNESCAPE = re.compile(UNESCAPE_PATTERN, re.DOTALL)
_NUMBER = re.compile(NUMBER_PATTERN)
_KEY = re.compile(KEY_PATTERN)


def is_number(text: str) -> bool:
    """Whether a value compares as a number."""
    return bool(_NUMBER.match(text))


def split_values(raw: str, name: str = "value", source: str = "--filter-values") -> tuple[str, ...]:
    """``'"a","b\\"c"'`` -> ``("a", 'b"c')``; an empty or blank string -> ``()``.

    Raises:
        FilterError: the string is longer than 1000 characters or not in the format.
    """
    if not isinstance(raw, str):
        raise FilterError(f"{name}: the value is a JSON {type(raw).__name__}", source=source,
                          expected=(FORMAT_HINT,))
    if len(raw) > MAX_VALUE_LENGTH:
        raise FilterError(f"{name}: the value has {len(raw)} characters; at most {MAX_VALUE_LENGTH}",
                          source=source)
    if not raw.strip():
        return ()
    if not _LIST.match(raw):
        raise FilterError(f"{name}: cannot read {raw[:60]!r}", source=source, expected=(FORMAT_HINT,))
    return tuple(_UNESCAPE.sub(r"\1", m.group(1)) for m in _ITEM.finditer(raw))


def parse_filter_values(values: Any, source: str = "--filter-values") -> dict[str, tuple[str, ...]]:
    """Read global placeholder values: JSON text (as on the command line) or an already decoded
    ``{name: value string}`` mapping.

    Returns:
        ``{name: (value, ...)}``; names with an empty value string are left out.

    Raises:
        FilterError: not a JSON object of strings, a bad name, too many names, or a bad value string.
    """
    if values is None:
        return {}
    if isinstance(values, str):
        if not values.strip():
            return {}
        try:
            values = json.loads(values)
        except json.JSONDecodeError as exc:
            raise FilterError(f"not valid JSON ({exc.msg} at character {exc.pos + 1})", source=source,
                              expected=('an object such as {"GENRES": "\\"comedy\\""}',)) from None
    if not isinstance(values, Mapping):
        raise FilterError(f"a JSON {type(values).__name__}", source=source,
                          expected=('an object such as {"GENRES": "\\"comedy\\""}',))
    if len(values) > MAX_KEYS:
        raise FilterError(f"{len(values)} names; Personalize allows at most {MAX_KEYS}", source=source)
    out: dict[str, tuple[str, ...]] = {}
    for name, raw in values.items():
        if not isinstance(name, str) or not _KEY.fullmatch(name):
            raise FilterError(f"bad name {name!r}", source=source,
                              expected=(f"1 to {MAX_KEY_LENGTH} letters, digits or _",))
        parsed = split_values(raw, name, source)
        if parsed:
            out[name] = parsed
    return out


@dataclass(frozen=True)
class ValuePlan:
    """How each placeholder gets its values in one job.

    Attributes:
        values: the global values by name.
        per_line: requests may carry their own values (``filterValues`` in the input lines).
        dropped: indexes of the expressions skipped for every request (EXCLUDE, value missing).
    """

    values: Mapping[str, tuple[str, ...]]
    per_line: bool
    dropped: frozenset[int]

    def is_request_dependent(self, expr: N.Expression) -> bool:
        """Whether the expression's placeholders can take values that differ between requests."""
        return self.per_line and any(True for _ in expr.placeholders())


def plan_values(filt: N.Filter, values: Optional[Mapping[str, tuple[str, ...]]] = None,
                per_line: bool = False, source: str = "--filter-values") -> ValuePlan:
    """Check the global values against the filter's placeholders.

    Args:
        filt: a checked filter.
        values: global values from :func:`parse_filter_values`.
        per_line: whether requests can carry their own ``filterValues``; when they can, a missing
            INCLUDE value is a per-request error instead of a usage error.

    Raises:
        FilterError: a name the filter does not use, an INCLUDE placeholder without any value
            (when there are no per-line values), or a value that its operator cannot take.
    """
    values = dict(values or {})
    names = filt.placeholder_names()
    unknown = [k for k in values if k not in names]
    if unknown:
        used = ", ".join(f"${n}" for n in names) or "none"
        raise FilterError(f"{unknown[0]!r} is not a placeholder of the filter (names are case-sensitive; "
                          f"the filter's placeholders: {used})", source=source)
    dropped = set()
    for index, expr in enumerate(filt.expressions):
        for cond in expr.conditions():
            for value in cond.values:
                if not isinstance(value, N.Placeholder):
                    continue
                if value.name in values:
                    problem = value_problem(cond.operator, values[value.name])
                    if problem:
                        raise FilterError(f"${value.name}: {problem}", filt.text, value.column,
                                          source=f"{source} for the filter")
                elif not per_line:
                    if expr.action == N.INCLUDE:
                        raise FilterError(f"${value.name} has no value; an INCLUDE expression needs "
                                          "every placeholder's value (--filter-values or "
                                          '"filterValues" in each input line)', filt.text, value.column)
                    dropped.add(index)
    return ValuePlan(values, per_line, frozenset(dropped))


def value_problem(operator: str, parsed: tuple[str, ...]) -> Optional[str]:
    """Why ``parsed`` cannot be the values of a placeholder used with ``operator``, or None."""
    if operator in N.COMPARISONS:
        if len(parsed) != 1:
            return f"a comparison ({operator}) takes one value, got {len(parsed)}"
        if operator in N.ORDERINGS and not is_number(parsed[0]):
            return f"{parsed[0]!r} is not a number, which {operator} needs"
    return None
