"""Recursive-descent parser: filter text -> :class:`batchrec.filters.nodes.Filter`.

Grammar (keywords and dataset/target names match case-insensitively)::

    filter     := expression ("|" expression)* END
    expression := ("INCLUDE" | "EXCLUDE") target "WHERE" or_expr ["IF" condition ("AND" condition)*]
    target     := "ItemID" | "UserID" | "ActionID"
    or_expr    := and_expr ("OR" and_expr)*
    and_expr   := condition ("AND" condition)*
    condition  := IDENT "." IDENT (set_op set_value | comparison cmp_value)
    set_op     := "IN" | "NOT" "IN"
    set_value  := "(" literal ("," literal)* ")" | "(" PARAM ")" | "(" ref ")" | ref
    comparison := "=" | "!=" | "<" | "<=" | ">" | ">="
    cmp_value  := NUMBER | PARAM | ref | "(" (NUMBER | PARAM | ref) ")"
    literal    := STRING | NUMBER
    ref        := IDENT "." IDENT                      (CurrentItem.FIELD)

Only the syntax is checked here; which datasets, fields and placeholders may appear where is
:mod:`batchrec.filters.check`'s job. Every syntax error names its column and the tokens that would
have been accepted.
"""

from __future__ import annotations

from typing import Optional

from batchrec.filters import nodes as N
from batchrec.filters.errors import FilterError
from batchrec.filters.lexer import END, IDENT, NUMBER, PARAM, PUNCT, STRING, Token, iter_tokens

# Personalize's CreateFilter accepts expressions of at most 2500 characters.
MAX_EXPRESSION_LENGTH = 2500

_WHERE, _IF, _AND, _OR, _NOT, _IN = "WHERE", "IF", "AND", "OR", "NOT", "IN"
_FIELD_FORM = "Dataset.FIELD (e.g. Items.GENRE)"
_SET_VALUE_FORMS = ('("value", ...)', "($PARAMETER)", "CurrentItem.FIELD")
_CMP_VALUE_FORMS = ("a number", "$PARAMETER", "CurrentItem.FIELD")
_END = "the end of the expression"
_AFTER_CONDITION = ("AND", "OR", "IF", "'|'", _END)
_AFTER_IF = ("AND", "'|'", _END)


def parse_filter(text: str) -> N.Filter:
    """Parse a whole filter expression.

    Raises:
        FilterError: the text is empty, longer than 2500 characters, or not in the grammar above;
            the error carries the column and the expected tokens.
    """
    if not isinstance(text, str):
        raise FilterError(f"expected the expression as text, got {type(text).__name__}")
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise FilterError(f"the expression has {len(text)} characters; Personalize allows at most "
                          f"{MAX_EXPRESSION_LENGTH}", text, MAX_EXPRESSION_LENGTH + 1)
    return _Parser(text).filter()


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.stream = iter_tokens(text)
        self.tokens = [next(self.stream)]
        self.i = 0
        self.after = _AFTER_CONDITION  # what may follow the expression parsed last

    # --- token helpers -----------------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        """Consume the current token; the next one is read only now (lexical errors come late)."""
        tok = self.tok
        if tok.kind != END:
            self.tokens.append(next(self.stream))
            self.i += 1
        return tok

    def is_keyword(self, word: str, tok: Optional[Token] = None) -> bool:
        tok = tok or self.tok
        return tok.kind == IDENT and tok.value.upper() == word

    def is_punct(self, symbol: str, tok: Optional[Token] = None) -> bool:
        tok = tok or self.tok
        return tok.kind == PUNCT and tok.value == symbol

    def fail(self, expected, reason: Optional[str] = None, tok: Optional[Token] = None):
        tok = tok or self.tok
        raise FilterError(reason or f"found {tok.describe()}", self.text, tok.column, expected)

    def expect_punct(self, symbol: str) -> Token:
        if not self.is_punct(symbol):
            self.fail((f"'{symbol}'",))
        return self.advance()

    def expect_ident(self, what: str) -> Token:
        if self.tok.kind != IDENT:
            self.fail((what,))
        return self.advance()

    # --- grammar -----------------------------------------------------------------------------

    def filter(self) -> N.Filter:
        if self.tok.kind == END:
            self.fail(("INCLUDE", "EXCLUDE"), "the expression is empty")
        expressions = [self.expression()]
        while self.is_punct("|"):
            self.advance()
            expressions.append(self.expression())
        if self.tok.kind != END:
            self.fail(self.after)
        return N.Filter(tuple(expressions), self.text)

    def expression(self) -> N.Expression:
        start = self.tok
        if not (self.is_keyword(N.INCLUDE) or self.is_keyword(N.EXCLUDE)):
            self.fail(("INCLUDE", "EXCLUDE"))
        action = self.advance().value.upper()
        target_tok = self.tok
        target = next((t for t in N.TARGETS if self.is_keyword(t.upper())), None)
        if target is None:
            self.fail(N.TARGETS)
        self.advance()
        if not self.is_keyword(_WHERE):
            self.fail(("WHERE",))
        self.advance()
        where = self.or_expr()
        self.after = _AFTER_CONDITION
        when: list[N.Condition] = []
        if self.is_keyword(_IF):
            self.advance()
            when.append(self.condition())
            while self.is_keyword(_AND):
                self.advance()
                when.append(self.condition())
            self.after = _AFTER_IF
            if self.is_keyword(_OR):
                self.fail(_AFTER_IF, "an IF condition can only be extended with AND")
        end = self.tok.column - 1
        return N.Expression(action, target, where, tuple(when), start.column,
                            self.text[start.column - 1:end].strip(), target_tok.column)

    def or_expr(self) -> N.Node:
        parts = [self.and_expr()]
        while self.is_keyword(_OR):
            self.advance()
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else N.Or(tuple(parts))

    def and_expr(self) -> N.Node:
        parts: list[N.Node] = [self.condition()]
        while self.is_keyword(_AND):
            self.advance()
            parts.append(self.condition())
        return parts[0] if len(parts) == 1 else N.And(tuple(parts))

    def condition(self) -> N.Condition:
        field = self.field_ref()
        op_tok = self.tok
        if self.is_keyword(_IN):
            self.advance()
            return N.Condition(field, N.IN, self.set_value(), op_tok.column)
        if self.is_keyword(_NOT):
            self.advance()
            if not self.is_keyword(_IN):
                self.fail(("IN",))
            self.advance()
            return N.Condition(field, N.NOT_IN, self.set_value(), op_tok.column)
        if op_tok.kind == PUNCT and op_tok.value in N.COMPARISONS:
            self.advance()
            return N.Condition(field, op_tok.value, (self.cmp_value(),), op_tok.column)
        self.fail(N.OPERATORS)

    def field_ref(self) -> N.FieldRef:
        if self.tok.kind != IDENT:
            self.fail((_FIELD_FORM,))
        dataset = self.advance()
        if not self.is_punct("."):
            self.fail(("'.' and a field name",))
        self.advance()
        field = self.expect_ident("a field name")
        return N.FieldRef(dataset.value, field.value, dataset.column, field.column)

    def field_value(self) -> N.FieldValue:
        ref = self.field_ref()
        return N.FieldValue(ref.dataset, ref.field, ref.column, ref.field_column)

    def set_value(self) -> tuple[N.Value, ...]:
        if self.tok.kind == IDENT:
            return (self.field_value(),)
        if not self.is_punct("("):
            self.fail(_SET_VALUE_FORMS)
        self.advance()
        if self.tok.kind == PARAM:
            values: tuple[N.Value, ...] = (N.Placeholder(self.tok.value, self.tok.column),)
            self.advance()
        elif self.tok.kind == IDENT:
            values = (self.field_value(),)
        else:
            values = (self.literal(),)
            while self.is_punct(","):
                self.advance()
                values += (self.literal(),)
        if not self.is_punct(")"):
            self.fail(("','", "')'") if isinstance(values[-1], N.Literal) else ("')'",))
        self.advance()
        return values

    def literal(self) -> N.Literal:
        tok = self.tok
        if tok.kind == STRING:
            self.advance()
            return N.Literal(tok.value, tok.column)
        if tok.kind == NUMBER:
            self.advance()
            return N.Literal(tok.value, tok.column, float(tok.value))
        self.fail(('a quoted string such as "value"', "a number"))

    def cmp_value(self) -> N.Value:
        if self.is_punct("("):
            self.advance()
            value = self.cmp_value_inner()
            self.expect_punct(")")
            return value
        return self.cmp_value_inner()

    def cmp_value_inner(self) -> N.Value:
        tok = self.tok
        if tok.kind == NUMBER:
            self.advance()
            return N.Literal(tok.value, tok.column, float(tok.value))
        if tok.kind == PARAM:
            self.advance()
            return N.Placeholder(tok.value, tok.column)
        if tok.kind == IDENT:
            return self.field_value()
        if tok.kind == STRING:
            self.fail(_CMP_VALUE_FORMS, f"found the string {tok.describe()}: comparison operators "
                      "take numbers; use IN (\"...\") to match strings")
        self.fail(_CMP_VALUE_FORMS)
