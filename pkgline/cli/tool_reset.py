"""``pkgline tool reset``: have a tool's line controller reset its alarm. Thin: ask the
equipment service, wait for the outcome, print it.

The line controller owns the connection to the tool, so the request goes through equipment
tracking (who, why, until when), the controller carries it out within about half a second
(:mod:`pkgline.controller.resets`) and records what came of it; this command waits for that
up to ``--wait`` seconds. If nobody took the request by then (or the operator stops waiting,
Ctrl-C) it expires: it is never carried out later.

Exit codes (with :mod:`pkgline.cli.common`'s): 0 the tool reset its alarm; 1 refused, nothing
changed: unknown tool, not in alarm, no line controller running it, a reset already under way,
or the tool itself refused (its reason: the alarm's cause is still there, ...); 5 not carried
out: the tool did not answer, or its line controller did not take the request in time.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.text import Text

from mes.domain.equipment import DispatchMode, ResetRequest, ResetStatus, ToolRecord
from mes.equipment import EquipmentService
from mes.service import utc_now
from pkgline.bootstrap import open_services
from pkgline.cli.common import (
    EXIT_NOT_CARRIED_OUT,
    EXIT_REFUSED,
    DbOption,
    JsonOption,
    UserOption,
    current_user,
    err,
    out,
    print_json,
    run,
    usage_error,
)
from pkgline.cli.tool import ToolArg
from pkgline.tool_views import controller_running, known_tool, reset_dict

WAIT_S = 30.0
"""How long ``pkgline tool reset`` waits for the outcome by default."""
POLL_S = 0.1
"""How often it reads whether the outcome is there (a read, no write)."""
TAKEN_GRACE_S = 10.0
"""A request the controller took just before the wait ran out: how much longer to wait for
its outcome (the tool's answer takes about a second, its connection timeout at most)."""


async def _outcome(
    tool: str, who: str, reason: str, wait_s: float, db: str | None
) -> tuple[ResetRequest, ToolRecord]:
    async with open_services(db) as services:
        equipment = services.equipment
        record = await known_tool(equipment, tool)
        asked = await equipment.request_reset(
            tool,
            who,
            reason,
            wait_s=wait_s,
            controller_running=lambda c: controller_running(c, utc_now()),
        )
        try:
            return await _wait_for_outcome(equipment, asked, record, wait_s)
        except asyncio.CancelledError:  # Ctrl-C: the operator stops waiting, so must the request
            await equipment.withdraw_reset(asked.id, "the operator stopped waiting: not reset")
            raise


async def _wait_for_outcome(
    equipment: EquipmentService, asked: ResetRequest, record: ToolRecord, wait_s: float
) -> tuple[ResetRequest, ToolRecord]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        await asyncio.sleep(POLL_S)
        found = await equipment.reset_request(asked.id)
        if not found.status.open:
            return found, record
        if found.status is ResetStatus.PENDING and loop.time() >= deadline:
            found = await equipment.withdraw_reset(  # unless taken this very moment
                asked.id,
                f"line controller {record.line} did not take it within {wait_s:g} s: "
                "nothing was reset",
            )
            if not found.status.open:
                return found, record
        elif loop.time() >= deadline + TAKEN_GRACE_S:
            return found, record  # taken, and no outcome recorded


def reset(
    tool: ToolArg,
    reason: Annotated[
        str,
        typer.Option(
            "--reason", help="Why the alarm may be cleared (recorded).", show_default=False
        ),
    ],
    wait: Annotated[
        float,
        typer.Option(
            "--wait",
            min=0.1,
            help="Wait this many seconds for the outcome; not carried out after that.",
        ),
    ] = WAIT_S,
    db: DbOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Reset a tool's alarm through its line controller (where the tool allows it),
    recorded with who and why. The lot the alarm stopped stays on hold."""
    if not reason.strip():
        usage_error("--reason must say why the alarm may be cleared", as_json=json)
    who = current_user(user)
    found, record = run(lambda: _outcome(tool, who, reason.strip(), wait, db), as_json=json, db=db)
    code = {
        ResetStatus.DONE: 0,
        ResetStatus.REFUSED: EXIT_REFUSED,
    }.get(found.status, EXIT_NOT_CARRIED_OUT)
    if json:
        print_json(reset_dict(found))
        raise typer.Exit(code)
    if found.status is ResetStatus.DONE:
        out.print(
            Text.assemble(
                ("✔ ", "green"),
                f"tool {found.tool_id}: {found.outcome} (by {who}: {found.reason})",
            )
        )
        if record.dispatch is DispatchMode.AUTO:
            out.print(f"  line controller {found.line} dispatches waiting lots to it again")
        else:
            out.print(
                f"  it is manual: pkgline tool auto {found.tool_id} gives it back to dispatch"
            )
        out.print("  a lot the alarm stopped stays on hold: pkgline lot release when it may go on")
        return
    if found.status is ResetStatus.REFUSED:
        err.print(
            f"[bold red]✘[/] tool {found.tool_id} refused the reset: {found.outcome}"
            + (f" (it stays {found.state_after})" if found.state_after else "")
        )
    elif found.status is ResetStatus.RESETTING:
        err.print(
            f"[bold red]✘[/] line controller {found.line} took the request but recorded no "
            f"outcome within {wait + TAKEN_GRACE_S:g} s: see pkgline tool show {found.tool_id}"
        )
    else:
        err.print(f"[bold red]✘[/] not reset: {found.outcome}")
    raise typer.Exit(code)
