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


def run_admin(sql: str) -> None:
    from tests.conftest import _admin

    _admin(sql)
