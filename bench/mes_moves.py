"""Lot moves per second through the lot tracker, against a floor of the same transactions
that takes pkgline's own shortcuts.

A move is a track-in plus a track-out: two transactions, each reading the lot, updating it
(version-checked), and appending one history row and one outbox row, with the same hash chain
(each history entry hashed with the one before it, the lot's head updated with it:
docs/security.md), on the same tables with the same durability settings (SQLite WAL,
synchronous=FULL, BEGIN IMMEDIATE; PostgreSQL synchronous_commit on). pkgline goes through
its service (rules, the track-in interlocks, its write plans); the floor (bench/moves_floor.py)
is raw SQL on the same driver, and takes the shortcuts pkgline takes:

- SQLite: the whole transaction in one call on the connection's thread (pkgline's write
  plans run so), the writers queueing on that thread; each move committed on its own.
- PostgreSQL: BEGIN, read the lot, then the very statement pkgline sends for a move
  (mes.adapters.sql_statements.move_in_one_statement: update, history and outbox in one),
  COMMIT.

Runs are interleaved (pkgline, floor, pkgline, floor, ... ``--pairs`` pairs, each run on a
fresh database), so the machine's load falls on both alike; each figure is printed as its
median with the lowest and highest run, and the ratio pkgline / floor pair by pair.
Configurations: SQLite with 1 and 8 writers (pkgline's 8 go through its group commit, the
floor still commits every move), PostgreSQL with 1 and 8 writers.

Goals (issue 20), against the honest floor: PostgreSQL 8 writers at 0.8 or better; SQLite
1 writer at 0.7 or better; SQLite 8 writers through group commit above the 1-writer
floor's moves per second. pkgline runs with the track-in interlocks and SPC on (issue 17:
"with every interlock and SPC rule on"): each writer has its own tool of each class, and
each tool step is tracked in on one, registered and qualified, as its line controller does,
with durables mounted (each track-out counts on them), material lots loaded (each track-in
checks their clocks and records them in the lot), and an SPC chart of every real-valued
measured value of its steps, all eight Nelson rules on; each track-out reports those values
(a pattern in control, :data:`PATTERN`), each a point checked by its chart's rules.
``--interlocks-off`` adds a run of pkgline with them off (tool steps tracked in with no tool:
no interlock, no chart; the same values reported) to each round.

    .venv/bin/python bench/mes_moves.py [--moves N] [--pairs N] [--no-postgres] [--interlocks-off]

The machine's load is printed at start and end. PostgreSQL is reached at
$PKGLINE_BENCH_POSTGRES (default postgresql://postgres@127.0.0.1:5432/test); scratch
databases are created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Spread, load_printed, pct, postgres_admin, print_verdict, scratch_postgres
from moves_floor import FLOW, Result, make_floor, run_floor

from flows import load_library
from mes.adapters.database import create_engine
from mes.adapters.memory import MemoryUnitOfWorkFactory
from mes.adapters.migrate import upgrade
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain import commands as cmd
from mes.domain.durables import KINDS as DURABLE_KINDS
from mes.domain.durables import MAX_LIFE
from mes.domain.equipment import ToolRegistration
from mes.domain.interlocks import MANUAL_CLASS
from mes.domain.materials import KINDS as MATERIAL_KINDS
from mes.domain.model import LotState
from mes.durables import DurableService
from mes.equipment import EquipmentService
from mes.materials import MaterialService
from mes.service import LotService, utc_now
from mes.spc import SpcService

PARAMS = {"layers": "8"}  # a long flow: few lot starts per measured move
SQLITE_GOAL = 0.7
POSTGRES_GOAL = 0.8


# -- pkgline -------------------------------------------------------------------------------


def _bench_tool(service: LotService, step: str, tools: int) -> str | None:
    """The bench's tool for a step: writer ``tools``' own of the step's equipment class
    (None for an operator step)."""
    cls = service.flows.step_codes[step].equipment_class
    return None if cls == MANUAL_CLASS else _tool_id(tools, cls)


def _tool_id(tools: int, cls: str) -> str:
    return f"B{tools}-{cls}"[:32]


PATTERN = (0.5, -1.2, 0.8, 0.3, -0.4, 1.3, -0.9, -0.2)
"""The measured values of a chart, in sigmas from its center, over and over: a process in
control that breaks none of the eight Nelson rules (no point past 2 sigma, no run of the
same side, no trend, no alternation of 14, and past 1 sigma every eighth point, so rule 7's
15 within 1 sigma is never met either). Each writer has tools of its own, so each chart
gets its points in this order."""


@dataclass(frozen=True)
class Charted:
    """A measured value of a step, charted on every bench tool of its class."""

    value: str
    center: float
    sigma: float


def _charted(service: LotService) -> dict[str, list[Charted]]:
    """Every real-valued measured value of the flow's tool steps, per step, with the center
    and sigma of its chart: the spec's target (or middle) and a twelfth of its width (a
    sixth of target to limit), else 100 and 1 where the flow gives no spec."""
    found: dict[str, list[Charted]] = {}
    for code, step in service.flows.flows[FLOW].steps.items():
        if service.flows.step_codes[code].equipment_class == MANUAL_CLASS:
            continue
        for name, spec in step.measured.items():
            if spec.type != "float":
                continue
            center, sigma = 100.0, 1.0
            limits = spec.spec
            if limits is not None:
                lower, upper = limits.lower, limits.upper
                if limits.target is not None:
                    center = float(limits.target)
                elif lower is not None and upper is not None:
                    center = (float(lower) + float(upper)) / 2
                sides = [abs(float(x) - center) for x in (lower, upper) if x is not None]
                sigma = min(sides) / 6 if sides else 1.0
            found.setdefault(code, []).append(Charted(name, center, sigma))
    return found


@dataclass
class Measuring:
    """What each track-out reports: every charted value of its step, the next of
    :data:`PATTERN` for its tool (or for no tool, with the interlocks off)."""

    charted: dict[str, list[Charted]]
    counts: dict[tuple[str | None, str, str], int] = field(default_factory=dict)

    def measured(self, tool: str | None, step: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for c in self.charted.get(step, ()):
            n = self.counts.get((tool, step, c.value), 0)
            self.counts[tool, step, c.value] = n + 1
            out[c.value] = round(c.center + PATTERN[n % len(PATTERN)] * c.sigma, 6)
        return out


async def _register_tools(
    service: LotService,
    equipment: EquipmentService,
    factory: SqlUnitOfWorkFactory,
    writers: int,
    charted: dict[str, list[Charted]],
) -> None:
    """Each writer's own tool of each equipment class, qualified (by its registration) for
    the class's steps, with a durable of each kind its class takes mounted (counted by every
    track-out), a material lot of each kind loaded (thawed, within its clocks), and an SPC
    chart of each charted value of its steps, every Nelson rule on, so that every track-in
    interlock reads, every track-out counts and every measured value is a point checked."""
    by_class: dict[str, list[str]] = {}
    for code, info in service.flows.step_codes.items():
        if info.equipment_class != MANUAL_CLASS:
            by_class.setdefault(info.equipment_class, []).append(code)
    await equipment.register(
        "bench",
        [
            ToolRegistration(_tool_id(w, cls), cls, "bench", tuple(steps))
            for w in range(writers)
            for cls, steps in sorted(by_class.items())
        ],
    )
    durables, materials = DurableService(factory, utc_now), MaterialService(factory, utc_now)
    spc = SpcService(factory, service.flows, utc_now)
    far = utc_now() + timedelta(days=365)
    for w in range(writers):
        for kind, spec in DURABLE_KINDS.items():
            if spec.equipment_class in by_class:
                await durables.add(f"D{w}-{kind.value}", kind.value, MAX_LIFE, "bench")
                await durables.mount(
                    f"D{w}-{kind.value}", _tool_id(w, spec.equipment_class), "bench"
                )
        for mkind, mspec in MATERIAL_KINDS.items():
            if mspec.equipment_class in by_class:
                name = f"M{w}-{mkind.value}"
                clocks = {"thaw_minutes": 0, "floor_life_minutes": 10**6} if mspec.frozen else {}
                await materials.add(name, mkind.value, far, "bench", **clocks)
                if mspec.frozen:
                    await materials.thaw(name, "bench")
                await materials.load(name, _tool_id(w, mspec.equipment_class), "bench")
        for step, values in charted.items():
            tool = _tool_id(w, service.flows.step_codes[step].equipment_class)
            for c in values:
                await spc.configure(
                    step, c.value, tool, "bench", center=c.center, sigma=c.sigma, nelson=True
                )


async def _pkgline_writer(
    service: LotService,
    writer: int,
    moves: int,
    lat: list[float],
    measuring: Measuring,
    *,
    tools: int = 0,
    one_lot: bool = False,
    interlocks: bool = True,
) -> None:
    """``moves`` moves, lot after lot, on the tools of ``tools`` (a writer's own), each
    track-out reporting the step's charted values."""
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
        tool = _bench_tool(service, step, tools) if interlocks else None
        measured = measuring.measured(tool, step)
        await service.track_in(cmd.TrackIn(lot_id, step, "bench", tool=tool, dispatched=True))
        done_step = cmd.TrackOut(lot_id, "bench", measured=measured, dispatched=True)
        lot = (await service.track_out(done_step)).lot
        lat.append(time.perf_counter() - t0)
        done += 1
        if lot.state is not LotState.WAITING:
            lot_id = ""


async def moves_per_lot() -> int:
    """How many moves a lot of the flow takes from start to end (the floor starts a new lot
    after as many, as pkgline's writers do: its path stays as long as a real lot's)."""
    count: list[float] = []
    service = LotService(MemoryUnitOfWorkFactory(), load_library())
    measuring = Measuring(_charted(service))
    await _pkgline_writer(service, 0, 10_000, count, measuring, one_lot=True, interlocks=False)
    return len(count)


async def run_pkgline(url: str, writers: int, moves: int, *, interlocks: bool = True) -> Result:
    engine = create_engine(url, pool_size=max(5, writers))
    try:
        await upgrade(engine)
        factory = SqlUnitOfWorkFactory(engine)
        service = LotService(factory, load_library())
        measuring = Measuring(_charted(service))
        if interlocks:
            await _register_tools(
                service, EquipmentService(factory), factory, writers, measuring.charted
            )
        # warm up the pool (a connection per writer, statements prepared) and the caches
        await asyncio.gather(
            *(
                _pkgline_writer(service, 90 + w, 2, [], measuring, tools=w, interlocks=interlocks)
                for w in range(writers)
            )
        )
        lat: list[float] = []
        t0 = time.perf_counter()
        await asyncio.gather(
            *(
                _pkgline_writer(
                    service, w, moves // writers, lat, measuring, tools=w, interlocks=interlocks
                )
                for w in range(writers)
            )
        )
        return Result(len(lat), time.perf_counter() - t0, lat)
    finally:
        await engine.dispose()


# -- interleaved runs ----------------------------------------------------------------------


@dataclass
class Runs:
    """The runs of one configuration, in the order they ran: pkgline's and the floor's
    alternate (and pkgline's with the interlocks off, when asked for), each on a database of
    its own."""

    label: str
    pkgline: list[Result] = field(default_factory=list)
    floor: list[Result] = field(default_factory=list)
    off: list[Result] = field(default_factory=list)

    def ratios(self) -> list[float]:
        """pkgline / floor moves per second, pair by pair (each pair ran back to back)."""
        return [
            ours.rate / floor.rate for ours, floor in zip(self.pkgline, self.floor, strict=True)
        ]


def all_latencies(results: Sequence[Result]) -> list[float]:
    return [x for r in results for x in r.latencies]


@contextlib.asynccontextmanager
async def fresh_database(kind: str, tmp: Path) -> AsyncIterator[str]:
    """A new database, migrated to the head: its URL (SQLite: a file under ``tmp``;
    PostgreSQL: a scratch database, dropped after)."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp}/{uuid.uuid4().hex[:8]}.db"
        await _migrate(url)
        yield url
        return
    async with scratch_postgres(postgres_admin()) as url:
        await _migrate(url)
        yield url


async def _migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


async def interleaved(
    label: str, kind: str, writers: int, moves: int, pairs: int, lot_moves: int, *, off: bool
) -> Runs:
    """``pairs`` rounds of pkgline then the floor (then pkgline with the interlocks off),
    each run on a fresh database, so that the machine's load falls on both alike."""
    runs = Runs(label)
    with tempfile.TemporaryDirectory(prefix="pkgline-moves-") as tmp_name:
        tmp = Path(tmp_name)
        for _ in range(pairs):
            async with fresh_database(kind, tmp) as url:
                runs.pkgline.append(await run_pkgline(url, writers, moves))
            async with fresh_database(kind, tmp) as url:
                runs.floor.append(await run_floor(make_floor(url, lot_moves), writers, moves))
            if off:
                async with fresh_database(kind, tmp) as url:
                    runs.off.append(await run_pkgline(url, writers, moves, interlocks=False))
    return runs


# -- report --------------------------------------------------------------------------------


def _line(label: str, what: str, results: Sequence[Result]) -> str:
    rates = Spread.of([r.rate for r in results]).format(".1f")
    lat = all_latencies(results)
    return (
        f"{label:<22} {what:<8} {rates} moves/s;"
        f"  p50 {pct(lat, 0.5) * 1000:.2f} ms  p99 {pct(lat, 0.99) * 1000:.2f} ms"
    )


def report(runs: Runs) -> None:
    print(_line(runs.label, "pkgline", runs.pkgline))
    if runs.off:
        print(_line("", "(off)", runs.off) + "  (interlocks and SPC off)")
    print(_line("", "floor", runs.floor))
    ratios = " ".join(f"{r:.2f}" for r in runs.ratios())
    print(f"{'':<22} {'ratio':<8} {Spread.of(runs.ratios()).format()}; pair by pair: {ratios}")


def ratio_verdict(runs: Runs, goal: float) -> None:
    """The goal on the median of the pairs' ratios (each pair measured under the same load)."""
    spread = Spread.of(runs.ratios())
    print_verdict(
        f"{runs.label}: pkgline >= {goal} of the floor",
        spread.median >= goal,
        f"median ratio {spread.median:.2f}, pairs {spread.low:.2f}-{spread.high:.2f}",
    )


def group_commit_verdict(eight: Runs, one: Runs) -> None:
    """SQLite's group commit: pkgline with 8 writers must make more moves per second than the
    floor with one writer, which commits each move (the best a commit per move can do)."""
    ours = Spread.of([r.rate for r in eight.pkgline])
    floor = Spread.of([r.rate for r in one.floor])
    print_verdict(
        "SQLite, 8 writers (group commit): pkgline above the 1-writer floor's moves/s",
        ours.median > floor.median,
        f"median {ours.median:.1f} vs {floor.median:.1f} moves/s, "
        f"ratio {ours.median / floor.median:.2f}",
    )


async def bench(moves: int, pairs: int, with_postgres: bool, *, off: bool) -> None:
    lot_moves = await moves_per_lot()
    print(
        f"lot moves: flow {FLOW} {PARAMS}, {moves} moves per run, {pairs} pairs of runs per "
        f"configuration (pkgline, floor, pkgline, floor, ...: each on a fresh database); a move "
        f"is track-in + track-out; a lot takes {lot_moves} moves, then the next lot starts "
        "(pkgline and floor alike)"
    )
    kinds = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
    if not with_postgres:
        del kinds["postgresql"]
    with load_printed("lot moves"):
        runs: dict[tuple[str, int], Runs] = {}
        for kind, name in kinds.items():
            for writers in (1, 8):
                label = f"{name}, {writers} writer{'s' if writers > 1 else ''}"
                runs[kind, writers] = await interleaved(
                    label, kind, writers, moves, pairs, lot_moves, off=off
                )
                report(runs[kind, writers])
        print("verdicts (on the honest floor):")
        ratio_verdict(runs["sqlite", 1], SQLITE_GOAL)
        group_commit_verdict(runs["sqlite", 8], runs["sqlite", 1])
        if with_postgres:
            ratio_verdict(runs["postgresql", 8], POSTGRES_GOAL)
        else:
            print("  goal PostgreSQL, 8 writers: not measured (--no-postgres)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--moves", type=int, default=800, help="moves per run (default 800)")
    parser.add_argument(
        "--pairs", type=int, default=3, help="pairs of runs (pkgline, floor) per configuration"
    )
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument(
        "--interlocks-off",
        action="store_true",
        help="also run pkgline with the track-in interlocks and SPC off, in each round",
    )
    args = parser.parse_args()
    if args.pairs < 1 or args.moves < 8:
        parser.error("--pairs takes 1 or more, --moves 8 or more (8 writers)")
    asyncio.run(bench(args.moves, args.pairs, not args.no_postgres, off=args.interlocks_off))


if __name__ == "__main__":
    main()
