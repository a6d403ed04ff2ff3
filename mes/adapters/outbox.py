"""The outbox as the event relay reads it: the events not yet published in order, marking
them published once the broker has them, the backlog, and pruning after the retention.

One relay publishes at a time. On PostgreSQL, where several controllers share the database,
the relay that holds a session-level advisory lock (:data:`RELAY_LOCK`) on its connection is
the one; the others wait for it. A lock, not ``FOR UPDATE SKIP LOCKED``: skipping rows would
let two relays publish the events of one lot at the same time, in either order, while one
publisher reading the outbox in ``seq`` order keeps every lot's order by construction. The lock
goes with the connection, so a relay that dies (SIGKILL, lost network) frees it at once. On
SQLite one controller owns the file, and its relay is the one.

Ids: ``seq`` is unique and increasing per database. On SQLite it is the rowid, which would be
given again after the highest row was deleted: pruning therefore always keeps the highest row.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Text,
    bindparam,
    column,
    func,
    select,
    text,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mes.adapters import jsontext
from mes.adapters.database import READONLY, is_sqlite
from mes.adapters.driver import AiosqliteSession, CompiledStatement, Execute, Fetch, Plan
from mes.adapters.errors import DatabaseRetryable, DatabaseUnavailable, classified, classify
from mes.adapters.outbox_holes import Hole, holes, settle
from mes.adapters.outbox_prune import FINISHED_LOTS, PRUNE, PRUNE_UNTIL, Finished
from mes.adapters.sql_expressions import capped_count, rare
from mes.adapters.tables import audit_heads as heads
from mes.adapters.tables import lot_counts, lots, outbox
from mes.domain.model import FINAL_STATES, LotState
from mes.domain.paging import bounded_total

RELAY_LOCK = 0x706B676C_72656C79
"""pg advisory lock key of the event relay role (the bytes of ``pkglrely``)."""
OUTBOX_CHANNEL = "pkgline_outbox"
"""PostgreSQL: the channel a trigger on ``outbox`` notifies at the COMMIT of new events
(revision 0014); the relay LISTENs on it."""


class OutboxSignal:
    """New outbox events committed in this process. The unit of work calls :meth:`committed`
    after a COMMIT that wrote some (in the committing event loop); the relay subscribes and
    reads the outbox at once instead of waiting for its next poll. Other processes' commits
    reach a relay through PostgreSQL's NOTIFY (:meth:`RelaySession.listen`); on SQLite, the
    relay's poll finds them."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[], None]] = []

    def subscribe(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def unsubscribe(self, callback: Callable[[], None]) -> None:
        with contextlib.suppress(ValueError):
            self._callbacks.remove(callback)

    def committed(self) -> None:
        """Tell every subscriber. Never raises: the COMMIT is done, and its caller must
        hear of it as done (a subscriber that fails is logged)."""
        for callback in tuple(self._callbacks):
            try:
                callback()
            except Exception:
                # structlog only here: every direct-mode command imports this module
                import structlog

                structlog.get_logger("mes.outbox").exception("an outbox subscriber failed")


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One outbox row: ``id`` is its ``seq``; ``lot_id`` the id of its ``subject`` (a lot's,
    or a durable's or a material lot's: :data:`SUBJECTS`)."""

    id: int
    lot_id: str
    kind: str
    payload: Any
    created_at: datetime
    subject: str = "lot"


SUBJECTS = ("lot", "durable", "material")
"""Whose events the outbox carries (revision 0020)."""
SUBJECT_ROW_KEYS = ["subject", "lot_id", "kind", "payload", "created_at"]
"""The columns of an outbox row of a durable's or a material lot's event."""


def subject_row(
    subject: str, subject_id: str, kind: str, payload: dict[str, Any], at: datetime
) -> dict[str, Any]:
    """The outbox row of an event of a durable's or a material lot's history
    (:data:`SUBJECT_ROW_KEYS`), written in the transaction of the event."""
    assert subject in SUBJECTS[1:], subject
    return {
        "subject": subject,
        "lot_id": subject_id,
        "kind": kind,
        "payload": payload,
        "created_at": at,
    }


@dataclass(frozen=True, slots=True)
class OutboxPage:
    events: list[OutboxEvent]
    total: int
    """How many events the outbox keeps in all (the cursor aside), counted up to
    :data:`mes.domain.paging.COUNTED_UP_TO`."""
    more: bool
    """More follow the page: ask again with ``after`` = its last id."""
    oldest: int | None = None
    """The lowest id kept (with ``count``; None: the outbox is empty)."""
    newest: int | None = None
    """The highest id issued (with ``count``; pruning never deletes it)."""
    total_exact: bool = True
    """False: the outbox keeps more than ``total`` events, counted no further."""
    after: tuple[int, bool] | None = None
    """How many of them come after the cursor (this page's and those that follow), and
    whether that count is exact (as ``total``'s); None without a cursor or ``count``."""


@dataclass(frozen=True, slots=True)
class Backlog:
    events: int
    """Events not yet published."""
    oldest_at: datetime | None
    """When the oldest of them was committed."""
    last_published_id: int | None
    last_published_at: datetime | None


_COLUMNS = (
    outbox.c.seq,
    outbox.c.lot_id,
    outbox.c.kind,
    outbox.c.payload,
    outbox.c.created_at,
    outbox.c.subject,
)
_PENDING = (
    select(*_COLUMNS)
    .where(outbox.c.published_at.is_(None))
    .order_by(outbox.c.seq)
    .limit(bindparam("limit"))
)
_PENDING_SKIPPING = _PENDING.where(outbox.c.seq.not_in(bindparam("skip", expanding=True)))
# SQLite: the ids to skip as one JSON array, so that the statement compiles once and runs on
# the driver in one hop to the connection's thread (BEGIN, SELECT, COMMIT together), not four
# through SQLAlchemy's async layer: the relay's read is on the path of every event.
# The payload as its stored text, parsed by :func:`_payload` (orjson): decoding it with the
# standard library's json was a tenth of the relay's time while it drained a backlog.
_PENDING_SQLITE = CompiledStatement.compile(
    _PENDING.with_only_columns(
        outbox.c.seq,
        outbox.c.lot_id,
        outbox.c.kind,
        type_coerce(outbox.c.payload, Text).label("payload"),
        outbox.c.created_at,
        outbox.c.subject,
    ).where(
        outbox.c.seq.not_in(
            select(column("value")).select_from(func.json_each(bindparam("skip_json")))
        )
    ),
    sqlite_dialect(),
)
_PUBLISHED_SINCE = (
    select(*_COLUMNS).where(outbox.c.published_at >= bindparam("since")).order_by(outbox.c.seq)
)
_MARK = (
    update(outbox)
    .where(outbox.c.seq.in_(bindparam("ids", expanding=True)), outbox.c.published_at.is_(None))
    .values(published_at=bindparam("at"))
)
# SQLite: the same in one hop (BEGIN IMMEDIATE, UPDATE, COMMIT together), the ids as one JSON
# array: compiled once, and no SQLAlchemy on the way (a backlog drains a mark per batch).
_MARK_SQLITE = CompiledStatement.compile(
    update(outbox)
    .where(
        outbox.c.seq.in_(
            select(column("value")).select_from(func.json_each(bindparam("ids_json")))
        ),
        outbox.c.published_at.is_(None),
    )
    .values(published_at=bindparam("at")),
    sqlite_dialect(),
)
_UNPUBLISHED = select(func.count(), func.min(outbox.c.created_at)).where(
    outbox.c.published_at.is_(None)
)
_LAST_PUBLISHED = (
    select(outbox.c.seq, outbox.c.published_at)
    .where(outbox.c.published_at.is_not(None))
    .order_by(outbox.c.published_at.desc(), outbox.c.seq.desc())
    .limit(1)
)
LOTS_BY_STATE = union_all(
    # the few lots in progress, counted; the many finished, as the triggers keep them (0021)
    select(lots.c.state, func.count())
    .where(rare(lots.c.state.in_([s.value for s in LotState if s not in FINAL_STATES])))
    .group_by(lots.c.state),
    select(lot_counts.c.state, func.sum(lot_counts.c.n))
    .group_by(lot_counts.c.state)
    .having(func.sum(lot_counts.c.n) > 0),
)


class OutboxReader:
    """Read-only views of the outbox (``pkgline events status``, ``line status``)."""

    def __init__(self, engine: AsyncEngine):
        self._engine = engine

    async def backlog(self) -> Backlog:
        async with self._engine.connect() as conn:
            conn = await conn.execution_options(**{READONLY: True})
            async with conn.begin():
                return await _backlog(conn)

    async def events(self, *, after: int = 0, limit: int = 100) -> list[OutboxEvent]:
        """Events (published or not) with an id above ``after``, in order."""
        return (await self.page(after or None, limit, count=False)).events

    async def page(self, after: int | None, limit: int, *, count: bool = True) -> OutboxPage:
        """One page of the events kept (published or not, until the retention), oldest
        first, from the id after ``after`` on (along the primary key); ``total``: how many
        are kept in all, with the lowest and highest id (with ``count``, else 0, and None
        but on PostgreSQL the lowest).
        On PostgreSQL a page never passes over an id a transaction still holds
        (:mod:`mes.adapters.outbox_holes`): it ends before it, ``more`` true."""
        rows, (total, exact), oldest, newest, following = await self._read(after, limit, count)
        if not is_sqlite(self._engine):
            for _ in range(3):  # a hole filled meanwhile: the page read again
                seqs = [row[0] for row in rows[:limit]]
                start = after if oldest is None or (after or 0) >= oldest else oldest - 1
                hole, at = await settle(self._engine, holes(start, seqs))
                if hole is Hole.FILLED:
                    read = await self._read(after, limit, count)
                    rows, (total, exact), oldest, newest, following = read
                    continue
                if hole is Hole.HELD:
                    kept = [OutboxEvent(*row) for row in rows[:limit] if row[0] < (at or 0)]
                    return OutboxPage(kept, total, True, oldest, newest, exact, following)
                break
        events = [OutboxEvent(*row) for row in rows[:limit]]
        more = len(rows) > limit
        return OutboxPage(events, total, more, oldest, newest, exact, following)

    async def _read(
        self, after: int | None, limit: int, count: bool
    ) -> tuple[Sequence[Any], tuple[int, bool], int | None, int | None, tuple[int, bool] | None]:
        query = select(*_COLUMNS)
        if after is not None:
            query = query.where(outbox.c.seq > after)
        query = query.order_by(outbox.c.seq).limit(limit + 1)
        async with self._engine.connect() as conn:
            conn = await conn.execution_options(**{READONLY: True})
            async with conn.begin():
                rows = (await conn.execute(query)).all()
                total, oldest, newest, following = 0, None, None, None
                if count:
                    total = (await conn.execute(capped_count(outbox))).scalar_one()
                    if after is not None:  # along the primary key, as the page is read
                        later = capped_count(outbox, outbox.c.seq > after)
                        following = bounded_total(int((await conn.execute(later)).scalar_one()))
                    ends = select(func.min(outbox.c.seq), func.max(outbox.c.seq))
                    oldest, newest = (await conn.execute(ends)).one()
                elif not is_sqlite(self._engine):  # where holes are looked for: from the oldest
                    oldest = (await conn.execute(select(func.min(outbox.c.seq)))).scalar()
        return rows, bounded_total(int(total)), oldest, newest, following


class OutboxStore:
    """The relay's side of the outbox, on one connection of its own (see :meth:`session`)."""

    def __init__(self, engine: AsyncEngine):
        self._engine = engine

    @asynccontextmanager
    async def session(self) -> AsyncIterator[RelaySession]:
        """The relay's connection while the block runs. A block that ends with the database
        unavailable (the relay's other connection may have met it) drops the connection
        instead of giving it back to the pool: after an outage (pg_terminate_backend, a
        failover) the pool held connections the server had ended, and each new session of
        the relay met one more of them. A connection that cannot be opened is the store's
        error (:func:`classified`): a reset as it opened reached the relay as the OS's, and
        "event feed down: [Errno 104] Connect call failed" named no database."""
        async with contextlib.AsyncExitStack() as opened:
            with classified():
                conn = await opened.enter_async_context(self._engine.connect())
            session = RelaySession(conn, sqlite=is_sqlite(self._engine))
            failed: BaseException | None = None
            try:
                yield session
            except BaseException as exc:
                failed = exc
                raise
            finally:
                await session.unlisten()
                await session.resign()
                if failed is not None and _broken(failed) and not conn.invalidated:
                    await conn.invalidate()

    async def backlog(self) -> Backlog:
        """The events waiting, read on a connection of the pool (the relay's status while it
        has no session: the broker is away)."""
        return await OutboxReader(self._engine).backlog()


class RelaySession:
    """One relay's connection: leadership (PostgreSQL), reads and marks."""

    def __init__(self, conn: AsyncConnection, *, sqlite: bool):
        self._conn = conn
        self._sqlite = sqlite
        self.leader = sqlite
        self._listening: Callable[..., None] | None = None

    async def listen(self, callback: Callable[[], None]) -> None:
        """PostgreSQL: call ``callback`` whenever a transaction that wrote outbox events
        commits, in any process (LISTEN on :data:`OUTBOX_CHANNEL`, until :meth:`unlisten`).
        Nothing on SQLite."""
        if self._sqlite or self._listening is not None:
            return

        def notified(*_: object) -> None:
            callback()

        raw = await self._conn.get_raw_connection()
        asyncpg_connection: Any = raw.driver_connection
        try:
            await asyncpg_connection.add_listener(OUTBOX_CHANNEL, notified)
        except Exception as exc:
            # The driver's own call, past SQLAlchemy: its errors are classified here, and a
            # connection the server ended (an outage) is not given back to the pool.
            found = classify(exc)
            if found is None:
                raise
            await self._conn.invalidate()
            raise found from exc
        self._listening = notified

    async def unlisten(self) -> None:
        """Stop listening (UNLISTEN: the connection goes back to the pool without it); a
        connection that cannot is closed."""
        notified, self._listening = self._listening, None
        if notified is None:
            return
        try:
            raw = await self._conn.get_raw_connection()
            asyncpg_connection: Any = raw.driver_connection
            await asyncpg_connection.remove_listener(OUTBOX_CHANNEL, notified)
        except Exception:
            await self._conn.invalidate()

    async def try_lead(self) -> bool:
        """Become the publishing relay if no other relay is (PostgreSQL advisory lock, held
        until this session's connection closes). True when this session leads."""
        if not self.leader:
            with classified():
                async with self._conn.begin():
                    result = await self._conn.execute(
                        text("SELECT pg_try_advisory_lock(:key)"), {"key": RELAY_LOCK}
                    )
            self.leader = bool(result.scalar())
        return self.leader

    async def resign(self) -> None:
        """Let another relay lead: the lock is released (the connection goes back to the
        pool, where it would keep the lock); a connection that cannot is closed."""
        if self._sqlite or not self.leader:
            return
        self.leader = False
        try:
            async with self._conn.begin():
                await self._conn.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": RELAY_LOCK}
                )
        except (SQLAlchemyError, OSError):  # asyncpg's command timeout is a TimeoutError
            await self._conn.invalidate()

    async def pending(self, limit: int, *, skip: Collection[int] = ()) -> list[OutboxEvent]:
        """The first ``limit`` events not yet published, in id order, but those in ``skip``
        (published, and being marked)."""
        if self._sqlite:
            raw = await self._conn.get_raw_connection()
            session = AiosqliteSession(raw.driver_connection)
            await session.begin(readonly=True)
            values = {"limit": limit, "skip_json": json.dumps(sorted(skip))}
            found = await session.run(_fetch(_PENDING_SQLITE, values), commit=True)
            return [
                OutboxEvent(
                    r["seq"],
                    r["lot_id"],
                    r["kind"],
                    _payload(r["payload"]),
                    r["created_at"],
                    r["subject"],
                )
                for r in found
            ]
        async with self._read():
            if skip:
                values = {"limit": limit, "skip": list(skip)}
                rows = (await self._conn.execute(_PENDING_SKIPPING, values)).all()
            else:
                rows = (await self._conn.execute(_PENDING, {"limit": limit})).all()
        return [OutboxEvent(*row) for row in rows]

    async def published_since(self, since: datetime) -> list[OutboxEvent]:
        """The last event of each lot (and durable, and material lot) among those published
        since ``since``."""
        async with self._read():
            rows = (await self._conn.execute(_PUBLISHED_SINCE, {"since": since})).all()
        last: dict[tuple[str, str], OutboxEvent] = {}
        for row in rows:
            event = OutboxEvent(*row)
            last[event.subject, event.lot_id] = event
        return list(last.values())

    async def mark_published(self, ids: Sequence[int], at: datetime) -> None:
        if not ids:
            return
        if self._sqlite:
            raw = await self._conn.get_raw_connection()
            session = AiosqliteSession(raw.driver_connection)
            await session.begin(readonly=False)
            values = {"ids_json": json.dumps(list(ids)), "at": at}
            await session.run(_execute(_MARK_SQLITE, values), commit=True)
            return
        async with self._write():
            await self._conn.execute(_MARK, {"ids": list(ids), "at": at})

    async def backlog(self) -> Backlog:
        async with self._read():
            return await _backlog(self._conn)

    async def audit_heads(self) -> dict[str, str]:
        """The heads of the hash chains by chain (``lots``, ``security``: audit_heads)."""
        async with self._read():
            rows = (await self._conn.execute(select(heads.c.chain, heads.c.head))).all()
        return {str(chain): str(head) for chain, head in rows}

    async def lots_by_state(self) -> dict[str, int]:
        async with self._read():
            rows = (await self._conn.execute(LOTS_BY_STATE)).all()
        return {state: int(n) for state, n in rows}

    async def finished(self, before: datetime, limit: int) -> Finished:
        """The finished lots (:data:`~mes.domain.model.FINAL_STATES`) whose last event would
        go with those published before ``before``, at most ``limit``; the first of the rest
        in ``until``, to hand to :meth:`prune`."""
        async with self._read():
            rows = (
                await self._conn.execute(FINISHED_LOTS, {"before": before, "limit": limit + 1})
            ).all()
        found: dict[str, None] = {}
        for seq, lot_id, published_at in rows:
            if lot_id not in found and len(found) == limit:  # this one and after: next time
                return Finished(list(found), (published_at, int(seq)))
            found[lot_id] = None
        if len(rows) > limit:  # a lot's events counted twice: more may follow the last read
            seq, _, published_at = rows[-1]
            return Finished(list(found), (published_at, int(seq) + 1))
        return Finished(list(found), None)

    async def prune(self, before: datetime, *, until: tuple[datetime, int] | None = None) -> int:
        """Delete the events published before ``before`` (never one not yet published, and
        never the highest id); with ``until`` (:attr:`Finished.until`), only those published
        before that (published_at, id). The number deleted."""
        async with self._write():
            if until is None:
                result = await self._conn.execute(PRUNE, {"before": before})
            else:
                values = {"before": before, "until_at": until[0], "until_seq": until[1]}
                result = await self._conn.execute(PRUNE_UNTIL, values)
        return int(result.rowcount or 0)

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[None]:
        """A read transaction; the driver's errors are the store's (:func:`classified`):
        asyncpg's command timeout, a bare TimeoutError, reached the relay as such, and a
        partition was logged as "event feed down: TimeoutError" (found by a probe)."""
        with classified():
            if self._sqlite:
                await self._conn.execution_options(**{READONLY: True})
            async with self._conn.begin():
                yield

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[None]:
        with classified():
            if self._sqlite:
                await self._conn.execution_options(**{READONLY: False})
            async with self._conn.begin():
                yield


def _broken(exc: BaseException) -> bool:
    """The database unavailable (not only refusing for now: a lock, a deadlock)."""
    found = classify(exc)
    return isinstance(found, DatabaseUnavailable) and not isinstance(found, DatabaseRetryable)


def _payload(stored: str | None) -> Any:
    """A payload's stored JSON text as SQLAlchemy's JSON type would give it: orjson, or the
    standard library for what orjson refuses and it takes (NaN, as json.dumps writes it)."""
    return None if stored is None else jsontext.loads(stored)


def _fetch(statement: CompiledStatement, values: dict[str, Any]) -> Plan[list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = yield Fetch(statement, values)
    return rows


def _execute(statement: CompiledStatement, values: dict[str, Any]) -> Plan[int]:
    changed: int = yield Execute(statement, values)
    return changed


async def _backlog(conn: AsyncConnection) -> Backlog:
    count, oldest = (await conn.execute(_UNPUBLISHED)).one()
    last = (await conn.execute(_LAST_PUBLISHED)).first()
    return Backlog(
        events=int(count),
        oldest_at=_aware(oldest),
        last_published_id=int(last[0]) if last else None,
        last_published_at=last[1] if last else None,
    )


def _aware(value: Any) -> datetime | None:
    """``min(created_at)`` comes back without the column's type: a string on SQLite."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
