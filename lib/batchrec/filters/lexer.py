"""Tokens of the filter language, each with its 1-based column in the expression.

* identifiers ``[A-Za-z_][A-Za-z0-9_]*`` (keywords, datasets and fields alike; the parser decides);
* strings in double quotes, or single quotes as in an AWS sample, with ``\\`` escaping the next
  character (``\\"`` is a quote inside the string);
* numbers ``-12``, ``3.5``, ``1e9``;
* placeholders ``$NAME`` with the characters Personalize allows in a ``filterValues`` key;
* punctuation ``. ( ) , |`` and the operators ``= != < <= > >=``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterator

from batchrec.filters.errors import FilterError

IDENT = "identifier"
STRING = "string"
NUMBER = "number"
PARAM = "placeholder"
PUNCT = "punctuation"
END = "end"

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")
_PARAM = re.compile(r"\$([A-Za-z0-9_]*)")
_OPERATORS = ("!=", "<=", ">=", "=", "<", ">")
_PUNCTUATION = ".(),|"
_WHITESPACE = " \t\r\n"
_QUOTES = "\"'"


@dataclass(frozen=True)
class Token:
    """One token: its kind, its value (string contents unescaped) and its text as written."""

    kind: str
    value: str
    column: int
    text: str

    def describe(self) -> str:
        """How an error message names this token."""
        if self.kind == END:
            return "the end of the expression"
        return repr(self.text) if len(self.text) <= 40 else repr(self.text[:37] + "...")


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens, ending with one :data:`END` token.

    Raises:
        FilterError: an unterminated string, a ``$`` without a name, a lone ``!`` or any character
            outside the language.
    """
    return list(iter_tokens(text))


def iter_tokens(text: str) -> Iterator[Token]:
    """The tokens of ``text`` one at a time, so that a parser reports a misplaced token before a
    lexical error further right; the last token is :data:`END`."""
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _WHITESPACE:
            i += 1
            continue
        column = i + 1
        if ch in _QUOTES:
            value, end = _string(text, i)
            yield Token(STRING, value, column, text[i:end])
            i = end
            continue
        if ch == "$":
            m = _PARAM.match(text, i)
            if not m.group(1):
                raise FilterError("'$' must be followed by a parameter name", text, column,
                                  ("a name of letters, digits and _ such as $GENRE",))
            yield Token(PARAM, m.group(1), column, m.group(0))
            i = m.end()
            continue
        m = _IDENT.match(text, i)
        if m:
            yield Token(IDENT, m.group(0), column, m.group(0))
            i = m.end()
            continue
        m = _NUMBER.match(text, i)
        if m:
            if not math.isfinite(float(m.group(0))):
                raise FilterError(f"number {m.group(0)} is out of range", text, column)
            yield Token(NUMBER, m.group(0), column, m.group(0))
            i = m.end()
            continue
        op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
        if op:
            yield Token(PUNCT, op, column, op)
            i += len(op)
            continue
        if ch in _PUNCTUATION:
            yield Token(PUNCT, ch, column, ch)
            i += 1
            continue
        if ch == "!":
            raise FilterError("'!' must be part of '!='", text, column, ("!=",))
        shown = ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
        raise FilterError(f"unexpected character {shown!r}", text, column)
    yield Token(END, "", n + 1, "")


def _string(text: str, start: int) -> tuple[str, int]:
    """The unescaped contents of the string opening at ``start`` and the index after it."""
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if ch == quote:
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise FilterError("unterminated string", text, start + 1, (f"a closing {quote}",))
