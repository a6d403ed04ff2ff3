"""Whether the database answers, as the units of work find it, logged on the edge.

An outage is logged as the tools' connectivity is (:mod:`drivers.supervision`): one warning
when the database stops answering, one every ``still_down_every_s`` (a minute) while it stays
away, with how many units of work it failed meanwhile, and one line when it answers again.
The many callers that meet the outage meanwhile (every tool's runner, the dispatch passes,
the heartbeat) wait and try again without a word of their own.

A read-only database (:class:`DatabaseReadOnly`, a standby after a failover) still answers
reads: it is back only once a write went through. The database is back for the status line at
its first answer, but "available again" is logged only once it has answered for
``settle_s``: a failover drops every pooled connection, and each one fails once as it is next
used, between answers on new connections; that is one outage, not one per connection. Refusals for a passing reason
(:class:`DatabaseRetryable`: a deadlock, too many connections) are no outage; they are
counted, and logged at most once a minute.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from mes.adapters.errors import DatabaseRetryable, DatabaseUnavailable


def _log() -> Any:
    """The database's logger. structlog is imported on the first line logged, not with this
    module: every CLI command imports it, and most log nothing."""
    import structlog

    return structlog.get_logger("pkgline.database")


STILL_DOWN_EVERY_S = 60.0
SETTLE_S = 3.0


class DatabaseHealth:
    """Fed by the store (:class:`mes.adapters.sql.SqlUnitOfWorkFactory` ``health=``) with the
    end of every unit of work; read by the line controller for its STATUS line."""

    def __init__(
        self,
        *,
        still_down_every_s: float = STILL_DOWN_EVERY_S,
        settle_s: float = SETTLE_S,
        clock: Callable[[], float] = time.monotonic,
        log_edges: bool = True,
    ):
        """``log_edges``: log the outage's edges (down, still down, back); off where the user
        logs them itself (the line controller, :mod:`pkgline.controller.outage`)."""
        self._log_edges = log_edges
        self._every_s = still_down_every_s
        self._settle_s = settle_s
        self._back_at: float | None = None
        """When the database answered again after an outage not yet logged as over."""
        self._clock = clock
        self._down: DatabaseUnavailable | None = None
        self._down_since = 0.0
        self._failures = 0
        """Units of work failed since the outage began."""
        self._failures_logged = 0
        self._last_logged = 0.0
        self._retried: Counter[str] = Counter()
        self._retried_logged_at: float | None = None

    @property
    def down(self) -> DatabaseUnavailable | None:
        """The error the current outage began with (None while the database answers)."""
        return self._down

    def describe(self) -> str | None:
        """One phrase for a status line while the database is away, else None."""
        if self._down is None:
            return None
        away_s = self._clock() - self._down_since
        what = "read-only" if self._down.kind == "read-only" else "unavailable"
        return f"database {what} for {_duration(away_s)}"

    def failed(self, error: DatabaseUnavailable) -> None:
        """A unit of work failed with ``error``."""
        now = self._clock()
        if isinstance(error, DatabaseRetryable) and self._down is None:
            self._retried[error.reason] += 1
            if self._retried_logged_at is None or now - self._retried_logged_at >= self._every_s:
                _log().warning(
                    "database refused work for now; it is tried again",
                    refusals=sum(self._retried.values()),
                    reasons=dict(self._retried.most_common(3)),
                )
                self._retried.clear()
                self._retried_logged_at = now
            return
        if self._down is None and self._back_at is not None:  # the same outage after all
            self._back_at = None
            self._down = error
            self._failures += 1
            return
        if self._down is None or (error.kind == "read-only") != (self._down.kind == "read-only"):
            if self._down is None:
                self._down_since, self._failures, self._failures_logged = now, 0, 0
            self._down = error
            self._failures += 1
            self._last_logged = now
            log = _log()
            edge = log.warning if self._log_edges else log.debug
            edge(
                "database read-only: no writes until it accepts them again"
                if error.kind == "read-only"
                else "database unavailable: waiting for it",
                reason=error.reason,
            )
            return
        self._failures += 1
        if now - self._last_logged >= self._every_s:
            log = _log()
            (log.warning if self._log_edges else log.debug)(
                "database still unavailable",
                kind=self._down.kind,
                for_s=round(now - self._down_since),
                failed=self._failures - self._failures_logged,
                failed_in_all=self._failures,
                reason=error.reason,
            )
            self._last_logged, self._failures_logged = now, self._failures

    def answered(self, *, wrote: bool) -> None:
        """A unit of work went through (``wrote``: and committed a write)."""
        now = self._clock()
        down = self._down
        if down is None:
            if self._back_at is not None and now - self._back_at >= self._settle_s:
                log = _log()
                (log.info if self._log_edges else log.debug)(
                    "database available again",
                    after_s=round(self._back_at - self._down_since, 1),
                    failed=self._failures,
                )
                self._back_at = None
            return
        if down.kind == "read-only" and not wrote:
            return
        self._down, self._back_at = None, now


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"
