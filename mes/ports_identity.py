"""The identity service's seams: the password hasher and the store of users, API keys,
sessions and security events (:mod:`mes.adapters.sql_identity`, :mod:`mes.adapters.passwords`)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from mes.domain.identity import (
    ApiKey,
    SecurityEvent,
    SecurityEventPage,
    SecurityEventQuery,
    User,
)


class Passwords(Protocol):
    def hash(self, password: str) -> str: ...

    def verify(self, hashed: str, password: str) -> bool: ...


class IdentityTransaction(Protocol):
    async def user(self, username: str) -> User | None: ...

    async def users(self) -> list[User]: ...

    async def add_user(self, user: User) -> None:
        """UserExists when the name is taken."""
        ...

    async def update_user(self, user: User) -> None: ...

    async def end_sessions(self, username: str, at: datetime, keep: str | None = None) -> int:
        """End the user's live sessions (all but ``keep``, a session id): how many."""
        ...

    async def add_key(self, key: ApiKey) -> None: ...

    async def key(self, key_id: str) -> ApiKey | None: ...

    async def keys(self, username: str) -> list[ApiKey]:
        """The keys issued to ``username``, revoked ones too, the newest first."""
        ...

    async def revoke_key(self, key: ApiKey) -> None: ...

    async def add_event(self, event: SecurityEvent) -> None: ...

    async def events(self, limit: int) -> list[SecurityEvent]:
        """The newest ``limit`` events, oldest first."""
        ...

    async def event_page(self, query: SecurityEventQuery) -> SecurityEventPage:
        """The page ``query`` asks for (newest first), its total and whether more follow."""
        ...

    async def has_event(self, seq: int) -> bool: ...


class IdentityStore(Protocol):
    def transaction(
        self, *, readonly: bool = False
    ) -> AbstractAsyncContextManager[IdentityTransaction]:
        """One transaction, committed when the block ends without an exception (``readonly``:
        one that only reads)."""
        ...
