"""The lot operations' short way through the server: ``POST /lots/{lot_id}/{operation}``
with a JSON body that is valid, answered by the very route function FastAPI would call,
without FastAPI's per-request machinery around it.

A lot move through FastAPI cost the server about twice the move itself: the routing over
every route of the API, the dependency solving, the middleware stack (bench/api.py). The
operations a line calls most (track-in, track-out, and every other lot operation of the
same shape: the request, its principal, the lot's id and one body model) take this lane:

- the body is read whole (the server's body limit applies: past it, 413), parsed as FastAPI
  parses it (:func:`pkgline.api.json_bodies.loads`: the standard library's JSON, an object
  giving a key twice refused) and validated by the route's own body model;
- the principal comes from :func:`pkgline.api.auth.principal`, as the route's dependency;
- the route's function is called with them, and its answer sent;
- a refusal of the lot tracker, the database's unavailability or a schema mismatch is
  answered by the handlers FastAPI uses (:mod:`pkgline.api.errors`).

Anything else goes to FastAPI unchanged, the body given again: a body that is not JSON,
gives a key twice or is not valid (FastAPI says why, in its words), another content type, a query string (refused
there: these routes take none), any other path or method.
The answers are the same either way: the API's tests run through this lane for valid bodies
and through FastAPI for the rest. OpenAPI still documents the routes (FastAPI's)."""

from __future__ import annotations

import re
import typing
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.types import Message, Receive, Scope, Send

from mes.adapters.errors import DatabaseUnavailable
from mes.adapters.schema import SchemaMismatch
from mes.domain.errors import LotTrackerError
from pkgline.api import errors
from pkgline.api.auth import principal
from pkgline.api.errors import too_large
from pkgline.api.json_bodies import loads
from pkgline.api.lots import router as lots_router

Operation = Callable[..., Awaitable[Response]]
Lane = tuple[type[BaseModel], Operation, APIRoute]

_PATH = re.compile(r"/lots/(?P<lot_id>[^/]+)/(?P<operation>[a-z-]+)")
_JSON = (b"application/json", b"application/json; charset=utf-8")


def lot_operations() -> dict[str, Lane]:
    """The lot routes that take this lane: ``POST /lots/{lot_id}/OPERATION`` whose function
    takes exactly ``(request, who, lot_id, body)``, with the body's model and the route."""
    found: dict[str, Lane] = {}
    prefix = lots_router.prefix + "/{lot_id}/"
    for route in lots_router.routes:
        if not (isinstance(route, APIRoute) and route.methods == {"POST"}):
            continue
        if not route.path.startswith(prefix):
            continue
        hints = typing.get_type_hints(route.endpoint, include_extras=True)
        hints.pop("return", None)
        body = hints.get("body")
        if list(hints) != ["request", "who", "lot_id", "body"] or not (
            isinstance(body, type) and issubclass(body, BaseModel)
        ):
            continue
        found[route.path.removeprefix(prefix)] = (body, route.endpoint, route)
    return found


class FastLane:
    """The ASGI layer in front of the FastAPI application ``app``."""

    def __init__(self, app: FastAPI, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.operations = lot_operations()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        matched = _PATH.fullmatch(scope["path"])
        operation = self.operations.get(matched["operation"]) if matched else None
        if (
            matched is None
            or operation is None
            or not _json_or_none(scope)
            or scope["query_string"]  # these routes take none: FastAPI refuses it
        ):
            await self.app(scope, receive, send)
            return
        body = await _read(receive, self.max_body_bytes)
        if body is None:
            await too_large()(scope, receive, send)
            return
        replay = _replay(body, receive)
        model, endpoint, route = operation
        try:
            given = model.model_validate(loads(body))
        except (ValueError, ValidationError, RecursionError):  # FastAPI says what, in its words
            await self.app(scope, replay, send)
            return
        scope["app"] = self.app  # as FastAPI sets them: request.app.state,
        scope["route"] = route  # the route a refusal's field is named for (errors.as_sent)
        request = Request(scope, replay)
        try:
            who = await principal(request, Response())
            answer = await endpoint(request, who, matched["lot_id"], given)
        except LotTrackerError as exc:
            answer = await errors.refused(request, exc)
        except SchemaMismatch as exc:
            answer = await errors.schema(request, exc)
        except (DatabaseUnavailable, OSError) as exc:
            answer = await errors.database(request, exc)
        await answer(scope, replay, send)


def _json_or_none(scope: Scope) -> bool:
    """The request says its body is JSON, or says nothing (FastAPI takes it as JSON then)."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.lower() in _JSON
    return True


async def _read(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None past ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` giving ``body`` first, then what the connection gives (a disconnect)."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
