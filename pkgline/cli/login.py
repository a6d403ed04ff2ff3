"""``pkgline login`` and ``pkgline logout``: a session with a remote pkgline server (HTTPS).
The password is read from a prompt or the first line of standard input, never an option; the
token is kept in a 0600 file of the user's (:func:`pkgline.cli.remote.session_file`)."""

from __future__ import annotations

import getpass
import sys
from typing import Annotated

import typer

from pkgline.cli.common import JsonOption, err, out, print_json, usage_error
from pkgline.cli.modes import ServerOption, call, target
from pkgline.cli.remote import Server

PasswordStdin = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password from the first line of stdin."),
]


def _server(server: str | None, as_json: bool) -> Server:
    via = target(server, None, as_json=as_json)
    if via is None or via.host is None:
        usage_error(
            "--server https://HOST:PORT: a login is for a remote server (on the local socket "
            "your OS account is who you are)",
            as_json=as_json,
        )
    return via


def login(
    server: ServerOption = None,
    user: Annotated[
        str | None,
        typer.Option("--user", help="Your pkgline user name (default: your OS account)."),
    ] = None,
    password_stdin: PasswordStdin = False,
    json: JsonOption = False,
) -> None:
    """Log in to a pkgline server over HTTPS: the session (8 h by default) is kept for the
    next commands with the same --server."""
    from pkgline.bootstrap import os_account
    from pkgline.cli.remote import store_token

    via = _server(server, json)
    name = user or os_account()
    if password_stdin:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
        if not password:
            usage_error("--password-stdin: standard input has no password line", as_json=json)
    elif sys.stdin.isatty():
        password = getpass.getpass(f"password of {name} on {via.url}: ")
    else:
        usage_error("no terminal to ask the password on: use --password-stdin", as_json=json)
    answer = call(
        via, "POST", "/session", {"username": name, "password": password}, as_json=json, quiet=True
    )
    path = store_token(via, answer["token"], answer["expires_at"])
    summary = {"user": answer["user"], "expires_at": answer["expires_at"], "kept_in": str(path)}
    if json:
        print_json(summary)
        return
    roles = ", ".join(answer["user"]["roles"]) or "no role"
    out.print(f"logged in to {via.url} as {name} ({roles}) until {answer['expires_at']}")


def logout(server: ServerOption = None, json: JsonOption = False) -> None:
    """End the session kept for --server (on the server too) and forget its token."""
    from pkgline.cli.remote import session_file, stored_token

    via = _server(server, json)
    if stored_token(via) is None:
        err.print(f"no session kept for {via.url}")
        return
    call(via, "DELETE", "/session", as_json=json, quiet=True)
    session_file(via).unlink(missing_ok=True)
    if json:
        print_json({"logged_out": via.url})
    else:
        out.print(f"logged out of {via.url}")
