"""The flow notation of flows.md: tokenizer, recursive-descent parser and syntax tree.

::

    expression := sequence ('|' sequence)*
    sequence   := item+
    item       := NAME                        a step code or a fragment name
                | '[' expression ']'          optional
                | '(' expression ')'          exactly one of the alternatives
                | '{' expression '}' 'x' count    repeated exactly count times
    count      := INT | NAME ['-' INT] | '(' count ')'   e.g. 3, layers, (layers - 1)

The parser knows no step codes: every name comes out as a :class:`Name`. The loader resolves
names into :class:`Step` and :class:`Group` (a fragment) and reports unknown ones. Errors are
:class:`SequenceError` with the 1-based column in the sequence text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field


class SequenceError(ValueError):
    """The sequence text is not valid notation; ``column`` is 1-based."""

    def __init__(self, column: int, message: str):
        self.column = column
        self.message = message
        super().__init__(f"column {column}: {message}")


@dataclass(frozen=True, slots=True)
class Count:
    """A repeat count: ``value`` alone, or the lot parameter ``param`` minus ``value``."""

    param: str | None
    value: int = 0

    def evaluate(self, params: Mapping[str, int]) -> int:
        if self.param is None:
            return self.value
        return params[self.param] - self.value

    def __str__(self) -> str:
        if self.param is None:
            return str(self.value)
        if self.value == 0:
            return self.param
        return f"({self.param} - {self.value})"


@dataclass(frozen=True, slots=True)
class Name:
    """An unresolved name: a step code or a fragment (the loader decides)."""

    name: str
    column: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Step:
    code: str


@dataclass(frozen=True, slots=True)
class Seq:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Alt:
    options: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Opt:
    body: Expr


@dataclass(frozen=True, slots=True)
class Repeat:
    body: Expr
    count: Count


@dataclass(frozen=True, slots=True)
class Group:
    """A fragment in place. A wiring-layer group counts as one wiring layer of the lot."""

    name: str
    body: Expr
    wiring_layer: bool = False


Expr = Name | Step | Seq | Alt | Opt | Repeat | Group

_TOKEN = re.compile(
    r"(?P<space>\s+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<int>[0-9]+)|(?P<punct>[\[\](){}|-])"
)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "name", "int", "punct" or "end"
    text: str
    column: int

    def shown(self) -> str:
        return "the end of the text" if self.kind == "end" else repr(self.text)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise SequenceError(pos + 1, f"unexpected character {text[pos]!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            tokens.append(_Token(kind, match.group(), pos + 1))
        pos = match.end()
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


_CLOSING = {"[": "]", "(": ")", "{": "}"}


class _Parser:
    def __init__(self, text: str):
        self.tokens = _tokenize(text)
        self.pos = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def at(self, text: str) -> bool:
        return self.token.kind == "punct" and self.token.text == text

    def parse(self) -> Expr:
        if self.token.kind == "end":
            raise SequenceError(1, "the sequence is empty; expected step codes and fragments")
        expr = self.expression()
        if self.token.kind != "end":
            raise SequenceError(
                self.token.column,
                f"unexpected {self.token.shown()}; expected a step code, a fragment, '|' or "
                "the end of the sequence",
            )
        return expr

    def expression(self) -> Expr:
        options = [self.sequence()]
        while self.at("|"):
            self.take()
            options.append(self.sequence())
        return options[0] if len(options) == 1 else Alt(tuple(options))

    def sequence(self) -> Expr:
        items = [self.item()]
        while self.token.kind == "name" or (
            self.token.kind == "punct" and self.token.text in _CLOSING
        ):
            items.append(self.item())
        return items[0] if len(items) == 1 else Seq(tuple(items))

    def item(self) -> Expr:
        token = self.token
        if token.kind == "name":
            self.take()
            return Name(token.text, token.column)
        if token.kind == "punct" and token.text in _CLOSING:
            self.take()
            body = self.expression()
            self.close(token)
            if token.text == "[":
                return Opt(body)
            if token.text == "(":
                return body
            return Repeat(body, self.repeat_count())
        raise SequenceError(
            token.column,
            f"expected a step code, a fragment, '[', '(' or '{{', found {token.shown()}",
        )

    def close(self, opening: _Token) -> None:
        closing = _CLOSING[opening.text]
        if not self.at(closing):
            raise SequenceError(
                self.token.column,
                f"expected {closing!r} to close the {opening.text!r} at column "
                f"{opening.column}, found {self.token.shown()}",
            )
        self.take()

    def repeat_count(self) -> Count:
        token = self.token
        if token.kind != "name" or token.text != "x":
            raise SequenceError(
                token.column,
                f"expected 'x' and a repeat count after '}}' (as in '{{ LAYER }} x layers'), "
                f"found {token.shown()}",
            )
        self.take()
        return self.count()

    def count(self) -> Count:
        token = self.take()
        if token.kind == "int":
            return Count(None, int(token.text))
        if token.kind == "name":
            if self.at("-"):
                self.take()
                number = self.take()
                if number.kind != "int":
                    raise SequenceError(
                        number.column,
                        f"expected a whole number after '-', found {number.shown()}",
                    )
                return Count(token.text, int(number.text))
            return Count(token.text, 0)
        if token.kind == "punct" and token.text == "(":
            inner = self.count()
            self.close(token)
            return inner
        raise SequenceError(
            token.column,
            "expected a repeat count: a whole number, a lot parameter name or "
            f"'(name - number)', found {token.shown()}",
        )


def parse(text: str) -> Expr:
    """Parse a sequence in the notation of flows.md into a syntax tree of :class:`Name`s."""
    return _Parser(text).parse()


def names(expr: Expr) -> list[Name]:
    """Every :class:`Name` in ``expr``, left to right."""
    if isinstance(expr, Name):
        return [expr]
    if isinstance(expr, Step):
        return []
    if isinstance(expr, Seq):
        return [n for item in expr.items for n in names(item)]
    if isinstance(expr, Alt):
        return [n for option in expr.options for n in names(option)]
    return names(expr.body)


def counts(expr: Expr) -> list[Count]:
    """Every repeat count in ``expr``, left to right."""
    if isinstance(expr, Name | Step):
        return []
    if isinstance(expr, Seq):
        return [c for item in expr.items for c in counts(item)]
    if isinstance(expr, Alt):
        return [c for option in expr.options for c in counts(option)]
    if isinstance(expr, Repeat):
        return [expr.count, *counts(expr.body)]
    return counts(expr.body)


def step_codes(expr: Expr) -> list[str]:
    """Every resolved step code in ``expr``, left to right (with repeats)."""
    if isinstance(expr, Step):
        return [expr.code]
    if isinstance(expr, Name):
        return []
    if isinstance(expr, Seq):
        return [c for item in expr.items for c in step_codes(item)]
    if isinstance(expr, Alt):
        return [c for option in expr.options for c in step_codes(option)]
    return step_codes(expr.body)
