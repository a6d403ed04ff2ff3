"""Recovery, state by state: the database and the tool are put exactly where a controller that
died would have left them, then a controller starts. Results the tool holds are recorded once
and acknowledged; a job still running is followed; a job the tool took before the controller
could write it down is adopted; a job written down that the tool lost holds its lot."""

from __future__ import annotations

import asyncio

import pytest

from drivers.catalogue import class_spec
from drivers.model import EquipmentClass, Job, ProcessState, SiteMap
from mes.domain import commands as cmd
from mes.domain.equipment import ToolRegistration
from mes.domain.model import JobStatus, LotState, Operation
from pkgline.controller import translate
from simulators.engine import VirtualTool
from tests.controller.conftest import Stack, line_config, running_controller, simulated, wait_until

pytestmark = pytest.mark.slow

LOT = "R1"
CTRL = "controller"


async def _at_die_attach(stack: Stack) -> list[str]:
    """A lot tracked in at DIE_ATTACH on DB-1, as the controller leaves it (DB-1 registered
    by the line controller, which then runs again)."""
    await stack.equipment.register(
        line_config().name,
        [ToolRegistration("DB-1", "die_bonder", "modbus 127.0.0.1", ("DIE_ATTACH",))],
    )
    await stack.lots.start(cmd.StartLot(LOT, "stiffener-bga", "planner", carriers=2))
    await stack.lots.track_in(cmd.TrackIn(LOT, "SUBSTRATE_LOAD", "op"))
    await stack.lots.track_out(cmd.TrackOut(LOT, "op"))
    await stack.lots.track_in(cmd.TrackIn(LOT, "DIE_ATTACH", CTRL, tool="DB-1", dispatched=True))
    return list((await stack.lots.get(LOT)).carriers)


async def _run_on_tool(
    stack: Stack, tool: VirtualTool, job_id: str, carrier: str, *, wait: bool, written: bool = True
) -> None:
    """What the controller does before it dies: start the job on the tool, write it down
    (unless it dies in between: ``written=False``)."""
    lot = await stack.lots.get(LOT)
    assert lot.running is not None
    flow = stack.lots.flow(lot.flow)
    recipe = translate.tool_recipe(
        flow,
        "DIE_ATTACH",
        lot.running.values,
        class_spec(EquipmentClass.DIE_BONDER).recipe,
        lot.flow_version,
    )
    if tool.active_recipe != recipe.info():
        tool.load_recipe(recipe)
    for _ in range(400):
        if tool.status.state is ProcessState.READY:
            break
        await asyncio.sleep(0.01)
    tool.start_job(Job(job_id, LOT, "DIE_ATTACH", carrier, SiteMap.all_good(4, 8)))
    if written:
        await stack.lots.start_job(cmd.StartJob(LOT, job_id, "DB-1", carrier, CTRL))
    if wait:
        for _ in range(400):
            if tool.status.state is ProcessState.COMPLETE:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the job did not complete")


async def _finishes_without_hold(stack: Stack) -> list[Operation]:
    async def done() -> bool:
        return (await stack.lots.get(LOT)).state in (LotState.COMPLETED, LotState.HOLD)

    await wait_until(done, timeout_s=60, what="the lot to finish")
    report = await stack.lots.report(LOT)
    assert report.lot.state is LotState.COMPLETED, report.lot.hold
    return [e.operation for e in report.history]


async def _jobs_recorded(stack: Stack, job_id: str) -> tuple[int, int]:
    history = (await stack.lots.report(LOT)).history
    started = [e.data["job"] for e in history if e.operation is Operation.JOB_START]
    recorded = [e.data["job"] for e in history if e.operation is Operation.JOB_RECORD]
    return started.count(job_id), recorded.count(job_id)


async def test_results_recorded_but_not_acknowledged_are_acknowledged_not_recorded_again(
    stack: Stack,
) -> None:
    config = line_config()
    async with simulated(config) as line:
        first, _ = await _at_die_attach(stack)
        tool = line.tool("DB-1")
        await _run_on_tool(stack, tool, "J1", first, wait=True)
        await stack.lots.record_job(cmd.RecordJob("J1", CTRL))  # recorded, not acknowledged
        assert tool.status.results_waiting
        async with running_controller(config, stack):
            await _finishes_without_hold(stack)
    assert await _jobs_recorded(stack, "J1") == (1, 1)


async def test_a_job_the_tool_took_before_it_was_written_down_is_adopted(stack: Stack) -> None:
    config = line_config()
    async with simulated(config) as line:
        first, _ = await _at_die_attach(stack)
        await _run_on_tool(stack, line.tool("DB-1"), "J1", first, wait=True, written=False)
        async with running_controller(config, stack):
            await _finishes_without_hold(stack)
    assert await _jobs_recorded(stack, "J1") == (1, 1)


async def test_a_job_the_tool_still_runs_that_was_not_written_down_is_followed_and_adopted(
    stack: Stack,
) -> None:
    config = line_config(slow={"DB-1": 0.4})
    async with simulated(config) as line:
        first, _ = await _at_die_attach(stack)
        tool = line.tool("DB-1")
        await _run_on_tool(stack, tool, "J1", first, wait=False, written=False)
        assert tool.status.state is ProcessState.EXECUTING
        async with running_controller(config, stack):
            await _finishes_without_hold(stack)
    assert await _jobs_recorded(stack, "J1") == (1, 1)


async def test_results_of_a_job_a_hold_abandoned_are_recorded_and_the_lot_stays_held(
    stack: Stack,
) -> None:
    config = line_config()
    async with simulated(config) as line:
        first, second = await _at_die_attach(stack)
        tool = line.tool("DB-1")
        await _run_on_tool(stack, tool, "J1", first, wait=True)
        await stack.lots.hold(cmd.HoldLot(LOT, "qe1", "customer asked"))  # while it was down
        async with running_controller(config, stack):

            async def recorded() -> bool:
                job = await stack.lots.job("J1")
                return job is not None and job.status is JobStatus.RECORDED

            await wait_until(recorded, timeout_s=30, what="the tool's results recorded")
            await wait_until(
                lambda: not tool.status.results_waiting, timeout_s=5, what="acknowledged"
            )
            lot = await stack.lots.get(LOT)
            assert lot.state is LotState.HOLD and lot.hold is not None
            assert lot.hold.reason == "customer asked"
            await stack.lots.release(cmd.ReleaseLot(LOT, "qe1", "customer agrees"))
            await _finishes_without_hold(stack)
    assert await _jobs_recorded(stack, "J1") == (1, 1)
    history = (await stack.lots.report(LOT)).history
    at_die_attach = [
        e.data["carrier"]
        for e in history
        if e.operation is Operation.JOB_START and e.step == "DIE_ATTACH"
    ]
    assert at_die_attach == [first, second]  # the first carrier not bonded again


async def test_a_job_written_down_that_the_tool_lost_holds_the_lot(stack: Stack) -> None:
    config = line_config()
    async with simulated(config):
        first, _ = await _at_die_attach(stack)
        await stack.lots.start_job(cmd.StartJob(LOT, "J1", "DB-1", first, CTRL))  # tool: nothing
        async with running_controller(config, stack):

            async def held() -> bool:
                return (await stack.lots.get(LOT)).state is LotState.HOLD

            await wait_until(held, timeout_s=30, what="the lot held")
    lot = await stack.lots.get(LOT)
    assert lot.hold is not None and "no longer knows job J1" in lot.hold.reason
    assert (job := await stack.lots.job("J1")) is not None and job.status is JobStatus.ABANDONED


async def test_results_the_controller_never_recorded_are_recorded_once(stack: Stack) -> None:
    config = line_config()
    async with simulated(config) as line:
        first, _ = await _at_die_attach(stack)
        await _run_on_tool(stack, line.tool("DB-1"), "J1", first, wait=True)
        async with running_controller(config, stack):
            operations = await _finishes_without_hold(stack)
    assert await _jobs_recorded(stack, "J1") == (1, 1)
    assert Operation.HOLD not in operations


async def test_a_job_still_running_when_the_controller_starts_is_followed(stack: Stack) -> None:
    config = line_config(slow={"DB-1": 0.4})
    async with simulated(config) as line:
        first, _ = await _at_die_attach(stack)
        tool = line.tool("DB-1")
        await _run_on_tool(stack, tool, "J1", first, wait=False)
        assert tool.status.state is ProcessState.EXECUTING
        async with running_controller(config, stack):
            operations = await _finishes_without_hold(stack)
    history = (await stack.lots.report(LOT)).history
    assert [e.data["job"] for e in history if e.operation is Operation.JOB_RECORD].count("J1") == 1
    assert Operation.HOLD not in operations
