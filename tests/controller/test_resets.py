"""Alarm resets carried out by a running line controller, on SQLite and PostgreSQL, for a
Modbus tool and an OPC UA tool: a request recorded in equipment tracking is taken once, sent
to the tool through its driver, and answered (done, or refused with the tool's reason); the
tool is idle for dispatch again after it."""

from __future__ import annotations

import pytest

from drivers.model import Alarm, AlarmSeverity, ProcessState
from mes.domain.equipment import ResetRequest, ResetStatus
from mes.service import utc_now
from pkgline.controller.line import LineController
from pkgline.tool_views import controller_running
from simulators.line import SimulatedLine
from tests.controller.conftest import Stack, line_config, running_controller, simulated, wait_until

pytestmark = pytest.mark.slow

TOOLS = ("DB-1", "COAT-1")  # Modbus, OPC UA
FAULT = Alarm(812, "resist nozzle clogged", AlarmSeverity.ERROR)


async def _ask(stack: Stack, tool_id: str, reason: str) -> ResetRequest:
    async def alarm_recorded() -> bool:
        return (await stack.equipment.tool(tool_id)).snapshot.process_state == "ALARM"

    await wait_until(alarm_recorded, timeout_s=10, what=f"the alarm of {tool_id} recorded")
    return await stack.equipment.request_reset(
        tool_id,
        "op1",
        reason,
        wait_s=30,
        controller_running=lambda c: controller_running(c, utc_now()),
    )


async def _answer(stack: Stack, asked: ResetRequest) -> ResetRequest:
    async def answered() -> bool:
        return not (await stack.equipment.reset_request(asked.id)).status.open

    await wait_until(answered, timeout_s=10, every_s=0.05, what="the reset answered")
    return await stack.equipment.reset_request(asked.id)


async def _check(stack: Stack, line: SimulatedLine, controller: LineController, tool: str) -> None:
    virtual = line.tool(tool)
    virtual.inject_alarm(FAULT, persists="nozzle still clogged")
    refused = await _answer(stack, await _ask(stack, tool, "first try"))
    assert refused.status is ResetStatus.REFUSED and refused.state_after == "ALARM"
    assert refused.outcome is not None and "nozzle still clogged" in refused.outcome
    assert virtual.status.state is ProcessState.ALARM
    assert not controller.runners[tool].is_idle()

    virtual.clear_condition()
    done = await _answer(stack, await _ask(stack, tool, "nozzle cleaned"))
    assert done.status is ResetStatus.DONE and done.state_after == "IDLE"
    assert virtual.status.state is ProcessState.IDLE and virtual.status.alarm is None
    await wait_until(
        controller.runners[tool].is_idle, timeout_s=10, what=f"{tool} idle for dispatch again"
    )
    history = await stack.equipment.resets(tool)
    assert [(r.reason, r.status) for r in history] == [
        ("nozzle cleaned", ResetStatus.DONE),
        ("first try", ResetStatus.REFUSED),
    ]
    assert {r.requested_by for r in history} == {"op1"}


async def test_the_controller_resets_its_tools_alarms_and_records_the_outcome(
    stack: Stack,
) -> None:
    config = line_config(tools=TOOLS)
    async with simulated(config) as line, running_controller(config, stack) as controller:
        for tool in TOOLS:
            await _check(stack, line, controller, tool)
    assert await stack.equipment.open_resets(config.name) == []
