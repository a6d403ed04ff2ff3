"""The material lot page: what a quality engineer opens for a recall. The material lot (its
kind, status, clocks, the tool it is on, its quarantine), its history, and every product lot
it went into, directly or through splits and merges after the use (``material where-used``),
with where each lot is now: those still on the line first, since they are the ones to hold.
One read of the material service for the person logged in; a refusal (role, unknown id) is a
page that says so.

Its actions, quality's (``quarantine``: :mod:`mes.domain.material_quarantine`): quarantine
the material lot with a hold reason code and a reason, holding the lots still on the line
that got it too when asked; hold those lots alone; release the quarantine (signed: the
password given again, as the lot page's release). Each is one call
of the material service for the person logged in, which checks the role (a refusal is
recorded) before anything else; a refusal is shown on the page with the form's values kept,
nothing changed; after an action the browser is sent back to the page (POST, redirect,
GET), so a reload does not repeat it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from mes.domain.authority import Action, Principal
from mes.domain.errors import InvalidInput, LotTrackerError, UnknownMaterial
from mes.domain.material_reach import Reached
from mes.domain.materials import Material, MaterialEvent
from mes.domain.model import LotState
from mes.domain.reasons import ReasonCode, ReasonKind
from mes.materials import MaterialService
from pkgline.api.auth import state_of
from pkgline.api.errors import status_of
from pkgline.interlock_views import material_status
from pkgline.station import login as auth
from pkgline.station.offers import not_yours
from pkgline.station.render import Form, Viewer, kept_for, page, quote, read_form, signatures

router = APIRouter(prefix=auth.PREFIX, include_in_schema=False)

OFF_THE_LINE = frozenset({LotState.COMPLETED, LotState.SCRAPPED})
"""States of a lot that has left the line (a recall finds it at the customer or nowhere)."""

NOTICES = {
    "quarantine": "The material lot was quarantined: it cannot be loaded, and no track-in runs "
    "on a tool where it is loaded, until quality releases it.",
    "release": "The material lot was released from quarantine. The lots a recall held stay "
    "held: each is released as a hold is.",
    "hold-lots": "The lots still on the line that got the material lot were held.",
}


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
async def material_page(
    request: Request, who: Viewer, material_id: str, done: str = "", held: str = ""
) -> Response:
    notice = NOTICES.get(done)
    if notice and held.isdigit():
        notice += f" Lots held now: {held} (on hold already or off the line: not touched)."
    return await material_answer(request, who, material_id, notice=notice)


async def material_answer(
    request: Request,
    who: Principal,
    material_id: str,
    *,
    status: int = 200,
    message: str | None = None,
    notice: str | None = None,
    form: Form | None = None,
) -> Response:
    """The material lot page (with a refusal's ``message`` and the refused ``form``'s values
    kept in the form it came from)."""
    services = state_of(request).services
    materials = services.materials.acting_as(who)
    not_quality = not_yours(who, Action.QUARANTINE)
    try:
        view = await materials.show(material_id)
        reached = await materials.where_used(material_id)
        codes: list[ReasonCode] = (
            [] if not_quality else await services.reasons.find(kind=ReasonKind.HOLD, by=who)
        )
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
    return page(
        request,
        "material.html",
        who,
        status,
        view=shown,
        m=shown.material,
        message=message,
        notice=notice,
        kept=kept_for(request, form),
        not_quality=not_quality,
        hold_codes=codes,
        release_signers=services.materials.signing.policy.signers(Action.MATERIAL_RELEASE),
    )


@router.post("/materials/{material_id}/quarantine")
async def quarantine(request: Request, who: Viewer, material_id: str) -> Response:
    """Quarantine the material lot with the form's code and reason; with ``hold_lots``
    checked, hold the lots still on the line that got it in the same transaction."""

    async def action(materials: MaterialService, form: Form) -> int | None:
        done = await materials.quarantine(
            material_id,
            form.get("code").strip(),
            form.get("reason"),
            who.name,
            hold_lots=form.get("hold_lots") == "on",
        )
        return len(done.recall.held) if done.recall is not None else None

    return await _act(request, who, material_id, "quarantine", action)


@router.post("/materials/{material_id}/hold-lots")
async def hold_lots(request: Request, who: Viewer, material_id: str) -> Response:
    """Hold the lots still on the line that got the material lot (a recall)."""

    async def action(materials: MaterialService, form: Form) -> int | None:
        reason = form.get("reason").strip() or None
        done = await materials.hold_lots(material_id, form.get("code").strip(), reason, who.name)
        return len(done.held)

    return await _act(request, who, material_id, "hold-lots", action)


@router.post("/materials/{material_id}/release")
async def release(request: Request, who: Viewer, material_id: str) -> Response:
    """Lift the material lot's quarantine, with the form's reason, signed as the lot page's
    release is: the password given again, the meaning, and the material lot's version the
    page showed (``lot_version``: a stale page or a replay is refused by the service)."""

    async def action(materials: MaterialService, form: Form) -> int | None:
        signed = signatures(who, form)
        if isinstance(signed, str):  # the form's own problem, after the role: nothing done
            await materials.authorize(Action.QUARANTINE)
            raise InvalidInput(signed)
        await materials.release(material_id, form.get("reason"), who.name, signatures=signed)
        return None

    return await _act(request, who, material_id, "release", action)


async def _act(
    request: Request,
    who: Principal,
    material_id: str,
    done: str,
    action: Callable[[MaterialService, Form], Awaitable[int | None]],
) -> Response:
    """Read the form, run ``action`` for the person logged in (the service refuses a role
    that may not, recorded, before it reads anything); a refusal on the page with the form's
    values kept, else back to the page (with how many lots were held)."""
    form, problem = await read_form(request, who)
    if problem is not None:
        return await material_answer(
            request, who, material_id, status=400, message=problem, form=form
        )
    materials = state_of(request).services.materials.acting_as(who)
    try:
        held = await action(materials, form)
    except LotTrackerError as refused:
        return await material_answer(
            request, who, material_id, status=status_of(refused), message=str(refused), form=form
        )
    query = {"done": done, **({"held": str(held)} if held is not None else {})}
    url = f"{auth.PREFIX}/materials/{quote(material_id)}?{urlencode(query)}"
    return RedirectResponse(url, status_code=303)
