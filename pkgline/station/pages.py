"""The station's routes: the login, the line page and its live stream, the lot page and its
actions. Each page turns the request into a call of the service layer for the person logged
in and renders the answer; a refusal (role, state, bad input) is shown on the page and
changes nothing, as the API answers it. Not in the OpenAPI document (they are pages).
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.resources import files
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from mes.domain import commands as cmd
from mes.domain.authority import Principal
from mes.domain.errors import LotTrackerError, UnknownLot
from mes.domain.identity import LoginRefused
from mes.domain.model import LotState
from mes.domain.signatures import SignatureGiven
from pkgline.api.auth import state_of
from pkgline.api.errors import status_of
from pkgline.station import login as auth
from pkgline.station.live import Streams, fingerprint, line_events
from pkgline.station.views import line_view, lot_view

MAX_FIELD = 1024
"""The longest form value read (a reason, a password); longer is refused with a message."""

PAGE_HEADERS = {
    "cache-control": "no-store",
    # only the station's own script, styles and stream; no framing (clickjacking), forms
    # post only here; inline style attributes for the legend's colours
    "content-security-policy": "default-src 'self'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}

router = APIRouter(prefix=auth.PREFIX, include_in_schema=False)
Viewer = Annotated[Principal, Depends(auth.viewer)]

_env = Environment(
    loader=PackageLoader("pkgline.station", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates = Jinja2Templates(env=_env)


def install(app: FastAPI) -> None:
    """Mount the station on ``app``: its pages, its assets, its login redirect."""
    app.state.station = Streams()
    app.include_router(router)
    static = StaticFiles(directory=str(files("pkgline.station").joinpath("static")))
    app.mount(f"{auth.PREFIX}/static", static, name="station-static")
    app.add_exception_handler(auth.NeedLogin, _to_login)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(f"{auth.PREFIX}/", status_code=303)


async def _to_login(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, auth.NeedLogin)
    response = RedirectResponse(auth.login_url(exc.next_path), status_code=303)
    if request.cookies.get(auth.COOKIE):
        auth.clear_session_cookie(request, response)
    return response


def _page(
    request: Request,
    name: str,
    who: Principal | None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    token = request.cookies.get(auth.COOKIE)
    context.update(
        who=who,
        csrf=auth.csrf_for(token) if token and who else "",
        prefix=auth.PREFIX,
    )
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers.update(PAGE_HEADERS)
    return response


# -- log in and out ------------------------------------------------------------------------


@router.get("/login")
async def login_form(request: Request, next: str = "") -> HTMLResponse:
    return _login_page(request, next, None, 200)


def _login_page(request: Request, next_path: str, message: str | None, status: int) -> HTMLResponse:
    value = auth.login_csrf_value()
    response = _page(
        request,
        "login.html",
        None,
        status,
        next=auth.safe_next(next_path),
        message=message,
        login_csrf=value,
    )
    auth.set_login_csrf(request, response, value)
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    next_path = auth.safe_next(form.get("next"))
    if not auth.login_csrf_ok(request, form.get(auth.CSRF_FIELD)):
        return _login_page(request, next_path, "The form had expired; try again.", 400)
    username, password = form.get("username"), form.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username:
        return _login_page(request, next_path, "Enter your username and password.", 422)
    if len(username) > 64 or len(password) > MAX_FIELD:
        return _login_page(request, next_path, "Username or password too long.", 422)
    try:
        token, session, _ = await state_of(request).sessions.login(username, password)
    except LoginRefused as refused:
        return _login_page(request, next_path, str(refused), 401)
    response = RedirectResponse(next_path, status_code=303)
    max_age = int((session.expires_at - datetime.now(UTC)).total_seconds())
    auth.set_session_cookie(request, response, token, max(max_age, 1))
    response.delete_cookie(auth.LOGIN_CSRF_COOKIE, path=auth.PREFIX)
    return response


@router.post("/logout")
async def logout(request: Request, who: Viewer) -> Response:
    form = await request.form()
    if not auth.csrf_ok(request, form.get(auth.CSRF_FIELD)):
        return _page(request, "message.html", who, 400, message="The form had expired.")
    await state_of(request).sessions.logout(request.cookies.get(auth.COOKIE, ""))
    response = RedirectResponse(f"{auth.PREFIX}/login", status_code=303)
    auth.clear_session_cookie(request, response)
    return response


# -- the line ---------------------------------------------------------------------------------


@router.get("/")
async def line_page(request: Request, who: Viewer) -> HTMLResponse:
    view = await line_view(state_of(request).services, who)
    fragment = _line_fragment(view)
    return _page(
        request, "line.html", who, line=view, fragment=fragment, version=fingerprint(fragment)
    )


def _line_fragment(view: Any) -> Markup:
    return Markup(_env.get_template("_line.html").render(line=view, prefix=auth.PREFIX))


@router.get("/line/events")
async def line_stream(request: Request, who: Viewer) -> StreamingResponse:
    state = state_of(request)
    token = request.cookies.get(auth.COOKIE, "")

    async def render() -> str:
        person = await state.sessions.authenticate(token)  # a logout ends the stream
        return str(_line_fragment(await line_view(state.services, person)))

    streams: Streams = request.app.state.station
    return StreamingResponse(
        line_events(render, streams),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


# -- lots ---------------------------------------------------------------------------------------


@router.get("/lot")
async def find_lot(request: Request, who: Viewer, id: str = "") -> Response:
    """The search field (a scanner types the lot id and Enter)."""
    lot_id = id.strip()
    if not lot_id:
        return RedirectResponse(f"{auth.PREFIX}/", status_code=303)
    return RedirectResponse(f"{auth.PREFIX}/lots/{_quote(lot_id)}", status_code=303)


def _quote(text: str) -> str:
    return quote(text, safe="")


@router.get("/lots/{lot_id}")
async def lot_page(request: Request, who: Viewer, lot_id: str, done: str = "") -> HTMLResponse:
    return await _lot_page(request, who, lot_id, done=done)


async def _lot_page(
    request: Request,
    who: Principal,
    lot_id: str,
    *,
    status: int = 200,
    message: str | None = None,
    done: str = "",
) -> HTMLResponse:
    services = state_of(request).services
    try:
        view = await lot_view(services, who, lot_id)
    except UnknownLot as unknown:
        return _page(request, "message.html", who, 404, message=str(unknown), lot_id=lot_id)
    except LotTrackerError as refused:
        return _page(request, "message.html", who, status_of(refused), message=str(refused))
    notice = {"hold": "The lot is on hold.", "release": "The lot was released."}.get(done)
    return _page(
        request,
        "lot.html",
        who,
        status,
        view=view,
        lot=view.report.lot,
        states=LotState,
        message=message,
        notice=notice,
    )


async def _lot_form(request: Request) -> tuple[dict[str, str], str | None]:
    form = await request.form()
    if not auth.csrf_ok(request, form.get(auth.CSRF_FIELD)):
        return (
            {},
            "The page had expired (its form token is not this session's): nothing was changed; try again.",
        )
    values: dict[str, str] = {}
    for key, value in form.items():
        if not isinstance(value, str):
            return {}, f"{key}: expected text; nothing was changed"
        if len(value) > MAX_FIELD:
            return {}, f"{key}: longer than {MAX_FIELD} characters; nothing was changed"
        values[key] = value
    return values, None


@router.post("/lots/{lot_id}/hold")
async def hold(request: Request, who: Viewer, lot_id: str) -> Response:
    values, problem = await _lot_form(request)
    if problem is not None:
        return await _lot_page(request, who, lot_id, status=400, message=problem)
    reason = values.get("reason", "").strip()
    command = cmd.HoldLot(lot_id, who.name, reason)
    return await _act(request, who, lot_id, "hold", lambda s: s.hold(command))


@router.post("/lots/{lot_id}/release")
async def release(request: Request, who: Viewer, lot_id: str) -> Response:
    values, problem = await _lot_form(request)
    if problem is not None:
        return await _lot_page(request, who, lot_id, status=400, message=problem)
    reason = values.get("reason", "").strip() or None
    command = cmd.ReleaseLot(lot_id, who.name, reason)
    signed = _signature(who, values)
    if isinstance(signed, str):
        return await _lot_page(request, who, lot_id, status=422, message=signed)
    return await _act(
        request, who, lot_id, "release", lambda s: s.release(command, signatures=signed)
    )


def _signature(who: Principal, values: dict[str, str]) -> tuple[SignatureGiven, ...] | str:
    """The signer's electronic signature from a form (21 CFR 11.200: the password given
    again, the meaning, and the lot's version the page showed, so that a stale page or a
    replay is refused); none without a password (the service says what it needs); a problem
    with the form as a message."""
    password = values.get("password", "")
    if not password:
        return ()
    meaning = values.get("meaning", "").strip()
    version = values.get("lot_version", "")
    if not meaning:
        return (
            "the signature needs its meaning (for example 'approved release'); nothing was changed"
        )
    if not version.isdigit() or int(version) < 1:
        return "the page did not say the lot's version: reload it; nothing was changed"
    return (SignatureGiven(who.name, meaning, password, int(version)),)


async def _act(request: Request, who: Principal, lot_id: str, done: str, action: Any) -> Response:
    lots = state_of(request).services.lots.acting_as(who)
    try:
        await action(lots)
    except LotTrackerError as refused:
        return await _lot_page(
            request, who, lot_id, status=status_of(refused), message=str(refused)
        )
    return RedirectResponse(f"{auth.PREFIX}/lots/{_quote(lot_id)}?done={done}", status_code=303)
