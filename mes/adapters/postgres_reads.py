"""A lot's report read from a pkgline PostgreSQL database with asyncpg alone.

Why: as on SQLite (:mod:`mes.adapters.sqlite_reads`), a direct-mode ``pkgline lot show`` is a
process of its own, and SQLAlchemy's asyncio engine, its ORM and the lot store's compiled
statements cost it about 0.35 s of imports, more than the rest of the command. This reader
answers the requests of :func:`mes.lot_reads.report_work` with the statements of
:mod:`mes.adapters.report_reads`, in one read-only REPEATABLE READ transaction (one snapshot,
as the lot service's report reads), and reads each column as SQLAlchemy's types do
(``timestamptz``: aware UTC, ``jsonb``: decoded with :mod:`mes.adapters.jsontext`). A test
compares the two on lots of every kind (tests/mes/test_direct_reads.py).

It connects as the full path does (asyncpg, the same timeouts), but only to a plain URL
(``postgresql://USER[:PASSWORD]@HOST[:PORT]/DB``, no query): any option is read by
SQLAlchemy's dialect alone, so such a URL is left to the full path, as is every failure to
connect (which the full path then reports as ever).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Generator
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg

from mes.adapters import jsontext
from mes.adapters.location import DatabaseTimeouts, check_password_file
from mes.adapters.report_reads import (
    ANY_QUARANTINE,
    FLOW_VERSION_HASHES,
    REVISION,
    NotAnswered,
    Silent,
    plan,
)
from mes.ports_lots import LotRead

T = TypeVar("T")


def _utc(value: datetime) -> datetime:
    """A ``timestamp[tz]`` column as :class:`mes.adapters.tables.UtcDateTime` reads it."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "timestamptz": _utc,
    "timestamp": _utc,
    "jsonb": jsontext.loads,
    "json": jsontext.loads,
}
"""Each column type asyncpg does not read as SQLAlchemy's types do, and how its values
(never NULL) are read."""

_MARK = re.compile(r"\?")


def numbered(sql: str) -> str:
    """``sql`` with its ``?`` placeholders as PostgreSQL's ``$1``, ``$2``, ..."""
    count = itertools.count(1)
    return _MARK.sub(lambda _: f"${next(count)}", sql)


class PostgresReader:
    """A read-only transaction on a pkgline PostgreSQL database (an async context manager:
    it connects, and closes the connection on leaving)."""

    def __init__(self, dsn: str, *, timeouts: DatabaseTimeouts | None = None):
        self._dsn = dsn
        self._timeouts = timeouts or DatabaseTimeouts()
        self._conn: Any = None

    async def __aenter__(self) -> PostgresReader:
        if urlsplit(self._dsn).password is None:
            check_password_file()  # what the full path refuses (DatabaseUrlError) it refuses
        try:
            self._conn = await asyncpg.connect(
                self._dsn,
                timeout=self._timeouts.connect_s,
                command_timeout=self._timeouts.statement_s,
            )
        except TimeoutError as exc:
            raise Silent("the database did not answer in time") from exc
        except (OSError, asyncpg.PostgresError) as exc:
            raise NotAnswered(f"cannot connect: {exc}") from exc
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._conn is not None:
            await self._conn.close(timeout=self._timeouts.statement_s)

    async def revision(self) -> str | None:
        """The schema revision recorded in the database (None: no pkgline schema)."""
        try:
            value = await self._conn.fetchval(REVISION)
        except asyncpg.PostgresError:
            return None
        return None if value is None else str(value)

    async def run(self, work: Generator[LotRead, Any, T]) -> T:
        """``work`` run to its end in one read-only transaction: each request it yields
        answered (:meth:`answer`), its result returned, whatever it raises raised."""
        try:
            async with self._conn.transaction(isolation="repeatable_read", readonly=True):
                answer: Any = None
                while True:
                    try:
                        request = work.send(answer)
                    except StopIteration as done:
                        return done.value  # type: ignore[no-any-return]
                    answer = await self.answer(request)
        finally:
            work.close()

    async def answer(self, request: LotRead) -> Any:
        """What the lot store answers to ``request`` (:mod:`mes.adapters.report_reads`)."""
        step = plan(request)
        try:
            statement = await self._conn.prepare(numbered(step.sql))
            records = await statement.fetch(*step.values)
        except asyncpg.PostgresError as exc:
            raise NotAnswered(f"{step.table}: {exc}") from exc
        readers = [
            (attribute.name, _CONVERTERS.get(attribute.type.name))
            for attribute in statement.get_attributes()
        ]
        rows = [
            {
                n: (v if f is None or v is None else f(v))
                for (n, f), v in zip(readers, r, strict=True)
            }
            for r in records
        ]
        return step.answer(rows)

    async def any_quarantined(self) -> bool:
        """Whether any material lot is quarantined now (:data:`ANY_QUARANTINE`)."""
        try:
            return await self._conn.fetchval(ANY_QUARANTINE) is not None
        except asyncpg.PostgresError as exc:
            raise NotAnswered(f"materials: {exc}") from exc

    async def flow_version_hashes(self) -> dict[tuple[str, int], str]:
        """The content hash of every published flow version, by flow and version (empty:
        none is published, and every lot is on its file's flow)."""
        rows = await self._conn.fetch(FLOW_VERSION_HASHES)
        return {(str(r[0]), int(r[1])): str(r[2]) for r in rows}
