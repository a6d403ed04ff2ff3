"""The server keeps the principal of a local OS account for a second (pkgline.api.auth): a
change of its roles made through this server counts at once, and one made elsewhere (another
process on the same database) within the second."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mes.adapters.database import create_engine
from mes.adapters.passwords import Argon2Passwords
from mes.adapters.sql_identity import SqlIdentityStore
from mes.domain.authority import Role
from mes.identity import IdentityService
from pkgline.api.auth import PRINCIPAL_TTL_S
from tests.api.conftest import ACCOUNT, ADMIN, RunningApi


async def test_a_role_given_through_the_server_counts_at_the_next_request(
    api: RunningApi,
) -> None:
    async with api.client() as client:
        assert (await client.get("/security/events")).status_code == 403  # an operator
        await api.roles(Role.ADMIN)
        assert (await client.get("/security/events")).status_code == 200
        await api.roles(Role.OPERATOR)
        assert (await client.get("/security/events")).status_code == 403


async def test_an_account_disabled_by_another_process_is_refused_within_the_ttl(
    api: RunningApi, tmp_path: Path
) -> None:
    engine = create_engine(api.db)
    elsewhere = IdentityService(SqlIdentityStore(engine), Argon2Passwords())
    try:
        async with api.client() as client:
            assert (await client.get("/lots")).status_code == 200  # kept from here on
            await elsewhere.set_disabled(ADMIN, ACCOUNT, True, "left the company")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + PRINCIPAL_TTL_S + 5.0  # the TTL, and a loaded machine
            while (answer := await client.get("/lots")).status_code == 200:
                assert loop.time() < deadline, "still served after the TTL"
                await asyncio.sleep(0.05)
            assert answer.status_code == 401
            assert "disabled" in answer.text or "not a pkgline user" in answer.text
    finally:
        await engine.dispose()
