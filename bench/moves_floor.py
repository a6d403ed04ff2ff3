"""The floor of bench/mes_moves.py: pkgline's lot moves as raw SQL on the same driver, taking
pkgline's own shortcuts (SQLite: the whole transaction in one call on the connection's
thread; PostgreSQL: pkgline's own one-statement move), each move committed. The same
transactions as pkgline's: the lot read and updated version-checked, a chained history row
and an outbox row each (bench/mes_moves.py's text says how they are held against pkgline)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiosqlite
import asyncpg
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from mes.adapters.database import SQLITE_BUSY_TIMEOUT_MS
from mes.adapters.sql_statements import move_in_one_statement

FLOW = "fo-organic"
"""The flow both sides move their lots through."""
T = TypeVar("T")


@dataclass
class Result:
    moves: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.moves / self.seconds


# -- the floor: the same transactions in raw SQL, with pkgline's own shortcuts ----------------


def _now() -> datetime:
    return datetime.now(UTC)


def _lot_row(lot_id: str) -> dict[str, object]:
    now = _now()
    return {
        "id": lot_id,
        "flow": FLOW,
        "flow_version": 1,
        "state": "WAITING",
        "priority": 5,
        "params": json.dumps({"layers": 8}),
        "site_rows": 4,
        "site_cols": 8,
        "total_sites": 64,
        "good_sites": 64,
        "path": "[]",
        "recorded": "{}",
        "rework_counts": "{}",
        "created_at": now,
        "updated_at": now,
        "created_by": "bench",
        "version": 1,
        "history_head": "0" * 64,
    }


MOVE_STATES = (("RUNNING", "track_in", "LotTrackedIn"), ("WAITING", "track_out", "LotTrackedOut"))


@dataclass
class FloorLot:
    """A lot as one floor writer moves it: its id, the path so far, the move it is at."""

    id: str
    path: list[str]
    move: int = 0


def _next_entry(lot: FloorLot, prev: str, state: str, op: str) -> dict[str, Any]:
    """The history row of the lot's next transaction (``op``, into ``state``), chained to
    ``prev``: its hash is SHA-256 over its fields and the hash before it as canonical JSON
    (what any chained history costs per entry; pkgline: mes.domain.audit). A track-out adds
    the step to the lot's path."""
    step = f"STEP{lot.move}"
    if op == "track_out":
        lot.path.append(step)
    row: dict[str, Any] = {
        "lot_id": lot.id,
        "at": _now(),
        "user": "bench",
        "operation": op,
        "state_before": "WAITING",
        "state_after": state,
        "step": step,
        "tool": "T",
        "reason": None,
        "data": json.dumps({"values": {"v": 1.0}, "path_index": lot.move}),
        "by": None,
        "auth": None,
        "prev_hash": prev,
    }
    content = {**row, "at": row["at"].isoformat(), "data": json.loads(row["data"])}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    row["hash"] = hashlib.sha256(text.encode()).hexdigest()
    return row


class SqliteFloor:
    """SQLite: every transaction (BEGIN IMMEDIATE, read the lot, update it version-checked,
    append its history row and its outbox row, COMMIT) runs whole in one call on the
    connection's thread, as pkgline's write plans do (mes.adapters.driver.AiosqliteSession).
    Every writer shares the one connection, so transactions queue on its thread rather than
    in SQLite's busy handler, as pkgline's writers queue for their turn; each move is
    committed on its own: no group commit."""

    def __init__(self, path: str, lot_moves: int):
        self.path = path
        self.lot_moves = lot_moves
        self._db: aiosqlite.Connection | None = None

    async def open(self, writers: int) -> None:
        db = await aiosqlite.connect(self.path, isolation_level=None)
        for pragma in (
            "journal_mode=WAL",
            "synchronous=FULL",
            "foreign_keys=ON",
            f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
        ):
            await db.execute(f"PRAGMA {pragma}")
        db.row_factory = sqlite3.Row
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def _in_thread(self, fn: Callable[..., T], *args: object) -> T:
        assert self._db is not None, "open the floor first"
        # aiosqlite's own call for "run this on the connection's thread" (pkgline uses it too)
        result: T = await self._db._execute(fn, *args)
        return result

    async def writer(self, writer: int, moves: int, lat: list[float]) -> None:
        lot: FloorLot | None = None
        for _ in range(moves):
            if lot is None or lot.move == self.lot_moves:  # a new lot, as pkgline's writers
                lot = FloorLot(f"F{writer}-{uuid.uuid4().hex[:8]}", [])
                await self._in_thread(self._insert_lot, lot.id)
            t0 = time.perf_counter()
            for state, op, kind in MOVE_STATES:
                await self._in_thread(self._move, lot, state, op, kind)
            lat.append(time.perf_counter() - t0)
            lot.move += 1

    def _db_here(self) -> sqlite3.Connection:
        assert self._db is not None
        conn: sqlite3.Connection = self._db._conn
        return conn

    def _insert_lot(self, lot_id: str) -> None:
        db, row = self._db_here(), _lot_row(lot_id)
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                f"INSERT INTO lots ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
                [v.isoformat() if isinstance(v, datetime) else v for v in row.values()],
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _move(self, lot: FloorLot, state: str, op: str, kind: str) -> None:
        db = self._db_here()
        db.execute("BEGIN IMMEDIATE")
        try:
            current = db.execute("SELECT * FROM lots WHERE id = ?", (lot.id,)).fetchone()
            assert current is not None
            entry = _next_entry(lot, current["history_head"], state, op)
            now = entry["at"] = entry["at"].isoformat()
            cur = db.execute(
                "UPDATE lots SET state = ?, path = ?, running = ?, updated_at = ?, "
                "version = version + 1, history_head = ? WHERE id = ? AND version = ?",
                (
                    state,
                    json.dumps(lot.path),
                    json.dumps({"step": entry["step"]}) if state == "RUNNING" else None,
                    now,
                    entry["hash"],
                    lot.id,
                    current["version"],
                ),
            )
            assert cur.rowcount == 1
            (seq,) = db.execute(
                "INSERT INTO lot_history (" + ", ".join(f'"{c}"' for c in entry) + ") "
                f"VALUES ({', '.join('?' for _ in entry)}) RETURNING seq",
                tuple(entry.values()),
            ).fetchone()
            payload = json.dumps({**json.loads(entry["data"]), "seq": seq})
            db.execute(
                "INSERT INTO outbox (lot_id, kind, payload, created_at) VALUES (?, ?, ?, ?)",
                (lot.id, kind, payload, now),
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def one_statement(statement: ClauseElement) -> tuple[str, list[str], dict[str, object]]:
    """``statement`` as pkgline sends it to PostgreSQL through asyncpg: its SQL text, the
    names of its parameters in order, and the values of those the statement itself binds."""
    compiled = statement.compile(dialect=asyncpg_dialect.dialect())
    assert isinstance(compiled, SQLCompiler)
    names = list(compiled.positiontup or [])
    fixed = {n: compiled.binds[n].value for n in names if not compiled.binds[n].required}
    return compiled.string, names, fixed


class PostgresFloor:
    """PostgreSQL: every transaction (BEGIN, read the lot, then the same single statement
    pkgline sends for a move: mes.adapters.sql_statements.move_in_one_statement, which
    updates the lot version-checked and appends its history and outbox rows; COMMIT) on a
    connection of the writer's own."""

    def __init__(self, dsn: str, lot_moves: int):
        self.dsn = dsn
        self.lot_moves = lot_moves
        self.sql, self.names, self.fixed = one_statement(move_in_one_statement())
        self._conns: list[asyncpg.Connection] = []

    async def open(self, writers: int) -> None:
        """A connection for each writer, made before the clock starts."""
        self._conns = [await asyncpg.connect(self.dsn) for _ in range(writers)]

    async def close(self) -> None:
        conns, self._conns = self._conns, []
        for conn in conns:
            await conn.close()

    async def writer(self, writer: int, moves: int, lat: list[float]) -> None:
        conn = self._conns[writer]
        lot: FloorLot | None = None
        for _ in range(moves):
            if lot is None or lot.move == self.lot_moves:  # a new lot, as pkgline's writers
                lot = FloorLot(f"F{writer}-{uuid.uuid4().hex[:8]}", [])
                row = _lot_row(lot.id)
                await conn.execute(
                    f"INSERT INTO lots ({', '.join(row)}) "
                    f"VALUES ({', '.join(f'${k + 1}' for k in range(len(row)))})",
                    *row.values(),
                )
            t0 = time.perf_counter()
            for state, op, kind in MOVE_STATES:
                async with conn.transaction():
                    current = await conn.fetchrow("SELECT * FROM lots WHERE id = $1", lot.id)
                    assert current is not None
                    values = self._values(lot, dict(current), state, op, kind)
                    seq = await conn.fetchval(self.sql, *(values[n] for n in self.names))
                    assert seq is not None, "the version check failed"
            lat.append(time.perf_counter() - t0)
            lot.move += 1

    def _values(
        self, lot: FloorLot, current: dict[str, Any], state: str, op: str, kind: str
    ) -> dict[str, object]:
        entry = _next_entry(lot, current["history_head"], state, op)
        now = entry["at"]
        values: dict[str, object] = dict(self.fixed)
        values.update({f"v_{k}": v for k, v in current.items() if k != "id"})
        values.update(
            v_state=state,
            v_path=json.dumps(lot.path),
            v_running=json.dumps({"step": entry["step"]}) if state == "RUNNING" else None,
            v_updated_at=now,
            v_version=current["version"] + 1,
            v_history_head=entry["hash"],
            b_id=lot.id,
            b_expected=current["version"],
        )
        values.update({f"h_{k}": v for k, v in entry.items()})
        values.update(o_lot_id=lot.id, o_kind=kind, o_payload=entry["data"], o_created_at=now)
        return values


Floor = SqliteFloor | PostgresFloor


async def run_floor(floor: Floor, writers: int, moves: int) -> Result:
    await floor.open(writers)
    try:
        # warm up every writer's connection (its statements prepared), as pkgline's pool is
        await asyncio.gather(*(floor.writer(w, 2, []) for w in range(writers)))
        lat: list[float] = []
        t0 = time.perf_counter()
        await asyncio.gather(*(floor.writer(w, moves // writers, lat) for w in range(writers)))
        return Result(len(lat), time.perf_counter() - t0, lat)
    finally:
        await floor.close()


def make_floor(url: str, lot_moves: int) -> Floor:
    if url.startswith("sqlite:///"):
        return SqliteFloor(url.removeprefix("sqlite:///"), lot_moves)
    return PostgresFloor(url, lot_moves)
