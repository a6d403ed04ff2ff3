"""The session service keeps a live session's person for about a second (mes.sessions): a
logout, a role change or a disabled account through the service, and the session's expiry,
count at the next request; a change made behind its back counts once the kept session is
looked up again, in the background, within SESSION_KEEP_S."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher

from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.passwords import Argon2Passwords
from mes.adapters.sql_identity import SqlIdentityStore
from mes.adapters.sql_sessions import SqlSessionStore
from mes.domain.authority import Principal, Role
from mes.domain.identity import User
from mes.identity import IdentityService
from mes.sessions import ApiSession, SessionRefused, SessionService

DATABASES = ["sqlite_url", pytest.param("postgres_url", marks=pytest.mark.postgres)]
ADMIN = Principal.file_owner("root-owner")
PASSWORD = "correct horse battery"
GUARD_S = 30.0


class Now:
    def __init__(self) -> None:
        self.at = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at


class Counted:
    """The SQL session store, counting its lookups."""

    def __init__(self, store: SqlSessionStore):
        self.store = store
        self.lookups = 0

    async def add(self, session: ApiSession) -> None:
        await self.store.add(session)

    async def get(self, session_id: str) -> tuple[ApiSession, User] | None:
        self.lookups += 1
        return await self.store.get(session_id)

    async def revoke(self, session_id: str, at: datetime) -> None:
        await self.store.revoke(session_id, at)


class World:
    def __init__(self, identity: IdentityService, store: Counted, now: Now):
        self.identity, self.store, self.now = identity, store, now

    def sessions(self, *, ttl_s: float = 3600.0, keep_s: float = 3600.0) -> SessionService:
        return SessionService(self.identity, self.store, clock=self.now, ttl_s=ttl_s, keep_s=keep_s)


@pytest.fixture(params=DATABASES)
async def world(request: pytest.FixtureRequest) -> AsyncIterator[World]:
    engine = create_engine(request.getfixturevalue(request.param))
    try:
        await upgrade(engine)
        passwords = Argon2Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
        now = Now()
        identity = IdentityService(SqlIdentityStore(engine), passwords, now)
        await identity.add_user(ADMIN, "ann", "Ann Operator", [Role.OPERATOR], password=PASSWORD)
        await identity.change_own_password("ann", PASSWORD, PASSWORD + "!")
        yield World(identity, Counted(SqlSessionStore(engine)), now)
    finally:
        await engine.dispose()


async def test_a_live_session_is_looked_up_once_then_kept(world: World) -> None:
    sessions = world.sessions()
    token, _, _ = await sessions.login("ann", PASSWORD + "!")
    for _ in range(5):
        assert (await sessions.authenticate(token)).name == "ann"
    assert world.store.lookups == 1


async def test_a_logout_a_disable_and_the_expiry_count_at_the_next_request(world: World) -> None:
    sessions = world.sessions()
    token, session, _ = await sessions.login("ann", PASSWORD + "!")
    await sessions.authenticate(token)
    assert await sessions.logout(token)
    with pytest.raises(SessionRefused, match="session ended"):
        await sessions.authenticate(token)

    token, session, _ = await sessions.login("ann", PASSWORD + "!")
    await sessions.authenticate(token)
    await world.identity.set_disabled(ADMIN, "ann", True, "left")
    with pytest.raises(SessionRefused, match="disabled"):
        await sessions.authenticate(token)
    await world.identity.set_disabled(ADMIN, "ann", False)

    token, session, _ = await sessions.login("ann", PASSWORD + "!")
    await sessions.authenticate(token)
    world.now.at = session.expires_at
    with pytest.raises(SessionRefused, match="expired"):
        await sessions.authenticate(token)


async def test_a_change_behind_its_back_counts_once_looked_up_again(world: World) -> None:
    """Stale (past the TTL): still answered, and looked up again in the background; that
    lookup finds the session ended, so the next request is refused. Past the keep: the
    request waits for the lookup itself."""
    sessions = world.sessions(ttl_s=0.0, keep_s=3600.0)
    token, session, _ = await sessions.login("ann", PASSWORD + "!")
    await sessions.authenticate(token)
    await world.store.store.revoke(session.session_id, world.now())  # not through the service
    assert (await sessions.authenticate(token)).name == "ann"  # stale: answered, refreshing
    loop = asyncio.get_running_loop()
    deadline = loop.time() + GUARD_S
    refused: SessionRefused | None = None
    while refused is None:
        try:
            await sessions.authenticate(token)
        except SessionRefused as found:
            refused = found
        assert loop.time() < deadline, "the background lookup never dropped the session"
        await asyncio.sleep(0.01)
    assert refused.why == "session ended (a logout, its account disabled or its password set)"
    await sessions.close()

    waits = world.sessions(ttl_s=0.0, keep_s=0.0)
    token, session, _ = await waits.login("ann", PASSWORD + "!")
    await waits.authenticate(token)
    await world.store.store.revoke(session.session_id, world.now())
    with pytest.raises(SessionRefused, match="session ended"):
        await waits.authenticate(token)  # nothing kept past the keep: looked up at once


async def test_a_session_is_kept_no_longer_than_its_expiry(world: World) -> None:
    sessions = world.sessions()
    token, session, _ = await sessions.login("ann", PASSWORD + "!")
    await sessions.authenticate(token)
    world.now.at = session.expires_at - timedelta(microseconds=1)
    assert (await sessions.authenticate(token)).name == "ann"
    world.now.at = session.expires_at
    with pytest.raises(SessionRefused, match="expired"):
        await sessions.authenticate(token)


async def test_a_lookup_under_way_when_the_session_ends_keeps_nothing(world: World) -> None:
    """A background lookup that read the session before its logout committed must not bring
    it back: it is kept for nothing, and the next request is refused."""
    sessions = world.sessions(ttl_s=0.0, keep_s=3600.0)
    token, _, _ = await sessions.login("ann", PASSWORD + "!")
    await sessions.authenticate(token)
    gate, reading = asyncio.Event(), asyncio.Event()
    read = world.store.get

    async def slow_get(session_id: str) -> tuple[ApiSession, User] | None:
        world.store.get = read  # type: ignore[method-assign]  # this lookup only
        found = await read(session_id)  # read while the session is live
        reading.set()
        await gate.wait()  # ... and answered after the logout
        return found

    world.store.get = slow_get  # type: ignore[method-assign]
    await sessions.authenticate(token)  # stale: answered, a lookup begins in the background
    await asyncio.wait_for(reading.wait(), GUARD_S)
    assert await sessions.logout(token)
    gate.set()
    for _ in range(20):  # the lookup under way lands
        await asyncio.sleep(0)
    with pytest.raises(SessionRefused, match="session ended"):
        await sessions.authenticate(token)
    await sessions.close()
