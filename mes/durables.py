"""Durables' service side: engineering's and maintenance's commands on durables (one
transaction each), the track-in interlock on a tool's durables, and the counting of each job
a tool records (both inside the lot's own transaction).

The rules are pure (:mod:`mes.domain.durables`); docs/interlocks.md, "Durables", says where
each comes from.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from flows import Flow
from mes.domain import durables as rules
from mes.domain.authority import Action, Principal
from mes.domain.commands import TrackIn
from mes.domain.durables import Changed, Durable, DurableEvent
from mes.domain.errors import InvalidInput, UnknownDurable, UnknownTool
from mes.domain.interlocks import MANUAL_CLASS
from mes.domain.model import Change, JobRecord, JobStatus, Lot, SiteRef, SiteReject
from mes.guard import Guard, Guarded, SecurityLog
from mes.known_tools import naming_the_tools
from mes.ports import (
    UnitOfWorkFactory,
    Work,
    get_jobs_of,
    get_lots_running_on,
    get_rejects_by_site,
    get_tools,
    together,
)
from mes.ports_durables import (
    DurablePage,
    DurableQuery,
    get_durable_events,
    get_durable_page,
    get_durables,
    get_mounted,
    save_durables,
)


def durable_interlock(lot: Lot, flow: Flow, cmd: TrackIn) -> Work[list[str]]:
    """Refuse ``cmd`` (InterlockRefused ``durable_life``) if a durable mounted on the tool it
    names is spent, or the lot's carriers still to run at the step would take one past its
    life, counting the tool's jobs not yet recorded (the line controller tracks a tool's
    next lot in while the last one's results are recorded); else the warnings to record
    with the track-in. One query: the durables mounted on the tool with those jobs; with the
    step's jobs beside it only when the lot resumes a step a hold or an abort stopped (its
    carriers done there are not run again). A track-in without a tool, or of a step the flow
    does not have or an operator step, reads nothing."""
    if cmd.tool is None or cmd.step not in flow.steps:
        return []
    if flow.steps[cmd.step].equipment_class == MANUAL_CLASS:
        return []
    if lot.pending_rework == cmd.step:  # it may resume the step (ops.unfinished)
        mounted, step_jobs = yield from together(
            get_mounted(cmd.tool), get_jobs_of(lot.id, len(lot.path), step=cmd.step)
        )
    else:
        mounted, step_jobs = (yield from get_mounted(cmd.tool)), []
    need = rules.lot_need(lot, cmd.step, step_jobs)
    return rules.check_durables(lot.id, cmd.step, cmd.tool, mounted.durables, mounted.pending, need)


def _processed(lot: Lot, carrier_id: str, rejected: Mapping[SiteRef, SiteReject]) -> int:
    """The sites of a carrier that did not come in bad (rejected at an earlier step)."""
    skipped = sum(1 for site in rejected if site.carrier_id == carrier_id)
    return max(lot.site_rows * lot.site_cols - skipped, 0)


def count_job(
    lot: Lot,
    job: JobRecord,
    rejected: Mapping[SiteRef, SiteReject],
    by: str,
    now: datetime,
    who: Principal | None,
) -> Work[None]:
    """Add one recorded job (one carrier) to the count of each durable mounted on its tool,
    with an event naming the lot, step and job (one query when the tool has none); ``who``
    recorded it (the event feed's ``by``)."""
    on_tool = yield from get_durables(tool_id=job.tool_id)
    if not on_tool:
        return
    used = rules.use(
        on_tool,
        lot_id=lot.id,
        step=job.step,
        job_id=job.job_id,
        rows=lot.site_rows,
        cols=lot.site_cols,
        processed_sites=_processed(lot, job.carrier_id, rejected),
        by=by,
        now=now,
    )
    yield from save_durables(rules.stamped(used, who))


def count_track_out(
    lot: Lot,
    by: str,
    now: datetime,
    who: Principal | None,
    rejected: Mapping[SiteRef, SiteReject] | None = None,
) -> Work[None]:
    """An operator's track-out of a step run on a tool: every carrier of the lot that no job
    of the tool recorded (those are counted already) counts as one job on each durable
    mounted on the tool. ``rejected``: the lot's rejected sites, if read already. One query
    when the tool has no durables."""
    running = lot.running
    if running is None or running.tool is None:
        return
    on_tool = yield from get_durables(running_lot=lot.id)  # as read with the lot: its tool's
    if not on_tool:
        return
    if rejected is None:  # side by side: one round trip
        rejected, jobs = yield from together(
            get_rejects_by_site(lot.id), get_jobs_of(lot.id, len(lot.path), step=running.step)
        )
    else:
        jobs = yield from get_jobs_of(lot.id, len(lot.path), step=running.step)
    skip = {j.carrier_id for j in jobs if j.status is JobStatus.RECORDED}
    carriers = [(c, None) for c in lot.carriers if c not in skip]
    used = _use_each(on_tool, lot, running.step, carriers, rejected, by, now)
    yield from save_durables(rules.stamped(used, who))


ABANDONED_REASON = "job abandoned before its results: counted as if all its sites were processed"


def count_abandoned(
    lot: Lot, change: Change, by: str, now: datetime, who: Principal | None
) -> Work[None]:
    """The jobs a hold or an abort of a running step abandons (``change.jobs``): the tool took
    each and may have run it to its end, but reports nothing of it now, so each counts as a
    whole job on the durables mounted on its tool, the most it can have used (as a track-in
    counts a job in flight). Not counting them let a capillary past its life bond lots after
    every interrupted job. Nothing is read when no job is abandoned."""
    abandoned = [j for j, _ in change.jobs if j.status is JobStatus.ABANDONED]
    if not abandoned:
        return
    for tool_id in dict.fromkeys(j.tool_id for j in abandoned):
        on_tool, rejected = yield from together(
            get_durables(tool_id=tool_id), get_rejects_by_site(lot.id)
        )
        if not on_tool:
            continue
        jobs = [(j.carrier_id, j) for j in abandoned if j.tool_id == tool_id]
        used = _use_each(on_tool, lot, jobs[0][1].step, jobs, rejected, by, now, ABANDONED_REASON)
        yield from save_durables(rules.stamped(used, who))


def _use_each(
    on_tool: Sequence[Durable],
    lot: Lot,
    step: str,
    carriers: Sequence[tuple[str, JobRecord | None]],
    rejected: Mapping[SiteRef, SiteReject],
    by: str,
    now: datetime,
    reason: str | None = None,
) -> list[Changed]:
    """Each carrier (with its job, if the tool had one) counted as one job on each durable of
    ``on_tool``: one event per durable with the sum."""
    total: dict[str, Changed] = {}
    for carrier, job in carriers:
        current = [total[d.id][0] if d.id in total else d for d in on_tool]
        for after, event in rules.use(
            current,
            lot_id=lot.id,
            step=step,
            job_id=job.job_id if job is not None and len(carriers) == 1 else None,
            rows=lot.site_rows,
            cols=lot.site_cols,
            processed_sites=_processed(lot, carrier, rejected),
            by=by,
            now=now,
        ):
            before = total.get(after.id)
            amount = event.amount + (before[1].amount if before else 0)
            total[after.id] = (after, replace(event, amount=amount, reason=reason))
    return list(total.values())


@dataclass(frozen=True, slots=True)
class DurableView:
    """A durable and its history (``durable show``)."""

    durable: Durable
    events: list[DurableEvent]

    @property
    def lots(self) -> list[str]:
        """The lots it served, in the order it first served them."""
        return list(dict.fromkeys(e.lot_id for e in self.events if e.lot_id is not None))


class DurableService(Guarded):
    """Durables: added by engineering, mounted and unmounted by technicians, counted by the
    jobs their tools run."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Callable[[], datetime],
        *,
        principal: Principal | None = None,
        security: SecurityLog | None = None,
    ):
        self._uow = uow
        self._clock = clock
        self._guard = Guard(principal, security, clock)

    async def _change(self, work: Callable[[], Work[Changed]], by: Principal | None) -> Durable:
        await self._guard.allow(by, Action.DURABLES)
        who = self._guard.who(by)

        def write() -> Work[Durable]:
            changed = rules.stamped([(yield from work())], who)
            yield from save_durables(changed)
            return changed[0][0]

        try:
            return await self._uow.write(write())
        except UnknownTool as unknown:  # the tools there are, as the tool commands say them
            raise await naming_the_tools(self._uow, unknown) from None

    def _read_one(self, durable_id: str) -> Work[Durable]:
        found = yield from get_durables([durable_id])
        if not found:
            raise UnknownDurable(f"there is no durable {durable_id}")
        return found[0]

    async def add(
        self,
        durable_id: str,
        kind: str,
        life: int,
        user: str,
        *,
        warn_fraction: float = rules.DEFAULT_WARN_FRACTION,
        description: str | None = None,
        by: Principal | None = None,
    ) -> Durable:
        def work() -> Work[Changed]:
            found = yield from get_durables([durable_id])
            return rules.add(
                durable_id,
                kind,
                life,
                warn_fraction,
                user,
                self._clock(),
                existing=found[0] if found else None,
                description=description,
            )

        return await self._change(work, by)

    async def mount(
        self, durable_id: str, tool_id: str, user: str, *, by: Principal | None = None
    ) -> Durable:
        def work() -> Work[Changed]:
            durable = yield from self._read_one(durable_id)
            tool = (yield from get_tools([tool_id])).get(tool_id)
            if tool is None:
                raise UnknownTool(f"there is no tool {tool_id}", tool_id=tool_id)
            on_tool, running = yield from together(
                get_durables(tool_id=tool_id), get_lots_running_on(tool_id)
            )
            return rules.mount(
                durable, tool_id, tool.equipment_class, on_tool, user, self._clock(), running
            )

        return await self._change(work, by)

    async def unmount(
        self,
        durable_id: str,
        user: str,
        reason: str | None = None,
        *,
        by: Principal | None = None,
    ) -> Durable:
        def work() -> Work[Changed]:
            durable = yield from self._read_one(durable_id)
            running = (
                [] if durable.tool_id is None else (yield from get_lots_running_on(durable.tool_id))
            )
            return rules.unmount(durable, user, self._clock(), reason, running)

        return await self._change(work, by)

    async def renew(
        self, durable_id: str, user: str, reason: str, *, by: Principal | None = None
    ) -> Durable:
        def work() -> Work[Changed]:
            durable = yield from self._read_one(durable_id)
            running: list[str] = []
            if durable.tool_id is not None:
                running = yield from get_lots_running_on(durable.tool_id)
            return rules.renew(durable, user, self._clock(), reason, running)

        return await self._change(work, by)

    async def show(self, durable_id: str, *, by: Principal | None = None) -> DurableView:
        await self._guard.allow(by, Action.READ)

        def work() -> Work[DurableView]:
            durable = yield from self._read_one(durable_id)
            return DurableView(durable, (yield from get_durable_events(durable_id=durable_id)))

        async with self._uow(readonly=True) as uow:
            return await uow.run(work(), commit=True)

    async def list(
        self, *, tool_id: str | None = None, mounted: bool = False, by: Principal | None = None
    ) -> Sequence[Durable]:
        """Every durable, or those mounted on ``tool_id``, or on any tool (``mounted``)."""
        await self._guard.allow(by, Action.READ)
        async with self._uow(readonly=True) as uow:
            if tool_id is not None and not (await uow.run(get_tools([tool_id]))):
                raise await naming_the_tools(
                    self._uow, UnknownTool(f"there is no tool {tool_id}", tool_id=tool_id)
                )
            return await uow.run(get_durables(tool_id=tool_id, mounted=mounted), commit=True)

    async def page(self, query: DurableQuery, *, by: Principal | None = None) -> DurablePage:
        """One page of a durable list (:class:`mes.ports_durables.DurableQuery`): by id,
        filtered in the store, with how many match and whether more follow. Refused for a
        tool or a cursor that names nothing, and a limit below 1."""
        await self._guard.allow(by, Action.READ)

        def work() -> Work[DurablePage]:
            if query.limit < 1:
                raise InvalidInput(f"a page holds 1 durable or more, not {query.limit}")
            if query.tool_id is not None and not (yield from get_tools([query.tool_id])):
                raise UnknownTool(f"there is no tool {query.tool_id}", tool_id=query.tool_id)
            if query.after is not None and not (yield from get_durables([query.after])):
                raise UnknownDurable(
                    f"there is no durable {query.after} to list the durables after: "
                    "expected the last id of the page before"
                )
            return (yield from get_durable_page(query))

        try:
            async with self._uow(readonly=True) as uow:
                return await uow.run(work(), commit=True)
        except UnknownTool as unknown:
            raise await naming_the_tools(self._uow, unknown) from None
