"""Running SQLAlchemy Core statements straight on the pooled driver connection.

Every statement of the lot store is written once, in SQLAlchemy Core, and compiled once per
dialect. Executing it through SQLAlchemy's async layer costs more CPU than the database call
itself (on PostgreSQL about 70 us of Python per statement against 27 us for asyncpg), and the
line controller moves lots from many tasks on one event loop. So a unit of work borrows a
connection from SQLAlchemy's pool and runs the compiled SQL on the driver (asyncpg or
aiosqlite), applying SQLAlchemy's own type processors for the dialect to parameters and
results: the stored form of every value is exactly SQLAlchemy's. Transactions are the
driver's: ``BEGIN IMMEDIATE`` (or ``BEGIN`` when read-only) on SQLite, an asyncpg
transaction on PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

Processor = Callable[[Any], Any] | None
_MISSING = object()


class IntegrityViolation(Exception):
    """A unique or foreign key constraint refused a write (whatever the driver)."""


class DatabaseUnavailable(Exception):
    """The database cannot be used now: connection refused or lost, or SQLite still locked
    after its busy timeout. Nothing was committed by the failed unit of work."""


@contextmanager
def _translated(
    integrity: tuple[type[BaseException], ...], unavailable: tuple[type[BaseException], ...]
) -> Iterator[None]:
    try:
        yield
    except integrity as exc:
        raise IntegrityViolation(str(exc)) from exc
    except unavailable as exc:
        raise DatabaseUnavailable(str(exc) or type(exc).__name__) from exc


_PG_INTEGRITY = (asyncpg.IntegrityConstraintViolationError,)
_PG_UNAVAILABLE = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    OSError,
)
_SQLITE_INTEGRITY = (sqlite3.IntegrityError,)
_SQLITE_UNAVAILABLE = (sqlite3.OperationalError, OSError)


@dataclass(frozen=True, slots=True)
class CompiledStatement:
    """A statement compiled for one dialect, with what it takes to run it on the driver."""

    sql: str
    params: tuple[tuple[str, Processor, Any], ...]
    """Parameter names in positional order, each with its bind processor and the value it
    takes when none is given (binds the compiler adds, such as SQLite's ``OFFSET ?``)."""
    columns: tuple[tuple[str, Processor], ...]
    """Result column names in order, each with its result processor."""

    @classmethod
    def compile(
        cls, statement: ClauseElement, dialect: Dialect, keys: Iterable[str] | None = None
    ) -> CompiledStatement:
        """Compile ``statement``; for an INSERT/UPDATE without explicit bind parameters,
        ``keys`` names the columns that will be given (as SQLAlchemy does per call)."""
        compiled = statement.compile(
            dialect=dialect, column_keys=list(keys) if keys is not None else None
        )
        assert isinstance(compiled, SQLCompiler)
        order = compiled.positiontup or []
        params = tuple(
            (
                name,
                compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect),
                _MISSING if compiled.binds[name].required else compiled.binds[name].value,
            )
            for name in order
        )
        exported = getattr(statement, "exported_columns", None) or ()
        columns = tuple(
            (
                str(column.key),
                column.type.dialect_impl(dialect).result_processor(dialect, None),
            )
            for column in exported
        )
        return cls(compiled.string, params, columns)

    def arguments(self, values: Mapping[str, Any]) -> list[Any]:
        out = []
        for name, process, default in self.params:
            value = values.get(name, default)
            if value is _MISSING:
                raise KeyError(f"statement needs a value for {name!r}")
            out.append(process(value) if process is not None and value is not None else value)
        return out

    def row(self, raw: Sequence[Any]) -> dict[str, Any]:
        return {
            name: process(value) if process is not None and value is not None else value
            for (name, process), value in zip(self.columns, raw, strict=True)
        }


class DriverSession(Protocol):
    """One driver connection inside a unit of work."""

    async def begin(self, *, readonly: bool) -> None: ...

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...

    async def fetch(
        self, statement: CompiledStatement, values: Mapping[str, Any]
    ) -> list[dict[str, Any]]: ...

    async def execute(self, statement: CompiledStatement, values: Mapping[str, Any]) -> int:
        """Run a statement without result rows; the number of rows it changed."""
        ...

    async def execute_many(
        self, statement: CompiledStatement, values: Sequence[Mapping[str, Any]]
    ) -> None: ...


class AsyncpgSession:
    """PostgreSQL through asyncpg: statements are prepared and cached by asyncpg itself."""

    def __init__(self, connection: Any):
        self._conn = connection
        self._transaction: Any = None

    async def begin(self, *, readonly: bool) -> None:
        with _translated(_PG_INTEGRITY, _PG_UNAVAILABLE):
            self._transaction = self._conn.transaction(readonly=readonly)
            await self._transaction.start()

    async def commit(self) -> None:
        transaction, self._transaction = self._transaction, None
        with _translated(_PG_INTEGRITY, _PG_UNAVAILABLE):
            await transaction.commit()

    async def rollback(self) -> None:
        transaction, self._transaction = self._transaction, None
        if transaction is not None:
            with _translated(_PG_INTEGRITY, _PG_UNAVAILABLE):
                await transaction.rollback()

    async def fetch(
        self, statement: CompiledStatement, values: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        with _translated(_PG_INTEGRITY, _PG_UNAVAILABLE):
            records = await self._conn.fetch(statement.sql, *statement.arguments(values))
        return [statement.row(r) for r in records]

    async def execute(self, statement: CompiledStatement, values: Mapping[str, Any]) -> int:
        with _translated(_PG_INTEGRITY, _PG_UNAVAILABLE):
            status: str = await self._conn.execute(statement.sql, *statement.arguments(values))
        # asyncpg returns the command tag: "UPDATE 1", "INSERT 0 3", "DELETE 0"
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def execute_many(
        self, statement: CompiledStatement, values: Sequence[Mapping[str, Any]]
    ) -> None:
        with _translated(_PG_INTEGRITY, _PG_UNAVAILABLE):
            await self._conn.executemany(statement.sql, [statement.arguments(v) for v in values])


class AiosqliteSession:
    """SQLite through aiosqlite. Each call is one hop to the connection's thread, so results
    are fetched in the same hop (``execute_fetchall``) and UPDATEs report their rows with
    RETURNING rather than through a cursor."""

    def __init__(self, connection: Any):
        self._conn = connection

    async def begin(self, *, readonly: bool) -> None:
        with _translated(_SQLITE_INTEGRITY, _SQLITE_UNAVAILABLE):
            await self._conn.execute_fetchall("BEGIN" if readonly else "BEGIN IMMEDIATE")

    async def commit(self) -> None:
        with _translated(_SQLITE_INTEGRITY, _SQLITE_UNAVAILABLE):
            await self._conn.execute_fetchall("COMMIT")

    async def rollback(self) -> None:
        if self._conn.in_transaction:
            with _translated(_SQLITE_INTEGRITY, _SQLITE_UNAVAILABLE):
                await self._conn.execute_fetchall("ROLLBACK")

    async def fetch(
        self, statement: CompiledStatement, values: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        with _translated(_SQLITE_INTEGRITY, _SQLITE_UNAVAILABLE):
            rows = await self._conn.execute_fetchall(statement.sql, statement.arguments(values))
        return [statement.row(r) for r in rows]

    async def execute(self, statement: CompiledStatement, values: Mapping[str, Any]) -> int:
        with _translated(_SQLITE_INTEGRITY, _SQLITE_UNAVAILABLE):
            cursor = await self._conn.execute(statement.sql, statement.arguments(values))
            try:
                return int(cursor.rowcount)
            finally:
                await cursor.close()

    async def execute_many(
        self, statement: CompiledStatement, values: Sequence[Mapping[str, Any]]
    ) -> None:
        with _translated(_SQLITE_INTEGRITY, _SQLITE_UNAVAILABLE):
            await self._conn.executemany(statement.sql, [statement.arguments(v) for v in values])


def session_for(dialect_name: str, driver_connection: Any) -> DriverSession:
    if dialect_name == "postgresql":
        return AsyncpgSession(driver_connection)
    if dialect_name == "sqlite":
        return AiosqliteSession(driver_connection)
    raise ValueError(f"no driver session for {dialect_name}")
