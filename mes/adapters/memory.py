"""An in-memory lot store with the same contract as the SQL one: for fast tests of the service
layer and property tests that drive thousands of operations.

A unit of work works on a copy and publishes it on commit, so a refused or failed operation
leaves the store exactly as it was (as a rolled-back transaction would). Version checks behave
as in SQL: a lot changed since it was read makes ``save`` raise ConcurrentUpdate.
"""

from __future__ import annotations

import bisect
import copy
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar

from mes.adapters.memory_equipment import MemoryEquipmentRepository
from mes.adapters.memory_interlocks import (
    answer_durables,
    answer_interlock,
    answer_materials,
    answer_reasons,
    answer_security,
    answer_spc,
    append_event,
)
from mes.domain import audit
from mes.domain.common import no_lot
from mes.domain.durables import Durable, DurableEvent
from mes.domain.equipment import (
    ControllerRecord,
    E10Change,
    ResetRequest,
    ToolRecord,
)
from mes.domain.errors import ConcurrentUpdate, InvalidInput, LotExists
from mes.domain.identity import SecurityEvent
from mes.domain.interlocks import Qualification
from mes.domain.materials import Material, MaterialEvent, Use
from mes.domain.model import (
    Carrier,
    Change,
    HistoryEntry,
    JobRecord,
    Lot,
    LotHead,
    LotState,
    Operation,
    SiteReject,
)
from mes.domain.queuetimes import queue_released
from mes.domain.reasons import ReasonCode
from mes.domain.report import history_dict
from mes.domain.signatures import Signature
from mes.domain.spc import Chart, Point
from mes.ports import (
    EquipmentRequest,
    GetCarriers,
    GetChildren,
    GetHeads,
    GetHistory,
    GetHistoryAt,
    GetHoldEntries,
    GetJob,
    GetJobsOf,
    GetJobWithLot,
    GetLastTrackOuts,
    GetLot,
    GetQueueRelease,
    GetRejects,
    GetSignatures,
    GetToolJobs,
    HistoryPage,
    HistoryQuery,
    InterlockRequest,
    LotPage,
    LotQuery,
    LotRequest,
    Request,
    Save,
    SaveSignatures,
    SignatureRequest,
    Together,
    ToolJob,
    ToolJobPage,
    ToolJobQuery,
    Work,
)
from mes.ports_durables import (
    DurableRequest,
)
from mes.ports_materials import (
    MaterialRequest,
)
from mes.ports_reasons import ReasonRequest
from mes.ports_security import SecurityRequest
from mes.ports_spc import SpcRequest

T = TypeVar("T")
_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


@dataclass
class MemoryStore:
    lots: dict[str, Lot] = field(default_factory=dict)
    carriers: dict[str, Carrier] = field(default_factory=dict)
    rejects: list[SiteReject] = field(default_factory=list)
    history: list[HistoryEntry] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    tools: dict[str, ToolRecord] = field(default_factory=dict)
    changes: list[E10Change] = field(default_factory=list)
    controllers: dict[str, ControllerRecord] = field(default_factory=dict)
    resets: dict[str, ResetRequest] = field(default_factory=dict)
    lots_head: str = audit.GENESIS
    """The head of the chain over lots (:mod:`mes.domain.audit`)."""
    qualifications: dict[tuple[str, str], Qualification] = field(default_factory=dict)
    durables: dict[str, Durable] = field(default_factory=dict)
    durable_events: list[DurableEvent] = field(default_factory=list)
    materials: dict[str, Material] = field(default_factory=dict)
    material_events: list[MaterialEvent] = field(default_factory=list)
    material_uses: list[Use] = field(default_factory=list)
    reason_codes: dict[str, ReasonCode] = field(default_factory=dict)
    spc_charts: dict[tuple[str, str, str], Chart] = field(default_factory=dict)
    spc_points: list[Point] = field(default_factory=list)
    signatures: list[Signature] = field(default_factory=list)
    security_events: list[SecurityEvent] = field(default_factory=list)
    security_head: str = audit.GENESIS
    """The security log (:mod:`mes.domain.security_chain`): engineering changes, and the
    refusals of services given the factory as their log."""


def _page_key(lot: Lot) -> tuple[int, datetime, str]:
    return (lot.priority, lot.created_at, lot.id)


def _selected(lot: Lot, q: LotQuery) -> bool:
    return (
        (not q.states or lot.state in q.states)
        and (q.flow is None or lot.flow == q.flow)
        and (q.step is None or lot.step == q.step)
        and (q.tool is None or (lot.running is not None and lot.running.tool == q.tool))
        and (q.priority is None or lot.priority == q.priority)
        and (q.moved_since is None or lot.updated_at >= q.moved_since)
        and (q.moved_before is None or lot.updated_at < q.moved_before)
    )


class MemoryLotRepository:
    def __init__(self, store: MemoryStore, committed: MemoryStore | None = None):
        self._store = store
        self._committed = committed or store
        self._written: set[str] = set()
        """Lots this unit of work wrote."""

    def answer(self, request: LotRequest) -> Any:
        """What a store answers to ``request`` (:data:`mes.ports.Work`)."""
        if isinstance(request, Save):
            return self._save(request.change)
        if isinstance(request, GetLot):
            return self._store.lots.get(request.lot_id)
        if isinstance(request, GetJob):
            return self._store.jobs.get(request.job_id)
        if isinstance(request, GetJobWithLot):
            job = self._store.jobs.get(request.job_id)
            return None if job is None else (job, self._store.lots[job.lot_id])
        if isinstance(request, GetJobsOf):
            return self._jobs_of(request.lot_id, request.path_index, and_later=request.and_later)
        if isinstance(request, GetToolJobs):
            return self._tool_jobs(request)
        if isinstance(request, GetRejects):
            return self._rejects(request.lot_id)
        if isinstance(request, GetCarriers):
            return self._carriers(request.lot_id)
        if isinstance(request, GetHistory):
            return self._history(request.lot_id, before_seq=request.before_seq)
        if isinstance(request, GetHistoryAt):
            return [e for e in self._history(request.lot_id) if e.at == request.at]
        if isinstance(request, GetHoldEntries):
            return [
                e
                for lot_id, at in sorted(set(request.holds))
                for e in self._history(lot_id)
                if e.at == at
            ]
        if isinstance(request, GetLastTrackOuts):
            return {
                e.step: e.at
                for e in self._history(request.lot_id)
                if e.operation is Operation.TRACK_OUT
                and e.step in request.steps
                and (request.until is None or e.at <= request.until)
            }
        if isinstance(request, GetQueueRelease):
            return queue_released(
                {"at": e.at, "data": e.data}
                for e in self._history(request.lot_id)
                if e.operation is Operation.RELEASE
                and (request.until is None or e.at <= request.until)
            )
        if isinstance(request, GetChildren):
            return [lot.id for lot in self._store.lots.values() if lot.parent_id == request.lot_id]
        if isinstance(request, GetHeads):
            heads = self._heads(request.states)
            if request.tools is None:
                return heads
            return [h for h in heads if h.tool is not None and h.tool in request.tools]
        raise TypeError(f"not a lot store request: {request!r}")

    def _carriers(self, lot_id: str) -> list[Carrier]:
        found = [c for c in self._store.carriers.values() if c.lot_id == lot_id]
        return sorted(found, key=lambda c: c.position)

    def _rejects(self, lot_id: str) -> list[SiteReject]:
        mine = {c.id for c in self._store.carriers.values() if c.lot_id == lot_id}
        return [r for r in self._store.rejects if r.carrier_id in mine]

    def _history(self, lot_id: str, *, before_seq: int | None = None) -> list[HistoryEntry]:
        return [
            e
            for e in self._store.history
            if e.lot_id == lot_id and (before_seq is None or (e.seq or 0) < before_seq)
        ]

    async def find(
        self, *, states: Sequence[LotState] = (), flow: str | None = None, limit: int = 1000
    ) -> list[Lot]:
        return self._find(states=states, flow=flow, limit=limit)

    async def page(self, query: LotQuery) -> LotPage:
        if query.limit < 1:
            raise InvalidInput(f"a page holds 1 lot or more, not {query.limit}")
        found = sorted(
            (lot for lot in self._store.lots.values() if _selected(lot, query)),
            key=_page_key,
        )
        start = 0
        if query.after is not None:
            after = self._store.lots.get(query.after)
            if after is None:
                raise no_lot(query.after, " to list the lots after")
            start = bisect.bisect_right([_page_key(lot) for lot in found], _page_key(after))
        page = found[start : start + query.limit + 1]
        return LotPage(page[: query.limit], len(found), len(page) > query.limit)

    async def tool_job_page(self, query: ToolJobQuery) -> ToolJobPage:
        if query.limit < 1:
            raise InvalidInput(f"a page holds 1 job or more, not {query.limit}")
        found = [
            j
            for j in self._tool_jobs(GetToolJobs(query.tool_id, _EARLIEST, _LATEST, 1 << 62))
            if query.lot_id in (None, j.job.lot_id)
            and (query.since is None or j.job.started_at >= query.since)
            and (query.until is None or j.job.started_at < query.until)
        ]
        start = 0
        if query.after is not None:
            after = self._store.jobs.get(query.after)
            if after is None or after.tool_id != query.tool_id:
                raise InvalidInput(
                    f"there is no job {query.after} of tool {query.tool_id} to list the jobs "
                    "after: expected a job id of the page before"
                )
            key = (after.started_at, after.job_id)
            start = next(
                (i for i, j in enumerate(found) if (j.job.started_at, j.job.job_id) < key),
                len(found),
            )
        page = found[start : start + query.limit + 1]
        return ToolJobPage(page[: query.limit], len(found), len(page) > query.limit)

    async def history_page(self, query: HistoryQuery) -> HistoryPage:
        if query.limit < 1:
            raise InvalidInput(f"a page holds 1 entry or more, not {query.limit}")
        wanted = {
            "lot_id": query.lot_id,
            "tool": query.tool,
            "user": query.user,
            "step": query.step,
        }
        found = [
            e
            for e in reversed(self._store.history)
            if all(v is None or getattr(e, k) == v for k, v in wanted.items())
            and query.operation in (None, e.operation.value)
            and (query.since is None or e.at >= query.since)
            and (query.until is None or e.at < query.until)
        ]
        start = 0
        if query.after is not None:
            if all(e.seq != query.after for e in self._store.history):
                raise InvalidInput(
                    f"there is no history entry {query.after} to list the entries after: "
                    "expected the last seq of the page before"
                )
            start = next((i for i, e in enumerate(found) if (e.seq or 0) < query.after), len(found))
        page = found[start : start + query.limit + 1]
        return HistoryPage(page[: query.limit], len(found), len(page) > query.limit)

    def _find(
        self, *, states: Sequence[LotState] = (), flow: str | None = None, limit: int = 1000
    ) -> list[Lot]:
        found = [
            lot
            for lot in self._store.lots.values()
            if (not states or lot.state in states) and (flow is None or lot.flow == flow)
        ]
        found.sort(key=lambda lot: (lot.priority, lot.created_at, lot.id))
        return found[:limit]

    def _tool_jobs(self, request: GetToolJobs) -> list[ToolJob]:
        found = sorted(
            (
                j
                for j in self._store.jobs.values()
                if j.tool_id == request.tool_id and request.since <= j.started_at < request.until
            ),
            key=lambda j: (j.started_at, j.job_id),
            reverse=True,
        )[: request.limit]
        out = []
        for job in found:
            carrier = self._store.carriers[job.carrier_id]
            earlier = sum(
                1
                for r in self._store.rejects
                if r.carrier_id == job.carrier_id and r.path_index < job.path_index
            )
            out.append(ToolJob(job, carrier.rows * carrier.cols - earlier))
        return out

    def _jobs_of(self, lot_id: str, path_index: int, *, and_later: bool = False) -> list[JobRecord]:
        mine = {c.id for c in self._store.carriers.values() if c.lot_id == lot_id}
        return sorted(
            (
                j
                for j in self._store.jobs.values()
                if j.carrier_id in mine
                and (j.path_index >= path_index if and_later else j.path_index == path_index)
            ),
            key=lambda j: (j.started_at, j.job_id),
        )

    def _heads(self, states: Sequence[LotState]) -> list[LotHead]:
        if not states:
            return []
        return [
            LotHead(
                lot.id,
                lot.flow,
                lot.state,
                lot.priority,
                lot.created_at,
                lot.path,
                lot.params,
                lot.pending_rework,
                lot.running.tool if lot.running else None,
                lot.flow_version,
                lot.running.by_hand if lot.running else False,
            )
            for lot in self._find(states=states, limit=len(self._store.lots) or 1)
        ]

    def _save(self, change: Change) -> tuple[HistoryEntry, ...]:
        store = self._store
        chained = audit.chain(change, store.lots_head)
        change = chained.change
        if chained.lots_head is not None:
            store.lots_head = chained.lots_head
        for lot in change.lots:
            expected = change.expected_versions[lot.id]
            # Check against what is committed and what this transaction wrote, as a database
            # would on UPDATE ... WHERE version.
            current = (store if lot.id in self._written else self._committed).lots.get(lot.id)
            if expected is None and current is not None:
                raise LotExists(f"lot {lot.id} already exists", lot_id=lot.id)
            if expected is not None and (current is None or current.version != expected):
                raise ConcurrentUpdate(f"lot {lot.id} was changed by someone else", lot_id=lot.id)
            store.lots[lot.id] = lot
            self._written.add(lot.id)
        for c in change.new_carriers:
            store.carriers[c.id] = c
        for carrier_id, (lot_id, position) in change.moved_carriers.items():
            store.carriers[carrier_id] = replace(
                store.carriers[carrier_id], lot_id=lot_id, position=position
            )
        taken = {r.site for r in store.rejects}
        for r in change.rejects:
            if r.site in taken:
                raise AssertionError(f"site {r.site} rejected twice: the rules should refuse it")
        store.rejects.extend(change.rejects)
        for job, expected_status in change.jobs:
            known = self._committed.jobs.get(job.job_id)
            if (known is None) != (expected_status is None) or (
                known is not None and known.status is not expected_status
            ):
                raise ConcurrentUpdate(f"job {job.job_id} changed meanwhile", lot_id=job.lot_id)
            store.jobs[job.job_id] = job
        written = []
        for entry in change.entries:
            stored = replace(entry, seq=len(store.history) + 1)
            store.history.append(stored)
            store.outbox.append(
                {"lot_id": entry.lot_id, "kind": entry.event_kind, "payload": history_dict(stored)}
            )
            written.append(stored)
        return tuple(written)


def answer_signature(store: MemoryStore, request: SignatureRequest) -> Any:
    """What a store answers to a signature request (:data:`mes.ports.Work`)."""
    if isinstance(request, SaveSignatures):
        for s in request.signatures:
            if s.entry_hash is None:
                raise ValueError(f"a signature of lot {s.lot_id} not linked to its entry")
            store.signatures.append(replace(s, seq=len(store.signatures) + 1))
        return None
    if isinstance(request, GetSignatures):
        return [s for s in store.signatures if s.lot_id in request.lot_ids]
    raise TypeError(f"not a signature store request: {request!r}")


class MemoryUnitOfWork:
    def __init__(self, shared: MemoryStore):
        self._shared = shared
        self._work = copy.deepcopy(shared)
        self.lots = MemoryLotRepository(self._work, shared)
        self.equipment = MemoryEquipmentRepository(self._work)

    async def __aenter__(self) -> MemoryUnitOfWork:
        return self

    async def commit(self) -> None:
        self._shared.__dict__.update(self._work.__dict__)
        self._work = copy.deepcopy(self._shared)
        self.lots = MemoryLotRepository(self._work, self._shared)
        self.equipment = MemoryEquipmentRepository(self._work)

    async def run(self, work: Work[T], *, commit: bool = False) -> T:
        answer: Any = None
        try:
            while True:
                try:
                    request = work.send(answer)
                except StopIteration as done:
                    result: T = done.value
                    break
                answer = self._answer(request)
        finally:
            work.close()
        if commit:
            await self.commit()
        return result

    def _answer(self, request: Request) -> Any:
        if isinstance(request, Together):  # one after the other: no round trips to save
            return tuple(self._answer(r) for r in request.requests)
        if isinstance(request, EquipmentRequest):
            return self.equipment.answer(request)
        if isinstance(request, InterlockRequest):
            return answer_interlock(self._work, request)
        if isinstance(request, DurableRequest):
            return answer_durables(self._work, request)
        if isinstance(request, MaterialRequest):
            return answer_materials(self._work, request)
        if isinstance(request, ReasonRequest):
            return answer_reasons(self._work, request)
        if isinstance(request, SpcRequest):
            return answer_spc(self._work, request)
        if isinstance(request, SignatureRequest):
            return answer_signature(self._work, request)
        if isinstance(request, SecurityRequest):
            return answer_security(self._work, request)
        return self.lots.answer(request)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


class MemoryUnitOfWorkFactory:
    def __init__(self, store: MemoryStore | None = None):
        self.store = store or MemoryStore()

    def __call__(self, *, readonly: bool = False) -> MemoryUnitOfWork:
        return MemoryUnitOfWork(self.store)

    async def write(self, work: Work[T]) -> T:
        async with self() as uow:
            return await uow.run(work, commit=True)

    async def record(self, event: SecurityEvent) -> None:
        """The store as a :class:`mes.guard.SecurityLog`: one log for the refusals and the
        changes, as the SQL stores keep."""
        append_event(self.store, event)
