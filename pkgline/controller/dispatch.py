"""Which waiting lot an idle tool runs next. Pure.

Each waiting lot takes the first of its allowed steps in flow order (one deterministic route:
an optional process step is a product choice, not something skipped because its tool is
busy). Among the lots whose next step a tool may run, the most urgent goes first: priority
(1 most urgent), then the oldest, then the lot id.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass

from mes.domain.model import Lot, LotHead


def rank(lot: Lot | LotHead) -> tuple[int, float, str]:
    """How urgent a lot is: the lowest goes first."""
    return (lot.priority, lot.created_at.timestamp(), lot.id)


@dataclass(frozen=True, slots=True)
class Candidate:
    lot: LotHead
    step: str

    @property
    def rank(self) -> tuple[int, float, str]:
        return rank(self.lot)


def next_step_of(lot: LotHead, in_flow_order: tuple[str, ...]) -> Candidate | None:
    return Candidate(lot, in_flow_order[0]) if in_flow_order else None


def choose(candidates: Iterable[Candidate], steps: Collection[str]) -> Candidate | None:
    """The most urgent candidate whose step is one of ``steps``."""
    fitting = [c for c in candidates if c.step in steps]
    return min(fitting, key=lambda c: c.rank) if fitting else None


class Pool:
    """The candidates of one dispatch pass, by step, each step's most urgent first, so that an
    idle tool's pick (:meth:`best`, as :func:`choose` over the pool) looks at the head of each
    of its steps only: a scan of every waiting lot for every idle tool cost a line of 500 tools
    and as many lots a quarter of a million comparisons a pass, tens of milliseconds in which
    no tool's completion was served. A candidate leaves the pool when taken (:meth:`take`)
    and may come back (:meth:`add`: a track-in an interlock refused, for another tool)."""

    def __init__(self, candidates: Iterable[Candidate] = ()) -> None:
        self._by_step: dict[str, list[tuple[tuple[int, float, str], Candidate]]] = {}
        self._size = 0
        for candidate in candidates:
            self.add(candidate)

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[Candidate]:
        """The candidates left, in no particular order."""
        return (candidate for heap in self._by_step.values() for _, candidate in heap)

    def add(self, candidate: Candidate) -> None:
        heapq.heappush(self._by_step.setdefault(candidate.step, []), (candidate.rank, candidate))
        self._size += 1

    def best(self, steps: Collection[str]) -> Candidate | None:
        """The most urgent candidate whose step is one of ``steps`` (None: none)."""
        heads = [heap[0] for step in steps if (heap := self._by_step.get(step))]
        return min(heads, key=lambda head: head[0])[1] if heads else None

    def take(self, candidate: Candidate) -> None:
        """Take ``candidate``, which :meth:`best` gave, out of the pool."""
        heap = self._by_step[candidate.step]
        if heap[0][1] is not candidate:
            raise ValueError(f"lot {candidate.lot.id} is not the first of {candidate.step}")
        heapq.heappop(heap)
        self._size -= 1


def keeps_tool(
    finishing: Lot, steps_after: tuple[str, ...], pick: Candidate, steps: Collection[str]
) -> bool:
    """A tool is offered for its next lot while the results of its ``finishing`` lot's step
    are recorded, before that lot waits again. It waits for that lot instead of taking
    ``pick`` when the lot would be the tool's choice once it waits: its next step
    (``steps_after``, in flow order: the first is the one it takes) is one of the tool's
    ``steps``, and it is more urgent than ``pick``."""
    return (
        bool(steps_after)
        and steps_after[0] in steps
        and pick.lot.id != finishing.id
        and rank(finishing) < pick.rank
    )
