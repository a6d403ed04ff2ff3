"""Users, API keys and security events on SQLite and PostgreSQL (SQLAlchemy Core).

Changes to users are rare and not on any hot path: plain SQLAlchemy async transactions
(``BEGIN IMMEDIATE`` on SQLite, as for every writer), one per service call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, RowMapping, Select, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mes.adapters.database import READONLY
from mes.adapters.errors import classified
from mes.adapters.sql_expressions import capped_count
from mes.adapters.sql_security import add_event
from mes.adapters.tables import (
    api_keys,
    api_sessions,
    security_events,
    users,
)
from mes.domain.authority import AuthMethod, Role
from mes.domain.identity import (
    ApiKey,
    EventKind,
    SecurityEvent,
    SecurityEventPage,
    SecurityEventQuery,
    User,
    UserExists,
    UserKind,
)
from mes.domain.paging import bounded_total


def _user_values(user: User) -> dict[str, Any]:
    return {
        "username": user.username,
        "full_name": user.full_name,
        "kind": user.kind.value,
        "roles": sorted(r.value for r in user.roles),
        "disabled": user.disabled,
        "password_hash": user.password_hash,
        "failed_attempts": user.failed_attempts,
        "locked_until": user.locked_until,
        "password_changed_at": user.password_changed_at,
        "password_set_by": user.password_set_by,
        "created_at": user.created_at,
        "created_by": user.created_by,
        "updated_at": user.updated_at,
    }


def user_from_row(m: Mapping[str, Any] | RowMapping) -> User:
    """A user from its row (the ``users`` table's columns by name)."""
    return User(
        username=m["username"],
        full_name=m["full_name"],
        kind=UserKind(m["kind"]),
        roles=frozenset(Role(r) for r in m["roles"]),
        created_at=m["created_at"],
        created_by=m["created_by"],
        updated_at=m["updated_at"],
        disabled=m["disabled"],
        password_hash=m["password_hash"],
        failed_attempts=m["failed_attempts"],
        locked_until=m["locked_until"],
        password_changed_at=m["password_changed_at"],
        password_set_by=m["password_set_by"],
    )


def _key(m: RowMapping) -> ApiKey:
    return ApiKey(**{c.name: m[c.name] for c in api_keys.c})


def security_event_from_row(m: Mapping[str, Any] | RowMapping) -> SecurityEvent:
    """A security event from its row (the ``security_events`` table's columns by name)."""
    return SecurityEvent(
        at=m["at"],
        kind=EventKind(m["kind"]),
        actor=m["actor"],
        method=AuthMethod(m["method"]) if m["method"] else None,
        subject=m["subject"],
        action=m["action"],
        lot_id=m["lot_id"],
        detail=m["detail"],
        seq=m["seq"],
    )


class SqlIdentityTransaction:
    """Reads and writes of users, keys and events inside one transaction."""

    def __init__(self, conn: AsyncConnection):
        self._conn = conn

    @property
    def connection(self) -> AsyncConnection:
        """The transaction's connection (the session store reads with it)."""
        return self._conn

    async def user(self, username: str) -> User | None:
        rows = await self._conn.execute(select(users).where(users.c.username == username))
        row = rows.mappings().first()
        return None if row is None else user_from_row(row)

    async def users(self) -> list[User]:
        rows = await self._conn.execute(select(users).order_by(users.c.username))
        return [user_from_row(r) for r in rows.mappings()]

    async def add_user(self, user: User) -> None:
        try:
            async with self._conn.begin_nested():
                await self._conn.execute(insert(users).values(_user_values(user)))
        except IntegrityError:
            raise UserExists(f"user {user.username} already exists") from None

    async def update_user(self, user: User) -> None:
        values = _user_values(user)
        del values["username"]
        await self._conn.execute(
            update(users).where(users.c.username == user.username).values(values)
        )

    async def end_sessions(self, username: str, at: datetime, keep: str | None = None) -> int:
        ended = (
            update(api_sessions)
            .where(api_sessions.c.username == username, api_sessions.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        if keep is not None:
            ended = ended.where(api_sessions.c.session_id != keep)
        result = await self._conn.execute(ended)
        return int(result.rowcount)

    async def add_key(self, key: ApiKey) -> None:
        values = {c.name: getattr(key, c.name) for c in api_keys.c}
        await self._conn.execute(insert(api_keys).values(values))

    async def key(self, key_id: str) -> ApiKey | None:
        rows = await self._conn.execute(select(api_keys).where(api_keys.c.key_id == key_id))
        row = rows.mappings().first()
        return None if row is None else _key(row)

    async def keys(self, username: str) -> list[ApiKey]:
        k = api_keys.c
        query = select(api_keys).where(k.username == username)
        rows = await self._conn.execute(query.order_by(k.created_at.desc(), k.key_id))
        return [_key(r) for r in rows.mappings()]

    async def revoke_key(self, key: ApiKey) -> None:
        await self._conn.execute(
            update(api_keys)
            .where(api_keys.c.key_id == key.key_id)
            .values(revoked_at=key.revoked_at, revoked_by=key.revoked_by)
        )

    async def add_event(self, event: SecurityEvent) -> None:
        """Append the event to the log's chain, in this transaction
        (:func:`mes.adapters.sql_security.add_event`)."""
        await add_event(self._conn, event)

    async def events(self, limit: int) -> list[SecurityEvent]:
        rows = await self._conn.execute(
            select(security_events).order_by(security_events.c.seq.desc()).limit(limit)
        )
        return [security_event_from_row(r) for r in rows.mappings()][::-1]

    async def event_page(self, query: SecurityEventQuery) -> SecurityEventPage:
        page, count = event_page_statements(query)
        total, exact = bounded_total(int(await self._conn.scalar(count) or 0))
        found = [security_event_from_row(r) for r in (await self._conn.execute(page)).mappings()]
        return SecurityEventPage(found[: query.limit], total, len(found) > query.limit, exact)

    async def has_event(self, seq: int) -> bool:
        found = await self._conn.scalar(
            select(security_events.c.seq).where(security_events.c.seq == seq)
        )
        return found is not None


def event_page_statements(query: SecurityEventQuery) -> tuple[Select[Any], Select[Any]]:
    """A security log page (newest first by seq, the primary key: a stable order; the
    cursor as seq < after; one row more than the page, to say whether more follow) and its
    count (the events the filters select, up to :data:`mes.domain.paging.COUNTED_UP_TO` and
    one), the filters in SQL. One user's events walk
    ix_security_events_actor and ix_security_events_subject (revision 0017), one kind's
    ix_security_events_kind (revision 0023)."""
    e = security_events.c
    where: list[ColumnElement[bool]] = []
    if query.user is not None:
        where.append(or_(e.actor == query.user, e.subject == query.user))
    if query.kind is not None:
        where.append(e.kind == query.kind.value)
    if query.since is not None:
        where.append(e.at >= query.since)
    if query.until is not None:
        where.append(e.at < query.until)
    count = capped_count(security_events, *where)
    if query.after is not None:
        where.append(e.seq < query.after)
    page = select(security_events).where(*where).order_by(e.seq.desc()).limit(query.limit + 1)
    return page, count


class SqlIdentityStore:
    """The :class:`mes.identity.IdentityStore` on one engine."""

    def __init__(self, engine: AsyncEngine):
        self._engine = engine

    @asynccontextmanager
    async def transaction(self, *, readonly: bool = False) -> AsyncIterator[SqlIdentityTransaction]:
        """One transaction, committed when the block ends without an exception;
        ``readonly``: one that only reads (on SQLite a plain BEGIN, not taking the write
        lock: the server reads who is asking at every request)."""
        with classified():  # a database that fails is the store's error, not SQLAlchemy's
            async with self._engine.connect() as plain:
                conn = await plain.execution_options(**{READONLY: True}) if readonly else plain
                async with conn.begin():
                    yield SqlIdentityTransaction(conn)


class SqlSecurityLog:
    """The security log alone (:class:`mes.guard.SecurityLog`): what the lot and equipment
    services record refusals in, each in a transaction of its own."""

    def __init__(self, engine: AsyncEngine):
        self._store = SqlIdentityStore(engine)

    async def record(self, event: SecurityEvent) -> None:
        async with self._store.transaction() as tx:
            await tx.add_event(event)
