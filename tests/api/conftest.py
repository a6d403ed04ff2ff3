"""A running pkgline server for the API tests: ``serve_api`` in the test's event loop on a
Unix socket in tmp_path, over a fresh database (SQLite, and PostgreSQL where marked), with
the test's own OS account as a pkgline user."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher

from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.passwords import Argon2Passwords
from mes.domain.authority import Principal, Role
from mes.domain.signatures import SignaturePolicy
from mes.sessions import DEFAULT_LIFETIME
from pkgline.api.auth import ApiState
from pkgline.api.server import open_state, serve_api
from pkgline.bootstrap import os_account
from pkgline.config import ApiConfig, HttpsConfig
from tests.pkgline_cli import Ran, pkgline_async

ADMIN = Principal.file_owner("test-admin")
ACCOUNT = os_account()
OWN_PASSWORD = "own-Secret-22"
"""The password :meth:`RunningApi.own_password` gives the test's OS account."""


@dataclass
class RunningApi:
    socket: Path
    db: str
    state: ApiState

    def client(self, **headers: str) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(uds=str(self.socket))
        return httpx.AsyncClient(transport=transport, base_url="http://pkgline", headers=headers)

    async def own_password(self) -> str:
        """Give the test's OS account a password of its own (an admin sets one, then the
        account changes it: a password someone else set signs nothing) and return it."""
        await self.state.identity.set_password(ADMIN, ACCOUNT, "first-Secret-1")
        await self.state.identity.change_own_password(ACCOUNT, "first-Secret-1", OWN_PASSWORD)
        return OWN_PASSWORD

    async def roles(self, *roles: Role) -> None:
        """Give the test's OS account exactly ``roles`` (none: written in the store as an
        earlier pkgline could leave it, since the identity service keeps one at least)."""
        user = await self.state.identity.user(ADMIN, ACCOUNT)
        if not roles:
            async with self.state.identity._store.transaction() as tx:
                await tx.update_user(replace(user, roles=frozenset()))
            self.state.identity.generation += 1
            return
        await self.state.identity.change_roles(ADMIN, ACCOUNT, roles, user.roles - set(roles))


async def _migrated(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


@asynccontextmanager
async def start_api(
    db: str,
    socket: Path,
    *,
    user: bool = True,
    max_body_kb: int = 256,
    session_lifetime: timedelta = DEFAULT_LIFETIME,
    https: HttpsConfig | None = None,
    signatures: SignaturePolicy | None = None,
) -> AsyncIterator[RunningApi]:
    """Serve ``db`` on ``socket`` for the block (the OS account a user with ``operator``
    unless ``user`` is false; ``signatures``: the server's [signatures] policy); stopped and
    drained at the end."""
    await _migrated(db)
    # argon2id with a small cost: the tests hash and check passwords
    passwords = Argon2Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    async with open_state(
        db, session_lifetime=session_lifetime, passwords=passwords, signatures=signatures
    ) as state:
        if user:
            await state.identity.add_user(ADMIN, ACCOUNT, "Test Runner", [Role.OPERATOR])
        stop, ready = asyncio.Event(), asyncio.Event()
        config = ApiConfig(socket=socket, max_body_kb=max_body_kb, https=https)
        serving = asyncio.create_task(serve_api(state, config, stop, ready=ready))
        waiting = asyncio.create_task(ready.wait())
        await asyncio.wait({serving, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.is_set():
            waiting.cancel()
            await serving  # raises why it did not start
        try:
            yield RunningApi(socket, db, state)
        finally:
            stop.set()
            await serving


@pytest.fixture
async def api(migrated_sqlite_url: str, tmp_path: Path) -> AsyncIterator[RunningApi]:
    async with start_api(migrated_sqlite_url, tmp_path / "api.sock") as running:
        yield running


@pytest.fixture
async def pg_api(migrated_postgres_url: str, tmp_path: Path) -> AsyncIterator[RunningApi]:
    async with start_api(migrated_postgres_url, tmp_path / "api.sock") as running:
        yield running


async def cli(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Ran:
    """``pkgline ARGS`` (tests/pkgline_cli.py), awaited on a thread of its own: the server
    under test runs in this event loop, and a blocking wait would stall it."""
    import os

    environ = {k: v for k, v in os.environ.items() if k not in ("PKGLINE_SERVER", "PKGLINE_DB")}
    environ.update(env or {})
    return await pkgline_async(*args, env=environ, input=stdin)


async def walk_pages(
    client: httpx.AsyncClient, path: str, items: str, total: int, limit: int
) -> list[str]:
    """The ids of every item of a paged list route (``{items: [...], "total", "shown",
    "more", "next_after"}``), followed page by page through ``next_after``, each page
    checked: the total, the count shown, and the cursor naming the page's last item."""
    seen: list[str] = []
    params: dict[str, str | int] = {"limit": limit}
    while True:
        answer = (await client.get(path, params=params)).json()
        assert answer["total"] == total and answer["shown"] == len(answer[items])
        seen += [item["id"] for item in answer[items]]
        if not answer["more"]:
            assert answer["next_after"] is None
            return seen
        assert answer["next_after"] == seen[-1]
        params["after"] = answer["next_after"]


START = {"lot": "A1", "flow": "fo-organic", "params": {"layers": "3"}}
"""A lot to start (POST /lots), as the lot routes' tests do."""


async def lot_history(api: RunningApi, lot: str) -> list[dict[str, object]]:
    """The lot's history as GET /lots/{lot} answers it."""
    async with api.client() as client:
        shown = await client.get(f"/lots/{lot}")
    assert shown.status_code == 200, shown.text
    history: list[dict[str, object]] = shown.json()["history"]
    return history
