"""The material lot page: what a quality engineer opens for a recall. The material lot (its
kind, status, clocks, the tool it is on), its history, and every product lot it went into,
directly or through splits and merges after the use (``material where-used``), with where
each lot is now: those still on the line first, since they are the ones to hold. One read of
the material service for the person logged in; a refusal (role, unknown id) is a page that
says so."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response

from mes.domain.errors import LotTrackerError, UnknownMaterial
from mes.domain.material_reach import Reached
from mes.domain.materials import Material, MaterialEvent
from mes.domain.model import LotState
from pkgline.api.auth import state_of
from pkgline.api.errors import status_of
from pkgline.interlock_views import material_status
from pkgline.station import login as auth
from pkgline.station.render import Viewer, page

router = APIRouter(prefix=auth.PREFIX, include_in_schema=False)

OFF_THE_LINE = frozenset({LotState.COMPLETED, LotState.SCRAPPED})
"""States of a lot that has left the line (a recall finds it at the customer or nowhere)."""


@dataclass(frozen=True)
class MaterialPage:
    material: Material
    status: str
    events: list[MaterialEvent]
    on_line: list[Reached]
    """The lots reached that are still on the line (to hold), first reached first."""
    off_line: list[Reached]
    """Those that have left it (completed or scrapped)."""


@router.get("/materials/{material_id}")
async def material_page(request: Request, who: Viewer, material_id: str) -> Response:
    materials = state_of(request).services.materials.acting_as(who)
    try:
        view = await materials.show(material_id)
        reached = await materials.where_used(material_id)
    except UnknownMaterial as unknown:
        return page(request, "message.html", who, 404, message=str(unknown))
    except LotTrackerError as refused:
        return page(request, "message.html", who, status_of(refused), message=str(refused))
    shown = MaterialPage(
        view.material,
        material_status(view.material, datetime.now(UTC)),
        list(reversed(view.events)),
        [r for r in reached if r.state not in OFF_THE_LINE],
        [r for r in reached if r.state in OFF_THE_LINE],
    )
    return page(request, "material.html", who, view=shown, m=shown.material)
