"""A tool's state as its line controller last reported it: what ``tools`` rows hold beside the
tool's record (:mod:`mes.domain.equipment`), and what a running lot's report shows of its
tool, and a line controller's refused track-in of a lot, which a waiting lot's report shows.
Apart from the records so that reading a lot's report (``lot show`` in direct mode,
:mod:`pkgline.direct_reads`) loads these two classes and not the records, their E10 history and
resets. Pure values, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class ToolSnapshot:
    """What the controller knows of a tool now."""

    connected: bool
    e10: str
    process_state: str | None = None
    mode: str | None = None
    alarm: Mapping[str, Any] | None = None
    job_id: str | None = None
    lot_id: str | None = None
    sites_done: int = 0
    sites_total: int = 0
    reason: str | None = None
    """Why the state is what it is, when that is not obvious (e.g. the connection error)."""


@dataclass(frozen=True, slots=True)
class TrackInRefusal:
    """A line controller's latest refused track-in of ``lot`` on ``tool``: the step offered,
    which check refused it (``interlock``: an interlock's name, ``tool_qualification``,
    ``durable`` ..., or the refusal's kind) and its own message, which says what was
    expected; ``since``: when the controller was first refused so (the same refusal at every
    dispatch pass after keeps it)."""

    tool: str
    lot: str
    step: str
    interlock: str
    reason: str
    since: datetime

    def to_dict(self) -> dict[str, str]:
        return {
            "tool": self.tool,
            "lot": self.lot,
            "step": self.step,
            "interlock": self.interlock,
            "reason": self.reason,
            "since": self.since.isoformat(),
        }

    @staticmethod
    def from_dict(d: Mapping[str, str]) -> TrackInRefusal:
        return TrackInRefusal(
            tool=d["tool"],
            lot=d["lot"],
            step=d["step"],
            interlock=d["interlock"],
            reason=d["reason"],
            since=datetime.fromisoformat(d["since"]),
        )
