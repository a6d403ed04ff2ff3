"""The user routes: each a call of the identity service for the request's principal (users,
roles, passwords and API keys are the admin's; a person changes their own password
themselves), answering the JSON of ``pkgline user ... --json``.

Passwords travel only in request bodies (the Unix socket, or HTTPS) and are never in a URL,
a log line, or an answer: a refused body says where it is wrong, not what it held.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from mes.domain.authority import Principal
from mes.domain.errors import InvalidInput
from mes.domain.identity import SecurityEventQuery, UserKind, parse_roles
from mes.identity import IdentityService
from pkgline.api import bodies as b
from pkgline.api.auth import answer, created, principal, session_id, state_of
from pkgline.api.json_bodies import JsonRoute
from pkgline.list_views import (
    EVENT_KINDS,
    EVENTS_PAGE,
    MAX_EVENTS_PAGE,
    parse_instant,
    parse_kind,
    security_events_answer,
)
from pkgline.page_sizes import MAX_CURSOR

router = APIRouter(tags=["users"], responses=b.REFUSALS, route_class=JsonRoute)
Who = Annotated[Principal, Depends(principal)]
Json = dict[str, Any]
Password = Annotated[str, Field(min_length=1, max_length=1024)]
RoleNames = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=32)]],
    Field(max_length=16, description="Role names: operator, technician, engineer, ..."),
]


class AddUserBody(b.Body):
    username: Annotated[str, Field(min_length=1, max_length=64)]
    name: Annotated[str, Field(min_length=1, max_length=200, description="Printed name.")]
    roles: RoleNames
    system: bool = Field(False, description="A system (API keys, no password).")
    password: Password | None = Field(
        None, description="A person's first password (none: known by their OS account only)."
    )


class RolesBody(b.Body):
    add: RoleNames = Field(default_factory=list)
    remove: RoleNames = Field(default_factory=list)


class PasswordBody(b.Body):
    password: Password


class OwnPasswordBody(b.Body):
    current: Password
    new: Password


class KeyBody(b.Body):
    label: Annotated[str, Field(min_length=1, max_length=200, description="What it is for.")]


def _identity(request: Request) -> IdentityService:
    return state_of(request).identity


def _now() -> datetime:
    return datetime.now(UTC)


def _roles(names: list[str], field: str) -> Any:
    try:
        return parse_roles(names)
    except InvalidInput as exc:
        raise InvalidInput(f"{field}: {exc.message}", allowed=exc.allowed) from None


@router.get("/users", summary="Users and their roles (user list)")
async def list_users(request: Request, who: Who) -> list[Json]:
    now = _now()
    return [u.to_dict(now) for u in await _identity(request).users(who)]


@router.get("/users/{username}", summary="A user (user show)")
async def show_user(request: Request, who: Who, username: str) -> Json:
    return (await _identity(request).user(who, username)).to_dict(_now())


@router.post(
    "/users",
    status_code=201,
    summary="Add a person or a system (user add)",
    responses=b.created_answer("The user added."),
)
async def add_user(request: Request, who: Who, body: AddUserBody) -> JSONResponse:
    roles = _roles(body.roles, "roles")
    if not roles:
        raise InvalidInput("roles: a user needs at least one role")
    kind = UserKind.SYSTEM if body.system else UserKind.PERSON
    user = await _identity(request).add_user(
        who, body.username, body.name, roles, kind=kind, password=body.password
    )
    return created(request, user.to_dict(_now()), "users", user.username)


@router.post("/users/{username}/roles", summary="Give and take away roles (user role)")
async def change_roles(request: Request, who: Who, username: str, body: RolesBody) -> Json:
    added, removed = _roles(body.add, "add"), _roles(body.remove, "remove")
    if not added and not removed:
        raise InvalidInput("give a role to add or to remove")
    user = await _identity(request).change_roles(who, username, added, removed)
    return user.to_dict(_now())


@router.post("/users/{username}/disable", summary="Disable a user (user disable)")
async def disable(request: Request, who: Who, username: str, body: b.ReasonBody) -> Json:
    user = await _identity(request).set_disabled(who, username, True, body.reason)
    return user.to_dict(_now())


@router.post("/users/{username}/enable", summary="Enable a user again (user enable)")
async def enable(request: Request, who: Who, username: str) -> Json:
    return (await _identity(request).set_disabled(who, username, False)).to_dict(_now())


@router.post(
    "/users/{username}/password",
    summary="Set a person's password; lifts a lockout (user passwd, an admin)",
)
async def set_password(request: Request, who: Who, username: str, body: PasswordBody) -> Json:
    user = await _identity(request).set_password(who, username, body.password)
    return user.to_dict(_now())


@router.post(
    "/users/{username}/own-password",
    summary="Change your own password, giving the current one (user passwd --own)",
)
async def own_password(request: Request, who: Who, username: str, body: OwnPasswordBody) -> Json:
    asking = session_id(request)  # this session goes on; the person's others end
    user = await _identity(request).change_own_password(
        username, body.current, body.new, by=who, keep_session=asking
    )
    return user.to_dict(_now())


@router.post(
    "/users/{username}/keys",
    status_code=201,
    summary="Issue an API key to a system; the token is in this answer only (user key)",
)
async def issue_key(request: Request, who: Who, username: str, body: KeyBody) -> JSONResponse:
    issued, token = await _identity(request).issue_api_key(who, username, body.label)
    return answer(request, {**issued.to_dict(), "token": token}, 201)


@router.get(
    "/users/{username}/keys",
    summary="The API keys issued to a system, revoked ones too, newest first (user keys)",
)
async def list_keys(request: Request, who: Who, username: str) -> list[Json]:
    return [k.to_dict() for k in await _identity(request).api_keys(who, username)]


@router.post("/keys/{key_id}/revoke", summary="Revoke an API key (user revoke-key)")
async def revoke_key(request: Request, who: Who, key_id: str) -> Json:
    return (await _identity(request).revoke_api_key(who, key_id)).to_dict()


@router.get(
    "/security/events", summary="The security log, newest first, a page at a time (user events)"
)
async def events(
    request: Request,
    who: Who,
    user: Annotated[
        str | None, Query(max_length=64, description="Who acted or was acted upon.")
    ] = None,
    kind: Annotated[
        str | None, Query(max_length=32, description=f"One of {', '.join(EVENT_KINDS)}.")
    ] = None,
    since: Annotated[str | None, b.time_filter("At or after")] = None,
    until: Annotated[str | None, b.time_filter("Before")] = None,
    after: Annotated[
        int | None, Query(ge=1, le=MAX_CURSOR, description="The page's cursor (an event's seq).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENTS_PAGE)] = EVENTS_PAGE,
) -> Json:
    """Answers ``{"events": [...], "total", "shown", "more", "next_after"}``; the next page
    (older events) is the same request with ``after`` = ``next_after``."""
    query = SecurityEventQuery(
        user=user,
        kind=parse_kind(kind),
        since=parse_instant(since, "since"),
        until=parse_instant(until, "until"),
        after=after,
        limit=limit,
    )
    return await security_events_answer(_identity(request), who, query)
