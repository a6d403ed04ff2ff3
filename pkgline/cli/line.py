"""``pkgline line status``: the running line at a glance, from the database the line
controllers write, through the server (``GET /line/status``) or directly. Thin: the JSON of
:mod:`pkgline.line_views` either way, printed.

What it shows: each line controller (alive; "not running (stopped)" when it recorded its stop;
"no heartbeat" when its heartbeat is stale: killed, or alive and unable to write), the tools,
the lots running (step, tool, since), the queue per step (waiting lots grouped by the step the
controller would run next, most urgent first) and held lots with their reasons.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from pkgline.cli.common import DbOption, JsonOption, noun, out, print_json
from pkgline.cli.modes import Remote, ServerOption, either
from pkgline.cli.times import clock
from pkgline.cli.tool import MANUAL, ago, tools_table
from pkgline.controller import STALE_AFTER_S
from pkgline.tool_views import STOPPED

app = typer.Typer(help="The line at a glance: controllers, tools, lots.", no_args_is_help=True)

Json = Mapping[str, Any]


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- the command -------------------------------------------------------------------------------


SHOW_ROWS = 20
"""Lots running and held lots the table prints by default, and waiting lots per step of the
queue (``--all``: every one; ``--json`` has every one): at plant size a table of thousands of
rows is read by nobody, and what it leaves out is said with where to see it."""

AllOption = Annotated[
    bool,
    typer.Option(
        "--all",
        help=f"Print every lot running, held and waiting (default: the first {SHOW_ROWS} of "
        "each, saying how many more; --json has every one).",
    ),
]


@app.command()
def status(
    db: DbOption = None,
    server: ServerOption = None,
    json: JsonOption = False,
    every: AllOption = False,
) -> None:
    """Controllers (alive or not), tools, lots running, the queue per step, held lots."""

    async def work() -> dict[str, Any]:
        from mes.adapters.database import display_url
        from mes.adapters.outbox import OutboxReader
        from pkgline.bootstrap import open_engine, open_services, resolve_url
        from pkgline.line_views import line_answer, read_status

        async with open_services(db) as services:
            current = await read_status(services, datetime.now().astimezone())
        async with open_engine(db, must_exist=True) as engine:
            backlog = await OutboxReader(engine).backlog()
        return line_answer(current, backlog, display_url(resolve_url(db)))

    shown = either(db, server, json, work, Remote("GET", "/line/status"))
    if json:
        print_json(shown)
        return
    now = _at(shown["at"])
    out.print(f"database: {shown['database']}   at {clock(now)}")
    out.print(backlog_text(shown["events"]))
    _print_controllers(shown["controllers"], now)
    if shown["tools"]:
        out.print(tools_table(shown["tools"], compact=True))
    rows = None if every else SHOW_ROWS
    _print_running(shown["running"], now, rows)
    _print_queue(shown["queue"], {t["id"]: t for t in shown["tools"]}, now, rows)
    _print_held(shown["held"], now, rows)


def _more(total: int, rows: int | None, what: str, where: str) -> None:
    """Say what a table of the first ``rows`` of ``total`` left out, and where to see it."""
    if rows is not None and total > rows:
        out.print(Text(f"and {total - rows:,} more {what}: {where}", style="dim"))


def backlog_text(events: Json) -> str:
    """The event feed's backlog in a line (its JSON: :func:`pkgline.line_views.backlog_dict`)."""
    waiting = f"{events['backlog']:,} {noun('events', events['backlog'])} waiting"
    if events["oldest_waiting_at"]:
        waiting += f", the oldest for {events['lag_s']:.1f} s"
    last = (
        f"last published: id {events['last_published_id']} at {clock(events['last_published_at'])}"
        if events["last_published_id"]
        else "none published yet"
    )
    return f"event feed: {waiting}; {last}"


def _print_controllers(controllers: Sequence[Json], now: datetime) -> None:
    if not controllers:
        out.print(
            Text("no line controller has run on this database (pkgline serve)", style="yellow")
        )
        return
    table = Table(title="Line controllers", title_justify="left")
    for name in ("controller", "host", "pid", "last heartbeat", "running", "status"):
        table.add_column(name, overflow="fold")
    for c in controllers:
        age = timedelta(seconds=c["heartbeat_age_s"])
        table.add_row(
            c["name"],
            c["host"],
            str(c["pid"]),
            f"{clock(_at(c['heartbeat_at']))} ({ago(age)} ago)",
            _running_cell(c),
            c["status"],
        )
    out.print(table)
    if any(not c["running"] and c["status"] != STOPPED for c in controllers):
        out.print(
            Text(
                f"no heartbeat: none recorded for more than {STALE_AFTER_S:.0f} s; the controller "
                "stopped without saying so (killed, host down) or cannot write to the database "
                "(read-only after a failover, disk full, unreachable): see its log "
                "(journalctl -u pkgline)",
                style="yellow",
            )
        )


def _running_cell(controller: Json) -> Text:
    """Yes; "not running (stopped)" when it recorded its stop; "no heartbeat" when it is
    silent, which is not known to be stopped (it may be alive and unable to write)."""
    if controller["running"]:
        return Text("yes", style="green")
    if controller["status"] == STOPPED:
        return Text("not running (stopped)", style="bold red")
    return Text("no heartbeat", style="bold red")


def _print_running(running: Sequence[Json], now: datetime, rows: int | None) -> None:
    if not running:
        out.print("lots running: none")
        return
    table = Table(title=f"Lots running ({len(running):,}; the longest first)", title_justify="left")
    for name in ("lot", "flow", "prio", "step", "tool", "since"):
        table.add_column(name, overflow="fold")
    for lot in running[:rows]:
        since = _at(lot["since"])
        table.add_row(
            lot["lot"],
            lot["flow"],
            str(lot["priority"]),
            lot["step"],
            lot["tool"] or "-",
            f"{clock(since)} ({ago(now - since)})",
        )
    out.print(table)
    _more(
        len(running),
        rows,
        "lots running",
        "pkgline line status --all, or lot list --state RUNNING",
    )


def _print_queue(
    queue: Sequence[Json], tools: Mapping[str, Json], now: datetime, rows: int | None
) -> None:
    if not queue:
        out.print("queue: no lot waiting")
        return
    total = sum(g["count"] for g in queue)
    table = Table(
        title=f"Queue per step ({total:,} waiting; most urgent first)", title_justify="left"
    )
    for name in ("next step", "class", "tools", "lots", "waiting (lot/priority)"):
        table.add_column(name, overflow="fold")
    said: list[str] = []  # each once: a tool of two groups refuses both for what is on it
    for g in queue:
        for tool, why in sorted(g["blocked"].items()):
            on_tool = tools.get(tool, {}).get("blocked") or []
            every = [w for w in why if w in on_tool]
            of_step = [w for w in why if w not in on_tool]
            for line in (
                f"{tool} refuses every track-in: {'; '.join(every)}" if every else "",
                f"{tool} refuses every track-in of {g['step']}: {'; '.join(of_step)}"
                if of_step
                else "",
            ):
                if line and line not in said:
                    said.append(line)
        names = ", ".join(
            t
            + (" (manual)" if tools.get(t, {}).get("dispatch") == MANUAL else "")
            + (" (blocked)" if t in g["blocked"] else "")
            for t in g["tools"]
        )
        waiting = [f"{lot}/{prio}" for lot, prio in zip(g["lots"], g["priorities"], strict=True)]
        left_out = len(waiting[rows:]) if rows is not None else 0
        table.add_row(
            g["step"],
            g["class"],
            names or ("operator" if g["class"] == "manual" else "-"),
            f"{g['count']:,}",
            ", ".join(waiting[:rows]) + (f" and {left_out:,} more" if left_out else ""),
        )
    out.print(table)
    if rows is not None and any(len(g["lots"]) > rows for g in queue):
        out.print(
            Text(
                f"each step's first {rows} waiting lots, most urgent first: every one with "
                "pkgline line status --all (or --json)",
                style="dim",
            )
        )
    for line in said:
        out.print(Text(line, style="bold yellow"))
    for g in queue:
        for refused in g.get("refused", ()):
            since = _at(refused["since"])
            out.print(
                Text(
                    f"{refused['lot']} not started on {refused['tool']} ({refused['step']}) "
                    f"since {clock(since)} ({ago(now - since)}): {refused['reason']}",
                    style="yellow",
                )
            )


def _print_held(held: Sequence[Json], now: datetime, rows: int | None) -> None:
    if not held:
        return
    table = Table(title=f"Held lots ({len(held):,}; most urgent first)", title_justify="left")
    for name in ("lot", "flow", "after step", "since", "by", "reason"):
        table.add_column(name, overflow="fold")
    for lot in held[:rows]:
        since = _at(lot["since"])
        table.add_row(
            lot["lot"],
            lot["flow"],
            lot["step"] or "-",
            f"{clock(since)} ({ago(now - since)})",
            f"{lot.get('placed_by') or lot['user']} ({lot['source']})",
            Text(lot["reason"], style="red"),
        )
    out.print(table)
    _more(
        len(held),
        rows,
        "held lots",
        "pkgline line status --all, lot list --state HOLD, or the station's holds page",
    )
