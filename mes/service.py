"""The lot tracker's service layer: every operation is one transaction.

Read what the rule needs, call the pure rule (:mod:`mes.domain.operations`), write the
change (lots, history, outbox) and commit: written once as :data:`mes.ports.Work`, which the
store runs in one step where it can (on SQLite, one call on the connection's thread). A
refusal raises before anything is written; a concurrent move of the same lot makes the later
transaction fail with ConcurrentUpdate.

Authority is checked here, once, from the principal acting (:mod:`mes.guard`): the service's
own (given when it is built) or one a call names (``by=``). A refusal (NotAuthorized, naming
the roles needed) is checked inside the transaction where it depends on the lot (a release:
who placed the hold), changes nothing, and is recorded as a security event.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from flows import Flow, FlowLibrary, UnknownFlow
from mes.domain import common, genealogy, migration, queuetimes
from mes.domain import jobs as job_rules
from mes.domain import operations as ops
from mes.domain.authority import Action, Context, NotAuthorized, Principal, effective_action
from mes.domain.commands import (
    AbortStep,
    CompleteLot,
    HoldLot,
    MergeLots,
    MigrateLot,
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
from mes.domain.errors import (
    InvalidInput,
    LotExists,
    LotTrackerError,
    OperationNotAllowed,
    UnknownLot,
)
from mes.domain.flowversions import VersionState
from mes.domain.model import (
    Carrier,
    Change,
    HistoryEntry,
    HoldSource,
    JobRecord,
    JobStatus,
    Lot,
    LotHead,
    LotState,
    Operation,
    SiteRef,
    SiteReject,
)
from mes.domain.physical import refuse_unphysical
from mes.domain.report import LotReport, build_report
from mes.domain.signatures import SignatureGiven, SignaturePolicy, SignatureRefused, SignatureStale
from mes.domain.signatures import linked as linked_signatures
from mes.durables import count_job, count_track_out, durable_interlock
from mes.flowversions import VersionedFlows, VersionNotLoaded
from mes.guard import Guard, SecurityLog
from mes.interlocks import tool_interlock
from mes.materials import material_interlock, record_uses
from mes.ports import (
    LotPage,
    LotQuery,
    ToolJob,
    ToolJobPage,
    ToolJobQuery,
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
    get_signatures,
    get_tool_jobs,
    save,
    save_all,
    save_signatures,
)
from mes.reasons import coded_hold, coded_scrap, release_allowed
from mes.signing import SignatureVerifier, Signing
from mes.spc import spc_on_track_out

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

    def acting_as(self, principal: Principal) -> LotService:
        """The same service (store, flows, clock, security log) acting for ``principal``."""
        other = copy.copy(self)
        other._guard = self._guard.acting_as(principal)
        return other

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
        except (SignatureRefused, SignatureStale) as refused:
            await self.signing.refused(self._guard.who(by), refused)
            raise

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

    # -- writing -----------------------------------------------------------------------------

    async def _on_lot(
        self,
        lot_id: str,
        rule: Rule,
        *,
        action: Action,
        by: Principal | None,
        primary: str | None = None,
        signatures: Sequence[SignatureGiven] = (),
    ) -> Outcome:
        who = self._guard.who(by)
        signed = await self.signing.verify(who, action, lot_id, signatures)

        def work() -> Work[Outcome]:
            lot = yield from get_lot(lot_id)
            if lot is None:
                raise UnknownLot(f"there is no lot {lot_id}", lot_id=lot_id)
            context = Context(lot_id, lot.hold.source if lot.hold else None)
            self._guard.check(by, action, context)
            checked = self.signing.check(effective_action(action, context), lot, who, signed)
            decided = rule(lot, self.flow_of(lot))
            change = decided if isinstance(decided, Change) else (yield from decided)
            change, signed_now = self.signing.sign(_stamped(change, who), checked)
            entries = yield from save(change)
            if signed_now:  # in the same transaction, linked to the entry by its hash
                yield from save_signatures(linked_signatures(signed_now, entries[0].hash))
            wanted = primary or lot_id
            return Outcome(next(x for x in change.lots if x.id == wanted), entries)

        return await self._write(work, by)

    async def start(self, cmd: StartLot, *, by: Principal | None = None) -> Outcome:
        """Start a lot on its flow's active version: the newest approved one (a draft or a
        retired version starts no lot)."""
        await self._guard.allow(by, Action.START, Context(cmd.lot_id))
        if self.versions is not None:
            await self.versions.load()  # an approval or retirement since this process began
        if self.versions is None or not self.versions.loaded:
            # no version published at all (a schema made without db upgrade): the files rule
            flow, version = self.flow(cmd.flow), None
        else:
            found = await self.versions.active(cmd.flow)
            if found is None and not self.versions.has(cmd.flow):
                self.flow(cmd.flow)  # no such flow: refused, naming the flows
            if found is None:
                raise OperationNotAllowed(
                    f"flow {cmd.flow} has no approved version: lots start only on an approved "
                    "version (pkgline flow versions; drafts are approved with pkgline flow "
                    "approve)",
                    lot_id=cmd.lot_id,
                )
            version, flow = found
        change = _stamped(ops.start_lot(cmd, flow, self._clock(), version), self._guard.who(by))

        def work() -> Work[Outcome]:
            if (yield from get_lot(cmd.lot_id)) is not None:
                raise LotExists(f"lot {cmd.lot_id} already exists", lot_id=cmd.lot_id)
            return Outcome(change.lot, (yield from save(change)))

        return await self._write(work(), by)

    async def track_in(self, cmd: TrackIn, *, by: Principal | None = None) -> Outcome:
        return await self._on_lot(
            cmd.lot_id,
            lambda lot, flow: self._track_in(lot, flow, cmd),
            action=Action.TRACK_IN,
            by=by,
        )

    def _track_in(self, lot: Lot, flow: Flow, cmd: TrackIn) -> Work[Change]:
        """The track-in rule, after its interlocks (mes.interlocks)."""
        if cmd.step in flow.steps:
            refuse_unphysical(
                flow.steps[cmd.step].recipe, cmd.values, f"track-in of lot {lot.id}", lot.id
            )
        change = ops.track_in(lot, flow, cmd, self._clock())
        yield from tool_interlock(lot, flow, cmd)
        worn = yield from durable_interlock(lot, flow, cmd)
        uses = yield from material_interlock(lot, flow, cmd, change.entries[0].at)
        extra: dict[str, object] = {}
        if worn:  # accepted, with the durables past their warning recorded
            extra["durable_warnings"] = worn
        if uses:  # the material lots loaded on the tool go into the lot
            extra["materials"] = [u.material_id for u in uses]
        limits = queuetimes.limits_before(flow, lot, [cmd.step])
        if limits:
            found = queuetimes.waits(limits, (yield from get_history(lot.id)), self._clock())
            expired = [w for w in found if w.expired]
            if expired:  # on hold instead, with the reason: an engineer decides rework or release
                reason = "; ".join(w.text() for w in expired)
                return ops.hold(
                    lot, HoldLot(lot.id, cmd.user, reason, HoldSource.QUEUE_TIME), self._clock()
                )
            warnings = [w.text() for w in found if w.warned]
            if warnings:
                extra["queue_time_warnings"] = warnings
        if extra:
            entry = change.entries[0]
            change = replace(change, entries=(replace(entry, data={**entry.data, **extra}),))
        yield from record_uses(uses)  # last: nothing after it refuses this track-in
        return change

    async def hold_expired_queue_times(
        self, user: str, *, by: Principal | None = None
    ) -> list[Outcome]:
        """Hold every waiting lot past a queue-time limit of its flow (a line controller
        calls this as it goes): one transaction per lot held."""
        held: list[Outcome] = []
        versioned = self.versions is not None and self.versions.loaded
        if not versioned and not any(f.queue_times for f in self.flows.flows.values()):
            return held
        # heads: kept converted by the store; their versions built (those only)
        for lot in await self.heads([LotState.WAITING]):
            flow = self.flow_of(lot)
            if not flow.queue_times:
                continue
            limits = queuetimes.limits_before(flow, lot, common.next_in_order(lot, flow))
            if not limits:
                continue
            found = queuetimes.waits(limits, await self._read(get_history(lot.id)), self._clock())
            expired = [w for w in found if w.expired]
            if not expired:
                continue
            reason = "; ".join(w.text() for w in expired)
            try:
                held.append(
                    await self.hold(HoldLot(lot.id, user, reason, HoldSource.QUEUE_TIME), by=by)
                )
            except LotTrackerError:
                continue  # it moved meanwhile: its next track-in checks again
        return held

    async def track_out(self, cmd: TrackOut, *, by: Principal | None = None) -> Outcome:
        def rule(lot: Lot, flow: Flow) -> Work[Change]:
            if lot.running is not None:
                measured = flow.steps[lot.running.step].measured
                refuse_unphysical(measured, cmd.measured, f"track-out of lot {lot.id}", lot.id)
            rejected = (yield from _rejected(lot)) if cmd.rejects else None
            change = ops.track_out(lot, flow, cmd, rejected or {}, self._clock())
            yield from count_track_out(lot, cmd.user, self._clock(), rejected)
            return (yield from spc_on_track_out(lot, change, cmd.user, change.entries[0].at))

        return await self._on_lot(cmd.lot_id, rule, action=Action.TRACK_OUT, by=by)

    async def track_in_all(
        self, cmds: Sequence[TrackIn], *, by: Principal | None = None
    ) -> list[TrackedIn | LotTrackerError]:
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
                    self._guard.check(by, Action.TRACK_IN, Context(c.lot_id))
                    decided.append((yield from self._track_in(lot, self.flow_of(lot), c)))
                except LotTrackerError as exc:
                    decided.append(exc)
            who = self._guard.who(by)
            changes = [_stamped(d, who) for d in decided if isinstance(d, Change)]
            written = iter((yield from save_all(changes)))
            results: list[TrackedIn | LotTrackerError] = []
            for d in decided:
                if isinstance(d, LotTrackerError):
                    results.append(d)
                else:
                    view = yield from _step_view(d.lot)
                    results.append(TrackedIn(d.lot, next(written), view))
            return results

        results = await self._write(work, by)
        for result in results:
            if isinstance(result, NotAuthorized):
                await self._guard.refused(by, result)
        return results

    async def abort(self, cmd: AbortStep, *, by: Principal | None = None) -> Outcome:
        def rule(lot: Lot, _: Flow) -> Work[Change]:
            return ops.abort(lot, cmd, self._clock(), (yield from _open_jobs(lot)))

        return await self._on_lot(cmd.lot_id, rule, action=Action.ABORT, by=by)

    async def hold(self, cmd: HoldLot, *, by: Principal | None = None) -> Outcome:
        def rule(lot: Lot, _: Flow) -> Work[Change]:
            coded = yield from coded_hold(cmd)
            step_jobs = (yield from get_jobs_of(lot.id, len(lot.path))) if lot.running else []
            return ops.hold(lot, coded, self._clock(), step_jobs)

        return await self._on_lot(cmd.lot_id, rule, action=Action.HOLD, by=by)

    async def release(
        self,
        cmd: ReleaseLot,
        *,
        by: Principal | None = None,
        signatures: Sequence[SignatureGiven] = (),
    ) -> Outcome:
        """Release a hold: one a claimed limit, an alarm or the controller placed needs
        quality or engineering (:mod:`mes.domain.authority`); one whose reason code names who
        may release it, only by them (:mod:`mes.domain.reasons`).

        Signed (docs/security.md, "Electronic signatures"): ``signatures`` are the signers'
        :class:`~mes.domain.signatures.SignatureGiven`, the first the principal acting
        (``by``), e.g. ``service.release(cmd, by=bob, signatures=(SignatureGiven("bob",
        "approved release", password=..., lot_version=7),))``; two different people where
        the configuration asks. Refusals: SignatureRequired (which action, the meaning
        expected, how many signers), SignatureRefused, SignatureStale (a replay: given for
        another lot version), LoginRefused-like wrong passwords (counted towards the lockout).
        Same for :meth:`scrap`, :meth:`scrap_sites` and :meth:`rework`."""

        def rule(lot: Lot, flow: Flow) -> Work[Change]:
            yield from release_allowed(lot, self._guard.who(by))  # a code may name who
            return ops.release(lot, flow, cmd, self._clock())

        return await self._on_lot(
            cmd.lot_id, rule, action=Action.RELEASE, by=by, signatures=signatures
        )

    async def scrap(
        self,
        cmd: ScrapLot,
        *,
        by: Principal | None = None,
        signatures: Sequence[SignatureGiven] = (),
    ) -> Outcome:
        """Scrap a whole lot (signed, as :meth:`release`), with a scrap reason code or not."""

        def rule(lot: Lot, _: Flow) -> Work[Change]:
            return ops.scrap(lot, (yield from coded_scrap(cmd)), self._clock())

        return await self._on_lot(
            cmd.lot_id, rule, action=Action.SCRAP, by=by, signatures=signatures
        )

    async def scrap_sites(
        self,
        cmd: ScrapSites,
        *,
        by: Principal | None = None,
        signatures: Sequence[SignatureGiven] = (),
    ) -> Outcome:
        """Scrap some sites of a lot (signed, as :meth:`release`)."""

        def rule(lot: Lot, _: Flow) -> Work[Change]:
            return ops.scrap_sites(lot, cmd, (yield from _rejected(lot)), self._clock())

        return await self._on_lot(
            cmd.lot_id, rule, action=Action.SCRAP_SITES, by=by, signatures=signatures
        )

    async def scrap_sites_decided(
        self,
        lot_id: str,
        decide: Callable[[Lot, Mapping[SiteRef, SiteReject]], tuple[ScrapSites, Mapping[str, Any]]],
        *,
        by: Principal | None = None,
        signatures: Sequence[SignatureGiven] = (),
    ) -> Outcome:
        """Scrap the sites that ``decide`` names from the lot and its rejected sites, read in
        the same transaction, with what it returns added to the history entry's data (an
        imported map: :mod:`mes.maps.service`). Signed, as :meth:`release`."""

        def rule(lot: Lot, _: Flow) -> Work[Change]:
            rejected = yield from _rejected(lot)
            cmd, data = decide(lot, rejected)
            change = ops.scrap_sites(lot, cmd, rejected, self._clock())
            entry = change.entries[0]
            return replace(change, entries=(replace(entry, data={**entry.data, **data}),))

        return await self._on_lot(
            lot_id, rule, action=Action.SCRAP_SITES, by=by, signatures=signatures
        )

    async def migrate(
        self,
        cmd: MigrateLot,
        *,
        by: Principal | None = None,
        signatures: Sequence[SignatureGiven] = (),
    ) -> Outcome:
        """Move a lot to another approved version of its flow, where its path so far is valid
        (:mod:`mes.domain.migration`; engineering; signed, as :meth:`release`)."""
        versions = self.versions
        if versions is None:
            raise OperationNotAllowed("this lot tracker has no published flow versions")
        await versions.load()

        def rule(lot: Lot, _: Flow) -> Change:
            state = versions.state(lot.flow, cmd.version)
            target = versions.get(lot.flow, cmd.version)
            if target is None and state is not None:  # built, then the work done again
                raise VersionNotLoaded(lot.flow, cmd.version)
            if target is None or state is not VersionState.APPROVED:
                raise OperationNotAllowed(
                    f"flow {lot.flow} has no version {cmd.version}"
                    if state is None
                    else f"flow {lot.flow} version {cmd.version} is {state.value}: a lot moves "
                    "only to an approved version",
                    lot_id=lot.id,
                )
            return migration.migrate(lot, target, cmd.version, cmd, self._clock())

        return await self._on_lot(
            cmd.lot_id, rule, action=Action.MIGRATE, by=by, signatures=signatures
        )

    async def rework(
        self,
        cmd: ReworkLot,
        *,
        by: Principal | None = None,
        signatures: Sequence[SignatureGiven] = (),
    ) -> Outcome:
        """Send a held lot back to a reworkable step (signed, as :meth:`release`)."""

        def rule(lot: Lot, flow: Flow) -> Work[Change]:
            done = yield from get_jobs_of(lot.id, 0, and_later=True)
            return ops.rework(lot, flow, cmd, self._clock(), done)

        return await self._on_lot(
            cmd.lot_id, rule, action=Action.REWORK, by=by, signatures=signatures
        )

    async def complete(self, cmd: CompleteLot, *, by: Principal | None = None) -> Outcome:
        return await self._on_lot(
            cmd.lot_id,
            lambda lot, flow: ops.complete(lot, flow, cmd, self._clock()),
            action=Action.COMPLETE,
            by=by,
        )

    async def split(self, cmd: SplitLot, *, by: Principal | None = None) -> Outcome:
        def rule(lot: Lot, _: Flow) -> Work[Change]:
            change = genealogy.split(lot, cmd, (yield from get_rejects(lot.id)), self._clock())
            if (yield from get_lot(cmd.child_id)) is not None:
                raise LotExists(f"lot {cmd.child_id} already exists", lot_id=cmd.child_id)
            return change

        return await self._on_lot(
            cmd.lot_id, rule, action=Action.SPLIT, by=by, primary=cmd.child_id
        )

    async def merge(self, cmd: MergeLots, *, by: Principal | None = None) -> Outcome:
        def rule(child: Lot, _: Flow) -> Work[Change]:
            target = yield from get_lot(cmd.into_id)
            if target is None:
                raise UnknownLot(f"there is no lot {cmd.into_id}", lot_id=cmd.into_id)
            return genealogy.merge(child, target, cmd, self._clock())

        return await self._on_lot(
            cmd.child_id, rule, action=Action.MERGE, by=by, primary=cmd.into_id
        )

    # -- jobs (the line controller) ---------------------------------------------------------

    async def start_job(self, cmd: StartJob, *, by: Principal | None = None) -> Outcome:
        """Record that a tool is about to process one carrier of the lot's running step."""

        def rule(lot: Lot, _: Flow) -> Work[Change]:
            jobs = (yield from get_jobs_of(lot.id, len(lot.path))) if lot.running else []
            if (yield from get_job(cmd.job_id)) is not None:
                raise InvalidInput(f"job id {cmd.job_id} is taken", lot_id=lot.id)
            return job_rules.start_job(lot, cmd, jobs, self._clock())

        return await self._on_lot(cmd.lot_id, rule, action=Action.JOB, by=by)

    async def record_job(self, cmd: RecordJob, *, by: Principal | None = None) -> JobOutcome:
        """Record a tool's results for one carrier; the last carrier tracks the lot out.

        Idempotent: results recorded before (a controller that failed before it could tell the
        tool) are not recorded again, and the outcome says so."""

        def work() -> Work[JobOutcome]:
            self._guard.check(by, Action.JOB)
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
                lot, self.flow_of(lot), job, cmd, done, rejected, self._clock()
            )
            if change.lot.state is not LotState.RUNNING:  # the last carrier: tracked out
                change = yield from spc_on_track_out(lot, change, cmd.user, change.entries[-1].at)
            entries = yield from save(_stamped(change, self._guard.who(by)))
            yield from count_job(lot, job, rejected, cmd.user, self._clock())
            recorded = next(j for j, _ in change.jobs if j.job_id == cmd.job_id)
            return JobOutcome(change.lot, recorded, entries)

        return await self._write(work, by)

    async def job(self, job_id: str, *, by: Principal | None = None) -> JobRecord | None:
        return await self._read(get_job(job_id), by)

    async def step_view(self, lot_id: str, *, by: Principal | None = None) -> StepView:
        """The lot, its jobs at its current step, its carriers and its rejected sites: one
        read transaction (the line controller, before it runs a step)."""

        def work() -> Work[StepView]:
            lot = yield from get_lot(lot_id)
            if lot is None:
                raise UnknownLot(f"there is no lot {lot_id}", lot_id=lot_id)
            return (yield from _step_view(lot))

        return await self._read(work, by)

    async def jobs_of_step(self, lot: Lot, *, by: Principal | None = None) -> list[JobRecord]:
        """The jobs of the lot's carriers at its current step occurrence."""
        return await self._read(get_jobs_of(lot.id, len(lot.path)), by)

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
        if since > until or limit < 1:
            raise InvalidInput(
                f"expected a window whose start ({since:%Y-%m-%d %H:%M:%S}) is not after its "
                f"end ({until:%Y-%m-%d %H:%M:%S}) and a limit of 1 or more (got {limit})"
            )
        return await self._read(get_tool_jobs(tool_id, since, until, limit), by)

    async def tool_job_page(
        self, query: ToolJobQuery, *, by: Principal | None = None
    ) -> ToolJobPage:
        """One page of a tool's jobs (:class:`mes.ports.ToolJobQuery`), newest first, with
        how many match and whether more follow. Refused (InvalidInput, nothing read) for a
        window that ends before it starts or a cursor that names no job of the tool."""
        await self._guard.allow(by, Action.READ)
        if query.since is not None and query.until is not None and query.since > query.until:
            raise InvalidInput(
                f"expected a window whose start ({query.since.isoformat()}) is not after its "
                f"end ({query.until.isoformat()})"
            )
        async with self._uow(readonly=True) as uow:
            return await uow.lots.tool_job_page(query)

    # -- reading -----------------------------------------------------------------------------

    async def get(self, lot_id: str, *, by: Principal | None = None) -> Lot:
        lot = await self._read(get_lot(lot_id), by)
        if lot is None:
            raise UnknownLot(f"there is no lot {lot_id}", lot_id=lot_id)
        await self.load_versions_of([lot])
        return lot

    async def report(self, lot_id: str, *, by: Principal | None = None) -> LotReport:
        """Everything ``lot show`` tells, read in one transaction."""

        def work() -> Work[LotReport]:
            lot = yield from get_lot(lot_id)
            if lot is None:
                raise UnknownLot(f"there is no lot {lot_id}", lot_id=lot_id)
            history = yield from _lineage_history(lot_id)
            lots = sorted({e.lot_id for e in history} | {lot_id})
            return build_report(
                lot,
                self.flow_of(lot),
                (yield from get_carriers(lot_id)),
                (yield from get_rejects(lot_id)),
                history,
                (yield from get_children(lot_id)),
                (yield from get_signatures(lots)),
            )

        return await self._read(work, by)

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
        by the store, with how many lots match and whether more follow."""
        await self._guard.allow(by, Action.READ)
        if query.flow is not None:
            self.flow(query.flow)
        async with self._uow(readonly=True) as uow:
            page = await uow.lots.page(query)
        await self.load_versions_of(page.lots)
        return page

    async def heads(
        self, states: Sequence[LotState], *, by: Principal | None = None
    ) -> list[LotHead]:
        """What dispatching needs of the lots in ``states``, most urgent first."""
        heads = await self._read(get_heads(states), by)
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


def _stamped(change: Change, who: Principal | None) -> Change:
    """The change with its history entries saying who made it, and how they were known."""
    if who is None:
        return change
    entries = tuple(replace(e, by=who.name, auth=who.method.value) for e in change.entries)
    return replace(change, entries=entries)


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
