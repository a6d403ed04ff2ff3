"""The lot service's core (:class:`LotServiceCore`): what it is built on (the store, the flows
and their published versions, the principal acting and the security log, the signature
policy), its two kinds of transaction (:meth:`~LotServiceCore._write`, one that writes and
commits; :meth:`~LotServiceCore._read`, one that only reads) and every read of lots, jobs
and the reports built from them. :class:`mes.service.LotService` adds the operations that
change lots.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Self, TypeVar

from flows import Flow, FlowLibrary, UnknownFlow
from mes.domain import common
from mes.domain.authority import Action, NotAuthorized, Principal
from mes.domain.equipment import DispatchMode
from mes.domain.errors import (
    ConcurrentUpdate,
    InvalidInput,
    UnknownTool,
)
from mes.domain.lifecycle import NotInState
from mes.domain.model import (
    Carrier,
    HistoryEntry,
    JobRecord,
    Lot,
    LotHead,
    LotState,
    SiteReject,
)
from mes.domain.report import LotReport
from mes.domain.signatures import (
    SignaturePolicy,
    SignatureRefused,
    SignatureRequired,
    SignatureStale,
)
from mes.flowversions import VersionedFlows, VersionNotLoaded
from mes.guard import Guard, Guarded, SecurityLog
from mes.lot_reads import hold_entries, hold_placers, report_work
from mes.material_recall import quarantined_in
from mes.ports import (
    HistoryPage,
    HistoryQuery,
    LotPage,
    LotQuery,
    ToolJob,
    ToolJobPage,
    ToolJobQuery,
    UnitOfWorkFactory,
    Work,
    get_carriers,
    get_dispatch_modes,
    get_heads,
    get_job,
    get_jobs_of,
    get_lot,
    get_rejects,
    get_tool_jobs,
    together,
)
from mes.signing import SignatureVerifier, Signing

T = TypeVar("T")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an operation did: the lot as it is now, and the history entries written."""

    lot: Lot
    entries: tuple[HistoryEntry, ...]


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """A job's results recorded (or found recorded already): the lot as it is now."""

    lot: Lot
    job: JobRecord
    entries: tuple[HistoryEntry, ...]
    already_recorded: bool = False


@dataclass(frozen=True, slots=True)
class StepView:
    """A lot and what running its current step takes, read in one transaction."""

    lot: Lot
    jobs: list[JobRecord]
    """The jobs of its carriers at its current step occurrence."""
    carriers: list[Carrier]
    rejected: list[SiteReject]
    """Every site rejected so far."""


class LotServiceCore(Guarded):
    """The lot service's wiring, transactions and reads (see the module docstring)."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        flows: FlowLibrary,
        clock: Callable[[], datetime] = utc_now,
        *,
        principal: Principal | None = None,
        security: SecurityLog | None = None,
        versions: VersionedFlows | None = None,
        signatures: SignaturePolicy | None = None,
        verifier: SignatureVerifier | None = None,
    ):
        self._uow = uow
        self.flows = flows
        self.versions = versions
        """Published flow versions (mes.flowversions); None: the flow files alone, every
        lot on the file's version (tests of the rules, the in-memory store)."""
        self._clock = clock
        self._guard = Guard(principal, security, clock)
        self.signing = Signing(signatures or SignaturePolicy(), verifier, security, clock)
        self._seen: tuple[str, int] | None = None

    def as_seen(self, lot_id: str, version: int) -> Self:
        """The same service, for an operation a person decided on lot ``lot_id`` as it was
        at ``version`` (the page they acted from): refused with ConcurrentUpdate, nothing
        changed, when the lot moved since; checked in the operation's own transaction, so
        that two people acting on the same lot at once cannot both act on what they saw."""
        other = copy.copy(self)
        other._seen = (lot_id, version)
        return other

    def _check_seen(self, lot: Lot) -> None:
        if self._seen is None or self._seen[0] != lot.id or self._seen[1] == lot.version:
            return
        raise ConcurrentUpdate(
            f"lot {lot.id} changed since its version {self._seen[1]} was seen (it is now "
            f"version {lot.version}, {lot.state.value}, step {lot.step or '-'}): look at it "
            "again; nothing was changed",
            lot_id=lot.id,
        )

    async def authorize_some(
        self, action: Action, lot_id: str | None = None, *, by: Principal | None = None
    ) -> None:
        """Refuse (NotAuthorized, recorded as a security event) a principal whose roles let
        it do ``action`` on no lot, before anything the request gives is looked at: an entry
        point that checks a form's fields itself (the operator station) asks this first, so
        that a role that may never is told so, and recorded, as the API answers it, rather
        than asked to fix a field. The lot's own row (a release of a hold the rules placed)
        is checked by the operation itself."""
        await self._guard.allow_some(by, action, lot_id or None)

    def flow(self, name: str) -> Flow:
        try:
            return self.flows.get(name)
        except UnknownFlow as exc:
            raise InvalidInput(str(exc).strip("'\""), allowed=sorted(self.flows.flows)) from None

    def flow_of(self, lot: Lot | LotHead) -> Flow:
        """The flow a lot is checked against: the version it started on (or was migrated
        to), whatever was published since."""
        if self.versions is None or not self.versions.loaded:
            return self.flow(lot.flow)
        flow = self.versions.get(lot.flow, lot.flow_version)
        if flow is None:
            raise VersionNotLoaded(lot.flow, lot.flow_version)
        return flow

    async def load_versions_of(self, lots: Sequence[Lot | LotHead]) -> None:
        """Read the versions table if a lot is on a version this process has not built yet
        (published since it started)."""
        if self.versions is None:
            return
        if not self.versions.loaded or any(
            self.versions.get(x.flow, x.flow_version) is None for x in lots
        ):
            await self.versions.need({(x.flow, x.flow_version) for x in lots})

    async def _write(self, work: Work[T] | Callable[[], Work[T]], by: Principal | None = None) -> T:
        """Do ``work`` in one transaction and commit it (:data:`mes.ports.Work`); a refusal
        of authority it raises is recorded. Work given as a function is done again after
        the version it met and had not built is built (twice at most: the lot's version,
        then a migration's target)."""
        try:
            if not callable(work):
                return await self._uow.write(work)
            for _ in range(2):
                try:
                    return await self._uow.write(work())
                except VersionNotLoaded as missing:
                    await self._reload_for(missing)
            return await self._uow.write(work())
        except NotAuthorized as refused:
            await self._guard.refused(by, refused)
            raise
        except (SignatureRefused, SignatureStale, SignatureRequired) as refused:
            await self.signing.refused(self._guard.who(by), refused)
            raise
        except NotInState as refused:  # what the state allows that the caller may do
            raise refused.for_principal(self._guard.who(by)) from refused

    async def _read(self, work: Work[T] | Callable[[], Work[T]], by: Principal | None = None) -> T:
        await self._guard.allow(by, Action.READ)
        try:
            async with self._uow(readonly=True) as uow:
                return await uow.run(work() if callable(work) else work, commit=True)
        except VersionNotLoaded as missing:
            if not callable(work):
                raise
            await self._reload_for(missing)
            async with self._uow(readonly=True) as uow:
                return await uow.run(work(), commit=True)

    async def _reload_for(self, missing: VersionNotLoaded) -> None:
        if self.versions is None:
            raise missing
        await self.versions.need([(missing.flow, missing.version)])
        if self.versions.get(missing.flow, missing.version) is None:
            raise InvalidInput(
                f"flow {missing.flow} has no published version {missing.version}"
            ) from None

    async def job(self, job_id: str, *, by: Principal | None = None) -> JobRecord | None:
        return await self._read(get_job(job_id), by)

    async def step_view(self, lot_id: str, *, by: Principal | None = None) -> StepView:
        """The lot, its jobs at its current step, its carriers and its rejected sites: one
        read transaction (the line controller, before it runs a step)."""

        def work() -> Work[StepView]:
            lot = yield from get_lot(lot_id)
            if lot is None:
                raise common.no_lot(lot_id)
            return (yield from step_view_work(lot))

        return await self._read(work, by)

    async def jobs_of_step(self, lot: Lot, *, by: Principal | None = None) -> list[JobRecord]:
        """The jobs of the lot's carriers at its current step occurrence (of the step it runs,
        when it runs one)."""
        step = lot.running.step if lot.running else None
        return await self._read(get_jobs_of(lot.id, len(lot.path), step=step), by)

    async def tool_jobs(
        self,
        tool_id: str,
        since: datetime,
        until: datetime,
        *,
        limit: int = 50,
        by: Principal | None = None,
    ) -> list[ToolJob]:
        """The jobs ``tool_id`` started in ``since``..``until``, newest first, at most
        ``limit``, each with its carrier's sites in and its yield."""
        common.check_window(since, until)
        if limit < 1:
            raise InvalidInput(f"expected a limit of 1 or more (got {limit})")
        return await self._read(get_tool_jobs(tool_id, since, until, limit), by)

    async def tool_job_page(
        self, query: ToolJobQuery, *, by: Principal | None = None
    ) -> ToolJobPage:
        """One page of a tool's jobs (:class:`mes.ports.ToolJobQuery`), newest first, with
        how many match and whether more follow. Refused (InvalidInput, nothing read) for a
        window that ends before it starts or a cursor that names no job of the tool; UnknownLot
        for a ``lot_id`` that names no lot (not an empty page)."""
        await self._guard.allow(by, Action.READ)
        common.check_window(query.since, query.until)
        async with self._uow(readonly=True) as uow:
            if query.lot_id is not None and await uow.run(get_lot(query.lot_id)) is None:
                raise common.no_lot(query.lot_id)
            return await uow.lots.tool_job_page(query)

    async def history_page(
        self, query: HistoryQuery, *, by: Principal | None = None
    ) -> HistoryPage:
        """One page of the line's lot history (:class:`mes.ports.HistoryQuery`), newest
        first, with how many entries match and whether more follow. Refused (InvalidInput,
        nothing read) for a window that ends before it starts, or a cursor (``after``) that
        names no entry."""
        await self._guard.allow(by, Action.READ)
        common.check_window(query.since, query.until)
        self._check_step(query.step)
        async with self._uow(readonly=True) as uow:
            return await uow.lots.history_page(query)

    def _check_step(self, step: str | None) -> None:
        """A list filtered by a step that is no step code is refused, not answered empty."""
        if step is not None and step not in self.flows.step_codes:
            raise InvalidInput(
                f"{step} is not a step code; expected one of the line's steps",
                allowed=sorted(self.flows.step_codes),
            )

    async def get(self, lot_id: str, *, by: Principal | None = None) -> Lot:
        lot = await self._read(get_lot(lot_id), by)
        if lot is None:
            raise common.no_lot(lot_id)
        await self.load_versions_of([lot])
        return lot

    async def report(self, lot_id: str, *, by: Principal | None = None) -> LotReport:
        """Everything ``lot show`` tells, read in one transaction."""

        def work() -> Work[LotReport]:
            report = yield from report_work(lot_id, self.flow_of)
            found = yield from quarantined_in(lot_id)  # read by lot show, the API, the station
            return replace(report, quarantined=tuple(found)) if found else report

        return await self._read(work, by)

    async def hold_entries(
        self, lots: Sequence[Lot], *, by: Principal | None = None
    ) -> dict[str, HistoryEntry]:
        """The history entry that placed each held lot's hold, by lot id (its ``by`` and
        ``auth``: who placed it; :func:`mes.lot_reads.hold_entries`), in one read."""
        return await self._read(lambda: hold_entries(lots), by)

    async def hold_placers(
        self, lots: Sequence[Lot], *, by: Principal | None = None
    ) -> dict[str, HistoryEntry]:
        """The history entry that placed each held lot's hold, by lot id, in one query
        whatever their number (:func:`mes.lot_reads.hold_placers`: a lot split off a held lot
        is left out, its lineage not read): ``line status``'s held lots."""
        return await self._read(lambda: hold_placers(lots), by)

    async def find(
        self,
        *,
        states: Sequence[LotState] = (),
        flow: str | None = None,
        limit: int = 1000,
        by: Principal | None = None,
    ) -> list[Lot]:
        await self._guard.allow(by, Action.READ)
        if flow is not None:
            self.flow(flow)
        async with self._uow(readonly=True) as uow:
            found = await uow.lots.find(states=states, flow=flow, limit=limit)
        await self.load_versions_of(found)
        return found

    async def page(self, query: LotQuery, *, by: Principal | None = None) -> LotPage:
        """One page of a lot list (:class:`mes.ports.LotQuery`): filtered, ordered and cut
        by the store, with how many lots match and whether more follow. Refused
        (InvalidInput) for a window that ends before it starts."""
        await self._guard.allow(by, Action.READ)
        common.check_window(query.moved_since, query.moved_before)
        if query.flow is not None:
            self.flow(query.flow)
        self._check_step(query.step)
        async with self._uow(readonly=True) as uow:
            if query.tool is not None and await uow.equipment.tool(query.tool) is None:
                raise UnknownTool(f"there is no tool {query.tool}", tool_id=query.tool)
            page = await uow.lots.page(query)
        await self.load_versions_of(page.lots)
        return page

    async def heads(
        self,
        states: Sequence[LotState],
        *,
        tools: Sequence[str] | None = None,
        by: Principal | None = None,
    ) -> list[LotHead]:
        """What dispatching needs of the lots in ``states``, most urgent first; given
        ``tools``, only those running on one of them (read by the store, not filtered after)."""
        heads = await self._read(get_heads(states, tools), by)
        await self.load_versions_of(heads)
        return heads

    async def dispatch_view(
        self, states: Sequence[LotState], line: str, *, by: Principal | None = None
    ) -> tuple[list[LotHead], dict[str, DispatchMode]]:
        """What a dispatch pass needs, read together: the heads of the lots in ``states``
        (:meth:`heads`), and the dispatch mode of each tool of the line controller ``line``,
        by tool id (an operator's switch to manual counts from the next pass)."""

        def work() -> Work[tuple[list[LotHead], dict[str, DispatchMode]]]:
            heads = yield from get_heads(states)
            modes = yield from get_dispatch_modes(line)
            return heads, modes

        heads, modes = await self._read(work(), by)
        await self.load_versions_of(heads)
        return heads, modes

    def next_steps(self, lot: Lot) -> frozenset[str]:
        return common.next_steps(lot, self.flow_of(lot))

    def next_in_order(self, lot: Lot | LotHead) -> tuple[str, ...]:
        """A waiting lot's next steps in the order its flow writes them."""
        return common.next_in_order(lot, self.flow_of(lot))

    def next_in_order_after_step(self, lot: Lot) -> tuple[str, ...]:
        """A running lot's next steps once its running step is tracked out, in flow order."""
        return common.next_in_order_after_step(lot, self.flow_of(lot))

    async def carriers(self, lot_id: str, *, by: Principal | None = None) -> list[Carrier]:
        return await self._read(get_carriers(lot_id), by)

    async def rejected_sites(self, lot_id: str, *, by: Principal | None = None) -> list[SiteReject]:
        return await self._read(get_rejects(lot_id), by)


def step_view_work(lot: Lot) -> Work[StepView]:
    """What running the lot's current step takes, read as work (in a transaction of its own,
    or in a track-in's)."""
    step = lot.running.step if lot.running else None
    jobs, carriers, rejects = yield from together(  # one round trip
        get_jobs_of(lot.id, len(lot.path), step=step), get_carriers(lot.id), get_rejects(lot.id)
    )
    return StepView(lot, jobs, carriers, rejects)
