"""An event feed outage as the log shows it: one line when it begins (the broker's address,
why), a reminder every few minutes while it lasts (how long, how many attempts, the last
error, the events waiting), one when the feed is back (how long it was down, how many
attempts, how many events waited), whatever the number of retries meanwhile. Each retry is
a debug line. Before, the relay logged a warning at every retry: with the backoff's 30 s cap,
120 lines an hour of a broker's outage, 2,880 a day.

The address is the broker URL as a message may repeat it (:func:`pkgline.mqtt.shown_url`:
scheme, host and port; ``[events] url`` holds no user nor password, which are refused
there); a password is never logged.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from pkgline.mqtt import shown_url

log = structlog.get_logger("pkgline.events")

STILL_DOWN_EVERY_S = 300.0
"""While the feed is down, a reminder at most this often."""


class FeedOutage:
    """Whether the event feed is down as the relay last found it, and the log lines on its
    edges. ``clock``: seconds, monotonic."""

    def __init__(
        self,
        broker_url: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        still_down_every_s: float = STILL_DOWN_EVERY_S,
    ):
        self.broker = shown_url(broker_url)
        self._clock = clock
        self._every = still_down_every_s
        self._since: float | None = None
        self._last_line = 0.0
        self._attempts = 0

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, error: str, retry_in_s: float, waiting: int | None) -> None:
        """A session failed (or never connected) with ``error``; the next attempt in
        ``retry_in_s``; ``waiting``: the events in the outbox, when known."""
        now = self._clock()
        self._attempts += 1
        if self._since is None:
            self._since = self._last_line = now
            log.warning(
                "event feed down",
                broker=self.broker,
                error=error,
                retry_in_s=round(retry_in_s, 2),
                events_waiting=waiting,
            )
            return
        down_s = round(now - self._since, 1)
        if now - self._last_line >= self._every:
            self._last_line = now
            log.warning(
                "event feed still down",
                broker=self.broker,
                down_s=down_s,
                attempts=self._attempts,
                error=error,
                retry_in_s=round(retry_in_s, 2),
                events_waiting=waiting,
            )
        else:
            log.debug(
                "event feed retry",
                broker=self.broker,
                error=error,
                retry_in_s=round(retry_in_s, 2),
                down_s=down_s,
            )

    def connected(self, waiting: int | None, **details: object) -> None:
        """Connected to the broker: the first time ``event feed connected``; after an
        outage ``event feed back`` (once), with how long it lasted and the events that waited
        (``waiting``, as last read)."""
        if self._since is None:
            log.info("event feed connected", broker=self.broker, **details)
            return
        log.info(
            "event feed back",
            broker=self.broker,
            down_s=round(self._clock() - self._since, 1),
            attempts=self._attempts,
            events_waited=waiting,
            **details,
        )
        self._since = None
        self._attempts = 0
