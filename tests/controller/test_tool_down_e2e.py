"""A tool a person declared down (``tool down --planned``) with its line controller and a
simulated tool running: the controller's reports keep it scheduled down, it tracks no lot in
there (its refusal, interlock ``tool_down``, shows in ``line status``), and once the tool is
brought up it is in the state the tool reports and the waiting lot is tracked in."""

from __future__ import annotations

from typing import Any

from mes.domain import commands as cmd
from mes.domain.equipment import ToolRegistration
from mes.domain.model import LotState
from mes.service import utc_now
from pkgline.bootstrap import open_services
from pkgline.line_views import read_status, status_dict
from tests.controller.conftest import Stack, line_config, running_controller, simulated, wait_until


async def _refused(stack: Stack) -> list[dict[str, Any]]:
    async with open_services(stack.url) as services:
        shown = status_dict(await read_status(services, utc_now()), "db")
    return [r for g in shown["queue"] for r in g["refused"]]


async def test_the_controller_dispatches_nothing_to_a_tool_declared_down_until_it_is_up(
    stack: Stack,
) -> None:
    config = line_config(tools=["DB-1"])
    await stack.equipment.register(
        config.name,
        [
            ToolRegistration(t.id, t.equipment_class.value, "sim", tuple(t.steps or ()))
            for t in config.tools
        ],
    )
    await stack.equipment.declare_down("DB-1", "scheduled_down", "tech1", "PM 500 h")
    await stack.lots.start(cmd.StartLot("D1", "stiffener-bga", "planner", priority=1))
    async with simulated(config), running_controller(config, stack):

        async def refused() -> bool:
            return any(r["lot"] == "D1" for r in await _refused(stack))

        await wait_until(refused, timeout_s=60, what="D1's refusal shown")
        [refusal] = await _refused(stack)
        assert (refusal["tool"], refusal["interlock"]) == ("DB-1", "tool_down")
        assert "declared by tech1" in refusal["reason"] and "PM 500 h" in refusal["reason"]

        async def reported() -> bool:
            tool = await stack.equipment.tool("DB-1")
            return tool.snapshot.connected and tool.reported_e10 == "standby"

        await wait_until(reported, timeout_s=60, what="the tool's state reported")
        tool = await stack.equipment.tool("DB-1")
        assert tool.snapshot.e10 == "scheduled_down" and tool.down == "scheduled_down"
        assert (await stack.lots.get("D1")).state is LotState.WAITING

        up, _ = await stack.equipment.bring_up("DB-1", "tech1", "PM done")
        assert up.down is None and up.snapshot.e10 == "standby"

        async def tracked_in() -> bool:
            d1 = await stack.lots.get("D1")
            return d1.state is not LotState.WAITING or "DIE_ATTACH" in d1.path

        await wait_until(tracked_in, timeout_s=60, what="D1 tracked in on DB-1")
