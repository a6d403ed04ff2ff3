"""Tool states written to equipment tracking off the runners' way.

A runner notices a tool's new state while it waits for a job to complete; writing it to the
database there would delay the runner and queue behind every other writer. So runners submit
what they observe, stamped with the time they observed it, and one task writes the queue in
order, all that is pending in one transaction. E10 times are the observed times, not the
write times.

The task gathers for ``BATCH_S`` after the first observation before it writes: a line's tools
change state many times a second (each job goes through several states), and a transaction
per change would take the database's write turn (SQLite has one) as often as the lot moves
that wait for it. What the operator's views show is then at most ``BATCH_S`` late; a
:meth:`EquipmentReporter.flush` writes at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime

import structlog

from mes.adapters.driver import DatabaseUnavailable
from mes.domain.equipment import ToolSnapshot
from mes.domain.errors import LotTrackerError
from mes.equipment import EquipmentService

log = structlog.get_logger("pkgline.controller")

RETRY_S = 1.0
BATCH_S = 0.1
"""How long observations gather before they are written (one transaction)."""


class EquipmentReporter:
    def __init__(self, equipment: EquipmentService, *, batch_s: float = BATCH_S):
        self._equipment = equipment
        self._batch_s = batch_s
        self._now = asyncio.Event()
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
        """Write what is pending at once, and wait until everything submitted so far is
        written."""
        if not self._idle.is_set():
            self._now.set()
        await self._idle.wait()

    async def run(self) -> None:
        """Write what is submitted until cancelled. A database that does not answer is tried
        again. Nothing submitted is dropped but the reports of a tool the database does not
        know, which are logged."""
        while True:
            await self._wake.wait()
            if not self._now.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._batch_s):  # see LineController._dispatch_loop
                        await self._now.wait()
            self._wake.clear()
            self._now.clear()
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    unknown = await self._equipment.report_many(batch)
                except DatabaseUnavailable as exc:
                    if not self._failing:
                        log.warning("cannot record tool states yet", error=str(exc))
                    self._failing = True
                    self._pending = batch + self._pending
                    await asyncio.sleep(RETRY_S)
                    continue
                except LotTrackerError as exc:
                    log.warning("tool states not recorded", error=exc.message)
                else:
                    if unknown:
                        log.warning("states of tools the database does not know", tools=unknown)
                if self._failing:
                    log.info("recording tool states again")
                    self._failing = False
                if not self._now.is_set():
                    break  # what came in meanwhile gathers for the next batch
            if not self._pending:
                self._idle.set()
