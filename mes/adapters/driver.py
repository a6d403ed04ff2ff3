"""Running SQLAlchemy Core statements straight on the pooled driver connection.

Every statement of the lot store is written once, in SQLAlchemy Core, and compiled once per
dialect. Executing it through SQLAlchemy's async layer costs more CPU than the database call
itself (on PostgreSQL about 70 us of Python per statement against 27 us for asyncpg), and the
line controller moves lots from many tasks on one event loop. So a unit of work borrows a
connection from SQLAlchemy's pool and runs the compiled SQL on the driver (asyncpg or
aiosqlite), applying SQLAlchemy's own type processors for the dialect to parameters and
results: the stored form of every value is exactly SQLAlchemy's. Transactions are the
driver's: ``BEGIN IMMEDIATE`` (or ``BEGIN`` when read-only) on SQLite, an asyncpg
transaction on PostgreSQL (none when read-only: :class:`AsyncpgSession`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from mes.adapters.combined import MAX_COMBINED, combined_sql

# The store's errors are raised from here (and imported from here by its callers).
from mes.adapters.errors import DatabaseError as DatabaseError
from mes.adapters.errors import DatabaseReadOnly as DatabaseReadOnly
from mes.adapters.errors import DatabaseRetryable as DatabaseRetryable
from mes.adapters.errors import DatabaseUnavailable as DatabaseUnavailable
from mes.adapters.errors import IntegrityViolation as IntegrityViolation
from mes.adapters.errors import classified as _classified

Processor = Callable[[Any], Any] | None
_MISSING = object()


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    params: tuple[tuple[str, Processor, Any], ...]
    columns: tuple[tuple[str, Processor], ...]
    names: tuple[str, ...]
    """The result columns' names, in order."""
    processed: tuple[tuple[str, Callable[[Any], Any]], ...]
    """The result columns that have a processor (on asyncpg few do), with it."""


class CompiledStatement:
    """A statement compiled for one dialect, with what it takes to run it on the driver.

    Compiled on first use, not when made: a store makes all its statements up front, and a
    CLI command that runs three of them should not compile fifty (a tenth of its start-up).
    Two threads compiling the same statement at once (aiosqlite's) both get the same."""

    __slots__ = ("_compiled", "_dialect", "_keys", "_statement")

    def __init__(
        self, statement: ClauseElement, dialect: Dialect, keys: Iterable[str] | None = None
    ) -> None:
        self._statement = statement
        self._dialect = dialect
        self._keys = list(keys) if keys is not None else None
        self._compiled: _Compiled | None = None

    @classmethod
    def compile(
        cls, statement: ClauseElement, dialect: Dialect, keys: Iterable[str] | None = None
    ) -> CompiledStatement:
        """``statement`` for ``dialect``; for an INSERT/UPDATE without explicit bind
        parameters, ``keys`` names the columns that will be given (as SQLAlchemy does per
        call)."""
        return cls(statement, dialect, keys)

    @property
    def sql(self) -> str:
        return (self._compiled or self._compile()).sql

    @property
    def params(self) -> tuple[tuple[str, Processor, Any], ...]:
        """Parameter names in positional order, each with its bind processor and the value it
        takes when none is given (binds the compiler adds, such as SQLite's ``OFFSET ?``)."""
        return (self._compiled or self._compile()).params

    @property
    def columns(self) -> tuple[tuple[str, Processor], ...]:
        """Result column names in order, each with its result processor."""
        return (self._compiled or self._compile()).columns

    def _compile(self) -> _Compiled:
        statement, dialect = self._statement, self._dialect
        compiled = statement.compile(dialect=dialect, column_keys=self._keys)
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
        self._compiled = _Compiled(
            compiled.string,
            params,
            columns,
            tuple(name for name, _ in columns),
            tuple((name, process) for name, process in columns if process is not None),
        )
        return self._compiled

    def arguments(self, values: Mapping[str, Any]) -> list[Any]:
        out = []
        for name, process, default in self.params:
            value = values.get(name, default)
            if value is _MISSING:
                raise KeyError(f"statement needs a value for {name!r}")
            out.append(process(value) if process is not None and value is not None else value)
        return out

    def row(self, raw: Sequence[Any]) -> dict[str, Any]:
        compiled = self._compiled or self._compile()
        if len(raw) != len(compiled.names):
            raise ValueError(f"a row of {len(raw)} values for {len(compiled.names)} columns")
        found = dict(zip(compiled.names, raw, strict=True))
        for name, process in compiled.processed:
            value = found[name]
            if value is not None:
                found[name] = process(value)
        return found


@dataclass(frozen=True, slots=True)
class Fetch:
    """Run a statement; its rows (``list[dict]``) are sent back into the plan, or with
    ``raw`` as the driver gives them (:meth:`DriverSession.fetch_raw`)."""

    statement: CompiledStatement
    values: Mapping[str, Any]
    raw: bool = False


@dataclass(frozen=True, slots=True)
class Execute:
    """Run a statement without result rows; the number of rows it changed is sent back."""

    statement: CompiledStatement
    values: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ExecuteMany:
    """Run a statement once per set of values; None is sent back."""

    statement: CompiledStatement
    values: Sequence[Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class FetchAll:
    """Run reads that do not depend on one another, in one round trip where the driver can
    (:mod:`mes.adapters.combined`); the list of their results is sent back, each as its
    :class:`Fetch` would get it."""

    fetches: tuple[Fetch, ...]


Step = Fetch | FetchAll | Execute | ExecuteMany
T = TypeVar("T")
Plan = Generator[Step, Any, T]
"""A transaction's statements, written once for every driver: a generator that yields the
statements to run and gets each one's result back (an IntegrityViolation is thrown into it,
so it can say what the constraint means), and returns the transaction's result (the SQL
store makes one from :data:`mes.ports.Work`). The asyncpg session awaits each statement in
turn; the SQLite session runs the whole plan in one call on the connection's thread, so a
writer holds SQLite's one write lock for one thread hop, not one per statement."""


async def run_plan(session: DriverSession, plan: Plan[T]) -> T:
    """Run ``plan`` one awaited statement at a time on ``session``."""
    result: Any = None
    failure: IntegrityViolation | None = None
    while True:
        done, step = _resume(plan, result, failure)
        if done:
            return step  # type: ignore[no-any-return]
        result, failure = None, None
        try:
            if isinstance(step, Fetch):
                fetch = session.fetch_raw if step.raw else session.fetch
                result = await fetch(step.statement, step.values)
            elif isinstance(step, FetchAll):
                result = await session.fetch_all(step.fetches)
            elif isinstance(step, Execute):
                result = await session.execute(step.statement, step.values)
            else:
                await session.execute_many(step.statement, step.values)
        except IntegrityViolation as exc:
            failure = exc


class DriverSession(Protocol):
    """One driver connection inside a unit of work."""

    async def begin(self, *, readonly: bool) -> None: ...

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...

    async def fetch(
        self, statement: CompiledStatement, values: Mapping[str, Any]
    ) -> list[dict[str, Any]]: ...

    async def fetch_raw(
        self, statement: CompiledStatement, values: Mapping[str, Any]
    ) -> list[Sequence[Any]]:
        """The rows as the driver gives them, in column order, for the caller to convert
        (:meth:`CompiledStatement.row`) only those it needs."""
        ...

    async def fetch_all(self, fetches: Sequence[Fetch]) -> list[Any]:
        """Each of ``fetches``' rows (as :meth:`fetch` or :meth:`fetch_raw` gives them), in
        as few round trips as the driver can."""
        ...

    async def execute(self, statement: CompiledStatement, values: Mapping[str, Any]) -> int:
        """Run a statement without result rows; the number of rows it changed."""
        ...

    async def execute_many(
        self, statement: CompiledStatement, values: Sequence[Mapping[str, Any]]
    ) -> None: ...

    async def run(self, plan: Plan[T], *, commit: bool = False) -> T:
        """Run a write plan inside this transaction, and with ``commit`` commit it."""
        ...


class AsyncpgSession:
    """PostgreSQL through asyncpg: statements are prepared and cached by asyncpg itself.

    A read-only unit of work runs its statements without BEGIN and COMMIT: at READ COMMITTED
    (pkgline's level) every statement of a transaction reads its own snapshot anyway, so the
    transaction would add nothing but two round trips to each read."""

    def __init__(self, connection: Any):
        self._conn = connection
        self._transaction: Any = None

    async def begin(self, *, readonly: bool) -> None:
        if readonly:
            return
        with _classified():
            self._transaction = self._conn.transaction(readonly=readonly)
            await self._transaction.start()

    async def commit(self) -> None:
        transaction, self._transaction = self._transaction, None
        if transaction is None:
            return  # read-only: nothing to commit
        with _classified():
            await transaction.commit()

    async def rollback(self) -> None:
        transaction, self._transaction = self._transaction, None
        if transaction is not None:
            with _classified():
                await transaction.rollback()

    async def fetch(
        self, statement: CompiledStatement, values: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        return [statement.row(r) for r in await self.fetch_raw(statement, values)]

    async def fetch_raw(
        self, statement: CompiledStatement, values: Mapping[str, Any]
    ) -> list[Sequence[Any]]:
        with _classified():
            records: list[Sequence[Any]] = await self._conn.fetch(
                statement.sql, *statement.arguments(values)
            )
        return records

    async def fetch_all(self, fetches: Sequence[Fetch]) -> list[Any]:
        found: list[Any] = []
        for start in range(0, len(fetches), MAX_COMBINED):
            found.extend(await self._fetch_combined(fetches[start : start + MAX_COMBINED]))
        return found

    async def _fetch_combined(self, fetches: Sequence[Fetch]) -> list[Any]:
        arguments = [f.statement.arguments(f.values) for f in fetches]
        sql = combined_sql(
            tuple(f.statement.sql for f in fetches), tuple(len(a) for a in arguments)
        )
        with _classified():
            row = await self._conn.fetchrow(sql, *(v for a in arguments for v in a))
        return [
            list(rows) if f.raw else [f.statement.row(r) for r in rows]
            for f, rows in zip(fetches, row, strict=True)
        ]

    async def execute(self, statement: CompiledStatement, values: Mapping[str, Any]) -> int:
        with _classified():
            status: str = await self._conn.execute(statement.sql, *statement.arguments(values))
        # asyncpg returns the command tag: "UPDATE 1", "INSERT 0 3", "DELETE 0"
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def execute_many(
        self, statement: CompiledStatement, values: Sequence[Mapping[str, Any]]
    ) -> None:
        with _classified():
            await self._conn.executemany(statement.sql, [statement.arguments(v) for v in values])

    async def run(self, plan: Plan[T], *, commit: bool = False) -> T:
        result = await run_plan(self, plan)
        if commit:
            await self.commit()
        return result


class AiosqliteSession:
    """SQLite through aiosqlite. Each call is one hop to the connection's thread and back to
    the event loop, which under load is the larger part of its time, so the session makes
    as few as it can: ``BEGIN`` goes with the first statement, results are fetched in the
    same hop, a write plan (:data:`Plan`) runs whole in one hop, whatever the number of its
    statements, and with its COMMIT when asked to. Writers hold SQLite's one write lock
    from ``BEGIN IMMEDIATE`` to COMMIT: the fewer hops in between, the shorter every other
    writer waits."""

    def __init__(self, connection: Any):
        self._conn = connection
        self._begin: str | None = None
        """The BEGIN still to send with the first statement."""

    async def begin(self, *, readonly: bool) -> None:
        self._begin = "BEGIN" if readonly else "BEGIN IMMEDIATE"

    async def commit(self) -> None:
        if self._begin is not None:  # nothing was run: nothing to commit
            self._begin = None
            return
        with _classified():
            await self._conn.execute_fetchall("COMMIT")

    async def rollback(self) -> None:
        if self._begin is not None:  # nothing was sent: no transaction to end
            self._begin = None
            return
        with _classified():
            # Whether a transaction is open is asked on the thread, after every call sent
            # before: a caller cancelled while its first statement (with BEGIN) waited there
            # would otherwise see none yet, and leave one open on a pooled connection.
            await self._conn._execute(_rollback_if_open, self._conn)

    async def fetch(
        self, statement: CompiledStatement, values: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        return [statement.row(r) for r in await self.fetch_raw(statement, values)]

    async def fetch_raw(
        self, statement: CompiledStatement, values: Mapping[str, Any]
    ) -> list[Sequence[Any]]:
        if self._begin is not None:
            rows: list[Sequence[Any]] = await self.run(_single(Fetch(statement, values, raw=True)))
            return rows
        with _classified():
            found = await self._conn.execute_fetchall(statement.sql, statement.arguments(values))
        return list(found)

    async def fetch_all(self, fetches: Sequence[Fetch]) -> list[Any]:
        found: list[Any] = await self.run(_single(FetchAll(tuple(fetches))))
        return found

    async def execute(self, statement: CompiledStatement, values: Mapping[str, Any]) -> int:
        changed: int = await self.run(_single(Execute(statement, values)))
        return changed

    async def execute_many(
        self, statement: CompiledStatement, values: Sequence[Mapping[str, Any]]
    ) -> None:
        await self.run(_single(ExecuteMany(statement, values)))

    async def run(self, plan: Plan[T], *, commit: bool = False) -> T:
        begin, self._begin = self._begin, None
        with _classified():
            # aiosqlite has no public call for "run this function on the connection's
            # thread": _execute and _conn are its own (it is pinned for them in pyproject).
            result: T = await self._conn._execute(self._run_in_thread, plan, begin, commit)
        return result

    def _run_in_thread(self, plan: Plan[T], begin: str | None, commit: bool) -> T:
        db: sqlite3.Connection = self._conn._conn
        if begin is not None:
            db.execute(begin)
        result = _drive(db, plan)
        if commit:
            db.execute("COMMIT")
        return result

    async def run_each(self, plans: Sequence[Plan[Any]]) -> list[Outcome]:
        begin, self._begin = self._begin, None
        with _classified():
            outcomes: list[Outcome] = await self._conn._execute(
                self._run_each_in_thread, plans, begin
            )
        return outcomes

    def _run_each_in_thread(self, plans: Sequence[Plan[Any]], begin: str | None) -> list[Outcome]:
        db: sqlite3.Connection = self._conn._conn
        if begin is not None:
            db.execute(begin)
        outcomes: list[Outcome] = []
        for plan in plans:
            db.execute("SAVEPOINT plan")
            try:
                result = _drive(db, plan)
            except sqlite3.OperationalError:
                raise  # the database, not this plan: nothing of the group is committed
            except Exception as exc:
                db.execute("ROLLBACK TO plan")
                db.execute("RELEASE plan")
                outcomes.append(Failed(exc))
            else:
                db.execute("RELEASE plan")
                outcomes.append(Done(result))
        db.execute("COMMIT")
        return outcomes


@dataclass(frozen=True, slots=True)
class Done:
    """A plan of a group that was written (and committed with the group): what it returned."""

    value: Any


@dataclass(frozen=True, slots=True)
class Failed:
    """A plan of a group that raised: nothing of it was written; the others were."""

    error: Exception


Outcome = Done | Failed


def _drive(db: sqlite3.Connection, plan: Plan[T]) -> T:
    """Run ``plan`` on ``db``, on the connection's thread."""
    result: Any = None
    failure: IntegrityViolation | None = None
    while True:
        done, step = _resume(plan, result, failure)
        if done:
            return step  # type: ignore[no-any-return]
        result, failure = None, None
        try:
            if isinstance(step, Fetch):
                result = _fetch(db, step)
            elif isinstance(step, FetchAll):  # no round trips to save: one after the other
                result = [_fetch(db, f) for f in step.fetches]
            elif isinstance(step, Execute):
                cursor = db.execute(step.statement.sql, step.statement.arguments(step.values))
                result = cursor.rowcount
                cursor.close()
            else:
                db.executemany(
                    step.statement.sql, [step.statement.arguments(v) for v in step.values]
                )
        except sqlite3.IntegrityError as exc:
            failure = IntegrityViolation(str(exc))
            failure.__cause__ = exc


def _fetch(db: sqlite3.Connection, step: Fetch) -> list[Any]:
    rows = db.execute(step.statement.sql, step.statement.arguments(step.values)).fetchall()
    return rows if step.raw else list(map(step.statement.row, rows))


def _rollback_if_open(connection: Any) -> None:
    db: sqlite3.Connection = connection._conn
    if db.in_transaction:
        db.execute("ROLLBACK")


def _single(step: Step) -> Plan[Any]:
    """A plan of one statement, returning its result."""
    return (yield step)


def _resume(plan: Plan[T], result: Any, failure: IntegrityViolation | None) -> tuple[bool, Any]:
    """Give the plan the last statement's result (or failure): (False, next step), or
    (True, what the plan returns)."""
    try:
        return False, plan.send(result) if failure is None else plan.throw(failure)
    except StopIteration as finished:
        return True, finished.value


def session_for(dialect_name: str, driver_connection: Any) -> DriverSession:
    if dialect_name == "postgresql":
        return AsyncpgSession(driver_connection)
    if dialect_name == "sqlite":
        return AiosqliteSession(driver_connection)
    raise ValueError(f"no driver session for {dialect_name}")
