"""PostgreSQL: hear every process's commits of lot changes (LISTEN on the outbox channel,
which a trigger NOTIFYs at each COMMIT that wrote outbox events, revision 0014) on a
connection held for it, and keep hearing them when that connection drops.

A dropped connection (the server restarted, a network reset) is seen at once by asyncpg's
termination callback; a silent one (a partition) by a probe every ``check_s``. Either way
the listener logs ``commit listener lost`` once, connects again with a backoff (``first_s``,
doubled each failure up to ``max_s``), logs ``commit listener back`` and tells its callback
once, for the commits it could not hear while it was away. While it is away the server's
pages poll, as on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mes.adapters.outbox import OUTBOX_CHANNEL

log = structlog.get_logger("mes.commits")

FIRST_S = 0.5
MAX_S = 30.0
CHECK_S = 30.0
PROBE_TIMEOUT_S = 10.0


class CommitListener:
    """Calls ``callback`` (in this event loop) whenever lot changes commit in any process,
    between :meth:`start` and :meth:`stop`, reconnecting when the connection drops."""

    def __init__(
        self,
        engine: AsyncEngine,
        callback: Callable[[], None],
        *,
        first_s: float = FIRST_S,
        max_s: float = MAX_S,
        check_s: float = CHECK_S,
    ):
        self._engine = engine
        self._callback = callback
        self._first_s = first_s
        self._max_s = max_s
        self._check_s = check_s
        self._task: asyncio.Task[None] | None = None
        self._conn: AsyncConnection | None = None
        self._dropped = asyncio.Event()
        self._changed = asyncio.Event()
        self._tried = asyncio.Event()
        self.listening = False
        """True while LISTEN holds on a live connection."""
        self.reconnects = 0
        """How many times it came back after losing the connection."""
        self.failed_tries = 0
        """Tries to connect that failed, in all."""

    async def start(self) -> None:
        """Start listening; returns once the first try to connect succeeded or failed (a
        failure: it keeps trying in the background)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="commit-listener")
        await self._tried.wait()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_listening(self, listening: bool = True) -> None:
        """Until :attr:`listening` is ``listening``."""
        await self.wait_until(lambda: self.listening == listening)

    async def wait_until(self, done: Callable[[], bool]) -> None:
        """Until ``done()`` holds, checked at each change of :attr:`listening` and each
        failed try to connect."""
        while not done():
            self._changed.clear()
            await self._changed.wait()

    def _set(self, listening: bool) -> None:
        self.listening = listening
        self._changed.set()

    async def _run(self) -> None:
        delay = self._first_s
        lost = False
        try:
            while True:
                try:
                    await self._connect()
                except Exception as exc:
                    self.failed_tries += 1
                    self._tried.set()
                    self._changed.set()
                    if not lost:
                        lost = True
                        log.warning("commit listener lost", error=str(exc) or type(exc).__name__)
                    await self._close()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._max_s)
                    continue
                if lost:
                    lost = False
                    self.reconnects += 1
                    log.info("commit listener back", reconnects=self.reconnects)
                    self._callback()  # what committed while nobody listened
                delay = self._first_s
                self._set(True)
                self._tried.set()
                reason = await self._held()
                self._set(False)
                lost = True
                log.warning("commit listener lost", error=reason)
                await self._close()
        finally:
            self._set(False)
            self._tried.set()
            await self._close()

    async def _connect(self) -> None:
        self._dropped.clear()
        self._conn = await self._engine.connect()
        raw = await self._conn.get_raw_connection()
        connection: Any = raw.driver_connection

        def notified(*_: object) -> None:
            self._callback()

        def terminated(*_: object) -> None:
            self._dropped.set()

        connection.add_termination_listener(terminated)
        await connection.add_listener(OUTBOX_CHANNEL, notified)

    async def _held(self) -> str:
        """Until the connection drops (its reason)."""
        assert self._conn is not None
        raw = await self._conn.get_raw_connection()
        connection: Any = raw.driver_connection
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dropped.wait(), self._check_s)
                return "the connection closed"
            try:  # a partition drops nothing: ask
                await connection.execute("SELECT 1", timeout=PROBE_TIMEOUT_S)
            except Exception as exc:
                return f"no answer to a probe: {exc or type(exc).__name__}"

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            await conn.invalidate()  # never back to the pool with a LISTEN on it
        with contextlib.suppress(Exception):
            await conn.close()
