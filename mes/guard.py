"""The service layer's check of authority: the principal acting, the one table
(:mod:`mes.domain.authority`), and refusals recorded as security events.

A service is built with the principal it acts for by default (the OS account in direct
mode, the controller's system identity in ``pkgline serve``); a call may name another
(``by=``, the server's per-request principal). A service built without one checks nothing:
that is for code embedding the lot tracker in-process (tests, benchmarks), never for an entry
point, which always passes a principal (:mod:`pkgline.bootstrap`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from datetime import datetime
from typing import Any, Protocol, Self

from mes.domain.authority import (
    Action,
    Context,
    NotAuthorized,
    Principal,
    authorize,
    may_ever,
)
from mes.domain.identity import EventKind, SecurityEvent

REQUEST_ORIGIN: ContextVar[str | None] = ContextVar("pkgline_request_origin", default=None)
"""Where the request being served came from, as the server saw it (``"10.0.4.33:51234
(https)"``, ``"local socket, pid 4711"``): set by the server around each request; the
security log keeps it with every event recorded while it is set (detail ``from``). Not set
in direct mode, where the OS account on this host is the whole story."""


REQUEST_PLACE: ContextVar[str | None] = ContextVar("pkgline_request_place", default=None)
"""Where the request being served came from, as the place its failed password checks are
counted against (:class:`mes.domain.throttle.FailureThrottle`): the peer's host over TCP
(``"host 10.0.4.33"``: every port of it alike), the peer's OS account on the local socket
(``"local uid 1000"``). Set by the server with :data:`REQUEST_ORIGIN`; not set in direct
mode (no throttle: the OS account on this host is the whole story, the lockout still holds)."""


def with_origin(detail: Mapping[str, Any]) -> dict[str, Any]:
    """``detail`` with the request's origin (``from``) when one is set and it has none."""
    origin = REQUEST_ORIGIN.get()
    if origin is None or "from" in detail:
        return dict(detail)
    return {**detail, "from": origin}


class SecurityLog(Protocol):
    async def record(self, event: SecurityEvent) -> None:
        """Append one event to the security log (a transaction of its own)."""
        ...


class Guard:
    def __init__(
        self,
        principal: Principal | None,
        log: SecurityLog | None,
        clock: Callable[[], datetime],
    ):
        self.principal = principal
        self._log = log
        self._clock = clock

    def acting_as(self, principal: Principal) -> Guard:
        """The same check and log for another default principal."""
        return Guard(principal, self._log, self._clock)

    def who(self, by: Principal | None) -> Principal | None:
        return by if by is not None else self.principal

    def check(self, by: Principal | None, action: Action, context: Context | None = None) -> None:
        """Raise NotAuthorized unless the principal acting may do ``action`` (pure: may run
        inside a transaction's work, where the lot it depends on was read)."""
        who = self.who(by)
        if who is not None:
            authorize(who, action, context)

    async def allow(
        self, by: Principal | None, action: Action, context: Context | None = None
    ) -> None:
        """:meth:`check`, recording a refusal (before anything was read or written)."""
        try:
            self.check(by, action, context)
        except NotAuthorized as refused:
            await self.refused(by, refused)
            raise

    async def allow_some(self, by: Principal | None, action: Action, lot_id: str | None) -> None:
        """Refuse, recorded, a principal whom no lot lets do ``action`` (before a signature's
        password is checked: a role that may never is told so, not asked for a password
        and counted towards a lockout); the lot's own row is checked once it is read."""
        who = self.who(by)
        if who is not None and not may_ever(who, action):
            await self.allow(by, action, Context(lot_id))

    async def refused(self, by: Principal | None, refusal: NotAuthorized) -> None:
        """Record a refusal (after the refused transaction was rolled back)."""
        who = self.who(by)
        if self._log is None or who is None:
            return
        await self._log.record(
            SecurityEvent(
                self._clock(),
                EventKind.REFUSED,
                who.name,
                who.method,
                action=refusal.action.value if refusal.action else None,
                lot_id=refusal.lot_id,
                detail={"needed": list(refusal.allowed), "message": refusal.message},
            )
        )


class Guarded:
    """A service whose calls :class:`Guard` checks: :meth:`acting_as` gives the same service
    (store, clock, security log) acting for another default principal."""

    _guard: Guard

    def acting_as(self, principal: Principal) -> Self:
        """The same service acting for ``principal``."""
        other = copy.copy(self)
        other._guard = self._guard.acting_as(principal)
        return other
