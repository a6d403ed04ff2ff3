"""Line throughput: the line controller's own time per step, and lots per hour.

Run: ``.venv/bin/python bench/line_throughput.py [--measure 30] [--per-flow 8] [--no-postgres]``
(``--worst N`` lists the longest gaps, ``--poll S`` sets every tool's poll / publishing
interval, ``--profile FILE`` writes a pyinstrument profile of the window (``pip install -e
'.[bench]'``), ``--log-dir DIR`` keeps the controller's log, ``--no-gc-freeze`` leaves out
``pkgline serve``'s :func:`~pkgline.controller.line.freeze_startup_objects`). About 45 s per
database with the defaults.

The example line (``pkgline/line.example.toml``, else ``deploy/line.example.toml``: 13 tools,
every class, eight over Modbus TCP and five over OPC UA) is simulated by ``pkgline sim
--time-scale 0`` in ANOTHER process, on free loopback ports: every recipe setup and every job
takes no time. THIS process runs the line controller (:class:`LineController`, built as
``pkgline serve`` builds it, logging JSON lines at info level to a scratch file) on a fresh
database: a SQLite file, then a scratch PostgreSQL database (``$PKGLINE_BENCH_POSTGRES``,
default ``postgresql://postgres@127.0.0.1:5432/test``; created and dropped). Each tool keeps
the example's connection policy (Modbus poll and OPC UA publishing interval 0.2 s).

The line is kept saturated: ``--per-flow`` lots of each of the nine flows are started up front
and topped up again (checked every 2 s) as lots complete, so the work in progress stays
constant; manual steps are completed by the controller (``auto_manual_steps``).

What is measured: an observer on every tool records ``time.monotonic()`` when the controller
has SEEN the tool report a job complete, when it is about to send the tool its next StartJob,
and (the lot service the controller runs on, :class:`TimedLots`) when that job's start is
written to the database, which the tool runner does once the tool has answered the StartJob.
A step of the controller is the time from the completion seen to that write, on one tool:
recording the results and acknowledging them, then either the next carrier of the same lot
(``next carrier``), or tracking the lot out while dispatching and tracking the next lot in,
then loading and verifying its recipe (``next lot``); then sending StartJob, the tool's answer
and the job's start written. The time the tool takes to report completion (a poll or
publishing interval) comes before the step and is not in it; the tool's own process time is
zero.

Which gaps are steps: those where the next work was already there when the completion was
seen. The next carrier of a lot always is. A next lot counts when, at that moment, some lot
was already waiting for a step that tool runs (from lot history: waiting from the entry
before its track-in until that track-in), or when it is the same lot going on to its very
next step on the same tool (not when it comes back after a step on another tool). Gaps where
the tool had run dry (ramp-up, a tool starved by the flows upstream of it) hold the wait for
a lot: they are printed apart (``starved``), with their own figures, and are not in the steps
nor in the goal. The first ``--warmup`` seconds after the controller is ready are left out
(pools, caches, every tool's first recipe); gaps are counted when their completion was seen
inside the ``--measure`` window, and the controller runs on for a few seconds after it so
that each of them ends (those that do not are counted as left out).

Printed per database: p50, p99 and max of the controller's time per step (all, and per kind,
with the median of each part), the starved gaps apart, lots completed per hour and jobs per
second in the window, the controller process's CPU (fraction of one core), the machine's load
at start and end, and the goal: p99 under 50 ms, with a verdict. Figures only: nothing here
asserts on them.

Reading lots per hour: a tool's completion is seen at its next poll, and the controller's
gap comes after it, so with a gap shorter than the poll interval a tool runs one job per
poll period (0.2 s: about 5 jobs/s on the busiest tool); the line's rate is then set by the
poll interval more than by the controller. ``--poll 0.05`` shows the controller's own limit.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import gc
import importlib.util
import json
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    cpu_seconds,
    load_printed,
    pct,
    postgres_admin,
    print_verdict,
    scratch_postgres,
    stat_cpu,
)

from drivers.factory import DriverFactory
from mes.adapters.database import create_engine, display_url
from mes.adapters.migrate import upgrade
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.adapters.tables import jobs, lot_history
from mes.domain import commands as cmd
from mes.domain.authority import Principal
from mes.domain.commands import StartJob
from mes.domain.model import LotState
from mes.equipment import EquipmentService
from mes.service import LotService, Outcome
from pkgline.bootstrap import flow_library, seed_flow_versions
from pkgline.config import LineConfig, load_line_config
from pkgline.controller.line import (
    LineController,
    connections_needed,
    freeze_startup_objects,
)
from pkgline.logs import configure_logging
from pkgline.security import secure_demo_line
from simulators.line import with_free_ports, write_line_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = (ROOT / "pkgline" / "line.example.toml", ROOT / "deploy" / "line.example.toml")
GOAL_P99_MS = 50.0
SIM_START_S = 60.0
DRAIN_S = 3.0
"""After the window: how long the controller runs on so that the window's gaps end."""
TOP_UP_S = 2.0

log = structlog.get_logger("bench.line_throughput")


# -- the observer -----------------------------------------------------------------------------


@dataclass(slots=True)
class Mark:
    kind: str  # "done" | "start" | "written"
    tool_id: str
    job_id: str
    at: float  # time.monotonic()


@dataclass
class StepClock:
    """A :class:`~pkgline.controller.runner.RunnerObserver` that only writes down the time:
    a completion seen ("done"), a StartJob about to be sent ("start"), and (told by
    :class:`TimedLots`) that job's start written to the database after the tool answered
    ("written")."""

    marks: list[Mark] = field(default_factory=list)

    def job_done_seen(self, tool_id: str, job_id: str) -> None:
        self.marks.append(Mark("done", tool_id, job_id, time.monotonic()))

    def job_starting(self, tool_id: str, job_id: str) -> None:
        self.marks.append(Mark("start", tool_id, job_id, time.monotonic()))

    def job_written(self, tool_id: str, job_id: str) -> None:
        self.marks.append(Mark("written", tool_id, job_id, time.monotonic()))


class TimedLots(LotService):
    """The lot service the controller runs on, marking on ``clock`` when a job's start is
    written. The tool runner sends StartJob, waits for the tool's answer, then writes the
    job as started (:meth:`LotService.start_job`): the end of a step is this mark."""

    def __init__(self, *args: Any, clock: StepClock, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.clock = clock

    async def start_job(self, cmd: StartJob, *, by: Principal | None = None) -> Outcome:
        outcome = await super().start_job(cmd, by=by)
        self.clock.job_written(cmd.tool, cmd.job_id)
        return outcome


# -- the simulated line, in another process ---------------------------------------------------


def with_poll(config: LineConfig, poll_s: float) -> LineConfig:
    """``config`` with every tool polled (or publishing) every ``poll_s`` seconds."""
    return config.model_copy(
        update={
            "tools": tuple(
                t.model_copy(
                    update={"policy": t.policy.model_copy(update={"poll_interval_s": poll_s})}
                )
                for t in config.tools
            )
        }
    )


def example_config() -> LineConfig:
    for path in EXAMPLES:
        if path.exists():
            return load_line_config(path)
    raise SystemExit(f"no example line configuration: looked for {', '.join(map(str, EXAMPLES))}")


@contextlib.asynccontextmanager
async def simulated_line(config_path: Path, stderr: TextIO) -> AsyncIterator[int]:
    """``pkgline sim --time-scale 0`` on the configuration, until the block ends; its pid."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pkgline",
        "sim",
        "--config",
        str(config_path),
        "--time-scale",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    drain: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(SIM_START_S):
            while b"is running" not in (line := await proc.stdout.readline()):
                if not line:
                    raise SystemExit(f"pkgline sim exited with {await proc.wait()}; see its log")

        async def discard(stream: asyncio.StreamReader) -> None:
            while await stream.read(65536):
                pass

        drain = asyncio.create_task(discard(proc.stdout))
        yield proc.pid
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if drain is not None:
            await drain


# -- one run ------------------------------------------------------------------------------------


@dataclass
class Gap:
    tool_id: str
    kind: str  # "next carrier" | "next lot"
    seconds: float
    parts: dict[str, float] = field(default_factory=dict)
    """Where the time went, from the controller's log: seconds per part (see PARTS)."""


PARTS = {
    "next carrier": ("recorded", "next sent", "answered, written"),
    "next lot": ("recorded", "dispatched", "next sent", "answered, written"),
    "starved": ("recorded", "dispatched", "next sent", "answered, written"),
}
"""Each kind of gap in parts: results read and recorded ("job recorded" in the controller's
log); the next lot tracked in on the tool ("lot dispatched" in the log); the next job's lot
read, its recipe loaded and verified (after the acknowledge), up to the observer's "job
starting" ("next sent"); the tool's answer to StartJob and the job's start written to the
database (:class:`TimedLots`: "answered, written"). The first two run at once in a next lot's
gap (the tool is offered for its next lot when its lot's last job completes), so both are
timed from the completion seen, and "next sent" from the later of them."""


@dataclass
class RunResult:
    label: str
    window_s: float
    gaps: list[Gap]
    """Every step whose completion was seen in the window and that ended: "next carrier" and
    "next lot" (work was waiting) and "starved" (the tool had none: printed apart)."""
    unfinished: int
    lots_completed: int
    jobs_started: int
    cpu_fraction: float
    sim_cpu_fraction: float
    seen_after: list[float]
    held: int
    warnings: Counter[str]
    per_tool_jobs: Counter[str]
    db_cpu_fraction: float | None = None
    """The local PostgreSQL server's CPU, when it is the database and /proc shows it."""
    transports: dict[str, str] = field(default_factory=dict)
    """Each tool's transport (modbus, opcua)."""

    @property
    def steps(self) -> list[Gap]:
        """The controller's steps: the gaps where the tool's next work was waiting."""
        return [g for g in self.gaps if g.kind != "starved"]

    @property
    def starved(self) -> list[Gap]:
        """The gaps where the tool had no work waiting when its completion was seen: they
        hold the wait for a lot, not only the controller's time."""
        return [g for g in self.gaps if g.kind == "starved"]


async def start_lots(lots: LotService, counts: dict[str, int], per_flow: int) -> int:
    """Top every flow up to ``per_flow`` lots waiting or running; the number started."""
    started = 0
    for flow_name in sorted(lots.flows.flows):
        for _ in range(per_flow - counts.get(flow_name, 0)):
            lot_id = f"T{uuid.uuid4().hex[:10]}"
            await lots.start(cmd.StartLot(lot_id, flow_name, "bench"))
            started += 1
    return started


async def in_progress(lots: LotService) -> dict[str, int]:
    found = await lots.find(states=[LotState.WAITING, LotState.RUNNING], limit=1_000_000)
    return dict(Counter(lot.flow for lot in found))


async def keep_topped_up(lots: LotService, per_flow: int) -> None:
    while True:
        await asyncio.sleep(TOP_UP_S)
        await start_lots(lots, await in_progress(lots), per_flow)


def _postgres_cpu_seconds() -> float | None:
    """utime + stime of the PostgreSQL server processes on this machine (every database's),
    from /proc; None when none is seen. A backend that exits meanwhile takes its time along:
    the controller's stay connected."""
    total, seen = 0.0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, seconds = stat_cpu(stat.read_text())
        except OSError:
            continue
        if name == "postgres":
            total += seconds
            seen = True
    return total if seen else None


async def run_line(
    label: str, url: str, config: LineConfig, args: argparse.Namespace, tmp: Path, sim_pid: int
) -> RunResult:
    engine = create_engine(url, pool_size=connections_needed(config))
    factory = DriverFactory()
    log_dir = Path(args.log_dir) if args.log_dir else tmp
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"controller-{label.split()[0].lower()}.log"
    try:
        await upgrade(engine)  # as ``pkgline db upgrade``: the schema, and the flows
        await seed_flow_versions(engine)  # published and approved as version 1
        uow = SqlUnitOfWorkFactory(engine)
        clock = StepClock()
        lots = TimedLots(uow, flow_library(), clock=clock)
        equipment = EquipmentService(uow)
        await start_lots(lots, {}, args.per_flow)
        with log_path.open("w", encoding="utf-8") as log_file:
            configure_logging("info", json=True, stream=log_file)
            try:
                controller = LineController(
                    config,
                    lots,
                    equipment,
                    factory.create_all(config.tools),
                    observer=clock,
                    before_ready=(lambda: None) if args.no_gc_freeze else freeze_startup_objects,
                )
                running = asyncio.create_task(controller.run(), name="controller")
                ready = asyncio.create_task(controller.ready.wait())
                await asyncio.wait([running, ready], return_when=asyncio.FIRST_COMPLETED)
                if running.done():
                    running.result()  # raises what stopped it
                topping = asyncio.create_task(keep_topped_up(lots, args.per_flow))
                try:
                    await asyncio.sleep(args.warmup)
                    t0, cpu0, wall0 = time.monotonic(), time.process_time(), time.time()
                    sim0 = cpu_seconds(sim_pid)
                    db0 = _postgres_cpu_seconds() if url.startswith("postgresql") else None
                    profiler = _profiler() if args.profile else None
                    await asyncio.sleep(args.measure)
                    t1, cpu1, wall1 = time.monotonic(), time.process_time(), time.time()
                    sim1 = cpu_seconds(sim_pid)
                    db1 = _postgres_cpu_seconds() if db0 is not None else None
                    if profiler is not None:
                        profiler.stop()
                        _write_profile(profiler, Path(args.profile), label)
                    await asyncio.sleep(DRAIN_S)
                finally:
                    topping.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await topping
                    controller.request_stop()
                    await running
            finally:
                configure_logging("warning", stream=sys.stderr)
        result = await analyse(label, engine, clock, (t0, t1), (wall0, wall1), log_path)
        result.cpu_fraction = (cpu1 - cpu0) / (t1 - t0)
        result.transports = {t.id: t.endpoint.transport for t in config.tools}
        result.sim_cpu_fraction = (sim1 - sim0) / (t1 - t0)
        if db0 is not None and db1 is not None:
            result.db_cpu_fraction = (db1 - db0) / (t1 - t0)
        return result
    finally:
        gc.unfreeze()  # the next database's run starts as this one did
        await factory.aclose()
        await engine.dispose()


@dataclass
class ControllerLog:
    """What the analysis takes from the controller's log (wall-clock times)."""

    recorded: dict[str, float] = field(default_factory=dict)
    """job id -> the time of its "job recorded" (results recorded)"""
    dispatched: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    """(tool id, lot id) -> the time of each "lot dispatched" """
    warnings: Counter[str] = field(default_factory=Counter)


def read_log(log_path: Path) -> ControllerLog:
    found = ControllerLog()
    with log_path.open(encoding="utf-8") as lines:
        for line in lines:
            entry = json.loads(line)
            event = entry.get("event", "?")
            if entry.get("level") in ("warning", "error", "critical"):
                found.warnings[event] += 1
            if event == "job recorded":
                found.recorded[entry["job_id"]] = _iso_seconds(entry["timestamp"])
            elif event == "lot dispatched":
                key = (entry["tool_id"], entry["lot"])
                found.dispatched.setdefault(key, []).append(_iso_seconds(entry["timestamp"]))
    return found


def _iso_seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# -- analysis -----------------------------------------------------------------------------------


def _utc(value: datetime) -> float:
    return value.astimezone(UTC).timestamp()


async def analyse(
    label: str,
    engine: AsyncEngine,
    clock: StepClock,
    window: tuple[float, float],
    wall_window: tuple[float, float],
    log_path: Path,
) -> RunResult:
    async with engine.connect() as conn:
        job_rows = (
            await conn.execute(select(jobs.c.job_id, jobs.c.lot_id, jobs.c.path_index))
        ).all()
        history_rows = (
            await conn.execute(
                select(
                    lot_history.c.lot_id,
                    lot_history.c.at,
                    lot_history.c.operation,
                    lot_history.c.state_after,
                    lot_history.c.step,
                    lot_history.c.tool,
                ).order_by(lot_history.c.seq)
            )
        ).all()
    job_of = {r.job_id: (r.lot_id, r.path_index) for r in job_rows}

    # When each lot waited for each tool: from its previous history entry to its track-in.
    waits: dict[str, list[tuple[float, float]]] = defaultdict(list)
    track_ins: dict[str, list[tuple[float, str]]] = defaultdict(list)  # lot -> (at, tool)
    previous: dict[str, float] = {}
    completed = held = 0
    wall0, wall1 = wall_window
    for r in history_rows:
        at = _utc(r.at)
        if r.operation == "track_in" and r.tool:
            track_ins[r.lot_id].append((at, r.tool))
            if r.lot_id in previous:
                waits[r.tool].append((previous[r.lot_id], at))
        if r.state_after == LotState.COMPLETED.value and wall0 <= at < wall1:
            completed += 1
        if r.state_after == LotState.HOLD.value:
            held += 1
        previous[r.lot_id] = at

    logged = read_log(log_path)
    # monotonic -> wall clock (both read together; the run is short)
    offset = time.time() - time.monotonic()
    t0, t1 = window
    steps = ToolSteps()
    started_in_window: Counter[str] = Counter()
    by_tool: dict[str, list[Mark]] = defaultdict(list)
    for mark in clock.marks:
        by_tool[mark.tool_id].append(mark)
        if mark.kind == "start" and t0 <= mark.at < t1:
            started_in_window[mark.tool_id] += 1
    for tool_id, marks in by_tool.items():
        tool_steps(
            steps,
            tool_id,
            marks,
            window,
            offset,
            job_of,
            sorted(waits.get(tool_id, [])),
            track_ins,
            logged,
        )
    return RunResult(
        label=label,
        window_s=t1 - t0,
        gaps=steps.gaps,
        unfinished=steps.unfinished,
        lots_completed=completed,
        jobs_started=sum(started_in_window.values()),
        cpu_fraction=0.0,
        sim_cpu_fraction=0.0,
        seen_after=steps.seen_after,
        held=held,
        warnings=logged.warnings,
        per_tool_jobs=started_in_window,
    )


@dataclass
class ToolSteps:
    """What :func:`tool_steps` finds, over every tool."""

    gaps: list[Gap] = field(default_factory=list)
    unfinished: int = 0
    """Completions seen in the window whose next job's start was not written by the end."""
    seen_after: list[float] = field(default_factory=list)
    """Job start sent -> its completion seen, seconds (the tool's poll: not in the gaps)."""


def tool_steps(
    found: ToolSteps,
    tool_id: str,
    marks: Sequence[Mark],
    window: tuple[float, float],
    offset: float,
    job_of: dict[str, tuple[str, int]],
    waits: Sequence[tuple[float, float]],
    track_ins: dict[str, list[tuple[float, str]]],
    logged: ControllerLog,
) -> None:
    """The steps of one tool, added to ``found``: from each completion seen in ``window``
    (monotonic) to the next job's start written after the tool answered StartJob. ``offset``
    turns monotonic times into wall-clock ones (the history's and the log's); ``job_of``:
    job id -> (lot id, path index); ``waits``: when lots waited for this tool (from the
    history entry before their track-in to it), sorted; ``track_ins``: lot -> (at, tool) of
    its track-ins."""
    t0, t1 = window
    starts = [a for a, _ in waits]
    started_at: dict[str, float] = {}
    for i, mark in enumerate(marks):
        if mark.kind == "start":
            started_at[mark.job_id] = mark.at
        if mark.kind != "done" or not t0 <= mark.at < t1:
            continue
        if mark.job_id in started_at:
            found.seen_after.append(mark.at - started_at[mark.job_id])
        following = next((m for m in marks[i + 1 :] if m.kind == "start"), None)
        written = None
        if following is not None:
            written = next(
                (m for m in marks[i + 1 :] if m.kind == "written" and m.job_id == following.job_id),
                None,
            )
        if following is None or written is None:
            found.unfinished += 1
            continue
        done_lot, done_index = job_of[mark.job_id]
        next_lot, next_index = job_of[following.job_id]
        seen, sent, end = mark.at + offset, following.at + offset, written.at + offset
        recorded = logged.recorded.get(mark.job_id, sent)
        if next_lot == done_lot and next_index == done_index:
            parts = {
                "recorded": recorded - seen,
                "next sent": sent - recorded,
                "answered, written": end - sent,
            }
            found.gaps.append(Gap(tool_id, "next carrier", end - seen, parts))
            continue
        kind = "next lot"
        went_on_here = next_lot == done_lot and not any(
            seen < at < sent and tool != tool_id for at, tool in track_ins.get(done_lot, [])
        )
        if not went_on_here:
            # work waiting: a lot that began waiting before the completion was seen and was
            # tracked in after it (the lot just done counts only when its very next step is on
            # this tool: not when it comes back after a step elsewhere, the tool idle meanwhile)
            k = bisect.bisect_right(starts, seen)
            if not any(until > seen for _, until in waits[:k]):
                kind = "starved"
        dispatched = next(
            (t for t in logged.dispatched.get((tool_id, next_lot), []) if seen <= t <= sent),
            recorded,
        )
        parts = {
            "recorded": recorded - seen,
            "dispatched": dispatched - seen,
            "next sent": sent - max(recorded, dispatched),
            "answered, written": end - sent,
        }
        found.gaps.append(Gap(tool_id, kind, end - seen, parts))


# -- profiling (optional) -----------------------------------------------------------------------


def _profiler() -> Any:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    return profiler


def _write_profile(profiler: Any, path: Path, label: str) -> None:
    target = path.with_name(f"{path.stem}-{label.split()[0].lower()}{path.suffix or '.txt'}")
    if target.suffix == ".html":
        target.write_text(profiler.output_html(), encoding="utf-8")
    else:
        target.write_text(
            profiler.output_text(unicode=True, show_all=False, color=False), encoding="utf-8"
        )
    print(f"  profile written to {target}")


# -- report -------------------------------------------------------------------------------------


def ms(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (seconds), in milliseconds."""
    return pct(values, q) * 1000.0


def report(result: RunResult, worst: int = 0) -> None:
    print(f"\n{result.label}")
    gaps = result.steps
    rows: list[tuple[str, list[Gap]]] = [("all steps", gaps)]
    for kind in ("next carrier", "next lot"):
        rows.append((kind, [g for g in gaps if g.kind == kind]))
    rows.append(("starved", result.starved))
    for name, of_kind in rows:
        if name == "starved":
            print(
                "  apart, not in the steps above nor in the goal: the gaps where the tool had no "
                "work waiting when its completion was seen (they hold the wait for a lot)"
            )
        values = [g.seconds for g in of_kind]
        if not values:
            print(f"  {name:<13} no gaps")
            continue
        print(
            f"  {name:<13} p50 {ms(values, 0.5):7.1f} ms  p99 {ms(values, 0.99):7.1f} ms  "
            f"max {max(values) * 1000:7.1f} ms  ({len(values)} gaps)"
        )
        if name in PARTS:
            split = ", ".join(
                f"{part} {statistics.median(g.parts[part] for g in of_kind) * 1000:.1f}"
                for part in PARTS[name]
            )
            print(f"  {'':<13} median parts, ms: {split}")
    for transport in sorted(set(result.transports.values())):
        values = [g.seconds for g in gaps if result.transports.get(g.tool_id) == transport]
        if values:
            print(
                f"  {'over ' + transport:<13} p50 {ms(values, 0.5):7.1f} ms  "
                f"p99 {ms(values, 0.99):7.1f} ms  max {max(values) * 1000:7.1f} ms  "
                f"({len(values)} gaps)"
            )
    window_h = result.window_s / 3600
    print(
        f"  left out: {result.unfinished} completions whose next job's start was not written "
        "when the controller stopped"
    )
    print(
        f"  {result.lots_completed} lots completed in {result.window_s:.0f} s: "
        f"{result.lots_completed / window_h:,.0f} lots/hour; "
        f"{result.jobs_started / result.window_s:.1f} jobs/s; "
        f"CPU of one core: controller {result.cpu_fraction:.2f}, "
        f"simulators {result.sim_cpu_fraction:.2f}"
        + (
            f", PostgreSQL server {result.db_cpu_fraction:.2f}"
            if result.db_cpu_fraction is not None
            else ""
        )
    )
    if result.jobs_started:
        # Steadier than the percentiles on a shared machine: compare commits on these. The
        # simulators do the same work per job whatever the commit, so the ratio of the two
        # CPUs also takes out a machine that runs faster or slower from one hour to the next.
        per_job = result.cpu_fraction * result.window_s / result.jobs_started
        line = f"  controller CPU per job: {per_job * 1000:.1f} ms"
        if result.sim_cpu_fraction > 0:
            ratio = result.cpu_fraction / result.sim_cpu_fraction
            line += f"; {ratio:.2f}x the simulators' CPU for the same jobs"
        print(line)
    if result.seen_after:
        print(
            f"  (not in the gaps) job start sent -> completion seen: "
            f"p50 {ms(result.seen_after, 0.5):.0f} ms (the tool's poll / publishing interval)"
        )
    busiest = ", ".join(f"{t} {n}" for t, n in result.per_tool_jobs.most_common())
    print(f"  jobs per tool in the window: {busiest}")
    if result.held:
        print(f"  lots held during the run: {result.held}")
    if result.warnings:
        listed = "; ".join(f"{event} x{n}" for event, n in result.warnings.most_common(5))
        print(f"  controller warnings: {listed}")
    for gap in sorted(gaps, key=lambda g: -g.seconds)[:worst]:
        parts = ", ".join(f"{part} {seconds * 1000:.1f}" for part, seconds in gap.parts.items())
        print(f"  worst: {gap.seconds * 1000:6.1f} ms {gap.tool_id} {gap.kind} ({parts})")
    if gaps:
        p99 = ms([g.seconds for g in gaps], 0.99)
        print_verdict(
            f"{result.label}: p99 < {GOAL_P99_MS:.0f} ms per step",
            p99 < GOAL_P99_MS,
            f"p99 {p99:.1f} ms",
        )
    else:
        print_verdict(
            f"{result.label}: p99 < {GOAL_P99_MS:.0f} ms per step", False, "no steps measured"
        )


# -- main ---------------------------------------------------------------------------------------


async def bench(args: argparse.Namespace) -> None:
    config = example_config()
    flows = len(flow_library().flows)
    print(
        f"line throughput: {config.name}, {len(config.tools)} tools, simulated with time scale 0 "
        f"in another process; {args.per_flow} lots per flow x {flows} flows kept in progress; "
        f"warm-up {args.warmup:.0f} s, window {args.measure:.0f} s"
    )
    if args.poll is not None:
        config = with_poll(config, args.poll)
    polls = sorted({t.policy.poll_interval_s for t in config.tools})
    whose = "--poll" if args.poll is not None else "the example's"
    print(f"  poll / publishing interval: {', '.join(f'{p:g} s' for p in polls)} ({whose})")
    with (
        load_printed("line throughput"),
        tempfile.TemporaryDirectory(prefix="pkgline-throughput-") as tmp_name,
    ):
        tmp = Path(tmp_name)
        # The secure configuration, as the demo runs it (certificates for both sides, trusted).
        line = secure_demo_line(with_free_ports(config), tmp / "pki")
        config_path = write_line_config(line, tmp / "line.toml")
        with (tmp / "sim.log").open("w", encoding="utf-8") as sim_log:
            targets: list[tuple[str, str]] = [("SQLite (temp file)", f"sqlite:///{tmp}/line.db")]
            if args.postgres:
                targets.append(("PostgreSQL (scratch database)", ""))
            for label, url in targets:
                if args.only and args.only.lower() not in label.lower():
                    continue
                # a fresh simulated line per database: every tool starts idle, nothing waiting
                async with contextlib.AsyncExitStack() as stack:
                    sim_pid = await stack.enter_async_context(simulated_line(config_path, sim_log))
                    if not url:
                        url = await stack.enter_async_context(
                            scratch_postgres(postgres_admin(), "pkgline_throughput")
                        )
                    result = await run_line(label, url, line, args, tmp, sim_pid)
                report(result, args.worst)
                print(f"  database: {display_url(url)}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--per-flow", type=int, default=8, help="lots of each flow in progress")
    parser.add_argument("--warmup", type=float, default=8.0, help="s left out after ready")
    parser.add_argument("--measure", type=float, default=30.0, help="s measured per database")
    parser.add_argument("--no-postgres", dest="postgres", action="store_false", help="SQLite only")
    parser.add_argument("--only", help="run only the database whose label contains this")
    parser.add_argument("--log-dir", help="keep the controller's log (JSON lines) here")
    parser.add_argument("--worst", type=int, default=0, help="list the N longest gaps")
    parser.add_argument(
        "--poll",
        type=float,
        help="every tool's poll / publishing interval, s (default: the example's)",
    )
    parser.add_argument(
        "--profile", help="write a pyinstrument profile of the window here (.txt or .html)"
    )
    parser.add_argument(
        "--no-gc-freeze",
        action="store_true",
        help="leave out pkgline serve's gc.freeze() at start (to see what it does)",
    )
    args = parser.parse_args(argv)
    if args.profile and importlib.util.find_spec("pyinstrument") is None:
        parser.error("--profile needs pyinstrument: .venv/bin/pip install -e '.[bench]'")
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
