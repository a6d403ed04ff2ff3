"""``pkgline tool list``'s pages, either way (through the server or on the database): one page
with its count, every tool for ``--json`` without ``--limit`` (read a page at a time), and the
notice of what the page left out. The answer of a page is ``GET /tools``'s, built by
:func:`pkgline.tool_views.tools_page_answer` in both modes."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterable
from dataclasses import replace
from json import dumps
from typing import Any

from mes.ports import ToolQuery
from pkgline.bootstrap import open_services
from pkgline.cli import modes
from pkgline.cli.common import err, out, run
from pkgline.cli.modes import call, say_direct, target
from pkgline.tool_views import tools_page_answer


def query_params(query: ToolQuery) -> list[tuple[str, str]]:
    """A tool query as the query string of GET /tools."""
    return [
        (name, str(value))
        for name, value in (
            ("line", query.line),
            ("class", query.equipment_class),
            ("state", query.e10),
            ("after", query.after),
            ("limit", query.limit),
        )
        if value is not None
    ]


def one_page(db: str | None, server: str | None, query: ToolQuery, as_json: bool) -> dict[str, Any]:
    """The page ``query`` asks for (``GET /tools``'s answer); with ``as_json`` the mode is
    not said on its own line (the JSON notice on standard error carries it)."""
    via = target(server, db, as_json=as_json)
    if via is not None:
        answer: dict[str, Any] = call(
            via, "GET", "/tools", query=query_params(query), as_json=as_json, quiet=as_json
        )
        return answer
    say_direct(db, quiet=as_json)

    async def work() -> dict[str, Any]:
        async with open_services(db) as services:
            return await tools_page_answer(services.equipment, query)

    return run(work, as_json=as_json, db=db)


class _JsonList:
    """A JSON list written item by item, as :func:`pkgline.cli.common.print_json` would
    write it whole."""

    def __init__(self) -> None:
        self._first = True
        sys.stdout.write("[")

    def extend(self, items: Iterable[Any]) -> None:
        for item in items:
            text = dumps(item, indent=2, default=str, ensure_ascii=False)
            sys.stdout.write(("\n" if self._first else ",\n") + textwrap.indent(text, "  "))
            self._first = False

    def close(self) -> None:
        sys.stdout.write("]\n" if self._first else "\n]\n")


def write_every_tool(db: str | None, server: str | None, query: ToolQuery) -> None:
    """``tool list --json`` without ``--limit``: every tool that matches, as one JSON list,
    read and written a page of ``query.limit`` at a time. A refusal (``--after`` naming no
    tool) comes before any output."""
    via = target(server, db, as_json=True)
    if via is not None:
        answer = call(via, "GET", "/tools", query=query_params(query), as_json=True)
        listing = _JsonList()
        while True:
            listing.extend(answer["tools"])
            if not answer["more"]:
                break
            query = replace(query, after=answer["next_after"])
            answer = call(via, "GET", "/tools", query=query_params(query), as_json=True, quiet=True)
        listing.close()
        return
    say_direct(db)

    async def work() -> None:
        nonlocal query
        async with open_services(db) as services:
            answer = await tools_page_answer(services.equipment, query)
            listing = _JsonList()
            while True:
                listing.extend(answer["tools"])
                if not answer["more"]:
                    break
                query = replace(query, after=answer["next_after"])
                answer = await tools_page_answer(services.equipment, query)
            listing.close()

    run(work, as_json=True, db=db)


def json_notice(answer: dict[str, Any]) -> None:
    """What a page left out, as one line of JSON on standard error (scripts parse it)."""
    notice = {k: answer[k] for k in ("total", "shown", "more", "next_after")}
    err.print_json(data={**notice, "mode": modes.last_mode[0]}, indent=None)


def print_notice(answer: dict[str, Any], noun: str = "tools") -> None:
    """``N of M tools`` (or ``noun``), and how to see the next page when more follow."""
    from rich.text import Text

    shown = f"{answer['shown']:,} of {answer['total']:,} {noun}"
    if answer["more"]:
        out.print(
            Text.assemble(
                (f"{shown}; more follow: ", "yellow"),
                f"the same command with --after {answer['next_after']}",
            )
        )
    else:
        out.print(shown)
