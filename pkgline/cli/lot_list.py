"""``pkgline lot list``: lots, most urgent first, a page at a time, filtered in SQL, either way
(through the server: ``GET /lots``; or on the database); the notice of what the page left
out, and every lot as one JSON list for ``--json`` without ``--limit``, read a page at a
time (bounded memory at any number of lots).
"""

from __future__ import annotations

import sys
import textwrap
from dataclasses import replace
from json import dumps
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pkgline.cli import modes
from pkgline.cli.bounds import MAX_PRIORITY, MIN_PRIORITY
from pkgline.cli.common import DbOption, JsonOption, err, print_json, run, usage_error
from pkgline.cli.lot_view import STATE_STYLE, print_lots
from pkgline.cli.modes import ServerOption, call, query_params, say_direct, target
from pkgline.cli.times import window
from pkgline.page_sizes import LOT_PAGE, MAX_LOT_PAGE, page_answer

if TYPE_CHECKING:
    from mes.ports import LotPage, LotQuery


def register(app: typer.Typer) -> None:
    """Add ``lot list`` to the ``lot`` commands."""
    app.command("list")(list_lots)


LIST_PAGE = LOT_PAGE
"""Lots per page of ``lot list`` as a table (``--limit`` to change)."""
JSON_PAGE = MAX_LOT_PAGE
"""Lots read per query while ``lot list --json`` writes every lot (no ``--limit``)."""


def list_lots(
    state: Annotated[
        list[str] | None, typer.Option("--state", help="Only lots in this state (repeatable).")
    ] = None,
    flow: Annotated[str | None, typer.Option("--flow", help="Only lots of this flow.")] = None,
    step: Annotated[
        str | None,
        typer.Option("--step", help="Only lots at this step (running it, or waiting after it)."),
    ] = None,
    tool: Annotated[
        str | None, typer.Option("--tool", help="Only lots running on this tool.")
    ] = None,
    priority: Annotated[
        int | None,
        typer.Option(
            "--priority",
            min=MIN_PRIORITY,
            max=MAX_PRIORITY,
            help=f"Only lots of this priority ({MIN_PRIORITY}-{MAX_PRIORITY}).",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only lots moved since WHEN: 8h, 2d (ago) or a time."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="Only lots last moved before WHEN: 8h, 2d (ago) or a time."),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            min=1,
            max=MAX_LOT_PAGE,
            help=f"At most this many lots (default: {LIST_PAGE} in the table; every lot "
            "with --json).",
            show_default=False,
        ),
    ] = None,
    after: Annotated[
        str | None,
        typer.Option("--after", help="Start after this lot (the last of the page before)."),
    ] = None,
    db: DbOption = None,
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """Lots, most urgent first (priority, then age), a page at a time: says how many match
    and how to see the next page."""
    wanted = []
    for s in state or []:
        if s.upper() not in STATE_STYLE:  # the lot tracker's states (tests/test_imports.py)
            usage_error(f"--state {s!r}: expected one of {', '.join(STATE_STYLE)}", as_json=json)
        wanted.append(s.upper())
    if priority is not None and not 1 <= priority <= 9:
        usage_error(f"--priority {priority}: expected 1 (most urgent) to 9", as_json=json)
    since_at, until_at = window(since, until, as_json=json)
    size = limit or (JSON_PAGE if json else LIST_PAGE)
    via = target(server, db, as_json=json)
    if via is not None:  # the server's query string; no lot tracker imported on this path
        params = [("state", s) for s in wanted] + query_params(
            {
                "flow": flow,
                "step": step,
                "tool": tool,
                "priority": priority,
                "since": since_at.isoformat() if since_at else None,
                "until": until_at.isoformat() if until_at else None,
                "after": after,
                "limit": size,
            }
        )
        if json and limit is None:
            _write_every_remote_lot(via, params)
            return
        answer = call(via, "GET", "/lots", query=params, as_json=json, quiet=json)
        rows = answer.pop("lots")
        notice = answer
        caption = f"server: {via.url}"
    else:  # direct mode: only here the lot tracker and the database's modules are imported
        from mes.adapters.database import display_url
        from mes.domain.model import LotState
        from mes.domain.report import summary_dict
        from mes.ports import LotQuery
        from pkgline.bootstrap import open_lot_service, resolve_url

        query = LotQuery(
            states=tuple(LotState(s) for s in wanted),
            flow=flow,
            step=step,
            tool=tool,
            priority=priority,
            moved_since=since_at,
            moved_before=until_at,
            after=after,
            limit=size,
        )
        if json and limit is None:
            say_direct(db)
            run(lambda: _write_every_lot(db, query), as_json=True, db=db)
            return
        say_direct(db, quiet=json)

        async def work() -> tuple[list[dict[str, object]], LotPage]:
            async with open_lot_service(db) as service:
                page = await service.page(query)
                return [summary_dict(lot, service.flow_of(lot)) for lot in page.lots], page

        rows, page = run(work, as_json=json, db=db)
        notice = _page_notice(page, rows)
        caption = f"database: {display_url(resolve_url(db))}"
    if json:
        print_json(rows)
        # one line of JSON on stderr (scripts parse it): the mode is in it
        err.print_json(data={**notice, "mode": modes.last_mode[0]}, indent=None)
        return
    print_lots(rows, notice, caption)


def _write_every_remote_lot(via: Any, params: list[tuple[str, str]]) -> None:
    """``lot list --json`` without ``--limit`` through the server (``params``: the query
    string of GET /lots): every lot, a page of :data:`JSON_PAGE` at a time, as one JSON list
    (as in direct mode)."""
    first, quiet = True, False
    while True:
        answer = call(via, "GET", "/lots", query=params, as_json=True, quiet=quiet)
        if not quiet:
            sys.stdout.write("[")
        quiet = True
        for row in answer["lots"]:
            item = dumps(row, indent=2, default=str, ensure_ascii=False)
            sys.stdout.write(("\n" if first else ",\n") + textwrap.indent(item, "  "))
            first = False
        if not answer["more"]:
            break
        params = [(k, v) for k, v in params if k != "after"] + [("after", answer["next_after"])]
    sys.stdout.write("]\n" if first else "\n]\n")


async def _write_every_lot(db: str | None, query: LotQuery) -> None:
    """``lot list --json`` without ``--limit``: every lot that matches, as one JSON list,
    written a page at a time (bounded memory at any number of lots)."""
    from mes.domain.report import summary_dict
    from pkgline.bootstrap import open_lot_service

    async with open_lot_service(db) as service:
        first = True
        page = await service.page(query)  # a refusal (--after NOPE) before any output
        sys.stdout.write("[")
        while True:
            for lot in page.lots:
                item = dumps(
                    summary_dict(lot, service.flow_of(lot)),
                    indent=2,
                    default=str,
                    ensure_ascii=False,
                )
                sys.stdout.write(("\n" if first else ",\n") + textwrap.indent(item, "  "))
                first = False
            if not page.more:
                break
            query = replace(query, after=page.lots[-1].id)
            page = await service.page(query)
        sys.stdout.write("]\n" if first else "\n]\n")


def _page_notice(page: LotPage, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What the page left out, as the server says it (:func:`page_answer` without the lots)."""
    notice = page_answer(rows, "lots", "id", page.total, page.more, page.total_exact)
    del notice["lots"]
    return notice
