"""A security log nobody can rewrite unseen: every event (a login, a refusal of authority, a
change to a user) is chained to the one before it, as the lot history is, so that someone who
gets past the append-only triggers (drops them, as the file's or the tables' owner can) and
edits, deletes or forges an event is found by ``audit verify``; on SQLite and PostgreSQL, and
on a database upgraded from before the chain (revision 0022)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from mes.adapters.audit import guard_names, verify_history
from mes.adapters.database import create_engine
from mes.adapters.migrate import downgrade, upgrade
from mes.adapters.passwords import Argon2Passwords
from mes.adapters.sql_identity import SqlIdentityStore, SqlSecurityLog
from mes.domain import security_chain
from mes.domain.audit import GENESIS, Finding
from mes.domain.authority import AuthMethod, Principal, Role
from mes.domain.identity import EventKind, LoginRefused, SecurityEvent
from mes.guard import REQUEST_ORIGIN
from mes.identity import IdentityService
from tests.mes.conftest import Clock

DATABASES = ["sqlite_url", pytest.param("postgres_url", marks=pytest.mark.postgres)]
ADMIN = Principal.file_owner("root-owner")
PASSWORD = "correct horse battery"


@pytest.fixture(params=DATABASES)
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(request.getfixturevalue(request.param))
    try:
        await upgrade(engine)
        yield engine
    finally:
        await engine.dispose()


def _identity(engine: AsyncEngine, clock: Clock) -> IdentityService:
    passwords = Argon2Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    return IdentityService(SqlIdentityStore(engine), passwords, clock)


@pytest.fixture
async def logged(engine: AsyncEngine, clock: Clock) -> AsyncEngine:
    """Six events: alice added, two failed logins, one good, a refusal, alice disabled; one of
    them with the origin of a server's request in its detail (hashed as it is stored)."""
    identity = _identity(engine, clock)
    await identity.add_user(ADMIN, "alice", "Alice", {Role.OPERATOR}, password=PASSWORD)
    for _ in range(2):
        with pytest.raises(LoginRefused):
            await identity.login("alice", "wrong password")
    token = REQUEST_ORIGIN.set("127.0.0.1:50000")
    try:
        await identity.login("alice", PASSWORD)
    finally:
        REQUEST_ORIGIN.reset(token)
    await SqlSecurityLog(engine).record(
        SecurityEvent(
            datetime(2026, 12, 6, 4, 0, 0, 123456, tzinfo=UTC),
            EventKind.REFUSED,
            "alice",
            AuthMethod.PASSWORD,
            action="scrap",
            lot_id="L1",
            detail={"allowed": ["quality"], "ratio": 2.0},
        )
    )
    await identity.set_disabled(ADMIN, "alice", True, "left")
    return engine


async def _raw(engine: AsyncEngine, *statements: str) -> None:
    async with engine.begin() as conn:
        for statement in statements:
            await conn.execute(text(statement))


async def _one(engine: AsyncEngine, query: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(query))).scalar_one()


async def _drop_guards(engine: AsyncEngine) -> None:
    """What an attacker with the file (or the tables' owner) does first."""
    names = guard_names("security_events", engine.dialect.name)
    on = " ON security_events" if engine.dialect.name == "postgresql" else ""
    await _raw(engine, *(f"DROP TRIGGER {n}{on}" for n in names))


async def test_an_untouched_log_verifies_with_every_event_counted_and_its_head_kept(
    logged: AsyncEngine,
) -> None:
    found = await verify_history(logged, batch=2)  # small batches: the walk goes on across them
    assert found.ok, found.problem
    assert found.security_events == await _one(logged, "SELECT count(*) FROM security_events")
    assert found.security_events == 6
    newest = "SELECT hash FROM security_events ORDER BY seq DESC LIMIT 1"
    assert found.security_head == await _one(logged, newest)
    head = "SELECT head FROM audit_heads WHERE chain = 'security'"
    assert found.security_head == await _one(logged, head)
    assert found.to_dict()["security_head"] == found.security_head
    origin = "SELECT count(*) FROM security_events WHERE detail LIKE '%127.0.0.1:50000%'"
    if logged.dialect.name == "postgresql":
        origin = origin.replace("detail LIKE", "detail::text LIKE")
    assert await _one(logged, origin) == 1


@pytest.mark.parametrize(
    ("tamper", "finding", "seq"),
    [
        # a failed login made to look like a good one
        ("UPDATE security_events SET kind = 'login' WHERE seq = 2", Finding.CONTENT_CHANGED, 2),
        # the refusal, changed to another action
        (
            "UPDATE security_events SET action = 'hold' WHERE kind = 'refused'",
            Finding.CONTENT_CHANGED,
            5,
        ),
        # a failed login removed: the next event follows an event no longer there
        ("DELETE FROM security_events WHERE seq = 3", Finding.ENTRY_MISSING, 4),
        # the newest removed: the log ends elsewhere than its head
        ("DELETE FROM security_events WHERE seq = 6", Finding.HEAD_MISSING, None),
    ],
)
async def test_an_event_changed_or_removed_behind_the_databases_back_is_found(
    logged: AsyncEngine, tamper: str, finding: Finding, seq: int | None
) -> None:
    await _drop_guards(logged)
    await _raw(logged, tamper)
    found = await verify_history(logged)
    assert found.problem is not None
    assert found.problem.finding is finding, found.problem
    assert found.problem.log == "security"
    assert found.problem.seq == seq
    assert found.to_dict()["problem"]["log"] == "security"


async def test_two_events_swapped_with_their_hashes_are_found(logged: AsyncEngine) -> None:
    """Each event keeps a content that matches its hash, but no longer in its place: the
    first follows an event that comes after it."""
    await _drop_guards(logged)
    rows = "SELECT prev_hash, hash, kind FROM security_events WHERE seq IN (2, 4) ORDER BY seq"
    async with logged.connect() as conn:
        two, four = (await conn.execute(text(rows))).all()
    columns = ("at", "kind", "actor", "method", "subject", "action", "lot_id", "detail")
    copy = ", ".join(f"{c} = o.{c}" for c in (*columns, "prev_hash", "hash"))
    await _raw(
        logged,
        "CREATE TABLE swap AS SELECT * FROM security_events WHERE seq IN (2, 4)",
        f"UPDATE security_events SET {copy} FROM swap AS o WHERE o.seq = 6 - security_events.seq",
    )
    assert (two.kind, four.kind) == ("login_failed", "login")
    found = await verify_history(logged)
    assert found.problem is not None
    assert found.problem.finding is Finding.ENTRY_MISSING
    assert found.problem.seq == 2
    assert "not before it in the log (removed, or moved after it); expected event 1" in (
        found.problem.message
    )


async def test_a_cut_hidden_by_a_head_set_back_is_found_only_by_an_anchor_kept_elsewhere(
    logged: AsyncEngine,
) -> None:
    """The newest events removed and the head set back: consistent inside the database (the
    limit of any chain kept there, and the guards say they were dropped), but not with the
    security head an auditor wrote down before."""
    anchor = (await verify_history(logged)).security_head
    await _drop_guards(logged)
    fourth = await _one(logged, "SELECT hash FROM security_events WHERE seq = 4")
    await _raw(
        logged,
        "DELETE FROM security_events WHERE seq > 4",
        f"UPDATE audit_heads SET head = '{fourth}' WHERE chain = 'security'",
    )
    unanchored = await verify_history(logged)
    assert unanchored.problem is not None
    assert unanchored.problem.finding is Finding.GUARD_MISSING
    assert "security_events" in unanchored.problem.message
    found = await verify_history(logged, anchors=[anchor])
    assert found.problem is not None
    assert found.problem.finding is Finding.ANCHOR_MISSING


async def test_an_anchor_still_in_the_log_verifies(logged: AsyncEngine, clock: Clock) -> None:
    anchor = (await verify_history(logged)).security_head
    with pytest.raises(LoginRefused):  # the log goes on after the anchor was written down
        await _identity(logged, clock).login("nobody", "x")
    found = await verify_history(logged, anchors=[anchor])
    assert found.ok, found.problem
    assert found.security_head != anchor


async def test_a_head_row_deleted_is_found_and_the_log_still_records(
    logged: AsyncEngine, clock: Clock
) -> None:
    """Refusals are recorded whatever was done to the head: the next event starts the chain
    again, which verification reports as the cut it is."""
    await _raw(logged, "DELETE FROM audit_heads WHERE chain = 'security'")
    with pytest.raises(LoginRefused):
        await _identity(logged, clock).login("alice", "wrong")
    assert await _one(logged, "SELECT count(*) FROM security_events") == 7
    found = await verify_history(logged)
    assert found.problem is not None
    assert found.problem.finding is Finding.LINK_BROKEN
    assert found.problem.seq == 7


async def test_writers_of_the_log_at_once_leave_one_chain_that_verifies(
    engine: AsyncEngine,
) -> None:
    log = SqlSecurityLog(engine)
    at = datetime(2026, 12, 6, 4, 0, tzinfo=UTC)
    await asyncio.gather(
        *(
            log.record(SecurityEvent(at, EventKind.REFUSED, f"u{n}", action="hold"))
            for n in range(16)
        )
    )
    found = await verify_history(engine)
    assert found.ok, found.problem
    assert found.security_events == 16


async def test_a_database_from_before_the_chain_is_chained_on_upgrade_and_kept_on_downgrade(
    request: pytest.FixtureRequest,
) -> None:
    engine = create_engine(request.getfixturevalue("sqlite_url"))
    try:
        await _upgrade_from_0021(engine)
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_a_postgres_database_from_before_the_chain_is_chained_on_upgrade(
    postgres_url: str,
) -> None:
    engine = create_engine(postgres_url)
    try:
        await _upgrade_from_0021(engine)
    finally:
        await engine.dispose()


async def _upgrade_from_0021(engine: AsyncEngine) -> None:
    await upgrade(engine, "0021")
    rows = [
        ("2026-12-01 06:00:00+00:00", "login", "alice", "password", None, None, "{}"),
        (
            "2026-12-01 06:00:01.250000+00:00",
            "refused",
            "bob",
            "api_key",
            "scrap",
            "L1",
            '{"allowed": ["quality"], "ratio": 2.0, "n": [1, {"b": null}]}',
        ),
        ("2026-12-01 06:00:02+00:00", "login_failed", "eve", None, None, None, '{"why": "é"}'),
    ]
    values = ", ".join(
        "('{}', '{}', '{}', {}, {}, {}, '{}')".format(
            at, kind, actor, *(f"'{v}'" if v else "NULL" for v in (method, action, lot)), detail
        )
        for at, kind, actor, method, action, lot, detail in rows
    )
    await _raw(
        engine,
        f"INSERT INTO security_events (at, kind, actor, method, action, lot_id, detail) "
        f"VALUES {values}",
    )
    await upgrade(engine)
    found = await verify_history(engine)
    assert found.ok, found.problem
    assert found.security_events == 3
    # the chain goes on from the events the upgrade chained
    await SqlSecurityLog(engine).record(
        SecurityEvent(datetime(2026, 12, 6, tzinfo=UTC), EventKind.LOGIN, "alice")
    )
    assert (await verify_history(engine)).security_events == 4
    await downgrade(engine, "0021")
    assert await _one(engine, "SELECT count(*) FROM security_events") == 4
    assert await _one(engine, "SELECT count(*) FROM audit_heads WHERE chain = 'security'") == 0
    await upgrade(engine)
    found = await verify_history(engine)
    assert found.ok, found.problem
    assert found.security_events == 4
    with pytest.raises(Exception, match="append-only"):  # the guards came back
        await _raw(engine, "DELETE FROM security_events")


def _event(**kw: Any) -> SecurityEvent:
    base: dict[str, Any] = {
        "at": datetime(2026, 12, 6, 4, 0, tzinfo=UTC),
        "kind": EventKind.REFUSED,
        "actor": "alice",
        "method": AuthMethod.PASSWORD,
        "subject": "bob",
        "action": "scrap",
        "lot_id": "L1",
        "detail": {"allowed": ["quality"]},
    }
    return SecurityEvent(**{**base, **kw})


def test_every_field_of_an_event_but_its_seq_is_covered_by_its_hash() -> None:
    base = _event()
    digest = security_chain.event_hash(base, GENESIS)
    assert security_chain.event_hash(replace(base, seq=99), GENESIS) == digest
    changed = [
        replace(base, at=datetime(2026, 12, 6, 4, 0, 0, 1, tzinfo=UTC)),
        replace(base, kind=EventKind.LOGIN_FAILED),
        replace(base, actor="mallory"),
        replace(base, method=None),
        replace(base, subject=None),
        replace(base, action="hold"),
        replace(base, lot_id="L2"),
        replace(base, detail={}),
    ]
    assert len({security_chain.event_hash(e, GENESIS) for e in changed} | {digest}) == 9
    assert security_chain.event_hash(base, "1" * 64) != digest


def test_a_float_and_the_integer_postgres_gives_back_for_it_hash_alike() -> None:
    assert security_chain.event_hash(_event(detail={"r": 2.0}), GENESIS) == (
        security_chain.event_hash(_event(detail={"r": 2}), GENESIS)
    )
