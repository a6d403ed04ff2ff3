"""The event feed inside ``pkgline serve``: built from ``line.toml`` and run beside the
controller (started before it, stopped after it, so that its last moves are published)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from mes.adapters.outbox import OutboxSignal, OutboxStore
from mes.domain.equipment import ToolRecord
from mes.equipment import EquipmentService
from pkgline.config import LineConfig
from pkgline.events.relay import STOP_DRAIN_S, Relay

log = structlog.get_logger("pkgline.events")

STOP_S = STOP_DRAIN_S + 10.0
"""On stop: the relay's last drain and goodbye, or a connection attempt, then it is cancelled."""


def event_relay(
    line: LineConfig,
    engine: AsyncEngine,
    equipment: EquipmentService,
    committed: OutboxSignal | None = None,
) -> Relay | None:
    """The relay of ``line``'s ``[events]``, or None (logged) when there is none;
    ``committed``: the signal of the units of work of this process (the relay publishes
    their moves at once)."""
    if line.events is None:
        log.info("event feed off: no [events] in the line configuration; events wait in the outbox")
        return None

    async def own_tools() -> list[ToolRecord]:
        return await equipment.tools(line.name)

    return Relay(
        line.events,
        OutboxStore(engine),
        controller=line.name,
        tools=own_tools,
        committed=committed,
    )


@contextlib.asynccontextmanager
async def running_relay(relay: Relay | None) -> AsyncIterator[None]:
    """Run ``relay`` (if any) while the block runs; then let it publish what is left."""
    if relay is None:
        yield
        return
    task = asyncio.create_task(relay.run(), name="event-relay")
    try:
        yield
    finally:
        relay.request_stop()
        try:
            await asyncio.wait_for(task, STOP_S)
        except TimeoutError:
            log.warning("event relay did not stop in time; events left wait in the outbox")
        except Exception:
            log.exception("event relay failed")
