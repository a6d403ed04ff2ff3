"""The session routes: a person logs in with their password (lockout and security events as
``IdentityService.login``) and gets an expiring token for ``Authorization: Bearer``; logging
out ends it. The password and the token are never logged and never in a URL."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Response, Security
from pydantic import Field

from mes.domain.authority import AuthMethod
from mes.domain.identity import LoginRefused
from mes.domain.tokens import API_KEY_PREFIX, split_api_key
from mes.sessions import split_token
from pkgline.api.auth import BEARER, bearer_token, state_of
from pkgline.api.bodies import REFUSALS, Body
from pkgline.api.json_bodies import JsonRoute

router = APIRouter(prefix="/session", tags=["session"], responses=REFUSALS, route_class=JsonRoute)


class LoginBody(Body):
    username: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


@router.post("", summary="Log in with a password: an expiring session token")
async def login(request: Request, body: LoginBody) -> dict[str, Any]:
    token, session, principal = await state_of(request).sessions.login(body.username, body.password)
    return {
        "token": token,
        "expires_at": session.expires_at.isoformat(),
        "user": principal.to_dict(),
    }


@router.delete(
    "",
    status_code=204,
    summary="Log out: end the session of the Bearer token",
    dependencies=[Security(BEARER)],  # declared in the OpenAPI document: the token it ends
)
async def logout(request: Request) -> Response:
    """204 once the token's session is ended (again: a logout retried after a lost answer).
    A token that is no live session of this server, or an API key, is refused and recorded
    as any route records refused credentials (this route let anyone try tokens unseen)."""
    state = state_of(request)
    header = request.headers.get("authorization")
    token = bearer_token(header) if header is not None else None
    if token is None:
        if header is not None:
            await state.identity.refused_credentials(
                "-", AuthMethod.SESSION, "not a Bearer credential (logout)"
            )
        raise LoginRefused("no session to end: send Authorization: Bearer with its token")
    if token.startswith(API_KEY_PREFIX + "_"):
        key = split_api_key(token)
        await state.identity.refused_credentials(
            f"key {key[0]}" if key else "-",
            AuthMethod.API_KEY,
            "an API key sent to log out: it is no session",
        )
        raise LoginRefused(
            "an API key is no session: there is none to end (a key is revoked by an admin: "
            "pkgline user revoke-key ID); nothing was changed"
        )
    if not await state.sessions.logout(token):
        parts = split_token(token)
        await state.identity.refused_credentials(
            f"session {parts[0]}" if parts else "-",
            AuthMethod.SESSION,
            "logout with a token that is no session of this server",
        )
        raise LoginRefused(
            "the token is no session of this server (unknown, or not its secret): nothing was ended"
        )
    return Response(status_code=204)
