"""The equipment service: which tools each line controller owns, what state they are in, and
every SEMI E10 state change with its time. Each call is one transaction.

Line controllers register their tools at start (a tool belongs to one controller) and report
what their tools do; operators switch tools between automatic dispatch and manual; anyone can
ask how long a tool spent in each state over a window, and its availability.

Alarm resets go through the database, because the tool's line controller owns the connection
to it (:mod:`mes.alarm_resets`, whose calls the service has).

Authority as in :mod:`mes.service`: the controller's reports need its role, a switch between
automatic and manual a technician's (or an engineer's, or the controller's).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

from mes.alarm_resets import AlarmResets
from mes.domain.authority import Action, Principal
from mes.domain.equipment import (
    RECORDED_STATES,
    UNMONITORED,
    ControllerRecord,
    DispatchMode,
    E10Change,
    LineFence,
    StateTimes,
    ToolPart,
    ToolRecord,
    ToolRegistration,
    ToolSnapshot,
    change_reason,
    line_holder,
    time_in_states,
)
from mes.domain.errors import (
    InvalidInput,
    LineHeld,
    OperationNotAllowed,
    ToolOwnedElsewhere,
    UnknownTool,
)
from mes.domain.text import one_line, optional_line
from mes.domain.tool_down import (
    DECLARABLE,
    InForce,
    as_recorded,
    brought_up,
    declared_down,
    down_refusal,
)
from mes.engineering import ChangeRecord, dispatch_change, down_change
from mes.guard import Guard, SecurityLog
from mes.interlocks import qualify_registered
from mes.ports import (
    ToolPage,
    ToolQuery,
    UnitOfWork,
    UnitOfWorkFactory,
    Work,
    add_changes,
    get_declared_down,
    get_lots_running_on,
    get_tools,
    update_tools,
)
from mes.service import utc_now

NOT_CONNECTED = ToolSnapshot(connected=False, e10="unscheduled_down", reason="not connected yet")


class EquipmentService(AlarmResets):
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Callable[[], datetime] = utc_now,
        *,
        principal: Principal | None = None,
        security: SecurityLog | None = None,
    ):
        self._uow = uow
        self._clock = clock
        self._guard = Guard(principal, security, clock)

    async def register(
        self, line: str, tools: Sequence[ToolRegistration], *, by: Principal | None = None
    ) -> list[ToolRecord]:
        """Claim ``tools`` for the controller ``line``. Refused, changing nothing, when one of
        them belongs to another controller. A tool seen for the first time starts
        unscheduled-down until its controller reaches it."""
        await self._guard.allow(by, Action.TOOL_REPORT)
        now = self._clock()
        out: list[ToolRecord] = []
        async with self._uow() as uow:
            repo = uow.equipment
            for reg in tools:
                known = await repo.tool(reg.id)
                if known is not None and known.line != line:
                    raise ToolOwnedElsewhere(
                        f"tool {reg.id} belongs to line controller {known.line!r}, not {line!r}: "
                        "a tool has one controller; take it out of one configuration",
                    )
                if known is None:
                    record = ToolRecord(
                        id=reg.id,
                        line=line,
                        equipment_class=reg.equipment_class,
                        address=reg.address,
                        steps=reg.steps,
                        dispatch=DispatchMode.AUTO,
                        snapshot=NOT_CONNECTED,
                        e10_since=now,
                        updated_at=now,
                    )
                    await repo.add_tool(record)
                    await repo.add_change(
                        E10Change(reg.id, now, NOT_CONNECTED.e10, None, False, NOT_CONNECTED.reason)
                    )
                else:
                    record = replace(
                        known,
                        equipment_class=reg.equipment_class,
                        address=reg.address,
                        steps=reg.steps,
                        updated_at=now,
                    )
                    await repo.update_tool(record, ToolPart.REGISTRATION)
                out.append(record)
            await uow.run(qualify_registered(line, tools, now))
            await uow.commit()
        return out

    async def report(
        self,
        tool_id: str,
        snapshot: ToolSnapshot,
        at: datetime | None = None,
        *,
        by: Principal | None = None,
    ) -> ToolRecord:
        """What a tool does (as observed at ``at``, default now); an E10 state change is
        recorded with that time."""
        await self._guard.allow(by, Action.TOOL_REPORT)
        applied = await self._uow.write(_apply([(tool_id, snapshot, at or self._clock())]))
        if tool_id not in applied:
            raise UnknownTool(f"there is no tool {tool_id}", tool_id=tool_id)
        return applied[tool_id]

    async def report_many(
        self,
        reports: Sequence[tuple[str, ToolSnapshot, datetime]],
        *,
        only_newer: bool = False,
        by: Principal | None = None,
    ) -> list[str]:
        """Several observations, in order, in one transaction (the controller batches them).
        Those of tools the database does not know are left out: their ids are returned.

        ``only_newer``: an observation made at or before the time of the tool's record is
        already in it and is left out, so that writing the same observations again (a spool
        replayed after a crash between the commit and the spool's truncation, or after a
        commit whose answer was lost) records no E10 change twice. The controller stamps a
        tool's observations with strictly increasing times for that."""
        await self._guard.allow(by, Action.TOOL_REPORT)
        applied = await self._uow.write(_apply(reports, only_newer=only_newer))
        return sorted({tool_id for tool_id, _, _ in reports} - applied.keys())

    async def mark_unmonitored(
        self,
        tool_ids: Sequence[str],
        since: datetime,
        reason: str,
        *,
        by: Principal | None = None,
    ) -> None:
        """No controller follows these tools from ``since`` on (it stopped, or died after its
        last heartbeat): their state is unknown until a controller reaches them again."""
        await self._guard.allow(by, Action.TOOL_REPORT)
        now = self._clock()
        async with self._uow() as uow:
            repo = uow.equipment
            # read locked, as a report does (_apply): a declaration committed meanwhile is kept
            found = await uow.run(get_tools(tool_ids, for_update=True))
            for known in found.values():
                if known.snapshot.e10 == UNMONITORED:
                    continue
                tool_id = known.id
                at = max(since, known.e10_since)
                # What it last did stays on record (last seen READY, with this alarm, ...).
                unknown = replace(known.snapshot, connected=False, e10=UNMONITORED, reason=reason)
                # A tool declared down stays so: people's word, whoever follows it.
                snapshot, reported = as_recorded(known, unknown)
                await repo.update_tool(
                    replace(
                        known,
                        snapshot=snapshot,
                        reported_e10=reported,
                        e10_since=at if known.down is None else known.e10_since,
                        updated_at=now,
                    ),
                    ToolPart.STATE,
                )
                if known.down is None:
                    await repo.add_change(E10Change(tool_id, at, UNMONITORED, None, False, reason))
            await uow.commit()

    async def set_dispatch(
        self,
        tool_id: str,
        mode: DispatchMode,
        user: str,
        reason: str | None = None,
        *,
        by: Principal | None = None,
    ) -> ToolRecord:
        """Put the tool in ``mode`` with who and why, whatever it was (the line controller's
        quarantine marks a tool a person made manual as quarantined). Recorded in the security
        log (``tool_dispatch``, the mode before and after: :mod:`mes.engineering`), in the
        same transaction."""
        record, _ = await self._dispatch(tool_id, mode, user, reason, by, again=True)
        return record

    async def switch_dispatch(
        self,
        tool_id: str,
        mode: DispatchMode,
        user: str,
        reason: str | None = None,
        *,
        by: Principal | None = None,
    ) -> tuple[ToolRecord, bool]:
        """A person's ``tool manual|auto``: the tool and whether it changed. A tool in
        ``mode`` already keeps its record (who switched it, when and why, a quarantine's
        reason): asking twice writes nothing, in the security log neither."""
        return await self._dispatch(tool_id, mode, user, reason, by, again=False)

    async def _dispatch(
        self,
        tool_id: str,
        mode: DispatchMode,
        user: str,
        reason: str | None,
        by: Principal | None,
        *,
        again: bool,
    ) -> tuple[ToolRecord, bool]:
        await self._guard.allow(by, Action.TOOL_MODE)
        now = self._clock()
        change = ChangeRecord.of(self._guard.who(by), user, "tool_dispatch", now)
        reason = optional_line(reason, "the reason")
        async with self._uow() as uow:
            known = await uow.equipment.tool(tool_id)
            if known is None:
                raise UnknownTool(f"there is no tool {tool_id}", tool_id=tool_id)
            if known.dispatch is mode and not again:
                return known, False
            record = replace(
                known, dispatch=mode, dispatch_by=user, dispatch_at=now, dispatch_reason=reason
            )
            await uow.equipment.update_tool(record, ToolPart.DISPATCH)
            await uow.run(change.write(dispatch_change(known, record, reason)), commit=True)
        return record, True

    async def declare_down(
        self,
        tool_id: str,
        e10: str,
        user: str,
        reason: str,
        *,
        by: Principal | None = None,
    ) -> tuple[ToolRecord, bool]:
        """A person's ``tool down``: the tool is ``scheduled_down`` (planned maintenance) or
        ``non_scheduled`` from now on, whatever it reports, until brought up
        (:mod:`mes.domain.tool_down`); the tool and whether it changed (declared so already:
        nothing written). Refused, writing nothing, without a reason or while a lot runs on
        it. Recorded in the security log (``tool_down``), in the same transaction."""
        await self._guard.allow(by, Action.TOOL_DOWN)
        reason = one_line(reason, "the reason")
        if not reason:
            raise InvalidInput(f"a tool goes {e10} with a reason: say why (--reason)")
        now = self._clock()
        change = ChangeRecord.of(self._guard.who(by), user, "tool_down", now)
        async with self._uow() as uow:
            known = await uow.run(_locked_tool(tool_id))
            if known.down == e10:
                return known, False
            running = await uow.run(get_lots_running_on(tool_id))
            refusal = down_refusal(known, e10, running)
            if refusal is not None:
                raise (InvalidInput if e10 not in DECLARABLE else OperationNotAllowed)(refusal)
            record, e10_change = declared_down(
                known, e10, user, reason, now, acting=self._guard.who(by)
            )
            await _write_down(uow, known, record, e10_change, change, reason)
        return record, True

    async def bring_up(
        self, tool_id: str, user: str, reason: str | None = None, *, by: Principal | None = None
    ) -> tuple[ToolRecord, bool]:
        """A person's ``tool up``: the declaration ends and the tool is in the state it
        reports; the tool and whether it changed (not declared down: nothing written).
        Recorded in the security log (``tool_down``, before and after)."""
        await self._guard.allow(by, Action.TOOL_DOWN)
        reason = optional_line(reason, "the reason")
        now = self._clock()
        change = ChangeRecord.of(self._guard.who(by), user, "tool_down", now)
        async with self._uow() as uow:
            known = await uow.run(_locked_tool(tool_id))
            if known.down is None:
                return known, False
            record, e10_change = brought_up(known, user, now, reason, acting=self._guard.who(by))
            await _write_down(uow, known, record, e10_change, change, reason)
        return record, True

    async def tool(self, tool_id: str, *, by: Principal | None = None) -> ToolRecord:
        await self._guard.allow(by, Action.READ)
        async with self._uow(readonly=True) as uow:
            known = await uow.equipment.tool(tool_id)
        if known is None:
            raise UnknownTool(f"there is no tool {tool_id}", tool_id=tool_id)
        return known

    async def declarations_in_force(
        self, line: str, *, by: Principal | None = None
    ) -> dict[str, InForce]:
        """The declarations in force on the tools of ``line``, by tool id (one indexed read
        of the few tools declared; the line controller's live feed polls it)."""
        await self._guard.allow(by, Action.READ)
        async with self._uow(readonly=True) as uow:
            return await uow.run(get_declared_down(line))

    async def tools(
        self, line: str | None = None, *, by: Principal | None = None
    ) -> list[ToolRecord]:
        await self._guard.allow(by, Action.READ)
        async with self._uow(readonly=True) as uow:
            return await uow.equipment.tools(line)

    async def page(self, query: ToolQuery, *, by: Principal | None = None) -> ToolPage:
        """One page of a tool list (:class:`mes.ports.ToolQuery`): filtered, ordered by tool
        id and cut by the store, with how many tools match in all. A bad limit or E10 state
        is InvalidInput, an ``after`` that names no tool UnknownTool."""
        await self._guard.allow(by, Action.READ)
        if query.limit < 1:
            raise InvalidInput(f"limit {query.limit}: a page holds 1 tool or more")
        if query.e10 is not None and query.e10 not in RECORDED_STATES:
            raise InvalidInput(
                f"state {query.e10!r}: expected an E10 state, one of {', '.join(RECORDED_STATES)}"
            )
        if query.dispatch is not None and query.dispatch not in set(DispatchMode):
            raise InvalidInput(
                f"dispatch {query.dispatch!r}: expected one of {', '.join(DispatchMode)}"
            )
        async with self._uow(readonly=True) as uow:
            return await uow.equipment.page(query)

    async def state_times(
        self,
        tool_id: str,
        start: datetime,
        end: datetime | None = None,
        *,
        by: Principal | None = None,
    ) -> StateTimes:
        """Seconds in each E10 state, availability and utilization over [start, end)."""
        await self._guard.allow(by, Action.READ)
        end = end or self._clock()
        if end <= start:
            raise InvalidInput("the window must end after it starts")
        async with self._uow(readonly=True) as uow:
            if await uow.equipment.tool(tool_id) is None:
                raise UnknownTool(f"there is no tool {tool_id}", tool_id=tool_id)
            changes = await uow.equipment.changes(tool_id, start, end)
        return time_in_states(changes, start, end)

    async def changes(
        self, tool_id: str, start: datetime, end: datetime, *, by: Principal | None = None
    ) -> list[E10Change]:
        await self._guard.allow(by, Action.READ)
        async with self._uow(readonly=True) as uow:
            return await uow.equipment.changes(tool_id, start, end)

    async def heartbeat(
        self,
        record: ControllerRecord,
        *,
        fence: LineFence | None = None,
        by: Principal | None = None,
    ) -> None:
        """Record a line controller's heartbeat (its start, status and stop alike). With
        ``fence``, the record is the controller's claim on its line: refused with
        :class:`LineHeld`, writing nothing, while another controller holds the line
        (:func:`~mes.domain.equipment.line_holder`); read and written in one transaction."""
        await self._guard.allow(by, Action.TOOL_REPORT)
        async with self._uow() as uow:
            if fence is not None:
                holder = line_holder(await uow.equipment.controller(record.name), record, fence)
                if holder is not None:
                    raise LineHeld(
                        f"line {record.name} is driven by another line controller "
                        f"({holder.describe()}; heartbeat {holder.heartbeat_at:%H:%M:%S} UTC): "
                        "one controller drives a line; stop that one first"
                    )
            await uow.equipment.save_controller(record)
            await uow.commit()

    async def controllers(self, *, by: Principal | None = None) -> list[ControllerRecord]:
        await self._guard.allow(by, Action.READ)
        async with self._uow(readonly=True) as uow:
            return await uow.equipment.controllers()


def _locked_tool(tool_id: str) -> Work[ToolRecord]:
    """The tool, read locked (a controller's report waits: :func:`_apply`); refused when
    there is none."""
    known = (yield from get_tools([tool_id], for_update=True)).get(tool_id)
    if known is None:
        raise UnknownTool(f"there is no tool {tool_id}", tool_id=tool_id)
    return known


async def _write_down(
    uow: UnitOfWork,
    known: ToolRecord,
    record: ToolRecord,
    e10_change: E10Change | None,
    change: ChangeRecord,
    reason: str | None,
) -> None:
    """Write a tool down or up: the declaration, its E10 change, and its entry in the
    security log (before and after), then commit."""
    await uow.equipment.update_tool(record, ToolPart.DOWN)
    if e10_change is not None:
        await uow.equipment.add_change(e10_change)
    await uow.run(change.write(down_change(known, record, reason)), commit=True)


def _apply(
    reports: Sequence[tuple[str, ToolSnapshot, datetime]], *, only_newer: bool = False
) -> Work[dict[str, ToolRecord]]:
    """Write what the tools do, in order: each tool's record once, with its last state, and
    every E10 state change with the time it was observed. The records written, by tool (a
    tool the database does not know is left out; with ``only_newer``, a tool whose record
    is newer than every report is in the result, unchanged). Three statements, whatever the
    number of reports: read the tools, add the changes, update the records."""
    # locked: a person's tool down or up in between would be undone by this write
    ids = list(dict.fromkeys(tool_id for tool_id, _, _ in reports))
    known = yield from get_tools(ids, for_update=True)
    records: dict[str, ToolRecord] = {}
    changes: list[E10Change] = []
    unchanged: dict[str, ToolRecord] = {}
    for tool_id, snapshot, at in reports:
        last = records.get(tool_id) or known.get(tool_id)
        if last is None:
            continue
        if only_newer and at <= known[tool_id].updated_at:
            unchanged[tool_id] = last  # recorded already
            continue
        snapshot, reported = as_recorded(last, snapshot)
        changed = snapshot.e10 != last.snapshot.e10
        records[tool_id] = replace(
            last,
            snapshot=snapshot,
            reported_e10=reported,
            e10_since=at if changed else last.e10_since,
            updated_at=at,
        )
        if changed:
            changes.append(
                E10Change(
                    tool_id,
                    at,
                    snapshot.e10,
                    snapshot.process_state,
                    snapshot.connected,
                    change_reason(snapshot),
                )
            )
    yield from add_changes(changes)
    yield from update_tools(list(records.values()), ToolPart.STATE)
    return unchanged | records
