"""``pkgline lot history``: the line's lot history, newest first, a page at a time, either way
(through the server: ``GET /history``; or on the database), filtered in SQL by lot, tool,
user, operation, step and time. The answer is built by
:func:`pkgline.list_views.history_answer` in both modes; each entry is as in ``lot show``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pkgline.cli.common import DbOption, JsonOption, print_json, usage_error
from pkgline.cli.modes import Remote, ServerOption, either, query_params
from pkgline.cli.times import iso, window
from pkgline.page_sizes import HISTORY_PAGE, MAX_CURSOR, MAX_HISTORY_PAGE


def register(app: typer.Typer) -> None:
    """Add ``lot history`` to the ``lot`` commands."""
    app.command("history")(history)


def history(
    lot: Annotated[str | None, typer.Option("--lot", help="Only this lot's entries.")] = None,
    tool: Annotated[str | None, typer.Option("--tool", help="Only entries on this tool.")] = None,
    user: Annotated[
        str | None, typer.Option("--user", help="Only entries made by or for this user.")
    ] = None,
    operation: Annotated[
        str | None,
        typer.Option(
            "--operation",
            help="Only this operation: start, track_in, track_out, hold, release, scrap, "
            "split, merge, rework, ... (as lot show names them).",
        ),
    ] = None,
    step: Annotated[str | None, typer.Option("--step", help="Only entries of this step.")] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="At or after WHEN: 30m, 8h, 2d (ago) or a local time."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="Before WHEN: 30m, 8h, 2d (ago) or a local time."),
    ] = None,
    limit: Annotated[
        int,
        typer.Option(
            "--limit", min=1, max=MAX_HISTORY_PAGE, help="At most this many, newest first."
        ),
    ] = HISTORY_PAGE,
    after: Annotated[
        int | None,
        typer.Option(
            "--after",
            min=1,
            max=MAX_CURSOR,
            help="Start after this entry (the last seq of the page before).",
        ),
    ] = None,
    db: DbOption = None,
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """The line's lot history, newest first, a page at a time: every lot's entries, or one
    lot's, tool's or person's; says how many match and how to see the next (older) page."""
    from mes.domain.errors import InvalidInput
    from pkgline.cli import pages
    from pkgline.cli.lot_view import print_entries, print_entry_signatures
    from pkgline.list_views import history_answer, history_query

    since_at, until_at = window(since, until, as_json=json)
    given = {
        "lot": lot,
        "tool": tool,
        "user": user,
        "operation": operation,
        "step": step,
        "since": iso(since_at),
        "until": iso(until_at),
        "after": after,
        "limit": limit,
    }
    try:
        query = history_query(given, "--")
    except InvalidInput as exc:
        usage_error(exc.message, as_json=json)

    async def direct() -> dict[str, Any]:
        from pkgline.bootstrap import open_services

        async with open_services(db) as services:
            return await history_answer(services.lots, services.equipment, query)

    shown = either(db, server, json, direct, Remote("GET", "/history", query=query_params(given)))
    if json:
        print_json(shown["entries"])
        pages.json_notice(shown)
        return
    if shown["entries"]:
        print_entries(shown["entries"], "Lot history, newest first", None)
        print_entry_signatures(shown["entries"])
    pages.print_notice(shown, "entries")
