"""The demo's pkgline server: ``pkgline api`` as a child on a socket beside the demo's
database, the OS account running the demo made a pkgline user of it, and the demo's lots
started through the server as an operator's CLI would (docs/api.md)."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mes.domain.authority import Principal, Role
from pkgline.bootstrap import os_account
from pkgline.cli.remote import Server, Unreachable, request


def socket_path(database: Path) -> Path:
    return database.with_name(f"{database.stem}.api.sock")


@dataclass(frozen=True, slots=True)
class DemoUser:
    name: str
    password: str = field(repr=False)
    """Made for this run, shown once on the demo's terminal; only its argon2id hash is
    stored (no default password: every demo database has its own)."""


async def add_demo_user(url: str) -> DemoUser:
    """Make the OS account running the demo a pkgline user (operator, engineer, quality) of
    the demo's fresh database, so that the server knows it on its socket, with a password
    generated for this run for the operator station's login."""
    from pkgline.bootstrap import open_identity

    account = os_account()
    password = secrets.token_urlsafe(12)
    async with open_identity(url) as identity:
        roles = [Role.OPERATOR, Role.ENGINEER, Role.QUALITY]
        await identity.add_user(
            Principal.file_owner(account), account, account, roles, password=password
        )
    return DemoUser(account, password)


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 now (the station's; the server binds it right after)."""
    from simulators.line import free_loopback_ports

    return free_loopback_ports(1)[0]


async def wait_for_server(server: Server, within_s: float, alive: Any) -> None:
    """Until the server answers /health (``alive()`` false: it exited; TimeoutError)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("the pkgline server exited")
        try:
            answer = await asyncio.to_thread(request, server, "GET", "/health")
        except Unreachable:
            answer = None
        if answer is not None and answer.status == 200:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("the pkgline server did not answer")


async def start_lot(server: Server, body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """POST /lots through the server: the lot as it answers, and who it took the demo for;
    a refusal raises RuntimeError with the server's message."""
    answer = await asyncio.to_thread(request, server, "POST", "/lots", body)
    if answer.status != 201:
        message = answer.body.get("message") if isinstance(answer.body, dict) else answer.body
        raise RuntimeError(f"the server refused to start {body['lot']}: {message}")
    started: dict[str, Any] = answer.body
    return started, answer.principal
