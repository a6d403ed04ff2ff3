"""Line scale of ``pkgline serve`` itself: ``bench/line_scale.py --serve`` (issue 20).

Run: ``.venv/bin/python bench/line_scale.py --serve [--tools 100,200,500]
[--db sqlite|postgres|both] [--measure 20] [--warmup 10] [--wip N] [--per-gateway 50]
[--db-poll 0.05]`` (a short look: ``--tools 20 --warmup 10 --measure 15``; the simulator and
the controller start in a few seconds at N = 20, and the lots need the warm-up to spread).

For each N a line configuration of N simulated tools is written: the example line's 13 tools
(every class; Modbus TCP and OPC UA, secure as ``pkgline demo`` runs them) copied round-robin,
the copy k of tool ``DB-1`` named ``DB-1.k``, each with the example's policy (poll or
publishing interval 0.2 s) and simulation settings; the OPC UA copies are grouped about
``--per-gateway`` to a gateway. The controller runs as ``pkgline serve`` in a child process on
a fresh database (a SQLite file, or a scratch PostgreSQL database as bench/common.py makes
them); lots of every flow are kept in progress (``--wip``, default one per tool) from this
process, through the lot service, so the tools have work.

The simulators run in another child process: the same :class:`~simulators.line.SimulatedLine`
``pkgline sim`` runs on the same file, with a listener on every tool that writes down the wall
time (``time.time()``, one clock for every process) of each status change: that is the only
difference from ``pkgline sim``, which has no way to tell these times. A change is one of
process state or job (what the controller reports at once; progress alone it reports at most
once a second, so the sites done are not counted as changes).

What is measured, in a window after a warm-up:

- the controller's CPU, from /proc of its pid, as a fraction of one core (and the simulators';
  the machine's load at start and end);
- the notice delay: from a state change on a tool until the controller has RECORDED it. This
  process reads every tool's row (its process state and job, and ``tools.updated_at``: the
  time of the observation the controller wrote) every ``--db-poll`` seconds; a change at t to
  a state is recorded at the first read that shows that state (or one the tool changed to
  after it), observed at or after t. The figure is an upper bound by up to one
  read period (printed); the controller's own part, up to its observation, is printed apart
  (the observed time minus t);
- the step time: for each job whose completion the controller observed in the window (the
  tool's E10 change to COMPLETE, ``tool_states.at``), up to the next job's start written on
  the same tool (``jobs.started_at``), when it is the next carrier of the same lot and step
  (work was waiting by construction). The other gaps (next lot, or a tool that ran dry) are
  printed apart and are not in the goal.

The figures are computed from what was written down in bench/line_scale_figures.py (pure).

Goals (issue 20): 500 tools at 200 ms, the controller under one core, p99 notice delay under
500 ms, p99 step under 50 ms. Figures only: nothing here asserts on them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    cpu_seconds,
    load_printed,
    pct,
    postgres_admin,
    print_verdict,
    scratch_postgres,
)
from line_scale_figures import (
    Change,
    JobRow,
    Notices,
    Read,
    State,
    Steps,
    changed,
    notice_delays,
    state_key,
    step_times,
)

from drivers.config import OpcUaEndpoint
from drivers.model import ToolStatus
from pkgline.config import LineConfig, load_line_config

GOAL_TOOLS = 500
GOAL_CORES = 1.0
GOAL_NOTICE_P99_S = 0.5
GOAL_STEP_P99_S = 0.05
SIM_START_S = 600.0
SERVE_READY_S = 600.0
GATEWAY_PORT_BASE = 30000
"""Placeholder ports that tell gateways apart before :func:`with_free_ports` picks real ones."""

# -- the configuration ------------------------------------------------------------------------


def example_config() -> LineConfig:
    example = resources.files("pkgline").joinpath("line.example.toml")
    with resources.as_file(example) as path:
        return load_line_config(path)


def scaled_config(example: LineConfig, n_tools: int, per_gateway: int = 50) -> LineConfig:
    """``example`` with ``n_tools`` tools: its tools copied round-robin, copy k of tool X named
    ``X.k``. OPC UA copies keep their example gateway's grouping, about ``per_gateway`` tools to
    a gateway (each gets a placeholder port; :func:`with_free_ports` then gives real ones)."""
    if n_tools < 1:
        raise ValueError(f"a line has at least one tool, not {n_tools}")
    if per_gateway < 1:
        raise ValueError(f"a gateway serves at least one tool, not {per_gateway}")
    base = [t for t in example.tools if t.simulation is not None]
    if not base:
        raise ValueError("the example line has no simulated tool to copy")
    gateways: dict[str, int] = Counter(
        t.endpoint.url for t in base if isinstance(t.endpoint, OpcUaEndpoint)
    )
    groups: dict[tuple[str, int], int] = {}
    tools = []
    for i in range(n_tools):
        tool = base[i % len(base)]
        copy = i // len(base)
        update: dict[str, object] = {"id": f"{tool.id}.{copy}"}
        endpoint = tool.endpoint
        if isinstance(endpoint, OpcUaEndpoint):
            copies_per_gateway = max(1, per_gateway // gateways[endpoint.url])
            key = (endpoint.url, copy // copies_per_gateway)
            port = GATEWAY_PORT_BASE + groups.setdefault(key, len(groups))
            head, _, _ = endpoint.url.rpartition(":")
            update["endpoint"] = endpoint.model_copy(
                update={"url": f"{head}:{port}", "object_name": None}
            )
        tools.append(tool.model_copy(update=update))
    return example.model_copy(update={"tools": tuple(tools)})


def with_time_scale(config: LineConfig, scale: float) -> LineConfig:
    """``config`` with every simulated tool's process times those of simulators/profiles.yaml
    times ``scale`` (1: the profiles' own, at or faster than real tools of each class)."""
    tools = tuple(
        t.model_copy(update={"simulation": t.simulation.model_copy(update={"time_scale": scale})})
        if t.simulation is not None
        else t
        for t in config.tools
    )
    return config.model_copy(update={"tools": tools})


def with_poll(config: LineConfig, poll_s: float) -> LineConfig:
    """``config`` with every tool polled (or publishing) every ``poll_s`` seconds."""
    tools = tuple(
        t.model_copy(update={"policy": t.policy.model_copy(update={"poll_interval_s": poll_s})})
        for t in config.tools
    )
    return config.model_copy(update={"tools": tools})


# -- the simulators, in a child process -------------------------------------------------------


def simulators_main(config_path: str, conn: Connection) -> None:
    """Serve the line's simulated tools (as ``pkgline sim``), writing down every status change's
    wall time, until told to stop; then send the changes."""
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    asyncio.run(_simulators(Path(config_path), conn))


async def _simulators(config_path: Path, conn: Connection) -> None:
    from simulators.line import SimulatedLine

    changes: list[Change] = []
    line = SimulatedLine(load_line_config(config_path))
    last: dict[str, State] = {}
    for tool_id in line.tool_ids:

        def record(status: ToolStatus, tool_id: str = tool_id) -> None:
            now = time.time()
            if changed(last.get(tool_id), key := state_key(status)):
                changes.append((tool_id, now, key))
            last[tool_id] = key

        line.tool(tool_id).subscribe(record)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    async with line:
        loop.add_reader(conn.fileno(), stop.set)
        conn.send("ready")
        try:
            await stop.wait()
            conn.recv()  # "stop"
        finally:
            loop.remove_reader(conn.fileno())
    conn.send(changes)


# -- one run ----------------------------------------------------------------------------------


@dataclass
class ServeRun:
    tools: int
    database: str
    window_s: float = 0.0
    controller_cpu_s: float = 0.0
    simulators_cpu_s: float = 0.0
    changes: int = 0
    notices: Notices = field(default_factory=Notices)
    steps: Steps = field(default_factory=Steps)
    read_period_s: list[float] = field(default_factory=list)
    connected: int = 0
    lots_started: int = 0
    ready_s: float = 0.0

    @property
    def controller_cores(self) -> float:
        return self.controller_cpu_s / self.window_s if self.window_s else 0.0

    @property
    def simulators_cores(self) -> float:
        return self.simulators_cpu_s / self.window_s if self.window_s else 0.0


def _wall(value: datetime) -> float:
    return value.timestamp()


@dataclass
class Reads:
    """What :func:`_read_tools` saw: by tool, (read at, observed at) whenever the observed time
    moved; the periods between reads; the tools connected at the last read."""

    by_tool: dict[str, list[Read]] = field(default_factory=lambda: defaultdict(list))
    periods: list[float] = field(default_factory=list)
    connected: int = 0


async def _read_tools(url: str, reads: Reads, every_s: float) -> None:
    """Every ``every_s``: each tool's last observation written (``tools.updated_at``)."""
    from sqlalchemy import select

    from mes.adapters.database import create_engine
    from mes.adapters.tables import tools

    engine = create_engine(url, pool_size=1)
    last: dict[str, float] = {}
    try:
        previous = None
        while True:
            async with engine.connect() as conn:
                rows = (
                    await conn.execute(
                        select(
                            tools.c.id,
                            tools.c.updated_at,
                            tools.c.connected,
                            tools.c.process_state,
                            tools.c.job_id,
                        )
                    )
                ).all()
            now = time.time()
            if previous is not None:
                reads.periods.append(now - previous)
            previous = now
            reads.connected = sum(1 for row in rows if row.connected)
            for row in rows:
                observed = _wall(row.updated_at)
                if last.get(row.id) != observed:
                    last[row.id] = observed
                    reads.by_tool[row.id].append((now, observed, (row.process_state, row.job_id)))
            await asyncio.sleep(every_s)
    finally:
        await engine.dispose()


async def _feed(services: object, wip: int, started: list[str]) -> None:
    from mes.domain import commands as cmd
    from mes.domain.model import LotState
    from pkgline.cli.demo import LOTS

    lots = services.lots  # type: ignore[attr-defined]
    flows = [flow for flow, _ in LOTS]
    while True:
        open_lots = await lots.find(states=[LotState.WAITING, LotState.RUNNING], limit=1_000_000)
        for _ in range(wip - len(open_lots)):
            lot_id = f"S{len(started) + 1:06d}"
            flow = flows[len(started) % len(flows)]
            await lots.start(cmd.StartLot(lot_id=lot_id, flow=flow, user="bench"))
            started.append(lot_id)
        await asyncio.sleep(1.0)


async def _results(
    url: str, window: tuple[float, float]
) -> tuple[list[JobRow], dict[str, list[float]]]:
    from sqlalchemy import select

    from mes.adapters.database import create_engine
    from mes.adapters.tables import jobs, tool_states

    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            job_rows = [
                JobRow(r.job_id, r.tool_id, r.lot_id, r.step, r.path_index, _wall(r.started_at))
                for r in await conn.execute(
                    select(
                        jobs.c.job_id,
                        jobs.c.tool_id,
                        jobs.c.lot_id,
                        jobs.c.step,
                        jobs.c.path_index,
                        jobs.c.started_at,
                    )
                )
            ]
            completions: dict[str, list[float]] = defaultdict(list)
            for r in await conn.execute(
                select(tool_states.c.tool_id, tool_states.c.at).where(
                    tool_states.c.process_state == "COMPLETE"
                )
            ):
                completions[r.tool_id].append(_wall(r.at))
    finally:
        await engine.dispose()
    return job_rows, completions


@contextlib.asynccontextmanager
async def _database(kind: str, tmp: Path) -> AsyncIterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp}/line.db"
    else:
        async with scratch_postgres(postgres_admin(), "pkgline_line_scale") as url:
            yield url


async def measure(n_tools: int, kind: str, args: argparse.Namespace, tmp: Path) -> ServeRun:
    from mes.adapters.migrate import upgrade
    from pkgline.bootstrap import open_engine, open_services, seed_flow_versions
    from pkgline.cli.demo_run import Child
    from pkgline.security import secure_demo_line
    from simulators.line import with_free_ports, write_line_config

    run = ServeRun(n_tools, kind)
    directory = tmp / f"{kind}-{n_tools}"
    directory.mkdir()
    async with _database(kind, directory) as url:
        async with open_engine(url) as engine:
            await upgrade(engine)  # as ``pkgline db upgrade``: the schema, and the flows
            await seed_flow_versions(engine)  # published and approved as version 1
        config = scaled_config(example_config(), n_tools, args.per_gateway)
        config = with_free_ports(with_poll(config, args.poll))
        if args.time_scale is not None:
            config = with_time_scale(config, args.time_scale)
        config = secure_demo_line(config.model_copy(update={"database": url}), tmp / "pki")
        config_path = write_line_config(config, directory / "line.toml")
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        sims = context.Process(target=simulators_main, args=(str(config_path), theirs), daemon=True)
        sims.start()
        theirs.close()
        serve: Child | None = None
        tasks: list[asyncio.Task[None]] = []
        try:
            if not await asyncio.to_thread(ours.poll, SIM_START_S):
                raise SystemExit(f"the simulators did not start in {SIM_START_S:g} s")
            ours.recv()
            began = time.monotonic()
            serve = Child.start(
                "controller",
                ["serve", "--config", str(config_path), "--db", url],
                directory / "serve.log",
                keep=False,
            )
            reads = Reads()
            started: list[str] = []
            async with open_services(url) as services:
                tasks = [
                    asyncio.create_task(_feed(services, args.wip or n_tools, started)),
                    asyncio.create_task(_read_tools(url, reads, args.db_poll)),
                ]
                await _until_connected(reads, n_tools, serve)
                run.connected = reads.connected
                run.ready_s = time.monotonic() - began
                await asyncio.sleep(args.warmup)
                assert sims.pid is not None
                ctl0, sim0 = cpu_seconds(serve.pid), cpu_seconds(sims.pid)
                t0, m0 = time.time(), time.monotonic()
                await asyncio.sleep(args.measure)
                t1, m1 = time.time(), time.monotonic()
                run.controller_cpu_s = cpu_seconds(serve.pid) - ctl0
                run.simulators_cpu_s = cpu_seconds(sims.pid) - sim0
                run.window_s = m1 - m0
                await asyncio.sleep(2 * GOAL_NOTICE_P99_S + 1.0)  # the window's last changes
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                tasks = []
            run.lots_started = len(started)
            await serve.stop(60)
            job_rows, completions = await _results(url, (t0, t1))
            ours.send("stop")
            changes: list[Change] = await asyncio.to_thread(ours.recv)
            run.changes = sum(1 for _, at, _ in changes if t0 <= at < t1)
            run.notices = notice_delays(changes, reads.by_tool, (t0, t1))
            run.read_period_s = reads.periods
            run.steps = step_times(job_rows, completions, (t0, t1))
            return run
        finally:
            for task in tasks:
                task.cancel()
            if serve is not None:
                serve.kill()
            sims.join(timeout=30)
            if sims.is_alive():
                sims.kill()
                sims.join()
            ours.close()


async def _until_connected(reads: Reads, n_tools: int, serve: object) -> None:
    """Until the controller has every tool connected (or SERVE_READY_S has passed)."""
    deadline = time.monotonic() + SERVE_READY_S
    while reads.connected < n_tools and time.monotonic() < deadline:
        if not serve.running():  # type: ignore[attr-defined]
            raise SystemExit(f"pkgline serve exited: see {serve.log}")  # type: ignore[attr-defined]
        await asyncio.sleep(0.5)


# -- report -----------------------------------------------------------------------------------


def _ms(values: Sequence[float], q: float) -> str:
    return f"{pct(values, q) * 1000:.0f} ms" if values else "-"


def print_run(run: ServeRun) -> None:
    label = "SQLite" if run.database == "sqlite" else "PostgreSQL"
    print(
        f"\npkgline serve, {label}, N = {run.tools} ({run.connected} connected "
        f"{run.ready_s:.1f} s after start; {run.lots_started} lots started)"
    )
    n, s = run.notices, run.steps
    rows = [
        ("controller CPU", f"{run.controller_cores:.2f} core"),
        ("simulators CPU", f"{run.simulators_cores:.2f} core"),
        ("changes on tools", f"{run.changes} ({run.changes / max(run.window_s, 1e-9):.0f}/s)"),
        ("notice p50 / p99", f"{_ms(n.recorded_s, 0.5)} / {_ms(n.recorded_s, 0.99)}"),
        ("  observed p50/p99", f"{_ms(n.observed_s, 0.5)} / {_ms(n.observed_s, 0.99)}"),
        ("  read period p50", _ms(run.read_period_s, 0.5)),
        ("  not recorded", str(n.unrecorded)),
        (
            "step p50 / p99",
            f"{_ms(s.carrier_s, 0.5)} / {_ms(s.carrier_s, 0.99)} ({len(s.carrier_s)} steps)",
        ),
        ("  other gaps p50", f"{_ms(s.other_s, 0.5)} ({len(s.other_s)}; not in the goal)"),
        ("jobs completed", _job_rate(run)),
    ]
    for name, value in rows:
        print(f"  {name:20} {value}")


def _job_rate(run: ServeRun) -> str:
    """The jobs whose completion fell in the window: how busy the line was."""
    jobs = len(run.steps.carrier_s) + len(run.steps.other_s) + run.steps.unfinished
    per_s = jobs / max(run.window_s, 1e-9)
    each = f"; a tool's every {run.tools / per_s:.1f} s" if per_s else ""
    return f"{jobs} ({per_s:.1f}/s{each})"


SATURATED_CORES = 0.9


def print_verdicts(runs: Sequence[ServeRun]) -> None:
    print(
        f"\nGoal: {GOAL_TOOLS} tools at 200 ms: controller < {GOAL_CORES:g} core, notice p99 < "
        f"{GOAL_NOTICE_P99_S * 1000:.0f} ms, step p99 < {GOAL_STEP_P99_S * 1000:.0f} ms"
    )
    if not any(r.tools >= GOAL_TOOLS for r in runs):
        print(f"  (no run at N = {GOAL_TOOLS}: the verdicts below are for the sizes run)")
    for run in runs:
        label = f"{run.database} N = {run.tools}"
        # One event loop cannot use much more than one core: a controller at 0.9 core or more
        # is saturated (its delays say so), and that is not under one core.
        saturated = run.controller_cores >= SATURATED_CORES
        print_verdict(
            f"{label}: controller < {GOAL_CORES:g} core",
            run.controller_cores < GOAL_CORES and not saturated,
            f"{run.controller_cores:.2f} core"
            + (": saturated, its one event loop busy" if saturated else ""),
        )
        notices = run.notices.recorded_s
        print_verdict(
            f"{label}: notice p99 < {GOAL_NOTICE_P99_S * 1000:.0f} ms",
            bool(notices) and pct(notices, 0.99) < GOAL_NOTICE_P99_S,
            f"p99 {_ms(notices, 0.99)}, {run.notices.unrecorded} not recorded",
        )
        steps = run.steps.carrier_s
        print_verdict(
            f"{label}: step p99 < {GOAL_STEP_P99_S * 1000:.0f} ms",
            bool(steps) and pct(steps, 0.99) < GOAL_STEP_P99_S,
            f"p99 {_ms(steps, 0.99)} over {len(steps)} steps",
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", choices=["sqlite", "postgres", "both"], default="both", help="--serve: database"
    )
    parser.add_argument("--wip", type=int, default=0, help="--serve: lots in progress (0: N)")
    parser.add_argument(
        "--per-gateway", type=int, default=50, help="--serve: OPC UA tools per gateway"
    )
    parser.add_argument(
        "--db-poll", type=float, default=0.05, help="--serve: s between reads of the tools"
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=None,
        help="--serve: every tool's process times, as a multiple of simulators/profiles.yaml's "
        "(1: the profiles' own, at or faster than real tools; default: the example line's, "
        "0.05-0.2: a stress load, a job about every 2 s a tool)",
    )


def check_arguments(sizes: Sequence[int], args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments of ``--serve`` (None: nothing), said as expected."""
    if not sizes or min(sizes) < 1:
        return f"--tools: one or more numbers of tools, each 1 or more (not {args.tools!r})"
    if args.wip < 0:
        return f"--wip: a number of lots, 0 (one per tool) or more, not {args.wip}"
    if args.per_gateway < 1:
        return f"--per-gateway: 1 or more tools per OPC UA gateway, not {args.per_gateway}"
    if args.time_scale is not None and not args.time_scale > 0:
        return f"--time-scale: more than 0, not {args.time_scale:g}"
    if args.db_poll <= 0:
        return f"--db-poll: seconds between reads, more than 0, not {args.db_poll:g}"
    if args.poll <= 0 or args.warmup < 0 or args.measure <= 0:
        return "--poll and --measure: more than 0 seconds; --warmup: 0 or more"
    return None


async def bench(sizes: Sequence[int], args: argparse.Namespace) -> list[ServeRun]:
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    runs = []
    with tempfile.TemporaryDirectory(prefix="pkgline-line-scale-serve-") as tmp:
        for n_tools in sizes:
            for kind in kinds:
                run = await measure(n_tools, kind, args, Path(tmp))
                print_run(run)
                runs.append(run)
    return runs


def main(sizes: Sequence[int], args: argparse.Namespace) -> None:
    cores = os.cpu_count() or 1
    print(
        f"Line scale of pkgline serve: N simulated tools (the example line's, copied) in one "
        f"simulator process, the controller in another; {cores} cores SHARED; poll / "
        f"publishing interval {args.poll * 1000:.0f} ms; {args.measure:g} s measured after "
        f"{args.warmup:g} s warm-up; process times "
        + (
            "the example line's (0.05-0.2 of simulators/profiles.yaml)"
            if args.time_scale is None
            else f"{args.time_scale:g} x simulators/profiles.yaml's"
        )
    )
    with load_printed("line scale (serve)"):
        runs = asyncio.run(bench(sizes, args))
    print_verdicts(runs)
