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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from flows import Flow
from flows.model import QueueTime
from mes.domain import common, genealogy, migration, queuetimes
from mes.domain import operations as ops
from mes.domain import steps as step_ops
from mes.domain.authority import Action, Context, NotAuthorized, Principal
from mes.domain.commands import (
    AbortStep,
    CompleteLot,
    HoldLot,
    MergeLots,
    MigrateLot,
    ReleaseLot,
    ReworkLot,
    ScrapLot,
    ScrapSites,
    SplitLot,
    StartLot,
    TrackIn,
    TrackOut,
)
from mes.domain.errors import (
    LotExists,
    LotTrackerError,
    OperationNotAllowed,
    SplitMergeNotAllowed,
)
from mes.domain.flowversions import FIRST_VERSION, VersionState
from mes.domain.model import (
    Change,
    HoldSource,
    Lot,
    LotHead,
    LotState,
    SiteRef,
    SiteReject,
)
from mes.domain.physical import refuse_unphysical
from mes.domain.signatures import SignatureGiven
from mes.durables import count_abandoned, count_track_out, durable_interlock
from mes.flowversions import UnknownVersion, VersionNotLoaded
from mes.interlocks import queue_clocks, tool_interlock, track_in_reads
from mes.material_recall import quarantine_gate
from mes.materials import material_interlock, record_uses
from mes.ports import (
    Work,
    each_together,
    get_jobs_of,
    get_lot,
    get_rejects,
    get_rejects_by_site,
    get_step_jobs,
    nothing,
    save,
    save_all,
    together,
)
from mes.ports_durables import GetDurables
from mes.ports_spc import GetCharts
from mes.reasons import coded_hold, coded_scrap, release_allowed
from mes.service_core import (
    JobOutcome,
    Outcome,
    StepView,
    step_view_work,
    utc_now,
)
from mes.service_jobs import LotJobs
from mes.spc import spc_on_track_out

__all__ = ["JobOutcome", "LotService", "Outcome", "StepView", "TrackedIn", "utc_now"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TrackedIn(Outcome):
    """A lot tracked in by :meth:`LotService.track_in_all`, with what running the step takes,
    read in the same transaction."""

    view: StepView


class LotService(LotJobs):
    """Start, move, hold and end lots; each call is one transaction (the reads:
    :class:`mes.service_core.LotServiceCore`)."""

    async def start(self, cmd: StartLot, *, by: Principal | None = None) -> Outcome:
        """Start a lot on its flow's active version: the newest approved one (a draft or a
        retired version starts no lot)."""
        await self._guard.allow(by, Action.START, Context(cmd.lot_id))
        if self.versions is not None:
            await self.versions.load()  # an approval or retirement since this process began
        if self.versions is None or not self.versions.loaded:
            # no version published at all (a schema made without db upgrade): the files rule,
            # as the first version, which db upgrade publishes them as
            flow, version = self.flow(cmd.flow), FIRST_VERSION
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
        # a whole number past 64 bits is refused here, before a limit compares it as a float
        refuse_unphysical(
            flow.lot_params, cmd.params, f"start of lot {cmd.lot_id}", cmd.lot_id, field="params"
        )
        change = common.stamped(
            ops.start_lot(cmd, flow, self._clock(), version), self._guard.who(by)
        )

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
            reads=track_in_reads(cmd, self.flows),
        )

    def _track_in(self, lot: Lot, flow: Flow, cmd: TrackIn) -> Work[Change]:
        """The track-in rule, after its interlocks (mes.interlocks)."""
        if cmd.step in flow.steps:
            refuse_unphysical(
                flow.steps[cmd.step].recipe,
                cmd.values,
                f"track-in of lot {lot.id}",
                lot.id,
                field="values",
            )
        change = step_ops.track_in(lot, flow, cmd, self._clock())
        limits = queuetimes.limits_before(flow, lot, [cmd.step])
        # the interlocks' reads side by side (one round trip); they decide in this order
        _, worn, uses, (since, released) = yield from together(
            tool_interlock(lot, flow, cmd),
            durable_interlock(lot, flow, cmd),
            material_interlock(lot, flow, cmd, change.entries[0].at),
            queue_clocks(lot, queuetimes.first_steps(limits)) if limits else nothing(({}, None)),
        )
        extra: dict[str, object] = {}
        if worn:  # accepted, with the durables past their warning recorded
            extra["durable_warnings"] = worn
        if uses:  # the material lots loaded on the tool go into the lot
            extra["materials"] = [u.material_id for u in uses]
        if limits:
            found = queuetimes.waits(limits, since, self._clock(), released)
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
        waiting: list[tuple[LotHead, list[QueueTime]]] = []
        for lot in await self.heads([LotState.WAITING]):
            flow = self.flow_of(lot)
            if not flow.queue_times:
                continue
            limits = queuetimes.limits_before(flow, lot, common.next_in_order(lot, flow))
            if limits:
                waiting.append((lot, limits))
        # their last track-outs side by side: on PostgreSQL a statement for a hundred lots
        clocks = await self._read(
            each_together(
                queue_clocks(lot, queuetimes.first_steps(limits)) for lot, limits in waiting
            )
        )
        for (lot, limits), (since, released) in zip(waiting, clocks, strict=True):
            found = queuetimes.waits(limits, since, self._clock(), released)
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
                refuse_unphysical(
                    measured, cmd.measured, f"track-out of lot {lot.id}", lot.id, field="measured"
                )
            rejected = (yield from get_rejects_by_site(lot.id)) if cmd.rejects else None
            change = step_ops.track_out(lot, flow, cmd, rejected or {}, self._clock())
            _, change = yield from together(  # their reads side by side
                count_track_out(lot, cmd.user, self._clock(), self._guard.who(by), rejected),
                spc_on_track_out(lot, change, cmd.user, change.entries[0].at),
            )
            return change

        # its durables and charts, those of the tool and step the lot runs, read with the lot
        reads = (GetDurables(running_lot=cmd.lot_id), GetCharts(None, running_lot=cmd.lot_id))
        return await self._on_lot(cmd.lot_id, rule, action=Action.TRACK_OUT, by=by, reads=reads)

    async def track_in_all(
        self, cmds: Sequence[TrackIn], *, by: Principal | None = None
    ) -> list[TrackedIn | LotTrackerError]:
        """Several track-ins in one transaction (a dispatch pass over idle tools): for each,
        its outcome with the lot's step view (what running the step takes, so that the tool
        need not read it again), or its refusal (the others are written all the same). A lot
        another transaction moved meanwhile fails them all with ConcurrentUpdate, nothing
        written."""

        def decide(c: TrackIn, lot: Lot | None) -> Work[Change | LotTrackerError]:
            try:
                if lot is None:
                    raise common.no_lot(c.lot_id)
                self._guard.check(by, Action.TRACK_IN, Context(c.lot_id))
                return (yield from self._track_in(lot, self.flow_of(lot), c))
            except LotTrackerError as exc:
                return exc

        def work() -> Work[list[TrackedIn | LotTrackerError]]:
            # the lots, their interlocks and their step views each read side by side: a pass
            # over ten idle tools costs PostgreSQL a few round trips, not thirty
            lots = yield from each_together(get_lot(c.lot_id) for c in cmds)
            decided = yield from each_together(
                decide(c, lot) for c, lot in zip(cmds, lots, strict=True)
            )
            who = self._guard.who(by)
            changes = [common.stamped(d, who) for d in decided if isinstance(d, Change)]
            written = iter((yield from save_all(changes)))
            moved = [d.lot for d in decided if isinstance(d, Change)]
            views = iter((yield from each_together(step_view_work(lot) for lot in moved)))
            return [
                d
                if isinstance(d, LotTrackerError)
                else TrackedIn(d.lot, next(written), next(views))
                for d in decided
            ]

        results = await self._write(work, by)
        for result in results:
            if isinstance(result, NotAuthorized):
                await self._guard.refused(by, result)
        return results

    async def abort(self, cmd: AbortStep, *, by: Principal | None = None) -> Outcome:
        def rule(lot: Lot, _: Flow) -> Work[Change]:
            change = ops.abort(lot, cmd, self._clock(), (yield from get_step_jobs(lot)))
            yield from count_abandoned(lot, change, cmd.user, self._clock(), self._guard.who(by))
            return change

        return await self._on_lot(cmd.lot_id, rule, action=Action.ABORT, by=by)

    async def hold(self, cmd: HoldLot, *, by: Principal | None = None) -> Outcome:
        def rule(lot: Lot, _: Flow) -> Work[Change]:
            coded = yield from coded_hold(cmd)
            change = ops.hold(lot, coded, self._clock(), (yield from get_step_jobs(lot)))
            yield from count_abandoned(lot, change, cmd.user, self._clock(), self._guard.who(by))
            return change

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
        may release it, only by them (:mod:`mes.domain.reasons`); a lot that got a material
        lot quarantined now, only by a role its quarantine's code names
        (:mod:`mes.domain.material_quarantine`), whatever held it. Checked before any
        signature's password, and again in the transaction.

        Signed (docs/security.md, "Electronic signatures"): ``signatures`` are the signers'
        :class:`~mes.domain.signatures.SignatureGiven`, the first the principal acting
        (``by``), e.g. ``service.release(cmd, by=bob, signatures=(SignatureGiven("bob",
        "approved release", password=..., lot_version=7),))``; two different people where
        the configuration asks. Refusals: SignatureRequired (which action, the meaning
        expected, how many signers), SignatureRefused, SignatureStale (a replay: given for
        another lot version), LoginRefused-like wrong passwords (counted towards the lockout).
        Same for :meth:`scrap`, :meth:`scrap_sites` and :meth:`rework`."""

        def rule(lot: Lot, flow: Flow) -> Change:
            return ops.release(lot, flow, cmd, self._clock())

        return await self._on_lot(
            cmd.lot_id,
            rule,
            action=Action.RELEASE,
            by=by,
            signatures=signatures,
            gate=_release_gate,  # the hold's code may name who; before any password
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
            return ops.scrap_sites(
                lot, cmd, (yield from get_rejects_by_site(lot.id)), self._clock()
            )

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
            rejected = yield from get_rejects_by_site(lot.id)
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
            if state is None:
                raise UnknownVersion(
                    f"flow {lot.flow} has no version {cmd.version}; expected one of its approved "
                    "versions (pkgline flow versions " + lot.flow + ")",
                    lot_id=lot.id,
                )
            if target is None or state is not VersionState.APPROVED:
                raise OperationNotAllowed(
                    f"flow {lot.flow} version {cmd.version} is {state.value}: a lot moves "
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
        """Send a held lot back to a reworkable step (signed, as :meth:`release`); a lot that
        got a quarantined material lot only by a role its quarantine's code names."""

        def rule(lot: Lot, flow: Flow) -> Work[Change]:
            done = yield from get_jobs_of(lot.id, 0, and_later=True)
            return ops.rework(lot, flow, cmd, self._clock(), done)

        return await self._on_lot(
            cmd.lot_id,
            rule,
            action=Action.REWORK,
            by=by,
            signatures=signatures,
            gate=_REWORK_GATE,  # a quarantined material it got; before any password
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
        def rule(child: Lot, flow: Flow) -> Work[Change]:
            target = yield from get_lot(cmd.into_id)
            if target is None:
                raise common.no_lot(cmd.into_id)
            now = self._clock()
            change = genealogy.merge(child, target, cmd, now, flow.checked_later())
            # the merged lot keeps the target's queue-time clock: not one that waited less
            limits = queuetimes.limits_before(flow, child, [q.to_step for q in flow.queue_times])
            if limits:
                steps = queuetimes.first_steps(limits)
                (c_outs, c_released), (t_outs, t_released) = yield from together(
                    queue_clocks(child, steps), queue_clocks(target, steps)
                )
                longer = queuetimes.longer_waits(
                    queuetimes.waits(limits, c_outs, now, c_released),
                    queuetimes.waits(limits, t_outs, now, t_released),
                )
                if longer:
                    raise SplitMergeNotAllowed(
                        queuetimes.longer_wait_text(child.id, target.id, longer), lot_id=child.id
                    )
            return change

        return await self._on_lot(
            cmd.child_id, rule, action=Action.MERGE, by=by, primary=cmd.into_id
        )


_RELEASE_QUARANTINES = quarantine_gate(Action.RELEASE)
_REWORK_GATE = quarantine_gate(Action.REWORK)


def _release_gate(lot: Lot, who: Principal) -> Work[None]:
    """Who may release the lot's hold: the table for its source and its reason code
    (:func:`mes.reasons.release_allowed`), then the quarantines of the material lots it got
    (:func:`mes.material_recall.quarantine_gate`)."""
    yield from release_allowed(lot, who)
    yield from _RELEASE_QUARANTINES(lot, who)
