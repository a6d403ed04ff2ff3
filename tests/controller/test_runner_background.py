"""Work a runner leaves in the background (the acknowledge) never fails unseen."""

from __future__ import annotations

import asyncio
import gc
from typing import Any, cast

import pytest

from drivers.catalogue import EquipmentClass
from drivers.config import ModbusEndpoint
from drivers.errors import ToolUnreachable
from drivers.interface import ToolDriver
from mes.equipment import EquipmentService
from mes.service import LotService
from pkgline.config import LineTool
from pkgline.controller.runner import ToolRunner


def _runner() -> ToolRunner:
    """A runner with nothing behind it: only its background work is used here."""
    tool = LineTool(
        id="MOLD-1", equipment_class=EquipmentClass.MOLDER, endpoint=ModbusEndpoint(port=5020)
    )
    return ToolRunner(
        tool,
        cast(ToolDriver, object()),
        cast(LotService, object()),
        cast(EquipmentService, object()),
        user="test",
    )


async def test_a_failed_acknowledge_nobody_awaits_any_more_is_not_left_unretrieved() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        runner = _runner()

        async def acknowledge() -> None:
            raise ToolUnreachable("the connection was closed", tool_id="MOLD-1")

        task = runner._background(acknowledge())
        for _ in range(3):  # it runs and fails; nobody awaits it (its runner was stopped)
            await asyncio.sleep(0)
        assert task.done()
        del task, runner
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert reported == []


async def test_the_failure_still_reaches_whoever_awaits_it() -> None:
    runner = _runner()

    async def acknowledge() -> None:
        raise ToolUnreachable("the connection was closed", tool_id="MOLD-1")

    runner._acknowledging = runner._background(acknowledge())
    await asyncio.sleep(0)
    with pytest.raises(ToolUnreachable, match="closed"):
        await runner._acknowledged()
