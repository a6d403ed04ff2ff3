"""The equipment service: which tools each line controller owns, what state they are in, and
every SEMI E10 state change with its time. Each call is one transaction.

Line controllers register their tools at start (a tool belongs to one controller) and report
what their tools do; operators switch tools between automatic dispatch and manual; anyone can
ask how long a tool spent in each state over a window, and its availability.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

from mes.domain.equipment import (
    UNMONITORED,
    ControllerRecord,
    DispatchMode,
    E10Change,
    StateTimes,
    ToolPart,
    ToolRecord,
    ToolRegistration,
    ToolSnapshot,
    time_in_states,
)
from mes.domain.errors import InvalidInput, ToolOwnedElsewhere, UnknownTool
from mes.interlocks import qualify_registered
from mes.ports import UnitOfWorkFactory, Work, add_changes, get_tools, update_tools
from mes.service import utc_now

NOT_CONNECTED = ToolSnapshot(connected=False, e10="unscheduled_down", reason="not connected yet")


class EquipmentService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Callable[[], datetime] = utc_now):
        self._uow = uow
        self._clock = clock

    async def register(self, line: str, tools: Sequence[ToolRegistration]) -> list[ToolRecord]:
        """Claim ``tools`` for the controller ``line``. Refused, changing nothing, when one of
        them belongs to another controller. A tool seen for the first time starts
        unscheduled-down until its controller reaches it."""
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
        self, tool_id: str, snapshot: ToolSnapshot, at: datetime | None = None
    ) -> ToolRecord:
        """What a tool does (as observed at ``at``, default now); an E10 state change is
        recorded with that time."""
        applied = await self._uow.write(_apply([(tool_id, snapshot, at or self._clock())]))
        if tool_id not in applied:
            raise UnknownTool(f"there is no tool {tool_id}")
        return applied[tool_id]

    async def report_many(self, reports: Sequence[tuple[str, ToolSnapshot, datetime]]) -> list[str]:
        """Several observations, in order, in one transaction (the controller batches them).
        Those of tools the database does not know are left out: their ids are returned."""
        applied = await self._uow.write(_apply(reports))
        return sorted({tool_id for tool_id, _, _ in reports} - applied.keys())

    async def mark_unmonitored(self, tool_ids: Sequence[str], since: datetime, reason: str) -> None:
        """No controller follows these tools from ``since`` on (it stopped, or died after its
        last heartbeat): their state is unknown until a controller reaches them again."""
        now = self._clock()
        async with self._uow() as uow:
            repo = uow.equipment
            for tool_id in tool_ids:
                known = await repo.tool(tool_id)
                if known is None or known.snapshot.e10 == UNMONITORED:
                    continue
                at = max(since, known.e10_since)
                # What it last did stays on record (last seen READY, with this alarm, ...).
                snapshot = replace(known.snapshot, connected=False, e10=UNMONITORED, reason=reason)
                await repo.update_tool(
                    replace(known, snapshot=snapshot, e10_since=at, updated_at=now),
                    ToolPart.STATE,
                )
                await repo.add_change(E10Change(tool_id, at, UNMONITORED, None, False, reason))
            await uow.commit()

    async def set_dispatch(
        self, tool_id: str, mode: DispatchMode, user: str, reason: str | None = None
    ) -> ToolRecord:
        now = self._clock()
        async with self._uow() as uow:
            known = await uow.equipment.tool(tool_id)
            if known is None:
                raise UnknownTool(f"there is no tool {tool_id}")
            record = replace(
                known, dispatch=mode, dispatch_by=user, dispatch_at=now, dispatch_reason=reason
            )
            await uow.equipment.update_tool(record, ToolPart.DISPATCH)
            await uow.commit()
        return record

    async def tool(self, tool_id: str) -> ToolRecord:
        async with self._uow(readonly=True) as uow:
            known = await uow.equipment.tool(tool_id)
        if known is None:
            raise UnknownTool(f"there is no tool {tool_id}")
        return known

    async def tools(self, line: str | None = None) -> list[ToolRecord]:
        async with self._uow(readonly=True) as uow:
            return await uow.equipment.tools(line)

    async def state_times(
        self, tool_id: str, start: datetime, end: datetime | None = None
    ) -> StateTimes:
        """Seconds in each E10 state, availability and utilization over [start, end)."""
        end = end or self._clock()
        if end <= start:
            raise InvalidInput("the window must end after it starts")
        async with self._uow(readonly=True) as uow:
            if await uow.equipment.tool(tool_id) is None:
                raise UnknownTool(f"there is no tool {tool_id}")
            changes = await uow.equipment.changes(tool_id, start, end)
        return time_in_states(changes, start, end)

    async def changes(self, tool_id: str, start: datetime, end: datetime) -> list[E10Change]:
        async with self._uow(readonly=True) as uow:
            return await uow.equipment.changes(tool_id, start, end)

    async def heartbeat(self, record: ControllerRecord) -> None:
        async with self._uow() as uow:
            await uow.equipment.save_controller(record)
            await uow.commit()

    async def controllers(self) -> list[ControllerRecord]:
        async with self._uow(readonly=True) as uow:
            return await uow.equipment.controllers()


def _apply(reports: Sequence[tuple[str, ToolSnapshot, datetime]]) -> Work[dict[str, ToolRecord]]:
    """Write what the tools do, in order: each tool's record once, with its last state, and
    every E10 state change with the time it was observed. The records written, by tool (a
    tool the database does not know is left out). Three statements, whatever the number of
    reports: read the tools, add the changes, update the records."""
    known = yield from get_tools(list(dict.fromkeys(tool_id for tool_id, _, _ in reports)))
    records: dict[str, ToolRecord] = {}
    changes: list[E10Change] = []
    for tool_id, snapshot, at in reports:
        last = records.get(tool_id) or known.get(tool_id)
        if last is None:
            continue
        changed = snapshot.e10 != last.snapshot.e10
        records[tool_id] = replace(
            last,
            snapshot=snapshot,
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
                    snapshot.reason,
                )
            )
    yield from add_changes(changes)
    yield from update_tools(list(records.values()), ToolPart.STATE)
    return records
