"""Equipment as the lot tracker records it: the tools a line controller owns, whether they
may be dispatched to, and every change of their SEMI E10 state with its time, so that time in
state and availability can be told over any window. Pure values and functions, no I/O.

E10 states are kept as their names (``productive``, ``standby``, ``engineering``,
``scheduled_down``, ``unscheduled_down``, ``non_scheduled``); the line controller maps what
the tools report onto them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any

E10_STATES = (
    "productive",
    "standby",
    "engineering",
    "scheduled_down",
    "unscheduled_down",
    "non_scheduled",
)
UPTIME_STATES = frozenset({"productive", "standby", "engineering"})
"""SEMI E10 equipment uptime: the tool is in a condition to perform its function."""
UNMONITORED = "unmonitored"
"""Not an E10 state: no line controller followed the tool (it was stopped, or died), so its
state is not known. Left out of every E10 figure."""


class DispatchMode(StrEnum):
    AUTO = "auto"
    """The controller starts waiting lots on the tool by itself."""
    MANUAL = "manual"
    """Only operators start lots on the tool."""


@dataclass(frozen=True, slots=True)
class ToolRegistration:
    """A tool as its controller's configuration describes it."""

    id: str
    equipment_class: str
    address: str
    steps: tuple[str, ...]


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
class ToolRecord:
    id: str
    line: str
    equipment_class: str
    address: str
    steps: tuple[str, ...]
    dispatch: DispatchMode
    snapshot: ToolSnapshot
    e10_since: datetime
    updated_at: datetime
    dispatch_reason: str | None = None
    dispatch_by: str | None = None
    dispatch_at: datetime | None = None


class ToolPart(Enum):
    """The parts of a tool's record that different people change: each update writes one
    part only, so an operator switching a tool to manual and the controller recording its
    state at the same moment do not undo each other."""

    STATE = ("snapshot", "e10_since", "updated_at")
    """What the tool does: its controller's observations."""
    DISPATCH = ("dispatch", "dispatch_reason", "dispatch_by", "dispatch_at")
    """Manual or auto: the operator's."""
    REGISTRATION = ("equipment_class", "address", "steps", "updated_at")
    """What the tool is and where: its controller's configuration."""

    @property
    def fields(self) -> tuple[str, ...]:
        """The :class:`ToolRecord` fields of this part."""
        return self.value  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class E10Change:
    """A tool entered an E10 state at ``at`` (and stayed in it until the next change)."""

    tool_id: str
    at: datetime
    e10: str
    process_state: str | None = None
    connected: bool = True
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ControllerRecord:
    name: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    status: str
    tools: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class StateTimes:
    """Seconds spent in each E10 state over a window, and the E10 figures from them."""

    start: datetime
    end: datetime
    seconds: Mapping[str, float]

    @property
    def total_s(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def known_s(self) -> float:
        """Seconds for which an E10 state is known: not before the tool was first recorded,
        nor while no controller followed it."""
        return sum(self.seconds.get(s, 0.0) for s in E10_STATES)

    @property
    def unmonitored_s(self) -> float:
        return self.seconds.get(UNMONITORED, 0.0)

    @property
    def operations_s(self) -> float:
        """SEMI E10 operations time: recorded time that was not non-scheduled."""
        return self.known_s - self.seconds.get("non_scheduled", 0.0)

    @property
    def availability(self) -> float | None:
        """Equipment (operational) availability: uptime over operations time; None when the
        window holds no operations time."""
        operations = self.operations_s
        if operations <= 0:
            return None
        return sum(self.seconds.get(s, 0.0) for s in UPTIME_STATES) / operations

    @property
    def utilization(self) -> float | None:
        """Productive time over operations time."""
        operations = self.operations_s
        if operations <= 0:
            return None
        return self.seconds.get("productive", 0.0) / operations


def time_in_states(changes: Sequence[E10Change], start: datetime, end: datetime) -> StateTimes:
    """Time spent in each state within [start, end). ``changes`` are the tool's changes in
    time order, including the last one before ``start`` (the state the window opens in)."""
    if end < start:
        raise ValueError("a window ends after it starts")
    seconds = dict.fromkeys(E10_STATES, 0.0)
    ordered = sorted(changes, key=lambda c: c.at)
    for change, following in zip(ordered, [*ordered[1:], None], strict=True):
        begin = max(change.at, start)
        finish = min(following.at if following is not None else end, end)
        if finish > begin:
            seconds[change.e10] = seconds.get(change.e10, 0.0) + (finish - begin).total_seconds()
    return StateTimes(start, end, seconds)
