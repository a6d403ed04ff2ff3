"""The tool page (E10 states over a window, availability, utilization, recipe, what is on the
tool, recent jobs, alarms) and its actions: load a material lot on the tool (scanned or
typed), unload one. Each action is one call of the material service for the person logged
in; a refusal (role, a material lot of another class or past its clocks, an unknown id, a
stale form) is shown on the tool page and changes nothing. After an action succeeds the
browser is sent back to the page (POST, redirect, GET), so a reload does not repeat it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from mes.domain.authority import Action, Principal
from mes.domain.errors import InvalidInput, LotTrackerError, UnknownTool
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
    )


@router.post("/tools/{tool_id}/load")
async def load(request: Request, who: Viewer, tool_id: str) -> Response:
    """Load the material lot the form names on the tool (an operator at the tool scans it)."""

    async def action(materials: MaterialService, material: str, form: Form) -> None:
        if not material:
            raise InvalidInput("material: scan or type the material lot's id; nothing was changed")
        await materials.load(material, tool_id, who.name)

    return await _act(request, who, tool_id, "load", action)


@router.post("/tools/{tool_id}/unload")
async def unload(request: Request, who: Viewer, tool_id: str) -> Response:
    """Take the material lot the form names off the tool, with the reason given."""

    async def action(materials: MaterialService, material: str, form: Form) -> None:
        loaded = [m.id for m in await materials.find(tool_id=tool_id)]
        if material not in loaded:
            raise InvalidInput(
                f"material lot {material or '(none)'} is not loaded on {tool_id}; expected one "
                f"of: {', '.join(loaded) or 'none is loaded'}; nothing was changed",
                allowed=loaded,
            )
        await materials.unload(material, who.name, form.get("reason").strip() or None)

    return await _act(request, who, tool_id, "unload", action)


async def _act(
    request: Request,
    who: Principal,
    tool_id: str,
    done: str,
    action: Callable[[MaterialService, str, Form], Awaitable[None]],
) -> Response:
    """Read the form, run ``action`` with the material lot it names for the person logged in;
    a refusal on the tool page (the form's values kept), else back to the page."""
    form, problem = await read_form(request, who)
    if problem is not None:
        return await tool_answer(request, who, tool_id, status=400, message=problem, form=form)
    state = state_of(request)
    materials = state.services.materials.acting_as(who)
    try:  # a role that may never handle material is told so (recorded) before the id
        await state.identity.authorize(who, Action.MATERIAL_HANDLING)
        await action(materials, form.get("material").strip(), form)
    except LotTrackerError as refused:
        return await tool_answer(
            request, who, tool_id, status=status_of(refused), message=str(refused), form=form
        )
    url = f"{auth.PREFIX}/tools/{quote(tool_id)}?{urlencode({'done': done})}"
    return RedirectResponse(url, status_code=303)
