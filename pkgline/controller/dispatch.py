"""Which waiting lot an idle tool runs next. Pure.

Each waiting lot takes the first of its allowed steps in flow order (one deterministic route:
an optional process step is a product choice, not something skipped because its tool is
busy). Among the lots whose next step a tool may run, the most urgent goes first: priority
(1 most urgent), then the oldest, then the lot id.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from mes.domain.model import LotHead


@dataclass(frozen=True, slots=True)
class Candidate:
    lot: LotHead
    step: str

    @property
    def rank(self) -> tuple[int, float, str]:
        return (self.lot.priority, self.lot.created_at.timestamp(), self.lot.id)


def next_step_of(lot: LotHead, in_flow_order: tuple[str, ...]) -> Candidate | None:
    return Candidate(lot, in_flow_order[0]) if in_flow_order else None


def choose(candidates: Iterable[Candidate], steps: Collection[str]) -> Candidate | None:
    """The most urgent candidate whose step is one of ``steps``."""
    fitting = [c for c in candidates if c.step in steps]
    return min(fitting, key=lambda c: c.rank) if fitting else None
