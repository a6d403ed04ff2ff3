"""The server's sessions: a person's password login (:meth:`IdentityService.login`, with its
lockout and security events) gives an expiring token; each request with it is that person.

Tokens are ``pks_<session id>_<secret>``: a random 256-bit secret of which only SHA-256 is
stored (as for API keys: a random secret needs no slow hash), compared in constant time.
Stored, not signed: a session ends when its person logs out, when it expires, or when the
account is disabled, all on the server's word at the next request (a signed token would hold
until it expires whatever happened meanwhile). The token is never logged, never in a URL.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from mes.domain.authority import AuthMethod, Principal
from mes.domain.identity import LoginRefused, User
from mes.identity import IdentityService

SESSION_PREFIX = "pks"
DEFAULT_LIFETIME = timedelta(hours=8)
"""A session holds one shift by default (``[api] session_hours``)."""


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
    """``(session id, secret)`` of a session token, or None when it is not one."""
    prefix, _, rest = token.partition("_")
    session_id, _, secret = rest.partition("_")
    if prefix != SESSION_PREFIX or not session_id or not secret:
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
    ):
        self._identity = identity
        self._store = store
        self._lifetime = lifetime
        self._clock = clock

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
        parts = split_token(token)
        found = await self._store.get(parts[0]) if parts is not None else None
        now = self._clock()
        why = "unknown session"
        if parts is not None and found is not None:
            session, user = found
            if not hmac.compare_digest(session.token_hash, _digest(parts[1])):
                why = "unknown session"
            elif session.revoked_at is not None:
                why = "session ended (logged out)"
            elif now >= session.expires_at:
                why = "session expired"
            elif user.disabled:
                why = "account disabled"
            else:
                return user.principal(AuthMethod.SESSION)
        raise SessionRefused(why)

    async def logout(self, token: str) -> bool:
        """End the token's session (True), or False when it is no live session of its own."""
        parts = split_token(token)
        found = await self._store.get(parts[0]) if parts is not None else None
        if parts is None or found is None:
            return False
        session, _ = found
        if not hmac.compare_digest(session.token_hash, _digest(parts[1])):
            return False
        if session.revoked_at is None:
            await self._store.revoke(session.session_id, self._clock())
        return True
