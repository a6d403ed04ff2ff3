"""A list's pages, either way (through the server or on the database), for the CLI's list
commands: one page with its count (:func:`one_page_of`), every item for ``--json`` without
``--limit``, read and written a page at a time (:func:`write_every_page`), and the notice of
what a page left out (:func:`json_notice`, :func:`print_notice`). Imports neither the lot
tracker nor the database code until a command runs on the database: the client path through
the server stays light."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Awaitable, Callable, Iterable
from json import dumps
from typing import TYPE_CHECKING, Any

from pkgline.cli import modes
from pkgline.cli.common import err, out, run
from pkgline.cli.common import noun as said
from pkgline.cli.modes import call, say_direct, target

if TYPE_CHECKING:
    from pkgline.bootstrap import Services

DirectPage = Callable[["Services", "str | None"], Awaitable[dict[str, Any]]]
"""A page on the database: the services and the cursor, to the route's answer."""


Params = Callable[[str | None], list[tuple[str, str]]]
"""A page through the server: the cursor, to the query string of ``GET path``."""


def one_page_of(
    db: str | None,
    server: str | None,
    path: str,
    params: Params,
    direct: DirectPage,
    after: str | None,
    as_json: bool,
) -> dict[str, Any]:
    """The page after the cursor ``after``: through the server ``GET path`` with
    ``params(after)``, on the database ``direct(services, after)``; with ``as_json`` the mode
    is not said on its own line (the JSON notice on standard error carries it)."""
    via = target(server, db, as_json=as_json)
    if via is not None:
        answer: dict[str, Any] = call(
            via, "GET", path, query=params(after), as_json=as_json, quiet=as_json
        )
        return answer
    say_direct(db, quiet=as_json)

    async def work() -> dict[str, Any]:
        from pkgline.bootstrap import open_services

        async with open_services(db) as services:
            return await direct(services, after)

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


def write_every_page(
    db: str | None,
    server: str | None,
    path: str,
    items: str,
    after: str | None,
    params: Params,
    direct: DirectPage,
) -> None:
    """A list's every item as one JSON list (``--json`` without ``--limit``), read and
    written a page at a time from the cursor ``after`` on: through the server, ``GET path``
    with ``params(after)``; on the database, ``direct(services, after)``. Each answers a
    page (``{items: [...], "more", "next_after", ...}``). A refusal (a cursor naming
    nothing) comes before any output."""
    via = target(server, db, as_json=True)
    if via is not None:
        answer = call(via, "GET", path, query=params(after), as_json=True)
        listing = _JsonList()
        while True:
            listing.extend(answer[items])
            if not answer["more"]:
                break
            page = params(answer["next_after"])
            answer = call(via, "GET", path, query=page, as_json=True, quiet=True)
        listing.close()
        return
    say_direct(db)

    async def work() -> None:
        from pkgline.bootstrap import open_services

        async with open_services(db) as services:
            answer = await direct(services, after)
            listing = _JsonList()
            while True:
                listing.extend(answer[items])
                if not answer["more"]:
                    break
                answer = await direct(services, answer["next_after"])
            listing.close()

    run(work, as_json=True, db=db)


def json_notice(answer: dict[str, Any]) -> None:
    """What a page left out, as one line of JSON on standard error (scripts parse it)."""
    notice = {k: answer[k] for k in ("total", "shown", "more", "next_after")}
    notice["total_exact"] = answer.get("total_exact", True)  # not said by an older server
    for key in ("total_after", "total_after_exact"):  # the event feed's: those after --after
        if key in answer:
            notice[key] = answer[key]
    err.print_json(data={**notice, "mode": modes.last_mode[0]}, indent=None)


def print_notice(answer: dict[str, Any], noun: str = "tools") -> None:
    """``N of M tools`` (or ``noun``; ``N of more than M`` where the count stopped at its
    bound), and how to see the next page when more follow."""
    from rich.text import Text

    total = answer["total"]
    of = f"{total:,}" if answer.get("total_exact", True) else f"more than {total:,}"
    shown = f"{answer['shown']:,} of {of} {said(noun, total)}"
    if answer["more"]:
        out.print(
            Text.assemble(
                (f"{shown}; more follow: ", "yellow"),
                f"the same command with --after {answer['next_after']}",
            )
        )
    else:
        out.print(shown)
