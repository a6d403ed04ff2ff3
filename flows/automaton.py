"""A resolved flow expression compiled into a Glushkov position automaton, and path simulation.

Repeats are expanded for the lot's counts (``{ LAYER } x layers`` with layers = 3 is three
copies of LAYER), so every step occurrence of the expanded expression is one *position*. The
automaton is the classic construction: ``first`` (positions that can start a path), ``last``
(positions that can end one), ``follow[p]`` (positions that can come right after ``p``) and
``nullable`` (the empty path is complete). It has no epsilon moves; a path is simulated as the
set of positions it can be at, so alternatives that start with the same step (``SPUTTER
[ELECTROPLATE] | ELECTROPLATE``) need no special care.

Each position also carries the 1-based number of the wiring layer it belongs to (the
wiring-layer group instances numbered in order), or None outside wiring layers. Compiled
automata are cached per (expression, counts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from flows.grammar import Alt, Expr, Group, Name, Opt, Repeat, Seq, Step


@dataclass(frozen=True, slots=True)
class Automaton:
    symbols: tuple[str, ...]
    """The step code of each position."""
    layers: tuple[int | None, ...]
    """The wiring layer of each position (1-based), None outside wiring layers."""
    first: frozenset[int]
    last: frozenset[int]
    follow: tuple[frozenset[int], ...]
    nullable: bool
    layer_count: int
    """How many wiring-layer instances the expanded expression has."""

    def candidates(self, state: frozenset[int] | None) -> frozenset[int]:
        """Positions that may come next; ``state`` None means the path is empty."""
        if state is None:
            return self.first
        result: set[int] = set()
        for p in state:
            result |= self.follow[p]
        return frozenset(result)

    def step(self, state: frozenset[int] | None, code: str) -> frozenset[int]:
        """The positions after taking ``code``; empty when the step is not allowed."""
        return frozenset(p for p in self.candidates(state) if self.symbols[p] == code)

    def allowed(self, state: frozenset[int] | None) -> frozenset[str]:
        return frozenset(self.symbols[p] for p in self.candidates(state))

    def accepts_end(self, state: frozenset[int] | None) -> bool:
        if state is None:
            return self.nullable
        return not self.last.isdisjoint(state)


@dataclass(slots=True)
class _Part:
    first: frozenset[int]
    last: frozenset[int]
    nullable: bool


class _Builder:
    def __init__(self, counts: Mapping[str, int]):
        self.counts = counts
        self.symbols: list[str] = []
        self.layers: list[int | None] = []
        self.follow: list[set[int]] = []
        self.layer_count = 0
        self.current_layer: int | None = None

    def build(self, expr: Expr) -> _Part:
        if isinstance(expr, Step):
            p = len(self.symbols)
            self.symbols.append(expr.code)
            self.layers.append(self.current_layer)
            self.follow.append(set())
            return _Part(frozenset({p}), frozenset({p}), False)
        if isinstance(expr, Seq):
            return self.sequence([self.build(item) for item in expr.items])
        if isinstance(expr, Repeat):
            n = expr.count.evaluate(self.counts)
            if n < 0:
                raise ValueError(
                    f"repeat count {expr.count} is {n}: a group cannot be repeated fewer than "
                    "0 times"
                )
            return self.sequence([self.build(expr.body) for _ in range(n)])
        if isinstance(expr, Alt):
            parts = [self.build(option) for option in expr.options]
            return _Part(
                frozenset().union(*(part.first for part in parts)),
                frozenset().union(*(part.last for part in parts)),
                any(part.nullable for part in parts),
            )
        if isinstance(expr, Opt):
            part = self.build(expr.body)
            return _Part(part.first, part.last, True)
        if isinstance(expr, Group):
            if not expr.wiring_layer:
                return self.build(expr.body)
            outer = self.current_layer
            self.layer_count += 1
            self.current_layer = self.layer_count
            try:
                return self.build(expr.body)
            finally:
                self.current_layer = outer
        assert isinstance(expr, Name)
        raise ValueError(f"unresolved name {expr.name!r} in a flow expression")

    def sequence(self, parts: Sequence[_Part]) -> _Part:
        result = _Part(frozenset(), frozenset(), True)
        for part in parts:
            for p in result.last:
                self.follow[p] |= part.first
            first = result.first | part.first if result.nullable else result.first
            last = part.last | result.last if part.nullable else part.last
            result = _Part(first, last, result.nullable and part.nullable)
        return result


@lru_cache(maxsize=512)
def _compile(expr: Expr, counts: tuple[tuple[str, int], ...]) -> Automaton:
    builder = _Builder(dict(counts))
    part = builder.build(expr)
    return Automaton(
        symbols=tuple(builder.symbols),
        layers=tuple(builder.layers),
        first=part.first,
        last=part.last,
        follow=tuple(frozenset(f) for f in builder.follow),
        nullable=part.nullable,
        layer_count=builder.layer_count,
    )


def compile_expression(expr: Expr, counts: Mapping[str, int]) -> Automaton:
    """The automaton of a resolved expression for these repeat counts (cached).

    Raises ValueError when a count evaluates below zero.
    """
    return _compile(expr, tuple(sorted(counts.items())))
