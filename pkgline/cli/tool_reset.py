"""``pkgline tool reset``: have a tool's line controller reset its alarm. Thin: ask the
equipment service (through the server, ``POST /tools/{tool}/reset``, or directly:
:mod:`pkgline.tool_resets` either way), wait for the outcome, print it.

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

import math
from typing import Annotated, Any

import typer
from rich.text import Text

from pkgline.cli.common import (
    EXIT_NOT_CARRIED_OUT,
    EXIT_REFUSED,
    DbOption,
    JsonOption,
    UserOption,
    current_user,
    err,
    marked,
    out,
    print_json,
    usage_error,
)
from pkgline.cli.modes import Remote, ServerOption, either, segment
from pkgline.cli.tool import ToolArg
from pkgline.tool_resets import (
    MAX_DIRECT_WAIT_S,
    MAX_WAIT_S,
    TAKEN_GRACE_S,
    WAIT_S,
    reset_and_wait,
)

ANSWER_MARGIN_S = 15.0
"""Through the server: how much longer than ``--wait`` (and the controller's grace) the
command waits for the server's answer."""


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
            help=(
                "Wait this many seconds for the outcome (at most a day, 86,400; through the"
                " server 300); not carried out after that."
            ),
        ),
    ] = WAIT_S,
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Reset a tool's alarm through its line controller (where the tool allows it),
    recorded with who and why. The lot the alarm stopped stays on hold."""
    if not reason.strip():
        usage_error("--reason must say why the alarm may be cleared", as_json=json)
    if not (math.isfinite(wait) and wait <= MAX_DIRECT_WAIT_S):  # nan passes the range check
        usage_error(
            f"--wait {wait:g}: expected a number of seconds, 0.1 to {MAX_DIRECT_WAIT_S:,.0f}"
            f" (through the server at most {MAX_WAIT_S:g})",
            as_json=json,
        )
    why = reason.strip()

    async def work() -> dict[str, Any]:
        from pkgline.bootstrap import open_services  # direct mode only

        async with open_services(db) as services:
            return await reset_and_wait(services.equipment, tool, current_user(user), why, wait)

    remote = Remote(
        "POST",
        f"/tools/{segment(tool)}/reset",
        {"reason": why, "wait": wait},
        timeout=wait + TAKEN_GRACE_S + ANSWER_MARGIN_S,
    )
    found = either(db, server, json, work, remote)
    status = found["status"]
    code = {"done": 0, "refused": EXIT_REFUSED}.get(status, EXIT_NOT_CARRIED_OUT)
    if json:
        print_json(found)
        raise typer.Exit(code)
    if status == "done":
        out.print(
            Text.assemble(
                ("✔ ", "green"),
                f"tool {found['tool']}: {found['outcome']} "
                f"(by {found['requested_by']}: {found['reason']})",
            )
        )
        if found["dispatch"] == "auto":
            out.print(f"  line controller {found['line']} dispatches waiting lots to it again")
        else:
            out.print(
                f"  it is manual: pkgline tool auto {found['tool']} gives it back to dispatch"
            )
        out.print("  a lot the alarm stopped stays on hold: pkgline lot release when it may go on")
        return
    if status == "refused":
        stays = f" (it stays {found['state_after']})" if found["state_after"] else ""
        err.print(
            marked("✘", "bold red", f"tool {found['tool']} refused the reset: {found['outcome']}")
            + stays
        )
    elif status == "resetting":
        err.print(
            marked(
                "✘",
                "bold red",
                f"line controller {found['line']} took the request but recorded no outcome "
                f"within {wait + TAKEN_GRACE_S:g} s: see pkgline tool show {found['tool']}",
            )
        )
    else:
        err.print(marked("✘", "bold red", f"not reset: {found['outcome']}"))
    raise typer.Exit(code)
