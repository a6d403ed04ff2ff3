"""``pkgline tool qualify|disqualify|qualifications``: engineering's table of which tool may run
which step (a track-in interlock: :mod:`mes.domain.interlocks`). Thin: parse, call the
qualification service, print. Registered on ``pkgline tool`` by :mod:`pkgline.cli.app`.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pkgline.cli.common import (
    DbOption,
    JsonOption,
    ReasonOption,
    UserOption,
    current_user,
    out,
    print_json,
    usage_error,
)
from pkgline.cli.modes import Remote, ServerOption, either, segment
from pkgline.cli.times import stamp
from pkgline.tool_views import qualification_dict

ToolArg = Annotated[str, typer.Argument(help="Tool id (pkgline tool list).", show_default=False)]
StepOption = Annotated[
    str, typer.Option("--step", help="Step code (pkgline flow steps).", show_default=False)
]


def _set(
    tool: str,
    step: str,
    qualified: bool,
    reason: str | None,
    user: str | None,
    db: str | None,
    server: str | None,
    as_json: bool,
) -> None:
    async def work() -> dict[str, Any]:
        from pkgline.bootstrap import open_services  # direct mode only

        async with open_services(db) as services:
            q = await services.qualifications.set(
                tool, step.strip(), qualified, current_user(user), reason
            )
            return qualification_dict(q)

    verb = "qualify" if qualified else "disqualify"
    body = {"step": step, "reason": reason}
    q = either(db, server, as_json, work, Remote("POST", f"/tools/{segment(tool)}/{verb}", body))
    if as_json:
        print_json(q)
        return
    from rich.text import Text

    word = ("qualified", "bold green") if qualified else ("disqualified", "bold yellow")
    out.print(
        Text.assemble(
            ("✔ ", "green"),
            f"tool {q['tool']} is now ",
            word,
            f" for {q['step']} (by {q['by']}" + (f": {q['reason']})" if q["reason"] else ")"),
        )
    )


def qualify(
    tool: ToolArg,
    step: StepOption,
    reason: ReasonOption = None,
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Qualify a tool for a step: track-ins of the step may name it (technician, engineer)."""
    _set(tool, step, True, reason, user, db, server, json)


def disqualify(
    tool: ToolArg,
    step: StepOption,
    reason: Annotated[
        str, typer.Option("--reason", help="Why (recorded with the qualification).")
    ] = "",
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Disqualify a tool for a step: track-ins of the step on it are refused, the controller's
    too, until it is qualified again (technician, engineer)."""
    if not reason.strip():
        usage_error("--reason must say why the tool is disqualified", as_json=json)
    _set(tool, step, False, reason.strip(), user, db, server, json)


def qualifications(
    tool: Annotated[str | None, typer.Option("--tool", help="Only this tool.")] = None,
    step: Annotated[str | None, typer.Option("--step", help="Only this step.")] = None,
    db: DbOption = None,
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """The qualification table: tool, step, qualified or not, by whom, when, why."""

    async def work() -> list[dict[str, Any]]:
        from pkgline.bootstrap import open_services  # direct mode only

        async with open_services(db) as services:
            found = await services.qualifications.list(tool_id=tool, step=step)
            return [qualification_dict(q) for q in found]

    query = [(k, v) for k, v in (("tool", tool), ("step", step)) if v is not None]
    found = either(db, server, json, work, Remote("GET", "/qualifications", query=query))
    if json:
        print_json(found)
        return
    if not found:
        out.print("no qualifications recorded")
        return

    from rich.table import Table
    from rich.text import Text

    table = Table(show_edge=False, pad_edge=False)
    for column in ("tool", "step", "qualified", "by", "at", "reason"):
        table.add_column(column, overflow="fold")
    for q in found:
        table.add_row(
            q["tool"],
            q["step"],
            Text("yes", style="green") if q["qualified"] else Text("no", style="bold yellow"),
            q["by"],
            stamp(q["at"]),
            q["reason"] or "",
        )
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add the qualification commands to ``pkgline tool``."""
    app.command("qualify")(qualify)
    app.command("disqualify")(disqualify)
    app.command("qualifications")(qualifications)
