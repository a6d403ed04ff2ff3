"""Equipment as the lot tracker records it: the tools a line controller owns, whether they
may be dispatched to, and every change of their SEMI E10 state with its time, so that time in
state and availability can be told over any window. Pure values and functions, no I/O.

E10 states are kept as their names (``productive``, ``standby``, ``engineering``,
``scheduled_down``, ``unscheduled_down``, ``non_scheduled``); the line controller maps what
the tools report onto them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, StrEnum

# re-exported: part of the records' vocabulary, kept in a module of its own for lot reports
from mes.domain.tool_state import ToolSnapshot as ToolSnapshot
from mes.domain.tool_state import TrackInRefusal as TrackInRefusal

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
RECORDED_STATES = (*E10_STATES, UNMONITORED)
"""What a tool's record can say of its E10 state (``tool list --state`` takes these)."""


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


def change_reason(snapshot: ToolSnapshot) -> str | None:
    """Why a tool entered the state it reports, for its E10 history: the reason given, else
    the alarm it raised (an alarm row said nothing of which alarm)."""
    if snapshot.reason is not None or not snapshot.alarm:
        return snapshot.reason
    alarm = snapshot.alarm
    said = f"alarm {alarm.get('code', '?')}"
    if alarm.get("severity"):
        said += f" ({alarm['severity']})"
    return f"{said}: {alarm['text']}" if alarm.get("text") else said


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
    down: str | None = None
    """The E10 state a person declared (``scheduled_down``, ``non_scheduled``:
    :mod:`mes.domain.tool_down`), which ``snapshot.e10`` holds while declared; None: none."""
    down_reason: str | None = None
    down_by: str | None = None
    down_at: datetime | None = None
    reported_e10: str | None = None
    """While a state is declared, the one the tool's controller last reported (what it is
    in once brought back up); None otherwise."""
    declared_user: str | None = None
    declared_by: str | None = None
    declared_auth: str | None = None
    declared_reason: str | None = None
    declared_at: datetime | None = None
    """The last ``tool down`` or ``tool up`` of the tool, kept once it is brought up (the
    ``down_*`` fields are the declaration in force): the name it was given
    (``declared_user``: free text, as a lot history entry's ``user``), who really acted and
    how they were known (``declared_by``, ``declared_auth``: the principal's name and its
    ``AuthMethod`` value; None when no principal acted, and for a declaration made before
    revision 0031), why and when. ``down`` says which it was (None: brought up)."""


class ToolPart(Enum):
    """The parts of a tool's record that different people change: each update writes one
    part only, so an operator switching a tool to manual and the controller recording its
    state at the same moment do not undo each other."""

    STATE = ("snapshot", "e10_since", "updated_at", "reported_e10")
    """What the tool does: its controller's observations."""
    DOWN = (
        "down",
        "down_reason",
        "down_by",
        "down_at",
        "snapshot",
        "e10_since",
        "reported_e10",
        "declared_user",
        "declared_by",
        "declared_auth",
        "declared_reason",
        "declared_at",
    )
    """A person's declaration of planned maintenance or non-scheduled time, and the E10
    state it records."""
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
    refusals: tuple[TrackInRefusal, ...] = ()
    """The controller's refused track-ins of the lots still waiting for them, as of its
    heartbeat (none once it stopped): what keeps a waiting lot off a tool."""

    def same_instance(self, other: ControllerRecord) -> bool:
        """The same running controller: host, process and start alike."""
        return (self.host, self.pid, self.started_at) == (
            other.host,
            other.pid,
            other.started_at,
        )

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, started {self.started_at:%Y-%m-%d %H:%M:%S} UTC"


CONTROLLER_STOPPED = "stopped"
"""The status a line controller records when it stops."""


@dataclass(frozen=True, slots=True)
class LineFence:
    """What makes a controller's record a claim on its line: another controller's record
    holds the line while it has not stopped, its heartbeat is younger than ``stale_after_s``
    and ``alive`` (which knows this host's processes) does not find it gone."""

    stale_after_s: float
    alive: Callable[[ControllerRecord], bool]


def line_holder(
    existing: ControllerRecord | None, claimant: ControllerRecord, fence: LineFence
) -> ControllerRecord | None:
    """The other controller that drives ``claimant``'s line now, or None when the line is
    free for it: no record, its own, a stopped one, one whose heartbeat went stale, or one
    whose process is gone. Two controllers on one line would both command its tools."""
    if existing is None or existing.same_instance(claimant):
        return None
    if existing.status == CONTROLLER_STOPPED:
        return None
    age_s = (claimant.heartbeat_at - existing.heartbeat_at).total_seconds()
    if age_s > fence.stale_after_s or not fence.alive(existing):
        return None
    return existing


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


# -- alarm resets: asked by an operator, carried out by the tool's line controller ---------


class ResetStatus(StrEnum):
    """Where an operator's request to reset a tool's alarm stands::

    PENDING --(its controller takes it)--> RESETTING --> DONE | REFUSED | UNREACHABLE
       \\--(not taken before it expires)--> EXPIRED
    """

    PENDING = "pending"
    """Asked; the tool's line controller has not taken it yet."""
    RESETTING = "resetting"
    """The controller is asking the tool."""
    DONE = "done"
    """The tool reset its alarm."""
    REFUSED = "refused"
    """The tool did not allow it (its reason is the outcome)."""
    UNREACHABLE = "unreachable"
    """The controller could not reach the tool: nothing was reset."""
    EXPIRED = "expired"
    """No controller took it in time (it stopped, or the operator stopped waiting)."""

    @property
    def open(self) -> bool:
        return self in (ResetStatus.PENDING, ResetStatus.RESETTING)


RESETTABLE_STATES = frozenset({"ALARM", "ABORTED"})
"""The process states a reset clears (drivers.model.ProcessState names)."""
MAX_RESET_WAIT_S = 86_400.0
"""The longest an alarm reset may wait to be taken (a day): a request is for now, and a
longer wait would leave it open for a controller to carry out long after it was asked."""


@dataclass(frozen=True, slots=True)
class ResetRequest:
    """An operator's request to reset a tool's alarm, and what came of it."""

    id: str
    tool_id: str
    line: str
    requested_by: str
    reason: str
    requested_at: datetime
    expires_at: datetime
    """Not carried out after this: the operator has stopped waiting for it."""
    status: ResetStatus = ResetStatus.PENDING
    outcome: str | None = None
    """What happened, in words (the tool's reason when it refused)."""
    answered_at: datetime | None = None
    state_after: str | None = None
    """The tool's process state after the reset (done), or as it stays (refused)."""


def reset_refusal(
    tool: ToolRecord, controller_running: bool, open_reset: ResetRequest | None
) -> str | None:
    """Why an alarm reset of ``tool`` cannot be asked now (None: it can): its line controller
    is not running (nobody could carry it out), it is not in ALARM or ABORTED as last
    recorded (a tool not answering counts as what it last reported: its controller records
    that it could not reach it), or a reset of it is already under way."""
    if not controller_running:
        return (
            f"line controller {tool.line} is not running: nothing can reach tool {tool.id} "
            "(start it with pkgline serve, or reset the alarm at the tool)"
        )
    state = tool.snapshot.process_state
    if state not in RESETTABLE_STATES:
        return f"tool {tool.id} is {state or 'in no known state'}, not in ALARM: nothing to reset"
    if open_reset is not None:
        return (
            f"a reset of tool {tool.id} asked by {open_reset.requested_by} at "
            f"{open_reset.requested_at:%H:%M:%S} is still {open_reset.status.value}"
        )
    return None
