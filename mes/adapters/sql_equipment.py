"""The equipment repository (tools, E10 state changes, controller heartbeats, alarm resets)
for SQLite and PostgreSQL, on the same compiled statements and driver sessions as the lot
store."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, bindparam, func, insert, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement

from mes.adapters.driver import CompiledStatement, DriverSession, ExecuteMany, Fetch, Plan
from mes.adapters.rows import tool_snapshot_from_row
from mes.adapters.tables import controllers, tool_resets, tool_states, tools
from mes.domain.equipment import (
    ControllerRecord,
    DispatchMode,
    E10Change,
    ResetRequest,
    ResetStatus,
    ToolPart,
    ToolRecord,
    ToolSnapshot,
    TrackInRefusal,
)
from mes.domain.errors import InvalidInput, UnknownTool
from mes.domain.tool_down import InForce
from mes.ports import (
    AddChanges,
    EquipmentRequest,
    GetDeclaredDown,
    GetDispatchModes,
    GetRefusals,
    GetTools,
    GetToolState,
    ToolPage,
    ToolQuery,
    UpdateTools,
)
from mes.ports_lots import refusals_of_lot


def _tool_values(t: ToolRecord) -> dict[str, Any]:
    s = t.snapshot
    return {
        "id": t.id,
        "line": t.line,
        "equipment_class": t.equipment_class,
        "address": t.address,
        "steps": list(t.steps),
        "dispatch": t.dispatch.value,
        "dispatch_reason": t.dispatch_reason,
        "dispatch_by": t.dispatch_by,
        "dispatch_at": t.dispatch_at,
        "connected": s.connected,
        "e10": s.e10,
        "e10_since": t.e10_since,
        "process_state": s.process_state,
        "mode": s.mode,
        "alarm": dict(s.alarm) if s.alarm is not None else None,
        "job_id": s.job_id,
        "lot_id": s.lot_id,
        "sites_done": s.sites_done,
        "sites_total": s.sites_total,
        "reason": s.reason,
        "updated_at": t.updated_at,
        "down": t.down,
        "down_reason": t.down_reason,
        "down_by": t.down_by,
        "down_at": t.down_at,
        "reported_e10": t.reported_e10,
        "declared_user": t.declared_user,
        "declared_by": t.declared_by,
        "declared_auth": t.declared_auth,
        "declared_reason": t.declared_reason,
        "declared_at": t.declared_at,
    }


_SNAPSHOT_COLUMNS = tuple(f.name for f in fields(ToolSnapshot))
"""A tool's snapshot is stored one column per field, under the field's name."""


def _part_columns(part: ToolPart) -> tuple[str, ...]:
    """The columns of one part of a tool's record (its snapshot is several)."""
    return tuple(
        column
        for name in part.fields
        for column in (_SNAPSHOT_COLUMNS if name == "snapshot" else (name,))
    )


def _tool_from_row(m: Mapping[str, Any]) -> ToolRecord:
    return ToolRecord(
        id=m["id"],
        line=m["line"],
        equipment_class=m["equipment_class"],
        address=m["address"],
        steps=tuple(m["steps"]),
        dispatch=DispatchMode(m["dispatch"]),
        dispatch_reason=m["dispatch_reason"],
        dispatch_by=m["dispatch_by"],
        dispatch_at=m["dispatch_at"],
        snapshot=tool_snapshot_from_row(m),
        e10_since=m["e10_since"],
        updated_at=m["updated_at"],
        down=m["down"],
        down_reason=m["down_reason"],
        down_by=m["down_by"],
        down_at=m["down_at"],
        reported_e10=m["reported_e10"],
        declared_user=m["declared_user"],
        declared_by=m["declared_by"],
        declared_auth=m["declared_auth"],
        declared_reason=m["declared_reason"],
        declared_at=m["declared_at"],
    )


def _change_from_row(m: Mapping[str, Any]) -> E10Change:
    return E10Change(
        tool_id=m["tool_id"],
        at=m["at"],
        e10=m["e10"],
        process_state=m["process_state"],
        connected=bool(m["connected"]),
        reason=m["reason"],
    )


def _controller_from_row(m: Mapping[str, Any]) -> ControllerRecord:
    return ControllerRecord(
        name=m["name"],
        host=m["host"],
        pid=m["pid"],
        started_at=m["started_at"],
        heartbeat_at=m["heartbeat_at"],
        status=m["status"],
        tools=tuple(m["tools"]),
        refusals=tuple(TrackInRefusal.from_dict(r) for r in m["refusals"] or ()),
    )


def _controller_values(c: ControllerRecord) -> dict[str, Any]:
    return {
        "name": c.name,
        "host": c.host,
        "pid": c.pid,
        "started_at": c.started_at,
        "heartbeat_at": c.heartbeat_at,
        "status": c.status,
        "tools": list(c.tools),
        "refusals": [r.to_dict() for r in c.refusals],
    }


def _reset_values(r: ResetRequest) -> dict[str, Any]:
    return {
        "id": r.id,
        "tool_id": r.tool_id,
        "line": r.line,
        "requested_by": r.requested_by,
        "reason": r.reason,
        "requested_at": r.requested_at,
        "expires_at": r.expires_at,
        "status": r.status.value,
        "outcome": r.outcome,
        "answered_at": r.answered_at,
        "state_after": r.state_after,
    }


def _reset_from_row(m: Mapping[str, Any]) -> ResetRequest:
    return ResetRequest(
        id=m["id"],
        tool_id=m["tool_id"],
        line=m["line"],
        requested_by=m["requested_by"],
        reason=m["reason"],
        requested_at=m["requested_at"],
        expires_at=m["expires_at"],
        status=ResetStatus(m["status"]),
        outcome=m["outcome"],
        answered_at=m["answered_at"],
        state_after=m["state_after"],
    )


_OPEN = [s.value for s in ResetStatus if s.open]


class EquipmentStatements:
    """The equipment store's statements, compiled once for one dialect."""

    def __init__(self, dialect: Dialect):
        def c(statement: ClauseElement, keys: list[str] | None = None) -> CompiledStatement:
            return CompiledStatement.compile(statement, dialect, keys)

        tool_keys = [col.name for col in tools.c]
        self.tool = c(select(tools).where(tools.c.id == bindparam("id")))
        self.all_tools = c(select(tools).order_by(tools.c.id))
        self.line_tools = c(
            select(tools).where(tools.c.line == bindparam("line")).order_by(tools.c.id)
        )
        self.dialect = dialect
        self._by_id: dict[tuple[int, bool], CompiledStatement] = {}
        self._pages: dict[tuple[bool, ...], tuple[CompiledStatement, CompiledStatement]] = {}
        self.dispatch_modes = c(
            select(tools.c.id, tools.c.dispatch).where(tools.c.line == bindparam("line"))
        )
        self.declared_down = c(
            select(
                tools.c.id, tools.c.down, tools.c.down_by, tools.c.down_reason, tools.c.down_at
            ).where(tools.c.line == bindparam("line"), tools.c.down.is_not(None))
        )
        self.insert_tool = c(insert(tools), tool_keys)
        self.tool_part_columns = {part: _part_columns(part) for part in ToolPart}
        self.update_tool = {
            part: c(
                update(tools)
                .where(tools.c.id == bindparam("b_id"))
                .values(
                    {
                        tools.c[name]: bindparam(f"v_{name}", type_=tools.c[name].type)
                        for name in columns
                    }
                )
            )
            for part, columns in self.tool_part_columns.items()
        }
        self.insert_change = c(
            insert(tool_states), [col.name for col in tool_states.c if col.name != "seq"]
        )
        self.changes = c(
            select(tool_states)
            .where(
                tool_states.c.tool_id == bindparam("tool_id"),
                tool_states.c.at >= bindparam("start"),
                tool_states.c.at < bindparam("end"),
            )
            .order_by(tool_states.c.at, tool_states.c.seq)
        )
        self.change_before = c(
            select(tool_states)
            .where(
                tool_states.c.tool_id == bindparam("tool_id"), tool_states.c.at < bindparam("start")
            )
            .order_by(tool_states.c.at.desc(), tool_states.c.seq.desc())
            .limit(1)
        )
        controller_keys = [col.name for col in controllers.c]
        # locked on PostgreSQL (SQLite's writer is alone): a controller's claim on its line
        # is read and written in one transaction, and two claims take turns
        self.controller = c(
            select(controllers).where(controllers.c.name == bindparam("name")).with_for_update()
        )
        self.all_controllers = c(select(controllers).order_by(controllers.c.name))
        self.insert_controller = c(insert(controllers), controller_keys)
        self.update_controller = c(
            update(controllers)
            .where(controllers.c.name == bindparam("b_name"))
            .values(
                {
                    col: bindparam(f"v_{col.name}", type_=col.type)
                    for col in controllers.c
                    if col.name != "name"
                }
            )
        )

        self.insert_reset = c(insert(tool_resets), [col.name for col in tool_resets.c])
        self.reset = c(select(tool_resets).where(tool_resets.c.id == bindparam("id")))
        self.resets_of_tool = c(
            select(tool_resets)
            .where(tool_resets.c.tool_id == bindparam("tool_id"))
            .order_by(tool_resets.c.requested_at.desc(), tool_resets.c.id.desc())
            .limit(bindparam("limit"))
        )
        self.open_resets = c(
            select(tool_resets)
            .where(
                tool_resets.c.line == bindparam("line"),
                tool_resets.c.status.in_([bindparam(f"open{n}") for n in range(len(_OPEN))]),
            )
            .order_by(tool_resets.c.requested_at, tool_resets.c.id)
        )
        self.update_reset = c(
            update(tool_resets)
            .where(
                tool_resets.c.id == bindparam("b_id"),
                tool_resets.c.status == bindparam("b_status"),
            )
            .values(
                {
                    col: bindparam(f"v_{col.name}", type_=col.type)
                    for col in tool_resets.c
                    if col.name in ("status", "outcome", "answered_at", "state_after")
                }
            )
        )

    def tools_by_id(self, count: int, for_update: bool = False) -> CompiledStatement:
        """The records of ``count`` tools (ids bound as i0, i1, ...); ``for_update``: locked
        on PostgreSQL, in the order of their ids (two writers lock alike: no deadlock)."""
        key = (count, for_update)
        if key not in self._by_id:
            query = select(tools).where(tools.c.id.in_([bindparam(f"i{n}") for n in range(count)]))
            if for_update:
                query = query.order_by(tools.c.id).with_for_update()
            self._by_id[key] = CompiledStatement.compile(query, self.dialect)
        return self._by_id[key]

    def page(self, query: ToolQuery) -> tuple[CompiledStatement, CompiledStatement]:
        """A tool list's page (the tools after the cursor ``after``, by id, ``page_limit``
        of them) and count (every tool the filters select): the filters given are bound as
        ``line``, ``equipment_class``, ``e10`` and ``dispatch``. Compiled once per set of
        filters."""
        key = (
            query.line is not None,
            query.equipment_class is not None,
            query.e10 is not None,
            query.dispatch is not None,
            query.after is not None,
        )
        if key not in self._pages:
            where = [
                column == bindparam(name, type_=column.type)
                for given, name, column in zip(
                    key,
                    ("line", "equipment_class", "e10", "dispatch"),
                    (tools.c.line, tools.c.equipment_class, tools.c.e10, tools.c.dispatch),
                    strict=False,
                )
                if given
            ]
            count = select(func.count()).select_from(tools).where(*where)
            keyed = [*where, tools.c.id > bindparam("after")] if key[4] else where
            page = (
                select(tools)
                .where(*keyed)
                .order_by(tools.c.id)
                .limit(bindparam("page_limit", type_=Integer()))
            )
            self._pages[key] = (
                CompiledStatement.compile(page, self.dialect),
                CompiledStatement.compile(count, self.dialect),
            )
        return self._pages[key]


def _update_values(sql: EquipmentStatements, tool: ToolRecord, part: ToolPart) -> dict[str, Any]:
    values = _tool_values(tool)
    return {"b_id": tool.id, **{f"v_{k}": values[k] for k in sql.tool_part_columns[part]}}


def _change_values(change: E10Change) -> dict[str, Any]:
    return {
        "tool_id": change.tool_id,
        "at": change.at,
        "e10": change.e10,
        "process_state": change.process_state,
        "connected": change.connected,
        "reason": change.reason,
    }


def equipment_plan(sql: EquipmentStatements, request: EquipmentRequest) -> Plan[Any]:
    """The statements that answer ``request`` (:data:`mes.ports.Work`)."""
    if isinstance(request, GetTools):
        ids = request.tool_ids
        if not ids:
            return {}
        statement = sql.tools_by_id(len(ids), request.for_update)
        rows = yield Fetch(statement, {f"i{n}": i for n, i in enumerate(ids)})
        return {r["id"]: _tool_from_row(r) for r in rows}
    if isinstance(request, GetToolState):
        rows = yield Fetch(sql.tools_by_id(1), {"i0": request.tool_id})
        return tool_snapshot_from_row(rows[0]) if rows else None
    if isinstance(request, GetRefusals):
        rows = yield Fetch(sql.all_controllers, {})
        return refusals_of_lot(request.lot_id, [_controller_from_row(r).refusals for r in rows])
    if isinstance(request, GetDispatchModes):
        rows = yield Fetch(sql.dispatch_modes, {"line": request.line})
        return {r["id"]: DispatchMode(r["dispatch"]) for r in rows}
    if isinstance(request, GetDeclaredDown):
        rows = yield Fetch(sql.declared_down, {"line": request.line})
        return {
            r["id"]: InForce(r["down"], r["down_by"], r["down_reason"], r["down_at"]) for r in rows
        }
    if isinstance(request, UpdateTools):
        part = request.part
        yield ExecuteMany(
            sql.update_tool[part], [_update_values(sql, t, part) for t in request.tools]
        )
        return None
    if isinstance(request, AddChanges):
        yield ExecuteMany(sql.insert_change, [_change_values(c) for c in request.changes])
        return None
    raise TypeError(f"not an equipment store request: {request!r}")


class SqlEquipmentRepository:
    """:class:`mes.ports.EquipmentRepository` on one driver session."""

    def __init__(self, session: DriverSession, statements: EquipmentStatements):
        self._db = session
        self._sql = statements

    async def tool(self, tool_id: str) -> ToolRecord | None:
        rows = await self._db.fetch(self._sql.tool, {"id": tool_id})
        return _tool_from_row(rows[0]) if rows else None

    async def tools(self, line: str | None = None) -> list[ToolRecord]:
        if line is None:
            rows = await self._db.fetch(self._sql.all_tools, {})
        else:
            rows = await self._db.fetch(self._sql.line_tools, {"line": line})
        return [_tool_from_row(r) for r in rows]

    async def page(self, query: ToolQuery) -> ToolPage:
        if query.limit < 1:
            raise InvalidInput(f"a page holds 1 tool or more, not {query.limit}")
        page, count = self._sql.page(query)
        values: dict[str, Any] = {
            name: value
            for name, value in (
                ("line", query.line),
                ("equipment_class", query.equipment_class),
                ("e10", query.e10),
                ("dispatch", query.dispatch),
                ("after", query.after),
            )
            if value is not None
        }
        if query.after is not None and not await self._db.fetch(
            self._sql.tool, {"id": query.after}
        ):
            raise UnknownTool(f"there is no tool {query.after} to list the tools after")
        rows = await self._db.fetch(page, {**values, "page_limit": query.limit + 1})
        total = (await self._db.fetch(count, values))[0]
        found = [_tool_from_row(r) for r in rows]
        return ToolPage(
            found[: query.limit], int(next(iter(total.values()))), len(found) > query.limit
        )

    async def add_tool(self, tool: ToolRecord) -> None:
        await self._db.execute(self._sql.insert_tool, _tool_values(tool))

    async def update_tool(self, tool: ToolRecord, part: ToolPart) -> None:
        await self._db.execute(self._sql.update_tool[part], _update_values(self._sql, tool, part))

    async def add_change(self, change: E10Change) -> None:
        await self._db.execute(self._sql.insert_change, _change_values(change))

    async def changes(self, tool_id: str, start: datetime, end: datetime) -> list[E10Change]:
        before = await self._db.fetch(self._sql.change_before, {"tool_id": tool_id, "start": start})
        within = await self._db.fetch(
            self._sql.changes, {"tool_id": tool_id, "start": start, "end": end}
        )
        return [_change_from_row(r) for r in (*before, *within)]

    async def controller(self, name: str) -> ControllerRecord | None:
        rows = await self._db.fetch(self._sql.controller, {"name": name})
        return _controller_from_row(rows[0]) if rows else None

    async def controllers(self) -> list[ControllerRecord]:
        return [
            _controller_from_row(r) for r in await self._db.fetch(self._sql.all_controllers, {})
        ]

    async def save_controller(self, record: ControllerRecord) -> None:
        values = _controller_values(record)
        changed = await self._db.execute(
            self._sql.update_controller,
            {"b_name": record.name, **{f"v_{k}": v for k, v in values.items() if k != "name"}},
        )
        if changed == 0:
            await self._db.execute(self._sql.insert_controller, values)

    async def add_reset(self, request: ResetRequest) -> None:
        await self._db.execute(self._sql.insert_reset, _reset_values(request))

    async def reset(self, reset_id: str) -> ResetRequest | None:
        rows = await self._db.fetch(self._sql.reset, {"id": reset_id})
        return _reset_from_row(rows[0]) if rows else None

    async def resets(self, tool_id: str, limit: int) -> list[ResetRequest]:
        rows = await self._db.fetch(self._sql.resets_of_tool, {"tool_id": tool_id, "limit": limit})
        return [_reset_from_row(r) for r in rows]

    async def open_resets(self, line: str) -> list[ResetRequest]:
        return [
            _reset_from_row(r)
            for r in await self._db.fetch(
                self._sql.open_resets,
                {"line": line, **{f"open{n}": status for n, status in enumerate(_OPEN)}},
            )
        ]

    async def update_reset(self, request: ResetRequest, expected: ResetStatus) -> bool:
        values = _reset_values(request)
        changed = await self._db.execute(
            self._sql.update_reset,
            {
                "b_id": request.id,
                "b_status": expected.value,
                **{
                    f"v_{k}": values[k] for k in ("status", "outcome", "answered_at", "state_after")
                },
            },
        )
        return changed == 1
