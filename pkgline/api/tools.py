"""The tool and audit routes: each a call of the equipment, qualification or audit service
for the request's principal, answering the JSON of ``pkgline tool`` and ``audit verify``
(``--json``), built by the same functions as the CLI's direct mode (:mod:`pkgline.tool_views`,
:mod:`pkgline.tool_resets`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field

from drivers.model import EquipmentClass
from mes.domain.authority import Action, Principal
from mes.domain.equipment import RECORDED_STATES, DispatchMode
from mes.domain.errors import InvalidInput
from mes.ports import ToolJobQuery, ToolQuery
from pkgline.api import bodies as b
from pkgline.api.auth import principal, state_of
from pkgline.api.defaults import MAX_ANCHORS
from pkgline.api.errors import HEX64
from pkgline.api.json_bodies import JsonRoute
from pkgline.list_views import JOBS_PAGE, MAX_JOBS_PAGE, parse_instant, tool_jobs_answer
from pkgline.tool_resets import MAX_WAIT_S, WAIT_S, reset_and_wait
from pkgline.tool_views import (
    MAX_TOOL_PAGE,
    TOOL_PAGE,
    WINDOW_PATTERN,
    dispatch_answer,
    down_answer,
    known_tool,
    parse_window,
    qualification_dict,
    tool_show_answer,
    tools_page_answer,
)

router = APIRouter(tags=["tools", "audit"], responses=b.REFUSALS, route_class=JsonRoute)
Who = Annotated[Principal, Depends(principal)]
Json = dict[str, Any]
Step = Annotated[str, Field(min_length=1, max_length=64, description="A step code.")]


class ResetBody(b.Body):
    reason: Annotated[str, Field(min_length=1, max_length=2000, description="Why (recorded).")]
    wait: Annotated[
        float,
        Field(
            WAIT_S,
            ge=0.1,
            le=MAX_WAIT_S,
            description="Seconds to wait for the outcome; not carried out after that.",
        ),
    ] = WAIT_S


class DownBody(b.Body):
    e10: Annotated[
        Literal["scheduled_down", "non_scheduled"],
        Field(
            description="scheduled_down: planned (preventive) maintenance; non_scheduled: "
            "not scheduled for production."
        ),
    ]
    reason: Annotated[
        str, Field(min_length=1, max_length=2000, pattern=r"\S", description="Why (recorded).")
    ]


class QualifyBody(b.Body):
    step: Step
    reason: b.Reason = None


@router.get(
    "/tools",
    summary="Tools by id, a page at a time (tool list)",
    responses=b.page_answer_schema(
        "tools",
        "string",
        "A page of tools, each as GET /tools/{tool} gives it.",
        item=b.TOOL_SCHEMA,
    ),
)
async def list_tools(
    request: Request,
    who: Who,
    line: Annotated[
        str | None, Query(max_length=64, description="Only the tools of this line controller.")
    ] = None,
    equipment_class: Annotated[
        EquipmentClass | None, Query(alias="class", description="Only tools of this class.")
    ] = None,
    state: Annotated[
        str | None,
        Query(
            max_length=32,
            description=f"Only tools in this E10 state: {', '.join(RECORDED_STATES)}.",
        ),
    ] = None,
    dispatch: Annotated[
        DispatchMode | None,
        Query(
            description="Only tools whose lots the controller starts (auto) or only operators "
            "(manual; a quarantined tool too)."
        ),
    ] = None,
    after: Annotated[
        str | None, Query(max_length=64, description="The page's cursor (a tool id).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_TOOL_PAGE)] = TOOL_PAGE,
) -> Json:
    """Answers ``{"tools": [...], "total", "shown", "more", "next_after"}``; the next page is
    the same request with ``after`` = ``next_after``."""
    query = ToolQuery(
        line=line,
        equipment_class=equipment_class.value if equipment_class else None,
        e10=state,
        dispatch=dispatch.value if dispatch else None,
        after=after,
        limit=limit,
    )
    services = state_of(request).services
    return await tools_page_answer(
        services.equipment.acting_as(who), query, services.lots.acting_as(who)
    )


@router.get(
    "/tools/{tool_id}",
    summary="A tool with its time in state (tool show)",
    responses=b.tool_answer_schema("The tool, its time in state, jobs and disqualifications."),
)
async def show_tool(
    request: Request,
    who: Who,
    tool_id: str,
    window: Annotated[
        str,
        Query(
            max_length=16,
            description="The window back from now: a number and s, m, h or d (30m, 8h, 2d).",
            json_schema_extra={"pattern": WINDOW_PATTERN},
        ),
    ] = "8h",
    changes: Annotated[int, Query(ge=0, le=10000)] = 20,
) -> Json:
    try:
        span = parse_window(window, "window")
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    services = state_of(request).services
    equipment = services.equipment.acting_as(who)
    return await tool_show_answer(
        equipment,
        tool_id,
        span,
        changes,
        services.lots.acting_as(who),
        services.qualifications.acting_as(who),
    )


@router.get(
    "/tools/{tool_id}/jobs", summary="A tool's jobs, newest first, a page at a time (tool jobs)"
)
async def tool_jobs(
    request: Request,
    who: Who,
    tool_id: str,
    lot: Annotated[str | None, Query(max_length=64, description="Only this lot's jobs.")] = None,
    since: Annotated[str | None, b.time_filter("Started at or after")] = None,
    until: Annotated[str | None, b.time_filter("Started before")] = None,
    after: Annotated[
        str | None, Query(max_length=64, description="The page's cursor (a job id).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_JOBS_PAGE)] = JOBS_PAGE,
) -> Json:
    """Answers ``{"jobs": [...], "total", "shown", "more", "next_after"}``; the next page
    (older jobs) is the same request with ``after`` = ``next_after``."""
    services = state_of(request).services
    await known_tool(services.equipment.acting_as(who), tool_id)
    query = ToolJobQuery(
        tool_id=tool_id,
        lot_id=lot,
        since=parse_instant(since, "since"),
        until=parse_instant(until, "until"),
        after=after,
        limit=limit,
    )
    return await tool_jobs_answer(services.lots.acting_as(who), query)


async def _dispatch(
    request: Request, who: Who, tool_id: str, mode: DispatchMode, reason: str | None
) -> Json:
    services = state_of(request).services
    return await dispatch_answer(
        services.equipment.acting_as(who),
        tool_id,
        mode,
        who.name,
        reason,
        services.lots.acting_as(who),
    )


@router.post("/tools/{tool_id}/manual", summary="Take a tool out of automatic dispatch")
async def manual(request: Request, who: Who, tool_id: str, body: b.ReasonBody) -> Json:
    if not (body.reason or "").strip():
        raise InvalidInput("reason: say why the tool goes manual")
    return await _dispatch(request, who, tool_id, DispatchMode.MANUAL, (body.reason or "").strip())


@router.post("/tools/{tool_id}/auto", summary="Give a tool back to automatic dispatch")
async def auto(request: Request, who: Who, tool_id: str, body: b.ReasonBody) -> Json:
    return await _dispatch(request, who, tool_id, DispatchMode.AUTO, body.reason)


@router.post(
    "/tools/{tool_id}/down",
    summary="Declare a tool out of production: planned maintenance or not scheduled (tool down)",
    responses=b.tool_answer_schema("The tool as GET /tools gives it, with changed."),
)
async def down(request: Request, who: Who, tool_id: str, body: DownBody) -> Json:
    """Refused (409, nothing changed) while a lot runs on the tool; ``changed`` false when it
    was declared so already."""
    services = state_of(request).services
    return await down_answer(
        services.equipment.acting_as(who),
        tool_id,
        body.e10,
        who.name,
        body.reason.strip(),
        services.lots.acting_as(who),
    )


@router.post(
    "/tools/{tool_id}/up",
    summary="Bring a tool declared down back up (tool up)",
    responses=b.tool_answer_schema("The tool as GET /tools gives it, with changed."),
)
async def up(request: Request, who: Who, tool_id: str, body: b.ReasonBody) -> Json:
    services = state_of(request).services
    return await down_answer(
        services.equipment.acting_as(who),
        tool_id,
        None,
        who.name,
        body.reason,
        services.lots.acting_as(who),
    )


@router.post(
    "/tools/{tool_id}/reset",
    summary="Have a tool's line controller reset its alarm, and wait for the outcome (tool reset)",
)
async def reset(request: Request, who: Who, tool_id: str, body: ResetBody) -> Json:
    """Answers 200 with the request as it ended: ``status`` done, refused (the tool said no),
    unreachable or expired (not carried out); a client that goes away withdraws it."""
    if not body.reason.strip():
        raise InvalidInput("reason: say why the alarm may be cleared")
    equipment = state_of(request).services.equipment.acting_as(who)
    return await reset_and_wait(
        equipment, tool_id, who.name, body.reason.strip(), body.wait, gone=request.is_disconnected
    )


@router.get("/qualifications", summary="Which tool may run which step (tool qualifications)")
async def qualifications(
    request: Request,
    who: Who,
    tool: Annotated[str | None, Query(max_length=64)] = None,
    step: Annotated[str | None, Query(max_length=64)] = None,
) -> list[Json]:
    service = state_of(request).services.qualifications.acting_as(who)
    return [qualification_dict(q) for q in await service.list(tool_id=tool, step=step)]


async def _qualify(
    request: Request, who: Who, tool_id: str, step: str, qualified: bool, reason: str | None
) -> Json:
    service = state_of(request).services.qualifications.acting_as(who)
    return qualification_dict(await service.set(tool_id, step.strip(), qualified, who.name, reason))


@router.post("/tools/{tool_id}/qualify", summary="Qualify a tool for a step (tool qualify)")
async def qualify(request: Request, who: Who, tool_id: str, body: QualifyBody) -> Json:
    return await _qualify(request, who, tool_id, body.step, True, body.reason)


@router.post(
    "/tools/{tool_id}/disqualify", summary="Disqualify a tool for a step (tool disqualify)"
)
async def disqualify(request: Request, who: Who, tool_id: str, body: QualifyBody) -> Json:
    reason = (body.reason or "").strip()
    if not reason:
        raise InvalidInput("reason: say why the tool is disqualified")
    return await _qualify(request, who, tool_id, body.step, False, reason)


Anchor = Annotated[str, Field(pattern=HEX64)]


class AnchorsBody(b.Body):
    anchors: list[Anchor] = Field(
        max_length=MAX_ANCHORS,
        description="Hashes kept outside the database (a lots_head or security_head printed "
        "or published earlier, a lot event's hash from the feed): each must still be in the "
        "history or the security log.",
    )


@router.get(
    "/audit/verify",
    summary="Check the hash chains of the lot history and the security log (audit verify)",
)
async def audit_verify(
    request: Request,
    who: Who,
    anchor: Annotated[list[Annotated[str, Query(pattern=HEX64)]] | None, Query()] = None,
) -> Json:
    return await _verify(request, who, anchor or [])


@router.post(
    "/audit/verify",
    summary="Check the hash chains against many anchors (audit verify --anchors-from)",
)
async def audit_verify_anchors(request: Request, who: Who, body: AnchorsBody) -> Json:
    return await _verify(request, who, body.anchors)


async def _verify(request: Request, who: Principal, anchors: list[str]) -> Json:
    from mes.adapters.audit import verify_history

    state = state_of(request)
    await state.identity.authorize(who, Action.READ)
    wanted = list(dict.fromkeys(a.lower() for a in anchors))
    found: Json = (await verify_history(state.engine, anchors=wanted)).to_dict()
    return found
