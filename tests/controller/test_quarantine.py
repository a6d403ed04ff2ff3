"""Quarantine, not crash: results a tool sends that do not fit the job (a corrupted step name,
a value out of the class's physical range, a site map of the wrong shape, another job's id)
are refused at the edge of that tool's runner. They stay on the tool, not acknowledged; the
tool goes out of dispatch with the reason; the lot is held with what was received and what
was expected; every other tool goes on. A restart does the same, never a crash loop. An
operator brings the tool back into dispatch, releases the lot, and it completes. A reading
corrupted in transit is read again before anything is concluded.

The reproduction of issue 13 on both transports: an OPC UA coater whose step name reads
``DIELDCTRIC_COAT`` (raised KeyError and ended ``pkgline serve``, again on every restart), and
the same on a Modbus wire bonder."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

import pytest

from drivers.model import JobResults, ProcessState, SiteMap, ToolStatus
from mes.domain import commands as cmd
from mes.domain.equipment import DispatchMode
from mes.domain.model import HistoryEntry, HoldSource, LotState, Operation
from pkgline.controller.quarantine import PREFIX
from simulators.engine import VirtualTool
from tests.controller.conftest import Stack, line_config, running_controller, simulated, wait_until
from tests.controller.seams import ResultsCorruptedOnce, controller_with

pytestmark = pytest.mark.slow

POISONED = "P1"
OTHER = "O1"
OTHER_FLOW = "fc-heatsink-muf"  # runs on neither poisoned tool


class Case:
    def __init__(self, tool_id: str, flow: str, step: str, corrupted: str):
        self.tool_id, self.flow, self.step, self.corrupted = tool_id, flow, step, corrupted

    def corrupt(self, results: JobResults) -> JobResults:
        return replace(results, step=self.corrupted)


CASES = {
    "opcua": Case("COAT-1", "fo-metal", "DIELECTRIC_COAT", "DIELDCTRIC_COAT"),
    "modbus": Case("WB-1", "stiffener-bga", "WIRE_BOND", "WIRE_BPND"),
}


async def _start_lots(stack: Stack, case: Case) -> None:
    await stack.lots.start(cmd.StartLot(POISONED, case.flow, "planner", carriers=2))
    await stack.lots.start(cmd.StartLot(OTHER, OTHER_FLOW, "planner", carriers=2))


async def _state(stack: Stack, lot_id: str) -> LotState:
    return (await stack.lots.get(lot_id)).state


async def _holds(stack: Stack, lot_id: str) -> list[HistoryEntry]:
    return [e for e in (await stack.lots.report(lot_id)).history if e.operation is Operation.HOLD]


async def _quarantined(stack: Stack, tool_id: str) -> bool:
    record = await stack.equipment.tool(tool_id)
    return record.dispatch is DispatchMode.MANUAL and (record.dispatch_reason or "").startswith(
        PREFIX
    )


async def _assert_quarantined_for_the_step(stack: Stack, case: Case, tool: VirtualTool) -> None:
    """The lot held once, with what was received and expected; the tool out of dispatch with
    the reason; the results still on the tool."""
    record = await stack.equipment.tool(case.tool_id)
    assert record.dispatch is DispatchMode.MANUAL
    assert record.dispatch_reason is not None and case.corrupted in record.dispatch_reason
    lot = await stack.lots.get(POISONED)
    assert lot.state is LotState.HOLD and lot.hold is not None
    assert lot.hold.source is HoldSource.CONTROLLER and case.corrupted in lot.hold.reason
    (hold,) = await _holds(stack, POISONED)
    refused = hold.data["quarantine"]
    assert refused["tool"] == case.tool_id and refused["what"] == "step"
    assert refused["received"] == case.corrupted
    assert refused["expected"].startswith(case.step)
    assert tool.results is not None and tool.results.step == case.corrupted, "acknowledged"


async def _bring_back_and_finish(stack: Stack, case: Case, tool: VirtualTool) -> None:
    """What an operator does: the tool is fixed, back into dispatch, the lot released."""
    tool.inject_results_fault(None)
    await stack.equipment.set_dispatch(case.tool_id, DispatchMode.AUTO, "eng1")
    await stack.lots.release(cmd.ReleaseLot(POISONED, "eng1", "coater checked"))
    await wait_until(
        lambda: _state_is(stack, POISONED, LotState.COMPLETED),
        timeout_s=120,
        what="the released lot to finish",
    )
    history = (await stack.lots.report(POISONED)).history
    recorded = [e.data["job"] for e in history if e.operation is Operation.JOB_RECORD]
    assert len(recorded) == len(set(recorded)), "a job recorded twice"
    (hold,) = [e for e in history if e.operation is Operation.HOLD]
    (poisoned,) = hold.data["jobs_open"]
    assert poisoned["job"] not in recorded, "the refused results were recorded"


async def _state_is(stack: Stack, lot_id: str, state: LotState) -> bool:
    return await _state(stack, lot_id) is state


@pytest.mark.parametrize("transport", sorted(CASES))
async def test_a_corrupted_step_name_quarantines_the_tool_and_the_line_goes_on_through_a_restart(
    stack: Stack, transport: str
) -> None:
    case = CASES[transport]
    config = line_config()
    async with simulated(config) as line:
        tool = line.tool(case.tool_id)
        tool.inject_results_fault(case.corrupt)
        await _start_lots(stack, case)
        async with running_controller(config, stack):
            await wait_until(
                lambda: _state_is(stack, POISONED, LotState.HOLD),
                timeout_s=60,
                what="the poisoned lot held",
            )
            await wait_until(
                lambda: _state_is(stack, OTHER, LotState.COMPLETED),
                timeout_s=120,
                what="the other lot to finish",
            )
            await _assert_quarantined_for_the_step(stack, case, tool)

        async with running_controller(config, stack) as controller:  # a restart
            await asyncio.sleep(1.0)  # five dispatch passes; the tool keeps its results
            assert controller.ready.is_set()
            await _assert_quarantined_for_the_step(stack, case, tool)
            await _bring_back_and_finish(stack, case, tool)


def _slow_while_executing(tool: VirtualTool, scale: float) -> Callable[[], None]:
    """Setups instantaneous, jobs slow (``scale``) until the returned function is called."""

    def on_change(status: ToolStatus) -> None:
        tool.settings.time_scale = scale if status.state is ProcessState.EXECUTING else 0.0

    unsubscribe = tool.subscribe(on_change)

    def fast() -> None:
        unsubscribe()
        tool.settings.time_scale = 0.0

    return fast


@pytest.mark.parametrize("transport", sorted(CASES))
async def test_poisoned_results_found_on_the_tool_at_start_quarantine_it_instead_of_a_crash(
    stack: Stack, transport: str
) -> None:
    case = CASES[transport]
    config = line_config()
    async with simulated(config) as line:
        tool = line.tool(case.tool_id)
        fast = _slow_while_executing(tool, 25.0)

        async def job_written() -> bool:
            job_id = tool.status.job_id
            return (
                tool.status.state is ProcessState.EXECUTING
                and job_id is not None
                and await stack.lots.job(job_id) is not None
            )

        await stack.lots.start(cmd.StartLot(POISONED, case.flow, "planner", carriers=2))
        async with running_controller(config, stack):
            await wait_until(job_written, timeout_s=60, every_s=0.05, what="the job under way")
        assert tool.status.state is ProcessState.EXECUTING, "the job ended before the stop"
        # while no controller runs, the job completes and the tool keeps poisoned results
        tool.inject_results_fault(case.corrupt)
        fast()
        await wait_until(
            lambda: tool.status.results_waiting, timeout_s=10, what="the job's results"
        )
        await stack.lots.start(cmd.StartLot(OTHER, OTHER_FLOW, "planner", carriers=2))
        async with running_controller(config, stack):
            await wait_until(
                lambda: _state_is(stack, POISONED, LotState.HOLD),
                timeout_s=30,
                what="the poisoned lot held",
            )
            await wait_until(
                lambda: _state_is(stack, OTHER, LotState.COMPLETED),
                timeout_s=120,
                what="the other lot to finish",
            )
            await _assert_quarantined_for_the_step(stack, case, tool)
            await _bring_back_and_finish(stack, case, tool)


def _out_of_range(results: JobResults) -> JobResults:
    return replace(results, measured={**results.measured, "film_thickness_um": 1.0e6})


def _wrong_shape(results: JobResults) -> JobResults:
    rows, cols = results.site_map.rows, results.site_map.cols
    return replace(results, site_map=SiteMap.all_good(rows + 1, cols))


def _other_job(results: JobResults) -> JobResults:
    return replace(results, job_id="0123456789abcdef")


@pytest.mark.parametrize(
    ("fault", "what", "received"),
    [
        (_out_of_range, "measured value film_thickness_um", 1.0e6),
        (_wrong_shape, "site map", None),
        (_other_job, "job id", "0123456789abcdef"),
    ],
    ids=["out-of-physical-range", "site-map-of-the-wrong-shape", "another-job-id"],
)
async def test_results_that_do_not_fit_hold_the_lot_with_what_was_received_and_expected(
    stack: Stack,
    fault: Callable[[JobResults], JobResults],
    what: str,
    received: object,
) -> None:
    config = line_config()
    async with simulated(config) as line:
        tool = line.tool("COAT-1")
        tool.inject_results_fault(fault)
        await stack.lots.start(cmd.StartLot(POISONED, "fo-metal", "planner", carriers=2))
        async with running_controller(config, stack):
            await wait_until(
                lambda: _state_is(stack, POISONED, LotState.HOLD),
                timeout_s=60,
                what="the lot held",
            )
            assert await _quarantined(stack, "COAT-1")
    (hold,) = await _holds(stack, POISONED)
    refused = hold.data["quarantine"]
    assert refused["what"] == what and refused["expected"]
    if received is not None:
        assert refused["received"] == received
    assert tool.results is not None, "results acknowledged"


async def test_a_reading_corrupted_once_is_read_again_and_the_job_recorded_as_the_tool_holds_it(
    stack: Stack,
) -> None:
    case = CASES["opcua"]
    config = line_config()
    async with simulated(config):
        await stack.lots.start(cmd.StartLot(POISONED, case.flow, "planner", carriers=2))
        async with controller_with(
            config,
            stack,
            case.tool_id,
            driver=lambda driver: ResultsCorruptedOnce(driver, case.corrupt),
        ) as corrupting:
            await wait_until(
                lambda: _state_is(stack, POISONED, LotState.COMPLETED),
                timeout_s=120,
                what="the lot to finish",
            )
            assert corrupting.fired
    assert not await _holds(stack, POISONED)
    record = await stack.equipment.tool(case.tool_id)
    assert record.dispatch is DispatchMode.AUTO
