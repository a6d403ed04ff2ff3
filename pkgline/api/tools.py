"""The tool, audit and user routes: each a call of the equipment, audit or identity service
for the request's principal, answering the JSON of ``pkgline tool``, ``audit verify`` and
``pkgline user`` (``--json``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from mes.domain.authority import Action, Principal
from mes.domain.equipment import DispatchMode
from mes.domain.errors import InvalidInput
from pkgline.api import bodies as b
from pkgline.api.auth import principal, state_of
from pkgline.tool_views import (
    change_dict,
    known_tool,
    lines_running,
    parse_window,
    reset_dict,
    state_times_dict,
    tool_dict,
)

router = APIRouter(tags=["tools", "audit", "users"], responses=b.REFUSALS)
Who = Annotated[Principal, Depends(principal)]
Json = dict[str, Any]
SHOW_RESETS = 10


def _now() -> datetime:
    return datetime.now(UTC)


@router.get("/tools", summary="Every tool (tool list)")
async def list_tools(
    request: Request, who: Who, line: Annotated[str | None, Query(max_length=64)] = None
) -> list[Json]:
    equipment = state_of(request).services.equipment.acting_as(who)
    records = await equipment.tools(line)
    alive = await lines_running(equipment, _now())
    now = _now()
    return [tool_dict(r, now, r.line in alive) for r in records]


@router.get("/tools/{tool_id}", summary="A tool with its time in state (tool show)")
async def show_tool(
    request: Request,
    who: Who,
    tool_id: str,
    window: Annotated[str, Query(max_length=16, description="30m, 8h, 2d")] = "8h",
    changes: Annotated[int, Query(ge=0, le=10000)] = 20,
) -> Json:
    try:
        span = parse_window(window)
    except ValueError as exc:
        raise InvalidInput(str(exc).replace("--window", "window")) from None
    equipment = state_of(request).services.equipment.acting_as(who)
    record = await known_tool(equipment, tool_id)
    end = _now()
    times = await equipment.state_times(tool_id, end - span, end)
    found = await equipment.changes(tool_id, end - span, end)
    resets = await equipment.resets(tool_id, SHOW_RESETS)
    alive = record.line in await lines_running(equipment, end)
    recent = found[-changes:] if changes else []
    return {
        **tool_dict(record, times.end, alive),
        "window": state_times_dict(times),
        "changes_in_window": sum(1 for c in found if c.at >= times.start),
        "changes": [change_dict(c) for c in recent],
        "resets": [reset_dict(r) for r in resets],
    }


async def _dispatch(
    request: Request, who: Who, tool_id: str, mode: DispatchMode, reason: str | None
) -> Json:
    equipment = state_of(request).services.equipment.acting_as(who)
    await known_tool(equipment, tool_id)
    record = await equipment.set_dispatch(tool_id, mode, who.name, reason)
    return tool_dict(record, _now(), record.line in await lines_running(equipment, _now()))


@router.post("/tools/{tool_id}/manual", summary="Take a tool out of automatic dispatch")
async def manual(request: Request, who: Who, tool_id: str, body: b.ReasonBody) -> Json:
    if not (body.reason or "").strip():
        raise InvalidInput("reason: say why the tool goes manual")
    return await _dispatch(request, who, tool_id, DispatchMode.MANUAL, (body.reason or "").strip())


@router.post("/tools/{tool_id}/auto", summary="Give a tool back to automatic dispatch")
async def auto(request: Request, who: Who, tool_id: str, body: b.ReasonBody) -> Json:
    return await _dispatch(request, who, tool_id, DispatchMode.AUTO, body.reason)


@router.get("/audit/verify", summary="Check the lot history's hash chain (audit verify)")
async def audit_verify(
    request: Request,
    who: Who,
    anchor: Annotated[
        list[Annotated[str, Query(pattern="^[0-9a-fA-F]{64}$")]] | None, Query()
    ] = None,
) -> Json:
    from mes.adapters.audit import verify_history

    state = state_of(request)
    await state.identity.authorize(who, Action.READ)
    anchors = [a.lower() for a in anchor or []]
    found: Json = (await verify_history(state.engine, anchors=anchors)).to_dict()
    return found


@router.get("/users", summary="Users and their roles (user list)")
async def list_users(request: Request, who: Who) -> list[Json]:
    now = _now()
    return [u.to_dict(now) for u in await state_of(request).identity.users(who)]


@router.get("/users/{username}", summary="A user (user show)")
async def show_user(request: Request, who: Who, username: str) -> Json:
    return (await state_of(request).identity.user(who, username)).to_dict(_now())
