"""The lot tracker's seams: what the service layer needs from storage.

The SQL adapter (:mod:`mes.adapters.sql`) implements these on SQLite and PostgreSQL; the
in-memory one (:mod:`mes.adapters.memory`) serves fast tests of the service layer.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, TypeAlias, TypeVar

from mes.domain.equipment import (
    ControllerRecord,
    DispatchMode,
    E10Change,
    ResetRequest,
    ResetStatus,
    ToolPart,
    ToolRecord,
)
from mes.domain.interlocks import Qualification
from mes.domain.model import (
    Change,
    HistoryEntry,
    JobRecord,
    Lot,
    LotHead,
    LotState,
)
from mes.domain.signatures import Signature
from mes.domain.tool_down import InForce
from mes.ports_durables import DurableRequest
from mes.ports_history import HistoryPage as HistoryPage
from mes.ports_history import HistoryQuery as HistoryQuery
from mes.ports_lists import LotPage as LotPage
from mes.ports_lists import LotQuery as LotQuery
from mes.ports_lists import ToolJob as ToolJob
from mes.ports_lists import ToolJobPage as ToolJobPage
from mes.ports_lists import ToolJobQuery as ToolJobQuery
from mes.ports_lists import ToolPage as ToolPage
from mes.ports_lists import ToolQuery as ToolQuery
from mes.ports_lots import GetCarriers as GetCarriers
from mes.ports_lots import GetChildren as GetChildren
from mes.ports_lots import GetHistory as GetHistory
from mes.ports_lots import GetHistoryAt as GetHistoryAt
from mes.ports_lots import GetHoldEntries as GetHoldEntries
from mes.ports_lots import GetLot as GetLot
from mes.ports_lots import GetRefusals as GetRefusals
from mes.ports_lots import GetRejects as GetRejects
from mes.ports_lots import GetSignatures as GetSignatures
from mes.ports_lots import GetToolState as GetToolState
from mes.ports_lots import get_carriers as get_carriers
from mes.ports_lots import get_children as get_children
from mes.ports_lots import get_history as get_history
from mes.ports_lots import get_lot as get_lot
from mes.ports_lots import get_refusals as get_refusals
from mes.ports_lots import get_rejects as get_rejects
from mes.ports_lots import get_rejects_by_site as get_rejects_by_site
from mes.ports_lots import get_signatures as get_signatures
from mes.ports_lots import get_tool_state as get_tool_state
from mes.ports_materials import MaterialRequest
from mes.ports_reasons import ReasonRequest
from mes.ports_security import SecurityRequest
from mes.ports_spc import SpcRequest
from mes.ports_together import Together as Together
from mes.ports_together import asked_with as asked_with
from mes.ports_together import each_together as each_together
from mes.ports_together import nothing as nothing
from mes.ports_together import served as served
from mes.ports_together import together as together

T = TypeVar("T")


# -- a transaction's logic, written once for every store -------------------------------------


@dataclass(frozen=True, slots=True)
class GetJob:
    """Read a job (answer: ``JobRecord | None``)."""

    job_id: str


@dataclass(frozen=True, slots=True)
class GetJobWithLot:
    """Read a job and its lot together (answer: ``tuple[JobRecord, Lot] | None``)."""

    job_id: str


@dataclass(frozen=True, slots=True)
class GetJobsOf:
    """Read the jobs of a lot's carriers at one step occurrence, or from it on (answer:
    ``list[JobRecord]``, in the order they started)."""

    lot_id: str
    path_index: int
    and_later: bool = False


@dataclass(frozen=True, slots=True)
class GetToolJobs:
    """Read the jobs a tool started in ``since``..``until`` (``until`` excluded), newest
    first, at most ``limit`` (answer: ``list[ToolJob]``)."""

    tool_id: str
    since: datetime
    until: datetime
    limit: int


@dataclass(frozen=True, slots=True)
class GetLastTrackOuts:
    """Read when a lot was last tracked out of each of ``steps`` (answer: ``dict[str,
    datetime]``, a step it never left absent), at or before ``until`` when given: what its
    queue-time limits count from, read without its whole history."""

    lot_id: str
    steps: tuple[str, ...]
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class GetQueueRelease:
    """Read when a queue-time hold of a lot was last released, at or before ``until`` when
    given (answer: ``datetime | None``): an engineer's release waives the wait until then
    (:mod:`mes.domain.queuetimes`). Read from its releases alone (few), not its history."""

    lot_id: str
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class GetHeads:
    """Read the heads of the lots in ``states``, most urgent first (priority, then age)
    (answer: ``list[LotHead]``); given ``tools``, only those running on one of them."""

    states: tuple[LotState, ...]
    tools: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class GetTools:
    """Read tools' records (answer: ``dict[str, ToolRecord]`` by tool id, the tools the
    store knows of ``tool_ids``); ``for_update``: locked until the transaction ends
    (PostgreSQL; SQLite's writer is alone), for a write that depends on what it read."""

    tool_ids: tuple[str, ...]
    for_update: bool = False


@dataclass(frozen=True, slots=True)
class GetDispatchModes:
    """Read the dispatch mode of every tool of a line (answer: ``dict[str, DispatchMode]``
    by tool id)."""

    line: str


@dataclass(frozen=True, slots=True)
class GetDeclaredDown:
    """Read the tools of a line that a person declared down (answer: ``dict[str, InForce]``
    by tool id, the declarations in force; tools not declared are left out)."""

    line: str


@dataclass(frozen=True, slots=True)
class UpdateTools:
    """Write one part of tools' records; the rest stays as stored (answer: None)."""

    tools: tuple[ToolRecord, ...]
    part: ToolPart


@dataclass(frozen=True, slots=True)
class AddChanges:
    """Write tools' E10 state changes (answer: None)."""

    changes: tuple[E10Change, ...]


@dataclass(frozen=True, slots=True)
class GetQualifications:
    """Read tool qualifications for a step, or of a tool, or both (answer:
    ``list[Qualification]``, by tool then step)."""

    step: str | None = None
    tool_id: str | None = None


@dataclass(frozen=True, slots=True)
class SaveQualifications:
    """Write qualifications: each replaces the one stored for its (tool, step), if any
    (answer: None)."""

    qualifications: tuple[Qualification, ...]


@dataclass(frozen=True, slots=True)
class GetLotsRunningOn:
    """Read the ids of the lots running on a tool (answer: ``list[str]``)."""

    tool_id: str


@dataclass(frozen=True, slots=True)
class SaveSignatures:
    """Write electronic signatures, each linked to the entry it signs (answer: None). Yielded
    right after the Save of that entry, in the same transaction."""

    signatures: tuple[Signature, ...]


@dataclass(frozen=True, slots=True)
class Save:
    """Write a change: lots (inserted, or updated if their version is still the expected
    one, else ConcurrentUpdate), carriers, rejects, jobs, history and outbox (answer: the
    history entries, with their sequence numbers)."""

    change: Change


LotRequest: TypeAlias = (
    GetLot
    | GetJob
    | GetJobWithLot
    | GetJobsOf
    | GetToolJobs
    | GetCarriers
    | GetRejects
    | GetHistory
    | GetHistoryAt
    | GetHoldEntries
    | GetLastTrackOuts
    | GetQueueRelease
    | GetChildren
    | GetHeads
    | Save
)
EquipmentRequest: TypeAlias = (
    GetTools
    | GetToolState
    | GetRefusals
    | GetDispatchModes
    | GetDeclaredDown
    | UpdateTools
    | AddChanges
)
InterlockRequest: TypeAlias = GetQualifications | SaveQualifications | GetLotsRunningOn
SignatureRequest: TypeAlias = SaveSignatures | GetSignatures
Request: TypeAlias = (
    LotRequest
    | EquipmentRequest
    | InterlockRequest
    | SignatureRequest
    | DurableRequest
    | MaterialRequest
    | ReasonRequest
    | SpcRequest
    | SecurityRequest
    | Together
)
Work: TypeAlias = Generator[Request, Any, T]
"""What one transaction does, written once for every store: a generator that yields what it
reads and writes (:data:`Request`), gets each answer back, decides in between with the pure
rules, and returns the operation's result (a refusal is raised). A store runs it with
:meth:`UnitOfWork.run`: on SQLite in one call on the connection's thread, reads, rules,
writes and COMMIT together, so SQLite's one write lock is held for that call only; on
PostgreSQL one awaited statement at a time. The typed helpers below read as
``lot = yield from get_lot(lot_id)``."""


def get_job(job_id: str) -> Work[JobRecord | None]:
    found: JobRecord | None = yield GetJob(job_id)
    return found


def get_job_with_lot(job_id: str) -> Work[tuple[JobRecord, Lot] | None]:
    """A job and its lot, in one read where the store can."""
    found: tuple[JobRecord, Lot] | None = yield GetJobWithLot(job_id)
    return found


def get_jobs_of(
    lot_id: str, path_index: int, *, step: str | None = None, and_later: bool = False
) -> Work[list[JobRecord]]:
    """The jobs of the lot's carriers at a step occurrence (its position in the path), only
    those of ``step`` when given: a lot held mid-step and released may take another step the
    flow allows at that position, and the carriers done at the first are not done at it."""
    found: list[JobRecord] = yield GetJobsOf(lot_id, path_index, and_later)
    return found if step is None else [j for j in found if j.step == step]


def get_step_jobs(lot: Lot) -> Work[list[JobRecord]]:
    """The jobs of the step the lot runs (none when it runs none)."""
    if lot.running is None:
        return []
    return (yield from get_jobs_of(lot.id, len(lot.path), step=lot.running.step))


def get_tool_jobs(
    tool_id: str, since: datetime, until: datetime, limit: int
) -> Work[list[ToolJob]]:
    found: list[ToolJob] = yield GetToolJobs(tool_id, since, until, limit)
    return found


def get_last_track_outs(
    lot_id: str, steps: Iterable[str], until: datetime | None = None
) -> Work[dict[str, datetime]]:
    found: dict[str, datetime] = yield GetLastTrackOuts(lot_id, tuple(sorted(set(steps))), until)
    return found


def get_queue_release(lot_id: str, until: datetime | None = None) -> Work[datetime | None]:
    found: datetime | None = yield GetQueueRelease(lot_id, until)
    return found


def get_heads(
    states: Sequence[LotState], tools: Sequence[str] | None = None
) -> Work[list[LotHead]]:
    found: list[LotHead] = yield GetHeads(tuple(states), None if tools is None else tuple(tools))
    return found


def get_tools(tool_ids: Sequence[str], *, for_update: bool = False) -> Work[dict[str, ToolRecord]]:
    found: dict[str, ToolRecord] = yield GetTools(tuple(tool_ids), for_update)
    return found


def get_dispatch_modes(line: str) -> Work[dict[str, DispatchMode]]:
    found: dict[str, DispatchMode] = yield GetDispatchModes(line)
    return found


def get_declared_down(line: str) -> Work[dict[str, InForce]]:
    found: dict[str, InForce] = yield GetDeclaredDown(line)
    return found


def update_tools(tools: Sequence[ToolRecord], part: ToolPart) -> Work[None]:
    if tools:
        yield UpdateTools(tuple(tools), part)


def add_changes(changes: Sequence[E10Change]) -> Work[None]:
    if changes:
        yield AddChanges(tuple(changes))


def get_qualifications(
    *, step: str | None = None, tool_id: str | None = None
) -> Work[list[Qualification]]:
    found: list[Qualification] = yield GetQualifications(step, tool_id)
    return found


def save_qualifications(qualifications: Sequence[Qualification]) -> Work[None]:
    if qualifications:
        yield SaveQualifications(tuple(qualifications))


def get_lots_running_on(tool_id: str) -> Work[list[str]]:
    found: list[str] = yield GetLotsRunningOn(tool_id)
    return found


def save(change: Change) -> Work[tuple[HistoryEntry, ...]]:
    written: tuple[HistoryEntry, ...] = yield Save(change)
    return written


def save_signatures(signatures: Sequence[Signature]) -> Work[None]:
    if signatures:
        yield SaveSignatures(tuple(signatures))


def save_all(changes: Sequence[Change]) -> Work[list[tuple[HistoryEntry, ...]]]:
    written = []
    for change in changes:
        written.append((yield from save(change)))
    return written


# -- the store -------------------------------------------------------------------------------


class LotRepository(Protocol):
    """Queries over many lots, inside one unit of work (one lot and what belongs to it, and
    the heads of many, are read and written through :meth:`UnitOfWork.run`)."""

    async def find(
        self, *, states: Sequence[LotState] = (), flow: str | None = None, limit: int = 1000
    ) -> list[Lot]:
        """Lots by state and flow, most urgent first (priority, then age)."""
        ...

    async def page(self, query: LotQuery) -> LotPage:
        """One page of the lots ``query`` selects (:class:`LotQuery`). A lot id in ``after``
        that names no lot raises UnknownLot."""
        ...

    async def tool_job_page(self, query: ToolJobQuery) -> ToolJobPage:
        """One page of a tool's jobs (:class:`ToolJobQuery`). A job id in ``after`` that
        names no job of the tool raises InvalidInput."""
        ...

    async def history_page(self, query: HistoryQuery) -> HistoryPage:
        """One page of the line's lot history (:class:`HistoryQuery`), newest first."""
        ...


class EquipmentRepository(Protocol):
    """Tools, their E10 state changes, controller heartbeats and alarm resets, inside one
    unit of work."""

    async def tool(self, tool_id: str) -> ToolRecord | None: ...

    async def tools(self, line: str | None = None) -> list[ToolRecord]: ...

    async def page(self, query: ToolQuery) -> ToolPage:
        """One page of the tools ``query`` selects (:class:`ToolQuery`). A tool id in
        ``after`` that names no tool raises UnknownTool."""
        ...

    async def add_tool(self, tool: ToolRecord) -> None: ...

    async def update_tool(self, tool: ToolRecord, part: ToolPart) -> None:
        """Write one part of the tool's record (the rest stays as stored)."""
        ...

    async def add_change(self, change: E10Change) -> None: ...

    async def changes(self, tool_id: str, start: datetime, end: datetime) -> list[E10Change]:
        """Changes within [start, end), preceded by the last one before ``start``."""
        ...

    async def controller(self, name: str) -> ControllerRecord | None: ...

    async def controllers(self) -> list[ControllerRecord]: ...

    async def save_controller(self, record: ControllerRecord) -> None: ...

    async def add_reset(self, request: ResetRequest) -> None: ...

    async def reset(self, reset_id: str) -> ResetRequest | None: ...

    async def resets(self, tool_id: str, limit: int) -> list[ResetRequest]:
        """A tool's alarm resets, the newest first."""
        ...

    async def open_resets(self, line: str) -> list[ResetRequest]:
        """The resets of a line's tools not yet carried out (pending or resetting), oldest
        first."""
        ...

    async def update_reset(self, request: ResetRequest, expected: ResetStatus) -> bool:
        """Write a reset's status and outcome if it is still ``expected`` (False: it moved
        on meanwhile, nothing was written)."""
        ...


class UnitOfWork(Protocol):
    """One transaction. Leaving the block without :meth:`commit` rolls everything back."""

    @property
    def lots(self) -> LotRepository:
        """The lots, as this transaction sees them (valid inside the ``async with``)."""
        ...

    @property
    def equipment(self) -> EquipmentRepository:
        """The tools, as this transaction sees them."""
        ...

    async def __aenter__(self) -> UnitOfWork: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...

    async def run(self, work: Work[T], *, commit: bool = False) -> T:
        """Do ``work`` in this transaction (:data:`Work`), and with ``commit`` commit it in
        the same step. A refusal or failure it raises leaves nothing written once the unit
        of work is left."""
        ...


class UnitOfWorkFactory(Protocol):
    def __call__(self, *, readonly: bool = False) -> UnitOfWork:
        """A new unit of work; ``readonly`` ones take no write lock."""
        ...

    async def write(self, work: Work[T]) -> T:
        """Do ``work`` in a transaction and commit it. A store may commit several works
        written at the same time together (group commit); each is still all or nothing,
        and its caller hears of it only once it is committed."""
        ...
