"""The material routes (``pkgline material``, ``lot genealogy``): each one call of the material
service for the request's principal, answering the JSON the CLI's ``--json`` prints
(:mod:`pkgline.interlock_views`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from mes.domain.authority import Principal
from mes.domain.materials import MAX_CLOCK_MINUTES
from mes.domain.signatures import SignatureGiven
from mes.materials import MaterialService
from mes.ports_materials import MaterialQuery
from pkgline.api import bodies as b
from pkgline.api.auth import answer, created, principal, state_of
from pkgline.api.json_bodies import JsonRoute
from pkgline.interlock_views import (
    genealogy_dict,
    material_dict,
    material_view_dict,
    quarantined_dict,
    recall_dict,
    where_used_dict,
)
from pkgline.list_views import materials_answer
from pkgline.page_sizes import MATERIAL_PAGE, MAX_MATERIAL_PAGE

router = APIRouter(tags=["materials"], responses=b.REFUSALS, route_class=JsonRoute)
Who = Annotated[Principal, Depends(principal)]

Minutes = Annotated[
    int | None,
    Field(
        None,
        ge=-MAX_CLOCK_MINUTES,  # a negative one is the service's to refuse, saying why
        le=MAX_CLOCK_MINUTES,
        description="Frozen kinds (default: the kind's).",
    ),
]


class AddMaterialBody(b.Body):
    material: b.Id
    kind: b.Name
    expires_at: Annotated[b.ZonedTime, Field(description="ISO 8601 with its zone.")]
    thaw_minutes: Minutes = None
    floor_life_minutes: Minutes = None
    part_number: Annotated[str | None, Field(max_length=64)] = None


class LoadBody(b.Body):
    tool: b.Name


HoldCode = Annotated[
    str,
    Field(min_length=1, max_length=64, description="A hold reason code (pkgline reason list)."),
]


class QuarantineBody(b.Body):
    code: HoldCode
    reason: Annotated[
        str,
        Field(min_length=1, max_length=2000, pattern=r"\S", description="What is wrong with it."),
    ]
    hold_lots: Annotated[
        bool,
        Field(description="Hold the product lots still on the line that got it, as well."),
    ] = False


class HoldLotsBody(b.Body):
    code: HoldCode
    reason: b.Reason = None


def _materials(request: Request) -> MaterialService:
    return state_of(request).services.materials


@router.get(
    "/materials", summary="Material lots by id, a page at a time: all, a tool's, or those loaded"
)
async def list_materials(
    request: Request,
    who: Who,
    tool: Annotated[str | None, Query(max_length=64)] = None,
    loaded: Annotated[bool, Query(description="Only those loaded on a tool.")] = False,
    after: Annotated[
        str | None, Query(max_length=64, description="The page's cursor (a material lot id).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_MATERIAL_PAGE)] = MATERIAL_PAGE,
) -> JSONResponse:
    """Answers ``{"materials": [...], "total", "shown", "more", "next_after"}``; the next
    page is the same request with ``after`` = ``next_after``."""
    query = MaterialQuery(tool_id=tool, loaded=loaded, after=after, limit=limit)
    return answer(request, await materials_answer(_materials(request), query, who))


@router.get("/materials/{material_id}", summary="A material lot, its history and uses")
async def show(request: Request, who: Who, material_id: str) -> JSONResponse:
    view = await _materials(request).show(material_id, by=who)
    return answer(request, material_view_dict(view))


@router.get(
    "/materials/{material_id}/where-used",
    summary="The product lots a material lot went into, through splits and merges (a recall)",
)
async def where_used(request: Request, who: Who, material_id: str) -> JSONResponse:
    found = await _materials(request).where_used(material_id, by=who)
    return answer(request, where_used_dict(material_id, found))


@router.get("/lots/{lot_id}/genealogy", summary="The material lots that went into a lot")
async def genealogy(request: Request, who: Who, lot_id: str) -> JSONResponse:
    found = await _materials(request).genealogy(lot_id, by=who)
    return answer(request, genealogy_dict(lot_id, found))


@router.post(
    "/materials",
    status_code=201,
    summary="Add a material lot (material add)",
    responses=b.created_answer("The material lot added."),
)
async def add(request: Request, who: Who, body: AddMaterialBody) -> JSONResponse:
    found = await _materials(request).add(
        body.material,
        body.kind.strip(),
        body.expires_at,
        who.name,
        thaw_minutes=body.thaw_minutes,
        floor_life_minutes=body.floor_life_minutes,
        part_number=body.part_number,
        by=who,
    )
    return created(request, material_dict(found), "materials", found.id)


@router.post("/materials/{material_id}/thaw", summary="Out of the freezer now (material thaw)")
async def thaw(
    request: Request, who: Who, material_id: str, body: b.Body | None = None
) -> JSONResponse:
    found = await _materials(request).thaw(material_id, who.name, by=who)
    return answer(request, material_dict(found))


@router.post("/materials/{material_id}/load", summary="Load a material lot on a tool")
async def load(request: Request, who: Who, material_id: str, body: LoadBody) -> JSONResponse:
    found = await _materials(request).load(material_id, body.tool, who.name, by=who)
    return answer(request, material_dict(found))


@router.post("/materials/{material_id}/unload", summary="Take a material lot off its tool")
async def unload(request: Request, who: Who, material_id: str, body: b.ReasonBody) -> JSONResponse:
    found = await _materials(request).unload(material_id, who.name, body.reason, by=who)
    return answer(request, material_dict(found))


@router.post(
    "/materials/{material_id}/quarantine",
    summary="Quarantine a material lot, optionally holding the lots that got it (a recall)",
)
async def quarantine(
    request: Request, who: Who, material_id: str, body: QuarantineBody
) -> JSONResponse:
    """Answers the material lot with ``recall``: the lots held, those on hold already and
    those off the line (null without ``hold_lots``)."""
    done = await _materials(request).quarantine(
        material_id, body.code, body.reason, who.name, hold_lots=body.hold_lots, by=who
    )
    return answer(request, quarantined_dict(done))


@router.post(
    "/materials/{material_id}/release", summary="Lift a material lot's quarantine (quality)"
)
async def release(
    request: Request, who: Who, material_id: str, body: b.ReleaseMaterialBody
) -> JSONResponse:
    """Signed as a lot's release is: ``signatures`` name the material lot's ``version``."""
    signed = tuple(
        SignatureGiven(g.username, g.meaning, g.password, g.lot_version) for g in body.signatures
    )
    found = await _materials(request).release(
        material_id, body.reason, who.name, by=who, signatures=signed
    )
    return answer(request, material_dict(found))


@router.post(
    "/materials/{material_id}/hold-lots",
    summary="Hold every product lot still on the line that got a material lot (a recall)",
)
async def hold_lots(
    request: Request, who: Who, material_id: str, body: HoldLotsBody
) -> JSONResponse:
    """Answers ``{"material", "held", "on_hold", "off_line"}``: only the lots in ``held``
    were changed."""
    done = await _materials(request).hold_lots(
        material_id, body.code, body.reason, who.name, by=who
    )
    return answer(request, recall_dict(done))
