"""deploy/postgresql-roles.sql against the local PostgreSQL, in a scratch database: after it,
the server's role owns every table and writes lots, the reports role reads and cannot write,
and another role (even one granted UPDATE before, and CONNECT by a DBA after) cannot INSERT
or UPDATE lots. Skipped, with the reason, without PostgreSQL or psql (failed on CI)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import make_url

from tests.conftest import REQUIRE_POSTGRES, _admin

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "postgresql-roles.sql"


def _as(url: str, role: str) -> str:
    return make_url(url).set(username=role).render_as_string(hide_password=False)


def _psql(url: str, server_role: str, reports_role: str) -> None:
    result = subprocess.run(
        ["psql", "-X", "-q", "-v", f"server_role={server_role}", "-v",
         f"reports_role={reports_role}", "-f", str(SCRIPT), "-d", url],
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


def _run(url: str, sql: str) -> object:
    return asyncio.run(_execute(url, sql))


@pytest.fixture
def roles(postgres_url: str) -> Iterator[tuple[str, str, str]]:
    if shutil.which("psql") is None:
        reason = "psql is not installed (Debian: apt-get install postgresql-client)"
        if REQUIRE_POSTGRES:
            pytest.fail(reason)
        pytest.skip(reason)
    tag = uuid.uuid4().hex[:8]
    names = (f"pkgline_srv_{tag}", f"pkgline_rep_{tag}", f"pkgline_other_{tag}")
    _admin(f'CREATE ROLE "{names[2]}" LOGIN')
    try:
        yield names
    finally:
        admin_db = make_url(postgres_url).render_as_string(hide_password=False)
        for name in names:  # one at a time: together, PostgreSQL trips on the default ACL
            _run(admin_db, f'DROP OWNED BY "{name}" CASCADE')
        _admin(f'DROP DATABASE IF EXISTS "{make_url(postgres_url).database}" WITH (FORCE)')
        for name in names:
            _admin(f'DROP ROLE IF EXISTS "{name}"')


def _pkgline(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PKGLINE_DB": url}
    env.pop("PKGLINE_SERVER", None)
    return subprocess.run(
        [sys.executable, "-m", "pkgline", *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_only_the_servers_role_writes_lots(postgres_url: str, roles: tuple[str, str, str]) -> None:
    server, reports, other = roles
    # The schema made by the superuser, as an installation that upgraded before this script.
    assert _pkgline(postgres_url, "db", "upgrade").returncode == 0
    _run(postgres_url, f'GRANT INSERT, UPDATE ON lots TO "{other}"')
    _psql(postgres_url, server, reports)
    _psql(postgres_url, server, reports)  # idempotent

    owners = _run(
        postgres_url,
        "SELECT string_agg(DISTINCT tableowner, ',') FROM pg_tables WHERE schemaname='public'",
    )
    assert owners == server
    started = _pkgline(_as(postgres_url, server), "lot", "start", "L1", "--flow", "fc-heatsink-muf")
    assert started.returncode == 0, started.stderr
    upgraded = _pkgline(_as(postgres_url, server), "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr

    # Nobody else may even connect; a DBA may let them connect and use the schema: still, the
    # grant given before the script is gone, and they can neither write nor read lots.
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        _run(_as(postgres_url, other), "SELECT 1")
    database = make_url(postgres_url).database
    _run(postgres_url, f'GRANT CONNECT ON DATABASE "{database}" TO "{other}"')
    with pytest.raises(asyncpg.InsufficientPrivilegeError):  # no usage of the schema
        _run(_as(postgres_url, other), "INSERT INTO public.lots (id) VALUES ('X')")
    _run(postgres_url, f'GRANT USAGE ON SCHEMA public TO "{other}"')
    for role in (other, reports):
        for sql in (
            "INSERT INTO public.lots (id) VALUES ('X')",
            "UPDATE public.lots SET version = version + 1",
            "DELETE FROM public.lots",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                _run(_as(postgres_url, role), sql)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        _run(_as(postgres_url, other), "SELECT count(*) FROM public.lots")
    assert _run(_as(postgres_url, reports), "SELECT count(*) FROM public.lots") == 1
