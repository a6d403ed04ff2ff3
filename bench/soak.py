"""Soak: the demo line driven for a chosen time with faults injected at random.

Run: ``.venv/bin/python bench/soak.py --duration 3600 [--postgres] [--fault-every 60]``
(``--wip N`` lots kept in progress, ``--alarm-rate P`` per job, ``--faults a,b,...`` to choose
the kinds, ``--seed S``, ``--report-every S``, ``--keep-dir DIR`` keeps the database and logs).

The example line (13 simulated tools, every class, Modbus TCP and OPC UA) runs as ``pkgline sim``
and ``pkgline serve`` child processes, exactly as ``pkgline demo`` starts them, on a fresh SQLite
file (default) or a scratch PostgreSQL database (``--postgres``: ``$PKGLINE_BENCH_POSTGRES``,
default ``postgresql://postgres@127.0.0.1:5432/test``; created and dropped). ``--wip`` lots of
the nine flows are kept in progress, and the controller completes the manual steps
(``auto_manual_steps``), so the line never runs dry.

Faults, one at a time, at exponentially distributed intervals (mean ``--fault-every`` s):

- ``controller-kill``: SIGKILL of ``pkgline serve``, restarted after 1 s (as systemd's
  ``Restart=always`` would);
- ``controller-term``: SIGTERM (timed: a stop must finish within the unit's TimeoutStopSec),
  restarted;
- ``sim-kill``: SIGKILL of ``pkgline sim`` (every tool loses power and its jobs), restarted
  after 1-3 s;
- ``db-partition`` (PostgreSQL only): the controller reaches the database through a TCP proxy
  in this process; for 5-40 s the proxy goes silent (bytes swallowed, connections kept open),
  then passes again;
- ``db-reset`` (PostgreSQL only): the proxy resets every connection once;
- and, all the time, simulated tool alarms (``--alarm-rate`` of the jobs end in an alarm half
  way through).

An operator does what a person would: every few seconds every held lot is released (a lost
job or an alarm holds the lot; released, the step runs again for the carriers not done) and
every tool in ALARM is reset (``pkgline tool reset``, where this version has it).

Printed every ``--report-every`` s: lots completed, in progress, held, faults so far, the
controller's RSS, the database's size (SQLite: the file and its WAL). At the end, after the
faults stop and the line drains: lots started, completed, unfinished (with their states);
**lost** (started but missing, or a job whose record vanished) and **duplicated** (a carrier
recorded twice at one step occurrence, a job's record in history twice); and the stop times
of SIGTERM. Figures only: nothing here asserts on them (exit 1 only when the line could not
be started).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import load, pg_admin, postgres_admin

from mes.domain import commands as cmd
from mes.domain.errors import LotTrackerError
from mes.domain.model import LotState
from mes.domain.signatures import SignatureGiven
from pkgline.bootstrap import Services, open_engine, open_services, os_account
from pkgline.cli.demo import LOTS
from pkgline.cli.demo_run import SIM_READY, Child
from pkgline.config import LineConfig, SimulationConfig, load_line_config
from pkgline.security import secure_demo_line

POSTGRES = postgres_admin()
USER = "soak-operator"
FAULTS = ("controller-kill", "controller-term", "sim-kill", "db-partition", "db-reset")
DB_FAULTS = ("db-partition", "db-reset")
STOP_TIMEOUT_S = 60.0  # deploy/pkgline.service: TimeoutStopSec,
RESTART_S = 5.0  # RestartSec
RESTART_PREVENT_EXIT_STATUS = 2  # and RestartPreventExitStatus
ENDED = {LotState.COMPLETED, LotState.SCRAPPED, LotState.MERGED}


# -- a TCP proxy in front of the database ----------------------------------------------------


class Proxy:
    """Passes bytes between clients and one upstream; can go silent (a partition: bytes
    swallowed, connections held open) or reset every connection."""

    def __init__(self, upstream: tuple[str, int]):
        self._upstream = upstream
        self._silent = False
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.reset()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def silent(self, on: bool) -> None:
        self._silent = on

    def reset(self) -> None:
        for a, b in list(self._pairs):
            for writer in (a, b):
                with contextlib.suppress(Exception):
                    writer.transport.abort()
        self._pairs.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._pairs.discard(pair)
            for w in pair:
                w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if self._silent:
                    continue
                writer.write(data)
                await writer.drain()
        writer.transport.abort()


# -- the run -----------------------------------------------------------------------------------


@dataclass
class Soak:
    args: argparse.Namespace
    dir: Path
    url: str  # what this process and the operator use
    serve_url: str  # what the controller uses (through the proxy on PostgreSQL)
    config_path: Path
    config: LineConfig
    rng: random.Random
    proxy: Proxy | None = None
    sim: Child | None = None
    serve: Child | None = None
    started: float = field(default_factory=time.monotonic)
    lots_started: list[str] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    releases: int = 0
    resets: int = 0
    reset_refused: int = 0
    stop_times: list[float] = field(default_factory=list)
    restarts: int = 0
    exits: Counter[int] = field(default_factory=Counter)
    restarting: bool = False
    samples: list[str] = field(default_factory=list)
    faults_on: bool = True
    feeding: bool = True
    next_lot: int = 1

    def t(self) -> float:
        return time.monotonic() - self.started

    def log(self, name: str) -> Path:
        return self.dir / f"soak.{name}.log"


def free_port_config(config: LineConfig, alarm_rate: float) -> LineConfig:
    from simulators.line import with_free_ports

    tools = []
    for tool in with_free_ports(config).tools:
        sim = tool.simulation or SimulationConfig()
        tools.append(
            tool.model_copy(
                update={"simulation": sim.model_copy(update={"alarm_rate": alarm_rate})}
            )
        )
    return config.model_copy(update={"tools": tuple(tools)})


async def start_sim(run: Soak) -> None:
    args = ["sim", "--config", str(run.config_path), "--time-scale", f"{run.args.time_scale:g}"]
    run.sim = Child.start(
        f"simulators-{run.restarts}", args, run.log(f"sim.{run.restarts}"), keep=False
    )
    deadline = time.monotonic() + SIM_START_S
    while SIM_READY not in run.sim.output():
        if not run.sim.running() or time.monotonic() > deadline:
            run.sim.kill()
            raise SimulatorsDidNotStart(f"the simulators did not start:\n{run.sim.tail()}")
        await asyncio.sleep(0.1)


SIM_START_S = 180
"""How long the simulators may take to start: 13 tools with their certificates take seconds on a
quiet machine and over a minute on one loaded by other work."""


class SimulatorsDidNotStart(Exception):
    pass


async def restart_sim(run: Soak, tries: int = 3) -> None:
    """The simulators started again, as their supervisor would, trying ``tries`` times."""
    for attempt in range(1, tries + 1):
        run.restarts += 1
        try:
            await start_sim(run)
            return
        except SimulatorsDidNotStart as exc:
            print(f"{run.t():8.1f} s  simulators: try {attempt} failed: {exc}", flush=True)
            if attempt == tries:
                raise SystemExit(str(exc)) from None
            await asyncio.sleep(5)


def start_serve(run: Soak) -> None:
    args = ["serve", "--config", str(run.config_path), "--db", run.serve_url]
    run.serve = Child.start(
        f"controller-{run.restarts}", args, run.log(f"serve.{run.restarts}"), keep=False
    )


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


# -- what runs beside the line -----------------------------------------------------------------


async def feeder(run: Soak, services: Services) -> None:
    flows = [flow for flow, _ in LOTS]
    while run.feeding:
        lots = await services.lots.find(limit=100_000)
        open_lots = sum(1 for lot in lots if lot.state not in ENDED)
        for _ in range(run.args.wip - open_lots):
            lot_id = f"SOAK-{run.next_lot}"
            flow = flows[(run.next_lot - 1) % len(flows)]
            run.next_lot += 1
            await services.lots.start(
                cmd.StartLot(lot_id=lot_id, flow=flow, user=USER, priority=run.rng.randint(1, 9))
            )
            run.lots_started.append(lot_id)
        await asyncio.sleep(2.0)


async def operator(run: Soak, services: Services) -> None:
    """Release held lots, reset tools in alarm: what the person at the line does."""
    pkgline = [sys.executable, "-m", "pkgline"]
    probe = await asyncio.to_thread(
        subprocess.run, [*pkgline, "tool", "reset", "--help"], capture_output=True, check=False
    )
    has_reset = probe.returncode == 0
    while True:
        await asyncio.sleep(3.0)
        for lot in await services.lots.find(states=[LotState.HOLD], limit=100_000):
            try:
                await services.lots.release(
                    cmd.ReleaseLot(lot_id=lot.id, user=USER, reason="soak: operator release"),
                    signatures=(SignatureGiven(os_account(), "approved release: soak"),),
                )
                run.releases += 1
            except LotTrackerError:
                pass  # moved meanwhile; next round
        if not has_reset:
            continue
        for tool in await services.equipment.tools():
            if tool.snapshot.process_state != "ALARM":
                continue
            done = await asyncio.to_thread(
                subprocess.run,
                [
                    *pkgline,
                    "tool",
                    "reset",
                    tool.id,
                    "--reason",
                    "soak: operator reset",
                    "--db",
                    run.url,
                ],
                capture_output=True,
                check=False,
            )
            if done.returncode == 0:
                run.resets += 1
            else:
                run.reset_refused += 1


async def supervise(run: Soak) -> None:
    """What systemd does for the unit (Restart=on-failure, RestartSec=5s): a controller that
    exits by itself is counted, with its exit code, and started again."""
    while True:
        await asyncio.sleep(0.5)
        serve = run.serve
        if run.restarting or serve is None or serve.running():
            continue
        code = serve.kill()
        run.exits[code] += 1
        print(f"{run.t():8.1f} s  the controller exited by itself: {code}", flush=True)
        if code in (0, RESTART_PREVENT_EXIT_STATUS):
            print(f"{run.t():8.1f} s  systemd would not restart it; this soak does", flush=True)
        await asyncio.sleep(RESTART_S)
        run.restarts += 1
        start_serve(run)


async def inject_faults(run: Soak) -> None:
    kinds = [k for k in run.args.faults.split(",") if k]
    if not run.proxy:
        kinds = [k for k in kinds if k not in DB_FAULTS]
    while True:
        await asyncio.sleep(run.rng.expovariate(1 / run.args.fault_every))
        if not run.faults_on or not kinds:
            return
        kind = run.rng.choice(kinds)
        run.faults[kind] += 1
        print(f"{run.t():8.1f} s  fault: {kind}", flush=True)
        run.restarting = True
        try:
            await FAULT_ACTIONS[kind](run)
        finally:
            run.restarting = False


async def controller_kill(run: Soak) -> None:
    assert run.serve is not None
    run.serve.process.send_signal(signal.SIGKILL)
    run.serve.kill()
    await asyncio.sleep(1.0)
    run.restarts += 1
    start_serve(run)


async def controller_term(run: Soak) -> None:
    assert run.serve is not None
    began = time.monotonic()
    code = await run.serve.stop(STOP_TIMEOUT_S + 15)
    took = time.monotonic() - began
    run.stop_times.append(took)
    if code != 0:
        print(f"{run.t():8.1f} s  controller exit {code} after SIGTERM ({took:.1f} s)", flush=True)
    run.restarts += 1
    start_serve(run)


async def sim_kill(run: Soak) -> None:
    assert run.sim is not None
    run.sim.process.send_signal(signal.SIGKILL)
    run.sim.kill()
    await asyncio.sleep(run.rng.uniform(1, 3))
    await restart_sim(run)


async def db_partition(run: Soak) -> None:
    assert run.proxy is not None
    run.proxy.silent(True)
    await asyncio.sleep(run.rng.uniform(5, 40))
    run.proxy.reset()
    run.proxy.silent(False)


async def db_reset(run: Soak) -> None:
    assert run.proxy is not None
    run.proxy.reset()


FAULT_ACTIONS = {
    "controller-kill": controller_kill,
    "controller-term": controller_term,
    "sim-kill": sim_kill,
    "db-partition": db_partition,
    "db-reset": db_reset,
}


async def sampler(run: Soak, services: Services) -> None:
    header = (
        f"{'t s':>8} {'completed':>9} {'open':>5} {'held':>5} {'faults':>6} {'released':>8} "
        f"{'resets':>6} {'ctl RSS MB':>10} {'db MB':>7} {'wal MB':>7}"
    )
    print(header, flush=True)
    run.samples.append(header)
    while True:
        await asyncio.sleep(run.args.report_every)
        lots = await services.lots.find(limit=100_000)
        states = Counter(lot.state for lot in lots)
        rss = rss_mb(run.serve.pid) if run.serve and run.serve.running() else None
        db_mb, wal_mb = database_size_mb(run)
        line = (
            f"{run.t():8.0f} {states[LotState.COMPLETED]:9d} "
            f"{sum(n for s, n in states.items() if s not in ENDED):5d} {states[LotState.HOLD]:5d} "
            f"{sum(run.faults.values()):6d} {run.releases:8d} {run.resets:6d} "
            f"{'-' if rss is None else f'{rss:.0f}':>10} {db_mb:7.1f} "
            f"{'-' if wal_mb is None else f'{wal_mb:.1f}':>7}"
        )
        print(line, flush=True)
        run.samples.append(line)


def database_size_mb(run: Soak) -> tuple[float, float | None]:
    if run.url.startswith("sqlite"):
        path = Path(run.url.removeprefix("sqlite:///"))
        wal = path.with_name(path.name + "-wal")
        size = path.stat().st_size if path.exists() else 0
        return size / 2**20, (wal.stat().st_size if wal.exists() else 0) / 2**20
    return 0.0, None


# -- the checks at the end ---------------------------------------------------------------------

DUPLICATE_RECORDS = """
SELECT carrier_id, path_index, count(*) FROM jobs WHERE status = 'RECORDED'
GROUP BY carrier_id, path_index HAVING count(*) > 1
"""
JOB_RECORDS = "SELECT data FROM lot_history WHERE operation = 'job_record'"


async def check(run: Soak, services: Services) -> dict[str, object]:
    lots = {lot.id: lot for lot in await services.lots.find(limit=1_000_000)}
    missing = [lot_id for lot_id in run.lots_started if lot_id not in lots]
    async with open_engine(run.url) as engine, engine.connect() as conn:
        twice_recorded = (await conn.execute(text(DUPLICATE_RECORDS))).all()
        records = Counter(
            (json.loads(data) if isinstance(data, str) else data).get("job")
            for (data,) in await conn.execute(text(JOB_RECORDS))
        )
    twice_in_history = [job for job, n in records.items() if n > 1]
    unfinished = Counter(lot.state.value for lot in lots.values() if lot.state not in ENDED)
    return {
        "started": len(run.lots_started),
        "completed": sum(1 for lot in lots.values() if lot.state is LotState.COMPLETED),
        "unfinished": dict(unfinished),
        "lost": len(missing),
        "duplicated": len(twice_recorded) + len(twice_in_history),
    }


# -- main --------------------------------------------------------------------------------------


async def soak(args: argparse.Namespace) -> int:
    keep_dir: Path | None = args.keep_dir
    directory = keep_dir or Path(tempfile.mkdtemp(prefix="pkgline-soak-"))
    rng = random.Random(args.seed)
    example = resources.files("pkgline").joinpath("line.example.toml")
    with resources.as_file(example) as path:
        config = free_port_config(load_line_config(path), args.alarm_rate)

    scratch = None
    proxy = None
    if args.postgres:
        scratch = f"pkgline_soak_{os.getpid()}"
        await admin(f'CREATE DATABASE "{scratch}"')
        url = POSTGRES.rsplit("/", 1)[0] + f"/{scratch}"
        host, port = _host_port(url)
        proxy = Proxy((host, port))
        await proxy.start()
        serve_url = url.replace(f"{host}:{port}", f"127.0.0.1:{proxy.port}")
    else:
        url = serve_url = f"sqlite:///{directory / 'soak.db'}"
    from mes.adapters.migrate import upgrade
    from pkgline.bootstrap import seed_flow_versions
    from simulators.line import write_line_config

    async with open_engine(url) as engine:
        await upgrade(engine)  # as ``pkgline db upgrade``: the schema, and the flows
        await seed_flow_versions(engine)  # published and approved as version 1
    config = config.model_copy(update={"database": serve_url})
    # The secure configuration, as the demo runs it (certificates for both sides, trusted).
    config = secure_demo_line(config, directory / "soak.pki")
    config_path = write_line_config(config, directory / "soak.line.toml")
    run = Soak(args, directory, url, serve_url, config_path, config, rng, proxy=proxy)
    print(
        f"soak: {len(config.tools)} tools, {args.wip} lots in progress, faults every "
        f"{args.fault_every:g} s on average ({args.faults}), alarm rate {args.alarm_rate:g}, "
        f"{'PostgreSQL' if args.postgres else 'SQLite'}, for {args.duration:g} s; files in "
        f"{directory}; {load()} (start)",
        flush=True,
    )
    tasks: list[asyncio.Task[None]] = []
    try:
        await start_sim(run)
        start_serve(run)
        async with open_services(url) as services:
            tasks = [
                asyncio.create_task(feeder(run, services)),
                asyncio.create_task(operator(run, services)),
                asyncio.create_task(inject_faults(run)),
                asyncio.create_task(sampler(run, services)),
                asyncio.create_task(supervise(run)),
            ]
            await asyncio.sleep(args.duration)
            run.faults_on = False
            run.feeding = False
            print(f"{run.t():8.1f} s  faults and new lots stop; the line drains", flush=True)
            drain_until = time.monotonic() + args.drain
            while time.monotonic() < drain_until:
                lots = await services.lots.find(limit=1_000_000)
                if all(lot.state in ENDED for lot in lots):
                    break
                await asyncio.sleep(2.0)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            tasks = []
            result = await check(run, services)
        for child in (run.serve, run.sim):
            if child is not None:
                began = time.monotonic()
                code = await child.stop(STOP_TIMEOUT_S + 15)
                if child is run.serve:
                    run.stop_times.append(time.monotonic() - began)
                    result["last stop exit"] = code
    finally:
        for task in tasks:
            task.cancel()
        for child in (run.serve, run.sim):
            if child is not None:
                child.kill()
        if proxy is not None:
            await proxy.close()
        if scratch is not None:
            await admin(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        if keep_dir is None:
            shutil.rmtree(directory, ignore_errors=True)
    print()
    print(f"after {run.t():.0f} s: faults {dict(run.faults)}, restarts {run.restarts}")
    print(f"controller exits by itself (code: count): {dict(run.exits) or 'none'}")
    print(f"operator: {run.releases} releases, {run.resets} resets ({run.reset_refused} refused)")
    stops = sorted(run.stop_times)
    if stops:
        print(
            f"SIGTERM stops: {len(stops)}, longest {stops[-1]:.1f} s (limit {STOP_TIMEOUT_S:g} s)"
        )
    for key, value in result.items():
        print(f"{key}: {value}")
    print(f"soak: {load()} (end)")
    return 0


async def admin(sql: str) -> None:
    await pg_admin(POSTGRES, sql)


def _host_port(url: str) -> tuple[str, int]:
    netloc = url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    host, _, port = netloc.partition(":")
    return host, int(port or 5432)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=300.0, help="s of faults and new lots")
    parser.add_argument("--drain", type=float, default=120.0, help="s for the line to drain")
    parser.add_argument("--wip", type=int, default=18, help="lots kept in progress")
    parser.add_argument("--fault-every", type=float, default=60.0, help="mean s between faults")
    parser.add_argument("--faults", default=",".join(FAULTS), help="comma-separated kinds")
    parser.add_argument("--alarm-rate", type=float, default=0.002, help="chance per job")
    parser.add_argument("--time-scale", type=float, default=0.05, help="tools' process times x")
    parser.add_argument("--report-every", type=float, default=60.0, help="s between samples")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-dir", help="keep the database and logs here")
    args = parser.parse_args(argv)
    if args.keep_dir:
        args.keep_dir = Path(args.keep_dir).resolve()
        args.keep_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(asyncio.run(soak(args)))


if __name__ == "__main__":
    socket.setdefaulttimeout(30)
    main()
