"""The service layer's check of authority: the principal acting, the one table
(:mod:`mes.domain.authority`), and refusals recorded as security events.

A service is built with the principal it acts for by default (the OS account in direct
mode, the controller's system identity in ``pkgline serve``); a call may name another
(``by=``, the server's per-request principal). A service built without one checks nothing:
that is for code embedding the lot tracker in-process (tests, benchmarks), never for an entry
point, which always passes a principal (:mod:`pkgline.bootstrap`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from mes.domain.authority import Action, Context, NotAuthorized, Principal, authorize
from mes.domain.identity import EventKind, SecurityEvent


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
