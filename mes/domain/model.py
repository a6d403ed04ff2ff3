"""The lot tracker's values: lots, carriers, sites, holds and history entries.

Plain frozen dataclasses, no I/O. A lot is a number of carriers (strips or panels) of
``site_rows x site_cols`` sites moving through one flow. Its position in the flow is its
``path``: the step codes it has completed, in order (after a rework, the effective route).
Sites are addressed 1-based: (carrier id, row, col).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeAlias

from flows import Value

LotId: TypeAlias = str
CarrierId: TypeAlias = str
StepCode: TypeAlias = str
UserName: TypeAlias = str

LOT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
LOT_ID_RULE = "1-32 ASCII letters, digits, '_', '.' or '-', starting with a letter or digit"
""":data:`LOT_ID_PATTERN` in words, for the refusals and the forms that ask for a lot id."""
REJECT_CODE_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]{0,23}$")

MAX_CARRIERS = 100
MAX_SITE_ROWS = 128
MAX_SITE_COLS = 128
PRIORITY_RANGE = range(1, 10)
"""Priority 1 is the most urgent (a hot lot), 9 the least; 5 by default."""
DEFAULT_PRIORITY = 5

SCRAP_STEP = "SCRAP"
"""The step recorded for sites scrapped by hand, outside any process step."""


class LotState(StrEnum):
    WAITING = "WAITING"
    """At a position in the flow, waiting for its next step."""
    RUNNING = "RUNNING"
    """Tracked in at a step (on a tool)."""
    HOLD = "HOLD"
    """Held: nothing moves it until an engineer releases, reworks or scraps it."""
    COMPLETED = "COMPLETED"
    SCRAPPED = "SCRAPPED"
    MERGED = "MERGED"
    """Merged into another lot: its carriers live on there."""


FINAL_STATES = frozenset({LotState.COMPLETED, LotState.SCRAPPED, LotState.MERGED})


class Operation(StrEnum):
    """What can be done to a lot. The value is what history and the CLI call it."""

    START = "start"
    TRACK_IN = "track_in"
    TRACK_OUT = "track_out"
    ABORT = "abort"
    HOLD = "hold"
    RELEASE = "release"
    SCRAP = "scrap"
    SCRAP_SITES = "scrap_sites"
    SPLIT = "split"
    """The parent gives some of its carriers to a new child lot."""
    SPLIT_FROM = "split_from"
    """The child lot comes into being."""
    MERGE = "merge"
    """The surviving lot takes the carriers of another."""
    MERGE_INTO = "merge_into"
    """The absorbed lot gives all its carriers away and ends."""
    REWORK = "rework"
    COMPLETE = "complete"
    JOB_START = "job_start"
    """A tool starts one carrier of the running step (line controller)."""
    JOB_RECORD = "job_record"
    """A tool's results for one carrier are recorded; the last carrier's tracks the lot out."""
    MIGRATE = "migrate"
    """An engineer moves the lot to another version of its flow."""


EVENT_KINDS: Mapping[Operation, str] = {
    Operation.START: "LotStarted",
    Operation.TRACK_IN: "LotTrackedIn",
    Operation.TRACK_OUT: "LotTrackedOut",
    Operation.ABORT: "StepAborted",
    Operation.HOLD: "LotHeld",
    Operation.RELEASE: "LotReleased",
    Operation.SCRAP: "LotScrapped",
    Operation.SCRAP_SITES: "SitesScrapped",
    Operation.SPLIT: "LotSplit",
    Operation.SPLIT_FROM: "LotSplitFrom",
    Operation.MERGE: "LotsMerged",
    Operation.MERGE_INTO: "LotMergedInto",
    Operation.REWORK: "LotReworked",
    Operation.COMPLETE: "LotCompleted",
    Operation.JOB_START: "JobStarted",
    Operation.JOB_RECORD: "JobRecorded",
    Operation.MIGRATE: "LotMigrated",
}
"""The fact (past tense) each operation records in the outbox."""


class HoldSource(StrEnum):
    OPERATOR = "operator"
    LIMIT = "limit"
    """A measured value outside a claimed limit at track-out."""
    ALARM = "alarm"
    """A tool alarm during the lot's job."""
    CONTROLLER = "controller"
    """The line controller could not finish or recover a step."""
    QUEUE_TIME = "queue_time"
    """The lot waited longer than a queue-time limit of its flow allows."""
    SPC = "spc"
    """A measured value broke a run rule of its SPC chart at track-out (mes.domain.spc)."""


@dataclass(frozen=True, slots=True)
class RunningStep:
    step: StepCode
    tool: str | None
    values: Mapping[str, Value]
    since: datetime
    user: UserName
    by_hand: bool = False
    """An operator tracked it in on ``tool`` (the tool in manual, not its line controller's
    dispatch): the operator's to track out, with the measured values; no tool job is run for
    it (:func:`mes.domain.jobs.start_job`), its controller leaves it be."""


@dataclass(frozen=True, slots=True)
class Hold:
    reason: str
    user: UserName
    since: datetime
    source: HoldSource = HoldSource.OPERATOR
    code: str | None = None
    """The reason code it was placed with (mes.domain.reasons), if any."""


@dataclass(frozen=True, slots=True)
class Carrier:
    id: CarrierId
    lot_id: LotId
    position: int
    rows: int
    cols: int


@dataclass(frozen=True, slots=True)
class SiteRef:
    """A site given by an operator or a tool: carrier, 1-based row and column."""

    carrier_id: CarrierId
    row: int
    col: int

    def __str__(self) -> str:
        return f"{self.carrier_id}:{self.row}:{self.col}"


@dataclass(frozen=True, slots=True)
class SiteReject:
    """A site taken out of the lot: by a step's reject, or scrapped by hand. Final."""

    carrier_id: CarrierId
    row: int
    col: int
    code: str
    step: StepCode
    path_index: int
    """Index of the step occurrence in the lot's path (the track-out that rejected it)."""

    @property
    def site(self) -> SiteRef:
        return SiteRef(self.carrier_id, self.row, self.col)


@dataclass(frozen=True, slots=True)
class Lot:
    id: LotId
    flow: str
    flow_version: int
    state: LotState
    params: Mapping[str, Value]
    priority: int
    site_rows: int
    site_cols: int
    carriers: tuple[CarrierId, ...]
    total_sites: int
    good_sites: int
    created_at: datetime
    updated_at: datetime
    created_by: UserName
    path: tuple[StepCode, ...] = ()
    running: RunningStep | None = None
    hold: Hold | None = None
    recorded: Mapping[str, Value] = field(default_factory=dict)
    """The latest value of every recipe and measured value known for this lot, by name."""
    rework_counts: Mapping[str, int] = field(default_factory=dict)
    """Reworks done, keyed ``STEP#n`` for the n-th occurrence of STEP in the path."""
    pending_rework: StepCode | None = None
    """After a rework, the one step the lot must run next."""
    units: int | None = None
    """Good packages after singulation (DICE); None before."""
    parent_id: LotId | None = None
    version: int = 1
    history_head: str | None = None
    """The hash of the lot's newest history entry (:mod:`mes.domain.audit`); None for a lot
    not yet written. The rules carry it over; the store sets it when it writes the lot."""

    @property
    def step(self) -> StepCode | None:
        """The step running, or the last step completed while the lot waits; None before the
        first."""
        if self.running is not None:
            return self.running.step
        return self.path[-1] if self.path else None


class JobStatus(StrEnum):
    STARTED = "started"
    """Written once the tool has taken the job: its results are awaited."""
    RECORDED = "recorded"
    """The tool's results are recorded; the tool may forget them."""
    ABANDONED = "abandoned"
    """The lot left the step (hold, abort) before the job's results were recorded."""
    SUPERSEDED = "superseded"
    """A rework sent the lot back before this job's step: the carrier runs it again."""


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One carrier processed by a tool at one step occurrence of a lot.

    A step on a tool runs as one job per carrier, written down once the tool has taken it.
    Its results are recorded here before the tool is told to forget them, and the last
    carrier's record tracks the lot out in the same transaction: a controller that fails
    between the two finds the results again and records them once.
    """

    job_id: str
    lot_id: LotId
    tool_id: str
    step: StepCode
    path_index: int
    carrier_id: CarrierId
    status: JobStatus
    started_at: datetime
    recorded_at: datetime | None = None
    measured: Mapping[str, Value] = field(default_factory=dict)
    rejects: tuple[SiteReject, ...] = ()
    tool_data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LotHead:
    """What dispatching needs to know of a lot, read without the rest (carriers, recorded
    values, hold): its position in its flow, its urgency, and the tool it runs on."""

    id: LotId
    flow: str
    state: LotState
    priority: int
    created_at: datetime
    path: tuple[StepCode, ...]
    params: Mapping[str, Value]
    pending_rework: StepCode | None
    tool: str | None
    """The tool it is tracked in on, while RUNNING."""
    flow_version: int = 1
    """The version of its flow it is checked against."""
    by_hand: bool = False
    """RUNNING on ``tool``, tracked in there by an operator (:attr:`RunningStep.by_hand`)."""


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One row of a lot's append-only history: who did what, when, and what it changed."""

    lot_id: LotId
    operation: Operation
    user: UserName
    at: datetime
    state_before: LotState | None
    state_after: LotState
    step: StepCode | None = None
    tool: str | None = None
    reason: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    by: str | None = None
    """The principal who made the change, as the service knew it (``user`` is the name the
    command gave: ``--user`` in direct mode); None where the lot tracker runs embedded."""
    auth: str | None = None
    """How that principal was known (:class:`mes.domain.authority.AuthMethod` value)."""
    seq: int | None = None
    """Assigned by the store; increases with every entry written."""
    prev_hash: str | None = None
    """The hash of the entry this one follows (:mod:`mes.domain.audit`); set by the store."""
    hash: str | None = None
    """SHA-256 of this entry's canonical content and ``prev_hash``; set by the store."""

    @property
    def event_kind(self) -> str:
        return EVENT_KINDS[self.operation]


@dataclass(frozen=True, slots=True)
class Change:
    """Everything one operation changes, to be written in one transaction.

    ``lots`` are the new states of every lot touched (created ones included), each with the
    version it must still have in the store (``expected_versions``; None for a new lot).
    """

    lots: tuple[Lot, ...]
    expected_versions: Mapping[LotId, int | None]
    entries: tuple[HistoryEntry, ...]
    rejects: tuple[SiteReject, ...] = ()
    new_carriers: tuple[Carrier, ...] = ()
    moved_carriers: Mapping[CarrierId, tuple[LotId, int]] = field(default_factory=dict)
    """Carriers that change lot: carrier id -> (new lot id, new position)."""
    jobs: tuple[tuple[JobRecord, JobStatus | None], ...] = ()
    """Jobs to write, each with the status it must still have in the store (None: a new
    job). A job whose status changed meanwhile makes the change a ConcurrentUpdate."""

    @property
    def lot(self) -> Lot:
        """The lot the operation was asked of."""
        return self.lots[0]
