"""Line scale: one process supervising N simulated tools, each changing state regularly.

Run: ``.venv/bin/python bench/line_scale.py [--tools 50,200,500] [--transport modbus|opcua|both]
[--security plain|secure|both]``

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

``--security secure`` runs the secure links instead (``both``: plain then secure, for each N
and transport, in the same run, followed by what security costs: the supervisor's and the
simulators' CPU and the p99 notice delay, secure against plain). Modbus/TCP Security: TLS
with both certificates checked (and revocation, after each handshake); OPC UA: Basic256Sha256
with SignAndEncrypt and a user with a password. The two PKIs (controller, simulators) are made
in a temporary directory, each trusting the other, as ``pkgline demo`` makes them.

``--serve`` measures ``pkgline serve`` itself instead (controller, database, reporter,
dispatch) with lots flowing, on SQLite and PostgreSQL: see bench/line_scale_serve.py.

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
import tempfile
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

from drivers.config import (
    INSECURE,
    ConnectionPolicy,
    ModbusEndpoint,
    ModbusTls,
    OpcUaEndpoint,
    OpcUaSecurity,
    ToolConfig,
)
from drivers.factory import DriverFactory
from drivers.interface import StatusChanged, ToolDriver
from drivers.model import EquipmentClass, Job, ProcessState, Recipe, SiteMap

Transport = Literal["modbus", "opcua"]
USER, PASSWORD = "bench", "bench-Pa55"
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
    # pymodbus logs each request that times out, with a dump of its frames, at ERROR: on a
    # loaded machine thousands of lines; the timeouts show as missed changes and delays.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def _raise_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 8192:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(8192, hard), hard))


@dataclass(frozen=True)
class Security:
    """The secure variant's PKI directories and the OPC UA user's credentials file."""

    controller: Path
    simulators: Path
    credentials: Path


def make_security(root: Path) -> Security:
    """A controller PKI and a simulators' PKI trusting each other, and a user (as the demo)."""
    from drivers import certificates as C
    from drivers import pki as P
    from pkgline.security import controller_uri
    from simulators.certificate import simulator_pki

    controller = P.Pki(root / "controller")
    C.init_own(controller, common_name="bench controller", application_uri=controller_uri())
    simulators = simulator_pki(root / "simulators")
    controller.store(simulators.own()[0], controller.trusted)
    simulators.store(controller.own()[0], simulators.trusted)
    credentials = root / "user.toml"
    P.write_private(credentials, f'username = "{USER}"\npassword = "{PASSWORD}"\n'.encode())
    return Security(controller.root, simulators.root, credentials)


# -- simulator processes ----------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerPlan:
    transport: Transport
    tools: tuple[tuple[str, EquipmentClass], ...]
    change_every_s: float
    per_server: int
    seed: int
    security: Security | None = None


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
    from drivers.pki import Pki
    from drivers.tls import tls_server_context
    from simulators.engine import ClassProfile, SimulationSettings, VirtualTool, load_profiles
    from simulators.modbus_server import ModbusToolServer
    from simulators.opcua_security import SimulatorSecurity
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
    pki = Pki(plan.security.simulators) if plan.security else None
    if plan.transport == "modbus":
        tls = tls_server_context(pki) if pki else None  # one for every tool, as pkgline sim
        for tool in tools:
            modbus = ModbusToolServer(tool, host="127.0.0.1", port=0, tls=tls, pki=pki)
            await modbus.start()
            servers.append(modbus)
            served.append(ServedTool(tool.tool_id, tool.equipment_class, "modbus", modbus.port))
    else:
        for start in range(0, len(tools), plan.per_server):
            share = tools[start : start + plan.per_server]
            security = (
                SimulatorSecurity(
                    pki, passwords={USER: (PASSWORD, frozenset(t.tool_id for t in share))}
                )
                if pki
                else None
            )
            gateway = OpcUaToolServer(share, host="127.0.0.1", port=0, security=security)
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
    secure: bool = False
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


def _config(tool: ServedTool, policy: ConnectionPolicy, security: Security | None) -> ToolConfig:
    endpoint: ModbusEndpoint | OpcUaEndpoint
    if tool.transport == "modbus":
        tls = ModbusTls(pki=security.controller) if security else None
        endpoint = ModbusEndpoint(host="127.0.0.1", port=tool.port, tls=tls)
    else:
        endpoint = OpcUaEndpoint(
            url=tool.url,
            security=OpcUaSecurity(pki=security.controller, credentials=security.credentials)
            if security
            else INSECURE,
        )
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
    security: Security | None,
) -> tuple[float, float, dict[tuple[str, int], float]]:
    """Drive every tool until the window is measured; return the window and the notices."""
    policy = ConnectionPolicy(poll_interval_s=poll_interval_s)
    factory = DriverFactory()
    drivers: list[ToolDriver] = [factory.create(_config(t, policy, security)) for t in served]
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
    security: Security | None = None,
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
        plan = WorkerPlan(
            transport, share, change_every_s, per_server, seed=1000 * w, security=security
        )
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
            secure=security is not None,
        )
        t0, t1, noticed = asyncio.run(
            _supervise(
                served,
                run,
                poll_interval_s=poll_interval_s,
                warmup_s=warmup_s,
                measure_s=measure_s,
                worker_pids=[p.pid for p in processes if p.pid is not None],
                security=security,
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


def run_name(run: Run) -> str:
    if run.transport == "modbus":
        return "Modbus/TCP Security (TLS)" if run.secure else "Modbus TCP"
    return "OPC UA Basic256Sha256 SignAndEncrypt" if run.secure else "OPC UA (policy None)"


def print_run(run: Run) -> None:
    name = run_name(run)
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
        label = f"{run.transport} {'secure' if run.secure else 'plain'} N = {run.tools}"
        verdict_line(
            f"{label}: p99 notice delay < {GOAL_P99_S * 1000:.0f} ms",
            p99 < GOAL_P99_S,
            f"p99 {p99 * 1000:.0f} ms",
        )
        verdict_line(
            f"{label}: supervisor < {GOAL_CORES:g} core",
            cores < GOAL_CORES,
            f"{cores:.2f} core",
        )
        verdict_line(
            f"{label}: no change missed",
            not run.missed,
            f"{run.missed} missed",
        )
    print(
        f"  On this {os.cpu_count()}-core machine the simulators compete with the supervisor for "
        "the same cores: delays include their scheduling."
    )


def print_security_cost(runs: Sequence[Run]) -> None:
    """Secure against plain, for each transport and N measured both ways in this run."""
    pairs = [
        (plain, secure)
        for plain in runs
        if not plain.secure and plain.delays_s
        for secure in runs
        if secure.secure
        and secure.delays_s
        and (secure.transport, secure.tools) == (plain.transport, plain.tools)
    ]
    if not pairs:
        return
    print("\nWhat security costs (secure against plain, same run, same machine):")
    for plain, secure in pairs:
        sup = secure.supervisor_cores - plain.supervisor_cores
        sims = secure.simulators_cores - plain.simulators_cores
        p99 = (secure.percentile(0.99) - plain.percentile(0.99)) * 1000
        print(
            f"  {plain.transport:7} N = {plain.tools}: supervisor {plain.supervisor_cores:.2f} -> "
            f"{secure.supervisor_cores:.2f} core ({sup:+.2f}, x{_ratio(secure.supervisor_cores, plain.supervisor_cores)}); "
            f"simulators {plain.simulators_cores:.2f} -> {secure.simulators_cores:.2f} core "
            f"({sims:+.2f}); p99 {p99:+.0f} ms; connecting {plain.startup_s:.1f} -> "
            f"{secure.startup_s:.1f} s"
        )
        unconnected = plain.late_connect + secure.late_connect
        if unconnected:
            print(
                f"    (not comparable: {plain.late_connect} plain and {secure.late_connect} "
                "secure tools were not connected after 30 s)"
            )
    print(
        "  The supervisor's difference is what the encryption (and, for OPC UA, the signing) "
        "costs the line controller; the machine's load by other work moves both figures."
    )


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 else "-"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--tools", help="values of N, comma-separated (50,200,500; --serve: 100,200,500)"
    )
    parser.add_argument("--transport", choices=["modbus", "opcua", "both"], default="both")
    parser.add_argument("--workers", type=int, default=2, help="simulator processes")
    parser.add_argument("--per-server", type=int, default=50, help="OPC UA tools per server")
    parser.add_argument("--poll", type=float, default=0.2, help="poll / publishing interval, s")
    parser.add_argument("--change-every", type=float, default=1.0, help="s between changes")
    parser.add_argument("--warmup", type=float, help="s before measuring (2; --serve: 10)")
    parser.add_argument("--measure", type=float, help="s measured per run (5; --serve: 20)")
    parser.add_argument(
        "--security",
        choices=["plain", "secure", "both"],
        default="plain",
        help="plain links, the secure ones (Modbus/TCP Security, OPC UA SignAndEncrypt), or "
        "both in the same run with what security costs",
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help="measure pkgline serve (and its database) instead of the drivers alone "
        "(--transport, --workers, --per-server, --change-every and --security do not apply)",
    )
    import line_scale_serve

    line_scale_serve.add_arguments(parser)
    args = parser.parse_args(argv)
    defaults = (
        {"tools": "100,200,500", "warmup": 10.0, "measure": 20.0}
        if args.serve
        else {"tools": "50,200,500", "warmup": 2.0, "measure": 5.0}
    )
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    sizes = [int(n) for n in args.tools.split(",") if n.strip()]
    if args.serve:
        problem = line_scale_serve.check_arguments(sizes, args)
        if problem:
            parser.error(problem)
        line_scale_serve.main(sizes, args)
        return
    transports: list[Transport] = (
        ["modbus", "opcua"] if args.transport == "both" else [args.transport]
    )
    _quiet()
    _raise_file_limit()
    print_header(args)
    with load_printed("line scale"):
        runs = _runs(args, sizes, transports)
    print_verdict(runs)
    print_security_cost(runs)


def _runs(args: argparse.Namespace, sizes: list[int], transports: list[Transport]) -> list[Run]:
    runs = []
    with tempfile.TemporaryDirectory(prefix="pkgline-line-scale-") as tmp:
        security = make_security(Path(tmp)) if args.security != "plain" else None
        variants = {"plain": [None], "secure": [security], "both": [None, security]}
        for transport in transports:
            for n_tools in sizes:
                for variant in variants[args.security]:
                    run = measure(
                        transport,
                        n_tools,
                        workers=args.workers,
                        per_server=args.per_server,
                        poll_interval_s=args.poll,
                        change_every_s=args.change_every,
                        warmup_s=args.warmup,
                        measure_s=args.measure,
                        security=variant,
                    )
                    print_run(run)
                    runs.append(run)
    return runs


if __name__ == "__main__":
    main()
