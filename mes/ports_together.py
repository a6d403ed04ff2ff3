"""Reads side by side: several pieces of a transaction's work whose requests do not depend on
one another, asked of the store together (:class:`Together`), so that a store that pays a
round trip per statement (PostgreSQL) pays one for all of them.

A track-in's interlocks read the tool, its qualifications, its durables, its material lots
and the lot's last track-outs; none needs another's answer. Written one after the other they
cost PostgreSQL five round trips; side by side, one (:mod:`mes.adapters.combined`). The answers
are the same either way, and so is the order in which the pieces decide: each piece gets its
answers, and goes on, in the order given, so the first piece's refusal is still the one
raised (docs/architecture.md, "Reads side by side").
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")
D = TypeVar("D")
E = TypeVar("E")

_Work = Generator[Any, Any, A]


@dataclass(frozen=True, slots=True)
class Together:
    """Answer each of ``requests`` (:data:`mes.ports.Request`, a Together among them), as if
    asked one after the other (answer: a tuple, one answer per request, in their order). Its
    pieces must not depend on one another: a store may run their statements in any order,
    reads in one round trip."""

    requests: tuple[Any, ...]


@overload
def together(a: _Work[A], /) -> _Work[tuple[A]]: ...
@overload
def together(a: _Work[A], b: _Work[B], /) -> _Work[tuple[A, B]]: ...
@overload
def together(a: _Work[A], b: _Work[B], c: _Work[C], /) -> _Work[tuple[A, B, C]]: ...
@overload
def together(a: _Work[A], b: _Work[B], c: _Work[C], d: _Work[D], /) -> _Work[tuple[A, B, C, D]]: ...
@overload
def together(
    a: _Work[A], b: _Work[B], c: _Work[C], d: _Work[D], e: _Work[E], /
) -> _Work[tuple[A, B, C, D, E]]: ...
def together(*works: _Work[Any]) -> _Work[tuple[Any, ...]]:
    """Run ``works`` (each a :data:`mes.ports.Work`) side by side, and return what each
    returned. Each round, the next request of every piece still running goes to the store as
    one :class:`Together` (a round of one, as itself); each piece then gets its answer and
    runs on to its next request, in the order given. A piece that raises ends them all: the
    others are closed, as a transaction that raises is."""
    return _side_by_side(works)


def each_together(works: Iterable[_Work[A]]) -> _Work[list[A]]:
    """:func:`together` for any number of pieces of one kind (a dispatch pass's lots): what
    each returned, in their order."""
    return list((yield from _side_by_side(tuple(works))))


def _side_by_side(works: tuple[_Work[Any], ...]) -> _Work[tuple[Any, ...]]:
    results: list[Any] = [None] * len(works)
    asked: dict[int, Any] = {}
    try:
        for i in range(len(works)):
            _advance(works, i, None, asked, results)
        while asked:
            order = list(asked)
            if len(order) == 1:
                answers: tuple[Any, ...] = ((yield asked[order[0]]),)
            else:
                answers = yield Together(tuple(asked[i] for i in order))
            asked = {}
            for i, answer in zip(order, answers, strict=True):
                _advance(works, i, answer, asked, results)
    finally:
        for work in works:
            work.close()
    return tuple(results)


def _advance(
    works: tuple[_Work[Any], ...],
    i: int,
    answer: Any,
    asked: dict[int, Any],
    results: list[Any],
) -> None:
    try:
        asked[i] = works[i].send(answer)
    except StopIteration as done:
        results[i] = done.value


def nothing(value: A) -> _Work[A]:
    """A piece that asks nothing and returns ``value`` (for a read that a case does not
    need, in a :func:`together`)."""
    yield from ()
    return value
