"""The seed's template lots (bench/seed.py): each flow walked once, for real, through the lot
service on a scratch SQLite database (a job per carrier on tool steps, manual steps tracked in
and out), and cut at every step into what a copy of the lot at that point holds; and the
tools the walks run on, registered through the equipment service."""

from __future__ import annotations

import shutil
import sys
import tempfile
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select

from flows import FlowLibrary
from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.rows import entry_from_row, history_values, lot_values
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.adapters.tables import carriers, jobs, lot_history
from mes.domain import commands as cmd
from mes.domain import operations as ops
from mes.domain.equipment import ToolRegistration
from mes.domain.model import HistoryEntry, Lot, LotState
from mes.equipment import EquipmentService
from mes.service import LotService

TEMPLATE = "SEEDTEMPLATE"
"""The template lot's id; every string that holds it is rewritten with the copy's id."""
MINUTES_PER_MOVE = 7
USER = "seed"
HOLD_REASONS = ("die crack seen at inspection", "recipe check pending", "engineering hold")


@dataclass(frozen=True, slots=True)
class Cut:
    """A flow's walk cut at one point: a lot as it stood then, with everything written so far
    (as table rows of the template lot) and how long since the lot started; the lot and its
    history also as the domain's values, which a copy's hash chain is computed from."""

    state: LotState
    lot: dict[str, Any]
    carriers: tuple[dict[str, Any], ...]
    history: tuple[dict[str, Any], ...]
    jobs: tuple[dict[str, Any], ...]
    elapsed: timedelta
    record: Lot
    entries: tuple[HistoryEntry, ...]
    """The history as entries, in the order of :attr:`history` (hashes not used: a copy's
    are its own)."""


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


_WALKS: weakref.WeakKeyDictionary[FlowLibrary, list[Walk]] = weakref.WeakKeyDictionary()


async def walk_flows(library: FlowLibrary) -> list[Walk]:
    """Every flow of ``library`` walked (:func:`walk_flow`), in the order of their names, on
    scratch databases copied from one migrated once. A walk depends on the flows alone (its
    clock starts at a fixed time), so a process that seeds again (a bench at several sizes,
    the tests) walks a library once: about 5 s less a seeding, most of it the walks."""
    found = _WALKS.get(library)
    if found is None:
        # on tmpfs where there is one: the walk's commits need no fsync
        with tempfile.TemporaryDirectory(dir=_tmpfs()) as name:
            scratch = Path(name)
            migrated = scratch / "migrated.db"
            engine = create_engine(f"sqlite:///{migrated}")
            try:
                await upgrade(engine)
            finally:
                await engine.dispose()
            found = [
                await walk_flow(library, flow, scratch, migrated=migrated)
                for flow in sorted(library.flows)
            ]
        _WALKS[library] = found
    return found


def _tmpfs() -> str | None:
    return "/dev/shm" if Path("/dev/shm").is_dir() else None


async def walk_flow(
    library: FlowLibrary,
    flow: str,
    scratch: Path,
    carrier_count: int = 2,
    *,
    migrated: Path | None = None,
) -> Walk:
    """Walk one lot of ``flow`` from start to end through the service on a scratch SQLite
    database, the way the line runs it (a job per carrier on tool steps), and cut it at
    every step. The database is made in ``scratch``: a copy of ``migrated`` (a database at
    the head revision, with nothing else in it), or migrated there."""
    start = datetime(2000, 1, 1, tzinfo=UTC)
    clock = _Clock(start)
    path = scratch / (flow + ".db")
    if migrated is not None:
        shutil.copyfile(migrated, path)
    engine = create_engine(f"sqlite:///{path}")
    try:
        if migrated is None:
            await upgrade(engine)
        factory = SqlUnitOfWorkFactory(engine)
        service = LotService(factory, library, clock=clock)
        await register_tools(EquipmentService(factory), library)

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
            entries = tuple(entry_from_row(h) for h in found[1]) + extra
            return Cut(
                state=lot.state,
                lot={"id": lot.id, **lot_values(lot)},
                carriers=found[0],
                history=tuple(history_values(e) for e in entries),
                jobs=found[2],
                elapsed=lot.updated_at - start,
                record=lot,
                entries=entries,
            )

        return await _walk(service, library, flow, carrier_count, clock, cut)
    finally:
        await engine.dispose()


LINE = "seed"
"""The line controller the seeded tools are registered by (a tool has one: a configuration
that names one of them for another line is refused until it is taken out of this one)."""
TOOLS_PER_CLASS = 3


def tool_id(equipment_class: str, n: int) -> str:
    """The ``n``-th seeded tool of a class (1 to :data:`TOOLS_PER_CLASS`)."""
    return f"{equipment_class}-{n}"


def seed_tools(library: FlowLibrary) -> list[ToolRegistration]:
    """The tools the walks run on, and so the seeded lots name: three of each equipment class
    that has a step (``manual`` has none), each for every step of its class."""
    steps: dict[str, list[str]] = {}
    for code, info in library.step_codes.items():
        if info.equipment_class != "manual":
            steps.setdefault(info.equipment_class, []).append(code)
    return [
        ToolRegistration(tool_id(cls, n), cls, f"seed {tool_id(cls, n)}", tuple(codes))
        for cls, codes in sorted(steps.items())
        for n in range(1, TOOLS_PER_CLASS + 1)
    ]


async def register_tools(equipment: EquipmentService, library: FlowLibrary) -> None:
    """Register :func:`seed_tools` through the equipment service, as a line controller does
    at start: the tools a database's lots name exist, of their class, qualified for their
    class's steps (the track-in interlocks want it); seen for the first time, not connected.
    Registered again (a second seeding), they are kept; owned by another line, refused with
    the service's error, before anything is written."""
    await equipment.register(LINE, seed_tools(library))


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
        tool = tool_id(equipment_class, 1 + len(waiting) % TOOLS_PER_CLASS)
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
