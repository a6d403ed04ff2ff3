"""``pkgline durable add|mount|unmount|renew|show|list``: durables with life counters
(capillaries, saw blades, mold chases, stencils, nozzles), a track-in interlock
(:mod:`mes.domain.durables`). Thin: parse, call the durable service, print."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from mes.domain.durables import DEFAULT_WARN_FRACTION, KINDS, Durable, DurableEvent
from mes.durables import DurableView
from pkgline.bootstrap import open_services
from pkgline.cli.common import (
    DbOption,
    JsonOption,
    ReasonOption,
    UserOption,
    current_user,
    out,
    print_json,
    run,
    usage_error,
)

app = typer.Typer(
    help="Durables with life counters: add, mount on a tool, unmount, renew, show, list.",
    no_args_is_help=True,
)

DurableArg = Annotated[str, typer.Argument(help="Durable id.", show_default=False)]


def durable_dict(d: Durable) -> dict[str, Any]:
    return {
        "id": d.id,
        "kind": d.kind.value,
        "unit": d.unit,
        "count": d.count,
        "life": d.life,
        "warn_fraction": d.warn_fraction,
        "warn_at": d.warn_at,
        "warned": d.warned,
        "spent": d.spent,
        "tool": d.tool_id,
        "mounted_at": d.mounted_at.isoformat() if d.mounted_at else None,
        "added_by": d.added_by,
        "added_at": d.added_at.isoformat(),
        "description": d.description,
    }


def event_dict(e: DurableEvent) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "event": e.event.value,
        "at": e.at.isoformat(),
        "by": e.by,
        "tool": e.tool_id,
        "lot": e.lot_id,
        "step": e.step,
        "job": e.job_id,
        "amount": e.amount,
        "count_after": e.count_after,
        "reason": e.reason,
    }


def _status(d: Durable) -> Text:
    if d.spent:
        return Text("spent", style="bold red")
    if d.warned:
        return Text("warning", style="bold yellow")
    return Text("ok", style="green")


def _done(d: Durable, what: str, as_json: bool) -> None:
    if as_json:
        print_json(durable_dict(d))
        return
    out.print(Text.assemble(("✔ ", "green"), f"{d.text()} {what}"))


@app.command()
def add(
    durable: DurableArg,
    kind: Annotated[
        str,
        typer.Option("--kind", help=f"One of: {', '.join(KINDS)}.", show_default=False),
    ],
    life: Annotated[
        int,
        typer.Option(
            "--life",
            help="Its life, in its kind's unit (touchdowns, cuts, shots, prints).",
            show_default=False,
        ),
    ],
    warn_at: Annotated[
        float,
        typer.Option("--warn-at", help="Warn at this fraction of its life (0 to 1)."),
    ] = DEFAULT_WARN_FRACTION,
    description: Annotated[
        str | None, typer.Option("--description", help="Part number, supplier, ...")
    ] = None,
    db: DbOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Add a durable, off the tools, with a count of 0."""
    who = current_user(user)

    async def work() -> Durable:
        async with open_services(db) as services:
            return await services.durables.add(
                durable, kind.strip(), life, who, warn_fraction=warn_at, description=description
            )

    _done(run(work, as_json=json, db=db), "added", json)


@app.command()
def mount(
    durable: DurableArg,
    tool: Annotated[str, typer.Option("--tool", help="Tool id.", show_default=False)],
    db: DbOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Mount a durable on a tool of its kind's class (one of a kind per tool)."""
    who = current_user(user)

    async def work() -> Durable:
        async with open_services(db) as services:
            return await services.durables.mount(durable, tool, who)

    _done(run(work, as_json=json, db=db), f"mounted on {tool}", json)


@app.command()
def unmount(
    durable: DurableArg,
    reason: ReasonOption = None,
    db: DbOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Take a durable off its tool (it keeps its count)."""
    who = current_user(user)

    async def work() -> Durable:
        async with open_services(db) as services:
            return await services.durables.unmount(durable, who, reason)

    _done(run(work, as_json=json, db=db), "unmounted", json)


@app.command()
def renew(
    durable: DurableArg,
    reason: Annotated[str, typer.Option("--reason", help="The cleaning done.")] = "",
    db: DbOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """After a cleaning: a renewable durable's count back to 0 (a mold chase)."""
    if not reason.strip():
        usage_error("--reason must say which cleaning was done", as_json=json)
    who = current_user(user)

    async def work() -> Durable:
        async with open_services(db) as services:
            return await services.durables.renew(durable, who, reason.strip())

    _done(run(work, as_json=json, db=db), "renewed", json)


@app.command()
def show(durable: DurableArg, db: DbOption = None, json: JsonOption = False) -> None:
    """A durable: its count against its life, its tool, the lots it served, its history."""

    async def work() -> DurableView:
        async with open_services(db) as services:
            return await services.durables.show(durable)

    view = run(work, as_json=json, db=db)
    d = view.durable
    if json:
        print_json(
            {**durable_dict(d), "lots": view.lots, "history": [event_dict(e) for e in view.events]}
        )
        return
    out.print(Text.assemble((d.id, "bold"), f"  {d.kind.value}  ", _status(d)))
    out.print(f"count     {d.count:,} of {d.life:,} {d.unit} (warns at {d.warn_at:,})")
    out.print(f"tool      {d.tool_id or '(not mounted)'}")
    out.print(f"added     {d.added_at:%Y-%m-%d %H:%M:%S} by {d.added_by}")
    if d.description:
        out.print(f"about     {d.description}")
    out.print(f"lots      {', '.join(view.lots) or '(none yet)'}")
    table = Table(show_edge=False, pad_edge=False, title="history")
    for column in ("at", "event", "by", "tool", "lot", "step", "amount", "count", "reason"):
        table.add_column(column)
    for e in view.events:
        table.add_row(
            f"{e.at:%Y-%m-%d %H:%M:%S}",
            e.event.value,
            e.by,
            e.tool_id or "",
            e.lot_id or "",
            e.step or "",
            f"{e.amount:+,}" if e.amount else "",
            f"{e.count_after:,}",
            e.reason or "",
        )
    out.print(table)


@app.command("list")
def list_(
    tool: Annotated[str | None, typer.Option("--tool", help="Only those on this tool.")] = None,
    db: DbOption = None,
    json: JsonOption = False,
) -> None:
    """Every durable (or a tool's): kind, tool, count against life, status."""

    async def work() -> list[Durable]:
        async with open_services(db) as services:
            return list(await services.durables.list(tool_id=tool))

    found = run(work, as_json=json, db=db)
    if json:
        print_json([durable_dict(d) for d in found])
        return
    if not found:
        out.print("no durables")
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("durable", "kind", "tool", "count", "life", "unit", "used %", "status"):
        table.add_column(column)
    for d in found:
        table.add_row(
            d.id,
            d.kind.value,
            d.tool_id or "",
            f"{d.count:,}",
            f"{d.life:,}",
            d.unit,
            f"{100.0 * d.count / d.life:.0f}",
            _status(d),
        )
    out.print(table)
