"""Fill a lot tracker database with lots of every flow and realistic histories, for the
plant-scale tests and benchmarks (bench/lists.py).

A plant's database holds months of finished lots and a working set in progress. This makes
``--lots N`` lots, of which ``--active`` are in progress (waiting at some step, running a
step on a tool with its first carrier's job started, or held) and the rest finished
(completed, a few scrapped on the way), spread over the last ``--days`` days, finished ones
first. Each flow is walked once, for real, through the lot service on a scratch SQLite
database (track-in on a tool, a job per carrier started and recorded, the last one tracking
the lot out; manual steps tracked in and out), and every lot is a copy of its flow's walk cut
at some point (bench/seed_walk.py): its row, carriers, history entries and jobs, with its own
ids and times. The
copies go in through the store's tables, thousands of rows per statement, in one
transaction per batch of lots: no service call per move, so 100,000 lots of ~80 history
entries each take minutes, not hours.

The copies' history is a hash chain as the store writes it, computed by the store's own
:func:`mes.domain.audit.chain` (each batch as one change that starts its lots, after the
head of the chain over lots, which it moves on): ``pkgline audit verify`` passes on a seeded
database, and lots started on it later follow on. Hashing (about 8 million entries for
100,000 lots) is about half of the time a seeding takes.

The tools the lots name (three of each equipment class, ``<class>-<n>``) are registered
through the equipment service by the line controller ``seed``, qualified for their class's
steps; ``pkgline tool list`` shows them, not connected. A database whose line already owns
a tool of one of those names is refused before any lot is written.

Seeded history has no outbox rows: it is the past, published long ago; a relay started on
a seeded database has nothing to catch up on.

    .venv/bin/python bench/seed.py --db URL --lots 100000 [--active 200] [--days 180]

The database is migrated to the latest revision first; lots already there are kept. New
ids are ``S-<n>`` (``--prefix`` to choose), numbered on after the highest ``S-<n>`` there:
seeding again adds lots.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from seed_walk import LINE as LINE  # the walk's names, re-exported: the seed's own
from seed_walk import TEMPLATE, Cut, Walk, register_tools, walk_flows
from seed_walk import seed_tools as seed_tools
from seed_walk import walk_flow as walk_flow  # the tests walk one flow
from sqlalchemy import Table, select, text
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine

from flows import FlowLibrary, load_library
from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.adapters.tables import LOTS_CHAIN, audit_heads, carriers, jobs, lot_history, lots
from mes.domain import audit
from mes.domain.model import Change, HistoryEntry, Lot
from mes.equipment import EquipmentService
from pkgline.bootstrap import seed_flow_versions

# -- copies ------------------------------------------------------------------------------------


def _holds_template(value: Any) -> bool:
    if isinstance(value, str):
        return TEMPLATE in value
    if isinstance(value, dict):
        return any(_holds_template(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_holds_template(v) for v in value)
    return False


class RowCopier:
    """Copies a table's template rows with another lot id and times shifted, as the values
    the database driver takes (SQLAlchemy's own bind processors, applied once per template
    row). Which values hold the template's id or a time is found once per template row: a
    text is replaced, a JSON value that holds the id is rewritten as text (``json.loads``
    of the replaced text, C speed), a time shifted and processed again; the rest is shared."""

    def __init__(self, table: Table, dialect: Dialect) -> None:
        self.table = table
        self.columns = [c.name for c in table.c if c.name in _WRITTEN[table.name]]
        self._process = [
            table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in self.columns
        ]
        self._plans: dict[int, _Plan] = {}

    def values(self, row: dict[str, Any]) -> list[Any]:
        """``row`` as the driver takes it."""
        return [
            v if p is None else p(v)
            for v, p in zip((row[n] for n in self.columns), self._process, strict=True)
        ]

    def copy(self, row: dict[str, Any], lot_id: str, shift: timedelta) -> list[Any]:
        plan = self._plans.get(id(row))
        if plan is None:
            plan = self._plans[id(row)] = self._plan(row)
        copied = list(plan.values)
        for i in plan.texts:
            copied[i] = copied[i].replace(TEMPLATE, lot_id)
        for i, encoded in plan.nested:
            copied[i] = json.loads(encoded.replace(TEMPLATE, lot_id))
        for i, raw in plan.times:
            process = self._process[i]
            copied[i] = raw + shift if process is None else process(raw + shift)
        return copied

    def _plan(self, row: dict[str, Any]) -> _Plan:
        values = self.values(row)
        return _Plan(
            values=values,
            texts=[i for i, v in enumerate(values) if isinstance(v, str) and TEMPLATE in v],
            nested=[
                (i, json.dumps(v))
                for i, v in enumerate(values)
                if isinstance(v, dict | list) and _holds_template(v)
            ],
            times=[(i, row[n]) for i, n in enumerate(self.columns) if isinstance(row[n], datetime)],
        )


@dataclass(frozen=True, slots=True)
class _Plan:
    values: list[Any]
    texts: list[int]
    nested: list[tuple[int, str]]
    times: list[tuple[int, datetime]]


_WRITTEN = {
    "lots": {c.name for c in lots.c},
    "carriers": {c.name for c in carriers.c},
    "lot_history": {c.name for c in lot_history.c if c.name != "seq"},
    "jobs": {c.name for c in jobs.c},
}


def _shift_since(value: dict[str, Any] | None, shift: timedelta) -> dict[str, Any] | None:
    """The ``since`` of a lot's running step or hold (ISO text in JSON), shifted."""
    if value is None:
        return None
    return {**value, "since": (datetime.fromisoformat(value["since"]) + shift).isoformat()}


def plan_lots(
    walks: list[Walk],
    count: int,
    active: int,
    days: float,
    now: datetime,
    prefix: str,
    seed: int = 20,
    *,
    first: int = 1,
) -> Iterator[tuple[Cut, str, timedelta, int]]:
    """(cut, lot id, time shift, priority) for each lot to make, oldest first: the finished
    ones over ``days`` before ``now`` (one in fifty scrapped somewhere on its way), then the
    ``active`` ones in the last day (three in five waiting, one in five running a step, one
    in five held), every flow in turn; named ``PREFIX-<n>``, ``n`` from ``first`` on."""
    rng = random.Random(seed)
    active = min(active, count)
    finished = count - active
    span = timedelta(days=days)
    for n in range(count):
        walk = walks[n % len(walks)]
        if n < finished:
            kind = "scrapped" if rng.random() < 0.02 else "completed"
            started = now - span + span * (n / max(finished, 1)) - timedelta(days=2)
        else:
            roll = rng.random()
            kind = "waiting" if roll < 0.6 else "running" if roll < 0.8 else "held"
            started = now - timedelta(days=1) + timedelta(days=1) * ((n - finished) / active)
        cut = walk.completed if kind == "completed" else rng.choice(getattr(walk, kind))
        if kind != "completed" and n >= finished:
            # the lot is in progress now: its last move happened within the last hour
            started = min(started, now - cut.elapsed - timedelta(minutes=rng.uniform(1, 60)))
        shift = started - datetime(2000, 1, 1, tzinfo=UTC)
        yield cut, f"{prefix}-{first + n:06d}", shift, rng.choice((3, 5, 5, 5, 7))


async def next_number(engine: AsyncEngine, prefix: str) -> int:
    """The number a new seeded lot ``PREFIX-<n>`` starts from: one after the highest of the
    lots already named so (1 on a database with none), so that seeding again adds lots."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    query = select(lots.c.id).where(lots.c.id.like(f"{escaped}-%", escape="\\"))
    async with engine.connect() as conn:
        found = (await conn.execute(query)).scalars().all()
    start = len(prefix) + 1
    numbers = (
        int(lot_id[start:])
        for lot_id in found
        if lot_id.startswith(f"{prefix}-") and lot_id[start:].isascii() and lot_id[start:].isdigit()
    )
    return max(numbers, default=0) + 1


class EntryCopier:
    """Copies a template lot's history entries as the domain's values, with another lot id
    and times shifted: what a copy's hash chain is computed from (by the project's own
    :func:`mes.domain.audit.chain`, as the store does). As :class:`RowCopier` does, what
    changes is found once per template entry (the texts that hold the template's id, the
    time; data that holds the id is rewritten as text, as the row's is, so that the hash
    covers what the row stores) and the rest shared; a copy is made by the constructor from
    the fields in order (``dataclasses.replace`` costs twice as much, a million times)."""

    def __init__(self) -> None:
        self._plans: dict[int, _EntryPlan] = {}

    def copy(self, entry: HistoryEntry, lot_id: str, shift: timedelta) -> HistoryEntry:
        plan = self._plans.get(id(entry))
        if plan is None:
            plan = self._plans[id(entry)] = self._plan(entry)
        values = list(plan.values)
        for i in plan.texts:
            values[i] = values[i].replace(TEMPLATE, lot_id)
        if plan.data is not None:
            values[plan.data[0]] = json.loads(plan.data[1].replace(TEMPLATE, lot_id))
        values[plan.at] += shift
        return HistoryEntry(*values)

    @staticmethod
    def _plan(entry: HistoryEntry) -> _EntryPlan:
        names = [f.name for f in fields(entry) if f.init]
        values = [getattr(entry, n) for n in names]
        data = names.index("data")
        return _EntryPlan(
            values=values,
            texts=[i for i, v in enumerate(values) if isinstance(v, str) and TEMPLATE in v],
            data=(data, json.dumps(entry.data)) if _holds_template(dict(entry.data)) else None,
            at=names.index("at"),
        )


@dataclass(frozen=True, slots=True)
class _EntryPlan:
    values: list[Any]
    texts: list[int]
    data: tuple[int, str] | None
    """The index of the data and its JSON text, when it holds the template's id."""
    at: int


class Batch:
    """The rows of a batch of seeded lots, table by table, as the driver takes them. The
    history's hashes and the lots' heads are filled in when the batch is written: they
    follow the head of the chain over lots at that time."""

    def __init__(self, dialect: Dialect):
        self.copiers = {t.name: RowCopier(t, dialect) for t in (lots, carriers, lot_history, jobs)}
        self.rows: dict[str, list[list[Any]]] = {name: [] for name in self.copiers}
        self._entries = EntryCopier()
        self._lots: list[tuple[Lot, dict[str, Any]]] = []
        """Each lot of the batch: as the chain takes it, and its row (with no head yet)."""
        self._history: list[HistoryEntry] = []
        """Every history entry of the batch, in the order of its rows, not yet chained."""
        self._chained: tuple[str, str] | None = None
        """The head the rows are chained after, and the head after them (None: not yet)."""
        history = self.copiers["lot_history"].columns
        self._prev_hash, self._hash = history.index("prev_hash"), history.index("hash")

    def add(self, cut: Cut, lot_id: str, shift: timedelta, priority: int) -> None:
        """Add one seeded lot: a copy of ``cut`` named ``lot_id``, ``shift`` later."""
        lot = dict(cut.lot)
        lot.update(
            id=lot_id,
            priority=priority,
            created_at=lot["created_at"] + shift,
            updated_at=lot["updated_at"] + shift,
            running=_shift_since(lot["running"], shift),
            hold=_shift_since(lot["hold"], shift),
        )
        self._lots.append((replace(cut.record, id=lot_id), lot))
        self._chained = None
        for name, template in (("carriers", cut.carriers), ("jobs", cut.jobs)):
            copier = self.copiers[name]
            self.rows[name].extend(copier.copy(r, lot_id, shift) for r in template)
        copier = self.copiers["lot_history"]
        self.rows["lot_history"].extend(copier.copy(r, lot_id, shift) for r in cut.history)
        self._history.extend(self._entries.copy(e, lot_id, shift) for e in cut.entries)

    def chain(self, lots_head: str) -> str:
        """Chain the batch's history after ``lots_head`` (the head of the chain over lots) as
        the store chains a change that starts these lots, lot after lot in the order of the
        rows; fill in the rows' hashes and the lots' heads; return the new head."""
        if self._chained is not None and self._chained[0] == lots_head:
            return self._chained[1]
        records = tuple(record for record, _ in self._lots)
        change = Change(records, {r.id: None for r in records}, tuple(self._history))
        chained = audit.chain(change, lots_head)
        for row, entry in zip(self.rows["lot_history"], chained.change.entries, strict=True):
            row[self._prev_hash], row[self._hash] = entry.prev_hash, entry.hash
        copier = self.copiers["lots"]
        self.rows["lots"] = [
            copier.values({**row, "history_head": record.history_head})
            for record, (_, row) in zip(chained.change.lots, self._lots, strict=True)
        ]
        self._chained = (lots_head, chained.lots_head or lots_head)
        return self._chained[1]

    async def prepare(self, engine: AsyncEngine) -> None:
        """Chain the batch after the head of the chain over lots as it is now, outside the
        write's transaction (hashing takes a while; no lock is held meanwhile)."""
        async with engine.connect() as conn:
            head = (await conn.execute(_LOTS_HEAD)).scalar_one_or_none()
        if head is None:
            raise RuntimeError(
                "the database has no head of the chain over lots (audit_heads): it is not "
                "migrated to the current schema (pkgline db upgrade)"
            )
        self.chain(head)

    async def write(self, engine: AsyncEngine) -> dict[str, int]:
        """Insert the batch in one transaction (SQLite: executemany; PostgreSQL: COPY),
        chained after the head of the chain over lots, which it moves on, and empty it;
        return how many rows of each table were written. Chained by :meth:`prepare` (here
        if it was not called) and, in the transaction with the head locked, again only if
        another writer started a lot since."""
        if self._chained is None:
            await self.prepare(engine)
        async with engine.connect() as conn:
            raw: Any = (await conn.get_raw_connection()).driver_connection  # asyncpg, aiosqlite
            if engine.dialect.name == "postgresql":
                async with raw.transaction():
                    head = await raw.fetchval(
                        "SELECT head FROM audit_heads WHERE chain = $1 FOR UPDATE", LOTS_CHAIN
                    )
                    new_head = self.chain(head)
                    for name, found in self.rows.items():
                        await raw.copy_records_to_table(
                            name, records=found, columns=self.copiers[name].columns
                        )
                    await raw.execute(
                        "UPDATE audit_heads SET head = $1 WHERE chain = $2", new_head, LOTS_CHAIN
                    )
            else:
                await raw.execute("BEGIN IMMEDIATE")  # the one write lock, to the commit
                try:
                    async with raw.execute(
                        "SELECT head FROM audit_heads WHERE chain = ?", (LOTS_CHAIN,)
                    ) as cursor:
                        head = (await cursor.fetchone())[0]
                    new_head = self.chain(head)
                    for name, found in self.rows.items():
                        columns = self.copiers[name].columns
                        names = ", ".join(f'"{c}"' for c in columns)
                        await raw.executemany(
                            f"INSERT INTO {name} ({names}) "
                            f"VALUES ({', '.join('?' for _ in columns)})",
                            found,
                        )
                    await raw.execute(
                        "UPDATE audit_heads SET head = ? WHERE chain = ?", (new_head, LOTS_CHAIN)
                    )
                    await raw.execute("COMMIT")
                except BaseException:
                    await raw.execute("ROLLBACK")
                    raise
        written = {name: len(found) for name, found in self.rows.items()}
        self.rows = {name: [] for name in self.copiers}
        self._lots, self._history, self._chained = [], [], None
        return written


_LOTS_HEAD = select(audit_heads.c.head).where(audit_heads.c.chain == LOTS_CHAIN)


async def seed(
    engine: AsyncEngine,
    count: int,
    *,
    active: int = 200,
    days: float = 180.0,
    prefix: str = "S",
    library: FlowLibrary | None = None,
    batch_size: int = 2000,
    now: datetime | None = None,
    progress: bool = False,
) -> dict[str, int]:
    """Make ``count`` lots (``active`` of them in progress) on a migrated database, named
    ``PREFIX-<n>`` numbered on after the highest such lot already there, their history
    chained as the store chains it (``pkgline audit verify`` passes), the tools they name
    registered; return how many rows of each table were written."""
    if count < 0 or active < 0:
        raise ValueError("the number of lots and of active lots are 0 or more")
    library = library or load_library()
    now = now or datetime.now(UTC)
    await register_tools(EquipmentService(SqlUnitOfWorkFactory(engine), clock=lambda: now), library)
    first = await next_number(engine, prefix)
    walks = await walk_flows(library)
    written = {"lots": 0, "carriers": 0, "lot_history": 0, "jobs": 0}
    batch = Batch(engine.dialect)
    t0 = time.perf_counter()
    planned = plan_lots(walks, count, active, days, now, prefix, first=first)
    for n, (cut, lot_id, shift, priority) in enumerate(planned, start=1):
        batch.add(cut, lot_id, shift, priority)
        if n % batch_size == 0 or n == count:
            for name, rows in (await batch.write(engine)).items():
                written[name] += rows
            if progress:
                rate = n / (time.perf_counter() - t0)
                print(
                    f"  {n:>8,} lots  {written['lot_history']:>10,} history entries  "
                    f"{rate:,.0f} lots/s",
                    flush=True,
                )
    # statistics for the planner: after a bulk load PostgreSQL has none until autovacuum
    # comes round, and may plan scans the seeded table does not deserve
    async with engine.begin() as conn:
        await conn.execute(text("ANALYZE"))
    return written


async def _main(args: argparse.Namespace) -> None:
    engine = create_engine(args.db)
    try:
        await upgrade(engine)  # as ``pkgline db upgrade``: the schema, and the flows
        await seed_flow_versions(engine)  # published and approved as version 1
        t0 = time.perf_counter()
        written = await seed(
            engine,
            args.lots,
            active=args.active,
            days=args.days,
            prefix=args.prefix,
            progress=not args.quiet,
        )
        seconds = time.perf_counter() - t0
        print(
            f"seeded {written['lots']:,} lots ({min(args.active, args.lots):,} in progress), "
            f"{written['carriers']:,} carriers, {written['lot_history']:,} history entries, "
            f"{written['jobs']:,} jobs in {seconds:.1f} s"
        )
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="database URL (sqlite:///PATH, postgresql://)")
    parser.add_argument("--lots", type=int, required=True, help="how many lots to make")
    parser.add_argument("--active", type=int, default=200, help="lots in progress (default 200)")
    parser.add_argument("--days", type=float, default=180.0, help="the time they span")
    parser.add_argument(
        "--prefix",
        default="S",
        help="lot ids are PREFIX-000001, ... (after the highest PREFIX-n already there)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args()
    if args.lots < 0 or args.active < 0:
        parser.error("--lots and --active are 0 or more")
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
