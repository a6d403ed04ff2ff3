"""Lot moves per second through the lot tracker, against the floor of the same transactions.

A move is a track-in plus a track-out: two transactions, each reading the lot, updating it,
and appending one history row and one outbox row. For each database and writer count this
prints moves per second and the p50/p99 latency of one move, first through pkgline's service
(rules, SQLAlchemy Core, optimistic version check) and then through the floor: the same
transaction shape in raw SQL on the same driver (aiosqlite / asyncpg), the same tables and
the same durability settings (SQLite WAL, synchronous=FULL, BEGIN IMMEDIATE; PostgreSQL
synchronous_commit on), and the same hash chain (each history entry hashed with the one
before it, the lot's head updated with it: docs/security.md). The ratio is pkgline / floor
throughput.

Goals (issue 2): PostgreSQL with 8 writers at 0.7 of the floor or better; SQLite (1 writer)
at 0.35 or better, with the track-in interlocks on (issue 17): each tool step is tracked in
on a registered, qualified tool of its class, as its line controller does, with durables
mounted (each track-out counts on them) and material lots loaded (each track-in checks their
clocks and records them in the lot). The same run
prints pkgline with the interlocks off too (tool steps tracked in with no tool, so nothing
is checked), for comparison.

    .venv/bin/python bench/mes_moves.py [--moves N] [--no-postgres]

PostgreSQL is reached at $PKGLINE_BENCH_POSTGRES (default
postgresql://postgres@127.0.0.1:5432/test); a scratch database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiosqlite
import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows import load_library
from mes.adapters.database import SQLITE_BUSY_TIMEOUT_MS, create_engine
from mes.adapters.memory import MemoryUnitOfWorkFactory
from mes.adapters.migrate import upgrade
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain import commands as cmd
from mes.domain.durables import KINDS as DURABLE_KINDS
from mes.domain.equipment import ToolRegistration
from mes.domain.interlocks import MANUAL_CLASS
from mes.domain.materials import KINDS as MATERIAL_KINDS
from mes.domain.model import LotState
from mes.durables import DurableService
from mes.equipment import EquipmentService
from mes.materials import MaterialService
from mes.service import LotService, utc_now

FLOW = "fo-organic"
PARAMS = {"layers": "8"}  # a long flow: few lot starts per measured move


@dataclass
class Result:
    moves: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.moves / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000.0


# -- pkgline -------------------------------------------------------------------------------


def _bench_tool(service: LotService, step: str) -> str | None:
    """The bench's tool for a step: one per equipment class (None for an operator step)."""
    cls = service.flows.step_codes[step].equipment_class
    return None if cls == MANUAL_CLASS else f"B-{cls}"[:32]


async def _register_tools(
    service: LotService, equipment: EquipmentService, factory: SqlUnitOfWorkFactory
) -> None:
    """One tool per equipment class, qualified (by its registration) for the class's steps,
    with a durable of each kind its class takes mounted (counted by every track-out) and a
    material lot of each kind loaded (thawed, within its clocks), so that every track-in
    interlock reads and every track-out counts."""
    by_class: dict[str, list[str]] = {}
    for code, info in service.flows.step_codes.items():
        if info.equipment_class != MANUAL_CLASS:
            by_class.setdefault(info.equipment_class, []).append(code)
    await equipment.register(
        "bench",
        [
            ToolRegistration(f"B-{cls}"[:32], cls, "bench", tuple(steps))
            for cls, steps in sorted(by_class.items())
        ],
    )
    durables, materials = DurableService(factory, utc_now), MaterialService(factory, utc_now)
    for kind, spec in DURABLE_KINDS.items():
        if spec.equipment_class in by_class:
            await durables.add(f"D-{kind.value}", kind.value, 10**15, "bench")
            await durables.mount(f"D-{kind.value}", f"B-{spec.equipment_class}"[:32], "bench")
    far = utc_now() + timedelta(days=365)
    for mkind, mspec in MATERIAL_KINDS.items():
        if mspec.equipment_class in by_class:
            name = f"M-{mkind.value}"
            clocks = {"thaw_minutes": 0, "floor_life_minutes": 10**6} if mspec.frozen else {}
            await materials.add(name, mkind.value, far, "bench", **clocks)
            if mspec.frozen:
                await materials.thaw(name, "bench")
            await materials.load(name, f"B-{mspec.equipment_class}"[:32], "bench")


async def _pkgline_writer(
    service: LotService,
    writer: int,
    moves: int,
    lat: list[float],
    *,
    one_lot: bool = False,
    interlocks: bool = True,
) -> None:
    n, lot_id = 0, ""
    done = 0
    while done < moves:
        if not lot_id:
            if one_lot and n:
                return
            n += 1
            lot_id = f"W{writer}-{n}-{uuid.uuid4().hex[:6]}"
            await service.start(cmd.StartLot(lot_id, FLOW, "bench", params=PARAMS))
            lot = await service.get(lot_id)
        step = sorted(service.next_steps(lot))[0]
        t0 = time.perf_counter()
        tool = _bench_tool(service, step) if interlocks else None
        await service.track_in(cmd.TrackIn(lot_id, step, "bench", tool=tool, dispatched=True))
        lot = (await service.track_out(cmd.TrackOut(lot_id, "bench"))).lot
        lat.append(time.perf_counter() - t0)
        done += 1
        if lot.state is not LotState.WAITING:
            lot_id = ""


async def moves_per_lot() -> int:
    """How many moves a lot of the flow takes from start to end (the floor starts a new lot
    after as many, as pkgline's writers do: its path stays as long as a real lot's)."""
    count: list[float] = []
    service = LotService(MemoryUnitOfWorkFactory(), load_library())
    await _pkgline_writer(service, 0, 10_000, count, one_lot=True, interlocks=False)
    return len(count)


async def run_pkgline(url: str, writers: int, moves: int, *, interlocks: bool = True) -> Result:
    engine = create_engine(url, pool_size=max(5, writers))
    try:
        await upgrade(engine)
        factory = SqlUnitOfWorkFactory(engine)
        service = LotService(factory, load_library())
        await _register_tools(service, EquipmentService(factory), factory)
        await _pkgline_writer(service, 99, 5, [])  # warm up pools and caches
        lat: list[float] = []
        t0 = time.perf_counter()
        await asyncio.gather(
            *(
                _pkgline_writer(service, w, moves // writers, lat, interlocks=interlocks)
                for w in range(writers)
            )
        )
        return Result(len(lat), time.perf_counter() - t0, lat)
    finally:
        await engine.dispose()


# -- the floor: the same transactions in raw SQL -------------------------------------------


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


def _chained(prev: str, lot_id: str, at: str, op: str, state: str, step: str, data: str) -> str:
    """The floor's hash chain: SHA-256 over the entry's fields and the hash before it, as
    canonical JSON (what any chained history costs per entry; pkgline: mes.domain.audit)."""
    content = {
        "prev": prev,
        "lot": lot_id,
        "at": at,
        "user": "bench",
        "operation": op,
        "state_before": "WAITING",
        "state_after": state,
        "step": step,
        "tool": "T",
        "reason": None,
        "data": json.loads(data),
    }
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


MOVE_STATES = (("RUNNING", "track_in", "LotTrackedIn"), ("WAITING", "track_out", "LotTrackedOut"))


class SqliteFloor:
    def __init__(self, path: str, lot_moves: int):
        self.path = path
        self.lot_moves = lot_moves

    async def writer(self, writer: int, moves: int, lat: list[float]) -> None:
        db = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            for pragma in (
                "journal_mode=WAL",
                "synchronous=FULL",
                "foreign_keys=ON",
                f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
            ):
                await db.execute(f"PRAGMA {pragma}")
            db.row_factory = aiosqlite.Row
            lot_id, path = "", []
            for i in range(moves):
                if i % self.lot_moves == 0:  # a new lot, as pkgline's writers start one
                    lot_id, path = f"F{writer}-{uuid.uuid4().hex[:8]}", []
                    row = _lot_row(lot_id)
                    await db.execute("BEGIN IMMEDIATE")
                    await db.execute(
                        f"INSERT INTO lots ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
                        [v.isoformat() if isinstance(v, datetime) else v for v in row.values()],
                    )
                    await db.execute("COMMIT")
                t0 = time.perf_counter()
                for state, op, kind in MOVE_STATES:
                    await db.execute("BEGIN IMMEDIATE")
                    cur = await db.execute("SELECT * FROM lots WHERE id = ?", (lot_id,))
                    current = await cur.fetchone()
                    await cur.close()
                    assert current is not None
                    if op == "track_out":
                        path.append(f"STEP{i}")
                    now = _now().isoformat()
                    data = json.dumps({"values": {"v": 1.0}, "path_index": i})
                    prev = current["history_head"]
                    digest = _chained(prev, lot_id, now, op, state, f"STEP{i}", data)
                    cur = await db.execute(
                        "UPDATE lots SET state = ?, path = ?, running = ?, updated_at = ?, version = version + 1, "
                        "history_head = ? WHERE id = ? AND version = ?",
                        (
                            state,
                            json.dumps(path),
                            json.dumps({"step": f"STEP{i}"}) if state == "RUNNING" else None,
                            now,
                            digest,
                            lot_id,
                            current["version"],
                        ),
                    )
                    assert cur.rowcount == 1
                    cur = await db.execute(
                        'INSERT INTO lot_history (lot_id, at, "user", operation, state_before, state_after, step, tool, reason, data, prev_hash, hash) '
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
                        (
                            lot_id,
                            now,
                            "bench",
                            op,
                            "WAITING",
                            state,
                            f"STEP{i}",
                            "T",
                            None,
                            data,
                            prev,
                            digest,
                        ),
                    )
                    await cur.fetchone()
                    await cur.close()
                    await db.execute(
                        "INSERT INTO outbox (lot_id, kind, payload, created_at) VALUES (?, ?, ?, ?)",
                        (lot_id, kind, data, now),
                    )
                    await db.execute("COMMIT")
                lat.append(time.perf_counter() - t0)
        finally:
            await db.close()


class PostgresFloor:
    def __init__(self, dsn: str, lot_moves: int):
        self.dsn = dsn
        self.lot_moves = lot_moves

    async def writer(self, writer: int, moves: int, lat: list[float]) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            lot_id, path = "", []
            for i in range(moves):
                if i % self.lot_moves == 0:  # a new lot, as pkgline's writers start one
                    lot_id, path = f"F{writer}-{uuid.uuid4().hex[:8]}", []
                    row = _lot_row(lot_id)
                    await conn.execute(
                        f"INSERT INTO lots ({', '.join(row)}) "
                        f"VALUES ({', '.join(f'${k + 1}' for k in range(len(row)))})",
                        *row.values(),
                    )
                t0 = time.perf_counter()
                for state, op, kind in MOVE_STATES:
                    async with conn.transaction():
                        current = await conn.fetchrow("SELECT * FROM lots WHERE id = $1", lot_id)
                        assert current is not None
                        if op == "track_out":
                            path.append(f"STEP{i}")
                        now = _now()
                        data = json.dumps({"values": {"v": 1.0}, "path_index": i})
                        prev = current["history_head"]
                        step = f"STEP{i}"
                        digest = _chained(prev, lot_id, now.isoformat(), op, state, step, data)
                        status = await conn.execute(
                            "UPDATE lots SET state = $1, path = $2, running = $3, updated_at = $4, version = version + 1, "
                            "history_head = $7 WHERE id = $5 AND version = $6",
                            state,
                            json.dumps(path),
                            json.dumps({"step": f"STEP{i}"}) if state == "RUNNING" else None,
                            now,
                            lot_id,
                            current["version"],
                            digest,
                        )
                        assert status == "UPDATE 1"
                        await conn.fetchval(
                            'INSERT INTO lot_history (lot_id, at, "user", operation, state_before, state_after, step, tool, reason, data, prev_hash, hash) '
                            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING seq",
                            lot_id,
                            now,
                            "bench",
                            op,
                            "WAITING",
                            state,
                            f"STEP{i}",
                            "T",
                            None,
                            data,
                            prev,
                            digest,
                        )
                        await conn.execute(
                            "INSERT INTO outbox (lot_id, kind, payload, created_at) VALUES ($1, $2, $3, $4)",
                            lot_id,
                            kind,
                            data,
                            now,
                        )
                lat.append(time.perf_counter() - t0)
        finally:
            await conn.close()


async def run_floor(floor: SqliteFloor | PostgresFloor, writers: int, moves: int) -> Result:
    await floor.writer(99, 5, [])  # warm up
    lat: list[float] = []
    t0 = time.perf_counter()
    await asyncio.gather(*(floor.writer(w, moves // writers, lat) for w in range(writers)))
    return Result(len(lat), time.perf_counter() - t0, lat)


# -- report --------------------------------------------------------------------------------


def report(label: str, ours: Result, floor: Result, goal: float, off: Result) -> None:
    ratio = ours.rate / floor.rate
    print(
        f"{label:<22} pkgline {ours.rate:8.1f} moves/s  p50 {ours.pct(0.5):6.2f} ms  p99 {ours.pct(0.99):6.2f} ms"
        "  (interlocks on)"
    )
    print(
        f"{'':<22} pkgline {off.rate:8.1f} moves/s  p50 {off.pct(0.5):6.2f} ms  p99 {off.pct(0.99):6.2f} ms"
        "  (interlocks off)"
    )
    print(
        f"{'':<22} floor   {floor.rate:8.1f} moves/s  p50 {floor.pct(0.5):6.2f} ms  p99 {floor.pct(0.99):6.2f} ms"
    )
    verdict = "meets" if ratio >= goal else "BELOW"
    print(f"{'':<22} ratio   {ratio:8.2f}  (goal >= {goal}: {verdict})")


async def _pg_admin(admin_dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _fresh_pg(admin_dsn: str) -> str:
    name = f"pkgline_bench_{uuid.uuid4().hex[:8]}"
    await _pg_admin(admin_dsn, f'CREATE DATABASE "{name}"')
    return name


async def bench(moves: int, with_postgres: bool) -> None:
    lot_moves = await moves_per_lot()
    print(
        f"lot moves: flow {FLOW} {PARAMS}, {moves} moves per configuration; a move is track-in + track-out;"
        f" a lot takes {lot_moves} moves, then the next lot starts (pkgline and floor alike)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        ours = await run_pkgline(f"sqlite:///{tmp}/ours.db", 1, moves)
        off = await run_pkgline(f"sqlite:///{tmp}/off.db", 1, moves, interlocks=False)
        floor_engine = create_engine(f"sqlite:///{tmp}/floor.db")
        await upgrade(floor_engine)
        await floor_engine.dispose()
        floor = await run_floor(SqliteFloor(f"{tmp}/floor.db", lot_moves), 1, moves)
        report("SQLite, 1 writer", ours, floor, 0.35, off)
    if not with_postgres:
        return
    admin = os.environ.get("PKGLINE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
    base = admin.rsplit("/", 1)[0]
    for writers in (1, 8):
        names = [await _fresh_pg(admin), await _fresh_pg(admin), await _fresh_pg(admin)]
        try:
            ours = await run_pkgline(f"{base}/{names[0]}", writers, moves)
            off = await run_pkgline(f"{base}/{names[2]}", writers, moves, interlocks=False)
            engine = create_engine(f"{base}/{names[1]}")
            await upgrade(engine)
            await engine.dispose()
            floor = await run_floor(PostgresFloor(f"{base}/{names[1]}", lot_moves), writers, moves)
            report(
                f"PostgreSQL, {writers} writer{'s' if writers > 1 else ''}",
                ours,
                floor,
                0.7 if writers == 8 else 0.0,
                off,
            )
        finally:
            for name in names:
                await _pg_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--moves", type=int, default=800, help="moves per configuration (default 800)"
    )
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args()
    asyncio.run(bench(args.moves, not args.no_postgres))


if __name__ == "__main__":
    main()
