"""The station's routes: the login, the line page and its live stream, the search field.
The lot page and its actions are in :mod:`pkgline.station.lot_pages`, the tool page and its
in :mod:`pkgline.station.tool_pages`, the holds and start-lot pages in
:mod:`pkgline.station.work_pages`, the SPC charts in :mod:`pkgline.station.spc_pages`, your
own password in :mod:`pkgline.station.account_pages`, the security log in
:mod:`pkgline.station.security_pages`. Each page turns the request into a call
of the service layer for the person logged in and renders the answer; a refusal (role,
state, bad input) is shown on the page and changes nothing, as the API answers it. Not in
the OpenAPI document (they are pages).
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.resources import files
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from markupsafe import Markup
from starlette.exceptions import HTTPException

from mes.domain.authority import Action, Principal
from mes.domain.identity import LoginRefused, TooManyFailures
from pkgline.api.auth import state_of
from pkgline.api.errors import http_refused
from pkgline.station import (
    account_pages,
    lot_pages,
    material_pages,
    security_pages,
    spc_pages,
    tool_pages,
    work_pages,
)
from pkgline.station import login as auth
from pkgline.station.line_view import SHOWN, SHOWN_PER_STEP, line_view
from pkgline.station.live import Streams, fingerprint, line_events
from pkgline.station.render import MAX_FIELD, Viewer, env, quote
from pkgline.station.render import page as _page

router = APIRouter(prefix=auth.PREFIX, include_in_schema=False)


def install(app: FastAPI) -> None:
    """Mount the station on ``app``: its pages, its assets, its login redirect."""
    streams = Streams()
    state = getattr(app.state, "pkgline", None)
    streams.watch(state.commits if state is not None else None)
    app.state.station = streams
    app.include_router(router)
    app.include_router(lot_pages.router)
    app.include_router(work_pages.router)
    app.include_router(tool_pages.router)
    app.include_router(material_pages.router)
    app.include_router(account_pages.router)
    app.include_router(spc_pages.router)
    app.include_router(security_pages.router)
    static = StaticFiles(directory=str(files("pkgline.station").joinpath("static")))
    app.mount(f"{auth.PREFIX}/static", static, name="station-static")
    app.add_exception_handler(auth.NeedLogin, _to_login)
    app.add_exception_handler(HTTPException, _refused)  # the API's, but pages for the station

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(f"{auth.PREFIX}/", status_code=303)


async def _refused(request: Request, exc: Exception) -> Response:
    """A page, not the API's JSON, for what a browser asked of the station that no route
    answers (a link mistyped or gone, a form too large); the API's answer elsewhere."""
    assert isinstance(exc, HTTPException)
    if not is_page_path(request.url.path):
        return await http_refused(request, exc)
    form = auth.form_page(request.url.path)
    if exc.status_code == 405 and request.method in ("GET", "HEAD") and form is not None:
        # a form's address asked for as a page (a refused form's page refreshed, its tab
        # restored, the address given again): the page the form is on, as it is now
        return RedirectResponse("/".join(map(quote, form[0].split("/"))), status_code=303)
    return refusal_page(request, exc)


def is_page_path(path: str) -> bool:
    """A path of the station's (its pages, forms and assets)."""
    return path == auth.PREFIX or path.startswith(auth.PREFIX + "/")


def refusal_page(request: Request, exc: HTTPException) -> HTMLResponse:
    """The page that says what the station cannot answer (``exc``: 404, 405, 413, ...)."""
    words = _refusal_words(request, exc)
    return _page(request, "message.html", None, exc.status_code, message=words)


def _refusal_words(request: Request, exc: HTTPException) -> str:
    path = request.url.path
    if exc.status_code == 404:
        return f"There is no page {path} at the station."
    if exc.status_code == 405:
        return f"{path} is not for {request.method}: go back and use the page's own buttons."
    if exc.status_code == 413:
        return "What the form sent is larger than the station reads; nothing was changed."
    if exc.status_code == 401:  # a token in the URL: the path may hold it, not shown again
        return str(exc.detail)
    return f"{path}: {exc.detail}"


async def _to_login(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, auth.NeedLogin)
    response = RedirectResponse(auth.login_url(exc.next_path), status_code=303)
    if request.cookies.get(auth.COOKIE):
        auth.clear_session_cookie(request, response)
    return response


# -- log in and out ------------------------------------------------------------------------


@router.get("/login")
async def login_form(request: Request, next: str = "") -> HTMLResponse:
    return _login_page(request, next, None, 200)


def _login_page(
    request: Request, next_path: str, message: str | None, status: int, username: str = ""
) -> HTMLResponse:
    """The login form (``username``: the name a refused login gave, shown again; never its
    password)."""
    value = auth.login_csrf_value()
    response = _page(
        request,
        "login.html",
        None,
        status,
        next=auth.safe_next(next_path),
        message=message,
        ended=parse_qs(urlsplit(next_path).query).get(auth.EXPIRED_FLAG) == ["1"],
        login_csrf=value,
        username=username,
    )
    auth.set_login_csrf(request, response, value)
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    next_path = auth.safe_next(form.get("next"))
    if await auth.login_csrf_refused(request, form.get(auth.CSRF_FIELD), form.get("username")):
        return _login_page(request, next_path, "The form had expired; try again.", 400)
    username, password = form.get("username"), form.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username:
        return _login_page(request, next_path, "Enter your username and password.", 422)
    if len(username) > 64 or len(password) > MAX_FIELD:
        return _login_page(request, next_path, "Username or password too long.", 422)
    if "\x00" in username:  # no account's name has one (PostgreSQL: a 500 looking it up)
        return _login_page(request, next_path, "The username holds a NUL character.", 422)
    try:
        token, session, _ = await state_of(request).sessions.login(username, password)
    except LoginRefused as refused:
        return _login_page(request, next_path, str(refused), 401, username)
    except TooManyFailures as throttled:  # this host's guesses: nothing was checked
        return _login_page(request, next_path, str(throttled), 429, username)
    response = RedirectResponse(next_path, status_code=303)
    max_age = int((session.expires_at - datetime.now(UTC)).total_seconds())
    auth.set_session_cookie(request, response, token, max(max_age, 1))
    response.delete_cookie(auth.LOGIN_CSRF_COOKIE, path=auth.PREFIX)
    return response


@router.post("/logout")
async def logout(request: Request, who: Viewer) -> Response:
    form = await request.form()
    if await auth.csrf_refused(request, who, form.get(auth.CSRF_FIELD)):
        return _page(request, "message.html", who, 400, message="The form had expired.")
    await state_of(request).sessions.logout(request.cookies.get(auth.COOKIE, ""))
    response = RedirectResponse(f"{auth.PREFIX}/login", status_code=303)
    auth.clear_session_cookie(request, response)
    return response


# -- the line ---------------------------------------------------------------------------------


@router.get("/")
async def line_page(request: Request, who: Viewer) -> HTMLResponse:
    fragment = await _line_for(request, who)
    return _page(
        request, "line.html", who, fragment=Markup(fragment), version=fingerprint(fragment)
    )


async def _line_for(request: Request, who: Principal) -> str:
    """The rendered line for ``who`` (their authority to read checked, the rendering shared
    with the other viewers of the moment: :class:`SharedLine`)."""
    state = state_of(request)
    await state.identity.authorize(who, Action.READ)
    streams: Streams = request.app.state.station

    async def render() -> str:
        view = await line_view(state.services, who)
        return env.get_template("_line.html").render(
            line=view, prefix=auth.PREFIX, shown=SHOWN, per_step=SHOWN_PER_STEP
        )

    return await streams.line.get(render)


@router.get("/line/events")
async def line_stream(request: Request, who: Viewer) -> StreamingResponse:
    state = state_of(request)
    token = request.cookies.get(auth.COOKIE, "")

    async def render() -> str:
        person = await state.sessions.authenticate(token)  # a logout ends the stream
        return await _line_for(request, person)

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
    return RedirectResponse(f"{auth.PREFIX}/lots/{quote(lot_id)}", status_code=303)
