"""The SEMI E142 map routes: a lot's maps out, an upstream map in (signed: a scrap of
sites), each one call of :mod:`mes.maps.service` for the request's principal, answering the
JSON of ``pkgline lot map ... --json`` (:mod:`pkgline.map_views`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from mes.domain.authority import Principal
from mes.domain.signatures import SignatureGiven
from mes.maps.service import export_lot_maps, import_lot_map
from pkgline import map_views as views
from pkgline.api import bodies as b
from pkgline.api.auth import answer, principal, state_of
from pkgline.api.json_bodies import JsonRoute
from pkgline.api.lots import as_seen, etag, lot_operation

router = APIRouter(prefix="/lots", tags=["maps"], responses=b.REFUSALS, route_class=JsonRoute)
Who = Annotated[Principal, Depends(principal)]


@router.get("/{lot_id}/maps/e142", summary="A lot's site maps as SEMI E142 (lot map export)")
async def export(
    request: Request,
    who: Who,
    lot_id: str,
    carrier: Annotated[
        str | None, Query(max_length=64, description="Only this carrier (id or position).")
    ] = None,
) -> Any:
    lots = state_of(request).services.lots.acting_as(who)
    return answer(request, views.export_dict(await export_lot_maps(lots, lot_id, carrier)))


@lot_operation(
    router,
    "/{lot_id}/maps/e142",
    "Reject the sites an upstream E142 map fails, signed (lot map import)",
    "What the import did (the lot's version: its ETag).",
)
async def import_(request: Request, who: Who, lot_id: str, body: b.MapImportBody) -> JSONResponse:
    lots = as_seen(request, state_of(request).services.lots.acting_as(who), lot_id)
    signed = tuple(
        SignatureGiven(g.username, g.meaning, g.password, g.lot_version) for g in body.signatures
    )
    done = await import_lot_map(
        lots,
        lot_id,
        body.xml,
        source=body.source,
        user=who.name,
        onto=body.carrier,
        bin_codes=dict(body.bins),
        signatures=signed,
    )
    response = answer(request, views.import_dict(done))
    response.headers["ETag"] = etag(done.version)  # for If-Match on its next operation
    return response
