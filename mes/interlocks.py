"""The interlocks' service side: the reads each track-in interlock needs, done in the
track-in's own transaction, and engineering's tool qualifications (one transaction per call).

The rules themselves are pure (:mod:`mes.domain.interlocks`); docs/interlocks.md says where
each comes from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from flows import Flow, FlowLibrary
from mes.domain import interlocks as rules
from mes.domain.authority import Action, Principal
from mes.domain.commands import TrackIn
from mes.domain.equipment import DispatchMode, ToolRegistration
from mes.domain.errors import InterlockRefused, InvalidInput, UnknownTool
from mes.domain.interlocks import MANUAL_CLASS, Qualification
from mes.domain.model import Lot, LotHead
from mes.domain.text import optional_line
from mes.engineering import ChangeRecord, qualification_change
from mes.guard import Guard, Guarded, SecurityLog
from mes.known_tools import naming_the_tools
from mes.ports import (
    GetLotsRunningOn,
    GetQualifications,
    GetTools,
    Request,
    UnitOfWorkFactory,
    Work,
    each_together,
    get_last_track_outs,
    get_lot,
    get_lots_running_on,
    get_qualifications,
    get_queue_release,
    get_tools,
    nothing,
    save_qualifications,
    together,
)
from mes.ports_durables import GetMounted
from mes.ports_materials import GetMaterials


def tool_interlock(lot: Lot, flow: Flow, cmd: TrackIn) -> Work[None]:
    """Refuse ``cmd`` (InterlockRefused) unless the tool it names may run its step now
    (:func:`mes.domain.interlocks.check_tool`). A track-in that names no tool, or a step the
    flow does not have (the step rule refuses it, saying what is allowed), reads nothing."""
    if cmd.tool is None or cmd.step not in flow.steps:
        return
    tools, qualifications, running = yield from together(
        get_tools([cmd.tool]),
        get_qualifications(step=cmd.step),
        nothing([]) if cmd.dispatched else get_lots_running_on(cmd.tool),
    )
    busy = [i for i in running if i != lot.id]
    try:
        rules.check_tool(
            lot.id,
            cmd.step,
            flow.steps[cmd.step].equipment_class,
            cmd.tool,
            tools.get(cmd.tool),
            {q.tool_id: q for q in qualifications},
            dispatched=cmd.dispatched,
            busy_with=busy,
        )
    except InterlockRefused as refusal:
        if refusal.interlock not in rules.ELSEWHERE or not refusal.allowed:
            raise
        raise (yield from _where_else(refusal)) from None


def track_in_reads(cmd: TrackIn, flows: FlowLibrary) -> tuple[Request, ...]:
    """What the track-in interlocks of ``cmd`` read first, known from the command alone (the
    tool, the step's qualifications and, for an operator's track-in, what runs on the tool:
    :func:`tool_interlock`; the tool's durables: :func:`mes.durables.durable_interlock`; its
    material lots: :func:`mes.materials.material_interlock`), for the track-in to ask with
    the lot (:func:`mes.ports.asked_with`): one round trip on PostgreSQL, not two. Nothing for
    a track-in that names no tool or a step that is no tool's (those read nothing, or the
    step rule refuses); a read the lot's flow turns out not to need is not used."""
    info = flows.step_codes.get(cmd.step)
    if cmd.tool is None or info is None or info.equipment_class == MANUAL_CLASS:
        return ()
    running = () if cmd.dispatched else (GetLotsRunningOn(cmd.tool),)
    return (
        GetTools((cmd.tool,)),
        GetQualifications(step=cmd.step),
        *running,
        GetMounted(cmd.tool),
        GetMaterials(tool_id=cmd.tool),
    )


def _where_else(refusal: InterlockRefused) -> Work[InterlockRefused]:
    """The refusal naming only the other qualified tools that can take the lot now (a read
    on the refusal's path only: the tools' records, and what runs on those in manual)."""
    others = yield from get_tools(refusal.allowed)
    manual = [t for t, r in others.items() if r.dispatch is not DispatchMode.AUTO]
    running = yield from each_together(get_lots_running_on(t) for t in manual)
    return rules.where_else(refusal, others, dict(zip(manual, running, strict=True)))


def queue_clocks(
    lot: Lot | LotHead, steps: Sequence[str]
) -> Work[tuple[dict[str, datetime], datetime | None]]:
    """What a lot's queue-time limits count from (:func:`mes.domain.queuetimes.waits`): its
    last track-out of each of ``steps``, and when a queue-time hold of it was last released.
    A lot split off that has not left one of the steps itself counts from its parent's
    track-out before the split (and so on up its line), and its parent's release before the
    split counts for it too: a split restarts no clock."""
    track_outs, released = yield from together(
        get_last_track_outs(lot.id, steps), get_queue_release(lot.id)
    )
    missing = [s for s in steps if s not in track_outs]
    child = None
    if missing:
        child = lot if isinstance(lot, Lot) else (yield from get_lot(lot.id))
    while missing and child is not None and child.parent_id is not None:
        parent, until = child.parent_id, child.created_at
        found, theirs = yield from together(
            get_last_track_outs(parent, missing, until), get_queue_release(parent, until)
        )
        track_outs.update(found)
        if theirs is not None and (released is None or theirs > released):
            released = theirs
        missing = [s for s in missing if s not in found]
        child = (yield from get_lot(parent)) if missing else None
    return track_outs, released


def qualify_registered(
    line: str, registrations: Sequence[ToolRegistration], now: datetime
) -> Work[None]:
    """A tool registered for the first time with a step in its configuration is qualified for
    it, by its line controller's configuration (line practice: the configuration is
    engineering's). A (tool, step) engineering already decided on is left as it is: a
    disqualification holds across restarts."""
    new: list[Qualification] = []
    for reg in registrations:
        known = {q.step for q in (yield from get_qualifications(tool_id=reg.id))}
        new.extend(
            Qualification(
                reg.id,
                step,
                True,
                f"line {line}",
                now,
                "in the line controller's configuration when first registered",
            )
            for step in reg.steps
            if step not in known
        )
    yield from save_qualifications(new)


class QualificationService(Guarded):
    """Engineering's qualification table: which tool may run which step. Changes need the
    ``qualify`` row of the roles table (technician, engineer), reads ``read``; a refusal is
    recorded in the security log (:mod:`mes.guard`)."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        flows: FlowLibrary,
        clock: Callable[[], datetime],
        *,
        principal: Principal | None = None,
        security: SecurityLog | None = None,
    ) -> None:
        self._uow = uow
        self._flows = flows
        self._clock = clock
        self._guard = Guard(principal, security, clock)

    async def set(
        self,
        tool_id: str,
        step: str,
        qualified: bool,
        user: str,
        reason: str | None = None,
        *,
        by: Principal | None = None,
    ) -> Qualification:
        """Qualify (or disqualify) ``tool_id`` for ``step``. Refused, changing nothing, for
        a principal without the role, a tool that does not exist or a step its equipment
        class does not run. The change is recorded in the security log (``tool_qualify`` or
        ``tool_disqualify``, the qualification before and after: :mod:`mes.engineering`), in
        the same transaction; qualifying a qualified tool again is a change too (who, when
        and why are the new ones)."""
        await self._guard.allow(by, Action.QUALIFY)
        action = "tool_qualify" if qualified else "tool_disqualify"
        record = ChangeRecord.of(self._guard.who(by), user, action, self._clock())

        def work() -> Work[Qualification]:
            tool = (yield from get_tools([tool_id])).get(tool_id)
            if tool is None:
                raise UnknownTool(f"there is no tool {tool_id}", tool_id=tool_id)
            runs = sorted(
                code
                for code, info in self._flows.step_codes.items()
                if info.equipment_class == tool.equipment_class
            )
            if step not in runs:
                info = self._flows.step_codes.get(step)
                if info is None:
                    what = f"{step} is not a step code"
                elif info.equipment_class == MANUAL_CLASS:
                    what = f"{step} is an operator step, run on no tool"
                else:
                    what = f"{step} runs on a {info.equipment_class}"
                verb = "qualify" if qualified else "disqualify"
                raise InvalidInput(
                    f"cannot {verb} {tool_id} for {step}: {what}, and {tool_id} is a "
                    f"{tool.equipment_class}; expected one of the steps a "
                    f"{tool.equipment_class} runs",
                    allowed=runs,
                )
            why = optional_line(reason, "the reason")
            q = Qualification(tool_id, step, qualified, user, record.at, why)
            before = yield from get_qualifications(step=step, tool_id=tool_id)
            yield from save_qualifications([q])
            yield from record.write(qualification_change(tool_id, step, before, q, why))
            return q

        try:
            return await self._uow.write(work())
        except UnknownTool as unknown:  # the tools there are, as the tool commands say them
            raise await naming_the_tools(self._uow, unknown) from None

    async def list(
        self, *, tool_id: str | None = None, step: str | None = None, by: Principal | None = None
    ) -> list[Qualification]:
        await self._guard.allow(by, Action.READ)
        if step is not None and step not in self._flows.step_codes:
            raise InvalidInput(
                f"step {step}: expected a step code of the flows",
                allowed=sorted(self._flows.step_codes),
            )
        async with self._uow(readonly=True) as uow:
            if tool_id is not None and not (await uow.run(get_tools([tool_id]))):
                unknown = UnknownTool(f"there is no tool {tool_id}", tool_id=tool_id)
            else:
                return await uow.run(get_qualifications(step=step, tool_id=tool_id), commit=True)
        raise await naming_the_tools(self._uow, unknown)
