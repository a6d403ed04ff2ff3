"""Queue-time limits: how long a lot may wait between two steps of its flow (from the
track-out of one to the track-in of the other), with a warning before. Pure.

A lot past a limit goes on hold at its next track-in of the later step, and at once when a
line controller notices; an engineer then decides rework or release. A release of that hold
is the engineer's word for the wait so far: the wait counts again from the release (held
again only once it is past the limit anew). A lot split off counts from its parent's
track-out (until it leaves the step itself); a merge keeps the target's clock, so a lot may
not be merged into one that waited less. The limits are in the flow files with their origin
(docs/flow-files.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from flows import Flow
from flows.model import QueueTime
from mes.domain.model import HoldSource, Lot, LotHead
from mes.domain.text import utc_stamp


@dataclass(frozen=True, slots=True)
class QueueWait:
    """A lot's wait against one queue-time limit."""

    limit: QueueTime
    since: datetime
    """When the lot was tracked out of the limit's first step, or when a queue-time hold
    of it was released since (``released``)."""
    waited_min: float
    released: bool = False

    @property
    def expired(self) -> bool:
        return self.waited_min > self.limit.max_minutes

    @property
    def warned(self) -> bool:
        warn = self.limit.warn_minutes
        return warn is not None and self.waited_min > warn and not self.expired

    def text(self) -> str:
        q = self.limit
        since = "its queue-time hold was released at " if self.released else ""
        return (
            f"queue time {q.from_step} -> {q.to_step}: waited {minutes(self.waited_min)} min "
            f"since {since}{utc_stamp(self.since, seconds=True)}, max {q.max_minutes:g} min"
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


def minutes(waited: float) -> str:
    """Minutes waited as a person reads them: whole past 10, else to a tenth (a hold at
    65 s of a 1-minute limit says 1.1, not 1)."""
    return f"{waited:.0f}" if waited >= 10 else f"{waited:.1f}"


def waits(
    limits: Sequence[QueueTime],
    track_outs: Mapping[str, datetime],
    now: datetime,
    released: datetime | None = None,
) -> list[QueueWait]:
    """The lot's wait against each limit, from ``track_outs``: when it was last tracked out
    of each limit's first step (:func:`first_steps`; the store reads them), or from
    ``released``, when a queue-time hold of it was last released, if that came later. A
    limit whose first step has no track-out is left out."""
    out = []
    for q in limits:
        since = track_outs.get(q.from_step)
        if since is None:
            continue
        restarted = released is not None and released > since
        if restarted:
            assert released is not None
            since = released
        out.append(QueueWait(q, since, (now - since).total_seconds() / 60.0, restarted))
    return out


def queue_released(releases: Iterable[Mapping[str, object]]) -> datetime | None:
    """When the last of a lot's ``releases`` (in order, each its ``at`` and ``data``) that
    released a queue-time hold was made; None: no such release."""
    last: datetime | None = None
    for r in releases:
        data, at = r["data"], r["at"]
        if isinstance(data, Mapping) and data.get("held_source") == HoldSource.QUEUE_TIME.value:
            assert isinstance(at, datetime)
            last = at
    return last


def longer_waits(
    merged: Sequence[QueueWait], into: Sequence[QueueWait]
) -> list[tuple[QueueWait, QueueWait]]:
    """The limits on which a lot to be merged (``merged``) has waited longer than the lot
    it goes into (``into``), whose clock the merged lot keeps: each pair (merged's, into's)."""
    theirs = {(w.limit.from_step, w.limit.to_step): w for w in into}
    return [
        (w, theirs[key])
        for w in merged
        if (key := (w.limit.from_step, w.limit.to_step)) in theirs and w.since < theirs[key].since
    ]


def first_steps(limits: Sequence[QueueTime]) -> list[str]:
    """The steps whose last track-out ``limits`` count from."""
    return [q.from_step for q in limits]


def longer_wait_text(child: str, target: str, longer: Sequence[tuple[QueueWait, QueueWait]]) -> str:
    """Why ``child`` may not be merged into ``target`` (:func:`longer_waits`), and what to do."""
    waits = "; ".join(
        f"queue time {c.limit.from_step} -> {c.limit.to_step}: {child} since "
        f"{utc_stamp(c.since, seconds=True)}, {target} since {utc_stamp(t.since, seconds=True)}"
        for c, t in longer
    )
    return (
        f"lot {child} cannot be merged into {target}: it has waited longer ({waits}) and the "
        f"merged lot keeps {target}'s clock; expected a merge into the lot that waited longest "
        f"(pkgline lot merge {target} --into {child})"
    )
