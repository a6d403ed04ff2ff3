"""Tool states written to equipment tracking off the runners' way, and spooled on local disk
while the database is unavailable.

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

While the database is unavailable, each batch goes to the spool (:mod:`.spool`: an
append-only file, fsync'd per batch) instead, and so does everything after it, so that the
order holds; every ``RETRY_S`` the spool is written to the database, in chunks, oldest first,
and emptied once all of it is in. What was observed after the spool filled up (its bound,
``controller.spool_max_mb``) is not spooled: each tool's latest state waits in memory and is
written right after the spool; the changes it superseded are lost, counted and logged.

Writing spooled states twice records nothing twice (``report_many(only_newer=True)``: what
a tool's record already has is left out), and each tool's observations are stamped with
strictly increasing times (a microsecond apart at worst) so that this holds for changes
observed within the same microsecond too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import structlog

from mes.adapters.driver import DatabaseUnavailable
from mes.domain.equipment import ToolSnapshot
from mes.domain.errors import LotTrackerError
from mes.equipment import EquipmentService
from pkgline.controller.outage import DatabaseOutage
from pkgline.controller.spool import Report, Spool

log = structlog.get_logger("pkgline.controller")
T = TypeVar("T")

RETRY_S = 1.0
"""While the database is unavailable: how often the spool is tried."""
BATCH_S = 0.1
"""How long observations gather before they are written (one transaction)."""
REPLAY_CHUNK = 2000
"""Spooled observations written per transaction."""
PART = "tool states"
_TICK = timedelta(microseconds=1)


class EquipmentReporter:
    """Writes the tools' observed states in order: to the database, or while it is
    unavailable to ``spool``, and from there to the database when it is back."""

    def __init__(
        self,
        equipment: EquipmentService,
        spool: Spool,
        *,
        batch_s: float = BATCH_S,
        outage: DatabaseOutage | None = None,
    ):
        self._equipment = equipment
        self._spool = spool
        self._batch_s = batch_s
        self._outage = outage or DatabaseOutage()
        self._now = asyncio.Event()
        self._pending: list[Report] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._last_at: dict[str, datetime] = {}
        self._held: dict[str, Report] = {}
        """Past the spool's bound (or when it cannot be written): each tool's latest state."""
        self._lost = 0
        """Observations superseded in :attr:`_held`: never written."""
        self._replayed_bytes = 0
        self._replayed = 0
        """How much of the spool is written to the database (this run)."""
        self._retry_at = 0.0
        self.last_spooled_at: datetime | None = None
        """The latest observation time written from the spool (this run)."""
        self._disk: asyncio.Future[Any] | None = None

    # -- what the controller sees ------------------------------------------------------------

    @property
    def backlog(self) -> int:
        """Observations waiting for the database in the spool or, past its bound, in memory.
        Nothing new is dispatched while there are any: they are written first."""
        return self._spool.records - self._replayed + len(self._held)

    def describe(self) -> str:
        """The backlog for the STATUS line; empty when there is none."""
        if not self.backlog:
            return ""
        text = (
            f"{self.backlog} tool state changes spooled "
            f"({self._spool.size_bytes / 1000:.0f} of {self._spool.max_bytes / 1000:.0f} kB)"
        )
        if self._held:
            why = "spool full" if self._spool.full else "spool not writable"
            text += f", {why}: {self._lost} changes lost"
        return text

    def details(self) -> dict[str, object]:
        """The backlog for log lines."""
        return {
            "spooled": self._spool.records - self._replayed,
            "spool_bytes": self._spool.size_bytes,
            "held_in_memory": len(self._held),
            "lost": self._lost,
        }

    # -- submitting --------------------------------------------------------------------------

    def submit(self, tool_id: str, snapshot: ToolSnapshot, at: datetime) -> None:
        """Queue an observation (never blocks)."""
        last = self._last_at.get(tool_id)
        if last is not None and at <= last:
            at = last + _TICK  # strictly increasing per tool: see the module's docstring
        self._last_at[tool_id] = at
        self._pending.append((tool_id, snapshot, at))
        self._idle.clear()
        self._wake.set()

    async def flush(self) -> None:
        """Write what is pending at once, and wait until everything submitted so far is
        written to the database, or, while it is unavailable, to the spool."""
        if not self._idle.is_set():
            self._now.set()
        await self._idle.wait()

    # -- start and stop ----------------------------------------------------------------------

    async def open(self) -> None:
        """Open the spool (what a previous run left in it is counted in :attr:`backlog`)."""
        await self._on_disk(self._spool.open)

    async def close(self) -> None:
        """Close the spool file, once the file operation under way (if any) is over."""
        if self._disk is not None:
            await asyncio.gather(self._disk, return_exceptions=True)
        self._spool.close()

    async def write_spooled(self) -> int:
        """Write the spool to the database, oldest first, and empty it: at start, before
        anything else is written (what the last run left). The number of records written
        (0: the database was not asked). Raises DatabaseUnavailable."""
        while self._replayed_bytes < self._spool.size_bytes:
            reports, end, lines = await self._on_disk(
                self._spool.read, self._replayed_bytes, REPLAY_CHUNK
            )
            if reports:
                latest = max(at for _, _, at in reports)
                self.last_spooled_at = max(latest, self.last_spooled_at or latest)
                try:
                    unknown = await self._equipment.report_many(reports, only_newer=True)
                except LotTrackerError as exc:  # as for a batch never spooled: not retried
                    log.warning("spooled tool states not recorded", error=exc.message)
                else:
                    if unknown:
                        log.warning(
                            "spooled states of tools the database does not know", tools=unknown
                        )
            self._replayed_bytes, self._replayed = end, self._replayed + lines
        written = self._replayed
        if written or self._spool.full:
            # Reset first: the file is emptied on a worker thread, and the backlog must not
            # read as nothing meanwhile (a failed clear only writes it again: no harm).
            self._replayed_bytes = self._replayed = 0
            await self._on_disk(self._spool.clear)
            if written:
                log.info("spooled tool states written", records=written)
        if self._held:
            held = sorted(self._held.values(), key=lambda r: r[2])
            await self._equipment.report_many(held, only_newer=True)
            log.info(
                "tool states kept past the spool's bound written after it",
                tools=len(held),
                lost=self._lost,
            )
            written += len(held)
            self._held.clear()
            self._lost = 0
        return written

    # -- the writer task ---------------------------------------------------------------------

    async def run(self) -> None:
        """Write what is submitted until cancelled. Nothing submitted is dropped but the
        reports of a tool the database does not know (logged), and past the spool's bound
        the changes a tool's later state superseded (counted and logged)."""
        loop = asyncio.get_running_loop()
        while True:
            await self._next_turn(loop)
            if self._pending:
                batch, self._pending = self._pending, []
                if self.backlog:
                    await self._to_spool(batch)  # behind what waits already: order holds
                else:
                    await self._write(batch, loop)
            if self.backlog and loop.time() >= self._retry_at:
                await self._retry(loop)
            if not self._pending:
                self._idle.set()

    async def _next_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait for observations (or, with a backlog, for the next try of the database), then
        let more gather for ``batch_s`` unless a flush asks for them now."""
        timeout = max(0.0, self._retry_at - loop.time()) if self.backlog else None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):  # see LineController._dispatch_loop
                await self._wake.wait()
        if self._wake.is_set() and not self._now.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._batch_s):
                    await self._now.wait()
        self._wake.clear()
        self._now.clear()

    async def _write(self, batch: list[Report], loop: asyncio.AbstractEventLoop) -> None:
        try:
            unknown = await self._equipment.report_many(batch)
        except DatabaseUnavailable as exc:
            self._outage.failed(PART, exc)
            await self._to_spool(batch)
            self._retry_at = loop.time() + RETRY_S
            return
        except LotTrackerError as exc:
            log.warning("tool states not recorded", error=exc.message)
            return
        self._outage.answered()
        if unknown:
            log.warning("states of tools the database does not know", tools=unknown)

    async def _retry(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            written = await self.write_spooled()
        except DatabaseUnavailable as exc:
            self._outage.failed(PART, exc)
            self._retry_at = loop.time() + RETRY_S
            return
        except OSError as exc:
            log.error(
                "cannot read the spool; trying again", spool=str(self._spool.path), error=str(exc)
            )
            self._retry_at = loop.time() + RETRY_S
            return
        if written:
            self._outage.answered()

    async def _to_spool(self, batch: Sequence[Report]) -> None:
        """Append to the spool; what it does not take (full, or the disk failed) waits in
        memory as each tool's latest state, and so does everything after it until the spool
        is written, so the order holds."""
        rest: Sequence[Report] = batch
        if not self._held:
            try:
                rest = await self._on_disk(self._spool.append, batch)
            except OSError as exc:
                log.error(
                    "cannot write the spool: each tool's latest state is kept in memory only",
                    spool=str(self._spool.path),
                    error=str(exc),
                )
            else:
                if rest:
                    log.warning(
                        "spool full: tool state changes are no longer spooled; each tool's "
                        "latest state is kept in memory and written after the spool, the "
                        "changes between are lost",
                        spool=str(self._spool.path),
                        max_bytes=self._spool.max_bytes,
                    )
        for report in rest:
            if report[0] in self._held:
                self._lost += 1
            self._held[report[0]] = report

    async def _on_disk(self, work: Callable[..., T], *args: Any) -> T:
        """File I/O on a worker thread (an fsync may take a while): the event loop and the
        tools go on meanwhile. Shielded, so :meth:`close` can wait for it."""
        self._disk = asyncio.ensure_future(asyncio.to_thread(work, *args))
        return await asyncio.shield(self._disk)
