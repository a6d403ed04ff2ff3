"""``pkgline user``: users, their roles, passwords and API keys (admins only).

Through the server (``--server``, ``$PKGLINE_SERVER``, or the local socket) the server's
principal acts (an admin; a person changing their own password with ``passwd --own``); in
direct database mode the OS account that owns the database holds every role and is recorded
as the one who acted (docs/security.md). Either way the command prints the same JSON, which
is the identity service's (``User.to_dict``, ``ApiKey.to_dict``, ``SecurityEvent.to_dict``).
Passwords are read from a prompt (twice) or, with ``--password-stdin``, from the first line of
standard input; never from the command line. Through the server they travel only in request
bodies.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from mes.domain.authority import Principal, Role
from mes.domain.errors import InvalidInput
from mes.domain.identity import SecurityEventQuery, UserKind, parse_roles
from pkgline.cli.common import DbOption, JsonOption, marked, out, print_json, usage_error
from pkgline.cli.modes import Remote, ServerOption, either, query_params, segment
from pkgline.cli.times import iso, stamp, window
from pkgline.list_views import (
    EVENT_KINDS,
    EVENTS_PAGE,
    MAX_EVENTS_PAGE,
    parse_kind,
    security_events_answer,
)
from pkgline.page_sizes import MAX_CURSOR
from pkgline.security_words import event_detail, event_name

if TYPE_CHECKING:  # the identity service is opened in direct mode only
    from mes.identity import IdentityService

app = typer.Typer(
    help="Users, roles, passwords and API keys (admins; in direct mode the database's owner).",
    no_args_is_help=True,
)

UserArg = Annotated[str, typer.Argument(help="User name (as the OS account name).")]
PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="Read the password from the first line of standard input."
    ),
]
RoleOption = Annotated[
    list[str] | None,
    typer.Option("--role", help=f"A role ({', '.join(r.value for r in Role)}); repeatable."),
]


def _either(
    db: str | None,
    server: str | None,
    as_json: bool,
    action: Callable[[IdentityService, Principal], Awaitable[Any]],
    remote: Remote,
) -> Any:
    """The identity service's answer as JSON, through the server (``remote``) or directly
    (``action``, acting as the database's owner, answering the same JSON)."""

    async def work() -> Any:
        from pkgline.bootstrap import direct_principal, open_identity

        principal = direct_principal(db)
        async with open_identity(db) as identity:
            return await action(identity, principal)

    return either(db, server, as_json, work, remote)


def _now() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)


def _roles(names: list[str] | None, option: str, as_json: bool) -> frozenset[Role]:
    try:
        return parse_roles(names or [])
    except InvalidInput as exc:  # a usage error here, before anything runs
        usage_error(f"{option}: {exc.message} (roles: {', '.join(exc.allowed)})", as_json=as_json)


def _password(from_stdin: bool, as_json: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        password = line.removesuffix("\n").removesuffix("\r")
        if not password:
            usage_error("--password-stdin: standard input has no password line", as_json=as_json)
        return password
    if not sys.stdin.isatty():
        usage_error(
            "no terminal to ask the password on: give it on standard input with --password-stdin",
            as_json=as_json,
        )
    first = getpass.getpass("new password: ")
    if getpass.getpass("again: ") != first:
        usage_error("the two passwords differ; nothing was changed", as_json=as_json)
    return first


def _print_user(
    shown: Mapping[str, Any], as_json: bool, done: str | None = None, already: str | None = None
) -> None:
    """A user (its JSON: ``User.to_dict``, or ``UserUpdate.to_dict`` after a change: then
    ``already`` says so when ``changed`` is false: nothing was written or recorded)."""
    if as_json:
        print_json(shown)
        return
    if already and shown.get("changed") is False:
        out.print(marked("✔", "green", f"user {shown['username']} {already}: nothing changed"))
    elif done:
        out.print(marked("✔", "green", f"user {shown['username']} {done}"))
    roles = ", ".join(shown["roles"]) or "(none)"
    out.print(f"  {shown['full_name']} ({shown['kind']}): {roles}")
    state = "disabled" if shown["disabled"] else "enabled"
    if shown["locked_until"]:
        state += f", locked until {shown['locked_until']}"
    out.print(
        f"  {state}; password: {shown['password']}; failed logins: {shown['failed_attempts']}"
    )
    if shown["password"] == "set" and shown["kind"] == UserKind.PERSON.value:
        out.print(
            "  may sign (their own password)"
            if shown["may_sign"]
            else f"  may not sign until they change the password set by "
            f"{shown['password_set_by'] or 'an earlier pkgline'} "
            f"(user passwd {shown['username']} --own)"
        )


async def _user_json(changed: Awaitable[Any]) -> dict[str, Any]:
    shown: dict[str, Any] = (await changed).to_dict(_now())
    return shown


def _u(username: str) -> str:
    return f"/users/{segment(username)}"


@app.command()
def add(
    username: UserArg,
    name: Annotated[
        str, typer.Option("--name", help="Printed (full) name, as signatures show it.")
    ],
    role: RoleOption = None,
    system: Annotated[
        bool, typer.Option("--system", help="A system (API keys, no password).")
    ] = False,
    no_password: Annotated[
        bool, typer.Option("--no-password", help="A person known only by their OS account.")
    ] = False,
    password_stdin: PasswordStdin = False,
    db: DbOption = None,
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """Add a person (asks for their first password) or a system, with their roles."""
    roles = _roles(role, "--role", json)
    if not roles:
        usage_error("a user needs at least one --role", as_json=json)
    password = None if system or no_password else _password(password_stdin, json)
    kind = UserKind.SYSTEM if system else UserKind.PERSON
    body: dict[str, Any] = {
        "username": username,
        "name": name,
        "roles": sorted(r.value for r in roles),
        "system": system,
    }
    if password is not None:
        body["password"] = password
    user = _either(
        db,
        server,
        json,
        lambda s, by: _user_json(
            s.add_user(by, username, name, roles, kind=kind, password=password)
        ),
        Remote("POST", "/users", body),
    )
    _print_user(user, json, "added")


@app.command("list")
def list_users(db: DbOption = None, server: ServerOption = None, json: JsonOption = False) -> None:
    """Every user and system, with roles and state."""

    async def listed(s: IdentityService, by: Principal) -> list[dict[str, Any]]:
        now = _now()
        return [u.to_dict(now) for u in await s.users(by)]

    found = _either(db, server, json, listed, Remote("GET", "/users"))
    if json:
        print_json(found)
        return
    table = Table()
    for name in ("user", "name", "kind", "roles", "state"):
        table.add_column(name, overflow="fold")
    for u in found:
        state = "disabled" if u["disabled"] else ("locked" if u["locked_until"] else "enabled")
        table.add_row(u["username"], u["full_name"], u["kind"], ", ".join(u["roles"]), state)
    out.print(table)


@app.command()
def show(
    username: UserArg, db: DbOption = None, server: ServerOption = None, json: JsonOption = False
) -> None:
    """One user: roles, state, password set or not (never the password or its hash)."""
    shown = _either(
        db,
        server,
        json,
        lambda s, by: _user_json(s.user(by, username)),
        Remote("GET", _u(username)),
    )
    _print_user(shown, json)


@app.command()
def role(
    username: UserArg,
    add: Annotated[
        list[str] | None, typer.Option("--add", help="Role to give (repeatable).")
    ] = None,
    remove: Annotated[
        list[str] | None, typer.Option("--remove", help="Role to take away (repeatable).")
    ] = None,
    db: DbOption = None,
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """Give and take away roles."""
    added, removed = _roles(add, "--add", json), _roles(remove, "--remove", json)
    if not added and not removed:
        usage_error("give --add ROLE or --remove ROLE", as_json=json)
    body = {"add": sorted(r.value for r in added), "remove": sorted(r.value for r in removed)}
    user = _either(
        db,
        server,
        json,
        lambda s, by: _user_json(s.change_roles(by, username, added, removed)),
        Remote("POST", _u(username) + "/roles", body),
    )
    _print_user(user, json, "has these roles now", "had these roles already")


@app.command()
def disable(
    username: UserArg,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (recorded).")] = None,
    db: DbOption = None,
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """Disable a user: no login, no API key of theirs is accepted. History keeps their name."""
    user = _either(
        db,
        server,
        json,
        lambda s, by: _user_json(s.set_disabled(by, username, True, reason)),
        Remote("POST", _u(username) + "/disable", {"reason": reason}),
    )
    _print_user(user, json, "disabled", "was disabled already")


@app.command()
def enable(
    username: UserArg, db: DbOption = None, server: ServerOption = None, json: JsonOption = False
) -> None:
    """Enable a disabled user again."""
    user = _either(
        db,
        server,
        json,
        lambda s, by: _user_json(s.set_disabled(by, username, False)),
        Remote("POST", _u(username) + "/enable"),
    )
    _print_user(user, json, "enabled", "was enabled already")


@app.command()
def passwd(
    username: UserArg,
    own: Annotated[
        bool,
        typer.Option(
            "--own",
            help="Change your own password, giving the current one first (with "
            "--password-stdin: the current on the first line, the new on the second). Only a "
            "password you set yourself signs.",
        ),
    ] = False,
    password_stdin: PasswordStdin = False,
    db: DbOption = None,
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """Set a person's password (an admin's reset also lifts a lockout), or with --own change
    your own. The service keeps only its argon2id hash. A password an admin set cannot sign
    until its user changes it (--own)."""
    if own:
        current = _current_password(password_stdin, json)
        new = _password(password_stdin, json)

        async def change(s: IdentityService, by: Principal) -> dict[str, Any]:
            return await _user_json(s.change_own_password(username, current, new))

        body = {"current": current, "new": new}
        changed = _either(
            db, server, json, change, Remote("POST", _u(username) + "/own-password", body)
        )
        _print_user(changed, json, "has a new password, set by them")
        return
    password = _password(password_stdin, json)
    user = _either(
        db,
        server,
        json,
        lambda s, by: _user_json(s.set_password(by, username, password)),
        Remote("POST", _u(username) + "/password", {"password": password}),
    )
    _print_user(user, json, "has a new password")


def _current_password(from_stdin: bool, as_json: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        current = line.removesuffix("\n").removesuffix("\r")
        if not current:
            usage_error(
                "--own --password-stdin: expected the current password on the first line and "
                "the new one on the second",
                as_json=as_json,
            )
        return current
    if not sys.stdin.isatty():
        usage_error(
            "no terminal to ask the passwords on: give them on standard input with "
            "--password-stdin (current, then new)",
            as_json=as_json,
        )
    return getpass.getpass("current password: ")


@app.command()
def key(
    system: Annotated[str, typer.Argument(help="The system's user name.")],
    label: Annotated[str, typer.Option("--label", help="What the key is for.")],
    db: DbOption = None,
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """Issue an API key to a system. The token is printed once and kept nowhere."""

    async def issue(s: IdentityService, by: Principal) -> dict[str, Any]:
        issued, token = await s.issue_api_key(by, system, label)
        return {**issued.to_dict(), "token": token}

    issued = _either(
        db, server, json, issue, Remote("POST", _u(system) + "/keys", {"label": label})
    )
    if json:
        print_json(issued)
        return
    out.print(
        marked(
            "✔", "green", f"API key {issued['key_id']} issued to {system}; its token (shown once):"
        )
    )
    out.print(issued["token"])


@app.command()
def keys(
    system: Annotated[str, typer.Argument(help="The system's user name.")],
    db: DbOption = None,
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """The API keys issued to a system, revoked ones too, newest first (never a token)."""

    async def listed(s: IdentityService, by: Principal) -> list[dict[str, Any]]:
        return [k.to_dict() for k in await s.api_keys(by, system)]

    found = _either(db, server, json, listed, Remote("GET", _u(system) + "/keys"))
    if json:
        print_json(found)
        return
    if not found:
        out.print(f"{system} has no API key (issue one: pkgline user key {system} --label TEXT)")
        return
    table = Table()
    for name in ("key", "label", "issued", "by", "state"):
        table.add_column(name, overflow="fold")
    for k in found:
        state = (
            f"revoked {stamp(k['revoked_at'])} by {k['revoked_by']}" if k["revoked_at"] else "live"
        )
        table.add_row(k["key_id"], k["label"], stamp(k["created_at"]), k["created_by"], state)
    out.print(table)


@app.command("revoke-key")
def revoke_key(
    key_id: Annotated[str, typer.Argument(help="The key's id (as 'user key' printed it).")],
    db: DbOption = None,
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """Revoke an API key: it is refused from now on."""

    async def revoke(s: IdentityService, by: Principal) -> dict[str, Any]:
        revoked: dict[str, Any] = (await s.revoke_api_key(by, key_id)).to_dict()
        return revoked

    revoked = _either(db, server, json, revoke, Remote("POST", f"/keys/{segment(key_id)}/revoke"))
    if json:
        print_json(revoked)
        return
    out.print(marked("✔", "green", f"API key {revoked['key_id']} of {revoked['user']} revoked"))


@app.command()
def events(
    limit: Annotated[
        int,
        typer.Option(
            "--limit", min=1, max=MAX_EVENTS_PAGE, help="At most this many, newest first."
        ),
    ] = EVENTS_PAGE,
    after: Annotated[
        int | None,
        typer.Option(
            "--after",
            min=1,
            max=MAX_CURSOR,
            help="Start after this seq (the last of the page before).",
        ),
    ] = None,
    user: Annotated[
        str | None, typer.Option("--user", help="Only events this user did or underwent.")
    ] = None,
    kind: Annotated[
        str | None, typer.Option("--kind", help=f"Only this kind: {', '.join(EVENT_KINDS)}.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="At or after WHEN: 30m, 8h, 2d (ago) or a local time."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="Before WHEN: 30m, 8h, 2d (ago) or a local time."),
    ] = None,
    db: DbOption = None,
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """The security log, newest first, a page at a time: logins, lockouts, refusals, changes
    to users, engineering changes (--kind engineering_change: qualifications, SPC charts,
    reason codes, dispatch modes, flow versions published, approved and retired, each with
    its before and after); says
    how many match and how to see the next (older) page."""
    from pkgline.cli import pages

    since_at, until_at = window(since, until, as_json=json)
    try:
        query = SecurityEventQuery(
            user=user,
            kind=parse_kind(kind),
            since=since_at,
            until=until_at,
            after=after,
            limit=limit,
        )
    except InvalidInput as exc:
        usage_error(exc.message, as_json=json)

    async def found(s: IdentityService, by: Principal) -> dict[str, Any]:
        return await security_events_answer(s, by, query)

    params = query_params(
        {
            "user": user,
            "kind": kind,
            "since": iso(since_at),
            "until": iso(until_at),
            "after": after,
            "limit": limit,
        }
    )
    shown = _either(db, server, json, found, Remote("GET", "/security/events", query=params))
    if json:
        print_json(shown["events"])
        pages.json_notice(shown)
        return
    table = Table()
    for name in ("seq", "at", "event", "by", "user", "lot", "detail"):
        table.add_column(name, overflow="fold")
    for e in shown["events"]:
        detail: dict[str, Any] = dict(e["detail"])
        table.add_row(
            str(e["seq"]),
            stamp(e["at"]),
            event_name(e),
            e["actor"],
            e["subject"] or "",
            e["lot"] or "",
            event_detail(detail),
        )
    if shown["events"]:
        out.print(table)
    pages.print_notice(shown, "events")
