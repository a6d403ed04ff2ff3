"""The relay on a thread and event loop of its own, beside the line controller's loop.

Why: an event committed while the controller's loop is busy (a dozen tools' polls, OPC UA
signing and encryption, the reporter's batches) would otherwise wait for every callback queued
before the relay's, at each of its steps (the wake, the read's thread hops, the PUBACKs). On a
loop of its own the relay waits at most for the interpreter's switch interval (5 ms) at each
step. It still shares the process (so its MQTT will still tells the controller's death) and
the interpreter; what crosses the threads is small: the commit signal
(:meth:`asyncio.AbstractEventLoop.call_soon_threadsafe`), the tools' records (read on the
controller's loop, where its engine lives), the stop, and the status the STATUS line reads
(plain attributes).

The relay's database engine is its own (two connections: reads and lock, marks), created
here and disposed of on the relay's loop: connections belong to the loop that opened them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from mes.domain.equipment import ToolRecord
from pkgline.events.relay import Relay, ToolSource

log = structlog.get_logger("pkgline.events")


def on_loop(source: ToolSource, loop: asyncio.AbstractEventLoop) -> ToolSource:
    """``source`` (a coroutine function of ``loop``), callable from any other loop."""

    async def read() -> Sequence[ToolRecord]:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_call(source), loop))

    return read


async def _call(source: ToolSource) -> Sequence[ToolRecord]:
    return await source()


class RelayThread:
    """Runs ``relay`` (whose store reads ``engine``) on a thread of its own until
    :meth:`stop`; ``engine`` is disposed of there at the end."""

    def __init__(self, relay: Relay, engine: AsyncEngine):
        self.relay = relay
        self._engine = engine
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name="event-relay", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._started.wait()

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._started.set()
        try:
            await self.relay.run()
        except Exception:
            log.exception("event relay failed")
        finally:
            await self._engine.dispose()

    async def stop(self, timeout_s: float) -> bool:
        """Ask the relay to stop (it publishes what is left, then its goodbye) and wait up to
        ``timeout_s``; False if it did not end in time (the thread is a daemon: it ends with
        the process)."""
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self.relay.request_stop)
        await asyncio.to_thread(self._thread.join, timeout_s)
        return not self._thread.is_alive()
