"""Reading the security log: one page of its events, newest first (``pkgline user events``,
``GET /security/events``, the station's security page), and its newest events; who may read
which. The identity service's reads (:class:`mes.identity.IdentityService` answers them
through this), apart from its changes to users, logins and keys."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from mes.domain.authority import PERMISSIONS, Action, NotAuthorized, Principal, may
from mes.domain.common import check_window
from mes.domain.errors import InvalidInput
from mes.domain.identity import EventKind, SecurityEvent, SecurityEventPage, SecurityEventQuery
from mes.ports_identity import IdentityStore

Authorize = Callable[[Principal, Action], Awaitable[object]]
"""Refuse ``by`` the action (NotAuthorized), recording the refusal as a security event."""


class SecurityLogReads:
    """The security log as its readers ask for it, each read one read-only transaction of
    ``store``, allowed by ``authorize`` first."""

    def __init__(self, store: IdentityStore, authorize: Authorize):
        self._store = store
        self._authorize = authorize

    async def events(self, by: Principal, limit: int = 100) -> list[SecurityEvent]:
        """The newest ``limit`` events (the admins')."""
        await self._authorize(by, Action.USERS)
        async with self._store.transaction(readonly=True) as tx:
            return await tx.events(limit)

    async def event_page(self, by: Principal, query: SecurityEventQuery) -> SecurityEventPage:
        """One page of the security log, newest first. Refused (InvalidInput, nothing read)
        for a limit below 1, a window that ends before it starts, or a cursor that names no
        event. The whole log is the admins'; its engineering changes alone (``kind``
        ``engineering_change``) are also theirs who make them and quality's
        (:attr:`Action.CHANGES`)."""
        changes = query.kind is EventKind.ENGINEERING_CHANGE
        await self._authorize(by, Action.CHANGES if changes else Action.USERS)
        if query.limit < 1:
            raise InvalidInput(f"expected a limit of 1 or more (got {query.limit})")
        check_window(query.since, query.until)
        async with self._store.transaction(readonly=True) as tx:
            if query.after is not None and not await tx.has_event(query.after):
                raise InvalidInput(
                    f"--after {query.after}: expected the seq of an event of the security log "
                    "(the last of the page before)"
                )
            return await tx.event_page(query)


def log_refused(who: Principal, action: Action) -> NotAuthorized:
    """The refusal of a read of the security log (``action``: the whole log, or its
    engineering changes), in the words of that read: the authority table's words for the
    whole log are those of managing users, which is not what the reader asked for; one whose
    roles may read the engineering changes is told to ask for those."""
    needed = PERMISSIONS[action]
    held = ", ".join(sorted(r.value for r in who.roles)) or "no role"
    what = "the security log" if action is Action.USERS else "the engineering changes"
    message = (
        f"{who.name} ({held}) may not read {what}: that needs the role "
        f"{' or '.join(sorted(r.value for r in needed))}"
    )
    if action is Action.USERS and may(who, Action.CHANGES):
        message += (
            "; your roles may read its engineering changes alone (the kind engineering_change)"
        )
    return NotAuthorized(message, needed=needed, action=action)
