"""The lot tracker's service layer: every operation is one transaction.

Load what the rule needs, call the pure rule (:mod:`mes.domain.operations`), write the
change (lots, history, outbox) and commit. A refusal raises before anything is written; a
concurrent move of the same lot makes the later transaction fail with ConcurrentUpdate.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

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
from mes.ports import LotRepository, UnitOfWorkFactory


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


Rule = Callable[[Lot, Flow, LotRepository], Awaitable[Change]]


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

    # -- writing -----------------------------------------------------------------------------

    async def _on_lot(self, lot_id: str, rule: Rule, *, primary: str | None = None) -> Outcome:
        async with self._uow() as uow:
            lot = await uow.lots.get(lot_id)
            if lot is None:
                raise UnknownLot(f"there is no lot {lot_id}", lot_id=lot_id)
            change = await rule(lot, self.flow(lot.flow), uow.lots)
            (entries,) = await uow.save_and_commit([change])
        wanted = primary or lot_id
        return Outcome(next(x for x in change.lots if x.id == wanted), entries)

    async def start(self, cmd: StartLot) -> Outcome:
        change = ops.start_lot(cmd, self.flow(cmd.flow), self._clock())
        async with self._uow() as uow:
            if await uow.lots.get(cmd.lot_id) is not None:
                raise LotExists(f"lot {cmd.lot_id} already exists", lot_id=cmd.lot_id)
            (entries,) = await uow.save_and_commit([change])
        return Outcome(change.lot, entries)

    async def track_in(self, cmd: TrackIn) -> Outcome:
        async def rule(lot: Lot, flow: Flow, _: LotRepository) -> Change:
            return ops.track_in(lot, flow, cmd, self._clock())

        return await self._on_lot(cmd.lot_id, rule)

    async def track_out(self, cmd: TrackOut) -> Outcome:
        async def rule(lot: Lot, flow: Flow, repo: LotRepository) -> Change:
            rejected = await _rejected(repo, lot) if cmd.rejects else {}
            return ops.track_out(lot, flow, cmd, rejected, self._clock())

        return await self._on_lot(cmd.lot_id, rule)

    async def track_in_all(self, cmds: Sequence[TrackIn]) -> list[Outcome | LotTrackerError]:
        """Several track-ins in one transaction (a dispatch pass over idle tools): for each,
        its outcome, or its refusal (the others are written all the same). A lot another
        transaction moved meanwhile fails them all with ConcurrentUpdate, nothing written."""
        decided: list[Change | LotTrackerError] = []
        async with self._uow() as uow:
            for c in cmds:
                lot = await uow.lots.get(c.lot_id)
                try:
                    if lot is None:
                        raise UnknownLot(f"there is no lot {c.lot_id}", lot_id=c.lot_id)
                    decided.append(ops.track_in(lot, self.flow(lot.flow), c, self._clock()))
                except LotTrackerError as exc:
                    decided.append(exc)
            changes = [d for d in decided if isinstance(d, Change)]
            written = iter(await uow.save_and_commit(changes) if changes else ())
        return [
            d if isinstance(d, LotTrackerError) else Outcome(d.lot, next(written)) for d in decided
        ]

    async def abort(self, cmd: AbortStep) -> Outcome:
        async def rule(lot: Lot, _: Flow, repo: LotRepository) -> Change:
            return ops.abort(lot, cmd, self._clock(), await _open_jobs(repo, lot))

        return await self._on_lot(cmd.lot_id, rule)

    async def hold(self, cmd: HoldLot) -> Outcome:
        async def rule(lot: Lot, _: Flow, repo: LotRepository) -> Change:
            return ops.hold(lot, cmd, self._clock(), await _open_jobs(repo, lot))

        return await self._on_lot(cmd.lot_id, rule)

    async def release(self, cmd: ReleaseLot) -> Outcome:
        async def rule(lot: Lot, flow: Flow, _: LotRepository) -> Change:
            return ops.release(lot, flow, cmd, self._clock())

        return await self._on_lot(cmd.lot_id, rule)

    async def scrap(self, cmd: ScrapLot) -> Outcome:
        async def rule(lot: Lot, _: Flow, __: LotRepository) -> Change:
            return ops.scrap(lot, cmd, self._clock())

        return await self._on_lot(cmd.lot_id, rule)

    async def scrap_sites(self, cmd: ScrapSites) -> Outcome:
        async def rule(lot: Lot, _: Flow, repo: LotRepository) -> Change:
            return ops.scrap_sites(lot, cmd, await _rejected(repo, lot), self._clock())

        return await self._on_lot(cmd.lot_id, rule)

    async def rework(self, cmd: ReworkLot) -> Outcome:
        async def rule(lot: Lot, flow: Flow, repo: LotRepository) -> Change:
            done = await repo.jobs_of(lot.id, 0, and_later=True)
            return ops.rework(lot, flow, cmd, self._clock(), done)

        return await self._on_lot(cmd.lot_id, rule)

    async def complete(self, cmd: CompleteLot) -> Outcome:
        async def rule(lot: Lot, flow: Flow, _: LotRepository) -> Change:
            return ops.complete(lot, flow, cmd, self._clock())

        return await self._on_lot(cmd.lot_id, rule)

    async def split(self, cmd: SplitLot) -> Outcome:
        async def rule(lot: Lot, _: Flow, repo: LotRepository) -> Change:
            change = genealogy.split(lot, cmd, await repo.rejects(lot.id), self._clock())
            if await repo.get(cmd.child_id) is not None:
                raise LotExists(f"lot {cmd.child_id} already exists", lot_id=cmd.child_id)
            return change

        return await self._on_lot(cmd.lot_id, rule, primary=cmd.child_id)

    async def merge(self, cmd: MergeLots) -> Outcome:
        async def rule(child: Lot, _: Flow, repo: LotRepository) -> Change:
            target = await repo.get(cmd.into_id)
            if target is None:
                raise UnknownLot(f"there is no lot {cmd.into_id}", lot_id=cmd.into_id)
            return genealogy.merge(child, target, cmd, self._clock())

        return await self._on_lot(cmd.child_id, rule, primary=cmd.into_id)

    # -- jobs (the line controller) ---------------------------------------------------------

    async def start_job(self, cmd: StartJob) -> Outcome:
        """Record that a tool is about to process one carrier of the lot's running step."""

        async def rule(lot: Lot, _: Flow, repo: LotRepository) -> Change:
            jobs = await repo.jobs_of(lot.id, len(lot.path)) if lot.running else []
            if await repo.job(cmd.job_id) is not None:
                raise InvalidInput(f"job id {cmd.job_id} is taken", lot_id=lot.id)
            return job_rules.start_job(lot, cmd, jobs, self._clock())

        return await self._on_lot(cmd.lot_id, rule)

    async def record_job(self, cmd: RecordJob) -> JobOutcome:
        """Record a tool's results for one carrier; the last carrier tracks the lot out.

        Idempotent: results recorded before (a controller that failed before it could tell the
        tool) are not recorded again, and the outcome says so."""
        async with self._uow() as uow:
            repo = uow.lots
            job = await repo.job(cmd.job_id)
            if job is None:
                raise InvalidInput(f"there is no job {cmd.job_id}")
            lot = await repo.get(job.lot_id)
            assert lot is not None
            if job.status is JobStatus.RECORDED:
                return JobOutcome(lot, job, (), already_recorded=True)
            done = [
                j
                for j in await repo.jobs_of(lot.id, job.path_index)
                if j.status is JobStatus.RECORDED
            ]
            change = job_rules.record_job(
                lot, self.flow(lot.flow), job, cmd, done, await _rejected(repo, lot), self._clock()
            )
            (entries,) = await uow.save_and_commit([change])
        recorded = next(j for j, _ in change.jobs if j.job_id == cmd.job_id)
        return JobOutcome(change.lot, recorded, entries)

    async def job(self, job_id: str) -> JobRecord | None:
        async with self._uow(readonly=True) as uow:
            return await uow.lots.job(job_id)

    async def step_view(self, lot_id: str) -> StepView:
        """The lot, its jobs at its current step, its carriers and its rejected sites: one
        read transaction (the line controller, before it runs a step)."""
        async with self._uow(readonly=True) as uow:
            repo = uow.lots
            lot = await repo.get(lot_id)
            if lot is None:
                raise UnknownLot(f"there is no lot {lot_id}", lot_id=lot_id)
            return StepView(
                lot,
                await repo.jobs_of(lot.id, len(lot.path)),
                await repo.carriers(lot.id),
                await repo.rejects(lot.id),
            )

    async def jobs_of_step(self, lot: Lot) -> list[JobRecord]:
        """The jobs of the lot's carriers at its current step occurrence."""
        async with self._uow(readonly=True) as uow:
            return await uow.lots.jobs_of(lot.id, len(lot.path))

    # -- reading -----------------------------------------------------------------------------

    async def get(self, lot_id: str) -> Lot:
        async with self._uow(readonly=True) as uow:
            lot = await uow.lots.get(lot_id)
        if lot is None:
            raise UnknownLot(f"there is no lot {lot_id}", lot_id=lot_id)
        return lot

    async def report(self, lot_id: str) -> LotReport:
        """Everything ``lot show`` tells, read in one transaction."""
        async with self._uow(readonly=True) as uow:
            repo = uow.lots
            lot = await repo.get(lot_id)
            if lot is None:
                raise UnknownLot(f"there is no lot {lot_id}", lot_id=lot_id)
            history = await _lineage_history(repo, lot_id)
            return build_report(
                lot,
                self.flow(lot.flow),
                await repo.carriers(lot_id),
                await repo.rejects(lot_id),
                history,
                await repo.children(lot_id),
            )

    async def find(
        self, *, states: Sequence[LotState] = (), flow: str | None = None, limit: int = 1000
    ) -> list[Lot]:
        if flow is not None:
            self.flow(flow)
        async with self._uow(readonly=True) as uow:
            return await uow.lots.find(states=states, flow=flow, limit=limit)

    async def heads(self, states: Sequence[LotState]) -> list[LotHead]:
        """What dispatching needs of the lots in ``states``, most urgent first."""
        async with self._uow(readonly=True) as uow:
            return await uow.lots.heads(states)

    def next_steps(self, lot: Lot) -> frozenset[str]:
        return common.next_steps(lot, self.flow(lot.flow))

    def next_in_order(self, lot: Lot | LotHead) -> tuple[str, ...]:
        """A waiting lot's next steps in the order its flow writes them."""
        return common.next_in_order(lot, self.flow(lot.flow))

    async def carriers(self, lot_id: str) -> list[Carrier]:
        async with self._uow(readonly=True) as uow:
            return await uow.lots.carriers(lot_id)

    async def rejected_sites(self, lot_id: str) -> list[SiteReject]:
        async with self._uow(readonly=True) as uow:
            return await uow.lots.rejects(lot_id)


async def _open_jobs(repo: LotRepository, lot: Lot) -> list[JobRecord]:
    if lot.running is None:
        return []
    return [j for j in await repo.jobs_of(lot.id, len(lot.path)) if j.status is JobStatus.STARTED]


async def _rejected(repo: LotRepository, lot: Lot) -> dict[SiteRef, SiteReject]:
    return {r.site: r for r in await repo.rejects(lot.id)}


async def _lineage_history(repo: LotRepository, lot_id: str) -> list[HistoryEntry]:
    """A lot's history preceded by its ancestors' history up to each split."""
    own = await repo.history(lot_id)
    if own and own[0].operation is Operation.SPLIT_FROM:
        parent = str(own[0].data.get("parent"))
        inherited: list[HistoryEntry] = []
        seen = {lot_id}
        before = own[0].seq
        while parent not in seen:
            seen.add(parent)
            rows = await repo.history(parent, before_seq=before)
            inherited = rows + inherited
            if not rows or rows[0].operation is not Operation.SPLIT_FROM:
                break
            parent, before = str(rows[0].data.get("parent")), rows[0].seq
        return inherited + own
    return own
