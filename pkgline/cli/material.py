"""``pkgline material add|thaw|load|unload|show|list|where-used`` and ``pkgline lot
genealogy``: consumable material lots with their clocks (a track-in interlock:
:mod:`mes.domain.materials`), and what went into which product lot. Thin: parse, call the
material service, print."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mes.domain.materials import KINDS, Material, MaterialEvent, Reached, Source, Use
from mes.materials import MaterialView
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

if TYPE_CHECKING:  # rich is imported where a table or styled text is printed (not for --json)
    from rich.text import Text

app = typer.Typer(
    help="Material lots with their clocks: add, thaw, load on a tool, unload, show, list, "
    "where-used (recalls).",
    no_args_is_help=True,
)

MaterialArg = Annotated[str, typer.Argument(help="Material lot id.", show_default=False)]


def _when(text: str, as_json: bool) -> datetime:
    """An ISO 8601 time (local when no zone); a date alone is the end of that day."""
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        usage_error(
            f"--expires {text!r}: expected a date (2027-01-31: usable through that day) or a "
            "time (2027-01-31T18:00, 2027-01-31T18:00+01:00)",
            as_json=as_json,
        )
    if len(text.strip()) == 10:  # a date: usable through the whole day
        at = datetime.combine(at.date() + timedelta(days=1), time())
    return at if at.tzinfo else at.astimezone()


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def material_dict(m: Material) -> dict[str, Any]:
    return {
        "id": m.id,
        "kind": m.kind.value,
        "part_number": m.part_number,
        "expires_at": m.expires_at.isoformat(),
        "thaw_minutes": m.thaw_minutes if m.frozen else None,
        "floor_life_minutes": m.floor_life_minutes,
        "thawed_at": _iso(m.thawed_at),
        "usable_from": _iso(m.usable_from),
        "floor_life_ends": _iso(m.floor_life_ends),
        "tool": m.tool_id,
        "loaded_at": _iso(m.loaded_at),
        "added_by": m.added_by,
        "added_at": m.added_at.isoformat(),
    }


def _event_dict(e: MaterialEvent) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "event": e.event.value,
        "at": e.at.isoformat(),
        "by": e.by,
        "tool": e.tool_id,
        "reason": e.reason,
    }


def use_dict(u: Use) -> dict[str, Any]:
    return {
        "material": u.material_id,
        "lot": u.lot_id,
        "step": u.step,
        "tool": u.tool_id,
        "at": u.at.isoformat(),
    }


def _status(m: Material) -> Text:
    from rich.text import Text

    found = m.problem(datetime.now(m.expires_at.tzinfo))
    if found is None:
        return Text("usable", style="green")
    return Text(found[0].removeprefix("material_").replace("_", " "), style="bold yellow")


def _done(m: Material, what: str, as_json: bool) -> None:
    if as_json:
        print_json(material_dict(m))
        return
    from rich.text import Text

    out.print(Text.assemble(("✔ ", "green"), f"{m.kind.value} {m.id} {what}"))


@app.command()
def add(
    material: MaterialArg,
    kind: Annotated[
        str, typer.Option("--kind", help=f"One of: {', '.join(KINDS)}.", show_default=False)
    ],
    expires: Annotated[
        str,
        typer.Option(
            "--expires",
            help="Expiry: a date (usable through that day) or a time.",
            show_default=False,
        ),
    ],
    thaw_hours: Annotated[
        float | None,
        typer.Option("--thaw-hours", help="Frozen kinds: least time out of the freezer."),
    ] = None,
    floor_life_hours: Annotated[
        float | None,
        typer.Option("--floor-life-hours", help="Frozen kinds: usable this long after thaw."),
    ] = None,
    part: Annotated[str | None, typer.Option("--part", help="Supplier part number.")] = None,
    db: DbOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Add a material lot (frozen kinds: still frozen, with the kind's thaw time and floor
    life unless given)."""
    who = current_user(user)
    expires_at = _when(expires, json)

    def minutes(hours: float | None) -> int | None:
        return None if hours is None else round(hours * 60)

    async def work() -> Material:
        async with open_services(db) as services:
            return await services.materials.add(
                material,
                kind.strip(),
                expires_at,
                who,
                thaw_minutes=minutes(thaw_hours),
                floor_life_minutes=minutes(floor_life_hours),
                part_number=part,
            )

    _done(run(work, as_json=json, db=db), f"added (expires {expires_at:%Y-%m-%d %H:%M})", json)


@app.command()
def thaw(
    material: MaterialArg, db: DbOption = None, user: UserOption = None, json: JsonOption = False
) -> None:
    """Out of the freezer now: its thaw time and floor life start."""
    who = current_user(user)

    async def work() -> Material:
        async with open_services(db) as services:
            return await services.materials.thaw(material, who)

    found = run(work, as_json=json, db=db)
    until = found.usable_from
    _done(found, f"thawing, usable from {until:%Y-%m-%d %H:%M}" if until else "thawed", json)


@app.command()
def load(
    material: MaterialArg,
    tool: Annotated[str, typer.Option("--tool", help="Tool id.", show_default=False)],
    db: DbOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Load a material lot on a tool of its kind's class (one of a kind per tool)."""
    who = current_user(user)

    async def work() -> Material:
        async with open_services(db) as services:
            return await services.materials.load(material, tool, who)

    _done(run(work, as_json=json, db=db), f"loaded on {tool}", json)


@app.command()
def unload(
    material: MaterialArg,
    reason: ReasonOption = None,
    db: DbOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Take a material lot off its tool."""
    who = current_user(user)

    async def work() -> Material:
        async with open_services(db) as services:
            return await services.materials.unload(material, who, reason)

    _done(run(work, as_json=json, db=db), "unloaded", json)


@app.command()
def show(material: MaterialArg, db: DbOption = None, json: JsonOption = False) -> None:
    """A material lot: its clocks, its tool, its history and the lots it went into."""

    async def work() -> MaterialView:
        async with open_services(db) as services:
            return await services.materials.show(material)

    view = run(work, as_json=json, db=db)
    m = view.material
    from rich.text import Text

    if json:
        print_json(
            {
                **material_dict(m),
                "history": [_event_dict(e) for e in view.events],
                "uses": [use_dict(u) for u in view.uses],
            }
        )
        return
    out.print(Text.assemble((m.id, "bold"), f"  {m.kind.value}  ", _status(m)))
    out.print(f"expires   {m.expires_at:%Y-%m-%d %H:%M}")
    if m.frozen:
        thawed = f"{m.thawed_at:%Y-%m-%d %H:%M}" if m.thawed_at else "(frozen)"
        out.print(
            f"thawed    {thawed}; thaw {m.thaw_minutes / 60:g} h, "
            f"floor life {(m.floor_life_minutes or 0) / 60:g} h"
        )
    out.print(f"tool      {m.tool_id or '(not loaded)'}")
    for e in view.events:
        tool = f" {e.tool_id}" if e.tool_id else ""
        out.print(f"  {e.at:%Y-%m-%d %H:%M:%S}  {e.event.value}{tool} by {e.by}")
    out.print(f"used in   {', '.join(dict.fromkeys(u.lot_id for u in view.uses)) or '(none)'}")


@app.command("list")
def list_(
    tool: Annotated[str | None, typer.Option("--tool", help="Only those on this tool.")] = None,
    db: DbOption = None,
    json: JsonOption = False,
) -> None:
    """Every material lot (or a tool's): kind, tool, expiry, thaw, status."""

    async def work() -> list[Material]:
        async with open_services(db) as services:
            return await services.materials.find(tool_id=tool)

    found = run(work, as_json=json, db=db)
    if json:
        print_json([material_dict(m) for m in found])
        return
    if not found:
        out.print("no material lots")
        return
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    for column in ("material", "kind", "tool", "expires", "thawed", "status"):
        table.add_column(column)
    for m in found:
        table.add_row(
            m.id,
            m.kind.value,
            m.tool_id or "",
            f"{m.expires_at:%Y-%m-%d %H:%M}",
            f"{m.thawed_at:%Y-%m-%d %H:%M}" if m.thawed_at else ("frozen" if m.frozen else ""),
            _status(m),
        )
    out.print(table)


def _reached_dict(r: Reached) -> dict[str, Any]:
    return {"lot": r.lot_id, "since": r.since.isoformat(), "via": list(r.via)}


@app.command("where-used")
def where_used(material: MaterialArg, db: DbOption = None, json: JsonOption = False) -> None:
    """Which product lots got this material lot (a recall): those it went into at a step,
    and through splits and merges after that, those their units went on in."""

    async def work() -> list[Reached]:
        async with open_services(db) as services:
            return await services.materials.where_used(material)

    found = run(work, as_json=json, db=db)
    if json:
        print_json({"material": material, "lots": [_reached_dict(r) for r in found]})
        return
    if not found:
        out.print(f"material lot {material} went into no product lot")
        return
    for r in found:
        how = "used at a step" if len(r.via) == 1 else "through " + " -> ".join(r.via)
        out.print(f"{r.lot_id:<20} since {r.since:%Y-%m-%d %H:%M:%S}  {how}")


def _source_dict(s: Source) -> dict[str, Any]:
    return {**use_dict(s.use), "via": list(s.via)}


def genealogy(
    lot: Annotated[str, typer.Argument(help="Lot id.", show_default=False)],
    db: DbOption = None,
    json: JsonOption = False,
) -> None:
    """What went into a lot: every material lot, at which step and tool, its own or through
    the lot it was split from and the lots merged into it."""

    async def work() -> list[Source]:
        async with open_services(db) as services:
            return await services.materials.genealogy(lot)

    found = run(work, as_json=json, db=db)
    if json:
        print_json({"lot": lot, "materials": [_source_dict(s) for s in found]})
        return
    if not found:
        out.print(f"no material lot recorded for lot {lot}")
        return
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    for column in ("material", "step", "tool", "at", "in lot", "via"):
        table.add_column(column)
    for s in found:
        table.add_row(
            s.use.material_id,
            s.use.step,
            s.use.tool_id,
            f"{s.use.at:%Y-%m-%d %H:%M:%S}",
            s.use.lot_id,
            " -> ".join(s.via),
        )
    out.print(table)


def register(lot_app: typer.Typer) -> None:
    """Add ``genealogy`` to ``pkgline lot``."""
    lot_app.command("genealogy")(genealogy)
