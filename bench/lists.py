"""Lists at plant size: ``lot list``, ``lot show``, ``line status``, ``lot history`` (the
whole line's, and one step's), ``tool jobs`` and dispatch at 1,000, 10,000 and 100,000
seeded lots (bench/seed.py: the same 200 in progress, the rest finished), server time (the
service call) and CLI time (the command, process start included). Goal (issue 20): flat
within 2x from the smallest to the largest database. The history and jobs lists carry their
count, which stops at 10,000 (mes.domain.paging): their figures say what that bound holds.

Dispatch is measured twice: its read (the heads of the lots in progress and the tools'
dispatch modes, one transaction) and its whole pass, the line controller's own
:class:`~pkgline.controller.dispatcher.Dispatcher` over the seeded tools that no lot runs on:
the read, each waiting lot's next step, the picks, and the track-ins of every pick in one
transaction, interlocks and all. The tools are the seeded ones as the database knows them,
each idle until the pass gives it a lot (what the pass asks of a tool's runner: no driver and
no simulator behind it, so the figure is the pass's, not the tools' links). Between two
timed passes the lots it started are aborted back to waiting, untimed, so that each pass
does the same work.

    .venv/bin/python bench/lists.py [--sizes 1000,10000,100000] [--postgres] [--repeat 5]

Server times are the median of ``--repeat`` calls, CLI times the median of 3 runs. The
machine's load is printed at start and end: on a shared machine, compare the ratio, and
rerun before believing a single figure. PostgreSQL is reached at $PKGLINE_BENCH_POSTGRES
(default postgresql://postgres@127.0.0.1:5432/test); scratch databases are created and
dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import load, load_printed, postgres_admin, print_verdict, scratch_postgres
from seed import LINE, seed, seed_tools

from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.domain import commands as cmd
from mes.domain.model import LotState
from mes.ports import HistoryQuery, LotQuery, ToolJobQuery
from mes.service import LotService
from pkgline.bootstrap import open_services, seed_flow_versions
from pkgline.config import ControllerConfig
from pkgline.controller.dispatcher import Dispatcher
from pkgline.controller.outage import DatabaseOutage
from pkgline.line_views import read_status
from pkgline.logs import configure_logging

ACTIVE = 200
GOAL = 2.0


async def _median(call: Callable[[], Awaitable[Any]], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        await call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000.0


class IdleTool:
    """What a dispatch pass asks of a tool's runner, for a seeded tool: idle until the pass
    assigns it a lot."""

    def __init__(self, tool_id: str, steps: frozenset[str]):
        self.tool_id = tool_id
        self.steps = steps
        self.current_lot: str | None = None
        self.finishing = None

    def is_idle(self) -> bool:
        return self.current_lot is None

    def is_working_on(self, lot_id: str) -> bool:
        return lot_id == self.current_lot

    def assign(self, lot_id: str, view: object = None) -> None:
        self.current_lot = lot_id


class DispatchPass:
    """The line controller's dispatch pass over the seeded tools no lot runs on (the line
    ``LINE``'s), timed on its own; :meth:`reset` aborts what it started, untimed."""

    def __init__(self, lots: LotService, tools: dict[str, IdleTool]):
        self._lots = lots
        self.tools = tools
        runners: Any = tools  # the runners' part a pass uses (IdleTool)
        self._dispatcher = Dispatcher(
            LINE, ControllerConfig(), lots, runners, "bench", lambda: None, DatabaseOutage()
        )
        self.started: list[int] = []

    @classmethod
    async def of(cls, lots: LotService) -> DispatchPass:
        heads, modes = await lots.dispatch_view([LotState.RUNNING], LINE)
        busy = {h.tool for h in heads}
        tools = {
            tool.id: IdleTool(tool.id, frozenset(tool.steps))
            for tool in seed_tools(lots.flows)
            if tool.id in modes and tool.id not in busy
        }
        return cls(lots, tools)

    async def run(self) -> None:
        await self._dispatcher.dispatch_once(full=True)
        self.started.append(sum(1 for t in self.tools.values() if t.current_lot))

    async def reset(self) -> None:
        for tool in self.tools.values():
            if tool.current_lot is not None:
                await self._lots.abort(cmd.AbortStep(tool.current_lot, "bench", "bench reset"))
                tool.current_lot = None
        self._dispatcher.lot_waits()


def _cli(url: str, *args: str) -> float:
    env = {**os.environ, "PKGLINE_DB": url, "COLUMNS": "160"}
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "pkgline", *args],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000.0


async def measure(url: str, size: int, repeat: int) -> dict[str, tuple[float, float]]:
    """{what: (server ms, CLI ms)} on a database seeded with ``size`` lots."""
    engine = create_engine(url)
    try:
        await upgrade(engine)  # as ``pkgline db upgrade``: the schema, and the flows
        await seed_flow_versions(engine)  # published and approved as version 1
        await seed(engine, size, active=ACTIVE)
    finally:
        await engine.dispose()
    # a lot in progress with a whole flow's history, and the last finished one
    figures: dict[str, tuple[float, float]] = {}
    async with open_services(url) as services:
        lots = services.lots
        running = await lots.page(LotQuery(states=(LotState.RUNNING,), limit=ACTIVE))
        shown = running.lots[0].id
        # a step and a tool that the finished lots passed through, as a running lot names them
        on_tools = [(r.step, r.tool) for r in (lot.running for lot in running.lots) if r and r.tool]
        if not on_tools:
            raise SystemExit("the seeded database runs no lot on a tool: nothing to list jobs of")
        step, tool = on_tools[0]
        server = {
            "lot list": lambda: lots.page(LotQuery(limit=50)),
            "lot list --state WAITING": lambda: lots.page(
                LotQuery(states=(LotState.WAITING,), limit=50)
            ),
            "lot show": lambda: lots.report(shown),
            "line status": lambda: read_status(services, datetime.now().astimezone()),
            "lot history": lambda: lots.history_page(HistoryQuery(limit=50)),
            "lot history --step": lambda: lots.history_page(HistoryQuery(step=step, limit=50)),
            "tool jobs": lambda: lots.tool_job_page(ToolJobQuery(tool, limit=20)),
            "dispatch read": lambda: lots.dispatch_view([LotState.WAITING, LotState.RUNNING], LINE),
        }
        for name, call in server.items():
            figures[name] = (await _median(call, repeat), 0.0)
        dispatch = await DispatchPass.of(lots)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            await dispatch.run()
            times.append(time.perf_counter() - t0)
            await dispatch.reset()
        figures["dispatch pass"] = (statistics.median(times) * 1000.0, 0.0)
        started = sorted(set(dispatch.started))
        print(
            f"  {size:,} lots: each dispatch pass offered {len(dispatch.tools)} idle tools, "
            f"started {'/'.join(map(str, started))} lots"
        )
    cli = {
        "lot list": ("lot", "list"),
        "lot list --state WAITING": ("lot", "list", "--state", "WAITING"),
        "lot show": ("lot", "show", shown),
        "line status": ("line", "status"),
        "lot history": ("lot", "history"),
        "lot history --step": ("lot", "history", "--step", step),
        "tool jobs": ("tool", "jobs", tool),
    }
    for name, args in cli.items():
        figures[name] = (figures[name][0], _cli(url, *args))
    return figures


def report(database: str, results: dict[int, dict[str, tuple[float, float]]]) -> None:
    sizes = sorted(results)
    print(f"\n{database}: median ms (server / CLI) by lots in the database")
    print(f"  {'':<26}" + "".join(f"{n:>18,}" for n in sizes) + "   ratio")
    worst_of: dict[str, float] = {}
    for name in results[sizes[0]]:
        cells = []
        for n in sizes:
            server, cli = results[n][name]
            cells.append(f"{server:8.1f} / {cli:7.0f}" if cli else f"{server:8.1f} /       -")
        worst = max(
            results[sizes[-1]][name][i] / results[sizes[0]][name][i]
            for i in (0, 1)
            if results[sizes[0]][name][i]
        )
        worst_of[name] = worst
        print(f"  {name:<26}" + "".join(f"{c:>18}" for c in cells) + f"  {worst:5.2f}x")
    for name, worst in worst_of.items():
        print_verdict(
            f"{database} {name}: flat within {GOAL:.0f}x from {sizes[0]:,} to {sizes[-1]:,} lots",
            worst <= GOAL,
            f"{worst:.2f}x, server or CLI, whichever grew more",
        )


async def bench(sizes: list[int], repeat: int, postgres: bool) -> None:
    with load_printed("lists"):
        await _bench(sizes, repeat, postgres)


async def _bench(sizes: list[int], repeat: int, postgres: bool) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        results = {}
        for size in sizes:
            url = f"sqlite:///{Path(scratch) / f'lists-{size}.db'}"
            results[size] = await measure(url, size, repeat)
            print(f"  sqlite {size:,} lots measured ({load()})", flush=True)
        report("SQLite", results)
    if postgres:
        results = {}
        for size in sizes:
            async with scratch_postgres(postgres_admin(), f"pkgline_lists_{size}") as url:
                results[size] = await measure(url, size, repeat)
            print(f"  postgresql {size:,} lots measured ({load()})", flush=True)
        report("PostgreSQL", results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="lots, comma-separated")
    parser.add_argument("--repeat", type=int, default=5, help="server calls per figure")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL too")
    args = parser.parse_args()
    configure_logging("warning")  # not a line of log per lot dispatched
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if len(sizes) < 2 or sizes[0] < ACTIVE:
        parser.error(f"--sizes: two sizes or more, each of {ACTIVE} lots or more")
    asyncio.run(bench(sizes, args.repeat, args.postgres))


if __name__ == "__main__":
    main()
