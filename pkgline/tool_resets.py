"""An alarm reset asked and waited for: the one way ``pkgline tool reset`` (direct mode) and
the server's ``POST /tools/{tool}/reset`` ask a tool's line controller to reset its alarm
and wait for what came of it (:mod:`pkgline.controller.resets` carries it out).

The request goes through equipment tracking (who, why, until when); the line controller
takes it within about half a second and records the outcome; this waits up to ``wait_s``. A
request nobody took by then, or whose asker stopped waiting (Ctrl-C at the command, a client
that went away from the server), expires: it is never carried out later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mes.domain.equipment import MAX_RESET_WAIT_S, ResetRequest, ResetStatus, ToolRecord
from pkgline.tool_views import controller_running, known_tool, reset_dict

if TYPE_CHECKING:  # the CLI reads this module's waits; only direct mode runs a reset here
    from mes.equipment import EquipmentService

WAIT_S = 30.0
"""How long ``pkgline tool reset`` waits for the outcome by default."""
MAX_WAIT_S = 300.0
"""The longest wait the server takes on."""
MAX_DIRECT_WAIT_S = MAX_RESET_WAIT_S
"""The longest wait asked directly of the database (a request is for now)."""
POLL_S = 0.1
"""How often it reads whether the outcome is there (a read, no write)."""
TAKEN_GRACE_S = 10.0
"""A request the controller took just before the wait ran out: how much longer to wait for
its outcome (the tool's answer takes about a second, its connection timeout at most)."""
STOPPED_WAITING = "the operator stopped waiting: not reset"


def reset_answer(found: ResetRequest, record: ToolRecord) -> dict[str, Any]:
    """The JSON of a reset asked (a contract: scripts read it): the request as it ended,
    and the tool's dispatch (what the line controller does with it next)."""
    return {**reset_dict(found), "dispatch": record.dispatch.value}


async def reset_and_wait(
    equipment: EquipmentService,
    tool: str,
    user: str,
    reason: str,
    wait_s: float,
    *,
    gone: Callable[[], Awaitable[bool]] | None = None,
) -> dict[str, Any]:
    """Ask ``tool``'s line controller to reset its alarm and wait for the outcome;
    ``gone``: whether the asker went away (then the request is withdrawn). Refusals (unknown
    tool, not in alarm, no controller running it, a reset under way, no authority) raise
    as the equipment service's do, having asked nothing."""
    record = await known_tool(equipment, tool)
    asked = await equipment.request_reset(
        tool,
        user,
        reason,
        wait_s=wait_s,
        controller_running=lambda c: controller_running(c, datetime.now(UTC)),
    )
    try:
        found = await _wait_for_outcome(equipment, asked, record, wait_s, gone)
    except asyncio.CancelledError:  # Ctrl-C: the operator stops waiting, so must the request
        await equipment.withdraw_reset(asked.id, STOPPED_WAITING)
        raise
    return reset_answer(found, record)


async def _wait_for_outcome(
    equipment: EquipmentService,
    asked: ResetRequest,
    record: ToolRecord,
    wait_s: float,
    gone: Callable[[], Awaitable[bool]] | None,
) -> ResetRequest:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        await asyncio.sleep(POLL_S)
        found = await equipment.reset_request(asked.id)
        if not found.status.open:
            return found
        if found.status is ResetStatus.PENDING and gone is not None and await gone():
            found = await equipment.withdraw_reset(asked.id, STOPPED_WAITING)
            if not found.status.open:
                return found
        if found.status is ResetStatus.PENDING and loop.time() >= deadline:
            found = await equipment.withdraw_reset(  # unless taken this very moment
                asked.id,
                f"line controller {record.line} did not take it within {wait_s:g} s: "
                "nothing was reset",
            )
            if not found.status.open:
                return found
        elif loop.time() >= deadline + TAKEN_GRACE_S:
            return found  # taken, and no outcome recorded
