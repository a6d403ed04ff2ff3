"""An unknown tool named by a command that is not a tool command (durable mount, material
load, their lists): refused with the tools there are, as ``tool show NOPE`` says it."""

from __future__ import annotations

from mes.domain.errors import UnknownTool
from mes.ports import UnitOfWorkFactory


async def naming_the_tools(uow: UnitOfWorkFactory, unknown: UnknownTool) -> UnknownTool:
    """``unknown`` (a command that named no tool) with the tools there are as ``allowed``,
    as the tool commands say it (``tool show NOPE``), for the durable and material commands
    that name a tool."""
    if unknown.allowed:
        return unknown
    async with uow(readonly=True) as read:
        known = sorted(t.id for t in await read.equipment.tools())
    return UnknownTool(
        unknown.message + ("" if known else " (no tool is registered yet)"), allowed=known
    )
