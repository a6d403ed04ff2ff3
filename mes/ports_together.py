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

from collections.abc import Generator, Iterable, Sequence
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


# -- reads asked ahead ---------------------------------------------------------------------


def asked_with(first: _Work[A], reads: Sequence[Any]) -> _Work[tuple[A, dict[Any, Any]]]:
    """``first`` with ``reads`` (requests that do not depend on what it reads) asked side by
    side with its first round: what ``first`` returned, and each read's answer by its request,
    for :func:`served` to give to the work that asks them next. A lot's operation reads the
    lot, then its rule reads what it decides by (a track-in's interlocks read the tool it
    names): asked with the lot, what the command alone says it will read costs PostgreSQL no
    round trip of its own. The answers are read in the same transaction as the lot, before
    it (in the same statement on PostgreSQL), so they are what the rule would have read."""
    if not reads:
        return (yield from first), {}
    unique = tuple(dict.fromkeys(reads))
    result, answers = yield from together(first, each_together(_ask(r) for r in unique))
    return result, dict(zip(unique, answers, strict=True))


def _ask(request: Any) -> _Work[Any]:
    return (yield request)


def served(work: _Work[A], answers: dict[Any, Any]) -> _Work[A]:
    """``work`` with the requests of its first round that ``answers`` holds (read by
    :func:`asked_with` just before it, in the same transaction, nothing written since)
    answered from there, each answer given once; the rest of that round, and every later
    round, asked of the store. Only the first round: an answer read ahead is not kept past
    anything the work asks after it (a write among it)."""
    if not answers:
        return (yield from work)
    try:
        try:
            request = work.send(None)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        kinds = {type(r) for r in answers}
        taken = [0]
        asked, build = _split(request, answers, kinds, taken)
        if not taken[0]:
            answer = yield request
        elif not asked:
            answer = build(iter(()))
        elif len(asked) == 1:
            answer = build(iter(((yield asked[0]),)))
        else:
            answer = build(iter((yield Together(tuple(asked)))))
        while True:
            try:
                request = work.send(answer)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            answer = yield request
    finally:
        work.close()


def _split(
    request: Any, answers: dict[Any, Any], kinds: set[type], taken: list[int]
) -> tuple[list[Any], Any]:
    """The requests of ``request`` (a Together's, at any depth) that ``answers`` does not
    hold, and a function from an iterator of their answers to ``request``'s answer."""
    if isinstance(request, Together):
        parts = [_split(r, answers, kinds, taken) for r in request.requests]
        return [a for asked, _ in parts for a in asked], lambda found: tuple(
            build(found) for _, build in parts
        )
    if type(request) in kinds and request in answers:
        answer = answers.pop(request)
        taken[0] += 1
        return [], lambda found: answer
    return [request], next
