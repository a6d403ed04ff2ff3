"""``pkgline line status``: the running line at a glance, from the database the line
controllers write. Thin: read the equipment and lot services, print.

What it shows: each line controller (alive, or "not running" when its heartbeat is stale or it
recorded its stop), the tools, the lots running (step, tool, since), the queue per step (waiting
lots grouped by the step the controller would run next, most urgent first) and held lots with
their reasons.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from mes.adapters.database import display_url
from mes.adapters.outbox import Backlog, OutboxReader
from mes.domain.equipment import ControllerRecord, DispatchMode, ToolRecord
from mes.domain.model import Lot, LotState
from pkgline.bootstrap import Services, open_engine, open_services, resolve_url
from pkgline.cli.common import DbOption, JsonOption, out, print_json, run
from pkgline.cli.events import backlog_dict, backlog_line
from pkgline.cli.tool import ago, clock, tools_table
from pkgline.tool_views import controller_running, tool_dict

app = typer.Typer(help="The line at a glance: controllers, tools, lots.", no_args_is_help=True)

MAY_COMPLETE = "(may complete)"


@dataclass(frozen=True, slots=True)
class QueueGroup:
    """Waiting lots whose next step (the one the controller runs next) is ``step``."""

    step: str
    equipment_class: str
    tools: tuple[ToolRecord, ...]
    lots: tuple[Lot, ...]


@dataclass(frozen=True, slots=True)
class LineStatus:
    at: datetime
    controllers: tuple[ControllerRecord, ...]
    tools: tuple[ToolRecord, ...]
    running: tuple[Lot, ...]
    queue: tuple[QueueGroup, ...]
    held: tuple[Lot, ...]


async def read_status(services: Services, now: datetime) -> LineStatus:
    """Everything ``line status`` shows, read from the services."""
    lots = services.lots
    equipment = services.equipment
    controllers = await equipment.controllers()
    tools = await equipment.tools()
    found = await lots.find(
        states=[LotState.WAITING, LotState.RUNNING, LotState.HOLD], limit=1_000_000
    )
    order = {code: i for i, code in enumerate(lots.flows.step_codes)}
    waiting: dict[str, list[Lot]] = {}
    for lot in found:
        if lot.state is LotState.WAITING:
            steps = lots.next_in_order(lot)
            step = steps[0] if steps else MAY_COMPLETE
            waiting.setdefault(step, []).append(lot)
    queue = []
    for step in sorted(waiting, key=lambda s: (order.get(s, len(order)), s)):
        info = lots.flows.step_codes.get(step)
        queue.append(
            QueueGroup(
                step=step,
                equipment_class=info.equipment_class if info else "-",
                tools=tuple(t for t in tools if step in t.steps),
                lots=tuple(sorted(waiting[step], key=lambda x: (x.priority, x.created_at, x.id))),
            )
        )
    running = sorted(
        (lot for lot in found if lot.state is LotState.RUNNING and lot.running),
        key=lambda lot: (lot.running.since if lot.running else now, lot.id),
    )
    held = [lot for lot in found if lot.state is LotState.HOLD]
    return LineStatus(
        now, tuple(controllers), tuple(tools), tuple(running), tuple(queue), tuple(held)
    )


# -- JSON (a contract: scripts read it) --------------------------------------------------------


def controller_dict(record: ControllerRecord, now: datetime) -> dict[str, Any]:
    return {
        "name": record.name,
        "host": record.host,
        "pid": record.pid,
        "started_at": record.started_at.isoformat(),
        "heartbeat_at": record.heartbeat_at.isoformat(),
        "heartbeat_age_s": round((now - record.heartbeat_at).total_seconds(), 3),
        "status": record.status,
        "running": controller_running(record, now),
        "tools": list(record.tools),
    }


def status_dict(status: LineStatus, database: str) -> dict[str, Any]:
    now = status.at
    return {
        "database": database,
        "at": now.isoformat(),
        "controllers": [controller_dict(c, now) for c in status.controllers],
        "tools": [tool_dict(t, now, _alive(status, t)) for t in status.tools],
        "running": [
            {
                "lot": lot.id,
                "flow": lot.flow,
                "priority": lot.priority,
                "step": lot.running.step,
                "tool": lot.running.tool,
                "since": lot.running.since.isoformat(),
            }
            for lot in status.running
            if lot.running
        ],
        "queue": [
            {
                "step": g.step,
                "class": g.equipment_class,
                "tools": [t.id for t in g.tools],
                "count": len(g.lots),
                "lots": [lot.id for lot in g.lots],
            }
            for g in status.queue
        ],
        "held": [
            {
                "lot": lot.id,
                "flow": lot.flow,
                "step": lot.step,
                "reason": lot.hold.reason,
                "source": lot.hold.source.value,
                "user": lot.hold.user,
                "since": lot.hold.since.isoformat(),
            }
            for lot in status.held
            if lot.hold
        ],
    }


def _alive_lines(status: LineStatus) -> frozenset[str]:
    return frozenset(c.name for c in status.controllers if controller_running(c, status.at))


def _alive(status: LineStatus, tool: ToolRecord) -> bool:
    return tool.line in _alive_lines(status)


# -- the command -------------------------------------------------------------------------------


@app.command()
def status(db: DbOption = None, json: JsonOption = False) -> None:
    """Controllers (alive or not), tools, lots running, the queue per step, held lots."""

    async def work() -> tuple[LineStatus, Backlog]:
        async with open_services(db) as services:
            current = await read_status(services, datetime.now().astimezone())
        async with open_engine(db) as engine:
            return current, await OutboxReader(engine).backlog()

    current, backlog = run(work, as_json=json, db=db)
    database = display_url(resolve_url(db))
    if json:
        print_json({**status_dict(current, database), "events": backlog_dict(backlog, current.at)})
        return
    out.print(f"database: {database}   at {clock(current.at)}")
    out.print(backlog_line(backlog, current.at))
    _print_controllers(current.controllers, current.at)
    if current.tools:
        out.print(tools_table(current.tools, current.at, compact=True, alive=_alive_lines(current)))
    _print_running(current.running, current.at)
    _print_queue(current.queue)
    _print_held(current.held, current.at)


def _print_controllers(controllers: Sequence[ControllerRecord], now: datetime) -> None:
    if not controllers:
        out.print(
            Text("no line controller has run on this database (pkgline serve)", style="yellow")
        )
        return
    table = Table(title="Line controllers", title_justify="left")
    for name in ("controller", "host", "pid", "last heartbeat", "running", "status"):
        table.add_column(name, overflow="fold")
    for c in controllers:
        age = now - c.heartbeat_at
        alive = controller_running(c, now)
        table.add_row(
            c.name,
            c.host,
            str(c.pid),
            f"{clock(c.heartbeat_at)} ({ago(age)} ago)",
            Text("yes", style="green") if alive else Text("not running", style="bold red"),
            c.status,
        )
    out.print(table)


def _print_running(running: Sequence[Lot], now: datetime) -> None:
    if not running:
        out.print("lots running: none")
        return
    table = Table(title=f"Lots running ({len(running)})", title_justify="left")
    for name in ("lot", "flow", "prio", "step", "tool", "since"):
        table.add_column(name)
    for lot in running:
        assert lot.running is not None
        table.add_row(
            lot.id,
            lot.flow,
            str(lot.priority),
            lot.running.step,
            lot.running.tool or "-",
            f"{clock(lot.running.since)} ({ago(now - lot.running.since)})",
        )
    out.print(table)


def _print_queue(queue: Sequence[QueueGroup]) -> None:
    if not queue:
        out.print("queue: no lot waiting")
        return
    total = sum(len(g.lots) for g in queue)
    table = Table(
        title=f"Queue per step ({total} waiting; most urgent first)", title_justify="left"
    )
    for name in ("next step", "class", "tools", "lots", "waiting (lot/priority)"):
        table.add_column(name, overflow="fold")
    for g in queue:
        tools = ", ".join(
            t.id + (" (manual)" if t.dispatch is DispatchMode.MANUAL else "") for t in g.tools
        )
        table.add_row(
            g.step,
            g.equipment_class,
            tools or ("operator" if g.equipment_class == "manual" else "-"),
            str(len(g.lots)),
            ", ".join(f"{lot.id}/{lot.priority}" for lot in g.lots),
        )
    out.print(table)


def _print_held(held: Sequence[Lot], now: datetime) -> None:
    if not held:
        return
    table = Table(title=f"Held lots ({len(held)})", title_justify="left")
    for name in ("lot", "flow", "after step", "since", "by", "reason"):
        table.add_column(name, overflow="fold")
    for lot in held:
        assert lot.hold is not None
        table.add_row(
            lot.id,
            lot.flow,
            lot.step or "-",
            f"{clock(lot.hold.since)} ({ago(now - lot.hold.since)})",
            f"{lot.hold.user} ({lot.hold.source.value})",
            Text(lot.hold.reason, style="red"),
        )
    out.print(table)
