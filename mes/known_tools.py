"""An unknown tool, refused with the tools there are, as ``tool show NOPE`` says it: all of
them on a small line; on a plant's line of hundreds, the few whose ids are close to the one
asked for and how many there are (a refusal a person reads, not a list of 500 ids)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from mes.domain.errors import UnknownTool
from mes.ports import UnitOfWorkFactory

ALL_NAMED_UP_TO = 20
"""Up to this many tools, a refusal names them all; past it, the closest few."""
CLOSEST = 5


def unknown_tool(tool_id: str, known: Iterable[str]) -> UnknownTool:
    """The refusal of ``tool_id``, not among the ``known`` tools' ids: with them all as
    ``allowed`` on a line of up to :data:`ALL_NAMED_UP_TO` tools; past that, with the ids
    closest to ``tool_id``, closest first (none when none is close), and how many tools there are."""
    ids = sorted(known)
    message = f"there is no tool {tool_id}"
    if not ids:
        return UnknownTool(message + " (no tool is registered yet)", tool_id=tool_id)
    if len(ids) <= ALL_NAMED_UP_TO:
        return UnknownTool(message, tool_id=tool_id, allowed=ids)
    close = difflib.get_close_matches(tool_id, ids, n=CLOSEST, cutoff=0.6)  # closest first
    near = f"the closest: {', '.join(close)}" if close else "none of them close to it"
    return UnknownTool(
        f"{message} ({len(ids)} tools are registered; {near})",
        tool_id=tool_id,
        allowed=close,
    )


async def naming_the_tools(uow: UnitOfWorkFactory, unknown: UnknownTool) -> UnknownTool:
    """``unknown`` (a command that named no tool) with the tools there are, as
    :func:`unknown_tool` says them, for the durable, material and SPC commands that name a
    tool."""
    if unknown.allowed or unknown.tool_id is None:
        return unknown
    async with uow(readonly=True) as read:
        known = [t.id for t in await read.equipment.tools()]
    return unknown_tool(unknown.tool_id, known)
