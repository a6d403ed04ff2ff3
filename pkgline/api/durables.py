"""The durable routes (``pkgline durable``): each one call of the durable service for the
request's principal, answering the JSON the CLI's ``--json`` prints
(:mod:`pkgline.interlock_views`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import Field, StrictFloat, StrictInt

from mes.domain.authority import Principal
from mes.domain.durables import DEFAULT_WARN_FRACTION, MAX_LIFE
from mes.durables import DurableService
from mes.ports_durables import DurableQuery
from pkgline.api import bodies as b
from pkgline.api.auth import answer, created, principal, state_of
from pkgline.api.json_bodies import JsonRoute
from pkgline.interlock_views import durable_dict, durable_view_dict
from pkgline.list_views import durables_answer
from pkgline.page_sizes import DURABLE_PAGE, MAX_DURABLE_PAGE

router = APIRouter(
    prefix="/durables", tags=["durables"], responses=b.REFUSALS, route_class=JsonRoute
)
Who = Annotated[Principal, Depends(principal)]


class AddDurableBody(b.Body):
    durable: b.Id
    kind: b.Name
    life: Annotated[
        StrictInt,
        Field(ge=1, le=MAX_LIFE, description="In its kind's unit (touchdowns, cuts, ...)."),
    ]
    warn_fraction: Annotated[
        StrictFloat | StrictInt, Field(description="Warn at this fraction of its life.")
    ] = DEFAULT_WARN_FRACTION
    description: Annotated[str | None, Field(max_length=2000)] = None


class MountBody(b.Body):
    tool: b.Name


def _durables(request: Request) -> DurableService:
    return state_of(request).services.durables


@router.get(
    "", summary="Durables by id, a page at a time: all, a tool's, or those mounted (durable list)"
)
async def list_durables(
    request: Request,
    who: Who,
    tool: Annotated[str | None, Query(max_length=64)] = None,
    mounted: Annotated[bool, Query(description="Only those mounted on a tool.")] = False,
    after: Annotated[
        str | None, Query(max_length=64, description="The page's cursor (a durable id).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_DURABLE_PAGE)] = DURABLE_PAGE,
) -> JSONResponse:
    """Answers ``{"durables": [...], "total", "shown", "more", "next_after"}``; the next
    page is the same request with ``after`` = ``next_after``."""
    query = DurableQuery(tool_id=tool, mounted=mounted, after=after, limit=limit)
    return answer(request, await durables_answer(_durables(request), query, who))


@router.get("/{durable_id}", summary="A durable, the lots it served, its history (durable show)")
async def show(request: Request, who: Who, durable_id: str) -> JSONResponse:
    return answer(request, durable_view_dict(await _durables(request).show(durable_id, by=who)))


@router.post(
    "",
    status_code=201,
    summary="Add a durable, off the tools (durable add)",
    responses=b.created_answer("The durable added."),
)
async def add(request: Request, who: Who, body: AddDurableBody) -> JSONResponse:
    found = await _durables(request).add(
        body.durable,
        body.kind.strip(),
        body.life,
        who.name,
        warn_fraction=float(body.warn_fraction),
        description=body.description,
        by=who,
    )
    return created(request, durable_dict(found), "durables", found.id)


@router.post("/{durable_id}/mount", summary="Mount a durable on a tool (durable mount)")
async def mount(request: Request, who: Who, durable_id: str, body: MountBody) -> JSONResponse:
    found = await _durables(request).mount(durable_id, body.tool, who.name, by=who)
    return answer(request, durable_dict(found))


@router.post("/{durable_id}/unmount", summary="Take a durable off its tool (durable unmount)")
async def unmount(request: Request, who: Who, durable_id: str, body: b.ReasonBody) -> JSONResponse:
    found = await _durables(request).unmount(durable_id, who.name, body.reason, by=who)
    return answer(request, durable_dict(found))


@router.post("/{durable_id}/renew", summary="A renewable durable cleaned (durable renew)")
async def renew(
    request: Request, who: Who, durable_id: str, body: b.RequiredReasonBody
) -> JSONResponse:
    found = await _durables(request).renew(durable_id, who.name, body.reason.strip(), by=who)
    return answer(request, durable_dict(found))
