"""The in-memory store's equipment repository: tools, their states and E10 changes,
controllers and alarm resets, with the same contract as the SQL one
(:mod:`mes.adapters.sql_equipment`), on a :class:`MemoryStore`'s tables."""

from __future__ import annotations

import bisect
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mes.domain.equipment import (
    ControllerRecord,
    E10Change,
    ResetRequest,
    ResetStatus,
    ToolPart,
    ToolRecord,
)
from mes.domain.errors import InvalidInput, UnknownTool
from mes.domain.tool_down import in_force
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

if TYPE_CHECKING:
    from mes.adapters.memory import MemoryStore


class MemoryEquipmentRepository:
    def __init__(self, store: MemoryStore):
        self._store = store

    def answer(self, request: EquipmentRequest) -> Any:
        """What a store answers to ``request`` (:data:`mes.ports.Work`)."""
        if isinstance(request, GetTools):
            tools = self._store.tools
            return {i: tools[i] for i in request.tool_ids if i in tools}
        if isinstance(request, GetToolState):
            tool = self._store.tools.get(request.tool_id)
            return None if tool is None else tool.snapshot
        if isinstance(request, GetRefusals):
            controllers = self._store.controllers.values()
            return refusals_of_lot(request.lot_id, [c.refusals for c in controllers])
        if isinstance(request, GetDispatchModes):
            return {t.id: t.dispatch for t in self._tools(request.line)}
        if isinstance(request, GetDeclaredDown):
            declared = ((t.id, in_force(t)) for t in self._tools(request.line))
            return {tool_id: d for tool_id, d in declared if d is not None}
        if isinstance(request, UpdateTools):
            for tool in request.tools:
                self._update_tool(tool, request.part)
            return None
        if isinstance(request, AddChanges):
            return self._store.changes.extend(request.changes)
        raise TypeError(f"not an equipment store request: {request!r}")

    async def tool(self, tool_id: str) -> ToolRecord | None:
        return self._store.tools.get(tool_id)

    async def tools(self, line: str | None = None) -> list[ToolRecord]:
        return self._tools(line)

    async def page(self, query: ToolQuery) -> ToolPage:
        if query.limit < 1:
            raise InvalidInput(f"a page holds 1 tool or more, not {query.limit}")
        if query.after is not None and query.after not in self._store.tools:
            raise UnknownTool(f"there is no tool {query.after} to list the tools after")
        found = [
            t
            for t in self._tools(query.line)
            if query.equipment_class in (None, t.equipment_class)
            and query.e10 in (None, t.snapshot.e10)
            and query.dispatch in (None, t.dispatch)
        ]
        start = (
            0 if query.after is None else bisect.bisect_right([t.id for t in found], query.after)
        )
        page = found[start : start + query.limit + 1]
        return ToolPage(page[: query.limit], len(found), len(page) > query.limit)

    def _tools(self, line: str | None) -> list[ToolRecord]:
        return sorted(
            (t for t in self._store.tools.values() if line is None or t.line == line),
            key=lambda t: t.id,
        )

    async def add_tool(self, tool: ToolRecord) -> None:
        self._store.tools[tool.id] = tool

    async def update_tool(self, tool: ToolRecord, part: ToolPart) -> None:
        self._update_tool(tool, part)

    def _update_tool(self, tool: ToolRecord, part: ToolPart) -> None:
        stored = self._store.tools[tool.id]
        self._store.tools[tool.id] = replace(
            stored, **{name: getattr(tool, name) for name in part.fields}
        )

    async def add_change(self, change: E10Change) -> None:
        self._store.changes.append(change)

    async def changes(self, tool_id: str, start: datetime, end: datetime) -> list[E10Change]:
        mine = sorted((c for c in self._store.changes if c.tool_id == tool_id), key=lambda c: c.at)
        before = [c for c in mine if c.at < start][-1:]
        return before + [c for c in mine if start <= c.at < end]

    async def controller(self, name: str) -> ControllerRecord | None:
        return self._store.controllers.get(name)

    async def controllers(self) -> list[ControllerRecord]:
        return sorted(self._store.controllers.values(), key=lambda c: c.name)

    async def save_controller(self, record: ControllerRecord) -> None:
        self._store.controllers[record.name] = record

    async def add_reset(self, request: ResetRequest) -> None:
        self._store.resets[request.id] = request

    async def reset(self, reset_id: str) -> ResetRequest | None:
        return self._store.resets.get(reset_id)

    async def resets(self, tool_id: str, limit: int) -> list[ResetRequest]:
        mine = [r for r in self._store.resets.values() if r.tool_id == tool_id]
        return sorted(mine, key=lambda r: (r.requested_at, r.id), reverse=True)[:limit]

    async def open_resets(self, line: str) -> list[ResetRequest]:
        found = [r for r in self._store.resets.values() if r.line == line and r.status.open]
        return sorted(found, key=lambda r: (r.requested_at, r.id))

    async def update_reset(self, request: ResetRequest, expected: ResetStatus) -> bool:
        stored = self._store.resets.get(request.id)
        if stored is None or stored.status is not expected:
            return False
        self._store.resets[request.id] = request
        return True
