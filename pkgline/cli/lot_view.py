"""What ``pkgline lot show`` and ``lot list`` print for a person: tables and aligned columns
rendered from the same JSON dicts the commands print with ``--json`` (direct mode and the
server alike). rich is imported where a table is printed, not for ``--json``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pkgline.cli.common import MORE_HISTORY, out, the_last
from pkgline.cli.pages import print_notice
from pkgline.cli.times import short, stamp
from pkgline.hold_views import hold_record, placed_by

if TYPE_CHECKING:
    from rich.text import Text


STATE_STYLE: dict[str, str] = {
    "WAITING": "cyan",
    "RUNNING": "green",
    "HOLD": "bold red",
    "COMPLETED": "bold green",
    "SCRAPPED": "dim red",
    "MERGED": "dim",
}
"""The style of each lot state, by its value (a :class:`mes.domain.model.LotState` is its
value: this module imports no lot tracker, for ``lot show --json``)."""


def state_text(state: str) -> Text:
    """A lot state (its value, as the JSON says it, or a :class:`LotState`), styled; one this
    client does not know (a newer server's) plain."""
    from rich.text import Text

    return Text(str(state), style=STATE_STYLE.get(state, ""))


def next_text(lot: Mapping[str, Any], released: str, none: str) -> str:
    """A lot's next steps in words (``none`` when it has none): those it may take now, or a
    held lot's once released, marked with ``released``: ``MOLD (once released)``."""
    now = lot.get("next_steps")
    if isinstance(now, list) and now:
        return ", ".join(str(s) for s in now)
    later = lot.get("next_after_release")  # absent from an older server's answer
    if isinstance(later, list) and later:
        return f"{', '.join(str(s) for s in later)} ({released})"
    return none


def print_lots(rows: list[dict[str, Any]], notice: Mapping[str, Any], caption: str) -> None:
    from rich.table import Table

    table = Table(title="Lots", caption=caption)
    held = any(r.get("hold_reason") for r in rows)  # lot list --state HOLD: the holds list
    for column in ("lot", "flow", "state", "step", "next", "prio", "good/total", "units"):
        table.add_column(column, overflow="fold")
    if held:
        table.add_column("held for", overflow="fold")
    for r in rows:
        table.add_row(
            str(r["id"]),
            str(r["flow"]),
            state_text(str(r["state"])),
            str(r["step"] or "-"),
            next_text(r, "on release", ""),
            str(r["priority"]),
            f"{r['good_sites']}/{r['total_sites']}",
            "-" if r["units"] is None else str(r["units"]),
            *([str(r.get("hold_reason") or "")] if held else []),
        )
    out.print(table)
    print_notice({**notice, "shown": len(rows)}, "lots")


def _placed_by(hold: Mapping[str, Any]) -> str:
    """Who placed the hold, in words (:func:`pkgline.hold_views.placed_by`); the name alone
    from an older server, whose answer says no more."""
    return placed_by(hold["user"], hold.get("by"), hold.get("auth"))


def print_report(report: Mapping[str, Any], history: int | None) -> None:
    """``lot show`` for people, from its JSON (:func:`mes.domain.report.report_dict`)."""
    from rich.table import Table
    from rich.text import Text

    lot = report
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row(
        "lot",
        f"{lot['id']}  (flow {lot['flow']} v{lot['flow_version']}, priority {lot['priority']})",
    )
    head.add_row("state", state_text(lot["state"]))
    head.add_row("step", lot["step"] or "-")
    running = lot["running"]
    if running:
        since = datetime.fromisoformat(running["since"])
        whose = ""  # whose to track out (mes.domain.steps.track_out)
        if running["tool"]:
            whose = " (by hand)" if running.get("by_hand") else " (its line controller's)"
        head.add_row(
            "running",
            f"{running['step']} on {running['tool'] or '-'}{whose} since {stamp(since)}",
        )
        tool = running.get("tool_state")
        if tool is not None and not tool["connected"]:  # what it did last, not what it does
            last = f" (last {tool['process_state']})" if tool["process_state"] else ""
            why = f": {tool['reason']}" if tool["reason"] else ""
            head.add_row(
                "tool",
                Text(f"{running['tool']} not connected{last}{why}", style="red"),
            )
    hold = lot["hold"]
    if hold:
        head.add_row(
            "hold",
            Text(
                f"{hold['reason']} ({hold['source']}, by {_placed_by(hold)})",
                style="red",
            ),
        )
        entries: list[dict[str, Any]] = lot["history"]
        held = [
            i for i, e in enumerate(entries) if e["operation"] == "hold" and e["lot"] == lot["id"]
        ]
        later = (
            [(e["operation"], e["step"], e["data"]) for e in entries[held[-1] + 1 :]]
            if held
            else []
        )
        for label, text in hold_record(entries[held[-1]]["data"] if held else {}, later):
            head.add_row(label, text)
    for q in lot.get("quarantined_materials", ()):  # absent from an older server's answer
        via = f" via {', '.join(q['via'])}" if len(q["via"]) > 1 else ""
        roles = " or ".join(q["release_by"])
        head.add_row(
            "quarantined",
            Text(
                f"got material lot {q['material']}{via}, quarantined ({q['code']}) by "
                f"{q['by']} since {stamp(datetime.fromisoformat(q['since']))}: {q['reason']}"
                + (f"; its release and rework need {roles}" if roles and hold else ""),
                style="red",
            ),
        )
    if lot["pending_rework"]:
        head.add_row(
            "must run",
            f"{lot['pending_rework']} next (a rework, or the step stopped with carriers done)",
        )
    head.add_row("next steps", next_text(lot, "once released", "-"))
    for refused in lot.get("refused", ()):  # why no line controller started it
        since = datetime.fromisoformat(refused["since"])
        head.add_row(
            "not started",
            Text(
                f"on {refused['tool']} ({refused['step']}) since {stamp(since)}: "
                f"{refused['reason']}",
                style="yellow",
            ),
        )
    if lot["may_complete"]:
        head.add_row("", "the flow may end here (pkgline lot complete)")
    if lot["layers"]:
        head.add_row("layer", f"{lot['layer'] or 0} of {lot['layers']}")
    head.add_row("params", ", ".join(f"{k}={v}" for k, v in lot["params"].items()) or "-")
    good, total = lot["good_sites"], lot["total_sites"]
    yield_pct = 100.0 * good / total if total else 0.0
    head.add_row("sites", f"{good} good of {total} ({yield_pct:.1f} %)")
    head.add_row("units", "-" if lot["units"] is None else str(lot["units"]))
    own = [e for e in lot["history"] if e["lot"] == lot["id"]]
    merged_in = [e["data"].get("merged") for e in own if e["operation"] == "merge"]
    into = [e["data"].get("into") for e in own if e["operation"] == "merge_into"]
    if lot["parent"] or lot["children"] or merged_in or into:
        family = [f"parent {lot['parent'] or '-'}", f"children {', '.join(lot['children']) or '-'}"]
        if merged_in:
            family.append(f"merged in {', '.join(str(m) for m in merged_in)}")
        if into:
            family.append(f"merged into {into[-1]}")
        head.add_row("genealogy", "; ".join(family))
    out.print(head)

    if lot["path"]:
        path = Table(title="Path", title_justify="left")
        for column in ("#", "step", "tool", "by", "at", "rejects", "measured"):
            path.add_column(column, overflow="fold")
        for p in lot["path"]:
            measured = ", ".join(f"{k}={v}" for k, v in p["measured"].items())
            path.add_row(
                str(p["path_index"] + 1),
                p["step"],
                p["tool"] or "-",
                p["user"],
                p["at"][:19],
                str(p["rejects"]),
                measured,
            )
        out.print(path)

    if lot["yields"]:
        yields = Table(title="Yield per step", title_justify="left")
        for column in ("#", "step", "in", "rejected", "yield %"):
            yields.add_column(column, overflow="fold")
        for y in lot["yields"]:
            pct = "-" if y["yield_pct"] is None else f"{y['yield_pct']:.1f}"
            yields.add_row(
                str(y["path_index"] + 1), y["step"], str(y["sites_in"]), str(y["rejected"]), pct
            )
        out.print(yields)

    for m in lot["carriers"]:
        out.print(
            Text(
                f"carrier {m['id']} ({m['rows']}x{m['cols']}, {m['good_sites']} good)",
                style="bold",
            )
        )
        bad = {(r["row"], r["col"]) for r in m["rejects"]}
        for row in range(1, m["rows"] + 1):
            cells = ("x" if (row, col) in bad else "·" for col in range(1, m["cols"] + 1))
            out.print("  " + " ".join(cells))
        if m["rejects"]:
            out.print(
                "  rejects: "
                + ", ".join(
                    f"{r['row']}:{r['col']} {r['code']} ({r['step']})" for r in m["rejects"]
                )
            )

    _print_history(report, history)
    _print_signatures(report)


def _print_signatures(report: Mapping[str, Any]) -> None:
    """Each electronic signature with the entry it signs (21 CFR 11.50: printed name, time,
    meaning)."""
    print_signatures(report.get("signatures") or [], "Signatures", with_lot=False)


def print_entry_signatures(entries: list[Mapping[str, Any]]) -> None:
    """The electronic signatures the ``entries`` record (``lot history``: a page of entries
    of any lots), oldest first, as ``lot show`` lists a lot's: every signer of an entry signed
    by two people is named, not only the entry's user."""
    signatures = [
        {**s, "entry_seq": e["seq"], "operation": e["operation"], "lot": e["lot"]}
        for e in sorted(entries, key=lambda e: int(e["seq"]))
        for s in ((e.get("data") or {}).get("signatures") or [])
    ]
    print_signatures(signatures, "Signatures on these entries", with_lot=True)


def print_signatures(
    signatures: Sequence[Mapping[str, Any]], title: str, *, with_lot: bool
) -> None:
    """Signatures as aligned columns: the entry each signs, printed name and user name,
    meaning, time and method (21 CFR 11.50)."""
    if not signatures:
        return
    from rich.text import Text

    from pkgline.cli.columns import columns

    rows = [
        [
            Text(str(s["entry_seq"]) if s["entry_seq"] is not None else "?"),
            *([Text(s["lot"])] if with_lot else []),
            Text(s["operation"] or "-"),
            Text(f"{s['printed_name']} ({s['signer']})"),
            Text(s["meaning"]),
            Text(stamp(s["at"], zone=True)),
            Text(s["method"]),
        ]
        for s in signatures
    ]
    lot = ("lot",) if with_lot else ()
    out.print(Text(f"{title} ({len(rows)})", style="italic"))
    header = ("entry", *lot, "operation", "signed by", "meaning", "at", "method")
    out.print(columns(header, rows))


def _print_history(report: Mapping[str, Any], last: int | None) -> None:
    """The last ``last`` history entries (None: every one), oldest first, as aligned columns
    (a lot can have thousands: :mod:`pkgline.cli.columns`)."""
    entries, said = the_last(report["history"], last, "entries", MORE_HISTORY)
    print_entries(list(entries), f"History ({said})", report["id"])


def print_entries(entries: list[Mapping[str, Any]], title: str, own: str | None) -> None:
    """History entries as aligned columns under ``title``: those of another lot than
    ``own`` (a parent's, before a split) dimmed and named; with ``own`` None, every entry's
    lot in a column of its own (``lot history``)."""
    from rich.text import Text

    from pkgline.cli.columns import columns

    rows = []
    for e in entries:
        inherited = own is not None and e["lot"] != own
        style = "dim" if inherited else ""
        user = e["user"] if e["by"] in (None, e["user"]) else f"{e['user']} (by {e['by']})"
        rows.append(
            [
                Text(str(e["seq"]), style=style),
                Text(short(e["at"]), style=style),
                *([Text(e["lot"])] if own is None else []),
                Text(user, style=style),
                Text(e["operation"] + (f" ({e['lot']})" if inherited else ""), style=style),
                Text(f"{e['state_before'] or '-'} → {e['state_after']}", style=style),
                Text(e["step"] or "-", style=style),
                Text(e["tool"] or "-", style=style),
                Text(e["reason"] or "", style=style),
            ]
        )
    out.print(Text(title, style="italic"))
    if rows:
        lot = ("lot",) if own is None else ()
        header = ("seq", "at", *lot, "user", "operation", "state", "step", "tool", "reason")
        out.print(columns(header, rows))
