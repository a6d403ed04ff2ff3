"""Connection supervision shared by every transport: backoff delays, the fan-out of tool
events to any number of listeners, and connectivity changes logged once, on the edge.
"""

from __future__ import annotations

import asyncio
import math
import random
import zlib
from collections.abc import AsyncIterator, Iterable, Iterator

import structlog

from drivers.config import ConnectionPolicy
from drivers.interface import ConnectionLost, ConnectionRestored, StatusChanged, ToolEvent
from drivers.model import ToolStatus

log = structlog.get_logger("pkgline.drivers")


def backoff_delays(policy: ConnectionPolicy, rng: random.Random | None = None) -> Iterator[float]:
    """Delays between reconnect attempts: doubling from ``backoff_initial_s`` to
    ``backoff_max_s``, each shortened at random by up to ``backoff_jitter`` so that a line of
    tools that went down together does not reconnect in lock step."""
    rng = rng or random.Random()
    delay = policy.backoff_initial_s
    while True:
        capped = min(delay, policy.backoff_max_s)
        yield capped * (1.0 - policy.backoff_jitter * rng.random())
        delay = capped * 2.0


class PollClock:
    """When to poll a tool: at a fixed rate, on ticks ``phase + k * interval`` of the event
    loop's clock, with a phase of the tool's own in ``[0, interval)``.

    The tools of a line are read spread across the interval instead of all at once (their
    completions, and the work they start in the controller, then arrive one by one rather
    than in bursts), and the phase is the same after every restart. A controller that polls
    several tools gives each its phase from :func:`spread_phases`; a tool polled alone takes
    one from its id. A slow poll does not shift the ticks after it; a tick missed (a poll
    longer than the interval) is skipped, not caught up with a burst of reads.
    """

    def __init__(self, tool_id: str, interval_s: float, phase_s: float | None = None):
        if phase_s is not None and not 0.0 <= phase_s < interval_s:
            raise ValueError(f"a poll phase is in [0, {interval_s:g}) s, not {phase_s:g}")
        self.interval_s = interval_s
        self.phase_s = (
            interval_s * zlib.crc32(tool_id.encode()) / 2**32 if phase_s is None else phase_s
        )
        self._next: float | None = None

    def _tick_after(self, now: float) -> float:
        k = math.floor((now - self.phase_s) / self.interval_s) + 1
        return self.phase_s + k * self.interval_s

    def delay(self, now: float) -> float:
        """Seconds from ``now`` to the next tick (called once after each poll)."""
        tick = self._tick_after(now) if self._next is None else self._next + self.interval_s
        if tick <= now:  # the poll took longer than the interval: skip what was missed
            tick = self._tick_after(now)
        self._next = tick
        return tick - now


def spread_phases(tools: Iterable[tuple[str, float]]) -> dict[str, float]:
    """Poll phases for the tools one process polls, as ``(tool id, poll interval)`` pairs:
    the tools of each interval evenly spaced across it, in the order of their ids, so the same
    line gets the same phases after every restart. Phases taken from the ids alone
    (:class:`PollClock` without one) bunch at random: on the example line three of eight tools
    fell within 4 ms of each other, and their completions kept arriving together."""
    by_interval: dict[float, list[str]] = {}
    for tool_id, interval_s in tools:
        by_interval.setdefault(interval_s, []).append(tool_id)
    phases: dict[str, float] = {}
    for interval_s, ids in by_interval.items():
        ordered = sorted(set(ids))
        for slot, tool_id in enumerate(ordered):
            phases[tool_id] = interval_s * slot / len(ordered)
    return phases


class EventHub:
    """Publishes one tool's events to every open :meth:`subscribe` stream.

    Remembers the current connectivity and status, so that a new subscriber starts with them.
    Logs connectivity changes once each, on the edge. Publishing never blocks: each subscriber
    has its own queue.
    """

    def __init__(self, tool_id: str):
        self.tool_id = tool_id
        self._subscribers: set[asyncio.Queue[ToolEvent | None]] = set()
        self._connected: bool | None = None
        self._status: ToolStatus | None = None
        self._offline_reason: str | None = None
        self._closed = False

    @property
    def connected(self) -> bool:
        return bool(self._connected)

    @property
    def last_status(self) -> ToolStatus | None:
        return self._status

    def _publish(self, event: ToolEvent) -> None:
        for queue in self._subscribers:
            queue.put_nowait(event)

    def online(self) -> None:
        """The tool answered. Publishes ConnectionRestored only if it was not online before."""
        if self._connected:
            return
        was_known = self._connected is not None
        self._connected = True
        if was_known:
            log.info("tool back online", tool_id=self.tool_id)
        else:
            log.info("tool online", tool_id=self.tool_id)
        self._publish(ConnectionRestored(self.tool_id))

    def offline(self, reason: str, *, refused: bool = False) -> None:
        """The tool stopped answering. Publishes ConnectionLost on the edge, and again when
        the reason it stays offline changes, so that the tool's status says why it is
        offline now, not why it went offline (a tool that went away and came back with a
        certificate that is refused). A new reason is logged once, ``tool still offline``: a
        warning when a certificate or a user was ``refused``
        (:class:`~drivers.errors.SecurityRefused`), else at info (a reconnection that failed
        otherwise than the connection did)."""
        if self._connected is False:
            if reason == self._offline_reason:
                return
            self._offline_reason = reason
            say = log.warning if refused else log.info
            say("tool still offline", tool_id=self.tool_id, reason=reason)
            self._publish(ConnectionLost(self.tool_id, reason))
            return
        self._connected = False
        self._offline_reason = reason
        self._status = None
        log.warning("tool offline", tool_id=self.tool_id, reason=reason)
        self._publish(ConnectionLost(self.tool_id, reason))

    def status(self, status: ToolStatus) -> None:
        """A fresh status reading. Publishes StatusChanged only when it differs."""
        if status == self._status:
            return
        self._status = status
        self._publish(StatusChanged(self.tool_id, status))

    async def subscribe(self) -> AsyncIterator[ToolEvent]:
        """Events from now on, starting with the current connectivity and status."""
        queue: asyncio.Queue[ToolEvent | None] = asyncio.Queue()
        if self._closed:
            return
        if self._connected is True:
            queue.put_nowait(ConnectionRestored(self.tool_id))
            if self._status is not None:
                queue.put_nowait(StatusChanged(self.tool_id, self._status))
        elif self._connected is False:
            queue.put_nowait(ConnectionLost(self.tool_id, "not connected"))
        self._subscribers.add(queue)
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self._subscribers.discard(queue)

    def close(self) -> None:
        """End every subscription."""
        self._closed = True
        for queue in self._subscribers:
            queue.put_nowait(None)
