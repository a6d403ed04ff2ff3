"""Line scale: one process supervising N simulated tools, each changing state regularly.

Run: ``.venv/bin/python bench/line_scale.py [--tools 50,200,500] [--transport modbus|opcua|both]``

For each N and transport, worker processes (``--workers``, default 2) serve the N simulated
tools on free loopback ports: over Modbus TCP a server per tool, over OPC UA one server per
``--per-server`` tools (a gateway). THIS process, the supervisor, opens a driver per tool
through :class:`~drivers.factory.DriverFactory` with ``poll_interval_s`` 0.2 s (the Modbus poll
period, the OPC UA publishing interval) and consumes every driver's ``events()``, as the line
controller does.

Each simulated tool runs a long job whose progress (``sites_done``) advances every
``--change-every`` seconds (1 s by default; tools start at random phases, so the line's changes
are spread evenly). The simulator process records the monotonic time of every change
(CLOCK_MONOTONIC is one clock for every process on Linux) and the supervisor the time its
driver reports it; their difference is the notice delay (p50, p99, max). The supervisor's CPU
time over the measurement window, divided by the window, is its load as a fraction of one core;
the simulators' is read from /proc. Figures only: nothing here asserts on them.

Goal: 500 tools at a 200 ms poll or publishing interval with a p99 notice delay under 500 ms
and the supervisor under one core. A change waits for the next poll (Modbus: up to 200 ms,
100 ms on average) or for the next sample and publish (OPC UA: sampling 100 ms, publishing
200 ms); the rest is the work of both sides and the scheduling of a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import platform
import random
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Literal

sys.path.insert(0, str(Path(__file__).resolve().parent))

import structlog
from common import cpu_seconds, load_printed
from common import print_verdict as verdict_line

from drivers.config import INSECURE, ConnectionPolicy, ModbusEndpoint, OpcUaEndpoint, ToolConfig
from drivers.factory import DriverFactory
from drivers.interface import StatusChanged, ToolDriver
from drivers.model import EquipmentClass, Job, ProcessState, Recipe, SiteMap

Transport = Literal["modbus", "opcua"]
Change = tuple[str, int, float]
"""(tool id, sites done, monotonic time) of one state change."""

GOAL_TOOLS = 500
GOAL_P99_S = 0.5
GOAL_CORES = 1.0
JOB_ROWS = JOB_COLS = 100  # 10,000 sites: the job outlasts any run


def _quiet() -> None:
    """Drivers log each tool going online; 500 lines per run would bury the figures."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    logging.getLogger("asyncua").setLevel(logging.ERROR)


def _raise_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 8192:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(8192, hard), hard))


# -- simulator processes ----------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerPlan:
    transport: Transport
    tools: tuple[tuple[str, EquipmentClass], ...]
    change_every_s: float
    per_server: int
    seed: int


@dataclass(frozen=True)
class ServedTool:
    tool_id: str
    equipment_class: EquipmentClass
    transport: Transport
    port: int
    url: str = ""


def worker_main(plan: WorkerPlan, conn: Connection) -> None:
    """A simulator process: serve the plan's tools, report their endpoints, run their jobs
    until told to stop, then send every change it recorded."""
    _quiet()
    _raise_file_limit()
    asyncio.run(_worker(plan, conn))


async def _worker(plan: WorkerPlan, conn: Connection) -> None:
    from simulators.engine import ClassProfile, SimulationSettings, VirtualTool, load_profiles
    from simulators.modbus_server import ModbusToolServer
    from simulators.opcua_server import OpcUaToolServer

    changes: list[Change] = []
    tools: list[VirtualTool] = []
    for n, (tool_id, equipment_class) in enumerate(plan.tools):
        # Setup is instantaneous; each site takes change_every_s: sites_done counts up.
        profile = ClassProfile(0.0, plan.change_every_s, load_profiles()[equipment_class].measured)
        tool = VirtualTool(
            tool_id, equipment_class, SimulationSettings(seed=plan.seed + n), profile=profile
        )

        def record(status: object, tool: VirtualTool = tool) -> None:
            now = time.monotonic()
            if tool.status.state is ProcessState.EXECUTING:
                changes.append((tool.tool_id, tool.status.sites_done, now))

        tool.subscribe(record)
        tools.append(tool)

    servers: list[ModbusToolServer | OpcUaToolServer] = []
    served: list[ServedTool] = []
    if plan.transport == "modbus":
        for tool in tools:
            modbus = ModbusToolServer(tool, host="127.0.0.1", port=0)
            await modbus.start()
            servers.append(modbus)
            served.append(ServedTool(tool.tool_id, tool.equipment_class, "modbus", modbus.port))
    else:
        for start in range(0, len(tools), plan.per_server):
            share = tools[start : start + plan.per_server]
            gateway = OpcUaToolServer(share, host="127.0.0.1", port=0)
            await gateway.start()
            servers.append(gateway)
            served += [
                ServedTool(t.tool_id, t.equipment_class, "opcua", gateway.port, gateway.url)
                for t in share
            ]

    rng = random.Random(plan.seed)
    loop = asyncio.get_running_loop()
    sites = SiteMap.all_good(JOB_ROWS, JOB_COLS)

    async def run_job(tool: VirtualTool, phase_s: float) -> None:
        await asyncio.sleep(phase_s)
        ready = asyncio.Event()
        unsubscribe = tool.subscribe(
            lambda status: ready.set() if status.state is ProcessState.READY else None
        )
        tool.load_recipe(Recipe("BENCH", 1, {}))
        await ready.wait()
        unsubscribe()
        tool.start_job(Job(f"J-{tool.tool_id}", "L-BENCH", "BENCH", "C-1", sites))

    starters = [loop.create_task(run_job(t, rng.uniform(0, plan.change_every_s))) for t in tools]
    stop = asyncio.Event()
    loop.add_reader(conn.fileno(), stop.set)
    conn.send(served)
    try:
        await stop.wait()
        conn.recv()  # "stop"
    finally:
        loop.remove_reader(conn.fileno())
        for task in starters:
            task.cancel()
        await asyncio.gather(*starters, return_exceptions=True)
        for server in servers:
            await server.stop()
        for tool in tools:
            await tool.close()
    conn.send(changes)


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / hz, sum(ticks) / hz


# -- the supervisor ---------------------------------------------------------------------------


@dataclass
class Run:
    transport: Transport
    tools: int
    workers: int
    servers: int
    window_s: float = 0.0
    supervisor_cpu_s: float = 0.0
    simulators_cpu_s: float = 0.0
    machine_busy: float = 0.0
    delays_s: list[float] = field(default_factory=list)
    missed: int = 0
    late_connect: int = 0
    startup_s: float = 0.0

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.delays_s)
        return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]

    @property
    def supervisor_cores(self) -> float:
        return self.supervisor_cpu_s / self.window_s

    @property
    def simulators_cores(self) -> float:
        return self.simulators_cpu_s / self.window_s


def _config(tool: ServedTool, policy: ConnectionPolicy) -> ToolConfig:
    endpoint: ModbusEndpoint | OpcUaEndpoint
    if tool.transport == "modbus":
        endpoint = ModbusEndpoint(host="127.0.0.1", port=tool.port)
    else:
        endpoint = OpcUaEndpoint(url=tool.url, security=INSECURE)
    return ToolConfig(
        id=tool.tool_id, equipment_class=tool.equipment_class, endpoint=endpoint, policy=policy
    )


async def _supervise(
    served: Sequence[ServedTool],
    run: Run,
    *,
    poll_interval_s: float,
    warmup_s: float,
    measure_s: float,
    worker_pids: Sequence[int],
) -> tuple[float, float, dict[tuple[str, int], float]]:
    """Drive every tool until the window is measured; return the window and the notices."""
    policy = ConnectionPolicy(poll_interval_s=poll_interval_s)
    factory = DriverFactory()
    drivers: list[ToolDriver] = [factory.create(_config(t, policy)) for t in served]
    noticed: dict[tuple[str, int], float] = {}

    async def consume(driver: ToolDriver) -> None:
        async for event in driver.events():
            if isinstance(event, StatusChanged) and event.status.state is ProcessState.EXECUTING:
                noticed.setdefault((event.tool_id, event.status.sites_done), time.monotonic())

    consumers = [asyncio.create_task(consume(d)) for d in drivers]
    began = time.monotonic()
    try:
        await asyncio.gather(*(d.start() for d in drivers))
        for _ in range(300):  # up to 30 s
            if all(d.connected for d in drivers):
                break
            await asyncio.sleep(0.1)
        run.late_connect = sum(not d.connected for d in drivers)
        run.startup_s = time.monotonic() - began
        await asyncio.sleep(warmup_s)
        sims0 = sum(cpu_seconds(pid) for pid in worker_pids)
        busy0, total0 = _machine_busy()
        t0, cpu0 = time.monotonic(), time.process_time()
        await asyncio.sleep(measure_s)
        t1, cpu1 = time.monotonic(), time.process_time()
        busy1, total1 = _machine_busy()
        run.simulators_cpu_s = sum(cpu_seconds(pid) for pid in worker_pids) - sims0
        run.window_s, run.supervisor_cpu_s = t1 - t0, cpu1 - cpu0
        run.machine_busy = (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0
        await asyncio.sleep(2 * GOAL_P99_S)  # changes near the end of the window get noticed
        return t0, t1, noticed
    finally:
        for driver in drivers:
            await driver.close()
        await factory.aclose()
        await asyncio.gather(*consumers, return_exceptions=True)


def measure(
    transport: Transport,
    n_tools: int,
    *,
    workers: int,
    per_server: int,
    poll_interval_s: float,
    change_every_s: float,
    warmup_s: float,
    measure_s: float,
) -> Run:
    classes = list(EquipmentClass)
    all_tools = [(f"T{i:04d}", classes[i % len(classes)]) for i in range(n_tools)]
    workers = max(1, min(workers, n_tools))
    context = multiprocessing.get_context("spawn")
    processes = []
    pipes: list[Connection] = []
    for w in range(workers):
        share = tuple(all_tools[w::workers])
        ours, theirs = context.Pipe()
        plan = WorkerPlan(transport, share, change_every_s, per_server, seed=1000 * w)
        process = context.Process(target=worker_main, args=(plan, theirs), daemon=True)
        process.start()
        theirs.close()
        processes.append(process)
        pipes.append(ours)
    try:
        served: list[ServedTool] = []
        for pipe in pipes:
            if not pipe.poll(300):
                raise RuntimeError("a simulator process did not start in 300 s")
            served += pipe.recv()
        run = Run(
            transport,
            n_tools,
            workers,
            servers=len({(t.transport, t.port) for t in served}),
        )
        t0, t1, noticed = asyncio.run(
            _supervise(
                served,
                run,
                poll_interval_s=poll_interval_s,
                warmup_s=warmup_s,
                measure_s=measure_s,
                worker_pids=[p.pid for p in processes if p.pid is not None],
            )
        )
        changes: list[Change] = []
        for pipe in pipes:
            pipe.send("stop")
        for pipe in pipes:
            changes += pipe.recv()
        for tool_id, sites_done, at in changes:
            if not t0 <= at <= t1:
                continue
            seen = noticed.get((tool_id, sites_done))
            if seen is None:
                run.missed += 1
            else:
                run.delays_s.append(seen - at)
        return run
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()
        for pipe in pipes:
            pipe.close()


# -- report -----------------------------------------------------------------------------------


def print_header(args: argparse.Namespace) -> None:
    cores = os.cpu_count() or 1
    print(f"Line scale: one supervising process, simulated tools in {args.workers} other processes")
    print(
        f"  {platform.python_implementation()} {platform.python_version()} on {platform.machine()}, "
        f"{cores} cores SHARED by the simulators and the supervisor"
    )
    print(
        f"  poll / publishing interval {args.poll * 1000:.0f} ms; each tool changes every "
        f"{args.change_every:g} s; {args.measure:g} s measured after {args.warmup:g} s warm-up; "
        f"OPC UA: {args.per_server} tools per server"
    )


def print_run(run: Run) -> None:
    name = "Modbus TCP" if run.transport == "modbus" else "OPC UA"
    print(
        f"\n{name}, N = {run.tools} ({run.servers} servers in {run.workers} processes; "
        f"connected in {run.startup_s:.1f} s)"
    )
    if not run.delays_s:
        print("  no change was noticed in the window")
        return
    rows = [
        ("changes noticed", f"{len(run.delays_s)} ({len(run.delays_s) / run.window_s:.0f}/s)"),
        ("changes missed", str(run.missed)),
        ("notice delay p50", f"{run.percentile(0.5) * 1000:.0f} ms"),
        ("notice delay p99", f"{run.percentile(0.99) * 1000:.0f} ms"),
        ("notice delay max", f"{max(run.delays_s) * 1000:.0f} ms"),
        ("supervisor CPU", f"{run.supervisor_cores:.2f} core"),
        ("simulators CPU", f"{run.simulators_cores:.2f} core"),
        ("machine busy", f"{run.machine_busy * 100:.0f} % of {os.cpu_count()} cores"),
    ]
    if run.late_connect:
        rows.append(("tools not connected", str(run.late_connect)))
    for label, value in rows:
        print(f"  {label:20} {value:>16}")


def print_verdict(runs: Sequence[Run]) -> None:
    print(
        f"\nGoal: {GOAL_TOOLS} tools at a 200 ms interval, p99 notice delay < "
        f"{GOAL_P99_S * 1000:.0f} ms, supervisor < {GOAL_CORES:g} core"
    )
    at_goal = [r for r in runs if r.tools >= GOAL_TOOLS and r.delays_s]
    if not at_goal:
        print(f"  goal {GOAL_TOOLS} tools: not measured (run with --tools {GOAL_TOOLS})")
    for run in at_goal:
        p99, cores = run.percentile(0.99), run.supervisor_cores
        verdict_line(
            f"{run.transport} N = {run.tools}: p99 notice delay < {GOAL_P99_S * 1000:.0f} ms",
            p99 < GOAL_P99_S,
            f"p99 {p99 * 1000:.0f} ms",
        )
        verdict_line(
            f"{run.transport} N = {run.tools}: supervisor < {GOAL_CORES:g} core",
            cores < GOAL_CORES,
            f"{cores:.2f} core",
        )
        verdict_line(
            f"{run.transport} N = {run.tools}: no change missed",
            not run.missed,
            f"{run.missed} missed",
        )
    print(
        f"  On this {os.cpu_count()}-core machine the simulators compete with the supervisor for "
        "the same cores: delays include their scheduling."
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--tools", default="50,200,500", help="values of N, comma-separated")
    parser.add_argument("--transport", choices=["modbus", "opcua", "both"], default="both")
    parser.add_argument("--workers", type=int, default=2, help="simulator processes")
    parser.add_argument("--per-server", type=int, default=50, help="OPC UA tools per server")
    parser.add_argument("--poll", type=float, default=0.2, help="poll / publishing interval, s")
    parser.add_argument("--change-every", type=float, default=1.0, help="s between changes")
    parser.add_argument("--warmup", type=float, default=2.0, help="s before measuring")
    parser.add_argument("--measure", type=float, default=5.0, help="s measured per run")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.tools.split(",") if n.strip()]
    transports: list[Transport] = (
        ["modbus", "opcua"] if args.transport == "both" else [args.transport]
    )
    _quiet()
    _raise_file_limit()
    print_header(args)
    with load_printed("line scale"):
        runs = _runs(args, sizes, transports)
    print_verdict(runs)


def _runs(args: argparse.Namespace, sizes: list[int], transports: list[Transport]) -> list[Run]:
    runs = []
    for transport in transports:
        for n_tools in sizes:
            run = measure(
                transport,
                n_tools,
                workers=args.workers,
                per_server=args.per_server,
                poll_interval_s=args.poll,
                change_every_s=args.change_every,
                warmup_s=args.warmup,
                measure_s=args.measure,
            )
            print_run(run)
            runs.append(run)
    return runs


if __name__ == "__main__":
    main()
