"""Who is asking: the principal of each request, made here from verified credentials and
passed to the service layer as ``by=`` (docs/api.md, docs/security.md).

- ``Authorization: Bearer pkl_...``: an API key issued to a system.
- ``Authorization: Bearer pks_...``: a session token from a password login (POST /session,
  :mod:`mes.sessions`).
- No ``Authorization`` on the Unix socket: the OS account the kernel names for the peer
  (:mod:`.peer`), mapped to the pkgline user of that name.
- Anything else: 401. Every refusal of credentials given is recorded in the security log (a
  failed login: who was claimed and why, never the secret); a request with none is not.
"""

from __future__ import annotations

import pwd
import re
import time
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote, unquote_plus

from fastapi import Request, Response, Security
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine

from mes.adapters.outbox import OutboxSignal
from mes.domain.authority import AuthMethod, Principal
from mes.domain.identity import ApiKeyRefused, LoginRefused
from mes.domain.tokens import API_KEY_PREFIX, split_api_key
from mes.identity import IdentityService
from mes.sessions import SESSION_PREFIX, SessionRefused, SessionService, split_token
from pkgline.api.defaults import PRINCIPAL_HEADER
from pkgline.api.errors import JsonAnswer, says_principal
from pkgline.api.peer import PEER_KEY, PeerCredentials
from pkgline.bootstrap import Services

PRINCIPAL_TTL_S = 1.0
"""How long the server keeps the principal of a local OS account it looked up: a role change
or a disabled account takes effect within this long (docs/security.md). Refusals are never
kept: each is looked up, and recorded, again."""


class PrincipalCache:
    """OS accounts' principals, kept ``ttl_s`` (every request on the Unix socket looked its user
    up in the database: a third of the server's time per lot move)."""

    def __init__(self, ttl_s: float = PRINCIPAL_TTL_S, limit: int = 1024):
        self._ttl_s = ttl_s
        self._limit = limit
        self._kept: dict[str, tuple[Principal, float, int]] = {}

    def get(self, account: str, generation: int) -> Principal | None:
        """The principal kept for ``account``, unless older than the TTL or than the identity
        service's ``generation`` (a user changed through this server since)."""
        kept = self._kept.get(account)
        if kept is None or kept[1] <= time.monotonic() or kept[2] != generation:
            return None
        return kept[0]

    def put(self, account: str, found: Principal, generation: int) -> None:
        """Keep ``found``, looked up when the identity service was at ``generation``."""
        if len(self._kept) >= self._limit:
            self._kept.clear()
        self._kept[account] = (found, time.monotonic() + self._ttl_s, generation)


@dataclass(frozen=True, slots=True)
class ApiState:
    """What the routes share: the services (acting for nobody unless a call names its
    principal) and the identity service."""

    services: Services
    identity: IdentityService
    sessions: SessionService
    engine: AsyncEngine
    """For ``audit verify``, which reads the whole history in one snapshot."""
    commits: OutboxSignal | None = None
    """Told when lot changes commit: this server's own, and on PostgreSQL any process's
    (NOTIFY); the station's line streams wake on it."""
    principals: PrincipalCache = field(default_factory=PrincipalCache)


def state_of(request: Request) -> ApiState:
    state: ApiState = request.app.state.pkgline
    return state


def answer(request: Request, data: Any, status: int = 200) -> JSONResponse:
    """``data`` as the JSON answer, sent as it is (no response model to check it against
    again: a lot show of thousands of entries would pay for that), saying who asked."""
    response = JsonAnswer(data, status_code=status)
    says_principal(request, response)
    return response


def created(request: Request, data: Any, *path: str) -> JSONResponse:
    """``data`` as the 201 answer for the resource made at the URL path of ``path``'s
    segments, which ``Location`` gives (:func:`location`)."""
    response = answer(request, data, 201)
    response.headers["Location"] = location(request, *path)
    return response


def location(request: Request, *path: str) -> str:
    """The URL path of ``path``'s segments on this server, each quoted (an id may hold a
    character a URL does not: a space, ``%``, ``?``), as a ``Location`` gives it."""
    root = str(request.scope.get("root_path", "")).rstrip("/")
    return root + "".join("/" + quote(segment, safe="") for segment in path)


def _account(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


TOKEN_IN_URL = re.compile(r"(pk[ls])_([0-9a-f]{12})_[A-Za-z0-9_-]")
"""An API key or session token as issued (``pkl_<id>_<secret>``, ``pks_...``), anywhere in a
URL's query."""


TOKEN_IN_PATH = re.compile(r"(pk[ls])_([0-9a-f]{12})_[A-Za-z0-9_-]{20}")
"""An API key or session token in a URL's path (``/lots/pkl_...``, ``/session/pks_...``):
with 20 characters of its secret at least (one issued has 43), so that no id a route takes
(a lot id has at most 32 characters) is taken for one."""


async def refuse_token_in_url(state: ApiState, query_string: bytes, path: str = "") -> None:
    """A request whose URL (its query, or its path as decoded) carries a token is refused
    and recorded, whatever else it sends and whichever route it asks for
    (:class:`pkgline.api.app.NoTokenInUrl`, before any route): a URL ends up in proxies' and
    browsers' logs and histories, so the token is exposed."""
    found = TOKEN_IN_PATH.search(path) if path else None
    if found is None and query_string:
        found = TOKEN_IN_URL.search(unquote_plus(query_string.decode("latin-1")))
    if found is None:
        return
    kind, token_id = found.groups()
    key = kind == API_KEY_PREFIX
    await state.identity.refused_credentials(
        f"{'key' if key else 'session'} {token_id}",
        AuthMethod.API_KEY if key else AuthMethod.SESSION,
        "a token sent in the URL: exposed, to be revoked",
    )
    undo = f"revoke it: pkgline user revoke-key {token_id}" if key else "log out (pkgline logout)"
    raise LoginRefused(
        "credentials in the URL are refused (a URL ends up in logs and histories): send "
        f"Authorization: Bearer TOKEN; this token is exposed now, {undo}; nothing was changed"
    )


BEARER = HTTPBearer(
    scheme_name="bearer",
    description=(
        "Authorization: Bearer TOKEN, TOKEN a system's API key (pkl_..., pkgline user key) or "
        "a person's session token (pks_..., POST /session). On the server's Unix socket a "
        "request without it is known by the peer's OS account instead (docs/api.md)."
    ),
    auto_error=False,
)
"""The credentials scheme, for the OpenAPI document only: FastAPI declares it on every
operation whose route asks for a principal (:func:`principal` reads the header itself, and
takes the socket's OS account too). Without it the document named no credentials, and a
client generated from it sent none and met 401 on every route."""

Declared = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]


async def principal(request: Request, response: Response, _: Declared = None) -> Principal:
    """The request's principal (a FastAPI dependency), or LoginRefused (401)."""
    state = state_of(request)  # a token in the URL was refused before: NoTokenInUrl
    header = request.headers.get("authorization")
    if header is not None:
        await _refuse_more_than_one(state, request)
        found = await _bearer(state, header)
    else:
        peer = request.scope.get(PEER_KEY)
        if not isinstance(peer, PeerCredentials):
            # Not recorded: no credentials is no attempt at anyone's identity, and a write
            # per anonymous request would let any scanner fill the security log.
            raise LoginRefused(
                "no credentials: send Authorization: Bearer with an API key or a session "
                "token (pkgline login), or use the server's Unix socket"
            )
        account = _account(peer.uid)
        if account is None:
            await state.identity.refused_credentials(
                f"uid {peer.uid}", AuthMethod.OS_ACCOUNT, "no OS account of that uid"
            )
            raise LoginRefused(f"uid {peer.uid} has no OS account name; nothing was changed")
        generation = state.identity.generation
        kept = state.principals.get(account, generation)
        if kept is None:
            kept = await state.identity.os_account(account)
            state.principals.put(account, kept, generation)
        found = kept
    said = f"{found.name} ({found.method.value})"
    response.headers[PRINCIPAL_HEADER] = said
    request.state.principal = said  # for a refusal's answer too (pkgline.api.errors)
    _refuse_unknown_query(request)
    return found


def asks_credentials(route: APIRoute) -> bool:
    """Whether ``route`` knows its principal (:func:`principal`): every route but the login,
    /health and the station's pages."""
    return any(dependency.call is principal for dependency in route.dependant.dependencies)


_QUERY_OF_ROUTE: dict[int, tuple[APIRoute, tuple[str, ...]]] = {}
"""The query parameters each route takes, by the route's id (APIRoute is not hashable); the
route is kept with them, so that an id is never another route's."""


def _query_names(dependant: Dependant) -> set[str]:
    names = {field.alias for field in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def _refuse_unknown_query(request: Request) -> None:
    """A query parameter the route does not take is refused (422 ``invalid_request``), after
    the credentials (a token in the URL is refused and recorded first): ignored, a typo of a
    filter (``/lots?sate=HOLD``) answered every lot as if filtered."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.query_params:
        return
    kept = _QUERY_OF_ROUTE.get(id(route))
    if kept is None or kept[0] is not route:
        kept = _QUERY_OF_ROUTE[id(route)] = (route, tuple(sorted(_query_names(route.dependant))))
    known = kept[1]
    takes = f"this route takes {', '.join(known)}" if known else "this route takes none"
    unknown = [name for name in dict.fromkeys(request.query_params.keys()) if name not in known]
    if unknown:
        raise RequestValidationError(
            [
                {
                    "type": "extra_forbidden",
                    "loc": ("query", name),
                    "msg": f"an unknown query parameter: {takes}",
                }
                for name in unknown
            ]
        )


def bearer_token(header: str) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, or None."""
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def session_id(request: Request) -> str | None:
    """The id of the session token the request carries, if it carries one."""
    token = bearer_token(request.headers.get("authorization", ""))
    parts = split_token(token) if token is not None else None
    return parts[0] if parts else None


async def _refuse_more_than_one(state: ApiState, request: Request) -> None:
    """Two ``Authorization`` headers (HTTP allows one) are refused and recorded: the server
    acted as the first and ignored the second, which a proxy in front, a log or a reader of
    the request may take for the one that acted."""
    given = request.headers.getlist("authorization")
    if len(given) > 1:
        await state.identity.refused_credentials(
            "-", AuthMethod.SESSION, f"{len(given)} Authorization headers in one request"
        )
        raise LoginRefused(
            f"{len(given)} Authorization headers: send one (Bearer TOKEN); nothing was changed"
        )


async def _bearer(state: ApiState, header: str) -> Principal:
    identity = state.identity
    token = bearer_token(header)
    if token is None:
        await identity.refused_credentials("-", AuthMethod.API_KEY, "not a Bearer credential")
        raise LoginRefused("Authorization: expected 'Bearer TOKEN'")
    if token.startswith(API_KEY_PREFIX + "_"):
        key = split_api_key(token)
        try:
            return await identity.authenticate_api_key(token)
        except ApiKeyRefused as refused:
            claimed = f"key {key[0]}" if key else "-"
            await identity.refused_credentials(claimed, AuthMethod.API_KEY, refused.why)
            raise
    if token.startswith(SESSION_PREFIX + "_"):
        parts = split_token(token)
        try:
            return await state.sessions.authenticate(token)
        except SessionRefused as refused:
            name = f"session {parts[0]}" if parts else "-"
            await identity.refused_credentials(name, AuthMethod.SESSION, refused.why)
            raise
    await identity.refused_credentials("-", AuthMethod.SESSION, "not a pkgline token")
    raise LoginRefused(
        "the token is not a pkgline token: expected an API key (pkl_..., as pkgline user key "
        "printed it, whole) or a session token (pks_..., from POST /session or pkgline login)"
    )
