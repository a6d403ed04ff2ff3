"""bench/cli.py: its scratch PostgreSQL database is the run's own, so that two sessions
benching at once do not drop each other's (its name was fixed, dropped WITH (FORCE))."""

from __future__ import annotations

import asyncpg
import pytest

from tests.bench.conftest import bench_module

cli = bench_module("cli")


async def _exists(admin: str, name: str) -> bool:
    conn = await asyncpg.connect(admin)
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await conn.close()


@pytest.mark.postgres
async def test_two_runs_at_once_each_have_a_scratch_database_dropped_at_their_end(
    postgres_url: str,
) -> None:
    async with cli.scratch_postgres(postgres_url) as first:
        async with cli.scratch_postgres(postgres_url) as second:
            assert first is not None and second is not None
            names = [url.rsplit("/", 1)[1] for url in (first, second)]
            assert names[0] != names[1]
            assert all(n.startswith(f"{cli.SCRATCH_PG}_") for n in names), names
            assert all([await _exists(postgres_url, n) for n in names])
        # the second run ended: its database is gone, the first's still there
        assert not await _exists(postgres_url, names[1])
        assert await _exists(postgres_url, names[0])
        conn = await asyncpg.connect(first)  # and usable
        await conn.close()
    assert not await _exists(postgres_url, names[0])


async def test_no_postgresql_is_no_scratch_database_and_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    closed = "postgresql://postgres@127.0.0.1:1/test"  # nothing listens on port 1
    async with cli.scratch_postgres(closed) as url:
        assert url is None
    assert "not reachable" in capsys.readouterr().out
