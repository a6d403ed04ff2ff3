"""The server's sessions on SQLite and PostgreSQL (:class:`mes.sessions.SessionStore`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from mes.adapters.driver import CompiledStatement, session_for
from mes.adapters.errors import classified
from mes.adapters.sql_identity import user_from_row
from mes.adapters.tables import api_sessions, users
from mes.domain.identity import User
from mes.sessions import ApiSession


class SqlSessionStore:
    def __init__(self, engine: AsyncEngine):
        self._engine = engine
        joined = select(
            *(c.label(f"s_{c.name}") for c in api_sessions.c),
            *(c.label(f"u_{c.name}") for c in users.c),
        ).join_from(api_sessions, users, api_sessions.c.username == users.c.username)
        self._by_id = CompiledStatement(
            joined.where(api_sessions.c.session_id == bindparam("session_id")), engine.dialect
        )

    async def add(self, session: ApiSession) -> None:
        values = {c.name: getattr(session, c.name) for c in api_sessions.c}
        with classified():
            async with self._engine.begin() as conn:
                await conn.execute(insert(api_sessions).values(values))

    async def get(self, session_id: str) -> tuple[ApiSession, User] | None:
        # Asked at every request that carries a token: one statement, on the driver, with no
        # transaction around it (a single SELECT reads one snapshot), so on SQLite one hop to
        # the connection's thread instead of four; under load each hop waits its turn on the
        # event loop.
        with classified():
            async with self._engine.connect() as conn:
                raw = await conn.get_raw_connection()
                session = session_for(self._engine.dialect.name, raw.driver_connection)
                rows = await session.fetch(self._by_id, {"session_id": session_id})
        if not rows:
            return None
        row = rows[0]
        found = ApiSession(**{c.name: row[f"s_{c.name}"] for c in api_sessions.c})
        return found, user_from_row({c.name: row[f"u_{c.name}"] for c in users.c})

    async def revoke(self, session_id: str, at: datetime) -> None:
        with classified():
            async with self._engine.begin() as conn:
                await conn.execute(
                    update(api_sessions)
                    .where(api_sessions.c.session_id == session_id)
                    .values(revoked_at=at)
                )
