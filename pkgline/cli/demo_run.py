"""The demo's run and its child processes: the simulators (``pkgline sim``), the line
controller (``pkgline serve``) and the server (``pkgline api``), started, waited for until
ready, and stopped (``pkgline demo``, :mod:`pkgline.cli.demo`).

Nothing is left running, whatever happens: on Linux each child asks the kernel for SIGTERM
when the demo dies (``PR_SET_PDEATHSIG``), so not even ``kill -9`` of the demo leaves an
orphan; ``--keep`` is the exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from rich.text import Text

from pkgline.bootstrap import Services
from pkgline.cli import demo_api
from pkgline.cli.common import out
from pkgline.cli.demo_view import Progress
from pkgline.cli.remote import Server
from pkgline.config import LineConfig

SIM_READY = "Ctrl-C or SIGTERM stops it"
ADDRESS_IN_USE = "address already in use"
"""What a child says (lower-cased) when a port it was to listen on is taken."""
_TAKEN_ADDRESS = (
    re.compile(r"bind on address \('([^']+)', (\d+)\)"),  # asyncio's words (uvicorn, OPC UA)
    re.compile(r"(\d{1,3}(?:\.\d{1,3}){3}):(\d+)"),  # the simulators' own: HOST:PORT
)
PORT_ATTEMPTS = 5
"""How many times the demo starts a child that listens on ports it chose, choosing new ports
each time another process took one first (:func:`start_listening`)."""
EXIT_INCOMPLETE = 1
CONTROLLER_READY_S = 60.0
"""How long the demo waits for its line controller to reach every tool (at most)."""

# Run in the child before it becomes ``python -m pkgline ...``: ask the kernel for SIGTERM when
# the demo dies (PR_SET_PDEATHSIG = 1; kept across exec), unless it died already.
_DIE_WITH_PARENT = """\
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)
os.execv(sys.executable, [sys.executable, "-m", "pkgline", *sys.argv[2:]])
"""


class DemoFailed(Exception):
    def __init__(self, message: str, code: int = EXIT_INCOMPLETE):
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass
class Child:
    """A ``pkgline`` subcommand running as a child process, its output in a log file."""

    name: str
    log: Path
    process: subprocess.Popen[bytes]
    _log_file: IO[bytes] = field(repr=False)

    @classmethod
    def start(cls, name: str, args: Sequence[str], log: Path, *, keep: bool) -> Child:
        log_file = log.open("wb")
        if keep or sys.platform != "linux":
            argv = [sys.executable, "-m", "pkgline", *args]
        else:
            argv = [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *args]
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            # Not in the terminal's process group: Ctrl-C reaches the demo only, which then
            # stops the controller before the simulators. --keep: a session of its own.
            start_new_session=keep,
            process_group=None if keep else 0,
        )
        return cls(name, log, process, log_file)

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    async def stop(self, within_s: float) -> int:
        """SIGTERM, wait up to ``within_s``, then SIGKILL. The exit code (negative: signal)."""
        if self.running():
            self.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(self.process.wait, within_s)
        return self.kill()

    def kill(self) -> int:
        """Whatever happens: nothing left running, the log closed."""
        if self.running():
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        code = self.process.wait()
        self._log_file.close()
        return code


@dataclass
class Demo:
    """What one run works with."""

    database: Path
    url: str
    config_path: Path
    config: LineConfig
    time_scale: float
    reject_rate: float | None
    keep: bool
    started: float
    deadline: float
    children: list[Child] = field(default_factory=list)
    planned: dict[str, int] = field(default_factory=dict)
    user: demo_api.DemoUser | None = None
    station_port: int | None = None
    """The operator station's port on 127.0.0.1 (the server's plain HTTP, loopback only)."""
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    """8 random hex digits, this run's own: in its MQTT client id and its topic root, so that
    two demos on one broker keep apart (pkgline.cli.demo.demo_feed)."""

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def progress(self) -> Progress:
        return Progress(self.elapsed(), self.deadline - self.started, self.planned)

    def log(self, suffix: str) -> Path:
        return self.database.with_name(f"{self.database.stem}.{suffix}.log")

    @property
    def spool_dir(self) -> Path:
        """The controller's spool, beside the database (``pkgline-demo.spool/``): never the
        account's default, which every controller of the same line name shares."""
        return self.database.with_suffix(".spool")


# -- the line's processes ----------------------------------------------------------------------


async def start_line(run: Demo) -> None:
    """The simulators, once they listen, then the line controller (not waited for)."""
    sim = await start_simulators(run)
    serve = Child.start(
        "line controller",
        ["serve", "--config", str(run.config_path), "--db", run.url],
        run.log("serve"),
        keep=run.keep,
    )
    run.children.append(serve)
    out.print(
        f"started: simulators (pkgline sim, pid {sim.pid}), line controller "
        f"(pkgline serve, pid {serve.pid}); logs: {sim.log.name}, {serve.log.name}"
    )


async def start_simulators(run: Demo) -> Child:
    """``pkgline sim`` on the line's configuration, until its tools listen; on new ports
    (the configuration rewritten) when another process took one first."""
    sim_args = ["sim", "--config", str(run.config_path), "--time-scale", f"{run.time_scale:g}"]
    if run.reject_rate is not None:
        sim_args += ["--reject-rate", f"{run.reject_rate:g}"]

    async def listening(sim: Child) -> None:
        await wait_until(
            run,
            sim,
            lambda: SIM_READY in sim.output(),
            within_s=30,
            what="the simulators to listen",
        )

    return await start_listening(
        run,
        lambda: Child.start("simulators", sim_args, run.log("sim"), keep=run.keep),
        listening,
        lambda: _move_simulated_tools(run),
    )


def _move_simulated_tools(run: Demo) -> None:
    """New free ports for the simulated tools, written into the line's configuration (the
    one the simulators, the controller and the server read)."""
    from simulators.line import with_free_ports, write_line_config

    run.config = with_free_ports(run.config)
    write_line_config(run.config, run.config_path)


def port_taken(child: Child) -> str | None:
    """The address (``127.0.0.1:PORT``; else the line it said) the child could not listen
    on, when it exited because that address was taken (None: it runs, or it ended for
    another reason)."""
    if child.running():
        return None
    for line in reversed(child.output().splitlines()):
        if ADDRESS_IN_USE in line.lower():
            for pattern in _TAKEN_ADDRESS:
                if found := pattern.search(line):
                    return f"{found[1]}:{found[2]}"
            return line.strip()
    return None


async def start_listening(
    run: Demo,
    start: Callable[[], Child],
    ready: Callable[[Child], Awaitable[None]],
    new_ports: Callable[[], None],
) -> Child:
    """Start a child that listens on ports the demo chose, and wait until it is ``ready``
    (which raises :class:`DemoFailed` if it is not). The ports were free when chosen, but
    another process can bind one before the child does (the child then exits: address
    already in use); then ``new_ports`` chooses others and the child is started again, up to
    :data:`PORT_ATTEMPTS` times in all, each said on the terminal."""
    for attempt in range(1, PORT_ATTEMPTS + 1):
        child = start()
        run.children.append(child)
        try:
            await ready(child)
        except DemoFailed:
            taken = port_taken(child)
            if taken is None or attempt == PORT_ATTEMPTS:
                raise
        else:
            return child
        child.kill()
        run.children.remove(child)
        new_ports()
        out.print(
            Text(
                f"the {child.name} could not listen: another process took {taken} after the "
                f"demo chose it; new ports, attempt {attempt + 1} of {PORT_ATTEMPTS}",
                style="yellow",
            )
        )
    raise AssertionError("unreachable: the last attempt returns or raises")


async def wait_until(
    run: Demo, child: Child, ready: Callable[[], bool], *, within_s: float, what: str
) -> None:
    own = time.monotonic() + within_s
    deadline = min(own, run.deadline)
    while not ready():
        if not child.running():
            raise DemoFailed(
                f"the {child.name} exited ({child.process.returncode}) before {what}:\n"
                f"{child.tail()}"
            )
        if time.monotonic() > deadline:
            raise DemoFailed(_gave_up(run, what, within_s, child, limited=run.deadline < own))
        await asyncio.sleep(0.1)


def _gave_up(run: Demo, what: str, within_s: float, child: Child, *, limited: bool) -> str:
    """Why a wait for the line to come up ended: its own time, or the run's --time-limit
    when that came first (``limited``), with the child's log."""
    logged = child.tail() or "(nothing logged yet)"
    if limited:
        return (
            f"--time-limit {run.deadline - run.started:g} s ran out after {run.elapsed():.1f} s "
            f"while waiting for {what} (a longer --time-limit gives the line more time to "
            f"start); {child.log}:\n{logged}"
        )
    return f"{what}: not within {within_s:.0f} s; {child.log}:\n{logged}"


async def wait_for_controller(run: Demo, services: Services) -> None:
    """Ready: its heartbeat is in the database (written once every tool has answered)."""
    serve = run.children[-1]
    name = run.config.name
    up = False

    async def check() -> bool:
        nonlocal up
        beats = [c for c in await services.equipment.controllers() if c.name == name]
        if not beats or beats[0].status == "stopped":
            return False
        tools = await services.equipment.tools(name)
        up = all(t.snapshot.connected for t in tools) and len(tools) == len(run.config.tools)
        return up

    own = time.monotonic() + CONTROLLER_READY_S
    deadline = min(own, run.deadline)
    while not await check():
        if not serve.running():
            raise DemoFailed(
                f"the line controller exited ({serve.process.returncode}):\n{serve.tail()}"
            )
        if time.monotonic() > deadline:
            raise DemoFailed(
                _gave_up(
                    run,
                    "the line controller to get ready",
                    CONTROLLER_READY_S,
                    serve,
                    limited=run.deadline < own,
                )
            )
        await asyncio.sleep(0.2)
    out.print(
        f"line controller ready after {run.elapsed():.1f} s: "
        f"{len(run.config.tools)}/{len(run.config.tools)} tools answering"
    )


async def start_api(run: Demo) -> None:
    """The pkgline server on a socket beside the database: the lots are started through it."""
    sock = demo_api.socket_path(run.database)

    def start() -> Child:
        return Child.start(
            "pkgline server",
            [
                "api",
                "--config",  # the line's rules: two signers for a scrap, the security settings
                str(run.config_path),
                "--db",
                run.url,
                "--socket",
                str(sock),
                "--http-port",
                str(run.station_port),
                "--log-level",
                "warning",
            ],
            run.log("api"),
            keep=run.keep,
        )

    async def answering(api: Child) -> None:
        try:
            await demo_api.wait_for_server(server(run), 30, api.running)
            assert run.station_port is not None
            await demo_api.wait_for_station(run.station_port, 30, api.running)
        except (RuntimeError, TimeoutError) as exc:
            raise DemoFailed(f"{exc}; {api.log}:\n{api.tail()}") from None

    def new_port() -> None:
        run.station_port = demo_api.free_loopback_port()

    new_port()
    api = await start_listening(run, start, answering, new_port)
    out.print(f"pkgline server (pkgline api, pid {api.pid}) on unix://{sock}")
    print_station(run)


def station_url(run: Demo) -> str:
    return f"http://127.0.0.1:{run.station_port}/station/"


def print_station(run: Demo) -> None:
    """Where the operator station is and how to log in: the password made for this run is
    shown here once (its hash is in the demo's database; never on a command line)."""
    if run.user is None or run.station_port is None:
        return
    out.print(
        Text.assemble(
            ("operator station: ", "bold"),
            (station_url(run), "bold cyan"),
            f"  log in as {run.user.name}, password ",
            (run.user.password, "bold"),
            " (made for this demo's database)",
        )
    )


def server(run: Demo) -> Server:
    sock = demo_api.socket_path(run.database)
    return Server(f"unix://{sock}", socket_path=str(sock))


async def stop_line(run: Demo) -> None:
    """SIGTERM to the controller (it finishes what it records and exits 0), then the
    simulators."""
    codes = []
    for child in reversed(run.children):  # the server first: the line needs none of it
        code = await child.stop(30.0 if child.name == "line controller" else 10.0)
        codes.append(f"{child.name} exit {code}")
    out.print("stopped with SIGTERM: " + ", ".join(codes))
