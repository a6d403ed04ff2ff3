"""``pkgline durable add|mount|unmount|renew|show|list``: durables with life counters
(capillaries, saw blades, mold chases, stencils, nozzles), a track-in interlock
(:mod:`mes.domain.durables`). Thin: parse, one call of the durable service through the
pkgline server or directly (:func:`pkgline.cli.modes.served`), print its JSON."""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pkgline.cli.bounds import MAX_LIFE
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
from pkgline.cli.times import stamp
from pkgline.page_sizes import DURABLE_PAGE, MAX_DURABLE_PAGE, SHOW_HISTORY

if TYPE_CHECKING:  # rich is imported where a table or styled text is printed (not for --json)
    from rich.table import Table
    from rich.text import Text

    from mes.domain.durables import Durable
    from pkgline.bootstrap import Services


def _views() -> ModuleType:
    """:mod:`pkgline.interlock_views`, imported in direct mode, where the services' answers
    are shaped into the routes' JSON, and to print a table (through the server ``--json``
    prints the JSON it got)."""
    import pkgline.interlock_views

    return pkgline.interlock_views


KIND_NAMES = ("capillary", "saw_blade", "mold_chase", "stencil", "nozzle")
"""The kinds of durable (:data:`mes.domain.durables.KINDS`) for ``--kind``'s help: kept here
so that this module imports no lot tracker (tests/test_imports.py checks that the two
agree)."""
DEFAULT_WARN_FRACTION = 0.9
"""``--warn-at``'s default, :data:`mes.domain.durables.DEFAULT_WARN_FRACTION` (checked
likewise)."""

app = typer.Typer(
    help="Durables with life counters: add, mount on a tool, unmount, renew, show, list.",
    no_args_is_help=True,
)

DurableArg = Annotated[str, typer.Argument(help="Durable id.", show_default=False)]


_STYLES = {"spent": "bold red", "warning": "bold yellow", "ok": "green"}


def _status(d: Durable) -> Text:
    from rich.text import Text

    word = _views().durable_status(d)
    return Text(word, style=_STYLES[word])


def _done(answer: dict[str, Any], what: str, as_json: bool) -> None:
    if as_json:
        print_json(answer)
        return
    from rich.text import Text

    d = _views().durable_from_dict(answer)
    out.print(Text.assemble(("✔ ", "green"), f"{d.text()} {what}"))


def _path(durable: str, action: str = "") -> str:
    return f"/durables/{segment(durable)}" + (f"/{action}" if action else "")


@app.command()
def add(
    durable: DurableArg,
    kind: Annotated[
        str,
        typer.Option("--kind", help=f"One of: {', '.join(KIND_NAMES)}.", show_default=False),
    ],
    life: Annotated[
        int,
        typer.Option(
            "--life",
            min=1,
            max=MAX_LIFE,
            help="Its life, in its kind's unit (touchdowns, cuts, shots, prints).",
            show_default=False,
        ),
    ],
    warn_at: Annotated[
        float,
        typer.Option("--warn-at", help="Warn at this fraction of its life (0.001 to 1)."),
    ] = DEFAULT_WARN_FRACTION,
    description: Annotated[
        str | None, typer.Option("--description", help="Part number, supplier, ...")
    ] = None,
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Add a durable, off the tools, with a count of 0."""
    who = current_user(user)
    body = {
        "durable": durable,
        "kind": kind.strip(),
        "life": life,
        "warn_fraction": warn_at,
        "description": description,
    }
    answer = served(
        db,
        server,
        json,
        Remote("POST", "/durables", body),
        lambda s: s.durables.add(
            durable, kind.strip(), life, who, warn_fraction=warn_at, description=description
        ),
        lambda found: _views().durable_dict(found),
    )
    _done(answer, "added", json)


@app.command()
def mount(
    durable: DurableArg,
    tool: Annotated[str, typer.Option("--tool", help="Tool id.", show_default=False)],
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Mount a durable on a tool of its kind's class (one of a kind per tool)."""
    who = current_user(user)
    answer = served(
        db,
        server,
        json,
        Remote("POST", _path(durable, "mount"), {"tool": tool}),
        lambda s: s.durables.mount(durable, tool, who),
        lambda found: _views().durable_dict(found),
    )
    _done(answer, f"mounted on {tool}", json)


@app.command()
def unmount(
    durable: DurableArg,
    reason: ReasonOption = None,
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Take a durable off its tool (it keeps its count)."""
    who = current_user(user)
    answer = served(
        db,
        server,
        json,
        Remote("POST", _path(durable, "unmount"), {"reason": reason}),
        lambda s: s.durables.unmount(durable, who, reason),
        lambda found: _views().durable_dict(found),
    )
    _done(answer, "unmounted", json)


@app.command()
def renew(
    durable: DurableArg,
    reason: Annotated[str, typer.Option("--reason", help="The cleaning done.")] = "",
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """After a cleaning: a renewable durable's count back to 0 (a mold chase)."""
    if not reason.strip():
        usage_error("--reason must say which cleaning was done", as_json=json)
    who = current_user(user)
    answer = served(
        db,
        server,
        json,
        Remote("POST", _path(durable, "renew"), {"reason": reason.strip()}),
        lambda s: s.durables.renew(durable, who, reason.strip()),
        lambda found: _views().durable_dict(found),
    )
    _done(answer, "renewed", json)


@app.command()
def show(
    durable: DurableArg,
    history: HistoryOption = str(SHOW_HISTORY),
    db: DbOption = None,
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """A durable: its count against its life, its tool, the last lots it served and its last
    history events (--history for more; --json has every one)."""
    last = last_entries(history, as_json=json)
    answer = served(
        db,
        server,
        json,
        Remote("GET", _path(durable)),
        lambda s: s.durables.show(durable),
        lambda found: _views().durable_view_dict(found),
    )
    if json:
        print_json(answer)
        return
    from rich.text import Text

    from pkgline.cli.columns import columns

    d = _views().durable_from_dict(answer)
    out.print(Text.assemble((d.id, "bold"), f"  {d.kind.value}  ", _status(d)))
    out.print(f"count     {d.count:,} of {d.life:,} {d.unit} (warns at {d.warn_at:,})")
    out.print(f"tool      {d.tool_id or '(not mounted)'}")
    out.print(f"added     {stamp(d.added_at)} by {d.added_by}")
    if d.description:
        out.print(f"about     {d.description}")
    out.print(f"lots      {served_lots(answer['lots'])}")
    events, said = the_last(answer["history"], last, "events", MORE_HISTORY)
    out.print(Text(f"History ({said})", style="italic"))
    header = ("at", "event", "by", "tool", "lot", "step", "amount", "count", "reason")
    rows = [
        [
            stamp(e["at"]),
            e["event"],
            e["by"],
            e["tool"] or "",
            e["lot"] or "",
            e["step"] or "",
            f"{e['amount']:+,}" if e["amount"] else "",
            f"{e['count_after']:,}",
            e["reason"] or "",
        ]
        for e in events
    ]
    out.print(columns(header, rows))


@app.command("list")
def list_(
    tool: Annotated[str | None, typer.Option("--tool", help="Only those on this tool.")] = None,
    mounted: Annotated[
        bool, typer.Option("--mounted", help="Only those mounted on a tool (not the shelf's).")
    ] = False,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            min=1,
            max=MAX_DURABLE_PAGE,
            help=f"At most this many (default: {DURABLE_PAGE} in the table; every durable "
            "with --json).",
            show_default=False,
        ),
    ] = None,
    after: Annotated[
        str | None,
        typer.Option("--after", help="Start after this durable (the last of the page before)."),
    ] = None,
    db: DbOption = None,
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """Durables by id, a page at a time (all, a tool's, or those on the tools): kind, tool,
    count against life, status; says how many match and how to see the next page."""
    from pkgline.cli import pages

    size = limit or (MAX_DURABLE_PAGE if json else DURABLE_PAGE)

    def params(after: str | None) -> list[tuple[str, str]]:
        given = {"tool": tool, "mounted": "true" if mounted else None, "after": after}
        return [(k, v) for k, v in given.items() if v is not None] + [("limit", str(size))]

    async def direct(services: Services, after: str | None) -> dict[str, Any]:
        from mes.ports_durables import DurableQuery
        from pkgline.list_views import durables_answer

        query = DurableQuery(tool_id=tool, mounted=mounted, after=after, limit=size)
        return await durables_answer(services.durables, query)

    if json and limit is None:
        pages.write_every_page(db, server, "/durables", "durables", after, params, direct)
        return
    answer = pages.one_page_of(db, server, "/durables", params, direct, after, json)
    if json:
        print_json(answer["durables"])
        pages.json_notice(answer)
        return
    found = [_views().durable_from_dict(d) for d in answer["durables"]]
    if answer["total"] == 0:
        out.print("no durables" if (tool, mounted) == (None, False) else "no durables match")
        return
    if found:
        out.print(_durable_table(found))
    pages.print_notice(answer, "durables")


def _durable_table(found: list[Durable]) -> Table:
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    for column in ("durable", "kind", "tool", "count", "life", "unit", "used %", "status"):
        table.add_column(column, overflow="fold")
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
    return table
