"""The server's sessions on SQLite and PostgreSQL (:class:`mes.sessions.SessionStore`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from mes.adapters.errors import classified
from mes.adapters.sql_identity import SqlIdentityStore
from mes.adapters.tables import api_sessions
from mes.domain.identity import User
from mes.sessions import ApiSession


class SqlSessionStore:
    def __init__(self, engine: AsyncEngine):
        self._engine = engine
        self._users = SqlIdentityStore(engine)

    async def add(self, session: ApiSession) -> None:
        values = {c.name: getattr(session, c.name) for c in api_sessions.c}
        with classified():
            async with self._engine.begin() as conn:
                await conn.execute(insert(api_sessions).values(values))

    async def get(self, session_id: str) -> tuple[ApiSession, User] | None:
        async with self._users.transaction(readonly=True) as tx:
            rows = await tx.connection.execute(
                select(api_sessions).where(api_sessions.c.session_id == session_id)
            )
            row = rows.mappings().first()
            if row is None:
                return None
            user = await tx.user(row["username"])
        if user is None:
            return None
        return ApiSession(**{c.name: row[c.name] for c in api_sessions.c}), user

    async def revoke(self, session_id: str, at: datetime) -> None:
        with classified():
            async with self._engine.begin() as conn:
                await conn.execute(
                    update(api_sessions)
                    .where(api_sessions.c.session_id == session_id)
                    .values(revoked_at=at)
                )
