"""The server's sessions: a person's password login (:meth:`IdentityService.login`, with its
lockout and security events) gives an expiring token; each request with it is that person.

Tokens are ``pks_<session id>_<secret>``: a random 256-bit secret of which only SHA-256 is
stored (as for API keys: a random secret needs no slow hash), compared in constant time.
Stored, not signed: a session ends when its person logs out, when it expires, or when the
account is disabled, all on the server's word at the next request (a signed token would hold
until it expires whatever happened meanwhile). The token is never logged, never in a URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from mes.domain.authority import AuthMethod, Principal
from mes.domain.identity import LoginRefused, User
from mes.domain.tokens import TOKEN_ID
from mes.identity import IdentityService

SESSION_PREFIX = "pks"
DEFAULT_LIFETIME = timedelta(hours=8)
"""A session holds one shift by default (``[api] session_hours``)."""
SESSION_TTL_S = 1.0
"""How long the service answers from a session it looked up and found live before it looks
it up again. A station viewer or a client sends its token with every request, and the lookup
(session and user, in the database) was most of the server's time for a page. A logout
through this service, a role change or a disabled account through the identity service, and
the session's own expiry take effect at once; a change made to the database behind the
server's back takes effect within :data:`SESSION_KEEP_S` (docs/security.md). Refusals are
never kept."""
SESSION_KEEP_S = 2.0
"""Past :data:`SESSION_TTL_S` and up to this age a kept session still answers while it is
looked up again in the background (so no request waits for that lookup while its person is
active); past this age a request waits for the lookup."""


class SessionRefused(LoginRefused):
    """A session token refused; ``why`` says which way (for the security log)."""

    def __init__(self, why: str):
        super().__init__(f"the session token is not valid ({why}): log in again (pkgline login)")
        self.why = why


@dataclass(frozen=True, slots=True)
class ApiSession:
    session_id: str
    username: str
    token_hash: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None


class SessionStore(Protocol):
    async def add(self, session: ApiSession) -> None: ...

    async def get(self, session_id: str) -> tuple[ApiSession, User] | None:
        """The session and its user, or None."""
        ...

    async def revoke(self, session_id: str, at: datetime) -> None: ...


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _utc_now() -> datetime:
    return datetime.now(UTC)


def split_token(token: str) -> tuple[str, str] | None:
    """``(session id, secret)`` of a session token, or None when it is not one (another
    prefix, an id not as issued, no secret)."""
    prefix, _, rest = token.partition("_")
    session_id, _, secret = rest.partition("_")
    if prefix != SESSION_PREFIX or not TOKEN_ID.fullmatch(session_id) or not secret:
        return None
    return session_id, secret


class SessionService:
    def __init__(
        self,
        identity: IdentityService,
        store: SessionStore,
        *,
        lifetime: timedelta = DEFAULT_LIFETIME,
        clock: Callable[[], datetime] = _utc_now,
        ttl_s: float = SESSION_TTL_S,
        keep_s: float = SESSION_KEEP_S,
    ):
        self._identity = identity
        self._store = store
        self._lifetime = lifetime
        self._clock = clock
        self._kept = _LiveSessions(ttl_s, keep_s)
        self._refreshing: dict[str, asyncio.Future[None]] = {}
        self._logouts = 0
        """Counts logouts: a lookup that began before one keeps nothing (it may have read
        the session before it ended)."""

    async def login(self, username: str, password: str) -> tuple[str, ApiSession, Principal]:
        """A new session for a person's password (LoginRefused as the login refuses):
        the token (shown once), the session and who it is."""
        principal = await self._identity.login(username, password)
        now = self._clock()
        session_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        session = ApiSession(session_id, username, _digest(secret), now, now + self._lifetime)
        await self._store.add(session)
        return f"{SESSION_PREFIX}_{session_id}_{secret}", session, principal

    async def authenticate(self, token: str) -> Principal:
        """The person of a live session, or SessionRefused (unknown, expired, ended, or the
        account disabled since)."""
        now = self._clock()
        generation = self._generation()
        kept = self._kept.get(token, generation, now)
        if kept is None:
            return await self._look_up(token, now, generation)
        principal, stale = kept
        if stale and token not in self._refreshing:
            refresh = asyncio.ensure_future(self._refresh(token))
            self._refreshing[token] = refresh
            refresh.add_done_callback(lambda _: self._refreshing.pop(token, None))
        return principal

    def _generation(self) -> tuple[int, int]:
        """What a kept session is valid for: no user changed through the identity service,
        and no logout through this one, since it was looked up."""
        return self._identity.generation, self._logouts

    async def _look_up(self, token: str, now: datetime, generation: tuple[int, int]) -> Principal:
        parts = split_token(token)
        found = await self._store.get(parts[0]) if parts is not None else None
        why = "unknown session" if parts is not None else "malformed session token"
        if parts is not None and found is not None:
            session, user = found
            if not hmac.compare_digest(session.token_hash, _digest(parts[1])):
                why = "unknown session"
            elif session.revoked_at is not None:
                why = "session ended (a logout, its account disabled or its password set)"
            elif now >= session.expires_at:
                why = "session expired"
            elif user.disabled:
                why = "account disabled"
            else:
                principal = user.principal(AuthMethod.SESSION)
                self._kept.put(token, principal, session.expires_at, generation)
                return principal
        self._kept.drop(token)
        raise SessionRefused(why)

    async def _refresh(self, token: str) -> None:
        """Look a kept session up again; anything but a live session (a refusal, a database
        that fails) drops it, so the next request looks it up itself and is answered, and
        refused or failed, as it would have been without the cache."""
        try:
            await self._look_up(token, self._clock(), self._generation())
        except Exception:
            self._kept.drop(token)

    async def close(self) -> None:
        """Wait for no lookup in the background (before the store's database closes)."""
        refreshing = list(self._refreshing.values())
        for refresh in refreshing:
            refresh.cancel()
        for refresh in refreshing:
            with contextlib.suppress(asyncio.CancelledError):
                await refresh

    async def logout(self, token: str) -> bool:
        """End the token's session (True), or False when it is no live session of its own."""
        parts = split_token(token)
        self._logouts += 1  # what a lookup under way finds is kept no more
        self._kept.drop(token)
        found = await self._store.get(parts[0]) if parts is not None else None
        if parts is None or found is None:
            return False
        session, _ = found
        if not hmac.compare_digest(session.token_hash, _digest(parts[1])):
            return False
        if session.revoked_at is None:
            await self._store.revoke(session.session_id, self._clock())
            self._logouts += 1  # and what a lookup begun before the revoke committed finds
            self._kept.drop(token)
        return True


class _LiveSessions:
    """Live sessions' principals by token digest: fresh for :data:`SESSION_TTL_S` (half to
    all of it, at random: the sessions of viewers who logged in together, at a shift change,
    would otherwise all be looked up again at once), then stale up to :data:`SESSION_KEEP_S`;
    never past the session's expiry, and none once the ``generation`` it was looked up at
    moves (:meth:`SessionService._generation`)."""

    def __init__(
        self, ttl_s: float = SESSION_TTL_S, keep_s: float = SESSION_KEEP_S, limit: int = 4096
    ):
        self._ttl_s = ttl_s
        self._keep_s = keep_s
        self._limit = limit
        self._kept: dict[str, tuple[Principal, float, float, datetime, tuple[int, int]]] = {}

    def get(
        self, token: str, generation: tuple[int, int], now: datetime
    ) -> tuple[Principal, bool] | None:
        """The principal kept for ``token`` and whether it is stale, or None."""
        kept = self._kept.get(_digest(token))
        if kept is None:
            return None
        principal, fresh_until, keep_until, expires_at, seen_at = kept
        at = time.monotonic()
        if keep_until <= at or now >= expires_at or seen_at != generation:
            return None
        return principal, fresh_until <= at

    def put(
        self, token: str, principal: Principal, expires_at: datetime, generation: tuple[int, int]
    ) -> None:
        if len(self._kept) >= self._limit:
            self._kept.clear()
        at = time.monotonic()
        fresh_until = at + self._ttl_s * (0.5 + secrets.randbelow(1000) / 2000)
        entry = (principal, fresh_until, at + self._keep_s, expires_at, generation)
        self._kept[_digest(token)] = entry

    def drop(self, token: str) -> None:
        self._kept.pop(_digest(token), None)
