"""deploy/postgresql-roles.sql against the local PostgreSQL, in a scratch database, in the
order deploy/install.sh runs it (the script, ``pkgline db upgrade --as-role OWNER`` logged in
as the superuser, the script again):

- the owner role owns the database, the schema and every table, sequence and function, and
  ``db upgrade`` takes an empty database to the head as it; the server's role cannot;
- the server's role runs the line (the schema check at start, lots started, moved, held and
  released with a signature, the security log, audit verify, the event relay's lock, LISTEN
  and outbox, a temporary table) and cannot undo the history: no UPDATE, DELETE or TRUNCATE
  of an append-only table, no DROP TRIGGER or ALTER TABLE, no table or schema of its own, no
  SET ROLE to the owner, no rewriting of the chains' heads or of the schema's revision;
- the reports role reads and cannot write; another role (even one granted UPDATE before, and
  CONNECT by a DBA after) cannot read or write lots;
- an installation whose tables the server's role owned (before this version) is handed over;
- a later migration's table gets the working grants at once, and a run of the script after
  it narrows an append-only one.

Skipped, with the reason, without PostgreSQL or psql (failed on CI)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from argon2 import PasswordHasher
from sqlalchemy import make_url

from flows import FlowLibrary
from mes.adapters.audit import verify_history
from mes.adapters.database import create_engine
from mes.adapters.outbox import OutboxStore
from mes.adapters.passwords import Argon2Passwords
from mes.adapters.schema import require_current_schema
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.adapters.sql_identity import SqlIdentityStore, SqlSecurityLog
from mes.domain import commands as cmd
from mes.domain.authority import AuthMethod, NotAuthorized, Principal, Role
from mes.domain.identity import EventKind, LoginRefused
from mes.domain.model import LotState
from mes.domain.signatures import SignatureGiven
from mes.identity import IdentityService
from mes.service import LotService, utc_now
from pkgline.bootstrap import flow_library
from tests.conftest import REQUIRE_POSTGRES, _admin
from tests.mes.conftest import Clock
from tests.mes.test_service import _run as _move
from tests.mes.test_service import _start

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "postgresql-roles.sql"

APPEND_ONLY = ("lot_history", "signatures", "security_events", "flow_approvals")
"""Every table with a ``*_append_only`` trigger (revisions 0004, 0005, 0011, 0022)."""


@dataclass(frozen=True)
class Roles:
    owner: str
    server: str
    reports: str
    other: str


def _as(url: str, role: str) -> str:
    return make_url(url).set(username=role).render_as_string(hide_password=False)


def _psql(url: str, roles: Roles) -> None:
    result = subprocess.run(
        ["psql", "-X", "-q", "-v", f"owner_role={roles.owner}", "-v",
         f"server_role={roles.server}", "-v", f"reports_role={roles.reports}",
         "-f", str(SCRIPT), "-d", url],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr and "ERROR" not in result.stderr, result.stderr


async def _execute(url: str, sql: str) -> object:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def _execute_many(url: str, sql: str) -> object:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        return await conn.execute(sql)
    finally:
        await conn.close()


def _run(url: str, sql: str, *, many: bool = False) -> object:
    """``sql``'s value; ``many``: statements separated by ``;``, in one session."""
    # On a worker thread, as tests.conftest._admin: an async test's event loop may be running.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, (_execute_many if many else _execute)(url, sql)).result()


async def _refused(url: str, *statements: str) -> None:
    """Each of ``statements``, run alone on one connection, is refused for want of privilege."""
    conn = await asyncpg.connect(url, timeout=5)
    try:
        for sql in statements:
            try:
                await conn.execute(sql)
            except asyncpg.InsufficientPrivilegeError:
                continue
            pytest.fail(f"allowed: {sql}")
    finally:
        await conn.close()


@pytest.fixture
def roles(postgres_url: str) -> Iterator[Roles]:
    if shutil.which("psql") is None:
        reason = "psql is not installed (Debian: apt-get install postgresql-client)"
        if REQUIRE_POSTGRES:
            pytest.fail(reason)
        pytest.skip(reason)
    tag = uuid.uuid4().hex[:8]
    names = Roles(
        f"pkgline_own_{tag}", f"pkgline_srv_{tag}", f"pkgline_rep_{tag}", f"pkgline_other_{tag}"
    )
    _admin(f'CREATE ROLE "{names.other}" LOGIN')
    try:
        yield names
    finally:
        admin_db = make_url(postgres_url).render_as_string(hide_password=False)
        created = [r for r in vars(names).values() if _run(admin_db, _exists(r))]
        for name in created:  # one at a time: together, PostgreSQL trips on the default ACL
            _run(admin_db, f'DROP OWNED BY "{name}" CASCADE')
        _admin(f'DROP DATABASE IF EXISTS "{make_url(postgres_url).database}" WITH (FORCE)')
        for name in created:
            _admin(f'DROP ROLE IF EXISTS "{name}"')


def _exists(role: str) -> str:
    return f"SELECT count(*) > 0 FROM pg_roles WHERE rolname = '{role}'"


def _pkgline(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PKGLINE_DB": url}
    env.pop("PKGLINE_SERVER", None)
    return subprocess.run(
        [sys.executable, "-m", "pkgline", *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def _install(url: str, roles: Roles) -> None:
    """What deploy/install.sh does on a PostgreSQL of its host (as the superuser)."""
    _psql(url, roles)
    upgraded = _pkgline(url, "db", "upgrade", "--as-role", roles.owner)
    assert upgraded.returncode == 0, upgraded.stderr
    _psql(url, roles)


OWNERS = """
SELECT string_agg(DISTINCT owner, ',') FROM (
    SELECT pg_get_userbyid(c.relowner) AS owner
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'
    UNION ALL
    SELECT pg_get_userbyid(p.proowner)
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'
    UNION ALL
    SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'public'
    UNION ALL
    SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()
) o
"""


def test_the_owner_makes_the_schema_and_the_servers_role_cannot(
    postgres_url: str, roles: Roles
) -> None:
    _psql(postgres_url, roles)
    refused = _pkgline(_as(postgres_url, roles.server), "db", "upgrade")
    assert refused.returncode != 0
    assert "permission denied for schema public" in refused.stderr
    assert _run(postgres_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0

    upgraded = _pkgline(postgres_url, "db", "upgrade", "--as-role", roles.owner, "--json")
    assert upgraded.returncode == 0, upgraded.stderr
    assert '"up_to_date": true' in upgraded.stdout
    _psql(postgres_url, roles)
    _psql(postgres_url, roles)  # idempotent
    assert _run(postgres_url, OWNERS) == roles.owner
    assert not _run(
        postgres_url, f"SELECT rolcanlogin FROM pg_roles WHERE rolname = '{roles.owner}'"
    )

    # The server's role at its start: the schema's revision, read from alembic_version.
    status = _pkgline(_as(postgres_url, roles.server), "db", "status", "--json")
    assert status.returncode == 0, status.stderr
    assert '"up_to_date": true' in status.stdout
    again = _pkgline(_as(postgres_url, roles.server), "db", "upgrade", "--as-role", roles.owner)
    assert again.returncode != 0  # not a member of the owner role
    assert "permission denied to set role" in again.stderr


@pytest.fixture
def library() -> FlowLibrary:
    return flow_library()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def installed(postgres_url: str, roles: Roles) -> Roles:
    await asyncio.to_thread(_install, postgres_url, roles)
    return roles


async def test_the_servers_role_runs_the_line_and_cannot_undo_the_history(
    postgres_url: str, installed: Roles, library: FlowLibrary, clock: Clock
) -> None:
    server_url = _as(postgres_url, installed.server)
    engine = create_engine(server_url)
    try:
        await require_current_schema(engine)
        hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
        identity = IdentityService(SqlIdentityStore(engine), Argon2Passwords(hasher), clock)
        admin = Principal.file_owner("root-owner")
        await identity.add_user(
            admin, "op1", "Olive Operator", [Role.OPERATOR], password="set by the admin 1"
        )
        await identity.change_own_password("op1", "set by the admin 1", "chosen by myself 1")
        with pytest.raises(LoginRefused):
            await identity.login("op1", "wrong")
        op1 = Principal("op1", frozenset({Role.OPERATOR}), AuthMethod.SESSION)
        lots = LotService(
            SqlUnitOfWorkFactory(engine),
            library,
            clock,
            principal=op1,
            security=SqlSecurityLog(engine),
            verifier=identity,
        )
        await _start(lots, "L1", "stiffener-bga")
        await _move(lots, "L1", ["SUBSTRATE_LOAD"])
        held = await lots.hold(cmd.HoldLot("L1", "op1", "looks wrong"))
        signature = SignatureGiven(
            "op1", "checked", password="chosen by myself 1", lot_version=held.lot.version
        )
        released = await lots.release(cmd.ReleaseLot("L1", "op1"), signatures=(signature,))
        assert released.lot.state is LotState.WAITING
        with pytest.raises(NotAuthorized):  # recorded in the security log
            await lots.scrap(cmd.ScrapLot("L1", "op1", "no"))
        kinds = {e.kind for e in await identity.events(admin)}
        assert {EventKind.LOGIN_FAILED, EventKind.REFUSED} <= kinds
        verified = await verify_history(engine)
        assert verified.ok, verified.problem
        entries = verified.entries
        assert verified.signatures == 1 and verified.security_events >= 4

        # The event relay: its lock, LISTEN, the outbox read, marked, the finished lots whose
        # states it clears (none: L1 is in progress) and pruned.
        async with OutboxStore(engine).session() as relay:
            assert await relay.try_lead()
            await relay.listen(lambda: None)
            events = await relay.pending(100)
            assert events
            await relay.mark_published([e.id for e in events], utc_now() - timedelta(days=30))
            assert (await relay.finished(utc_now() - timedelta(days=7), 10)).lots == []
            assert await relay.prune(utc_now() - timedelta(days=7)) >= 1
            assert set(await relay.audit_heads()) == {"lots", "security"}
    finally:
        await engine.dispose()

    conn = await asyncpg.connect(server_url, timeout=5)
    try:
        await conn.execute("CREATE TEMPORARY TABLE scratch (x int); INSERT INTO scratch VALUES (1)")
        await conn.execute("SELECT pg_notify('pkgline_outbox', '')")
    finally:
        await conn.close()

    undo = [
        statement.format(table=table)
        for table in APPEND_ONLY
        for statement in (
            "UPDATE {table} SET seq = seq",
            "DELETE FROM {table}",
            "TRUNCATE {table}",
            "DROP TRIGGER {table}_append_only ON {table}",
            "ALTER TABLE {table} DISABLE TRIGGER {table}_append_only",
            "ALTER TABLE {table} OWNER TO CURRENT_USER",
            "DROP TABLE {table}",
            "CREATE TRIGGER t BEFORE INSERT ON {table} FOR EACH ROW "
            "EXECUTE FUNCTION pkgline_append_only()",
        )
    ]
    await _refused(
        server_url,
        *undo,
        "DROP FUNCTION pkgline_append_only() CASCADE",
        "CREATE OR REPLACE FUNCTION pkgline_append_only() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
        "DELETE FROM audit_heads",
        "TRUNCATE audit_heads",
        "UPDATE alembic_version SET version_num = version_num",
        "TRUNCATE lots",
        "ALTER TABLE lots DISABLE TRIGGER ALL",
        "CREATE TABLE public.mine (x int)",
        "CREATE SCHEMA mine",
        f'SET ROLE "{installed.owner}"',
    )
    reports_url = _as(postgres_url, installed.reports)
    assert await _execute(reports_url, "SELECT count(*) FROM lot_history") == entries
    await _refused(
        reports_url,
        "INSERT INTO lots (id) VALUES ('X')",
        "UPDATE lots SET version = version + 1",
        "DELETE FROM lots",
        "DELETE FROM outbox",
        "UPDATE audit_heads SET head = head",
        "CREATE TEMPORARY TABLE scratch (x int)",
    )


def test_an_installation_whose_tables_the_servers_role_owned_is_handed_to_the_owner(
    postgres_url: str, roles: Roles
) -> None:
    # As deployed before: the server's role owned the database and the schema, made the
    # tables itself (`pkgline db upgrade`), and the reports role read by its default grant.
    database = make_url(postgres_url).database
    for role in (roles.server, roles.reports):
        _admin(f'CREATE ROLE "{role}" LOGIN')
    _run(postgres_url, f'ALTER DATABASE "{database}" OWNER TO "{roles.server}"')
    _run(postgres_url, f'ALTER SCHEMA public OWNER TO "{roles.server}"')
    _run(
        postgres_url,
        f'ALTER DEFAULT PRIVILEGES FOR ROLE "{roles.server}" IN SCHEMA public '
        f'GRANT SELECT ON TABLES TO "{roles.reports}"',
    )
    made = _pkgline(_as(postgres_url, roles.server), "db", "upgrade")
    assert made.returncode == 0, made.stderr
    assert _run(postgres_url, OWNERS) == roles.server
    _run(postgres_url, f'GRANT INSERT, UPDATE ON lots TO "{roles.other}"')

    _psql(postgres_url, roles)
    _psql(postgres_url, roles)  # idempotent

    assert _run(postgres_url, OWNERS) == roles.owner
    server_url = _as(postgres_url, roles.server)
    started = _pkgline(server_url, "lot", "start", "L1", "--flow", "fc-heatsink-muf")
    assert started.returncode == 0, started.stderr
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        _run(server_url, "DROP TRIGGER lot_history_append_only ON lot_history")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        _run(server_url, "CREATE TABLE public.mine (x int)")
    default_acl = _run(
        postgres_url,
        "SELECT count(*) FROM pg_default_acl "
        f"WHERE defaclrole = (SELECT oid FROM pg_roles WHERE rolname = '{roles.server}')",
    )
    assert default_acl == 0  # the server creates nothing now

    # Nobody else may even connect; a DBA may let them connect and use the schema: still, the
    # grant given before the script is gone, and they can neither write nor read lots.
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        _run(_as(postgres_url, roles.other), "SELECT 1")
    _run(postgres_url, f'GRANT CONNECT ON DATABASE "{database}" TO "{roles.other}"')
    with pytest.raises(asyncpg.InsufficientPrivilegeError):  # no usage of the schema
        _run(_as(postgres_url, roles.other), "INSERT INTO public.lots (id) VALUES ('X')")
    _run(postgres_url, f'GRANT USAGE ON SCHEMA public TO "{roles.other}"')
    for role in (roles.other, roles.reports):
        for sql in (
            "INSERT INTO public.lots (id) VALUES ('X')",
            "UPDATE public.lots SET version = version + 1",
            "DELETE FROM public.lots",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                _run(_as(postgres_url, role), sql)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        _run(_as(postgres_url, roles.other), "SELECT count(*) FROM public.lots")
    assert _run(_as(postgres_url, roles.reports), "SELECT count(*) FROM public.lots") == 1


def test_a_later_migrations_tables_get_their_grants(postgres_url: str, roles: Roles) -> None:
    _install(postgres_url, roles)
    # A later revision, run as the owner: a working table and an append-only one.
    later = (
        f'SET ROLE "{roles.owner}"; '
        "CREATE TABLE later_work (x int); CREATE TABLE later_log (x int); "
        "CREATE TRIGGER later_log_append_only BEFORE UPDATE OR DELETE ON later_log "
        "FOR EACH ROW EXECUTE FUNCTION pkgline_append_only()"
    )
    _run(postgres_url, later, many=True)
    server_url = _as(postgres_url, roles.server)
    for table in ("later_work", "later_log"):  # at once, before the script runs again
        _run(server_url, f"INSERT INTO {table} VALUES (1)")
        assert _run(_as(postgres_url, roles.reports), f"SELECT count(*) FROM {table}") == 1
    _run(server_url, "UPDATE later_work SET x = 2")

    _psql(postgres_url, roles)
    _run(server_url, "INSERT INTO later_log VALUES (2)")
    _run(server_url, "UPDATE later_work SET x = 3")
    _run(server_url, "DELETE FROM later_work")
    for sql in ("UPDATE later_log SET x = 3", "DELETE FROM later_log", "TRUNCATE later_log"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            _run(server_url, sql)


def test_as_role_is_for_postgresql_only(sqlite_url: str) -> None:
    refused = _pkgline(sqlite_url, "db", "upgrade", "--as-role", "pkgline_owner")
    assert refused.returncode == 2, refused.stderr
    assert "for PostgreSQL only" in refused.stderr
    assert not Path(make_url(sqlite_url).database or "").exists()
