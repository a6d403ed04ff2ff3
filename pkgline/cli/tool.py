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

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from mes.domain.equipment import E10_STATES, RECORDED_STATES, DispatchMode
from pkgline.cli.common import (
    DbOption,
    JsonOption,
    UserOption,
    current_user,
    out,
    print_json,
    usage_error,
)
from pkgline.cli.modes import Remote, ServerOption, either, segment
from pkgline.cli.times import clock, stamp
from pkgline.tool_views import (
    MAX_TOOL_PAGE,
    TOOL_PAGE,
    dispatch_answer,
    parse_window,
    tool_show_answer,
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
MANUAL = DispatchMode.MANUAL.value
RESET_STYLE = {
    "done": "green",
    "refused": "bold red",
    "unreachable": "red",
    "expired": "yellow",
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


def down_text(tool: Mapping[str, Any]) -> Text:
    """A tool's declaration (``tool down``) in words: who, since when, why, what it reports."""
    said = Text(f"{tool['down']} by {tool['down_by'] or '-'}", style="bold")
    if tool["down_at"]:
        said.append(f" since {clock(_at(tool['down_at']))}")
    if tool["down_reason"]:
        said.append(f": {tool['down_reason']}")
    reported = tool.get("reported_e10")
    said.append(
        f" (the tool reports {reported or 'nothing yet'}; pkgline tool up {tool['id']})",
        style="dim",
    )
    return said


def up_text(declared: Mapping[str, Any]) -> str:
    """The last declaration of a tool that is up (its JSON ``declared``): who brought it
    up, when, why."""
    said = f"brought up by {declared['user'] or '-'} at {clock(_at(declared['at']))}"
    return said + (f": {declared['reason']}" if declared["reason"] else "")


def e10_cell(tool: Mapping[str, Any]) -> Text:
    """A tool's E10 state in a table: declared by a person (``tool down``) says by whom."""
    e10 = e10_text(tool["e10"])
    if tool.get("down"):
        e10.append(f" (declared by {tool['down_by'] or '-'})", style="")
    return e10


def e10_text(state: str) -> Text:
    return Text(state, style=E10_STYLE.get(state, ""))


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def progress_text(tool: Mapping[str, Any]) -> str:
    return f"{tool['sites_done']}/{tool['sites_total']}" if tool["sites_total"] else "-"


def lot_text(tool: Mapping[str, Any]) -> str:
    """The lot on the tool, "(by hand)" after one an operator tracked in (no job runs it),
    as the station's line tile says it; "-" for none."""
    if not tool["lot"]:
        return "-"
    return f"{tool['lot']} (by hand)" if tool.get("by_hand") else tool["lot"]


def alarm_text(tool: Mapping[str, Any]) -> str:
    alarm = tool["alarm"]
    if not alarm:
        return ""
    return f"{alarm.get('code')} {alarm.get('severity', '')}: {alarm.get('text', '')}".strip()


# -- tables ------------------------------------------------------------------------------------


def tools_table(tools: Sequence[Mapping[str, Any]], *, compact: bool = False) -> Table:
    """The tools (their JSON: :func:`pkgline.tool_views.tool_dict`), one row each;
    ``compact`` leaves out line, address and mode. Tools whose line controller is not
    running are dimmed: their state is as it last recorded it."""
    stale = any(not t["controller_running"] for t in tools)
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
    # the long ones wrap; the rest stay on one line, folded only on a terminal too narrow
    for name in columns:
        wraps = name in ("address", "state", "lot / job", "alarm")
        table.add_column(name, no_wrap=not wraps, overflow="fold")
    for t in tools:
        dispatch = Text(t["dispatch"], style="bold yellow" if t["dispatch"] == MANUAL else "")
        state: str | Text = t["process_state"] or "-"
        if not t["connected"]:  # what it last reported is on record, not what it does now
            last = f" (last {t['process_state']})" if t["process_state"] else ""
            # the reason, unless the caption says it (its controller is not running)
            told = compact or not t["controller_running"]
            why = f": {t['reason']}" if t["reason"] and not told else ""
            state = Text(f"not connected{last}{why}", style="red")
        since = ago(timedelta(seconds=t["e10_for_s"]))
        if not compact:
            since = f"{clock(_at(t['e10_since']))} ({since})"
        alarm = Text(alarm_text(t), style="bold red")
        style = None if t["controller_running"] else "dim"
        if compact:
            table.add_row(
                t["id"],
                t["class"],
                dispatch,
                e10_cell(t),
                since,
                state,
                lot_text(t),
                progress_text(t),
                alarm,
                style=style,
            )
        else:
            lot_job = lot_text(t) + (f" / {t['job']}" if t["job"] else "")
            table.add_row(
                t["id"],
                t["line"],
                t["class"],
                t["address"],
                dispatch,
                e10_cell(t),
                since,
                state,
                t["mode"] or "-",
                lot_job,
                progress_text(t),
                alarm,
                style=style,
            )
    return table


# -- commands ----------------------------------------------------------------------------------


def _known_class(name: str, as_json: bool) -> None:
    """Refuse a ``--class`` no tool can have (it listed no tools and said nothing of it)."""
    from drivers.model import EquipmentClass  # the classes a tool may have; only when asked

    if name not in set(EquipmentClass):
        usage_error(
            f"--class {name!r}: expected one of {', '.join(EquipmentClass)}", as_json=as_json
        )


@app.command("list")
def list_tools(
    line: Annotated[
        str | None, typer.Option("--line", help="Only the tools of this line controller.")
    ] = None,
    equipment_class: Annotated[
        str | None, typer.Option("--class", help="Only tools of this class (die_bonder, ...).")
    ] = None,
    state: Annotated[
        str | None,
        typer.Option(
            "--state", help=f"Only tools in this E10 state: {', '.join(RECORDED_STATES)}."
        ),
    ] = None,
    dispatch: Annotated[
        DispatchMode | None,
        typer.Option(
            "--dispatch",
            help="Only tools whose lots the controller starts (auto) or only operators "
            "(manual: also a tool its controller quarantined).",
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            min=1,
            max=MAX_TOOL_PAGE,
            help=f"At most this many tools (default: {TOOL_PAGE} in the table; every tool "
            "with --json).",
            show_default=False,
        ),
    ] = None,
    after: Annotated[
        str | None,
        typer.Option("--after", help="Start after this tool (the last of the page before)."),
    ] = None,
    db: DbOption = None,
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """Tools by id, a page at a time: dispatch, connection, process state, mode, E10 state and
    since when, lot, progress, alarm; says how many match and how to see the next page."""
    from mes.ports import ToolQuery
    from pkgline.cli import pages, tool_list

    if state is not None and state not in RECORDED_STATES:
        usage_error(
            f"--state {state!r}: expected one of {', '.join(RECORDED_STATES)}", as_json=json
        )
    if equipment_class is not None:
        _known_class(equipment_class, json)
    query = ToolQuery(
        line=line,
        equipment_class=equipment_class,
        e10=state,
        dispatch=dispatch.value if dispatch else None,
        after=after,
        limit=limit or (MAX_TOOL_PAGE if json else TOOL_PAGE),
    )
    if json and limit is None:
        tool_list.write_every_tool(db, server, query)
        return
    answer = tool_list.one_page(db, server, query, json)
    tools = answer["tools"]
    if json:
        print_json(tools)
        pages.json_notice(answer)
        return
    if answer["total"] == 0:
        if (line, equipment_class, state, dispatch) == (None, None, None, None):
            out.print(
                "no tools: a line controller registers its tools when it starts (pkgline serve)"
            )
        else:
            out.print("no tools match (0 of 0 tools)")
        return
    if tools:
        out.print(tools_table(tools))
    pages.print_notice(answer)


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
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """A tool as in list, plus time in each E10 state over a window, availability and
    utilization, and its recent state changes."""
    try:
        span = parse_window(window)
    except ValueError as exc:
        usage_error(str(exc), as_json=json)

    async def work() -> dict[str, Any]:
        from pkgline.bootstrap import open_services  # direct mode only

        async with open_services(db) as services:
            return await tool_show_answer(
                services.equipment, tool, span, changes, services.lots, services.qualifications
            )

    query = [("window", window), ("changes", str(changes))]
    shown = either(db, server, json, work, Remote("GET", f"/tools/{segment(tool)}", query=query))
    if json:
        print_json(shown)
        return
    times = shown["window"]
    _print_tool(shown, _at(times["end"]))
    _print_times(times, window)
    _print_changes(shown["changes"], _at(times["start"]), shown["changes_in_window"])
    _print_resets(shown["resets"])
    found = shown.get("jobs", [])
    if found:
        print_jobs(found, f"Jobs (the newest {len(found)} in {window})")
    else:
        out.print(f"no job started in the last {window}")


def _set_dispatch(
    tool: str,
    mode: DispatchMode,
    reason: str | None,
    user: str | None,
    db: str | None,
    server: str | None,
    json: bool,
) -> None:
    async def work() -> dict[str, Any]:
        from pkgline.bootstrap import open_services  # direct mode only

        async with open_services(db) as services:
            return await dispatch_answer(
                services.equipment, tool, mode, current_user(user), reason, services.lots
            )

    remote = Remote("POST", f"/tools/{segment(tool)}/{mode.value}", {"reason": reason})
    record = either(db, server, json, work, remote)
    if json:
        print_json(record)
        return
    if not record.get("changed", True):
        by = record["dispatch_by"] or "-"
        why = f": {record['dispatch_reason']}" if record["dispatch_reason"] else ""
        since = f"since {clock(record['dispatch_at'])}, " if record["dispatch_at"] else ""
        out.print(
            Text.assemble(
                ("✔ ", "green"),
                f"tool {record['id']} is ",
                (mode.value, "bold yellow" if mode is DispatchMode.MANUAL else "bold green"),
                f" already ({since}by {by}{why}); nothing changed",
            )
        )
        _print_lot_on(record)
        return
    out.print(
        Text.assemble(
            ("✔ ", "green"),
            f"tool {record['id']} is now ",
            (mode.value, "bold yellow" if mode is DispatchMode.MANUAL else "bold green"),
            f" (by {record['dispatch_by']}" + (f": {reason})" if reason else ")"),
        )
    )
    if not record["controller_running"]:
        out.print(
            f"  line controller {record['line']} is not running: it dispatches accordingly "
            "when it starts"
        )
    elif mode is DispatchMode.MANUAL:
        out.print(
            f"  line controller {record['line']} starts no new lot on it within its dispatch "
            "interval; a step running there finishes"
        )
    else:
        out.print(
            f"  line controller {record['line']} dispatches waiting lots to it again within its "
            "dispatch interval"
        )
    _print_lot_on(record)


def _print_lot_on(tool: Mapping[str, Any]) -> None:
    """The lot on a tool just switched, as ``tool show`` names it: one an operator tracked in
    by hand keeps the tool taken whatever its dispatch."""
    if tool["lot"]:
        by_hand = " (tracked in by hand)" if tool.get("by_hand") else ""
        out.print(f"  lot {tool['lot']}{by_hand} is on it")


@app.command()
def manual(
    tool: ToolArg,
    reason: Annotated[
        str, typer.Option("--reason", help="Why (recorded with the tool).", show_default=False)
    ],
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Take a tool out of automatic dispatch: the controller starts no new lot on it."""
    if not reason.strip():
        usage_error("--reason must say why the tool goes manual", as_json=json)
    _set_dispatch(tool, DispatchMode.MANUAL, reason.strip(), user, db, server, json)


@app.command()
def auto(
    tool: ToolArg,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (recorded with the tool).")
    ] = None,
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Give a tool back to automatic dispatch."""
    _set_dispatch(tool, DispatchMode.AUTO, reason, user, db, server, json)


# -- printing show -----------------------------------------------------------------------------


def _print_tool(tool: Mapping[str, Any], now: datetime) -> None:
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("tool", f"{tool['id']}  ({tool['class']}, line {tool['line']})")
    if not tool["controller_running"]:
        head.add_row(
            "controller",
            Text(
                f"{tool['line']} is not running: the state below is as it last recorded it",
                style="yellow",
            ),
        )
    head.add_row("address", tool["address"])
    head.add_row("steps", ", ".join(tool["steps"]) or "-")
    manual = tool["dispatch"] == MANUAL
    dispatch = Text(tool["dispatch"], style="bold yellow" if manual else "green")
    if tool["dispatch_at"]:
        dispatch.append(f" since {clock(_at(tool['dispatch_at']))} by {tool['dispatch_by'] or '-'}")
    if tool["dispatch_reason"]:
        dispatch.append(f": {tool['dispatch_reason']}")
    head.add_row("dispatch", dispatch)
    if tool["connected"]:
        head.add_row("state", f"{tool['process_state'] or '-'}, mode {tool['mode'] or '-'}")
    else:
        head.add_row("state", Text(f"not connected: {tool['reason'] or 'no answer'}", style="red"))
    since = _at(tool["e10_since"])
    e10 = e10_text(tool["e10"])
    e10.append(f" since {clock(since)} ({ago(now - since)})", style="")
    head.add_row("E10 state", e10)
    if tool.get("down"):
        head.add_row("declared", down_text(tool))
    elif tool.get("declared"):
        head.add_row("declared", up_text(tool["declared"]))
    lot = tool["lot"] or "-"
    if tool.get("by_hand"):  # as the station's tool page says it
        lot += " (tracked in by hand)"
    if tool.get("by_hand") and not tool["job"]:  # no job runs it: no job, no sites to show
        head.add_row("lot", lot)
    elif tool["lot"] or tool["job"]:
        head.add_row("lot / job", f"{lot} / {tool['job'] or '-'}, sites {progress_text(tool)}")
    if tool["alarm"]:
        head.add_row("alarm", Text(alarm_text(tool), style="bold red"))
    for q in tool.get("disqualified", []):
        head.add_row(
            "disqualified",
            Text(
                f"for {q['step']} by {q['by']} since {stamp(q['at'], zone=True)}"
                + (f": {q['reason']}" if q["reason"] else "")
                + f" (its track-ins of {q['step']} here are refused until it is qualified again)",
                style="bold red",
            ),
        )
    updated = _at(tool["updated_at"])
    head.add_row("recorded", f"{clock(updated)} ({ago(now - updated)} ago)")
    out.print(head)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} %"


def _print_times(times: Mapping[str, Any], window: str) -> None:
    known = times["recorded_s"]
    table = Table(
        title=f"Time in state, last {window} ({clock(_at(times['start']))} to "
        f"{clock(_at(times['end']))})",
        title_justify="left",
        caption=f"recorded {ago(timedelta(seconds=known))} of the window"
        if known < times["window_s"] - 1
        else None,
        caption_justify="left",
    )
    for name in ("E10 state", "time", "seconds", "%"):
        table.add_column(name, justify="left" if name == "E10 state" else "right", overflow="fold")
    for state in E10_STATES:
        seconds = times["seconds"].get(state, 0.0)
        pct = f"{100.0 * seconds / known:.1f}" if known > 0 else "-"
        table.add_row(e10_text(state), ago(timedelta(seconds=seconds)), f"{seconds:.1f}", pct)
    out.print(table)
    out.print(
        f"availability {_pct(times['availability_pct'])}  "
        f"utilization {_pct(times['utilization_pct'])}  "
        "(SEMI E10: uptime and productive time over operations time)"
    )


def _print_changes(recent: Sequence[Mapping[str, Any]], start: datetime, found: int) -> None:
    if not recent:
        return
    before = sum(1 for c in recent if _at(c["at"]) < start)
    table = Table(
        title=f"State changes (the last {len(recent)} of {found + before})", title_justify="left"
    )
    for name in ("at", "E10 state", "process state", "connected", "reason"):
        table.add_column(name, overflow="fold")
    for c in recent:
        at = _at(c["at"])
        shown = clock(at) + (" (before the window)" if at < start else "")
        table.add_row(
            shown,
            e10_text(c["e10"]),
            c["process_state"] or "-",
            "yes" if c["connected"] else Text("no", style="red"),
            c["reason"] or "",
        )
    out.print(table)


def _print_resets(resets: Sequence[Mapping[str, Any]]) -> None:
    if not resets:
        return
    table = Table(title=f"Alarm resets (the last {len(resets)})", title_justify="left")
    for name in ("asked at", "by", "reason", "result", "outcome"):
        table.add_column(name, overflow="fold")
    for r in resets:
        table.add_row(
            clock(_at(r["requested_at"])),
            r["requested_by"],
            r["reason"],
            Text(r["status"], style=RESET_STYLE.get(r["status"], "")),
            r["outcome"] or "",
        )
    out.print(table)


def print_jobs(jobs: Sequence[Mapping[str, Any]], title: str) -> None:
    """A table of jobs as :func:`pkgline.tool_views.job_dict` gives them."""
    table = Table(title=title, title_justify="left")
    for name in ("started", "job", "lot", "step", "carrier", "status", "in", "rejected", "yield %"):
        table.add_column(name, overflow="fold")
    for j in jobs:
        table.add_row(
            clock(_at(j["started_at"])),
            j["job_id"],
            j["lot"],
            j["step"],
            j["carrier"],
            j["status"],
            str(j["sites_in"]),
            str(j["rejected"]),
            "-" if j["yield_pct"] is None else f"{j['yield_pct']:.1f}",
        )
    out.print(table)
