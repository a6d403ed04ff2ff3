"""No exception from one tool's work ends the line controller: a failure nobody foresaw is
injected into every stage of a tool's runner (the driver's requests and the lot tracker's
calls it makes) and of its recovery (results left on the tool at start). The tool is taken out
of dispatch with the reason (quarantined), the rest of the line completes its lots, and once
an operator brings the tool back, its lot completes too, each job recorded once.

The faults are injected at the seams (tests/controller/seams.py), by wrapping the tool's real
driver and the real lot service: the first call of one method, made for the wire bonder WB-1,
raises."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from drivers.model import ProcessState, ToolStatus
from mes.domain import commands as cmd
from mes.domain.equipment import DispatchMode
from mes.domain.model import LotState, Operation
from pkgline.controller.quarantine import PREFIX
from simulators.engine import VirtualTool
from tests.controller.conftest import Stack, line_config, simulated, wait_until
from tests.controller.seams import FailingOnce, controller_with

pytestmark = pytest.mark.slow

TOOL = "WB-1"
LOT = "P1"  # stiffener-bga: WIRE_BOND on WB-1
OTHER = "O1"  # fc-heatsink-muf: never on WB-1


async def _state_is(stack: Stack, lot_id: str, state: LotState) -> bool:
    return (await stack.lots.get(lot_id)).state is state


async def _quarantined(stack: Stack) -> bool:
    record = await stack.equipment.tool(TOOL)
    return record.dispatch is DispatchMode.MANUAL and (record.dispatch_reason or "").startswith(
        PREFIX
    )


async def _contained_and_finished(stack: Stack, faulty: FailingOnce | None, method: str) -> None:
    """The tool quarantined for the fault, the other lot completed meanwhile; brought back,
    the poisoned lot completes, each job recorded once."""
    await wait_until(lambda: _quarantined(stack), timeout_s=60, what=f"{TOOL} quarantined")
    assert faulty is not None and faulty.fired
    reason = (await stack.equipment.tool(TOOL)).dispatch_reason or ""
    assert "InjectedFault" in reason and method in reason
    await wait_until(
        lambda: _state_is(stack, OTHER, LotState.COMPLETED),
        timeout_s=120,
        what="the rest of the line to complete its lot",
    )
    await stack.equipment.set_dispatch(TOOL, DispatchMode.AUTO, "eng1")
    if await _state_is(stack, LOT, LotState.HOLD):
        await stack.lots.release(cmd.ReleaseLot(LOT, "eng1", "checked"))
    await wait_until(
        lambda: _state_is(stack, LOT, LotState.COMPLETED),
        timeout_s=120,
        what="the lot of the quarantined tool to complete once it is back",
    )
    history = (await stack.lots.report(LOT)).history
    recorded = [e.data["job"] for e in history if e.operation is Operation.JOB_RECORD]
    assert len(recorded) == len(set(recorded)), "a job recorded twice"


RUNNER_STAGES = [
    ("driver", "events"),
    ("driver", "status_and_recipe"),
    ("driver", "load_recipe"),
    ("driver", "start_job"),
    ("lots", "flow_of"),  # the flow of the lot's version
    ("lots", "start_job"),
    ("driver", "results"),
    ("lots", "record_job"),
    ("driver", "acknowledge_results"),
]


@pytest.mark.parametrize("fault", RUNNER_STAGES, ids=[f"{w}.{m}" for w, m in RUNNER_STAGES])
async def test_a_failure_in_any_stage_of_a_runner_quarantines_only_its_tool(
    stack: Stack, fault: tuple[str, str]
) -> None:
    config = line_config()
    async with simulated(config):
        await stack.lots.start(cmd.StartLot(LOT, "stiffener-bga", "planner", carriers=2))
        await stack.lots.start(cmd.StartLot(OTHER, "fc-heatsink-muf", "planner", carriers=2))
        async with controller_with(config, stack, TOOL, fault) as faulty:
            await _contained_and_finished(stack, faulty, fault[1])


RECOVERY_STAGES = [
    ("driver", "results"),
    ("lots", "job"),
    ("lots", "carriers"),
    ("lots", "record_job"),
    ("driver", "acknowledge_results"),
]


def _slow_while_executing(tool: VirtualTool, scale: float) -> Callable[[], None]:
    """Setups instantaneous, jobs slow (``scale``) until the returned function is called."""

    def on_change(status: ToolStatus) -> None:
        tool.settings.time_scale = scale if status.state is ProcessState.EXECUTING else 0.0

    unsubscribe = tool.subscribe(on_change)

    def fast() -> None:
        unsubscribe()
        tool.settings.time_scale = 0.0

    return fast


@pytest.mark.parametrize("fault", RECOVERY_STAGES, ids=[f"{w}.{m}" for w, m in RECOVERY_STAGES])
async def test_a_failure_in_any_stage_of_recovery_quarantines_only_its_tool(
    stack: Stack, fault: tuple[str, str]
) -> None:
    config = line_config()
    async with simulated(config) as line:
        tool = line.tool(TOOL)
        fast = _slow_while_executing(tool, 2.0)  # WIRE_BOND: 0.8 s per site

        async def job_written() -> bool:
            job_id = tool.status.job_id
            return (
                tool.status.state is ProcessState.EXECUTING
                and job_id is not None
                and await stack.lots.job(job_id) is not None
            )

        await stack.lots.start(cmd.StartLot(LOT, "stiffener-bga", "planner", carriers=2))
        async with controller_with(config, stack, TOOL, None):
            await wait_until(job_written, timeout_s=60, every_s=0.05, what="the job under way")
        assert tool.status.state is ProcessState.EXECUTING, "the job ended before the stop"
        fast()  # completes while no controller runs: results left on the tool
        await wait_until(
            lambda: tool.status.results_waiting, timeout_s=10, what="the job's results"
        )
        await stack.lots.start(cmd.StartLot(OTHER, "fc-heatsink-muf", "planner", carriers=2))
        async with controller_with(config, stack, TOOL, fault) as faulty:
            await _contained_and_finished(stack, faulty, fault[1])
