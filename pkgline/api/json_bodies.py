"""JSON request bodies as the API reads them: the standard library's parser, as FastAPI's,
except that an object giving the same key twice is refused (:class:`DuplicateKey`, answered
400 by :mod:`pkgline.api.errors`). The parser keeps the last value silently:
``{"reason": "a", "reason": "b"}`` was a hold for "b", where a proxy, a log or the client's
own reader may take "a" for what was sent.

Every route of the API reads its body through :class:`JsonRoute` (each router's
``route_class``), the lot operations' short way (:mod:`pkgline.api.fastlane`) through
:func:`loads`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from mes.domain.text import printable

Path = tuple[str | int, ...]
"""Where a value is in the body: the keys and list indexes from the top."""

MAX_WHERE = 200
"""The most characters of a path an answer says (the keys are the client's)."""


class DuplicateKey(json.JSONDecodeError):
    """An object of the body gives ``key`` ``count`` times; ``path``: where the key is
    (``("reason",)``, ``("signatures", 0, "meaning")``). A JSONDecodeError, so that FastAPI
    answers it as a body that does not parse (400), the error its cause."""

    def __init__(self, key: str, count: int, path: Path, doc: str):
        super().__init__(f"the key {key!r} is given {count} times in one object", doc, 0)
        self.key = key
        self.count = count
        self.path = path

    @property
    def where(self) -> str:
        """The key's path as a refusal's ``where`` says a field's: ``signatures.0.meaning``."""
        text = printable(".".join(str(part) for part in self.path))
        return text if len(text) <= MAX_WHERE else f"{text[: MAX_WHERE - 3]}..."


class _Twice(dict[str, Any]):
    """An object that gave a key more than once (the parser's last value kept)."""

    key: str
    count: int


def loads(body: bytes | str) -> Any:
    """``body`` parsed as ``json.loads`` parses it, or :class:`DuplicateKey` for the first
    object (in document order) that gives a key twice; anything ``json.loads`` raises. The
    parsed body is walked only when an object gave a key twice."""
    twice_seen = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal twice_seen
        found = dict(items)
        if len(found) == len(items):
            return found
        twice_seen = True
        twice = _Twice(found)
        keys: set[str] = set()
        for key, _ in items:
            if key in keys:
                twice.key, twice.count = key, sum(1 for k, _ in items if k == key)
                break
            keys.add(key)
        return twice

    value = json.loads(body, object_pairs_hook=pairs)
    found = _first_twice(value) if twice_seen else None
    if found is None:
        return value
    twice, path = found
    doc = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    raise DuplicateKey(twice.key, twice.count, (*path, twice.key), doc)


def _first_twice(value: Any) -> tuple[_Twice, Path] | None:
    """The first object of ``value`` (depth first, in document order) that gave a key twice,
    and its path; None when there is none (a walk over the objects, no recursion: a body may
    nest as deep as the parser reads)."""
    stack: list[tuple[Any, Path]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, _Twice):
            return item, path
        if isinstance(item, dict):
            stack.extend((v, (*path, k)) for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((v, (*path, i)) for i, v in reversed(list(enumerate(item))))
    return None


class JsonRequest(Request):
    """A request whose JSON body is read by :func:`loads`."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads(await self.body())
        return self._json


class JsonRoute(APIRoute):
    """A route whose body FastAPI reads through :class:`JsonRequest`.

    FastAPI parses the body before it solves the route's dependencies, so a body that does
    not parse (or gives a key twice) would be answered 400 before the credentials were
    looked at: a forged or revoked key sent with such a body was never refused nor recorded
    (``login_failed``), and an anonymous client got the body's refusal instead of 401. On a
    route that asks for credentials they are checked first, as for every other refusal of
    the body."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        credentials = _credentials_of(self)

        async def handle(request: Request) -> Response:
            json_request = JsonRequest(request.scope, request.receive)
            try:
                return await handler(json_request)
            except RequestValidationError as refused:
                if credentials is not None and _unparsed(refused):
                    # refused credentials raise here (401, recorded); an unknown query
                    # parameter is passed over: the body's refusal comes first
                    with contextlib.suppress(RequestValidationError):
                        await credentials(json_request, Response())
                raise refused

        return handle


Credentials = Callable[[Request, Response], Coroutine[Any, Any, Any]]


def _credentials_of(route: APIRoute) -> Credentials | None:
    """The route's principal dependency (:func:`pkgline.api.auth.principal`), None for a
    route that asks for no credentials (the login's)."""
    from pkgline.api.auth import asks_credentials, principal  # auth imports this (errors)

    return principal if asks_credentials(route) else None


def _unparsed(refused: RequestValidationError) -> bool:
    """Whether FastAPI refused the body for not parsing (``json_invalid``: not JSON, or an
    object giving a key twice), before any dependency was solved."""
    return any(error.get("type") == "json_invalid" for error in refused.errors())
