"""The event feed inside ``pkgline serve``: built from ``line.toml`` and run beside the
controller (started before it, stopped after it, so that its last moves are published), on a
thread and event loop of its own (pkgline.events.thread says why)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog

from mes.adapters.database import DEFAULT_TIMEOUTS, DatabaseTimeouts, create_engine
from mes.adapters.outbox import OutboxSignal, OutboxStore
from mes.domain.equipment import ToolRecord
from mes.equipment import EquipmentService
from pkgline.config import LineConfig
from pkgline.events.relay import STOP_DRAIN_S, Relay
from pkgline.events.thread import RelayThread, on_loop

log = structlog.get_logger("pkgline.events")

STOP_S = STOP_DRAIN_S + 10.0
"""On stop: the relay's last drain and goodbye, or a connection attempt, then it is left to
end with the process."""
RELAY_CONNECTIONS = 2
"""The relay's engine: its reads and leadership, and its marks."""


def event_relay(
    line: LineConfig,
    url: str,
    equipment: EquipmentService,
    committed: OutboxSignal | None = None,
    *,
    timeouts: DatabaseTimeouts = DEFAULT_TIMEOUTS,
) -> RelayThread | None:
    """The relay of ``line``'s ``[events]`` on the database ``url`` (an engine of its own),
    or None (logged) when there is none; ``committed``: the signal of the units of work of
    this process (the relay publishes their moves at once). Call it on the controller's
    event loop: the tools' records are read there, through ``equipment``."""
    if line.events is None:
        log.info("event feed off: no [events] in the line configuration; events wait in the outbox")
        return None

    async def own_tools() -> list[ToolRecord]:
        return await equipment.tools(line.name)

    engine = create_engine(url, pool_size=RELAY_CONNECTIONS, timeouts=timeouts)
    relay = Relay(
        line.events,
        OutboxStore(engine),
        controller=line.name,
        tools=on_loop(own_tools, asyncio.get_running_loop()),
        committed=committed,
    )
    return RelayThread(relay, engine)


@contextlib.asynccontextmanager
async def running_relay(relay: RelayThread | None) -> AsyncIterator[None]:
    """Run ``relay`` (if any) while the block runs; then let it publish what is left."""
    if relay is None:
        yield
        return
    relay.start()
    try:
        yield
    finally:
        if not await relay.stop(STOP_S):
            log.warning("event relay did not stop in time; events left wait in the outbox")
