"""The session routes: a person logs in with their password (lockout and security events as
``IdentityService.login``) and gets an expiring token for ``Authorization: Bearer``; logging
out ends it. The password and the token are never logged and never in a URL."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import Field

from mes.domain.identity import LoginRefused
from pkgline.api.auth import state_of
from pkgline.api.bodies import REFUSALS, Body

router = APIRouter(prefix="/session", tags=["session"], responses=REFUSALS)


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


@router.delete("", status_code=204, summary="Log out: end the session of the Bearer token")
async def logout(request: Request) -> Response:
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not await state_of(request).sessions.logout(token.strip()):
        raise LoginRefused("no session to end: send Authorization: Bearer with its token")
    return Response(status_code=204)
