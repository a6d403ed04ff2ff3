"""Fill a lot tracker database with lots of every flow and realistic histories, for the
plant-scale tests and benchmarks (bench/lists.py).

A plant's database holds months of finished lots and a working set in progress. This makes
``--lots N`` lots, of which ``--active`` are in progress (waiting at some step, running a
step on a tool with its first carrier's job started, or held) and the rest finished
(completed, a few scrapped on the way), spread over the last ``--days`` days, finished ones
first. Each flow is walked once, for real, through the lot service on the in-memory store
(track-in on a tool, a job per carrier started and recorded, the last one tracking the lot
out; manual steps tracked in and out), and every lot is a copy of its flow's walk cut at
some point: its row, carriers, history entries and jobs, with its own ids and times. The
copies go in through the store's tables, thousands of rows per statement, in one
transaction per batch of lots: no service call per move, so 100,000 lots of ~80 history
entries each take minutes, not hours.

Seeded history has no outbox rows: it is the past, published long ago; a relay started on
a seeded database has nothing to catch up on.

    .venv/bin/python bench/seed.py --db URL --lots 100000 [--active 200] [--days 180]

The database is migrated to the latest revision first; lots already there are kept (new
ids are ``S<run>-<n>``, ``--prefix`` to choose).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Table, select, text
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine

from flows import FlowLibrary, load_library
from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.rows import history_values, lot_values
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.adapters.tables import carriers, jobs, lot_history, lots
from mes.domain import commands as cmd
from mes.domain import operations as ops
from mes.domain.equipment import ToolRegistration
from mes.domain.model import HistoryEntry, Lot, LotState
from mes.equipment import EquipmentService
from mes.service import LotService
from pkgline.bootstrap import seed_flow_versions

TEMPLATE = "SEEDTEMPLATE"
"""The template lot's id; every string that holds it is rewritten with the copy's id."""
MINUTES_PER_MOVE = 7
USER = "seed"
HOLD_REASONS = ("die crack seen at inspection", "recipe check pending", "engineering hold")


@dataclass(frozen=True, slots=True)
class Cut:
    """A flow's walk cut at one point: a lot as it stood then, with everything written so far
    (as table rows of the template lot) and how long since the lot started."""

    state: LotState
    lot: dict[str, Any]
    carriers: tuple[dict[str, Any], ...]
    history: tuple[dict[str, Any], ...]
    jobs: tuple[dict[str, Any], ...]
    elapsed: timedelta


@dataclass(frozen=True, slots=True)
class Walk:
    """Every cut of one flow's walk, by what the lot is at that point."""

    flow: str
    waiting: tuple[Cut, ...]
    running: tuple[Cut, ...]
    held: tuple[Cut, ...]
    scrapped: tuple[Cut, ...]
    completed: Cut


class _Clock:
    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=MINUTES_PER_MOVE)
        return self.now


async def walk_flow(library: FlowLibrary, flow: str, scratch: Path, carrier_count: int = 2) -> Walk:
    """Walk one lot of ``flow`` from start to end through the service on a scratch SQLite
    database, the way the line runs it (a job per carrier on tool steps), and cut it at
    every step."""
    start = datetime(2000, 1, 1, tzinfo=UTC)
    clock = _Clock(start)
    engine = create_engine(f"sqlite:///{scratch / (flow + '.db')}")
    try:
        await upgrade(engine)
        factory = SqlUnitOfWorkFactory(engine)
        service = LotService(factory, library, clock=clock)
        await _register_tools(EquipmentService(factory), library)

        async def cut(lot: Lot, extra: tuple[HistoryEntry, ...] = ()) -> Cut:
            async with engine.connect() as conn:
                found = [
                    tuple(
                        dict(r)
                        for r in (await conn.execute(select(table).where(where == lot.id)))
                        .mappings()
                        .all()
                    )
                    for table, where in (
                        (carriers, carriers.c.lot_id),
                        (lot_history, lot_history.c.lot_id),
                        (jobs, jobs.c.lot_id),
                    )
                ]
            history = tuple({k: v for k, v in h.items() if k != "seq"} for h in found[1])
            unwritten = tuple(_unchained(history_values(e)) for e in extra)
            return Cut(
                state=lot.state,
                lot=_unchained({"id": lot.id, **lot_values(lot)}),
                carriers=found[0],
                history=history + unwritten,
                jobs=found[2],
                elapsed=lot.updated_at - start,
            )

        return await _walk(service, library, flow, carrier_count, clock, cut)
    finally:
        await engine.dispose()


UNCHAINED = "0" * 64
"""The hash of what the walk made but did not write (a hold, a scrap): seeded lots are copies
under other ids, so their history is not a hash chain anyway (``pkgline audit verify``
reports them); these only fill the columns."""


def _unchained(values: dict[str, Any]) -> dict[str, Any]:
    return {
        k: UNCHAINED if v is None and k in ("prev_hash", "hash", "history_head") else v
        for k, v in values.items()
    }


async def _register_tools(equipment: EquipmentService, library: FlowLibrary) -> None:
    """The walk's tools (three of each class, named as :func:`_walk` names them), registered
    by a line and so qualified for their class's steps, as the track-in interlocks want."""
    steps: dict[str, list[str]] = {}
    for code, info in library.step_codes.items():
        if info.equipment_class != "manual":
            steps.setdefault(info.equipment_class, []).append(code)
    await equipment.register(
        "seed",
        [
            ToolRegistration(f"{cls}-{n}", cls, f"seed {cls}-{n}", tuple(codes))
            for cls, codes in steps.items()
            for n in (1, 2, 3)
        ],
    )


async def _walk(
    service: LotService,
    library: FlowLibrary,
    flow: str,
    carrier_count: int,
    clock: _Clock,
    cut: Callable[..., Awaitable[Cut]],
) -> Walk:
    lot = (
        await service.start(
            cmd.StartLot(TEMPLATE, flow, USER, carriers=carrier_count, site_rows=4, site_cols=8)
        )
    ).lot
    waiting: list[Cut] = []
    running: list[Cut] = []
    held: list[Cut] = []
    scrapped: list[Cut] = []
    jobs_made = 0
    while lot.state is LotState.WAITING and (steps := service.next_in_order(lot)):
        waiting.append(await cut(lot))
        hold = ops.hold(lot, cmd.HoldLot(lot.id, USER, HOLD_REASONS[len(held) % 3]), clock())
        held.append(await cut(hold.lots[0], hold.entries))
        scrap = ops.scrap(lot, cmd.ScrapLot(lot.id, USER, "carrier broken in handling"), clock())
        scrapped.append(await cut(scrap.lots[0], scrap.entries))
        step = steps[0]
        equipment_class = library.step_codes[step].equipment_class
        if equipment_class == "manual":
            await service.track_in(cmd.TrackIn(lot.id, step, USER))
            lot = (await service.track_out(cmd.TrackOut(lot.id, USER))).lot
            continue
        tool = f"{equipment_class}-{1 + len(waiting) % 3}"
        lot = (
            await service.track_in(
                cmd.TrackIn(lot.id, step, "controller", tool=tool, dispatched=True)
            )
        ).lot
        for n, carrier in enumerate(lot.carriers):
            jobs_made += 1
            job_id = f"{TEMPLATE}-J{jobs_made}"
            lot = (
                await service.start_job(cmd.StartJob(lot.id, job_id, tool, carrier, "controller"))
            ).lot
            if n == 0:
                running.append(await cut(lot))
            lot = (await service.record_job(cmd.RecordJob(job_id, "controller"))).lot
    if lot.state is LotState.WAITING:  # only optional steps left: the flow may end here
        lot = (await service.complete(cmd.CompleteLot(lot.id, USER))).lot
    if lot.state is not LotState.COMPLETED:
        raise RuntimeError(f"the walk of {flow} ended {lot.state.value}, not COMPLETED")
    done = await cut(lot)
    return Walk(flow, tuple(waiting), tuple(running), tuple(held), tuple(scrapped), done)


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

    def copy(self, row: dict[str, Any], lot_id: str, shift: timedelta) -> tuple[Any, ...]:
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
        return tuple(copied)

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
) -> Iterator[tuple[Cut, str, timedelta, int]]:
    """(cut, lot id, time shift, priority) for each lot to make, oldest first: the finished
    ones over ``days`` before ``now`` (one in fifty scrapped somewhere on its way), then the
    ``active`` ones in the last day (three in five waiting, one in five running a step, one
    in five held), every flow in turn."""
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
        yield cut, f"{prefix}-{n + 1:06d}", shift, rng.choice((3, 5, 5, 5, 7))


class Batch:
    """The rows of a batch of seeded lots, table by table, as the driver takes them."""

    def __init__(self, dialect: Dialect):
        self.copiers = {t.name: RowCopier(t, dialect) for t in (lots, carriers, lot_history, jobs)}
        self.rows: dict[str, list[tuple[Any, ...]]] = {name: [] for name in self.copiers}

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
        self.rows["lots"].append(tuple(self.copiers["lots"].values(lot)))
        for name, template in (
            ("carriers", cut.carriers),
            ("lot_history", cut.history),
            ("jobs", cut.jobs),
        ):
            copier = self.copiers[name]
            self.rows[name].extend(copier.copy(r, lot_id, shift) for r in template)

    async def write(self, engine: AsyncEngine) -> dict[str, int]:
        """Insert the batch in one transaction (SQLite: executemany; PostgreSQL: COPY) and
        empty it; return how many rows of each table were written."""
        async with engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            if engine.dialect.name == "postgresql":
                async with raw.transaction():
                    for name, found in self.rows.items():
                        await raw.copy_records_to_table(
                            name, records=found, columns=self.copiers[name].columns
                        )
            else:
                await raw.execute("BEGIN IMMEDIATE")
                try:
                    for name, found in self.rows.items():
                        columns = self.copiers[name].columns
                        names = ", ".join(f'"{c}"' for c in columns)
                        await raw.executemany(
                            f"INSERT INTO {name} ({names}) "
                            f"VALUES ({', '.join('?' for _ in columns)})",
                            found,
                        )
                    await raw.execute("COMMIT")
                except BaseException:
                    await raw.execute("ROLLBACK")
                    raise
        written = {name: len(found) for name, found in self.rows.items()}
        self.rows = {name: [] for name in self.copiers}
        return written


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
    """Make ``count`` lots (``active`` of them in progress) on a migrated database; return
    how many rows of each table were written."""
    if count < 0 or active < 0:
        raise ValueError("the number of lots and of active lots are 0 or more")
    library = library or load_library()
    # on tmpfs where there is one: the walk's commits need no fsync
    with tempfile.TemporaryDirectory(dir=_tmpfs()) as scratch:
        walks = [await walk_flow(library, name, Path(scratch)) for name in sorted(library.flows)]
    written = {"lots": 0, "carriers": 0, "lot_history": 0, "jobs": 0}
    batch = Batch(engine.dialect)
    t0 = time.perf_counter()
    planned = plan_lots(walks, count, active, days, now or datetime.now(UTC), prefix)
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


def _tmpfs() -> str | None:
    return "/dev/shm" if Path("/dev/shm").is_dir() else None


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
    parser.add_argument("--prefix", default="S", help="lot ids are PREFIX-000001, ...")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args()
    if args.lots < 0 or args.active < 0:
        parser.error("--lots and --active are 0 or more")
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
