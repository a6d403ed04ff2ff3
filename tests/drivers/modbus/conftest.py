"""Fixtures: a virtual tool of every equipment class behind a real Modbus TCP server on
127.0.0.1 (port 0), and a started driver connected to it. Timings are short so that the
tests are fast: a 0.5 s request timeout, a 20 ms poll and a backoff from 20 to 100 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

import pytest

from drivers.catalogue import class_spec
from drivers.config import ConnectionPolicy, ModbusEndpoint, ToolConfig
from drivers.interface import ToolEvent
from drivers.modbus.driver import ModbusDriver
from drivers.model import EquipmentClass, ProcessState, Recipe, RecipeValue, ToolStatus
from simulators.engine import SimulationSettings, VirtualTool
from simulators.modbus_server import ModbusToolServer

FAST = ConnectionPolicy(
    timeout_s=0.5, poll_interval_s=0.02, backoff_initial_s=0.02, backoff_max_s=0.1
)


def tool_config(
    equipment_class: EquipmentClass,
    port: int,
    *,
    tool_id: str = "TOOL-1",
    policy: ConnectionPolicy = FAST,
    **endpoint: object,
) -> ToolConfig:
    return ToolConfig(
        id=tool_id,
        equipment_class=equipment_class,
        endpoint=ModbusEndpoint(host="127.0.0.1", port=port, **endpoint),
        policy=policy,
    )


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
    driver: ModbusDriver, state: ProcessState, *, within: float = 3.0
) -> ToolStatus:
    """Poll the driver until the tool reports ``state``; return that status."""
    found: list[ToolStatus] = []

    async def reached() -> bool:
        status = await driver.status()
        found[:] = [status]
        return status.state is state

    await eventually(reached, within=within)
    return found[0]


@contextlib.asynccontextmanager
async def event_stream(driver: ModbusDriver) -> AsyncIterator[AsyncIterator[ToolEvent]]:
    """``driver.events()``, closed when the block ends."""
    stream = driver.events()
    try:
        yield stream
    finally:
        if isinstance(stream, AsyncGenerator):
            await stream.aclose()


async def next_event(
    stream: AsyncIterator[ToolEvent], kind: type[ToolEvent], *, within: float = 3.0
) -> ToolEvent:
    """The next event of ``kind`` from ``stream`` (others are skipped)."""
    async with asyncio.timeout(within):
        async for event in stream:
            if isinstance(event, kind):
                return event
    raise AssertionError(f"the stream ended before a {kind.__name__}")


@pytest.fixture(params=list(EquipmentClass), ids=lambda c: c.value)
def equipment_class(request: pytest.FixtureRequest) -> EquipmentClass:
    cls: EquipmentClass = request.param
    return cls


@pytest.fixture
async def tool(equipment_class: EquipmentClass) -> AsyncIterator[VirtualTool]:
    tool = VirtualTool(
        f"{equipment_class.value.upper()}-1",
        equipment_class,
        SimulationSettings(time_scale=0, reject_rate=0.3, seed=11),
    )
    yield tool
    await tool.close()


@pytest.fixture
async def server(tool: VirtualTool) -> AsyncIterator[ModbusToolServer]:
    async with ModbusToolServer(tool, host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture
async def driver(server: ModbusToolServer, tool: VirtualTool) -> AsyncIterator[ModbusDriver]:
    driver = ModbusDriver(tool_config(tool.equipment_class, server.port, tool_id=tool.tool_id))
    await driver.start()

    async def connected() -> bool:
        return driver.connected

    await eventually(connected)
    yield driver
    await driver.close()
