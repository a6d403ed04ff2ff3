"""The line page's live updates: a server-sent event stream of the rendered line, sent
when it changes.

Each open line page holds one stream. The server reads the line from the service layer for
that viewer (and checks their session again, so a logout or an expiry ends the stream),
renders the fragment the page shows, and sends it only when it differs from the last one
sent. It reads again as soon as lot changes commit (the commit signal the event relay uses:
this server's own commits, and on PostgreSQL every process's, by NOTIFY), and at the latest
every ``POLL_S`` (a tool's state, reported by a line controller in another process, and
every change on SQLite made elsewhere). A comment line every ``KEEPALIVE_S`` keeps proxies
from closing a quiet stream. The browser's ``EventSource`` reconnects by itself after a
network break. When the server stops, :func:`close_streams` ends every stream at once, so a
stop does not wait for open pages.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from mes.adapters.outbox import OutboxSignal
from mes.domain.errors import LotTrackerError

POLL_S = 1.0
KEEPALIVE_S = 15.0
RETRY_MS = 2000


SHARED_MAX_AGE_S = 0.25
"""How long a rendering of the line serves other viewers when no commit came since."""


class SharedLine:
    """The line as every viewer sees it (the same for every role that may read), rendered
    once for all: the page loads and the streams of many viewers at the same moment share
    one read and one rendering (the one under way, or one at most ``max_age_s`` old with no
    commit since). Past that age with no commit since, viewers get the last rendering while
    the next is made, rather than all waiting for it. Each viewer's session and authority are
    still checked on every read."""

    def __init__(self, max_age_s: float = SHARED_MAX_AGE_S):
        self.max_age_s = max_age_s
        self.generation = 0
        self._value: str | None = None
        self._value_generation = -1
        self._value_at = 0.0
        self._flight: asyncio.Future[str] | None = None
        self._flight_generation = -1

    def committed(self) -> None:
        """Lot changes were committed: the next read renders again."""
        self.generation += 1

    async def get(self, render: Callable[[], Awaitable[str]]) -> str:
        loop = asyncio.get_running_loop()
        generation = self.generation
        current = self._value if self._value_generation == generation else None
        if current is not None and loop.time() - self._value_at < self.max_age_s:
            return current
        if self._flight is None or self._flight_generation != generation:
            self._flight = asyncio.ensure_future(render())
            self._flight_generation = generation
            self._flight.add_done_callback(self._landed(generation))
        if current is not None:
            # Only old, no commit since: this viewer gets the rendering of a moment ago while
            # the new one is made (a tool's state from another process may lag a render);
            # after a commit everyone waits for the rendering that shows it.
            return current
        return await asyncio.shield(self._flight)

    def _landed(self, generation: int) -> Callable[[asyncio.Future[str]], None]:
        def done(flight: asyncio.Future[str]) -> None:
            if self._flight is flight:
                self._flight = None
            if not flight.cancelled() and flight.exception() is None:
                self._value, self._value_generation = flight.result(), generation
                self._value_at = asyncio.get_running_loop().time()

        return done


@dataclass
class Streams:
    """The open streams' shared stop and wake (``app.state.station``)."""

    closing: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: set[asyncio.Event] = field(default_factory=set)
    """One event per open stream, set when lot changes commit."""
    line: SharedLine = field(default_factory=SharedLine)

    def committed(self) -> None:
        """Lot changes were committed: every stream reads the line again now. Called in the
        server's event loop (its own commits, and asyncpg's NOTIFY callbacks)."""
        self.line.committed()
        for wake in tuple(self.waiting):
            wake.set()

    def watch(self, commits: OutboxSignal | None) -> None:
        """Wake on ``commits`` (the server's commit signal; None: poll only)."""
        if commits is not None:
            commits.subscribe(self.committed)


def close_streams(app: Any) -> None:
    """End every line stream of ``app`` (the FastAPI app, or the wrapper around it)."""
    inner = app
    while not hasattr(inner, "state") and hasattr(inner, "app"):  # the wrappers around it
        inner = inner.app
    streams = getattr(getattr(inner, "state", None), "station", None)
    if isinstance(streams, Streams):
        streams.closing.set()


def fingerprint(fragment: str) -> str:
    """What identifies a rendering of the line (the event's id; the page's ``data-version``)."""
    return hashlib.sha256(fragment.encode()).hexdigest()[:16]


def sse_event(name: str, data: str, event_id: str | None = None) -> str:
    """One event in the text/event-stream format (each line of ``data`` its own field)."""
    lines = data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    head = f"event: {name}\n" + (f"id: {event_id}\n" if event_id else "")
    return head + "".join(f"data: {line}\n" for line in lines) + "\n"


async def line_events(
    render: Callable[[], Awaitable[str]],
    streams: Streams,
    *,
    poll_s: float = POLL_S,
    keepalive_s: float = KEEPALIVE_S,
) -> AsyncIterator[str]:
    """The stream: ``render()`` the fragment every ``poll_s``; send it when it changed.
    A refusal while rendering (the session ended) sends a ``logout`` event and ends."""
    yield f"retry: {RETRY_MS}\n\n"
    last: str | None = None
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    wake = asyncio.Event()
    streams.waiting.add(wake)
    try:
        while not streams.closing.is_set():
            wake.clear()
            try:
                fragment = await render()
            except LotTrackerError:
                yield sse_event("logout", "the session ended: log in again")
                return
            if fragment != last:
                last = fragment
                quiet_since = loop.time()
                yield sse_event("line", fragment, fingerprint(fragment))
            elif loop.time() - quiet_since >= keepalive_s:
                quiet_since = loop.time()
                yield ": keepalive\n\n"
            await _until(wake, streams.closing, poll_s)
    finally:
        streams.waiting.discard(wake)


async def _until(wake: asyncio.Event, closing: asyncio.Event, seconds: float) -> None:
    """Until a commit wakes the stream, the server stops, or ``seconds`` pass."""
    if wake.is_set() or closing.is_set():
        return
    waits = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(closing.wait())]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
