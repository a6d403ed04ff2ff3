"""The tool page (E10 states over a window, availability, utilization, recipe, what is on the
tool, recent jobs, alarms) and its actions: load a material lot on the tool (scanned or
typed), unload one; declare the tool down (planned maintenance or not scheduled, with a
reason: ``pkgline tool down``) and bring it up (``pkgline tool up``). Each action is one
call of the material or equipment service for the person logged in, as the API's; a refusal
(role, recorded in the security log; a material lot of another class or past its clocks, an
unknown id, a lot running on the tool, a stale form) is shown on the tool page and changes
nothing. After an action succeeds the browser is sent back to the page (POST, redirect,
GET), so a reload does not repeat it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from mes.domain.authority import Action, Principal
from mes.domain.errors import InvalidInput, LotTrackerError, UnknownTool
from mes.domain.tool_down import DECLARABLE
from mes.materials import MaterialService
from pkgline.api.auth import state_of
from pkgline.api.errors import status_of
from pkgline.station import login as auth
from pkgline.station.offers import not_yours
from pkgline.station.render import Form, Viewer, kept_for, page, quote, read_form
from pkgline.station.work_views import WINDOWS, tool_view
from pkgline.tool_views import parse_window

router = APIRouter(prefix=auth.PREFIX, include_in_schema=False)

NOTICES = {
    "load": "The material lot was loaded on the tool.",
    "unload": "The material lot was taken off the tool.",
    "down": "The tool was declared down: its track-ins are refused until it is brought up.",
    "up": "The tool was brought up: it is in the state it reports.",
    "as-was": "The tool was so already: nothing was changed.",
}


@router.get("/tools/{tool_id}")
async def tool_page(
    request: Request, who: Viewer, tool_id: str, window: str = "8h", done: str = ""
) -> Response:
    return await tool_answer(request, who, tool_id, window=window, done=done)


async def tool_answer(
    request: Request,
    who: Principal,
    tool_id: str,
    *,
    window: str = "8h",
    status: int = 200,
    message: str | None = None,
    done: str = "",
    form: Form | None = None,
) -> Response:
    """The tool page over ``window`` (with a refusal's ``message`` and the refused ``form``'s
    values kept in the form it came from: ``kept(action)``, :func:`kept_for`)."""
    try:
        span = parse_window(window, "window")
    except ValueError as exc:
        status, message, window = 422, str(exc), "8h"
        span = parse_window(window)
    try:
        view = await tool_view(state_of(request).services, who, tool_id, span, window)
    except UnknownTool as unknown:
        text = f"{unknown}; the tools are: {', '.join(unknown.allowed) or 'none'}"
        return page(request, "message.html", who, 404, message=text)
    except LotTrackerError as refused:
        return page(request, "message.html", who, status_of(refused), message=str(refused))
    return page(
        request,
        "tool.html",
        who,
        status,
        view=view,
        tool=view.tool,
        windows=WINDOWS,
        message=message,
        notice=NOTICES.get(done),
        kept=kept_for(request, form),
        # the load and unload forms, or why they are not the person's
        not_handling=not_yours(who, Action.MATERIAL_HANDLING),
        # the declare-down and bring-up forms: none for a person who may not
        may_declare=not_yours(who, Action.TOOL_DOWN) is None,
        declarable=DECLARABLE,
    )


@router.post("/tools/{tool_id}/load")
async def load(request: Request, who: Viewer, tool_id: str) -> Response:
    """Load the material lot the form names on the tool (an operator at the tool scans it)."""

    async def action(form: Form) -> str:
        material = form.get("material").strip()
        if not material:
            raise InvalidInput("material: scan or type the material lot's id; nothing was changed")
        await materials(request, who).load(material, tool_id, who.name)
        return "load"

    return await _act(request, who, tool_id, Action.MATERIAL_HANDLING, action)


@router.post("/tools/{tool_id}/unload")
async def unload(request: Request, who: Viewer, tool_id: str) -> Response:
    """Take the material lot the form names off the tool, with the reason given."""

    async def action(form: Form) -> str:
        material = form.get("material").strip()
        service = materials(request, who)
        loaded = [m.id for m in await service.find(tool_id=tool_id)]
        if material not in loaded:
            raise InvalidInput(
                f"material lot {material or '(none)'} is not loaded on {tool_id}; expected one "
                f"of: {', '.join(loaded) or 'none is loaded'}; nothing was changed",
                allowed=loaded,
            )
        await service.unload(material, who.name, form.get("reason").strip() or None)
        return "unload"

    return await _act(request, who, tool_id, Action.MATERIAL_HANDLING, action)


@router.post("/tools/{tool_id}/down")
async def declare_down(request: Request, who: Viewer, tool_id: str) -> Response:
    """Declare the tool out of production (``tool down``): the E10 state the form names
    (planned maintenance, not scheduled) with the reason given; refused while a lot runs
    on it."""

    async def action(form: Form) -> str:
        e10, reason = form.get("e10"), form.get("reason").strip()
        if e10 not in DECLARABLE:
            raise InvalidInput(
                f"e10: choose {' or '.join(DECLARABLE.values())} ({', '.join(DECLARABLE)}); "
                "nothing was changed",
                allowed=list(DECLARABLE),
            )
        if not reason:
            raise InvalidInput("reason: say why the tool goes down; nothing was changed")
        equipment = state_of(request).services.equipment.acting_as(who)
        _, changed = await equipment.declare_down(tool_id, e10, who.name, reason)
        return "down" if changed else "as-was"

    return await _act(request, who, tool_id, Action.TOOL_DOWN, action)


@router.post("/tools/{tool_id}/up")
async def bring_up(request: Request, who: Viewer, tool_id: str) -> Response:
    """Bring the tool declared down back up (``tool up``), with the reason given if any."""

    async def action(form: Form) -> str:
        equipment = state_of(request).services.equipment.acting_as(who)
        reason = form.get("reason").strip() or None
        _, changed = await equipment.bring_up(tool_id, who.name, reason)
        return "up" if changed else "as-was"

    return await _act(request, who, tool_id, Action.TOOL_DOWN, action)


def materials(request: Request, who: Principal) -> MaterialService:
    return state_of(request).services.materials.acting_as(who)


async def _act(
    request: Request,
    who: Principal,
    tool_id: str,
    needs: Action,
    action: Callable[[Form], Awaitable[str]],
) -> Response:
    """Read the form, run ``action`` on it for the person logged in (what it did: a key of
    :data:`NOTICES`); a refusal on the tool page (the form's values kept), else back to the
    page."""
    form, problem = await read_form(request, who)
    if problem is not None:
        return await tool_answer(request, who, tool_id, status=400, message=problem, form=form)
    state = state_of(request)
    try:  # a role that may never do it is told so (recorded) before the form's fields
        await state.identity.authorize(who, needs)
        done = await action(form)
    except LotTrackerError as refused:
        return await tool_answer(
            request, who, tool_id, status=status_of(refused), message=str(refused), form=form
        )
    url = f"{auth.PREFIX}/tools/{quote(tool_id)}?{urlencode({'done': done})}"
    return RedirectResponse(url, status_code=303)
