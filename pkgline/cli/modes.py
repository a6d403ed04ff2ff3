"""Which way a lot command goes, and saying so: through the pkgline server (``--server``,
``$PKGLINE_SERVER``, or the local socket when it exists) or directly on the database (a
database the user may write: embedded, one user). Every command says which, in one line on
standard error; both print the same output and exit with the same codes."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from pkgline.cli.common import (
    EXIT_CONFLICT,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Refusal,
    fail,
    run,
    usage_error,
)
from pkgline.cli.servers import TIMEOUT_S, Server, ServerUrlError, Unreachable, choose

if TYPE_CHECKING:
    from pkgline.bootstrap import Services

T = TypeVar("T")

ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="PKGLINE_SERVER",
        help="The pkgline server: unix:///PATH or https://HOST:PORT (default: "
        "$PKGLINE_SERVER, else the local server's socket when it exists and no --db is given, "
        "else the database directly).",
        show_default=False,
    ),
]

EXIT_OF_ERROR = {
    "conflict": EXIT_CONFLICT,
    "retry": EXIT_CONFLICT,
    "database": EXIT_UNAVAILABLE,
    "schema": EXIT_UNAVAILABLE,
    "invalid_request": EXIT_USAGE,
    "too_large": EXIT_USAGE,
}
"""The exit code of a refusal the server sent, by its ``error`` (any other refusal: 1), as
the same refusal exits in direct mode."""


def target(server: str | None, db: str | None, *, as_json: bool) -> Server | None:
    """The server to go through, or None for direct mode (a bad URL: usage error)."""
    try:
        return choose(server, db)
    except ServerUrlError as exc:
        usage_error(str(exc), as_json=as_json)


last_mode: list[str] = []
"""The mode the command used, as said (``lot list --json`` puts it in its notice)."""


def say_direct(db: str | None, *, quiet: bool = False) -> None:
    from mes.adapters import location
    from pkgline.accounts import os_account

    url = db or location.default_database_url()
    path = location.sqlite_file(url)
    dsn = location.postgres_dsn(url)
    if path is not None:  # the plain URLs: shown without SQLAlchemy's parser
        where = location.plain_sqlite_url(path)
    elif dsn is not None:
        where = location.shown_postgres_url(dsn)
    else:
        from mes.adapters.database import display_url

        try:
            where = display_url(url)
        except ValueError:
            where = str(db)
    _say(f"direct database {where} as OS account {os_account()}", quiet)


def _say(line: str, quiet: bool) -> None:
    last_mode[:] = [line]
    if not quiet:  # plain text: rich is not imported for a --json command
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def call(
    server: Server,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    query: list[tuple[str, str]] | None = None,
    *,
    as_json: bool,
    quiet: bool = False,
    with_principal: bool = False,
    timeout: float | None = None,
    hint: Callable[[Mapping[str, Any]], str | None] | None = None,
    refusal: Refusal | None = None,
) -> Any:
    """One request to ``server``; a refusal is printed as in direct mode and exits with its
    code. ``quiet``: do not say the mode on standard error (a command's second request;
    ``lot list --json``, whose notice there says it). ``with_principal``: the answer's body
    and who the server took the client for (``name (method)``), as a pair. ``hint``: what
    the command adds to a refusal's message in words (how to give what it lacks, in this
    command's options); the JSON stays the server's, but for ``refusal``: its ``field``
    named by the command's option (:class:`pkgline.cli.lot_act.Options`)."""
    from pkgline.cli.remote import request  # http.client: only where a server answers

    try:
        answer = request(server, method, path, body, query, timeout=timeout or TIMEOUT_S)
    except ServerUrlError as exc:  # $PKGLINE_SERVER_CA
        usage_error(str(exc), as_json=as_json)
    except Unreachable as exc:
        message = str(exc)
        fail(message, {"error": "server", "message": message}, EXIT_UNAVAILABLE, as_json)
    who = f" as {answer.principal}" if answer.principal else ""
    _say(f"via server {server.url}{who}", quiet)
    if answer.status >= 400:
        body_ = answer.body if isinstance(answer.body, dict) else {}
        payload = {"error": "http", "message": f"HTTP {answer.status}", **body_}
        if refusal is not None:
            payload = refusal(payload)
        code = EXIT_OF_ERROR.get(str(payload["error"]), EXIT_REFUSED)
        added = hint(payload) if hint is not None else None
        fail(str(payload["message"]) + (added or ""), payload, code, as_json)
    return (answer.body, answer.principal) if with_principal else answer.body


@dataclass(frozen=True)
class Remote:
    """The route that does what a command does, for :func:`either`."""

    method: str
    path: str
    body: dict[str, Any] | None = None
    query: list[tuple[str, str]] | None = None
    timeout: float | None = None
    """How long to wait for the answer (default: :data:`pkgline.cli.servers.TIMEOUT_S`)."""


def query_params(given: Mapping[str, object]) -> list[tuple[str, str]]:
    """A command's options as the query string of its route: those given, in order."""
    return [(name, str(value)) for name, value in given.items() if value is not None]


def segment(value: str) -> str:
    """A value (a tool id, a user name) as one path segment of a route."""
    from urllib.parse import quote

    return quote(value, safe="")


def either(
    db: str | None,
    server: str | None,
    as_json: bool,
    direct: Callable[[], Awaitable[Any]],
    remote: Remote,
) -> Any:
    """A command's answer as JSON, either way: through the server (``remote``) or on the
    database (``direct``, which opens the services itself and answers the same JSON as the
    route), said on standard error. Refusals print and exit as :func:`call` and
    :func:`pkgline.cli.common.run` do; the caller prints the answer."""
    via = target(server, db, as_json=as_json)
    if via is not None:
        return call(
            via,
            remote.method,
            remote.path,
            remote.body,
            remote.query,
            as_json=as_json,
            timeout=remote.timeout,
        )
    say_direct(db)
    return run(direct, as_json=as_json, db=db)


def served(
    db: str | None,
    server: str | None,
    as_json: bool,
    remote: Remote,
    call: Callable[[Services], Awaitable[T]],
    shape: Callable[[T], Any],
) -> Any:
    """:func:`either` for a command that is one call of a service: through the server
    (``remote``), or directly: the services opened on ``db`` for the OS account, ``call``
    made and its answer turned into the route's JSON by ``shape`` (the same function the
    route uses, so that the two cannot differ)."""

    async def direct() -> Any:
        from pkgline.bootstrap import open_services

        async with open_services(db) as services:
            return shape(await call(services))

    return either(db, server, as_json, direct, remote)


def password_again(prompt: str) -> str:
    """The signer's password, given again for one signature (21 CFR 11.200): read from the
    terminal without echo, or one line of standard input when it is not a terminal (empty:
    none given)."""
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass(prompt, stream=sys.stderr)
    password = sys.stdin.readline().rstrip("\n")
    if not password:
        sys.stderr.write("no password on standard input: sent without your signature\n")
    return password
