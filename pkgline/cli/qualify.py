"""``pkgline tool qualify|disqualify|qualifications``: engineering's table of which tool may run
which step (a track-in interlock: :mod:`mes.domain.interlocks`). Thin: parse, call the
qualification service, print. Registered on ``pkgline tool`` by :mod:`pkgline.cli.app`.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from mes.domain.interlocks import Qualification
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

ToolArg = Annotated[str, typer.Argument(help="Tool id (pkgline tool list).", show_default=False)]
StepOption = Annotated[
    str, typer.Option("--step", help="Step code (pkgline flow steps).", show_default=False)
]


def qualification_dict(q: Qualification) -> dict[str, Any]:
    return {
        "tool": q.tool_id,
        "step": q.step,
        "qualified": q.qualified,
        "by": q.by,
        "at": q.at.isoformat(),
        "reason": q.reason,
    }


def _set(
    tool: str,
    step: str,
    qualified: bool,
    reason: str | None,
    user: str | None,
    db: str | None,
    as_json: bool,
) -> None:
    who = current_user(user)

    async def work() -> Qualification:
        async with open_services(db) as services:
            return await services.qualifications.set(tool, step.strip(), qualified, who, reason)

    q = run(work, as_json=as_json, db=db)
    if as_json:
        print_json(qualification_dict(q))
        return
    word = ("qualified", "bold green") if qualified else ("disqualified", "bold yellow")
    out.print(
        Text.assemble(
            ("✔ ", "green"),
            f"tool {q.tool_id} is now ",
            word,
            f" for {q.step} (by {q.by}" + (f": {q.reason})" if q.reason else ")"),
        )
    )


def qualify(
    tool: ToolArg,
    step: StepOption,
    reason: ReasonOption = None,
    db: DbOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Qualify a tool for a step: track-ins of the step may name it."""
    _set(tool, step, True, reason, user, db, json)


def disqualify(
    tool: ToolArg,
    step: StepOption,
    reason: Annotated[
        str, typer.Option("--reason", help="Why (recorded with the qualification).")
    ] = "",
    db: DbOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Disqualify a tool for a step: track-ins of the step on it are refused, the controller's
    too, until it is qualified again."""
    if not reason.strip():
        usage_error("--reason must say why the tool is disqualified", as_json=json)
    _set(tool, step, False, reason.strip(), user, db, json)


def qualifications(
    tool: Annotated[str | None, typer.Option("--tool", help="Only this tool.")] = None,
    step: Annotated[str | None, typer.Option("--step", help="Only this step.")] = None,
    db: DbOption = None,
    json: JsonOption = False,
) -> None:
    """The qualification table: tool, step, qualified or not, by whom, when, why."""

    async def work() -> list[Qualification]:
        async with open_services(db) as services:
            return await services.qualifications.list(tool_id=tool, step=step)

    found = run(work, as_json=json, db=db)
    if json:
        print_json([qualification_dict(q) for q in found])
        return
    if not found:
        out.print("no qualifications recorded")
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("tool", "step", "qualified", "by", "at", "reason"):
        table.add_column(column)
    for q in found:
        table.add_row(
            q.tool_id,
            q.step,
            Text("yes", style="green") if q.qualified else Text("no", style="bold yellow"),
            q.by,
            f"{q.at:%Y-%m-%d %H:%M:%S}",
            q.reason or "",
        )
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add the qualification commands to ``pkgline tool``."""
    app.command("qualify")(qualify)
    app.command("disqualify")(disqualify)
    app.command("qualifications")(qualifications)
