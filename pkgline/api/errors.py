"""Refusals to HTTP: every error becomes the JSON body the CLI prints for it (what was
refused, why, the claim, what is allowed) under the status that says what kind it is.

==========  ==================================================================================
401         no credentials, or refused ones (unknown OS account, wrong or expired token)
403         the principal lacks the role (``not_authorized``; recorded as a security event), or
            a signature cannot count (``signature_refused``; ``login_refused`` for a signer's
            wrong password, locked or disabled account: the request's own credentials hold)
404         no such lot, tool, user, API key, durable, material lot, reason code or flow version
409         the lot's state or the line refuses it now (state, step order, interlock), the lot,
            user, durable, material lot or reason code exists already, or another writer moved
            the lot first / the database said retry
413         the request body is larger than the server reads
422         a value is invalid (a claimed limit, a malformed value, an unknown field, a wrong
            type); 400 for a body that is not JSON, or whose object gives a key twice
429         a password (a login's, a signature's, the current one) not checked: too many failed
            password checks from the same host lately (``too_many_failures``, ``Retry-After``)
503         the database is unavailable (or its schema is not this server's)
==========  ==================================================================================

Every refusal of a request whose credentials were taken names its principal in the header
``pkgline-principal``, as every other answer does (:func:`says_principal`); a 401 never does.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.routing import Match

from mes.adapters.errors import DatabaseRetryable, DatabaseUnavailable, classify
from mes.adapters.schema import SchemaMismatch
from mes.domain.errors import LotTrackerError
from mes.domain.identity import CurrentPasswordRefused, SignerRefused, TooManyFailures
from mes.domain.text import printable
from pkgline.api.defaults import PRINCIPAL_HEADER
from pkgline.api.fields import BODY_KEYS, located
from pkgline.api.json_bodies import DuplicateKey

STATUS_OF_KIND: dict[str, int] = {
    "login_refused": 401,
    "too_many_failures": 429,
    "not_authorized": 403,
    "unknown_lot": 404,
    "unknown_tool": 404,
    "unknown_user": 404,
    "unknown_version": 404,
    "unknown_durable": 404,
    "unknown_material": 404,
    "unknown_reason_code": 404,
    "conflict": 409,
    "lot_exists": 409,
    "user_exists": 409,
    "record_exists": 409,
    "unknown_api_key": 404,
    "operation_not_allowed": 409,
    "step_not_allowed": 409,
    "rework_not_allowed": 409,
    "split_merge_not_allowed": 409,
    "interlock": 409,
    "tool_owned_elsewhere": 409,
    "reset_not_possible": 409,
    "signature_stale": 409,
    "signature_refused": 403,
    "invalid_input": 422,
    "limit_violated": 422,
}
"""HTTP status per refusal kind (``LotTrackerError.kind``); any other kind is 422."""


def status_of(error: LotTrackerError) -> int:
    if isinstance(error, SignerRefused | CurrentPasswordRefused):
        return 403  # a password in the body (a signature's, the current one): the request's hold
    return STATUS_OF_KIND.get(error.kind, 422)


class JsonAnswer(JSONResponse):
    """JSON encoded by orjson: the same compact UTF-8 as Starlette's (keys that are not text
    written as text), several times quicker; a lot move's answer is the whole lot, and its
    encoding was a twentieth of the server's time per move (bench/api.py)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def says_principal(request: Request, response: Response) -> Response:
    """``response`` naming the request's principal (``pkgline-principal``), when its
    credentials were taken (:func:`pkgline.api.auth.principal` noted it); never a 401, which
    says that credentials were refused."""
    said = getattr(request.state, "principal", None)
    if said is not None and response.status_code != 401:
        response.headers[PRINCIPAL_HEADER] = said
    return response


Handler = Callable[[Request, Exception], Awaitable[JSONResponse]]


def _saying_principal(handler: Handler) -> Handler:
    """``handler`` whose answers name the principal (:func:`says_principal`): a refusal of a
    value (422), of an unknown lot (404) or of the database (503) is an answer to the same
    caller as the success would have been."""

    @functools.wraps(handler)
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        response = await handler(request, exc)
        says_principal(request, response)
        return response

    return handle


def error_response(status: int, body: dict[str, Any]) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status == 503:
        headers = {"Retry-After": "5"}
    return JsonAnswer(body, status_code=status, headers=headers)


def too_large() -> JSONResponse:
    message = "the request body is larger than the server reads; nothing was changed"
    return error_response(413, {"error": "too_large", "message": message})


@_saying_principal
async def refused(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LotTrackerError)
    response = error_response(status_of(exc), as_sent(request, exc))
    if isinstance(exc, TooManyFailures):
        response.headers["Retry-After"] = str(exc.retry_after_seconds)
    return response


@_saying_principal
async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if isinstance(exc.__cause__, DuplicateKey):  # FastAPI's json_invalid, made of it
        return _duplicate_key(exc.__cause__)
    problems = []
    for e in exc.errors():
        if e.get("type") == "json_invalid":  # its loc is ("body", the character's offset)
            return _not_json(e)
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        problems.append({"where": where, "problem": _body_problem(request, e) or _problem(e)})
    sent_as = _not_json_content_type(request)
    if sent_as is not None and any(p["where"] == "body" for p in problems):
        # FastAPI reads such a body as bytes, and says only that it is no object
        problems = [
            {
                "where": "body",
                "problem": f"sent as Content-Type {sent_as}: expected application/json",
            }
        ]
    message = "; ".join(f"{p['where']}: {p['problem']}" for p in problems)
    return error_response(
        422,
        {
            "error": "invalid_request",
            "message": f"the request is not as expected ({message}); nothing was changed",
            "problems": problems,
        },
    )


def as_sent(request: Request, exc: LotTrackerError) -> dict[str, Any]:
    """The refusal's JSON, its ``field`` (and each violation's) naming where the request gave
    the input, by the body's keys of the request's route (:data:`pkgline.api.fields.BODY_KEYS`:
    a track-in's ``values.NAME`` is its body's ``params.NAME``, as a 422's ``problems`` say
    ``where``); a field the route's body gives nowhere is left out."""
    route = getattr(request.scope.get("route"), "path", None)
    return located(exc.to_dict(), BODY_KEYS.get(str(route), {}))


NO_BODY = (
    "no body was sent: expected one JSON object, as docs/api.md shows ({} when no field is needed)"
)
"""The problem of a request to a route that takes a body sent without one, where pydantic
said "body: Field required", as if a field named body were missing."""


def _body_problem(request: Request, error: Mapping[str, Any]) -> str | None:
    """A problem of the body as a whole, or of one of its top-level fields, in the API's
    words where pydantic's misled: no body ("body: Field required", as if a field named body
    were missing), not an object ("Input should be a valid dictionary or object to extract
    fields from"), an unknown field ("Extra inputs are not permitted", which named none of
    the fields the body takes); None for any other."""
    loc, kind = tuple(error.get("loc", ())), error.get("type")
    if loc == ("body",) and kind == "missing":
        return NO_BODY
    if loc == ("body",) and kind in ("model_attributes_type", "dict_type", "model_type"):
        given = error.get("input")
        return f"expected one JSON object, as docs/api.md shows; got {_json_kind(given)}"
    if len(loc) == 2 and loc[0] == "body" and kind == "extra_forbidden":
        fields = _body_fields(request)
        if fields:
            return f"an unknown field: this body takes {', '.join(fields)}"
    return None


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return "a number"
    return "a text" if isinstance(value, str) else "something else"


def _body_fields(request: Request) -> list[str]:
    """The fields the body of the request's route takes (its model's), [] when not known."""
    route = request.scope.get("route")
    params = getattr(getattr(route, "dependant", None), "body_params", None) or []
    if len(params) != 1:
        return []
    model = params[0].field_info.annotation
    fields = getattr(model, "model_fields", None)
    return [info.alias or name for name, info in fields.items()] if fields else []


_EXPECTED = {
    "int_type": "a whole number (a JSON number, without quotes)",
    "float_type": "a number (a JSON number, without quotes)",
    "bool_type": "true or false (a JSON boolean, without quotes)",
}
"""What a strict body's field expected, by the error's type, where pydantic says "Input should
be a valid integer" for the text "3" too (:class:`pkgline.api.bodies.Body`)."""


HEX64 = "^[0-9a-fA-F]{64}$"
"""A SHA-256 in hex: an anchor of ``audit verify`` (a head or an entry's hash)."""

_PATTERNS = {HEX64: "a SHA-256 in hex (64 characters: a lots_head, security_head or hash)"}
"""What a text that must match a pattern expected, in words, where pydantic names the
regular expression ("String should match pattern '^[0-9a-fA-F]{64}$'")."""


def _problem(error: Mapping[str, Any]) -> str:
    """An error's problem in words: what a number's or a boolean's field expected and what it
    was given (text, ``"3"``, or another type), what a text of a known pattern expected, else
    pydantic's own words."""
    expected = _EXPECTED.get(str(error.get("type")))
    if error.get("type") == "string_pattern_mismatch":
        expected = _PATTERNS.get(str((error.get("ctx") or {}).get("pattern")))
    given = error.get("input")
    if expected is None or not (given is None or isinstance(given, str | int | float)):
        return str(error.get("msg", "invalid"))
    if isinstance(given, str):
        return f"expected {expected}, got the text {printable(repr(given[:40]))}"
    return f"expected {expected}, got {json.dumps(given)[:40]}"


def _not_json(error: Mapping[str, Any]) -> JSONResponse:
    """400 for a body that does not parse, saying where and what was expected (FastAPI's own
    words were "1: JSON decode error", the offset taken for a field's name)."""
    offset = next((x for x in error.get("loc", ()) if isinstance(x, int)), None)
    said = str((error.get("ctx") or {}).get("error") or error.get("msg") or "does not parse")
    at = f"at character {offset}: " if offset is not None else ""
    problem = f"not JSON ({at}{printable(said[:200])})"
    message = (
        f"the body is {problem}: expected one JSON object, as docs/api.md shows; "
        "nothing was changed"
    )
    return error_response(
        400,
        {"error": "invalid_request", "message": message,
         "problems": [{"where": "body", "problem": problem}]},
    )  # fmt: skip


def _duplicate_key(error: DuplicateKey) -> JSONResponse:
    """400 for a body whose object gives a key twice, naming the key and where it is (the
    parser kept the last value silently: one reader of the request may take the first)."""
    key = printable(error.key[:64])
    problem = (
        f"the key {key!r} is given {error.count} times in one object: give each key once "
        "(which value was meant is not clear)"
    )
    message = (
        f"the body is not JSON the server takes ({error.where}: {problem}): expected one "
        "JSON object, as docs/api.md shows; nothing was changed"
    )
    return error_response(
        400,
        {"error": "invalid_request", "message": message,
         "problems": [{"where": error.where, "problem": problem}]},
    )  # fmt: skip


def _not_json_content_type(request: Request) -> str | None:
    """The request's Content-Type when it says the body is not JSON (FastAPI then does not
    parse it); None when it says JSON or says nothing (taken as JSON)."""
    given = request.headers.get("content-type")
    if given is None:
        return None
    main = given.partition(";")[0].strip().lower()
    if main == "application/json" or (main.startswith("application/") and main.endswith("+json")):
        return None
    return printable(given[:64])


@_saying_principal
async def http_refused(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 413:
        return too_large()
    kind = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}.get(
        exc.status_code, "http"
    )
    message = str(exc.detail)
    where = f"{request.method} {request.url.path}"
    if exc.status_code == 400:  # FastAPI's: a body its parser gave up on (nested too deep)
        message = (
            f"the body is not JSON the server reads ({message}): send one JSON object, as "
            "docs/api.md shows; nothing was changed"
        )
    if exc.status_code == 404 and message == "Not Found":  # the router's: no route matched
        message = (
            f"no route {where} on this server (the routes: docs/api.md; an id with '/' in it "
            "is no lot, tool or user id)"
        )
    elif exc.status_code == 405 and message == "Method Not Allowed":
        allowed = _methods_of_path(request)
        message = (
            f"{where}: the route does not take {request.method}; it takes "
            f"{', '.join(allowed)} (docs/api.md)"
        )
        response = error_response(405, {"error": kind, "message": message})
        response.headers["Allow"] = ", ".join(allowed)
        return response
    return error_response(exc.status_code, {"error": kind, "message": message})


def _methods_of_path(request: Request) -> list[str]:
    """The methods the routes of the request's path take (every route of that path, not
    only the first one the router found: ``GET /lots`` and ``POST /lots`` are two)."""
    taken = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
            taken.append(method)
    return taken


_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


@_saying_principal
async def schema(request: Request, exc: Exception) -> JSONResponse:
    message = f"the server's database is not usable: {exc}"
    return error_response(503, {"error": "schema", "message": message})


@_saying_principal
async def database(request: Request, exc: Exception) -> JSONResponse:
    found = exc if isinstance(exc, DatabaseUnavailable) else classify(exc)
    if isinstance(found, DatabaseRetryable):
        message = f"the database refused this for now ({found.reason}); nothing was changed, retry"
        return error_response(409, {"error": "retry", "message": message})
    if isinstance(found, DatabaseUnavailable):
        message = f"the server cannot use its database now: {found.reason}"
        return error_response(503, {"error": "database", "message": message})
    raise exc


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(LotTrackerError, refused)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(HTTPException, http_refused)
    app.add_exception_handler(SchemaMismatch, schema)
    app.add_exception_handler(DatabaseUnavailable, database)
    # SQLAlchemy's own errors (schema checks) and OSError: classified as the store's are
    app.add_exception_handler(OSError, database)
