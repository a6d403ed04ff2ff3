"""``pkgline material add|thaw|load|unload|show|list|where-used`` and ``pkgline lot
genealogy``: consumable material lots with their clocks (a track-in interlock:
:mod:`mes.domain.materials`), and what went into which product lot. Thin: parse, one call of
the material service through the pkgline server or directly
(:func:`pkgline.cli.modes.served`), print its JSON."""

from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pkgline.cli.bounds import MAX_CLOCK_MINUTES
from pkgline.cli.common import (
    MORE_HISTORY,
    DbOption,
    HistoryOption,
    JsonOption,
    ReasonOption,
    UserOption,
    current_user,
    last_entries,
    out,
    print_json,
    served_lots,
    the_last,
    usage_error,
)
from pkgline.cli.modes import Remote, ServerOption, segment, served
from pkgline.cli.times import in_utc_range, stamp
from pkgline.page_sizes import MATERIAL_PAGE, MAX_MATERIAL_PAGE, SHOW_HISTORY

if TYPE_CHECKING:  # rich is imported where a table or styled text is printed (not for --json)
    from rich.text import Text

    from mes.domain.materials import Material
    from pkgline.bootstrap import Services


def _views() -> ModuleType:
    """:mod:`pkgline.interlock_views`, imported in direct mode, where the services' answers
    are shaped into the routes' JSON (through the server the client prints the JSON it got)."""
    import pkgline.interlock_views

    return pkgline.interlock_views


KIND_NAMES = ("mold_compound", "die_attach_film", "adhesive", "solder_balls", "wire")
"""The kinds of material (:data:`mes.domain.materials.KINDS`) for ``--kind``'s help: kept
here so that this module, which ``pkgline lot`` loads for ``lot genealogy``, imports no lot
tracker (tests/test_imports.py checks that the two agree)."""

app = typer.Typer(
    help="Material lots with their clocks: add, thaw, load on a tool, unload, show, list, "
    "where-used, quarantine, release, hold-lots (recalls).",
    no_args_is_help=True,
)

MaterialArg = Annotated[str, typer.Argument(help="Material lot id.", show_default=False)]


def _expiry(at: datetime, *, word: bool = True) -> str:
    """``expires 2027-04-01 00:00``, and for an expiry at a local midnight (``--expires
    2027-03-31``: usable through that day) the day it is usable through, so that the date
    typed is the date read back."""
    said = f"expires {stamp(at, seconds=False)}" if word else stamp(at, seconds=False)
    try:
        local = at.astimezone()
    except (OverflowError, ValueError):
        return said
    if local.time() != time(0):
        return said
    return f"{said}, usable through {(local.date() - timedelta(days=1)).isoformat()}"


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
    try:
        day: date | None = date.fromisoformat(text.strip())  # 2027-01-31, 20270131, 2027-W05-1
    except ValueError:
        day = None
    if day is not None:  # a date: usable through the whole day
        if day >= date.max:
            usage_error(f"--expires {text!r}: expected a date before {date.max}", as_json=as_json)
        at = datetime.combine(day + timedelta(days=1), time())
    try:
        at = at if at.tzinfo else at.astimezone()
    except OverflowError:
        usage_error(f"--expires {text!r}: expected a time before {date.max}", as_json=as_json)
    return in_utc_range(at, f"--expires {text!r}", as_json=as_json)


def _status(m: Material) -> Text:
    from rich.text import Text

    from pkgline.interlock_views import material_status

    word = material_status(m, datetime.now(m.expires_at.tzinfo))
    return Text(word, style="green" if word == "usable" else "bold yellow")


def _done(answer: dict[str, Any], what: str, as_json: bool) -> Material:
    """Print what a change answered (the material lot as it now is); that lot."""
    from pkgline.interlock_views import material_from_dict

    m = material_from_dict(answer)
    if as_json:
        print_json(answer)
        return m
    from rich.text import Text

    out.print(Text.assemble(("✔ ", "green"), f"{m.kind.value} {m.id} {what}"))
    return m


def _path(material: str, action: str = "") -> str:
    return f"/materials/{segment(material)}" + (f"/{action}" if action else "")


@app.command()
def add(
    material: MaterialArg,
    kind: Annotated[
        str, typer.Option("--kind", help=f"One of: {', '.join(KIND_NAMES)}.", show_default=False)
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
    server: ServerOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Add a material lot (frozen kinds: still frozen, with the kind's thaw time and floor
    life unless given)."""

    who = current_user(user)
    expires_at = _when(expires, json)

    def minutes(hours: float | None, option: str) -> int | None:
        if hours is None:
            return None
        # nan, inf, negative, or past the lot tracker's longest (the API's bound too)
        if not math.isfinite(hours * 60) or hours < 0 or round(hours * 60) > MAX_CLOCK_MINUTES:
            usage_error(
                f"{option} {hours}: expected a number of hours, 0 or more, at most "
                f"{MAX_CLOCK_MINUTES // 60:,}",
                as_json=json,
            )
        return round(hours * 60)

    thaw = minutes(thaw_hours, "--thaw-hours")
    floor_life = minutes(floor_life_hours, "--floor-life-hours")
    body = {
        "material": material,
        "kind": kind.strip(),
        "expires_at": expires_at.isoformat(),
        "thaw_minutes": thaw,
        "floor_life_minutes": floor_life,
        "part_number": part,
    }
    answer = served(
        db,
        server,
        json,
        Remote("POST", "/materials", body),
        lambda s: s.materials.add(
            material,
            kind.strip(),
            expires_at,
            who,
            thaw_minutes=thaw,
            floor_life_minutes=floor_life,
            part_number=part,
        ),
        lambda found: _views().material_dict(found),
    )
    _done(answer, f"added ({_expiry(expires_at)})", json)


@app.command()
def thaw(
    material: MaterialArg,
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Out of the freezer now: its thaw time and floor life start."""
    from pkgline.interlock_views import material_from_dict

    who = current_user(user)
    answer = served(
        db,
        server,
        json,
        Remote("POST", _path(material, "thaw"), {}),
        lambda s: s.materials.thaw(material, who),
        lambda found: _views().material_dict(found),
    )
    thawed = material_from_dict(answer)
    until = thawed.usable_from
    _done(
        answer,
        f"thawing, usable from {stamp(until, seconds=False)}"
        if until and thawed.thaw_minutes
        else "thawed, usable now",
        json,
    )


@app.command()
def load(
    material: MaterialArg,
    tool: Annotated[str, typer.Option("--tool", help="Tool id.", show_default=False)],
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Load a material lot on a tool of its kind's class (one of a kind per tool)."""

    who = current_user(user)
    answer = served(
        db,
        server,
        json,
        Remote("POST", _path(material, "load"), {"tool": tool}),
        lambda s: s.materials.load(material, tool, who),
        lambda found: _views().material_dict(found),
    )
    _done(answer, f"loaded on {tool}", json)


@app.command()
def unload(
    material: MaterialArg,
    reason: ReasonOption = None,
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Take a material lot off its tool."""

    who = current_user(user)
    answer = served(
        db,
        server,
        json,
        Remote("POST", _path(material, "unload"), {"reason": reason}),
        lambda s: s.materials.unload(material, who, reason),
        lambda found: _views().material_dict(found),
    )
    _done(answer, "unloaded", json)


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text)


@app.command()
def show(
    material: MaterialArg,
    history: HistoryOption = str(SHOW_HISTORY),
    db: DbOption = None,
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """A material lot: its clocks, its tool, its last history events (--history for more)
    and the last lots it went into (--json has every one; material where-used for a
    recall)."""
    last = last_entries(history, as_json=json)
    from pkgline.interlock_views import material_from_dict

    answer = served(
        db,
        server,
        json,
        Remote("GET", _path(material)),
        lambda s: s.materials.show(material),
        lambda found: _views().material_view_dict(found),
    )
    if json:
        print_json(answer)
        return
    m = material_from_dict(answer)
    from rich.text import Text

    out.print(Text.assemble((m.id, "bold"), f"  {m.kind.value}  ", _status(m)))
    out.print(f"expires   {_expiry(m.expires_at, word=False)}")
    if m.frozen:
        thawed = stamp(m.thawed_at, seconds=False) if m.thawed_at else "(frozen)"
        out.print(
            f"thawed    {thawed}; thaw {m.thaw_minutes / 60:g} h, "
            f"floor life {(m.floor_life_minutes or 0) / 60:g} h"
        )
    out.print(f"tool      {m.tool_id or '(not loaded)'}")
    if (q := m.quarantine) is not None:
        out.print(f"quarantined by {q.by} since {stamp(q.at, seconds=False)}: {q.reason}")
    events, said = the_last(answer["history"], last, "events", MORE_HISTORY)
    out.print(Text(f"History ({said})", style="italic"))
    for e in events:
        tool = f" {e['tool']}" if e["tool"] else ""
        why = f": {e['reason']}" if e.get("reason") else ""
        out.print(f"  {stamp(_t(e['at']))}  {e['event']}{tool} by {e['by']}{why}")
        for sig in e.get("signatures") or []:
            out.print(
                f"      signed by {sig['printed_name']} ({sig['signer']}, {sig['method']}): "
                f"{sig['meaning']}"
            )
    out.print(f"used in   {served_lots(list(dict.fromkeys(u['lot'] for u in answer['uses'])))}")


@app.command("list")
def list_(
    tool: Annotated[str | None, typer.Option("--tool", help="Only those on this tool.")] = None,
    loaded: Annotated[
        bool, typer.Option("--loaded", help="Only those loaded on a tool (not the shelf's).")
    ] = False,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            min=1,
            max=MAX_MATERIAL_PAGE,
            help=f"At most this many (default: {MATERIAL_PAGE} in the table; every material "
            "lot with --json).",
            show_default=False,
        ),
    ] = None,
    after: Annotated[
        str | None,
        typer.Option(
            "--after", help="Start after this material lot (the last of the page before)."
        ),
    ] = None,
    db: DbOption = None,
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """Material lots by id, a page at a time (all, a tool's, or those on the tools): kind,
    tool, expiry, thaw, status; says how many match and how to see the next page."""
    from pkgline.cli import pages

    size = limit or (MAX_MATERIAL_PAGE if json else MATERIAL_PAGE)

    def params(after: str | None) -> list[tuple[str, str]]:
        given = {"tool": tool, "loaded": "true" if loaded else None, "after": after}
        return [(k, v) for k, v in given.items() if v is not None] + [("limit", str(size))]

    async def direct(services: Services, after: str | None) -> dict[str, Any]:
        from mes.ports_materials import MaterialQuery
        from pkgline.list_views import materials_answer

        query = MaterialQuery(tool_id=tool, loaded=loaded, after=after, limit=size)
        return await materials_answer(services.materials, query)

    if json and limit is None:
        pages.write_every_page(db, server, "/materials", "materials", after, params, direct)
        return
    answer = pages.one_page_of(db, server, "/materials", params, direct, after, json)
    if json:
        print_json(answer["materials"])
        pages.json_notice(answer)
        return
    from pkgline.interlock_views import material_from_dict

    found = [material_from_dict(m) for m in answer["materials"]]
    if answer["total"] == 0:
        out.print(
            "no material lots" if (tool, loaded) == (None, False) else "no material lots match"
        )
        return
    if found:
        out.print(_material_table(found))
    pages.print_notice(answer, "material lots")


def _material_table(found: list[Material]) -> Any:
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    for column in ("material", "kind", "tool", "expires", "thawed", "status"):
        table.add_column(column, overflow="fold")
    for m in found:
        table.add_row(
            m.id,
            m.kind.value,
            m.tool_id or "",
            stamp(m.expires_at, seconds=False),
            stamp(m.thawed_at, seconds=False) if m.thawed_at else ("frozen" if m.frozen else ""),
            _status(m),
        )
    return table


@app.command("where-used")
def where_used(
    material: MaterialArg,
    db: DbOption = None,
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """Which product lots got this material lot (a recall): those it went into at a step,
    and through splits and merges after that, those their units went on in."""

    answer = served(
        db,
        server,
        json,
        Remote("GET", _path(material, "where-used")),
        lambda s: s.materials.where_used(material),
        lambda found: _views().where_used_dict(material, found),
    )
    if json:
        print_json(answer)
        return
    if not answer["lots"]:
        out.print(f"material lot {material} went into no product lot")
        return
    lots = answer["lots"]
    on_line = [r["lot"] for r in lots if r["state"] in _ON_THE_LINE]
    out.print(
        f"material lot {material} went into {len(lots)} product lot(s); "
        + (
            f"{len(on_line)} still on the line (waiting, running or held): {', '.join(on_line)}"
            if on_line
            else "none is still on the line"
        )
    )
    for r in lots:
        how = "used at a step" if len(r["via"]) == 1 else "through " + " -> ".join(r["via"])
        where = f"{r['state'] or '?':<10} {r['step'] or '-':<18}"
        # when the lot got the material lot (``since`` in the JSON), not since when it is in
        # its state: "HOLD ... since" read as held since then
        out.print(f"{r['lot']:<20} {where} got it {stamp(_t(r['since']))}  {how}")


_ON_THE_LINE = frozenset({"WAITING", "RUNNING", "HOLD"})
"""The states of a lot a recall can still stop (hold): not finished, scrapped or merged."""


def genealogy(
    lot: Annotated[str, typer.Argument(help="Lot id.", show_default=False)],
    db: DbOption = None,
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """What went into a lot: every material lot, at which step and tool, its own or through
    the lot it was split from and the lots merged into it."""

    answer = served(
        db,
        server,
        json,
        Remote("GET", f"/lots/{segment(lot)}/genealogy"),
        lambda s: s.materials.genealogy(lot),
        lambda found: _views().genealogy_dict(lot, found),
    )
    if json:
        print_json(answer)
        return
    found = answer["materials"]
    if not found:
        out.print(f"no material lot recorded for lot {lot}")
        return
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    for column in ("material", "step", "tool", "at", "in lot", "via"):
        table.add_column(column, overflow="fold")
    for s in found:
        table.add_row(
            s["material"],
            s["step"],
            s["tool"],
            stamp(_t(s["at"])),
            s["lot"],
            " -> ".join(s["via"]),
        )
    out.print(table)


def register(lot_app: typer.Typer) -> None:
    """Add ``genealogy`` to ``pkgline lot``."""
    lot_app.command("genealogy")(genealogy)
