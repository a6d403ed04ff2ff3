"""A throttle of failed password checks per place they come from (a host, a local account).

The lockout (:data:`mes.domain.identity.MAX_FAILED_ATTEMPTS` wrong passwords in a row lock an
account) guards each account; it does not guard the server. Every password check costs an
argon2id hash (an unknown name costs one too: no probing names by time), so a host that
sends guesses at many names, or at one name past its lockout, spends the server's CPU one
hash each and fills the security log one event each. A commercial MES answers such a host
"too many failed logins from here, try again later" before it checks anything.

:class:`FailureThrottle` counts the failed checks of each place over a sliding window; once
``limit`` of them fall within ``window``, the place's next checks are refused unchecked until
the oldest of them leaves the window. A success does not clear a place's count (an
attacker who holds one account could otherwise log in with it between guesses); the count
clears as the failures age. Pure: the caller gives the time.

The memory it keeps is bounded: at most ``limit`` times per place, and at most
``max_places`` places (the ones whose newest failure is oldest are forgotten first; a place
forgotten starts again from nothing, as one whose failures aged out).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

DEFAULT_LIMIT = 20
"""Failed password checks from one place within :data:`DEFAULT_WINDOW` before its next
checks are refused unchecked: four times an account's lockout, so that a few people behind
one address (a station PC, a proxy) who mistype do not shut each other out."""

DEFAULT_WINDOW = timedelta(minutes=10)

MAX_PLACES = 10_000
"""Places remembered at once (the memory a flood from many addresses can take)."""


@dataclass(frozen=True, slots=True)
class Throttled:
    """Why a place's check is refused: its failures in the window, and when it may try again."""

    place: str
    failures: int
    window: timedelta
    retry_after: timedelta

    @property
    def retry_after_seconds(self) -> int:
        """Whole seconds, rounded up (an HTTP ``Retry-After``), at least 1."""
        seconds = self.retry_after.total_seconds()
        return max(1, int(seconds) + (0 if seconds == int(seconds) else 1))

    def message(self) -> str:
        minutes = int(self.window.total_seconds() // 60)
        return (
            f"too many failed password checks from {self.place} ({self.failures} in "
            f"{minutes} minutes): nothing was checked; try again in "
            f"{self.retry_after_seconds} s"
        )


class FailureThrottle:
    """Failed password checks per place over a sliding window (see the module's text)."""

    def __init__(
        self,
        limit: int = DEFAULT_LIMIT,
        window: timedelta = DEFAULT_WINDOW,
        *,
        max_places: int = MAX_PLACES,
    ) -> None:
        if limit < 1:
            raise ValueError(f"a throttle's limit is at least 1 failure, not {limit}")
        if window <= timedelta(0):
            raise ValueError(f"a throttle's window is longer than nothing, not {window}")
        if max_places < 1:
            raise ValueError(f"a throttle remembers at least 1 place, not {max_places}")
        self.limit = limit
        self.window = window
        self._max_places = max_places
        self._failures: dict[str, deque[datetime]] = {}

    def check(self, place: str, now: datetime) -> Throttled | None:
        """None when ``place`` may have a password checked now, else why not."""
        times = self._recent(place, now)
        if times is None or len(times) < self.limit:
            return None
        return Throttled(place, len(times), self.window, times[0] + self.window - now)

    def failed(self, place: str, now: datetime) -> None:
        """Count a failed check of ``place`` at ``now``."""
        times = self._recent(place, now)
        if times is None:
            if len(self._failures) >= self._max_places:
                self._forget_oldest()
            times = self._failures[place] = deque(maxlen=self.limit)
        else:  # the newest last: dict order is the order of the places' newest failures
            del self._failures[place]
            self._failures[place] = times
        times.append(now)

    def places(self) -> int:
        """How many places are remembered (for tests and the curious)."""
        return len(self._failures)

    def _recent(self, place: str, now: datetime) -> deque[datetime] | None:
        times = self._failures.get(place)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[place]
            return None
        return times

    def _forget_oldest(self) -> None:
        """Room for one more place: the one whose newest failure is oldest goes (the first
        in the dict's order; any whose failures aged out are before it)."""
        del self._failures[next(iter(self._failures))]
