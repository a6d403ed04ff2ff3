"""The holds page (the held lots a page at a time; release from there, signed) and the
start-lot page (the flow's parameters with their defaults, units and claimed limits; a
refusal shown on its field, nothing changed). The tool page is
:mod:`pkgline.station.tool_pages`."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from mes.domain import commands as cmd
from mes.domain.authority import Action, NotAuthorized, Principal
from mes.domain.errors import InvalidInput, LotExists, LotTrackerError, UnknownLot
from mes.domain.model import (
    LOT_ID_PATTERN,
    LOT_ID_RULE,
    MAX_CARRIERS,
    MAX_SITE_COLS,
    MAX_SITE_ROWS,
    PRIORITY_RANGE,
)
from pkgline.api.auth import state_of
from pkgline.api.errors import status_of
from pkgline.station import login as auth
from pkgline.station.account_pages import password_set_by_another
from pkgline.station.holds_paging import PAGING, kept_paging, paging_of
from pkgline.station.holds_view import holds_view
from pkgline.station.lot_pages import refused_fields
from pkgline.station.offers import not_yours, roles_of
from pkgline.station.render import NO_FORM, Form, Viewer, page, quote, read_form
from pkgline.station.work_views import duration, param_fields, start_flow

router = APIRouter(prefix=auth.PREFIX, include_in_schema=False)

# -- holds --------------------------------------------------------------------------------------


@router.get("/holds")
async def holds_page(
    request: Request, who: Viewer, done: str = "", lot: str = "", expired: str = ""
) -> HTMLResponse:
    notice = f"Lot {lot} was released." if done == "release" and lot else None
    # a release sent after the session ended: its dialog opened again (nothing was done)
    reopen = lot if expired == "1" else ""
    return await holds_answer(request, who, notice=notice, reopen=reopen)


async def holds_answer(
    request: Request,
    who: Principal,
    *,
    status: int = 200,
    message: str | None = None,
    notice: str | None = None,
    form: Form | None = None,
    reopen: str = "",
) -> HTMLResponse:
    """One page of the held lots (``after``, ``limit``: the URL's, or those a refused
    release's ``form`` kept; :mod:`pkgline.station.holds_paging`), with a refusal's
    ``message``; the release dialog opened again for lot ``reopen``, with a refused release's
    ``form`` in it, its password fields empty. A malformed cursor or page size, or a cursor
    naming no lot, is answered with the page saying what was expected (422, 404), no lot
    read."""
    services = state_of(request).services
    if form is None:
        given = {k: request.query_params.get(k, "").strip() for k in PAGING}
    else:
        given = kept_paging({k: form.get(k) for k in PAGING})
    try:
        try:
            after, limit = paging_of(given)
            shown = await holds_view(services, who, after=after, limit=limit, reopen=reopen)
        except (InvalidInput, UnknownLot) as bad:  # the cursor or the size; the cursor's lot
            if form is None:
                return _paging_refused(request, who, given, bad, notice)
            given = {}  # a refused release's form naming no lot: its refusal on the first page
            shown = await holds_view(services, who, reopen=reopen)
    except LotTrackerError as refused:
        return page(request, "message.html", who, status_of(refused), message=str(refused))
    rows = (*shown.held, *((shown.reopened,) if shown.reopened else ()))
    releases = any(h.releasable for h in rows)
    kept = {k: v for k, v in given.items() if v}
    return page(
        request,
        "holds.html",
        who,
        status,
        sign_first=await password_set_by_another(request, who) if releases else None,
        shown=shown,
        held=shown.held,
        reopened=shown.reopened,
        paging=kept,
        next_page=_holds_url({**kept, "after": shown.next_after}) if shown.next_after else None,
        first_page=_holds_url({k: v for k, v in kept.items() if k != "after"}),
        duration=duration,
        message=message,
        notice=notice,
        kept=form or NO_FORM,
        reopen=reopen,
        releases=releases,
        roles=roles_of(who),
    )


def _holds_url(query: dict[str, str]) -> str:
    return f"{auth.PREFIX}/holds" + (f"?{urlencode(query)}" if query else "")


def _paging_refused(
    request: Request,
    who: Principal,
    given: dict[str, str],
    refused: LotTrackerError,
    notice: str | None,
) -> HTMLResponse:
    """The holds page saying why its cursor or page size was refused (422; 404 for a cursor
    naming no lot): no lot read, nothing changed, a link to the first page; a release's
    ``notice`` (done before, sent from a page whose cursor names no lot) kept."""
    first = kept_paging({"limit": given.get("limit", "")})  # its size, when well-formed
    return page(
        request,
        "holds.html",
        who,
        status_of(refused),
        shown=None,
        refused_paging=f"{refused}; nothing was read",
        first_page=_holds_url(first),
        message=None,
        notice=notice,
        releases=False,
    )


# -- starting a lot ---------------------------------------------------------------------------

LOT_FIELDS: dict[str, tuple[int, int, int]] = {
    "carriers": (2, 1, MAX_CARRIERS),
    "rows": (4, 1, MAX_SITE_ROWS),
    "cols": (8, 1, MAX_SITE_COLS),
    "priority": (5, PRIORITY_RANGE.start, PRIORITY_RANGE.stop - 1),
}
"""The start form's whole-number fields: default, lowest, highest (the lot tracker's)."""


START_FIELDS = {"params": "param"}
"""A start's inputs (:class:`mes.domain.commands.StartLot`) -> its form's fields."""


@router.get("/start")
async def start_page(request: Request, who: Viewer, flow: str = "") -> HTMLResponse:
    return await _start_answer(request, who, flow, Form([]), {}, None, 200)


async def _start_answer(
    request: Request,
    who: Principal,
    flow_name: str,
    form: Form,
    errors: dict[str, str],
    message: str | None,
    status: int,
) -> HTMLResponse:
    services = state_of(request).services
    names = sorted(services.lots.flows.flows)
    flow = version = None
    fields: tuple[Any, ...] = ()
    if flow_name:
        try:
            flow, version = await start_flow(services, flow_name)
            fields = param_fields(flow)
        except LotTrackerError as refused:
            errors = {**errors, "flow": str(refused)}
            status = max(status, 422)
    return page(
        request,
        "start.html",
        who,
        status,
        flows=names,
        flow=flow,
        flow_name=flow_name,
        version=version,
        fields=fields,
        lot_fields=LOT_FIELDS,
        lot_id_rule=LOT_ID_RULE,
        given=form,
        errors=errors,
        message=message,
        # the start form, or why it is not the person's (the flows' parameters are read)
        not_starting=not_yours(who, Action.START),
    )


@router.post("/start")
async def start(request: Request, who: Viewer) -> Response:
    form, problem = await read_form(request, who)
    flow_name = form.get("flow").strip()
    if problem is not None:
        return await _start_answer(request, who, flow_name, form, {}, problem, 400)
    services = state_of(request).services
    lot_id = form.get("lot").strip()
    try:  # a role that may never start a lot is told so (and recorded) before its fields
        await services.lots.authorize_some(Action.START, lot_id, by=who)
    except NotAuthorized as refused:
        return await _start_answer(request, who, flow_name, form, {}, str(refused), 403)
    errors: dict[str, str] = {}
    if not lot_id:
        errors["lot"] = "give the new lot's id"
    elif not LOT_ID_PATTERN.fullmatch(lot_id):
        errors["lot"] = f"expected {LOT_ID_RULE}, got {lot_id!r}"
    numbers: dict[str, int] = {}
    for name, (default, low, high) in LOT_FIELDS.items():
        text = form.get(name).strip() or str(default)
        digits = text.removeprefix("-")
        if not (digits.isascii() and digits.isdigit()) or not low <= int(text) <= high:
            errors[name] = f"expected a whole number from {low} to {high}, got {text!r}"
        else:
            numbers[name] = int(text)
    try:
        flow, _ = await start_flow(services, flow_name)
    except LotTrackerError as refused:
        errors["flow"] = str(refused)
        return await _start_answer(request, who, "", form, errors, None, 422)
    params: dict[str, str] = {}
    for name, spec in flow.lot_params.items():
        text = form.get(f"param.{name}").strip()
        if not text:
            continue  # the flow's default
        try:
            spec.parse(text)
        except ValueError as exc:
            errors[f"param.{name}"] = str(exc)
        params[name] = text
    if errors:
        return await _start_answer(request, who, flow_name, form, errors, None, 422)
    command = cmd.StartLot(
        lot_id=lot_id,
        flow=flow_name,
        user=who.name,
        carriers=numbers["carriers"],
        site_rows=numbers["rows"],
        site_cols=numbers["cols"],
        params=params,
        priority=numbers["priority"],
    )
    try:
        await services.lots.acting_as(who).start(command)
    except LotExists as exists:
        errors["lot"] = str(exists)
        return await _start_answer(request, who, flow_name, form, errors, None, 409)
    except LotTrackerError as refused:  # on the parameters' fields it names, if any
        errors |= refused_fields(refused, START_FIELDS)
        return await _start_answer(
            request, who, flow_name, form, errors, str(refused), status_of(refused)
        )
    done = urlencode({"done": "start"})
    return RedirectResponse(f"{auth.PREFIX}/lots/{quote(lot_id)}?{done}", status_code=303)
