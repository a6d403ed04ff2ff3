"""The application factory: the routes, the refusal handlers and the body limit around the
services that :mod:`pkgline.api.server` (or a test) opened."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mes.adapters.errors import DatabaseUnavailable
from mes.domain.identity import LoginRefused
from mes.guard import REQUEST_ORIGIN, REQUEST_PLACE
from pkgline import __version__
from pkgline.api import (
    durables,
    errors,
    flows,
    line,
    lots,
    maps,
    materials,
    reasons,
    session,
    spc,
    tools,
    users,
)
from pkgline.api.auth import ApiState, refuse_token_in_url
from pkgline.api.defaults import MAX_BODY_BYTES
from pkgline.api.errors import error_response, too_large
from pkgline.api.fastlane import FastLane
from pkgline.api.peer import PEER_KEY, PeerCredentials
from pkgline.station import pages as station

DESCRIPTION = """The pkgline server: the lot tracker's reads and operations (lots and their
E142 maps, flow versions, tools, and the interlocks' durables, material lots, reason codes
and SPC charts), with the same rules, service layer, JSON and refusals as the `pkgline` CLI
(docs/api.md). Local clients on the Unix socket are known by their OS account; remote ones
send `Authorization: Bearer` with a session token (POST /session with a password) or an API
key (the `bearer` scheme). Refusals: 400 a body that is not JSON, 401 credentials, 403 role,
404 unknown, 405 method, 409 state or conflict, 413 body too large, 422 invalid value, 429
too many failed password checks, 503 database unavailable; the body (`Refusal`) says what was
refused, why, the claim and what is allowed."""


def create_app(state: ApiState, *, max_body_bytes: int = MAX_BODY_BYTES) -> Any:
    """The ASGI application serving ``state`` (wrapped in the body limit)."""
    app = build_app(state, max_body_bytes)
    inner = ServerTiming(NoNulInUrl(NoTokenInUrl(FastLane(app, max_body_bytes), state)))
    return RequestOrigin(DeclaredBodyLimit(inner, max_body_bytes))


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API (docs/openapi.json is a copy: ``pkgline api
    --print-openapi``)."""
    document: dict[str, Any] = build_app(None, MAX_BODY_BYTES).openapi()
    return document


def build_app(state: ApiState | None, max_body_bytes: int) -> FastAPI:
    app = FastAPI(
        title="pkgline",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        max_body_size=max_body_bytes,  # past it: 413 before the body is read further
    )
    app.state.pkgline = state
    errors.install(app)
    app.include_router(lots.router)
    app.include_router(maps.router)
    app.include_router(flows.router)
    app.include_router(session.router)
    app.include_router(tools.router)
    app.include_router(durables.router)
    app.include_router(materials.router)
    app.include_router(reasons.router)
    app.include_router(spc.router)
    app.include_router(line.router)
    app.include_router(users.router)
    station.install(app)  # the operator station's pages (docs/station.md)

    @app.get("/health", tags=["server"], summary="The server answers (no credentials needed)")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    return app


class RequestOrigin:
    """Each request is served with where it came from in :data:`mes.guard.REQUEST_ORIGIN`,
    so that the security events it makes say it (a failed login's address, as a plant's
    security review asks): the peer's address and port and the listener's scheme over TCP,
    the peer's pid on the Unix socket (its OS account is the principal already); and in
    :data:`mes.guard.REQUEST_PLACE` the place its failed password checks count against
    (the host, the local account: the throttle of :mod:`mes.domain.throttle`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = REQUEST_ORIGIN.set(origin_of(scope))
        place = REQUEST_PLACE.set(place_of(scope))
        try:
            await self.app(scope, receive, send)
        finally:
            REQUEST_PLACE.reset(place)
            REQUEST_ORIGIN.reset(token)


def origin_of(scope: Scope) -> str | None:
    """Where the request of ``scope`` came from, in words (None: not known)."""
    peer = scope.get(PEER_KEY)
    if isinstance(peer, PeerCredentials):
        return f"local socket, pid {peer.pid}"
    client = scope.get("client")
    if client:
        host, port = client[0], client[1]
        where = f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
        return f"{where} ({scope.get('scheme', 'http')})"
    return None


def place_of(scope: Scope) -> str | None:
    """The place the failed password checks of ``scope``'s request count against
    (:data:`mes.guard.REQUEST_PLACE`): the peer's host, or its OS account on the local socket."""
    peer = scope.get(PEER_KEY)
    if isinstance(peer, PeerCredentials):
        return f"local uid {peer.uid}"
    client = scope.get("client")
    return f"host {client[0]}" if client else None


class NoNulInUrl:
    """A path or query that holds a NUL character (``/lots/%00``, ``?lot=%00``) is refused
    (422 ``invalid_request``) before any route reads it: no id or text of pkgline holds one,
    and PostgreSQL refuses it in any statement (the lookup was a 500, a traceback in the
    log). Bodies are checked by :class:`pkgline.api.bodies.Body`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope["path"] or b"\x00" in unquote_to_bytes(scope["query_string"])
        ):
            await _nul_refused(scope)(scope, receive, send)
            return
        await self.app(scope, receive, send)


NUL_IN_URL = (
    "the URL holds a NUL character (%00): no lot, tool, user or other id holds one, nor any "
    "query value; nothing was changed"
)


def _nul_refused(scope: Scope) -> ASGIApp:
    if station.is_page_path(scope["path"]):
        return station.refusal_page(Request(scope), HTTPException(422, NUL_IN_URL))
    return error_response(422, {"error": "invalid_request", "message": NUL_IN_URL})


class NoTokenInUrl:
    """A request whose URL's query or path holds an API key or a session token is refused
    (401) and recorded as a failed login naming the token's id, before any route: the routes
    that ask for no credentials (the login and logout, /health, /openapi.json, the station's
    pages) served it, and the exposed token kept working unrecorded; one in the path
    (``/lots/pkl_...``) was answered 404 and not recorded
    (:func:`pkgline.api.auth.refuse_token_in_url`)."""

    def __init__(self, app: ASGIApp, state: ApiState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (scope["query_string"] or "_" in scope["path"]):
            refusal: ASGIApp | None = None
            try:
                await refuse_token_in_url(self.state, scope["query_string"], scope["path"])
            except LoginRefused as exc:
                if station.is_page_path(scope["path"]):
                    refusal = station.refusal_page(Request(scope), HTTPException(401, exc.message))
                else:
                    refusal = error_response(401, exc.to_dict())
            except (DatabaseUnavailable, OSError) as exc:
                refusal = await errors.database(Request(scope), exc)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


class DeclaredBodyLimit:
    """A body declared larger than the limit (Content-Length) is answered 413 with the JSON
    refusal before anything reads it; one that grows past it while it is read is FastAPI's
    ``max_body_size`` (the same 413, through :mod:`.errors`)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                    await _too_large(scope)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _too_large(scope: Scope) -> ASGIApp:
    """The refusal of a body too large: the station's page for a form, else the JSON."""
    if station.is_page_path(scope["path"]):
        return station.refusal_page(Request(scope), HTTPException(413))
    return too_large()


class ServerTiming:
    """Each answer says how long the server took to start it: ``Server-Timing: app;dur=MS``
    (from the request's arrival to its headers; for an event stream, to its opening). What
    bench/station.py reads as server time; browsers show it in their developer tools."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                ms = (time.perf_counter() - start) * 1000.0
                headers = list(message.get("headers", []))
                headers.append((b"server-timing", f"app;dur={ms:.2f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, timed)
