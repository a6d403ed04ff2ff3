"""The lot repository and unit of work for SQLite and PostgreSQL.

Every statement is SQLAlchemy Core, built once and compiled once per dialect; a unit of work
runs them on the pooled driver connection (:mod:`mes.adapters.driver`). Lots are read with
their carriers in one query and written with an optimistic version check:
``UPDATE lots ... WHERE id = :id AND version = :expected``. When another transaction moved the
lot first, no row matches and the change is refused with ConcurrentUpdate. Every history entry
is mirrored by an outbox row in the same transaction, and carries the hash of the entry before
it and its own (:mod:`mes.domain.audit`); the lot row keeps the hash of its newest entry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mes.adapters.driver import (
    AiosqliteSession,
    CompiledStatement,
    DatabaseRetryable,
    DatabaseUnavailable,
    Done,
    DriverSession,
    Outcome,
    session_for,
)
from mes.adapters.errors import classify
from mes.adapters.health import DatabaseHealth
from mes.adapters.outbox import OutboxSignal
from mes.adapters.rows import entry_from_row, group_lots, job_from_row
from mes.adapters.sql_equipment import EquipmentStatements, SqlEquipmentRepository
from mes.adapters.sql_history import history_page_statements
from mes.adapters.sql_plans import work_plan
from mes.adapters.sql_statements import (
    HeadCache,
    Statements,
    counted_by_state,
    page_statements,
    tool_job_page_statements,
)
from mes.domain.common import no_lot
from mes.domain.errors import InvalidInput
from mes.domain.model import Lot, LotState
from mes.domain.paging import bounded_total
from mes.ports import (
    HistoryPage,
    HistoryQuery,
    LotPage,
    LotQuery,
    ToolJob,
    ToolJobPage,
    ToolJobQuery,
    Work,
)

T = TypeVar("T")


class SqlLotRepository:
    """:class:`mes.ports.LotRepository` on one driver session (inside a transaction)."""

    def __init__(self, session: DriverSession, statements: Statements):
        self._db = session
        self._sql = statements

    async def find(
        self, *, states: Sequence[LotState] = (), flow: str | None = None, limit: int = 1000
    ) -> list[Lot]:
        values: dict[str, Any] = {f"s{i}": s.value for i, s in enumerate(states)}
        values.update(flow=flow)
        rows = await self._db.fetch(self._sql.find(len(states), flow is not None), values)
        found = group_lots(rows)  # insertion order: most urgent first
        return list(found.values())[:limit]

    async def page(self, query: LotQuery) -> LotPage:
        if query.limit < 1:
            raise InvalidInput(f"a page holds 1 lot or more, not {query.limit}")
        page, count, values = page_statements(query, self._sql.dialect)
        if query.after is not None:
            key = await self._db.fetch(self._sql.page_key, {"lot_id": query.after})
            if not key:
                raise no_lot(query.after, " to list the lots after")
            values.update(
                k_priority=key[0]["priority"], k_created_at=key[0]["created_at"], k_id=query.after
            )
        found = list(
            group_lots(
                await self._db.fetch(page, {**values, "page_limit": query.limit + 1})
            ).values()
        )
        total, exact = await self._total(count, values, bounded=not counted_by_state(query))
        return LotPage(found[: query.limit], total, len(found) > query.limit, exact)

    async def tool_job_page(self, query: ToolJobQuery) -> ToolJobPage:
        if query.limit < 1:
            raise InvalidInput(f"a page holds 1 job or more, not {query.limit}")
        page, count, values = tool_job_page_statements(query, self._sql.dialect)
        if query.after is not None:
            key = await self._db.fetch(self._sql.job_key, {"job_id": query.after})
            if not key or key[0]["tool_id"] != query.tool_id:
                raise InvalidInput(
                    f"there is no job {query.after} of tool {query.tool_id} to list the jobs "
                    "after: expected a job id of the page before"
                )
            values.update(k_started_at=key[0]["started_at"], k_job_id=query.after)
        rows = await self._db.fetch(page, {**values, "page_limit": query.limit + 1})
        found = [ToolJob(job_from_row(r), int(r["sites_in"])) for r in rows]
        total, exact = await self._total(count, values)
        return ToolJobPage(found[: query.limit], total, len(found) > query.limit, exact)

    async def history_page(self, query: HistoryQuery) -> HistoryPage:
        if query.limit < 1:
            raise InvalidInput(f"a page holds 1 entry or more, not {query.limit}")
        page, count, values = history_page_statements(query, self._sql.dialect)
        if query.after is not None and not await self._db.fetch(
            self._sql.history_key, {"history_seq": query.after}
        ):
            raise InvalidInput(_no_history_entry(query.after))
        rows = await self._db.fetch(page, {**values, "page_limit": query.limit + 1})
        found = [entry_from_row(r) for r in rows]
        total, exact = await self._total(count, values)
        return HistoryPage(found[: query.limit], total, len(found) > query.limit, exact)

    async def _total(
        self, count: CompiledStatement, values: dict[str, Any], *, bounded: bool = True
    ) -> tuple[int, bool]:
        """A list's count (the first column of its one row) and whether it is exact: a
        ``bounded`` count read at most ``COUNTED_UP_TO + 1`` rows
        (:func:`mes.adapters.sql_expressions.capped_count`); the lots' count by state and flow
        is a tally, exact however large."""
        row = (await self._db.fetch(count, values))[0]
        counted = int(next(iter(row.values())))
        return bounded_total(counted) if bounded else (counted, True)


def _no_history_entry(seq: int) -> str:
    return (
        f"there is no history entry {seq} to list the entries after: expected the last seq "
        "of the page before"
    )


class SqliteWriters:
    """SQLite lets one transaction write at a time. The writers of one factory wait for
    their turn here, in order, and go on the moment the one before commits. Left to SQLite,
    a writer that finds the database locked waits in its busy handler, which sleeps 1, 2,
    5, 10, ... up to 100 ms between tries: with the line controller's many writers, a 5 ms
    transaction then often takes 50 to 100. (Other processes still wait for us, and we for
    them, in the busy handler, up to the busy timeout.) A writer must not open another
    writing unit of work of the same factory inside its own: it would wait for itself."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()

    def lock(self) -> asyncio.Lock:
        """The lock for the running event loop (a factory may outlive one)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._lock = loop, asyncio.Lock()
        return self._lock


class SqlUnitOfWork:
    """One transaction on a pooled connection, run on its driver. Rolls back unless
    committed."""

    def __init__(
        self,
        engine: AsyncEngine,
        statements: Statements,
        equipment: EquipmentStatements,
        *,
        readonly: bool = False,
        writers: SqliteWriters | None = None,
        heads: HeadCache,
        health: DatabaseHealth | None = None,
        outbox: OutboxSignal | None = None,
    ):
        """``outbox``: told after a COMMIT that wrote outbox events."""
        self._engine = engine
        self._outbox = outbox
        self._saved = False
        self._health = health
        self._statements = statements
        self._head_cache = heads
        self._equipment_statements = equipment
        self._readonly = readonly
        self._writers = None if readonly else writers
        self._turn: asyncio.Lock | None = None
        self._conn: AsyncConnection | None = None
        self._session: DriverSession | None = None
        self._lots: SqlLotRepository | None = None
        self._equipment: SqlEquipmentRepository | None = None
        self._committed = False

    @property
    def lots(self) -> SqlLotRepository:
        assert self._lots is not None, "use the unit of work inside 'async with'"
        return self._lots

    @property
    def equipment(self) -> SqlEquipmentRepository:
        assert self._equipment is not None, "use the unit of work inside 'async with'"
        return self._equipment

    async def __aenter__(self) -> SqlUnitOfWork:
        if self._writers is not None:
            turn = self._writers.lock()
            await turn.acquire()
            self._turn = turn
        try:
            conn = await self._engine.connect()
        except BaseException as exc:
            self._end_turn()
            error = self._failed(exc)
            if error is exc:
                raise
            raise error from exc
        try:
            raw = await conn.get_raw_connection()
            session = session_for(self._engine.dialect.name, raw.driver_connection)
            await session.begin(readonly=self._readonly)
        except BaseException as exc:
            try:
                await conn.invalidate()
                await conn.close()
            finally:
                self._end_turn()
            error = self._failed(exc)
            if error is exc:
                raise
            raise error from exc
        self._conn, self._session = conn, session
        self._lots = SqlLotRepository(session, self._statements)
        self._equipment = SqlEquipmentRepository(session, self._equipment_statements)
        return self

    async def commit(self) -> None:
        assert self._session is not None
        await self._session.commit()
        self._committed = True
        self._tell_outbox()

    async def run(self, work: Work[T], *, commit: bool = False) -> T:
        assert self._session is not None, "use the unit of work inside 'async with'"
        plan = work_plan(self._statements, self._head_cache, work, self._saving)
        result = await self._session.run(plan, commit=commit)
        if commit:
            self._committed = True
            self._tell_outbox()
        return result

    def _saving(self) -> None:
        self._saved = True

    def _tell_outbox(self) -> None:
        """After a COMMIT: wake the relay if outbox events were written (one that a work
        rolled back to its savepoint wakes it for nothing, which costs one read)."""
        if self._saved and self._outbox is not None:
            self._saved = False
            self._outbox.committed()

    async def run_each(self, works: Sequence[Work[Any]]) -> list[Outcome]:
        """SQLite: do each work under a savepoint of its own, then commit, in one call on the
        connection's thread. A work that raises leaves nothing written (rolled back to its
        savepoint), and the others are committed; a failure of the database fails them all."""
        session = self._session
        assert isinstance(session, AiosqliteSession), "groups are for SQLite"
        outcomes = await session.run_each(
            [work_plan(self._statements, self._head_cache, w, self._saving) for w in works]
        )
        self._committed = True
        self._tell_outbox()
        return outcomes

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, session = self._conn, self._session
        self._conn = self._session = self._lots = self._equipment = None
        if conn is None or session is None:
            self._end_turn()
            return
        if isinstance(exc, DatabaseUnavailable):
            self._failed(exc)
        elif exc is None and self._health is not None:
            self._health.answered(wrote=self._committed and not self._readonly)
        try:
            if isinstance(exc, DatabaseUnavailable) and not isinstance(exc, DatabaseRetryable):
                # Lost, silent or read-only: not reused (a new connection may reach the server
                # again, or the new primary after a failover). Closing it is bounded (2 s).
                await conn.invalidate()
            elif not self._committed:
                await session.rollback()
        except BaseException:
            await conn.invalidate()  # a connection that cannot roll back is not reused
            if exc is None:
                raise
            # Leaving on an exception already (a cancellation during COMMIT, say, after which
            # there is nothing left to roll back): that one goes on, not the rollback's. A
            # cancelled task that got a DatabaseUnavailable instead would carry on running.
        finally:
            try:
                await conn.close()
            finally:
                self._end_turn()

    def _failed(self, exc: BaseException) -> BaseException:
        """What to raise for ``exc`` (classified at the store's edge), told to the health
        monitor when the database is unavailable."""
        found = classify(exc) if isinstance(exc, Exception) else None
        error: BaseException = exc if found is None else found
        if isinstance(error, DatabaseUnavailable) and self._health is not None:
            self._health.failed(error)
        return error

    def _end_turn(self) -> None:
        turn, self._turn = self._turn, None
        if turn is not None:
            turn.release()


class SqliteGroupCommit:
    """Group commit for SQLite. Every commit there waits for its fsync (``synchronous=FULL``)
    while holding the one write lock, and takes a turn on the connection's thread. Works
    written while a group is being written wait, and go together as the next group: one
    transaction, each work under a savepoint of its own (all or nothing, each), one COMMIT.
    A work that raises is rolled back alone and its caller gets the error; the others are
    committed. Nobody is told "written" before the group's COMMIT returned. At most
    ``limit`` works per group, so that other writers' turns come round."""

    def __init__(self, factory: SqlUnitOfWorkFactory, limit: int = 32):
        self._factory = factory
        self._limit = limit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: list[tuple[Work[Any], asyncio.Future[Any]]] = []
        self._writing: asyncio.Task[None] | None = None

    async def write(self, work: Work[T]) -> T:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a factory may outlive an event loop
            self._loop, self._waiting, self._writing = loop, [], None
        written: asyncio.Future[T] = loop.create_future()
        self._waiting.append((work, written))
        if self._writing is None:
            self._writing = loop.create_task(self._write_groups(), name="sqlite-group-commit")
        return await written

    async def _write_groups(self) -> None:
        try:
            while self._waiting:
                group = [(w, f) for w, f in self._waiting[: self._limit] if not f.done()]
                del self._waiting[: self._limit]
                if group:
                    await self._write_group(group)
        finally:
            self._writing = None

    async def _write_group(self, group: list[tuple[Work[Any], asyncio.Future[Any]]]) -> None:
        try:
            async with self._factory() as uow:
                outcomes = await uow.run_each([work for work, _ in group])
        except Exception as exc:  # the database: nothing of the group was written
            for _, written in group:
                if not written.done():
                    written.set_exception(_copy(exc))
            return
        except BaseException:  # cancelled (the event loop is closing): so are the callers
            for _, written in group:
                written.cancel()
            raise
        for (_, written), outcome in zip(group, outcomes, strict=True):
            if written.done():  # its caller was cancelled meanwhile: written all the same
                continue
            if isinstance(outcome, Done):
                written.set_result(outcome.value)
            else:
                written.set_exception(outcome.error)


def _copy(exc: Exception) -> Exception:
    """An exception to raise in one of several callers (each gets its own traceback)."""
    copy = type(exc)(exc.reason) if isinstance(exc, DatabaseUnavailable) else exc
    if copy is not exc:
        copy.__cause__ = exc.__cause__
    return copy


class SqlUnitOfWorkFactory:
    """Makes units of work on one engine (the :class:`mes.ports.UnitOfWorkFactory`)."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        health: DatabaseHealth | None = None,
        outbox: OutboxSignal | None = None,
    ):
        """``health``: told how every unit of work ends (:class:`DatabaseHealth` logs an
        outage on the edge); ``outbox``: told after every COMMIT that wrote outbox events
        (the event relay of this process waits for it)."""
        self.engine = engine
        self.health = health
        self.outbox = outbox or OutboxSignal()
        self.statements = Statements(engine.dialect)
        self._writers = SqliteWriters() if engine.dialect.name == "sqlite" else None
        self._heads = HeadCache()
        self._group = SqliteGroupCommit(self) if self._writers is not None else None

    async def write(self, work: Work[T]) -> T:
        """Do ``work`` in a transaction and commit it: on SQLite with group commit
        (:class:`SqliteGroupCommit`), on PostgreSQL in a transaction of its own."""
        if self._group is not None:
            return await self._group.write(work)
        async with self() as uow:
            return await uow.run(work, commit=True)

    def __call__(self, *, readonly: bool = False) -> SqlUnitOfWork:
        return SqlUnitOfWork(
            self.engine,
            self.statements,
            self.statements.equipment,
            readonly=readonly,
            writers=self._writers,
            heads=self._heads,
            health=self.health,
            outbox=self.outbox,
        )
