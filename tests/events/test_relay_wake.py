"""The relay is woken by commits, not only by its poll: a move committed by a unit of work of
its own process (SQLite and PostgreSQL) or, on PostgreSQL, by any other writer (a trigger
NOTIFYs at COMMIT, the relay LISTENs) is published although the relay's poll is five minutes
away; the relay gives its connection back to the pool without the LISTEN."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from mes.adapters.database import create_engine
from mes.adapters.outbox import OUTBOX_CHANNEL, OutboxSignal, OutboxStore
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.service import LotService
from pkgline.bootstrap import flow_library
from pkgline.events.config import EventsConfig
from pkgline.events.relay import Relay
from tests.controller.conftest import FLOWS, Stack, start_lots, wait_until
from tests.events.conftest import events_config
from tests.events.test_relay_logic import MemoryPublisher

NEVER_S = 300.0
"""The relay's poll in these tests: longer than any test waits, so only a wake publishes."""


def _never_polling() -> EventsConfig:
    """(Past the configuration's limit of 5 s: a model copy is not validated.)"""
    return events_config(1).model_copy(update={"poll_interval_s": NEVER_S})


@contextlib.asynccontextmanager
async def idle_relay(relay: Relay, publisher: MemoryPublisher) -> AsyncIterator[None]:
    """``relay`` publishing to ``publisher``, past its first (empty) read: from now on it
    waits for a wake (or its poll)."""
    session = asyncio.create_task(relay.publish_to(publisher))
    try:
        await wait_until(lambda: relay.status.backlog is not None, timeout_s=20, what="idle")
        yield
    finally:
        relay.request_stop()
        await asyncio.wait_for(session, 30)


async def test_a_move_committed_in_this_process_is_published_without_waiting_for_the_poll(
    stack: Stack,
) -> None:
    engine = create_engine(stack.url)
    committed = OutboxSignal()
    lots = LotService(SqlUnitOfWorkFactory(engine, outbox=committed), flow_library())
    relay = Relay(
        _never_polling(),
        OutboxStore(engine),
        controller="wake",
        committed=committed,
    )
    publisher = MemoryPublisher()
    try:
        async with idle_relay(relay, publisher):
            await start_lots(lots, FLOWS[:3])
            await wait_until(
                lambda: len(publisher.event_ids()) == 3, timeout_s=20, what="woken by the commits"
            )
        assert publisher.event_ids() == sorted(publisher.event_ids())
    finally:
        await engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("database", ["migrated_postgres_url"], indirect=True)
async def test_on_postgresql_a_move_committed_by_another_writer_wakes_the_relay_by_notify(
    stack: Stack,
) -> None:
    """``stack.lots`` has a pool and a signal of its own: the relay hears of it only through
    PostgreSQL, as of a CLI or another controller."""
    engine = create_engine(stack.url, pool_size=2)
    relay = Relay(_never_polling(), OutboxStore(engine), controller="notify")
    publisher = MemoryPublisher()
    try:
        async with idle_relay(relay, publisher):
            await start_lots(stack.lots, FLOWS[:2])
            await wait_until(
                lambda: len(publisher.event_ids()) == 2, timeout_s=20, what="woken by NOTIFY"
            )
        # The connections went back to the pool without listening.
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            listening = await raw.driver_connection.fetchval(  # type: ignore[union-attr]
                "SELECT count(*) FROM pg_listening_channels() AS c WHERE c = $1", OUTBOX_CHANNEL
            )
        assert listening == 0
    finally:
        await engine.dispose()
