"""A database outage as the log shows it: one line when it begins, one a minute while it
lasts (with counts), one when it ends, whatever the number of calls that fail meanwhile.

Every part of the controller that finds the database unavailable (the reporter, the
runners, dispatch, the heartbeat) tells :class:`DatabaseOutage`; a part whose write went
through says so (the heartbeat, every 5 s; tool states; an alarm reset taken). A read that
went through says nothing: reads go through on a read-only database (a standby after a
failover) and on a SQLite file another process holds locked, and ending the outage at each
of them logged it twice a second for as long as it lasted. During a two-minute outage the
log then has four lines, not one warning per retry of every part (611 of them before this).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import structlog

log = structlog.get_logger("pkgline.controller")

STILL_DOWN_EVERY_S = 60.0


class DatabaseOutage:
    """Whether the database is unavailable as the controller last found it, and the log
    lines on its edges. ``details``: what to add to the lines (the spool's size)."""

    def __init__(
        self,
        details: Callable[[], dict[str, object]] = dict,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._details = details
        self._clock = clock
        self._since: float | None = None
        self._last_line = 0.0
        self._failures: Counter[str] = Counter()

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, part: str, error: BaseException) -> None:
        """``part`` (what was being written or read) found the database unavailable."""
        now = self._clock()
        self._failures[part] += 1
        if self._since is None:
            self._since = self._last_line = now
            log.warning(
                "database unavailable: tool states are spooled, nothing new is dispatched",
                part=part,
                error=str(error) or type(error).__name__,
                **self._details(),
            )
        elif now - self._last_line >= STILL_DOWN_EVERY_S:
            self._last_line = now
            log.warning(
                "database still unavailable",
                down_s=round(now - self._since),
                failed_calls=dict(self._failures),
                error=str(error) or type(error).__name__,
                **self._details(),
            )

    def answered(self) -> None:
        """A write went through: the database is back (logged once). Not for a read."""
        if self._since is None:
            return
        log.info(
            "database available again",
            down_s=round(self._clock() - self._since, 1),
            failed_calls=dict(self._failures),
            **self._details(),
        )
        self._since = None
        self._failures.clear()
