"""``pkgline tool jobs``: a tool's jobs, newest first, a page at a time, either way (through
the server or on the database): when each started, for which lot, step and carrier, how it
ended, its sites in and rejected and its yield. The answer is ``GET /tools/{tool}/jobs``'s,
built by :func:`pkgline.list_views.tool_jobs_answer` in both modes."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mes.domain.errors import InvalidInput
from pkgline.cli.common import DbOption, JsonOption, print_json, usage_error
from pkgline.cli.modes import Remote, ServerOption, either, query_params, segment
from pkgline.cli.times import iso, window
from pkgline.list_views import JOBS_PAGE, MAX_JOBS_PAGE, tool_jobs_answer


def jobs(
    tool: Annotated[str, typer.Argument(help="Tool id (pkgline tool list).", show_default=False)],
    limit: Annotated[
        int,
        typer.Option("--limit", min=1, max=MAX_JOBS_PAGE, help="At most this many, newest first."),
    ] = JOBS_PAGE,
    after: Annotated[
        str | None,
        typer.Option("--after", help="Start after this job (the last of the page before)."),
    ] = None,
    lot: Annotated[str | None, typer.Option("--lot", help="Only this lot's jobs.")] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="Started at or after WHEN: 30m, 8h, 2d (ago) or a local time."
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="Started before WHEN: 30m, 8h, 2d (ago) or a local time."),
    ] = None,
    db: DbOption = None,
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """A tool's jobs, newest first, a page at a time: started, lot, step, carrier, status,
    sites in and rejected, yield; says how many match and how to see the next (older) page."""
    from mes.ports import ToolJobQuery
    from pkgline.cli import pages
    from pkgline.cli.tool import print_jobs

    since_at, until_at = window(since, until, as_json=json)
    try:
        query = ToolJobQuery(
            tool_id=tool,
            lot_id=lot,
            since=since_at,
            until=until_at,
            after=after,
            limit=limit,
        )
    except InvalidInput as exc:
        usage_error(exc.message, as_json=json)

    async def direct() -> dict[str, Any]:
        from pkgline.bootstrap import open_services
        from pkgline.tool_views import known_tool

        async with open_services(db) as services:
            await known_tool(services.equipment, tool)
            return await tool_jobs_answer(services.lots, query)

    params = query_params(
        {
            "lot": lot,
            "since": iso(since_at),
            "until": iso(until_at),
            "after": after,
            "limit": limit,
        }
    )
    remote = Remote("GET", f"/tools/{segment(tool)}/jobs", query=params)
    shown = either(db, server, json, direct, remote)
    if json:
        print_json(shown["jobs"])
        pages.json_notice(shown)
        return
    if shown["jobs"]:
        print_jobs(shown["jobs"], f"Jobs of {tool}, newest first")
    pages.print_notice(shown, "jobs")
