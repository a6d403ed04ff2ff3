"""The operator CLI against a database that does not answer: it says so within its connect
timeout (seconds, not asyncpg's default minute), with exit code 4 and no traceback."""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest

from tests.cli.test_lot_cli import pkgline
from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.postgres


async def test_a_database_behind_a_silent_network_is_reported_unreachable_within_seconds() -> None:
    async with FaultProxy("127.0.0.1", 5432, mode="silent") as proxy:
        url = f"postgresql://postgres@127.0.0.1:{proxy.port}/test"
        try:
            # pkgline() gives up after 60 s, asyncpg's own connect timeout: the CLI's is 5 s.
            result = await asyncio.to_thread(pkgline, url, "lot", "list", "--json")
        except subprocess.TimeoutExpired:
            pytest.fail("the CLI was still waiting for the database after 60 s")
    assert result.returncode == 4, result.stdout + result.stderr
    answer = json.loads(result.stdout)
    assert answer["error"] == "database"
    assert "did not answer in time" in answer["message"]
    assert "Traceback" not in result.stderr


async def test_a_read_only_database_refuses_a_change_with_exit_4_and_says_read_only(
    postgres_url: str,
) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return pkgline(postgres_url, *args)

    assert (await asyncio.to_thread(run, "db", "upgrade")).returncode == 0
    name = postgres_url.rsplit("/", 1)[1]
    await asyncio.to_thread(
        run_admin, f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'
    )
    result = await asyncio.to_thread(run, "lot", "start", "L1", "--flow", "stiffener-bga", "--json")
    assert result.returncode == 4, result.stdout + result.stderr
    assert "read-only" in json.loads(result.stdout)["message"]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "command", [("line", "status"), ("events", "status"), ("lot", "show", "L1")], ids=" ".join
)
async def test_a_database_refusing_connections_is_said_cleanly_with_exit_4(
    postgres_url: str, command: tuple[str, ...]
) -> None:
    """``ALTER DATABASE ... ALLOW_CONNECTIONS false``: the server refuses each connection
    with SQLSTATE 55000, which the CLI printed as a traceback with exit 1 (found by the
    probe); it is the database being unavailable, said as a refused port is."""
    assert (await asyncio.to_thread(pkgline, postgres_url, "db", "upgrade")).returncode == 0
    name = postgres_url.rsplit("/", 1)[1]
    await asyncio.to_thread(run_admin, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    try:
        plain = await asyncio.to_thread(pkgline, postgres_url, *command)
        as_json = await asyncio.to_thread(pkgline, postgres_url, *command, "--json")
    finally:
        await asyncio.to_thread(run_admin, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    assert plain.returncode == 4, plain.stdout + plain.stderr
    assert "Traceback" not in plain.stderr
    assert f"cannot use the database {postgres_url}: " in plain.stderr
    assert "not currently accepting connections" in plain.stderr
    assert as_json.returncode == 4, as_json.stdout + as_json.stderr
    answer = json.loads(as_json.stdout)
    assert answer["error"] == "database"
    assert "not currently accepting connections" in answer["message"]


def run_admin(sql: str) -> None:
    from tests.conftest import _admin

    _admin(sql)
