"""``pkgline tool``: the line's tools as equipment tracking records them. Thin: parse, call the
equipment service, print.

``list`` and ``show`` read what the line controllers wrote (state, mode, SEMI E10 state and
since when, lot, progress, alarm; ``show`` adds time in each E10 state over a window and the
state changes and the alarm resets asked); ``manual`` and ``auto`` take a tool out of
automatic dispatch and give it back, recorded with the user and the reason; ``reset``
(:mod:`pkgline.cli.tool_reset`) has its line controller reset its alarm. An unknown tool is
exit 1 with the known ids, a bad window exit 2 (see :mod:`pkgline.cli.common`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from mes.domain.equipment import (
    E10_STATES,
    DispatchMode,
    E10Change,
    ResetRequest,
    ResetStatus,
    StateTimes,
    ToolRecord,
)
from mes.service import utc_now
from pkgline.bootstrap import open_services
from pkgline.cli.common import (
    DbOption,
    JsonOption,
    UserOption,
    current_user,
    out,
    print_json,
    run,
    usage_error,
)
from pkgline.tool_views import (
    change_dict,
    known_tool,
    lines_running,
    parse_window,
    reset_dict,
    state_times_dict,
    tool_dict,
)

app = typer.Typer(
    help="Tools: states, time in state, and automatic or manual dispatch.", no_args_is_help=True
)

ToolArg = Annotated[str, typer.Argument(help="Tool id (pkgline tool list).", show_default=False)]

E10_STYLE = {
    "productive": "bold green",
    "standby": "cyan",
    "engineering": "blue",
    "scheduled_down": "yellow",
    "unscheduled_down": "bold red",
    "non_scheduled": "dim",
}
SHOW_RESETS = 10
"""``tool show`` lists this many of the tool's latest alarm resets."""
RESET_STYLE = {
    ResetStatus.DONE: "green",
    ResetStatus.REFUSED: "bold red",
    ResetStatus.UNREACHABLE: "red",
    ResetStatus.EXPIRED: "yellow",
}


def ago(delta: timedelta) -> str:
    """A duration for people: ``4s``, ``3m12s``, ``2h05m``, ``3d04h``."""
    s = max(0, int(delta.total_seconds()))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def clock(at: datetime) -> str:
    """A time of day in the local time zone (the date too when not today)."""
    local = at.astimezone()
    if local.date() == datetime.now().astimezone().date():
        return f"{local:%H:%M:%S}"
    return f"{local:%Y-%m-%d %H:%M:%S}"


def e10_text(state: str) -> Text:
    return Text(state, style=E10_STYLE.get(state, ""))


def progress_text(record: ToolRecord) -> str:
    snap = record.snapshot
    return f"{snap.sites_done}/{snap.sites_total}" if snap.sites_total else "-"


def alarm_text(record: ToolRecord) -> str:
    alarm = record.snapshot.alarm
    if not alarm:
        return ""
    return f"{alarm.get('code')} {alarm.get('severity', '')}: {alarm.get('text', '')}".strip()


# -- JSON (a contract: scripts read it) --------------------------------------------------------


# -- tables ------------------------------------------------------------------------------------


def tools_table(
    records: Sequence[ToolRecord],
    now: datetime,
    *,
    alive: frozenset[str],
    compact: bool = False,
) -> Table:
    """The tools, one row each; ``compact`` leaves out line, address and mode. Tools of a
    line controller not in ``alive`` are dimmed: their state is as it last recorded it."""
    stale = any(r.line not in alive for r in records)
    table = Table(
        title="Tools",
        title_justify="left",
        caption="dimmed: its line controller is not running; the state is as it last recorded"
        if stale
        else None,
        caption_justify="left",
    )
    columns = ["tool", "class"] if compact else ["tool", "line", "class", "address"]
    columns += ["dispatch", "E10 state", "for" if compact else "since"]
    columns += ["state", "lot", "sites", "alarm"] if compact else ["state", "mode", "lot / job"]
    if not compact:
        columns += ["sites", "alarm"]
    for name in columns:  # the long ones fold; the rest stay on one line
        wraps = name in ("address", "lot / job", "alarm")
        table.add_column(name, no_wrap=not wraps, overflow="fold" if wraps else "ellipsis")
    for r in records:
        snap = r.snapshot
        dispatch = Text(
            r.dispatch.value, style="bold yellow" if r.dispatch is DispatchMode.MANUAL else ""
        )
        state = snap.process_state or Text(
            "not connected" + (f": {snap.reason}" if snap.reason and not compact else ""),
            style="red",
        )
        since = ago(now - r.e10_since)
        if not compact:
            since = f"{clock(r.e10_since)} ({since})"
        alarm = Text(alarm_text(r), style="bold red")
        style = None if r.line in alive else "dim"
        if compact:
            table.add_row(
                r.id,
                r.equipment_class,
                dispatch,
                e10_text(snap.e10),
                since,
                state,
                snap.lot_id or "-",
                progress_text(r),
                alarm,
                style=style,
            )
        else:
            lot_job = (snap.lot_id or "-") + (f" / {snap.job_id}" if snap.job_id else "")
            table.add_row(
                r.id,
                r.line,
                r.equipment_class,
                r.address,
                dispatch,
                e10_text(snap.e10),
                since,
                state,
                snap.mode or "-",
                lot_job,
                progress_text(r),
                alarm,
                style=style,
            )
    return table


# -- commands ----------------------------------------------------------------------------------


@app.command("list")
def list_tools(
    line: Annotated[
        str | None, typer.Option("--line", help="Only the tools of this line controller.")
    ] = None,
    db: DbOption = None,
    json: JsonOption = False,
) -> None:
    """Every tool: dispatch, connection, process state, mode, E10 state and since when, lot,
    progress, alarm."""

    async def work() -> tuple[list[ToolRecord], frozenset[str], datetime]:
        async with open_services(db) as services:
            now = utc_now()
            tools = await services.equipment.tools(line)
            return tools, await lines_running(services.equipment, now), now

    records, alive, now = run(work, as_json=json, db=db)
    if json:
        print_json([tool_dict(r, now, r.line in alive) for r in records])
        return
    if not records:
        out.print("no tools: a line controller registers its tools when it starts (pkgline serve)")
        return
    out.print(tools_table(records, now, alive=alive))


@app.command()
def show(
    tool: ToolArg,
    window: Annotated[
        str, typer.Option("--window", help="Time in state over this window: 30m, 8h, 2d.")
    ] = "8h",
    changes: Annotated[
        int, typer.Option("--changes", min=0, help="Show up to this many recent state changes.")
    ] = 20,
    db: DbOption = None,
    json: JsonOption = False,
) -> None:
    """A tool as in list, plus time in each E10 state over a window, availability and
    utilization, and its recent state changes."""
    try:
        span = parse_window(window)
    except ValueError as exc:
        usage_error(str(exc), as_json=json)

    async def work() -> tuple[ToolRecord, StateTimes, list[E10Change], list[ResetRequest], bool]:
        async with open_services(db) as services:
            equipment = services.equipment
            record = await known_tool(equipment, tool)
            end = utc_now()
            start = end - span
            times = await equipment.state_times(tool, start, end)
            found = await equipment.changes(tool, start, end)
            resets = await equipment.resets(tool, SHOW_RESETS)
            alive = record.line in await lines_running(equipment, end)
            return record, times, found, resets, alive

    record, times, found, resets, alive = run(work, as_json=json, db=db)
    now = times.end
    recent = found[-changes:] if changes else []
    if json:
        print_json(
            {
                **tool_dict(record, now, alive),
                "window": state_times_dict(times),
                "changes_in_window": sum(1 for c in found if c.at >= times.start),
                "changes": [change_dict(c) for c in recent],
                "resets": [reset_dict(r) for r in resets],
            }
        )
        return
    _print_tool(record, now, alive)
    _print_times(times, window)
    _print_changes(recent, times, len(found))
    _print_resets(resets)


def _set_dispatch(
    tool: str, mode: DispatchMode, reason: str | None, user: str | None, db: str | None, json: bool
) -> None:
    who = current_user(user)

    async def work() -> tuple[ToolRecord, bool]:
        async with open_services(db) as services:
            equipment = services.equipment
            await known_tool(equipment, tool)
            record = await equipment.set_dispatch(tool, mode, who, reason)
            return record, record.line in await lines_running(equipment, utc_now())

    record, alive = run(work, as_json=json, db=db)
    if json:
        print_json(tool_dict(record, utc_now(), alive))
        return
    out.print(
        Text.assemble(
            ("✔ ", "green"),
            f"tool {record.id} is now ",
            (mode.value, "bold yellow" if mode is DispatchMode.MANUAL else "bold green"),
            f" (by {who}" + (f": {reason})" if reason else ")"),
        )
    )
    if not alive:
        out.print(
            f"  line controller {record.line} is not running: it dispatches accordingly "
            "when it starts"
        )
    elif mode is DispatchMode.MANUAL:
        out.print(
            f"  line controller {record.line} starts no new lot on it within its dispatch "
            "interval; a step running there finishes"
        )
    else:
        out.print(
            f"  line controller {record.line} dispatches waiting lots to it again within its "
            "dispatch interval"
        )


@app.command()
def manual(
    tool: ToolArg,
    reason: Annotated[
        str, typer.Option("--reason", help="Why (recorded with the tool).", show_default=False)
    ],
    db: DbOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Take a tool out of automatic dispatch: the controller starts no new lot on it."""
    if not reason.strip():
        usage_error("--reason must say why the tool goes manual", as_json=json)
    _set_dispatch(tool, DispatchMode.MANUAL, reason.strip(), user, db, json)


@app.command()
def auto(
    tool: ToolArg,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (recorded with the tool).")
    ] = None,
    db: DbOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Give a tool back to automatic dispatch."""
    _set_dispatch(tool, DispatchMode.AUTO, reason, user, db, json)


# -- printing show -----------------------------------------------------------------------------


def _print_tool(record: ToolRecord, now: datetime, alive: bool) -> None:
    snap = record.snapshot
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("tool", f"{record.id}  ({record.equipment_class}, line {record.line})")
    if not alive:
        head.add_row(
            "controller",
            Text(
                f"{record.line} is not running: the state below is as it last recorded it",
                style="yellow",
            ),
        )
    head.add_row("address", record.address)
    head.add_row("steps", ", ".join(record.steps) or "-")
    dispatch = Text(
        record.dispatch.value,
        style="bold yellow" if record.dispatch is DispatchMode.MANUAL else "green",
    )
    if record.dispatch_at:
        dispatch.append(f" since {clock(record.dispatch_at)} by {record.dispatch_by or '-'}")
    if record.dispatch_reason:
        dispatch.append(f": {record.dispatch_reason}")
    head.add_row("dispatch", dispatch)
    if snap.connected:
        head.add_row("state", f"{snap.process_state or '-'}, mode {snap.mode or '-'}")
    else:
        head.add_row("state", Text(f"not connected: {snap.reason or 'no answer'}", style="red"))
    e10 = e10_text(snap.e10)
    e10.append(f" since {clock(record.e10_since)} ({ago(now - record.e10_since)})", style="")
    head.add_row("E10 state", e10)
    if snap.lot_id or snap.job_id:
        head.add_row(
            "lot / job",
            f"{snap.lot_id or '-'} / {snap.job_id or '-'}, sites {progress_text(record)}",
        )
    if snap.alarm:
        head.add_row("alarm", Text(alarm_text(record), style="bold red"))
    head.add_row("recorded", f"{clock(record.updated_at)} ({ago(now - record.updated_at)} ago)")
    out.print(head)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100.0 * value:.1f} %"


def _print_times(times: StateTimes, window: str) -> None:
    known = times.known_s
    table = Table(
        title=f"Time in state, last {window} ({clock(times.start)} to {clock(times.end)})",
        title_justify="left",
        caption=f"recorded {ago(timedelta(seconds=known))} of the window"
        if known < times.total_s - 1
        else None,
        caption_justify="left",
    )
    for name in ("E10 state", "time", "seconds", "%"):
        table.add_column(name, justify="left" if name == "E10 state" else "right")
    for state in E10_STATES:
        seconds = times.seconds.get(state, 0.0)
        pct = f"{100.0 * seconds / known:.1f}" if known > 0 else "-"
        table.add_row(e10_text(state), ago(timedelta(seconds=seconds)), f"{seconds:.1f}", pct)
    out.print(table)
    out.print(
        f"availability {_pct(times.availability)}  "
        f"utilization {_pct(times.utilization)}  "
        "(SEMI E10: uptime and productive time over operations time)"
    )


def _print_changes(recent: Sequence[E10Change], times: StateTimes, found: int) -> None:
    if not recent:
        return
    table = Table(title=f"State changes (the last {len(recent)} of {found})", title_justify="left")
    for name in ("at", "E10 state", "process state", "connected", "reason"):
        table.add_column(name)
    for c in recent:
        at = clock(c.at) + (" (before the window)" if c.at < times.start else "")
        table.add_row(
            at,
            e10_text(c.e10),
            c.process_state or "-",
            "yes" if c.connected else Text("no", style="red"),
            c.reason or "",
        )
    out.print(table)


def _print_resets(resets: Sequence[ResetRequest]) -> None:
    if not resets:
        return
    table = Table(title=f"Alarm resets (the last {len(resets)})", title_justify="left")
    for name in ("asked at", "by", "reason", "result", "outcome"):
        table.add_column(name, overflow="fold")
    for r in resets:
        table.add_row(
            clock(r.requested_at),
            r.requested_by,
            r.reason,
            Text(r.status.value, style=RESET_STYLE.get(r.status, "")),
            r.outcome or "",
        )
    out.print(table)
