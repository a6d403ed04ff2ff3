"""``pkgline tool down`` and ``tool up``: a person declares a tool out of production, in
SEMI E10 terms (``--planned``: scheduled down, preventive maintenance; ``--not-scheduled``:
not scheduled for production), and brings it back. Thin: the equipment service decides
(:mod:`mes.domain.tool_down`), through the server (``POST /tools/{tool}/down|up``) or
directly.

While declared, the tool's E10 state is the declared one whatever it reports, its track-ins
are refused (the line controller's too) and ``tool show``/``tool list`` say who declared it,
when and why. Refused, nothing changed (exit 1): a lot runs on the tool (it finishes, or is
aborted, first).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.text import Text

from pkgline.cli.common import (
    DbOption,
    JsonOption,
    UserOption,
    current_user,
    out,
    print_json,
    usage_error,
)
from pkgline.cli.modes import Remote, ServerOption, either, segment
from pkgline.cli.tool import ToolArg, e10_text
from pkgline.tool_views import down_answer

PLANNED = "scheduled_down"
NOT_SCHEDULED = "non_scheduled"


def _declare(
    tool: str,
    down: str | None,
    reason: str | None,
    user: str | None,
    db: str | None,
    server: str | None,
    json: bool,
) -> dict[str, Any]:
    async def work() -> dict[str, Any]:
        from pkgline.bootstrap import open_services  # direct mode only

        async with open_services(db) as services:
            return await down_answer(
                services.equipment, tool, down, current_user(user), reason, services.lots
            )

    if down is None:
        remote = Remote("POST", f"/tools/{segment(tool)}/up", {"reason": reason})
    else:
        remote = Remote("POST", f"/tools/{segment(tool)}/down", {"e10": down, "reason": reason})
    record: dict[str, Any] = either(db, server, json, work, remote)
    return record


def down(
    tool: ToolArg,
    reason: Annotated[
        str,
        typer.Option("--reason", help="Why (recorded with the tool).", show_default=False),
    ],
    planned: Annotated[
        bool,
        typer.Option("--planned", help="Planned (preventive) maintenance: E10 scheduled_down."),
    ] = False,
    not_scheduled: Annotated[
        bool,
        typer.Option("--not-scheduled", help="Not scheduled for production: E10 non_scheduled."),
    ] = False,
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Declare a tool out of production (planned maintenance, or not scheduled): no lot is
    tracked in on it until it is brought up (pkgline tool up)."""
    if planned == not_scheduled:
        usage_error("say which: --planned (maintenance) or --not-scheduled", as_json=json)
    if not reason.strip():
        usage_error("--reason must say why the tool goes down", as_json=json)
    e10 = PLANNED if planned else NOT_SCHEDULED
    record = _declare(tool, e10, reason.strip(), user, db, server, json)
    if json:
        print_json(record)
        return
    said = Text.assemble(("✔ ", "green"), f"tool {record['id']} is ", e10_text(e10))
    if not record.get("changed", True):
        said.append(f" already (since {record['down_at']} by {record['down_by']}); nothing changed")
    else:
        said.append(f" (by {record['down_by']}: {record['down_reason']})")
    out.print(said)
    out.print(
        f"  track-ins on it are refused, and line controller {record['line']} dispatches "
        f"nothing to it, until it is brought up: pkgline tool up {record['id']}"
    )


def up(
    tool: ToolArg,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (recorded with the change).")
    ] = None,
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Bring a tool declared down back into production: it is in the state it reports."""
    record = _declare(tool, None, reason, user, db, server, json)
    if json:
        print_json(record)
        return
    if not record.get("changed", True):
        out.print(
            Text.assemble(
                ("✔ ", "green"),
                f"tool {record['id']} is not declared down (",
                e10_text(record["e10"]),
                "); nothing changed",
            )
        )
        return
    out.print(
        Text.assemble(
            ("✔ ", "green"),
            f"tool {record['id']} is up: ",
            e10_text(record["e10"]),
            " as it reports",
        )
    )
