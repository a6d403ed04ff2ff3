"""The lot tracker's service layer: every operation is one transaction.

Read what the rule needs, call the pure rule (:mod:`mes.domain.operations`), write the
change (lots, history, outbox) and commit: written once as :data:`mes.ports.Work`, which the
store runs in one step where it can (on SQLite, one call on the connection's thread). A
refusal raises before anything is written; a concurrent move of the same lot makes the later
transaction fail with ConcurrentUpdate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from flows import Flow, FlowLibrary, UnknownFlow
from mes.domain import common, genealogy
from mes.domain import jobs as job_rules
from mes.domain import operations as ops
from mes.domain.commands import (
    AbortStep,
    CompleteLot,
    HoldLot,
    MergeLots,
    RecordJob,
    ReleaseLot,
    ReworkLot,
    ScrapLot,
    ScrapSites,
    SplitLot,
    StartJob,
    StartLot,
    TrackIn,
    TrackOut,
)
from mes.domain.equipment import DispatchMode
from mes.domain.errors import InvalidInput, LotExists, LotTrackerError, UnknownLot
from mes.domain.model import (
    Carrier,
    Change,
    HistoryEntry,
    JobRecord,
    JobStatus,
    Lot,
    LotHead,
    LotState,
    Operation,
    SiteRef,
    SiteReject,
)
from mes.domain.report import LotReport, build_report
from mes.ports import (
    LotPage,
    LotQuery,
    UnitOfWorkFactory,
    Work,
    get_carriers,
    get_children,
    get_dispatch_modes,
    get_heads,
    get_history,
    get_job,
    get_job_with_lot,
    get_jobs_of,
    get_lot,
    get_rejects,
    save,
    save_all,
)

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


@dataclass(frozen=True, slots=True)
class TrackedIn(Outcome):
    """A lot tracked in by :meth:`LotService.track_in_all`, with what running the step takes,
    read in the same transaction."""

    view: StepView


Rule = Callable[[Lot, Flow], Change | Work[Change]]
"""What an operation on one lot decides: the change, or work that reads more first."""


class LotService:
    """Start, move, hold and end lots; each call is one transaction."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        flows: FlowLibrary,
        clock: Callable[[], datetime] = utc_now,
    ):
        self._uow = uow
        self.flows = flows
        self._clock = clock

    def flow(self, name: str) -> Flow:
        try:
            return self.flows.get(name)
        except UnknownFlow as exc:
            raise InvalidInput(str(exc).strip("'\""), allowed=sorted(self.flows.flows)) from None

    async def _write(self, work: Work[T]) -> T:
        """Do ``work`` in one transaction and commit it (:data:`mes.ports.Work`)."""
        return await self._uow.write(work)

    async def _read(self, work: Work[T]) -> T:
        async with self._uow(readonly=True) as uow:
            return await uow.run(work, commit=True)

    # -- writing -----------------------------------------------------------------------------

    async def _on_lot(self, lot_id: str, rule: Rule, *, primary: str | None = None) -> Outcome:
        def work() -> Work[Outcome]:
            lot = yield from get_lot(lot_id)
            if lot is None:
                raise UnknownLot(f"there is no lot {lot_id}", lot_id=lot_id)
            decided = rule(lot, self.flow(lot.flow))
            change = decided if isinstance(decided, Change) else (yield from decided)
            entries = yield from save(change)
            wanted = primary or lot_id
            return Outcome(next(x for x in change.lots if x.id == wanted), entries)

        return await self._write(work())

    async def start(self, cmd: StartLot) -> Outcome:
        change = ops.start_lot(cmd, self.flow(cmd.flow), self._clock())

        def work() -> Work[Outcome]:
            if (yield from get_lot(cmd.lot_id)) is not None:
                raise LotExists(f"lot {cmd.lot_id} already exists", lot_id=cmd.lot_id)
            return Outcome(change.lot, (yield from save(change)))

        return await self._write(work())

    async def track_in(self, cmd: TrackIn) -> Outcome:
        return await self._on_lot(
            cmd.lot_id, lambda lot, flow: ops.track_in(lot, flow, cmd, self._clock())
        )

    async def track_out(self, cmd: TrackOut) -> Outcome:
        def rule(lot: Lot, flow: Flow) -> Work[Change]:
            rejected = (yield from _rejected(lot)) if cmd.rejects else {}
            return ops.track_out(lot, flow, cmd, rejected, self._clock())

        return await self._on_lot(cmd.lot_id, rule)

    async def track_in_all(self, cmds: Sequence[TrackIn]) -> list[TrackedIn | LotTrackerError]:
        """Several track-ins in one transaction (a dispatch pass over idle tools): for each,
        its outcome with the lot's step view (what running the step takes, so that the tool
        need not read it again), or its refusal (the others are written all the same). A lot
        another transaction moved meanwhile fails them all with ConcurrentUpdate, nothing
        written."""

        def work() -> Work[list[TrackedIn | LotTrackerError]]:
            decided: list[Change | LotTrackerError] = []
            for c in cmds:
                lot = yield from get_lot(c.lot_id)
                try:
                    if lot is None:
                        raise UnknownLot(f"there is no lot {c.lot_id}", lot_id=c.lot_id)
                    decided.append(ops.track_in(lot, self.flow(lot.flow), c, self._clock()))
                except LotTrackerError as exc:
                    decided.append(exc)
            written = iter((yield from save_all([d for d in decided if isinstance(d, Change)])))
            results: list[TrackedIn | LotTrackerError] = []
            for d in decided:
                if isinstance(d, LotTrackerError):
                    results.append(d)
                else:
                    view = yield from _step_view(d.lot)
                    results.append(TrackedIn(d.lot, next(written), view))
            return results

        return await self._write(work())

    async def abort(self, cmd: AbortStep) -> Outcome:
        def rule(lot: Lot, _: Flow) -> Work[Change]:
            return ops.abort(lot, cmd, self._clock(), (yield from _open_jobs(lot)))

        return await self._on_lot(cmd.lot_id, rule)

    async def hold(self, cmd: HoldLot) -> Outcome:
        def rule(lot: Lot, _: Flow) -> Work[Change]:
            return ops.hold(lot, cmd, self._clock(), (yield from _open_jobs(lot)))

        return await self._on_lot(cmd.lot_id, rule)

    async def release(self, cmd: ReleaseLot) -> Outcome:
        return await self._on_lot(
            cmd.lot_id, lambda lot, flow: ops.release(lot, flow, cmd, self._clock())
        )

    async def scrap(self, cmd: ScrapLot) -> Outcome:
        return await self._on_lot(cmd.lot_id, lambda lot, _: ops.scrap(lot, cmd, self._clock()))

    async def scrap_sites(self, cmd: ScrapSites) -> Outcome:
        def rule(lot: Lot, _: Flow) -> Work[Change]:
            return ops.scrap_sites(lot, cmd, (yield from _rejected(lot)), self._clock())

        return await self._on_lot(cmd.lot_id, rule)

    async def rework(self, cmd: ReworkLot) -> Outcome:
        def rule(lot: Lot, flow: Flow) -> Work[Change]:
            done = yield from get_jobs_of(lot.id, 0, and_later=True)
            return ops.rework(lot, flow, cmd, self._clock(), done)

        return await self._on_lot(cmd.lot_id, rule)

    async def complete(self, cmd: CompleteLot) -> Outcome:
        return await self._on_lot(
            cmd.lot_id, lambda lot, flow: ops.complete(lot, flow, cmd, self._clock())
        )

    async def split(self, cmd: SplitLot) -> Outcome:
        def rule(lot: Lot, _: Flow) -> Work[Change]:
            change = genealogy.split(lot, cmd, (yield from get_rejects(lot.id)), self._clock())
            if (yield from get_lot(cmd.child_id)) is not None:
                raise LotExists(f"lot {cmd.child_id} already exists", lot_id=cmd.child_id)
            return change

        return await self._on_lot(cmd.lot_id, rule, primary=cmd.child_id)

    async def merge(self, cmd: MergeLots) -> Outcome:
        def rule(child: Lot, _: Flow) -> Work[Change]:
            target = yield from get_lot(cmd.into_id)
            if target is None:
                raise UnknownLot(f"there is no lot {cmd.into_id}", lot_id=cmd.into_id)
            return genealogy.merge(child, target, cmd, self._clock())

        return await self._on_lot(cmd.child_id, rule, primary=cmd.into_id)

    # -- jobs (the line controller) ---------------------------------------------------------

    async def start_job(self, cmd: StartJob) -> Outcome:
        """Record that a tool is about to process one carrier of the lot's running step."""

        def rule(lot: Lot, _: Flow) -> Work[Change]:
            jobs = (yield from get_jobs_of(lot.id, len(lot.path))) if lot.running else []
            if (yield from get_job(cmd.job_id)) is not None:
                raise InvalidInput(f"job id {cmd.job_id} is taken", lot_id=lot.id)
            return job_rules.start_job(lot, cmd, jobs, self._clock())

        return await self._on_lot(cmd.lot_id, rule)

    async def record_job(self, cmd: RecordJob) -> JobOutcome:
        """Record a tool's results for one carrier; the last carrier tracks the lot out.

        Idempotent: results recorded before (a controller that failed before it could tell the
        tool) are not recorded again, and the outcome says so."""

        def work() -> Work[JobOutcome]:
            found = yield from get_job_with_lot(cmd.job_id)
            if found is None:
                raise InvalidInput(f"there is no job {cmd.job_id}")
            job, lot = found
            if job.status is JobStatus.RECORDED:
                return JobOutcome(lot, job, (), already_recorded=True)
            done = [
                j
                for j in (yield from get_jobs_of(lot.id, job.path_index))
                if j.status is JobStatus.RECORDED
            ]
            rejected = yield from _rejected(lot)
            change = job_rules.record_job(
                lot, self.flow(lot.flow), job, cmd, done, rejected, self._clock()
            )
            entries = yield from save(change)
            recorded = next(j for j, _ in change.jobs if j.job_id == cmd.job_id)
            return JobOutcome(change.lot, recorded, entries)

        return await self._write(work())

    async def job(self, job_id: str) -> JobRecord | None:
        return await self._read(get_job(job_id))

    async def step_view(self, lot_id: str) -> StepView:
        """The lot, its jobs at its current step, its carriers and its rejected sites: one
        read transaction (the line controller, before it runs a step)."""

        def work() -> Work[StepView]:
            lot = yield from get_lot(lot_id)
            if lot is None:
                raise UnknownLot(f"there is no lot {lot_id}", lot_id=lot_id)
            return (yield from _step_view(lot))

        return await self._read(work())

    async def jobs_of_step(self, lot: Lot) -> list[JobRecord]:
        """The jobs of the lot's carriers at its current step occurrence."""
        return await self._read(get_jobs_of(lot.id, len(lot.path)))

    # -- reading -----------------------------------------------------------------------------

    async def get(self, lot_id: str) -> Lot:
        lot = await self._read(get_lot(lot_id))
        if lot is None:
            raise UnknownLot(f"there is no lot {lot_id}", lot_id=lot_id)
        return lot

    async def report(self, lot_id: str) -> LotReport:
        """Everything ``lot show`` tells, read in one transaction."""

        def work() -> Work[LotReport]:
            lot = yield from get_lot(lot_id)
            if lot is None:
                raise UnknownLot(f"there is no lot {lot_id}", lot_id=lot_id)
            history = yield from _lineage_history(lot_id)
            return build_report(
                lot,
                self.flow(lot.flow),
                (yield from get_carriers(lot_id)),
                (yield from get_rejects(lot_id)),
                history,
                (yield from get_children(lot_id)),
            )

        return await self._read(work())

    async def find(
        self, *, states: Sequence[LotState] = (), flow: str | None = None, limit: int = 1000
    ) -> list[Lot]:
        if flow is not None:
            self.flow(flow)
        async with self._uow(readonly=True) as uow:
            return await uow.lots.find(states=states, flow=flow, limit=limit)

    async def page(self, query: LotQuery) -> LotPage:
        """One page of a lot list (:class:`mes.ports.LotQuery`): filtered, ordered and cut
        by the store, with how many lots match and whether more follow."""
        if query.flow is not None:
            self.flow(query.flow)
        async with self._uow(readonly=True) as uow:
            return await uow.lots.page(query)

    async def heads(self, states: Sequence[LotState]) -> list[LotHead]:
        """What dispatching needs of the lots in ``states``, most urgent first."""
        return await self._read(get_heads(states))

    async def dispatch_view(
        self, states: Sequence[LotState], line: str
    ) -> tuple[list[LotHead], dict[str, DispatchMode]]:
        """What a dispatch pass needs, read together: the heads of the lots in ``states``
        (:meth:`heads`), and the dispatch mode of each tool of the line controller ``line``,
        by tool id (an operator's switch to manual counts from the next pass)."""

        def work() -> Work[tuple[list[LotHead], dict[str, DispatchMode]]]:
            heads = yield from get_heads(states)
            modes = yield from get_dispatch_modes(line)
            return heads, modes

        return await self._read(work())

    def next_steps(self, lot: Lot) -> frozenset[str]:
        return common.next_steps(lot, self.flow(lot.flow))

    def next_in_order(self, lot: Lot | LotHead) -> tuple[str, ...]:
        """A waiting lot's next steps in the order its flow writes them."""
        return common.next_in_order(lot, self.flow(lot.flow))

    def next_in_order_after_step(self, lot: Lot) -> tuple[str, ...]:
        """A running lot's next steps once its running step is tracked out, in flow order."""
        return common.next_in_order_after_step(lot, self.flow(lot.flow))

    async def carriers(self, lot_id: str) -> list[Carrier]:
        return await self._read(get_carriers(lot_id))

    async def rejected_sites(self, lot_id: str) -> list[SiteReject]:
        return await self._read(get_rejects(lot_id))


def _step_view(lot: Lot) -> Work[StepView]:
    return StepView(
        lot,
        (yield from get_jobs_of(lot.id, len(lot.path))),
        (yield from get_carriers(lot.id)),
        (yield from get_rejects(lot.id)),
    )


def _open_jobs(lot: Lot) -> Work[list[JobRecord]]:
    if lot.running is None:
        return []
    jobs = yield from get_jobs_of(lot.id, len(lot.path))
    return [j for j in jobs if j.status is JobStatus.STARTED]


def _rejected(lot: Lot) -> Work[dict[SiteRef, SiteReject]]:
    return {r.site: r for r in (yield from get_rejects(lot.id))}


def _lineage_history(lot_id: str) -> Work[list[HistoryEntry]]:
    """A lot's history preceded by its ancestors' history up to each split."""
    own = yield from get_history(lot_id)
    if own and own[0].operation is Operation.SPLIT_FROM:
        parent = str(own[0].data.get("parent"))
        inherited: list[HistoryEntry] = []
        seen = {lot_id}
        before = own[0].seq
        while parent not in seen:
            seen.add(parent)
            rows = yield from get_history(parent, before_seq=before)
            inherited = rows + inherited
            if not rows or rows[0].operation is not Operation.SPLIT_FROM:
                break
            parent, before = str(rows[0].data.get("parent")), rows[0].seq
        return inherited + own
    return own
