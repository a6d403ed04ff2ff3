"""``pkgline tool list``'s pages, either way (through the server or on the database): one page
with its count, and every tool for ``--json`` without ``--limit`` (read a page at a time),
through :mod:`pkgline.cli.pages`, which also says what a page left out. The answer of a page is ``GET /tools``'s, built by
:func:`pkgline.tool_views.tools_page_answer` in both modes."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mes.ports import ToolQuery
from pkgline.cli.pages import DirectPage, Params, one_page_of, write_every_page
from pkgline.tool_views import tools_page_answer


def query_params(query: ToolQuery) -> list[tuple[str, str]]:
    """A tool query as the query string of GET /tools."""
    return [
        (name, str(value))
        for name, value in (
            ("line", query.line),
            ("class", query.equipment_class),
            ("state", query.e10),
            ("dispatch", query.dispatch),
            ("after", query.after),
            ("limit", query.limit),
        )
        if value is not None
    ]


def _ways(query: ToolQuery) -> tuple[Params, DirectPage]:
    """``query``'s page after a cursor, through the server and on the database."""
    return (
        lambda after: query_params(replace(query, after=after)),
        lambda services, after: tools_page_answer(
            services.equipment, replace(query, after=after), services.lots
        ),
    )


def one_page(db: str | None, server: str | None, query: ToolQuery, as_json: bool) -> dict[str, Any]:
    """The page ``query`` asks for (``GET /tools``'s answer); with ``as_json`` the mode is
    not said on its own line (the JSON notice on standard error carries it)."""
    return one_page_of(db, server, "/tools", *_ways(query), query.after, as_json)


def write_every_tool(db: str | None, server: str | None, query: ToolQuery) -> None:
    """``tool list --json`` without ``--limit``: every tool that matches, as one JSON list,
    read and written a page of ``query.limit`` at a time. A refusal (``--after`` naming no
    tool) comes before any output."""
    write_every_page(db, server, "/tools", "tools", query.after, *_ways(query))
