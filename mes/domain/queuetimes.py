"""Queue-time limits: how long a lot may wait between two steps of its flow (from the
track-out of one to the track-in of the other), with a warning before. Pure.

A lot past a limit goes on hold at its next track-in of the later step, and at once when a
line controller notices; an engineer then decides rework or release. The limits are in the
flow files with their origin (docs/flow-files.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from flows import Flow
from flows.model import QueueTime
from mes.domain.model import Lot, LotHead
from mes.domain.text import utc_stamp


@dataclass(frozen=True, slots=True)
class QueueWait:
    """A lot's wait against one queue-time limit."""

    limit: QueueTime
    since: datetime
    """When the lot was tracked out of the limit's first step."""
    waited_min: float

    @property
    def expired(self) -> bool:
        return self.waited_min > self.limit.max_minutes

    @property
    def warned(self) -> bool:
        warn = self.limit.warn_minutes
        return warn is not None and self.waited_min > warn and not self.expired

    def text(self) -> str:
        q = self.limit
        return (
            f"queue time {q.from_step} -> {q.to_step}: waited {self.waited_min:.0f} min since "
            f"{utc_stamp(self.since, seconds=True)}, max {q.max_minutes:g} min"
            + (f" (warning after {q.warn_minutes:g} min)" if q.warn_minutes is not None else "")
            + f" ({q.origin})"
        )


def limits_before(flow: Flow, lot: Lot | LotHead, steps: Sequence[str]) -> list[QueueTime]:
    """The limits that run now for a lot about to start one of ``steps``: their first step is
    the last of the two the lot completed (it has not run the later step since)."""
    found = []
    for q in flow.queue_times:
        if q.to_step not in steps or q.from_step not in lot.path:
            continue
        last_from = len(lot.path) - 1 - lot.path[::-1].index(q.from_step)
        if q.to_step not in lot.path[last_from + 1 :]:
            found.append(q)
    return found


def waits(
    limits: Sequence[QueueTime], track_outs: Mapping[str, datetime], now: datetime
) -> list[QueueWait]:
    """The lot's wait against each limit, from ``track_outs``: when it was last tracked out
    of each limit's first step (:func:`first_steps`; the store reads them). A limit whose
    first step has no track-out is left out."""
    out = []
    for q in limits:
        since = track_outs.get(q.from_step)
        if since is not None:
            out.append(QueueWait(q, since, (now - since).total_seconds() / 60.0))
    return out


def first_steps(limits: Sequence[QueueTime]) -> list[str]:
    """The steps whose last track-out ``limits`` count from."""
    return [q.from_step for q in limits]
