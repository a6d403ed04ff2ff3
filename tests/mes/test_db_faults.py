"""The store against a database that fails: every driver error is classified once, at the
store's edge (unavailable, read-only, retryable, or a bug raised as it is), nothing waits
without a limit, and the store works again once the database does. PostgreSQL is reached
through a fault proxy the test owns (tests/faultproxy.py); SQLite fills a small tmpfs."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import asyncpg
import pytest
from argon2 import PasswordHasher
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from mes.adapters.database import DatabaseTimeouts, DatabaseUrlError, create_engine, usable_url
from mes.adapters.errors import (
    DatabaseReadOnly,
    DatabaseRetryable,
    DatabaseUnavailable,
    IntegrityViolation,
    classify,
)
from mes.adapters.health import DatabaseHealth
from mes.adapters.migrate import upgrade
from mes.adapters.passwords import Argon2Passwords
from mes.adapters.schema import require_current_schema
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.adapters.sql_flows import SqlFlowVersionStore
from mes.adapters.sql_identity import SqlIdentityStore
from mes.adapters.sql_sessions import SqlSessionStore
from mes.domain import commands as cmd
from mes.domain.authority import Principal, Role
from mes.domain.identity import EventKind
from mes.identity import IdentityService
from mes.service import LotService
from pkgline.bootstrap import (
    direct_principal,
    flow_library,
    load_versions,
    seed_flow_versions,
    services_for,
)
from pkgline.line_views import read_status
from tests.conftest import PG_ADMIN_URL
from tests.faultproxy import FaultProxy

SHORT = DatabaseTimeouts(connect_s=1.0, statement_s=1.0, pool_s=1.0)
HANG_GUARD_S = 30.0
"""Far longer than any of SHORT's waits: a call still waiting then hangs for good."""


def _through(url: str, proxy: FaultProxy) -> str:
    return make_url(url).set(port=proxy.port).render_as_string(hide_password=False)


async def _admin(sql: str, database: str | None = None) -> None:
    url = PG_ADMIN_URL if database is None else make_url(PG_ADMIN_URL).set(database=database)
    conn = await asyncpg.connect(str(url), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _database(url: str) -> str:
    name = make_url(url).database
    assert name is not None
    return name


@contextlib.asynccontextmanager
async def _store(
    url: str, *, pool_size: int = 5, health: DatabaseHealth | None = None
) -> AsyncIterator[tuple[AsyncEngine, LotService]]:
    engine = create_engine(url, pool_size=pool_size, timeouts=SHORT)
    try:
        yield engine, LotService(SqlUnitOfWorkFactory(engine, health=health), flow_library())
    finally:
        await engine.dispose()


async def _migrated(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


# -- classification -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (asyncpg.ReadOnlySQLTransactionError("read-only transaction"), DatabaseReadOnly),
        (asyncpg.SerializationError("could not serialize access"), DatabaseRetryable),
        (asyncpg.DeadlockDetectedError("deadlock detected"), DatabaseRetryable),
        (asyncpg.TooManyConnectionsError("too many clients"), DatabaseRetryable),
        (asyncpg.QueryCanceledError("canceling statement"), DatabaseRetryable),
        (asyncpg.LockNotAvailableError("could not obtain lock"), DatabaseRetryable),
        (asyncpg.AdminShutdownError("terminating connection"), DatabaseUnavailable),
        (asyncpg.CannotConnectNowError("the database system is starting up"), DatabaseUnavailable),
        (asyncpg.DiskFullError("could not extend file"), DatabaseUnavailable),
        (asyncpg.InvalidCatalogNameError('database "x" does not exist'), DatabaseUnavailable),
        (asyncpg.ConnectionDoesNotExistError("connection was closed"), DatabaseUnavailable),
        (asyncpg.InternalClientError("cannot switch to state 12"), DatabaseUnavailable),
        (asyncpg.UniqueViolationError("duplicate key"), IntegrityViolation),
        (ConnectionRefusedError(111, "Connection refused"), DatabaseUnavailable),
        (TimeoutError(), DatabaseUnavailable),
    ],
)
def test_each_postgresql_error_is_classified_by_its_sqlstate(
    error: Exception, expected: type[Exception]
) -> None:
    found = classify(error)
    assert type(found) is expected


def test_a_wrong_database_password_says_where_a_password_is_kept() -> None:
    found = classify(asyncpg.InvalidPasswordError('password authentication failed for user "x"'))
    assert isinstance(found, DatabaseUnavailable)
    assert str(found) == (
        'password authentication failed for user "x": the password is kept in a password file '
        "(PGPASSFILE, or the account's ~/.pgpass, mode 0600), not in the URL"
    )


def test_a_postgresql_password_file_that_cannot_work_is_refused_before_connecting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "postgresql://pkgline@127.0.0.1/pkgline"
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("PGPASSFILE", raising=False)
    assert usable_url(url).password is None  # none there: nothing to check
    kept = tmp_path / ".pgpass"
    kept.write_text("127.0.0.1:5432:pkgline:pkgline:secret\n")
    kept.chmod(0o644)
    with pytest.raises(DatabaseUrlError, match=f"password file {kept}: others may read it"):
        create_engine(url)
    assert usable_url("postgresql://pkgline:pw@127.0.0.1/pkgline")  # a password given: not read
    kept.chmod(0o600)
    assert usable_url(url)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    with pytest.raises(DatabaseUrlError, match=f"PGPASSFILE {tmp_path}/none: there is no such"):
        usable_url(url)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path))
    with pytest.raises(DatabaseUrlError, match="not a plain file"):
        usable_url(url)
    assert usable_url("sqlite:///x.db")  # SQLite has no password file


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("sslmode=require", "sets sslmode, which the PostgreSQL driver does not take (libpq's"),
        ("application_name=x&foo=1", "sets application_name, foo, which the PostgreSQL driver"),
    ],
)
def test_a_postgresql_url_setting_what_the_driver_does_not_take_is_refused_at_once(
    query: str, says: str
) -> None:
    """asyncpg raised a TypeError at the first connection, a traceback in every command
    (found by the probe); the URL is refused before anything starts, saying what it takes."""
    with pytest.raises(DatabaseUrlError, match=re.escape(says)) as refused:
        usable_url(f"postgresql://pkgline:pw@127.0.0.1/pkgline?{query}")
    assert "expected only host, port, passfile, ssl," in str(refused.value)
    for fine in ("host=/run/postgresql", "ssl=require&target_session_attrs=read-write"):
        assert usable_url(f"postgresql://pkgline:pw@127.0.0.1/pkgline?{fine}")


async def test_a_closed_port_is_said_in_the_os_s_words_not_asyncio_s() -> None:
    """asyncio's connect puts "Connect call failed ('127.0.0.1', N)" where the OS says
    "Connection refused"; the reason an operator reads is the OS's."""
    from simulators.ports import free_loopback_ports

    (port,) = free_loopback_ports(1)
    with pytest.raises(OSError) as raised:
        await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/test", timeout=5)
    found = classify(raised.value)
    assert isinstance(found, DatabaseUnavailable)
    assert found.reason == "Connection refused"
    resolver = classify(OSError(-2, "Name or service not known"))
    assert resolver is not None and resolver.reason == "Name or service not known"


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.UndefinedTableError('relation "lots" does not exist'),
        asyncpg.PostgresSyntaxError("syntax error"),
        asyncpg.DataError("invalid input"),
        ValueError("not a database error"),
    ],
)
def test_an_error_that_is_a_bug_is_not_classified_and_goes_on_as_it_is(error: Exception) -> None:
    assert classify(error) is None


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (sqlite3.SQLITE_BUSY, DatabaseRetryable),
        (sqlite3.SQLITE_LOCKED, DatabaseRetryable),
        (sqlite3.SQLITE_BUSY_SNAPSHOT, DatabaseRetryable),
        (sqlite3.SQLITE_READONLY, DatabaseReadOnly),
        (sqlite3.SQLITE_READONLY_DBMOVED, DatabaseReadOnly),
        (sqlite3.SQLITE_FULL, DatabaseUnavailable),
        (sqlite3.SQLITE_IOERR_WRITE, DatabaseUnavailable),
        (sqlite3.SQLITE_CANTOPEN, DatabaseUnavailable),
        (sqlite3.SQLITE_ERROR, type(None)),  # no such table, syntax: a bug
        (sqlite3.SQLITE_CORRUPT, type(None)),  # needs a person, not a wait
    ],
)
def test_each_sqlite_error_is_classified_by_its_result_code(
    code: int, expected: type[object]
) -> None:
    error = sqlite3.OperationalError("sqlite says no")
    error.sqlite_errorcode = code
    assert type(classify(error)) is expected


async def test_a_bug_in_sql_is_raised_as_it_is_not_as_an_unavailable_database(
    sqlite_url: str,
) -> None:
    async with _store(sqlite_url) as (_, lots):  # no schema: "no such table"
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            await lots.find()


# -- PostgreSQL behind the fault proxy ------------------------------------------------------


@pytest.mark.postgres
async def test_a_silent_partition_becomes_database_unavailable_within_the_timeouts(
    postgres_url: str,
) -> None:
    await _migrated(postgres_url)
    health = DatabaseHealth()
    async with (
        FaultProxy("127.0.0.1", 5432) as proxy,
        _store(_through(postgres_url, proxy), health=health) as (_, lots),
    ):
        await lots.start(cmd.StartLot("L1", "stiffener-bga", "op"))  # a pooled connection
        proxy.set_mode("silent")
        async with asyncio.timeout(HANG_GUARD_S):
            with pytest.raises(DatabaseUnavailable) as in_use:  # the pooled connection
                await lots.find()
            with pytest.raises(DatabaseUnavailable) as new:  # a new connection
                await lots.start(cmd.StartLot("L2", "stiffener-bga", "op"))
        assert not isinstance(in_use.value, DatabaseRetryable)
        assert not isinstance(new.value, DatabaseRetryable)
        assert health.down is not None
        proxy.set_mode("pass")
        await lots.start(cmd.StartLot("L2", "stiffener-bga", "op"))
        assert health.down is None
        assert [lot.id for lot in await lots.find()] == ["L1", "L2"]


@pytest.mark.postgres
async def test_connections_reset_by_the_network_become_database_unavailable_then_recover(
    postgres_url: str,
) -> None:
    await _migrated(postgres_url)
    async with (
        FaultProxy("127.0.0.1", 5432) as proxy,
        _store(_through(postgres_url, proxy)) as (_, lots),
    ):
        await lots.start(cmd.StartLot("L1", "stiffener-bga", "op"))
        proxy.set_mode("reset")
        async with asyncio.timeout(HANG_GUARD_S):
            with pytest.raises(DatabaseUnavailable):
                await lots.find()
            with pytest.raises(DatabaseUnavailable):
                await lots.find()
        proxy.set_mode("pass")
        assert [lot.id for lot in await lots.find()] == ["L1"]


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["reset", "silent"])
async def test_the_flow_version_identity_and_session_stores_fail_as_the_store_does(
    postgres_url: str, mode: Literal["reset", "silent"]
) -> None:
    """The stores on plain SQLAlchemy (flow versions, users, sessions) classify a failing
    database at their edge as the lot store does: a controller that reads flow versions in
    its dispatch pass treats it as an outage, not a crash (found by bench/soak.py: a reset
    during a versions read ended `pkgline serve`)."""
    await _migrated(postgres_url)
    async with (
        FaultProxy("127.0.0.1", 5432) as proxy,
        _store(_through(postgres_url, proxy)) as (engine, _),
    ):
        flows, users = SqlFlowVersionStore(engine), SqlIdentityStore(engine)
        sessions = SqlSessionStore(engine)
        await seed_flow_versions(engine)
        assert await flows.versions()  # the packaged flows, version 1; a pooled connection
        proxy.set_mode(mode)
        async with asyncio.timeout(HANG_GUARD_S):
            with pytest.raises(DatabaseUnavailable):
                await flows.versions()
            with pytest.raises(DatabaseUnavailable):
                async with users.transaction(readonly=True) as tx:
                    await tx.users()
            with pytest.raises(DatabaseUnavailable):
                await sessions.get("nope")
            with pytest.raises(DatabaseUnavailable):
                await sessions.revoke("nope", datetime.now(UTC))
        proxy.set_mode("pass")
        assert await flows.versions()
        assert await sessions.get("nope") is None


@pytest.mark.postgres
async def test_a_database_switched_to_read_only_refuses_writes_as_read_only_and_still_reads(
    postgres_url: str,
) -> None:
    """What a failover to a standby looks like: new connections are read-only. Writes fail
    as DatabaseReadOnly (a DatabaseUnavailable: callers wait and retry), reads go on, and
    once switched back the next writes go through."""
    await _migrated(postgres_url)
    name = _database(postgres_url)
    health = DatabaseHealth()
    async with _store(postgres_url, health=health) as (engine, lots):
        await lots.start(cmd.StartLot("L1", "stiffener-bga", "op"))
        await _admin(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        try:
            await engine.dispose()  # the connections opened before the switch
            with pytest.raises(DatabaseReadOnly):
                await lots.start(cmd.StartLot("L2", "stiffener-bga", "op"))
            assert [lot.id for lot in await lots.find()] == ["L1"]
            assert health.down is not None and health.down.kind == "read-only"
        finally:
            await _admin(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        await engine.dispose()  # reads' connections opened meanwhile are still read-only
        await lots.start(cmd.StartLot("L2", "stiffener-bga", "op"))
        assert health.down is None


async def _refuse_connections(name: str, refuse: bool) -> None:
    """``ALTER DATABASE ... ALLOW_CONNECTIONS false`` and its sessions ended (as the probe
    did): every new connection is refused with SQLSTATE 55000; or connections allowed again."""
    await _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"false" if refuse else "true"}')
    if refuse:
        await _admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )


@pytest.mark.postgres
async def test_a_database_refusing_connections_is_unavailable_and_usable_again_once_it_allows_them(
    postgres_url: str,
) -> None:
    """What the server answers while a connection opens is an unavailable database whatever
    its SQLSTATE (here 55000, "not currently accepting connections", which no class of
    SQLSTATEs marks as unavailable; found by the probe: it ended `pkgline serve`), for the
    lot store and the stores on plain SQLAlchemy alike."""
    await _migrated(postgres_url)
    name = _database(postgres_url)
    health = DatabaseHealth()
    async with _store(postgres_url, health=health) as (engine, lots):
        await lots.start(cmd.StartLot("L1", "stiffener-bga", "op"))
        flows, sessions = SqlFlowVersionStore(engine), SqlSessionStore(engine)
        await _refuse_connections(name, True)
        try:
            await engine.dispose()  # the pooled connections, ended: each call opens one
            async with asyncio.timeout(HANG_GUARD_S):
                with pytest.raises(DatabaseUnavailable, match="not currently accepting") as read:
                    await lots.find()
                with pytest.raises(DatabaseUnavailable, match="not currently accepting"):
                    await lots.start(cmd.StartLot("L2", "stiffener-bga", "op"))
                with pytest.raises(DatabaseUnavailable, match="not currently accepting"):
                    await flows.versions()
                with pytest.raises(DatabaseUnavailable, match="not currently accepting"):
                    await sessions.get("nope")
            assert not isinstance(read.value, DatabaseRetryable | DatabaseReadOnly)
            assert health.down is not None
        finally:
            await _refuse_connections(name, False)
        await lots.start(cmd.StartLot("L2", "stiffener-bga", "op"))
        assert [lot.id for lot in await lots.find()] == ["L1", "L2"]
        assert health.down is None


@pytest.mark.postgres
async def test_connection_settings_the_driver_refuses_are_a_configuration_error_not_an_outage(
    postgres_url: str,
) -> None:
    """asyncpg's own refusal of its settings, before it reaches any server (an unknown ssl
    mode), is no outage to wait out: a DatabaseUrlError, which the CLI and `pkgline serve`
    say as a configuration error (exit 2)."""
    async with _store(f"{postgres_url}?ssl=bogus") as (_, lots):
        with pytest.raises(DatabaseUrlError, match="connection settings are refused: `sslmode`"):
            await lots.find()


@pytest.fixture
def limited_role(postgres_url: str) -> Iterator[str]:
    """``postgres_url`` for a role of its own that may hold one connection (superusers are
    exempt from connection limits)."""
    role = f"pkgline_r_{uuid.uuid4().hex[:10]}"
    name = _database(postgres_url)
    asyncio.run(_admin(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 1'))
    try:
        yield make_url(postgres_url).set(username=role).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(f'DROP OWNED BY "{role}"', name))
        asyncio.run(_admin(f'DROP ROLE "{role}"'))


@pytest.mark.postgres
def test_too_many_connections_is_retryable_and_the_work_goes_through_once_one_is_free(
    postgres_url: str, limited_role: str
) -> None:
    name = _database(postgres_url)

    async def scenario() -> None:
        await _migrated(postgres_url)
        await _admin(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{_user(limited_role)}"', name)
        await _admin(
            f'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "{_user(limited_role)}"', name
        )
        async with _store(limited_role) as (engine, lots):
            await lots.start(cmd.StartLot("L1", "stiffener-bga", "op"))
            async with engine.connect() as held:  # the role's one connection
                await held.exec_driver_sql("SELECT 1")
                async with _store(limited_role) as (_, other):
                    with pytest.raises(DatabaseRetryable, match="too many connections"):
                        await other.find()
            await lots.start(cmd.StartLot("L2", "stiffener-bga", "op"))

    asyncio.run(scenario())


def _user(url: str) -> str:
    user = make_url(url).username
    assert user is not None
    return user


# -- SQLite: disk full --------------------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (needs root and a kernel that lets us mount; skipped otherwise)."""
    where = tmp_path / "small"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip() or 'not root'}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


async def test_sqlite_disk_full_is_database_unavailable_and_the_store_works_once_space_is_free(
    small_tmpfs: Path,
) -> None:
    url = f"sqlite:///{small_tmpfs / 'pkgline.db'}"
    await _migrated(url)
    ballast = small_tmpfs / "ballast"
    with ballast.open("wb", buffering=0) as fill, contextlib.suppress(OSError):
        while True:  # take every free block
            fill.write(b"\0" * 4096)
    health = DatabaseHealth()
    async with _store(url, health=health) as (_, lots):
        started = 0
        full: Exception | None = None
        while full is None and started < 1000:
            try:
                await lots.start(cmd.StartLot(f"L{started}", "stiffener-bga", "op"))
            except Exception as exc:  # "database or disk is full", or "disk I/O error"
                full = exc
            else:
                started += 1
        assert isinstance(full, DatabaseUnavailable), full
        assert not isinstance(full, (DatabaseRetryable, DatabaseReadOnly))
        assert health.down is not None
        ballast.unlink()  # (while the disk is full, SQLite cannot even open its -shm file)
        assert len(await lots.find()) == started  # what was committed is all there
        await lots.start(cmd.StartLot("AFTER", "stiffener-bga", "op"))
        assert health.down is None
        assert len(await lots.find()) == started + 1


async def test_reads_are_not_held_up_by_another_process_writing_to_the_sqlite_file(
    sqlite_url: str,
) -> None:
    """SQLite in WAL lets readers read while one writer holds the lock; pkgline's reads must
    not ask for it. The schema check every command and start makes first, the flow versions
    (read at every opening and in the controller's dispatch passes) and the whole of
    ``line status`` go through while another process holds the write lock longer than the
    busy timeout (found by a fault drill: `line status` waited 15 s for the lock, then failed
    with "database is locked, retry" while the line was stuck behind another writer)."""
    await _migrated(sqlite_url)
    engine = create_engine(sqlite_url, timeouts=SHORT)
    try:
        await seed_flow_versions(engine)
        holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # another process writing, for as long as it likes
            async with asyncio.timeout(HANG_GUARD_S):
                await require_current_schema(engine)
                assert await SqlFlowVersionStore(engine).versions()
                services = services_for(engine, direct_principal(sqlite_url))
                await load_versions(services)
                status = await read_status(services, datetime.now(UTC))
            assert status.tools == () and status.held == ()
        finally:
            holder.execute("ROLLBACK")
            holder.close()
    finally:
        await engine.dispose()


async def test_users_and_the_security_log_are_read_while_another_process_writes_sqlite(
    sqlite_url: str,
) -> None:
    """``user list``, ``user show`` and the security log are reads too: through the server
    they went on waiting for the write lock, then failed ("database is locked, retry") while
    another process held it (the same fault drill as above)."""
    await _migrated(sqlite_url)
    engine = create_engine(sqlite_url, timeouts=SHORT)
    owner = Principal.file_owner("root-owner")
    try:
        hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
        identity = IdentityService(SqlIdentityStore(engine), Argon2Passwords(hasher))
        await identity.add_user(owner, "alice", "Alice", {Role.OPERATOR}, password="a long one")
        holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # another process writing, for as long as it likes
            async with asyncio.timeout(HANG_GUARD_S):
                assert "alice" in [u.username for u in await identity.users(owner)]
                assert (await identity.user(owner, "alice")).full_name == "Alice"
                assert [e.kind for e in await identity.events(owner)] == [EventKind.USER_ADDED]
        finally:
            holder.execute("ROLLBACK")
            holder.close()
    finally:
        await engine.dispose()
