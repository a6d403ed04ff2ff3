"""Tool states written to equipment tracking off the runners' way.

A runner notices a tool's new state while it waits for a job to complete; writing it to the
database there would delay the runner and queue behind every other writer. So runners submit
what they observe, stamped with the time they observed it, and one task writes the queue in
order, all that is pending in one transaction. E10 times are the observed times, not the
write times.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import structlog

from mes.adapters.driver import DatabaseUnavailable
from mes.domain.equipment import ToolSnapshot
from mes.domain.errors import LotTrackerError
from mes.equipment import EquipmentService

log = structlog.get_logger("pkgline.controller")

RETRY_S = 1.0


class EquipmentReporter:
    def __init__(self, equipment: EquipmentService):
        self._equipment = equipment
        self._pending: list[tuple[str, ToolSnapshot, datetime]] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._failing = False

    def submit(self, tool_id: str, snapshot: ToolSnapshot, at: datetime) -> None:
        """Queue an observation (never blocks)."""
        self._pending.append((tool_id, snapshot, at))
        self._idle.clear()
        self._wake.set()

    async def flush(self) -> None:
        """Wait until everything submitted so far is written."""
        await self._idle.wait()

    async def run(self) -> None:
        """Write what is submitted until cancelled. A database that does not answer is tried
        again; nothing submitted is dropped but a report about a tool the database does not
        know."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self._equipment.report_many(batch)
                except DatabaseUnavailable as exc:
                    if not self._failing:
                        log.warning("cannot record tool states yet", error=str(exc))
                    self._failing = True
                    self._pending = batch + self._pending
                    await asyncio.sleep(RETRY_S)
                    continue
                except LotTrackerError as exc:
                    log.warning("tool states not recorded", error=exc.message)
                if self._failing:
                    log.info("recording tool states again")
                    self._failing = False
            self._idle.set()
