"""Helpers for the driver tests of both transports: they only use the ToolDriver protocol
(and the simulated tool behind it, to inject faults)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

import pytest

from drivers.catalogue import class_spec
from drivers.errors import CommandRefused, ToolAlarmed
from drivers.interface import StatusChanged, ToolDriver, ToolEvent
from drivers.model import (
    Alarm,
    AlarmSeverity,
    EquipmentClass,
    Job,
    ProcessState,
    Recipe,
    RecipeValue,
    RefusalCode,
    SiteMap,
    ToolStatus,
)
from simulators.engine import VirtualTool

INCOMING = SiteMap(3, 4, (0, 1, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0))
"""Three sites come in bad (two skipped, one with a reject code of an earlier step)."""


def full_recipe(equipment_class: EquipmentClass, *, name: str = "R-1", version: int = 1) -> Recipe:
    """A recipe with every recipe value of the class (numbers, last enum word)."""
    body: dict[str, RecipeValue] = {}
    for i, (value_name, spec) in enumerate(sorted(class_spec(equipment_class).recipe.items())):
        if spec.type == "enum":
            assert spec.values is not None
            body[value_name] = spec.values[-1]
        elif spec.type == "int":
            body[value_name] = 3 + i
        else:
            body[value_name] = 12.5 + 1.25 * i
    return Recipe(f"{equipment_class.value}/{name}", version, body)


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = 3.0) -> None:
    """Poll ``check`` every 10 ms until it holds; fail after ``within`` seconds."""
    async with asyncio.timeout(within):
        while True:
            if await check():
                return
            await asyncio.sleep(0.01)


async def wait_for_state(
    driver: ToolDriver, state: ProcessState, *, within: float = 3.0
) -> ToolStatus:
    """Read the driver's status until the tool reports ``state``; return that status."""
    found: list[ToolStatus] = []

    async def reached() -> bool:
        found[:] = [await driver.status()]
        return found[0].state is state

    await eventually(reached, within=within)
    return found[0]


async def load_ready(driver: ToolDriver, equipment_class: EquipmentClass) -> Recipe:
    """Load the class's full recipe and wait for READY."""
    recipe = full_recipe(equipment_class)
    await driver.load_recipe(recipe)
    await wait_for_state(driver, ProcessState.READY)
    return recipe


async def complete_job(driver: ToolDriver, job_id: str = "J-1") -> Job:
    """Start a job on carrier LOT-1.01 with :data:`INCOMING` and wait for COMPLETE."""
    job = Job(job_id, "LOT-1", "STEP_A", "LOT-1.01", INCOMING)
    await driver.start_job(job)
    await wait_for_state(driver, ProcessState.COMPLETE)
    return job


@contextlib.asynccontextmanager
async def event_stream(driver: ToolDriver) -> AsyncIterator[AsyncIterator[ToolEvent]]:
    """``driver.events()``, closed when the block ends."""
    stream = driver.events()
    try:
        yield stream
    finally:
        if isinstance(stream, AsyncGenerator):
            await stream.aclose()


async def next_event(
    stream: AsyncIterator[ToolEvent],
    kind: type[ToolEvent],
    *,
    where: Callable[[ToolEvent], bool] = lambda _: True,
    within: float = 3.0,
) -> ToolEvent:
    """The next event of ``kind`` (matching ``where``) from ``stream``; others are skipped."""
    async with asyncio.timeout(within):
        async for event in stream:
            if isinstance(event, kind) and where(event):
                return event
    raise AssertionError(f"the stream ended before a {kind.__name__}")


async def next_status(
    stream: AsyncIterator[ToolEvent], state: ProcessState, *, within: float = 3.0
) -> ToolStatus:
    """The next StatusChanged whose state is ``state``."""
    event = await next_event(
        stream,
        StatusChanged,
        where=lambda e: isinstance(e, StatusChanged) and e.status.state is state,
        within=within,
    )
    assert isinstance(event, StatusChanged)
    return event.status


async def check_reset_refusals(driver: ToolDriver, tool: VirtualTool) -> None:
    """A reset the tool does not allow is refused with the tool's own reason and changes
    nothing: not in alarm, then an alarm whose cause is still there; once the cause is gone
    the reset goes through. Either transport."""
    with pytest.raises(CommandRefused) as refused:
        await driver.reset_alarm()
    assert refused.value.code == RefusalCode.WRONG_STATE
    assert not isinstance(refused.value, ToolAlarmed)
    assert "not in ALARM: nothing to reset" in refused.value.message
    assert (await driver.status()).state is ProcessState.READY

    alarm = Alarm(2301, "chuck vacuum below limit", AlarmSeverity.ERROR)
    tool.inject_alarm(alarm, persists="vacuum still below limit: check the chuck seal")
    await wait_for_state(driver, ProcessState.ALARM)
    with pytest.raises(CommandRefused) as refused:
        await driver.reset_alarm()
    assert not isinstance(refused.value, ToolAlarmed), "a reset refusal says the tool's reason"
    assert refused.value.code == RefusalCode.WRONG_STATE
    assert "vacuum still below limit: check the chuck seal" in refused.value.message
    still = await driver.status()
    assert still.state is ProcessState.ALARM and still.alarm == alarm

    tool.clear_condition()
    await driver.reset_alarm()
    status = await driver.status()
    assert status.state is ProcessState.READY and status.alarm is None
