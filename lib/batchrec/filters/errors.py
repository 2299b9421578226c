"""The one error type of the filter language: a usage error (exit 2) that says where and what."""

from __future__ import annotations

from typing import Optional, Sequence

from batchrec.errors import UsageError

# Characters of the expression shown on each side of the error column.
CONTEXT_CHARS = 24


class FilterError(UsageError):
    """A filter expression or its values are wrong (exit 2).

    Attributes:
        reason: what is wrong, without the location.
        expression: the whole filter expression (empty when the error is about values alone).
        column: 1-based character position in ``expression`` where the problem starts, or None.
        expected: the tokens or forms that would have been accepted there (syntax errors).
    """

    def __init__(self, reason: str, expression: str = "", column: Optional[int] = None,
                 expected: Sequence[str] = (), source: str = "filter"):
        self.reason = reason
        self.expression = expression
        self.column = column
        self.expected = tuple(expected)
        self.source = source
        super().__init__(self._format())

    def _format(self) -> str:
        where = f"{self.source}, column {self.column}" if self.column is not None else self.source
        text = f"{where}: {self.reason}"
        if self.expected:
            text += f"; expected {_one_of(self.expected)}"
        if self.column is not None and self.expression:
            text += f" (at {_excerpt(self.expression, self.column)})"
        return text


def _one_of(options: Sequence[str]) -> str:
    if len(options) == 1:
        return options[0]
    return "one of " + ", ".join(options)


def _excerpt(expression: str, column: int) -> str:
    """The expression around ``column`` on one line, with ``>>>`` marking the column."""
    flat = " ".join(expression.split("\n"))
    i = max(0, min(column - 1, len(flat)))
    before = flat[max(0, i - CONTEXT_CHARS):i]
    after = flat[i:i + CONTEXT_CHARS]
    lead = "..." if i > CONTEXT_CHARS else ""
    tail = "..." if i + CONTEXT_CHARS < len(flat) else ""
    return f"{lead}{before}>>>{after}{tail}"
