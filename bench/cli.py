"""The CLI's start-up: every ``pkgline`` call is a new process, so its imports are paid on
each call. Runs ``python -c pass``, ``pkgline version``, ``pkgline --help`` and ``pkgline lot
show X --json`` (direct mode, on a seeded SQLite file and, when it answers, on PostgreSQL)
``--runs`` times each, interleaved, and through a ``pkgline api`` server on the SQLite file
(client mode, ``--server unix://...``: ``lot show``, and ``lot list`` and ``line status`` as
tables), and prints p50/p90 of each and the ratio of ``lot show``
to ``python -c pass``. Goal (issue 20, "Plant scale, measured honestly"): ``lot show`` p50
under 0.25 s and at most 8 times ``python -c pass`` from the same venv in the same run. Two
floors are measured too: the imports any typer command pays (typer < 0.29: without pydantic,
see pyproject.toml), and with them SQLAlchemy's asyncio engine (which imports its ORM) that
any direct-mode command pays.

    .venv/bin/python bench/cli.py [--runs 21] [--lots 50] [--no-postgres] [--before CHECKOUT]

The databases are made as ``pkgline db upgrade`` makes them: every packaged flow published
and approved as version 1, so ``lot show`` reads its lot's flow version. ``--before`` runs
``lot show`` (and ``lot list`` and ``line status`` through the server, the operator's
tables) with another checkout's code too (its tree first on PYTHONPATH, this venv),
interleaved with the rest: before/after figures measured under the same load.

The machine's load is printed at start and end: on a shared machine, compare the ratios,
and rerun before believing a single figure. PostgreSQL is reached at
$PKGLINE_BENCH_POSTGRES (default postgresql://postgres@127.0.0.1:5432/test); a scratch
database of the run's own (``pkgline_bench_cli_<8 hex digits>``) is created and dropped, so
that two runs at once leave each other's alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import load, load_printed, postgres_admin, print_verdict
from common import scratch_postgres as common_scratch_postgres

GOAL_S = 0.25
GOAL_RATIO = 8.0
SCRATCH_PG = "pkgline_bench_cli"
"""The prefix of the scratch PostgreSQL database's name; a run adds 8 hex digits of its own
(common.scratch_postgres): with one fixed name, dropped WITH (FORCE), a second run at once
dropped the first's database under it."""
FLOOR_TYPER = "import typer.main"
FLOOR_SQLALCHEMY = FLOOR_TYPER + ", sqlalchemy.ext.asyncio, sqlalchemy.dialects.sqlite.aiosqlite"


@dataclass
class Command:
    """One command line, run as a new process each time (its output checked once)."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    """CPU seconds (user + system) of each run: less at the mercy of a busy machine."""

    def run(self) -> subprocess.CompletedProcess[bytes]:
        before = _children_cpu()
        t0 = time.perf_counter()
        done = subprocess.run(
            self.argv,
            env={**os.environ, **self.env},
            capture_output=True,
            check=False,
        )
        self.times.append(time.perf_counter() - t0)
        self.cpu.append(_children_cpu() - before)
        if done.returncode != 0:
            raise SystemExit(
                f"{self.name}: exit {done.returncode}\n{done.stderr.decode(errors='replace')}"
            )
        return done

    def quantile(self, q: float, *, cpu: bool = False) -> float:
        ordered = sorted(self.cpu if cpu else self.times)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def pkgline() -> str:
    """The ``pkgline`` console script of the venv this benchmark runs in."""
    script = Path(sys.executable).with_name("pkgline")
    if not script.exists():
        raise SystemExit(f"no {script}: run from the project's venv (make install)")
    return str(script)


async def seeded(url: str, lots: int) -> str:
    """Migrate and seed the database at ``url``; return a lot in progress to show."""
    from seed import seed

    from mes.adapters.database import create_engine
    from mes.adapters.migrate import upgrade
    from mes.domain.model import LotState
    from mes.ports import LotQuery
    from pkgline.bootstrap import open_lot_service, seed_flow_versions

    engine = create_engine(url)
    try:
        await upgrade(engine)  # as ``pkgline db upgrade``: the schema, the flows published
        await seed_flow_versions(engine)  # and approved as version 1 (lots read versions)
        await seed(engine, lots, active=max(1, lots // 2))
    finally:
        await engine.dispose()
    async with open_lot_service(url) as service:
        page = await service.page(LotQuery(states=(LotState.RUNNING,), limit=1))
        if not page.lots:  # a small seed may have none running: any lot, then
            page = await service.page(LotQuery(limit=1))
    return page.lots[0].id


@contextlib.asynccontextmanager
async def scratch_postgres(admin: str) -> AsyncIterator[str | None]:
    """A fresh scratch database of this run's own next to ``admin`` (its URL), dropped
    after the block, connections and all; None when PostgreSQL does not answer (said)."""
    import asyncpg

    try:
        conn = await asyncpg.connect(admin, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        print(f"PostgreSQL at {admin} not reachable ({exc}): its figures are left out")
        conn = None
    if conn is None:
        yield None
        return
    await conn.close()
    async with common_scratch_postgres(admin, SCRATCH_PG) as url:
        yield url


def lot_show(
    name: str, url: str, lot: str, before: Path | None = None, *, server: str | None = None
) -> Command:
    """``pkgline lot show LOT --json`` in direct mode on ``url`` (output checked), or
    through ``server`` (a running ``pkgline api``); ``before``: with the code of that
    checkout (the same venv, its tree first on the path)."""
    env = {"PKGLINE_DB": url} if server is None else {"PKGLINE_SERVER": server}
    if before is not None:
        env["PYTHONPATH"] = str(before)
    return Command(name, [pkgline(), "lot", "show", lot, "--json"], env)


def start_server(url: str, socket: Path) -> subprocess.Popen[bytes]:
    """``pkgline api`` on ``url``, serving ``socket``, with this OS account a user (as
    ``pkgline user add`` makes one); returned once the socket exists."""
    import getpass

    env = {k: v for k, v in os.environ.items() if k not in ("PKGLINE_SERVER", "PKGLINE_DB")}
    account = getpass.getuser()
    subprocess.run(
        [
            *(pkgline(), "user", "add", account, "--name", "bench"),
            *("--role", "operator", "--no-password", "--db", url),
        ],
        env=env,
        capture_output=True,
        check=True,
    )
    server = subprocess.Popen(
        [pkgline(), "api", "--db", url, "--socket", str(socket), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not socket.is_socket():
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            server.wait()
            raise SystemExit(f"pkgline api did not start (exit {server.returncode})")
        time.sleep(0.1)
    return server


def check(command: Command, lot: str | None) -> None:
    """Run ``command`` once, unmeasured (warms the OS's caches), and check its output."""
    out = command.run().stdout
    command.times.clear()
    command.cpu.clear()
    if lot is not None and json.loads(out)["id"] != lot:
        raise SystemExit(f"{command.name}: printed another lot than {lot}")


def report(commands: list[Command], baseline: Command) -> None:
    print(
        f"\n{'':<34}{'wall: p50 ms':>13}{'p90 ms':>9}{'x pass':>9}{'CPU: p50 ms':>13}{'x pass':>9}"
    )
    for command in commands:
        p50 = command.quantile(0.5)
        cpu = command.quantile(0.5, cpu=True)
        print(
            f"  {command.name:<32}{p50 * 1000:13.1f}{command.quantile(0.9) * 1000:9.1f}"
            f"{p50 / baseline.quantile(0.5):9.1f}{cpu * 1000:13.1f}"
            f"{cpu / baseline.quantile(0.5, cpu=True):9.1f}"
        )
    print()
    for command in commands:
        if not command.name.startswith("lot show"):
            continue
        p50 = command.quantile(0.5)
        ratio = p50 / baseline.quantile(0.5)
        print_verdict(
            f"{command.name}: p50 < {GOAL_S * 1000:.0f} ms",
            p50 < GOAL_S,
            f"p50 {p50 * 1000:.0f} ms",
        )
        print_verdict(
            f"{command.name}: <= {GOAL_RATIO:.0f}x python -c pass",
            ratio <= GOAL_RATIO,
            f"{ratio:.1f}x",
        )


async def bench(runs: int, lots: int, postgres: bool, before: Path | None) -> None:
    with load_printed("cli"):
        await _bench(runs, lots, postgres, before)


async def _bench(runs: int, lots: int, postgres: bool, before: Path | None) -> None:
    baseline = Command("python -c pass", [sys.executable, "-c", "pass"])
    commands = [
        baseline,
        # floors: what any typer command and any direct-mode command (SQLAlchemy's asyncio
        # engine, which imports its ORM) import
        Command("floor: typer", [sys.executable, "-c", FLOOR_TYPER]),
        Command("floor: + SQLAlchemy asyncio", [sys.executable, "-c", FLOOR_SQLALCHEMY]),
        Command("pkgline version", [pkgline(), "version"]),
        Command("pkgline --help", [pkgline(), "--help"]),
    ]
    shown: dict[str, str] = {}
    admin = postgres_admin()
    with tempfile.TemporaryDirectory() as scratch:
        sqlite_url = f"sqlite:///{Path(scratch) / 'cli.db'}"
        lot = await seeded(sqlite_url, lots)
        commands.append(lot_show("lot show --json (SQLite)", sqlite_url, lot))
        shown[commands[-1].name] = lot
        if before is not None:
            commands.append(lot_show("lot show --json (SQLite, before)", sqlite_url, lot, before))
            shown[commands[-1].name] = lot
        async with scratch_postgres(admin) if postgres else contextlib.nullcontext() as pg_url:
            await _measure(runs, lots, before, commands, shown, scratch, sqlite_url, pg_url)
    report(commands, baseline)


async def _measure(
    runs: int,
    lots: int,
    before: Path | None,
    commands: list[Command],
    shown: dict[str, str],
    scratch: str,
    sqlite_url: str,
    pg_url: str | None,
) -> None:
    """Seed PostgreSQL (``pg_url``), start the server on the SQLite file and run every
    command ``runs`` times, interleaved; the server stopped at the end."""
    server: subprocess.Popen[bytes] | None = None
    try:
        if pg_url is not None:
            lot = await seeded(pg_url, lots)
            commands.append(lot_show("lot show --json (PostgreSQL)", pg_url, lot))
            shown[commands[-1].name] = lot
            if before is not None:
                name = "lot show --json (PG, before)"
                commands.append(lot_show(name, pg_url, lot, before))
                shown[commands[-1].name] = lot
        # the client mode: through a ``pkgline api`` server on the SQLite file
        lot = shown["lot show --json (SQLite)"]
        server = start_server(sqlite_url, Path(scratch) / "api.sock")
        url = f"unix://{Path(scratch) / 'api.sock'}"
        commands.append(lot_show("lot show --json (server)", sqlite_url, lot, server=url))
        shown[commands[-1].name] = lot
        if before is not None:
            name = "lot show --json (server, before)"
            commands.append(lot_show(name, sqlite_url, lot, before, server=url))
            shown[commands[-1].name] = lot
        for args in (("lot", "list"), ("line", "status")):  # the operator's tables
            commands.append(
                Command(f"{' '.join(args)} (server)", [pkgline(), *args], {"PKGLINE_SERVER": url})
            )
            if before is not None:
                env = {"PKGLINE_SERVER": url, "PYTHONPATH": str(before)}
                commands.append(
                    Command(f"{' '.join(args)} (server, before)", [pkgline(), *args], env)
                )
        for command in commands:
            check(command, shown.get(command.name))
        print(f"{len(commands)} commands, {runs} runs each, interleaved ({load()})")
        for _ in range(runs):
            for command in commands:
                command.run()
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=21, help="runs of each command (21)")
    parser.add_argument("--lots", type=int, default=50, help="lots seeded (50)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument(
        "--before",
        type=Path,
        metavar="CHECKOUT",
        help="also run lot show with the code of another checkout of pkgline (e.g. a "
        "worktree of an older commit), interleaved, on the same databases and venv",
    )
    args = parser.parse_args()
    if args.runs < 1 or args.lots < 1:
        parser.error("--runs and --lots are 1 or more")
    if args.before is not None and not (args.before / "pkgline" / "__init__.py").is_file():
        parser.error(f"--before {args.before}: not a pkgline checkout (no pkgline/__init__.py)")
    before = args.before.resolve() if args.before is not None else None
    asyncio.run(bench(args.runs, args.lots, not args.no_postgres, before))


if __name__ == "__main__":
    main()
