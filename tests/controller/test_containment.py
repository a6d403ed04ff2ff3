"""No exception from one tool's work ends the line controller: a failure nobody foresaw is
injected into every stage of a tool's runner (the driver's requests and the lot tracker's
calls it makes) and of its recovery (results left on the tool at start). The tool is taken out
of dispatch with the reason (quarantined), the rest of the line completes its lots, and once
an operator brings the tool back, its lot completes too, each job recorded once.

The faults are injected at the seams, by wrapping the tool's real driver and the real lot
service: the first call of one method, made for the wire bonder WB-1, raises."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import structlog

from drivers.factory import DriverFactory
from drivers.interface import ToolDriver
from drivers.model import ProcessState, ToolStatus
from mes.domain import commands as cmd
from mes.domain.equipment import DispatchMode
from mes.domain.model import LotState, Operation
from mes.service import LotService
from pkgline.config import LineConfig
from pkgline.controller.line import LineController
from pkgline.controller.quarantine import PREFIX
from simulators.engine import VirtualTool
from tests.controller.conftest import Stack, line_config, simulated, wait_until

pytestmark = pytest.mark.slow

TOOL = "WB-1"
LOT = "P1"  # stiffener-bga: WIRE_BOND on WB-1
OTHER = "O1"  # fc-heatsink-muf: never on WB-1


class InjectedFault(Exception):
    """A failure the runner does not foresee."""


class _Faulty:
    """``target`` with its method ``name`` failing once, on its first call made for TOOL (the
    runner works under its tool's logging context). ``events``: the subscription fails after
    its second event."""

    def __init__(self, target: Any, name: str):
        self._target = target
        self._name = name
        self.fired = False

    def _armed(self) -> bool:
        return not self.fired and structlog.contextvars.get_contextvars().get("tool_id") == TOOL

    def __getattr__(self, attr: str) -> Any:
        real = getattr(self._target, attr)
        if attr != self._name:
            return real
        if attr == "events":
            return lambda: self._events(real())
        if asyncio.iscoroutinefunction(real):

            async def failing_async(*args: Any, **kwargs: Any) -> Any:
                if self._armed():
                    self.fired = True
                    raise InjectedFault(f"injected fault in {attr}")
                return await real(*args, **kwargs)

            return failing_async

        def failing(*args: Any, **kwargs: Any) -> Any:
            if self._armed():
                self.fired = True
                raise InjectedFault(f"injected fault in {attr}")
            return real(*args, **kwargs)

        return failing

    async def _events(self, events: AsyncIterator[Any]) -> AsyncIterator[Any]:
        seen = 0
        async for event in events:
            yield event
            seen += 1
            if seen == 2 and not self.fired:
                self.fired = True
                raise InjectedFault("injected fault in events")


@contextlib.asynccontextmanager
async def _controller(
    config: LineConfig, stack: Stack, fault: tuple[str, str] | None
) -> AsyncIterator[_Faulty | None]:
    """A line controller whose WB-1 driver or lot service fails once where ``fault`` says
    (``("driver" | "lots", method)``)."""
    factory = DriverFactory()
    drivers: list[ToolDriver] = list(factory.create_all(config.tools))
    lots: LotService = stack.lots
    faulty = None
    if fault is not None:
        where, method = fault
        if where == "driver":
            index = next(i for i, d in enumerate(drivers) if d.tool_id == TOOL)
            faulty = _Faulty(drivers[index], method)
            drivers[index] = faulty  # type: ignore[call-overload]
        else:
            faulty = _Faulty(stack.lots, method)
            lots = faulty  # type: ignore[assignment]
    controller = LineController(config, lots, stack.equipment, drivers)
    task = asyncio.create_task(controller.run(), name="controller")
    try:
        ready = asyncio.create_task(controller.ready.wait())
        done, _ = await asyncio.wait([ready, task], timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            ready.cancel()
            task.result()
        assert ready in done, "the controller did not get ready"
        yield faulty
        assert not task.done(), "the controller ended"
    finally:
        controller.request_stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
        await factory.aclose()


async def _state_is(stack: Stack, lot_id: str, state: LotState) -> bool:
    return (await stack.lots.get(lot_id)).state is state


async def _quarantined(stack: Stack) -> bool:
    record = await stack.equipment.tool(TOOL)
    return record.dispatch is DispatchMode.MANUAL and (record.dispatch_reason or "").startswith(
        PREFIX
    )


async def _contained_and_finished(stack: Stack, faulty: _Faulty | None, method: str) -> None:
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
    ("lots", "flow"),
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
        async with _controller(config, stack, fault) as faulty:
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
        async with _controller(config, stack, None):
            await wait_until(job_written, timeout_s=60, every_s=0.05, what="the job under way")
        assert tool.status.state is ProcessState.EXECUTING, "the job ended before the stop"
        fast()  # completes while no controller runs: results left on the tool
        await wait_until(
            lambda: tool.status.results_waiting, timeout_s=10, what="the job's results"
        )
        await stack.lots.start(cmd.StartLot(OTHER, "fc-heatsink-muf", "planner", carriers=2))
        async with _controller(config, stack, fault) as faulty:
            await _contained_and_finished(stack, faulty, fault[1])
