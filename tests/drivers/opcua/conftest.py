"""Fixtures: virtual tools behind a real OPC UA server on 127.0.0.1 (port 0), a session pool,
and started drivers. Timings are short so the tests are fast: a 0.5 s request timeout, a 50 ms
publishing interval and a backoff from 50 to 200 ms; the simulated process time is zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

import pytest

from drivers.catalogue import class_spec
from drivers.config import ConnectionPolicy, OpcUaEndpoint, ToolConfig
from drivers.interface import StatusChanged, ToolEvent
from drivers.model import EquipmentClass, ProcessState, Recipe, RecipeValue, ToolStatus
from drivers.opcua import OpcUaDriver, OpcUaSessionPool
from simulators.engine import SimulationSettings, VirtualTool
from simulators.opcua_server import OpcUaToolServer

FAST = ConnectionPolicy(
    timeout_s=0.5, poll_interval_s=0.05, backoff_initial_s=0.05, backoff_max_s=0.2
)


def tool_id_of(equipment_class: EquipmentClass) -> str:
    return f"{equipment_class.value.upper().replace('_', '-')}-1"


def tool_config(
    equipment_class: EquipmentClass,
    url: str,
    *,
    tool_id: str | None = None,
    policy: ConnectionPolicy = FAST,
    **endpoint: object,
) -> ToolConfig:
    return ToolConfig(
        id=tool_id or tool_id_of(equipment_class),
        equipment_class=equipment_class,
        endpoint=OpcUaEndpoint(url=url, **endpoint),
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


def virtual_tool(equipment_class: EquipmentClass, **settings: float) -> VirtualTool:
    return VirtualTool(
        tool_id_of(equipment_class),
        equipment_class,
        SimulationSettings(**{"time_scale": 0.0, "seed": 11, **settings}),  # type: ignore[arg-type]
    )


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = 3.0) -> None:
    """Poll ``check`` every 10 ms until it holds; fail after ``within`` seconds."""
    async with asyncio.timeout(within):
        while True:
            if await check():
                return
            await asyncio.sleep(0.01)


async def wait_for_state(
    driver: OpcUaDriver, state: ProcessState, *, within: float = 3.0
) -> ToolStatus:
    """Read the driver's status until the tool reports ``state``; return that status."""
    found: list[ToolStatus] = []

    async def reached() -> bool:
        found[:] = [await driver.status()]
        return found[0].state is state

    await eventually(reached, within=within)
    return found[0]


@contextlib.asynccontextmanager
async def event_stream(driver: OpcUaDriver) -> AsyncIterator[AsyncIterator[ToolEvent]]:
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


@pytest.fixture(params=list(EquipmentClass), ids=lambda c: c.value)
def equipment_class(request: pytest.FixtureRequest) -> EquipmentClass:
    cls: EquipmentClass = request.param
    return cls


@pytest.fixture
def tool(equipment_class: EquipmentClass) -> VirtualTool:
    return virtual_tool(equipment_class, reject_rate=0.3)


@pytest.fixture
async def server(tool: VirtualTool) -> AsyncIterator[OpcUaToolServer]:
    async with OpcUaToolServer([tool]) as server:
        yield server


@pytest.fixture
async def sessions() -> AsyncIterator[OpcUaSessionPool]:
    pool = OpcUaSessionPool(rng=random.Random(5))
    yield pool
    await pool.aclose()


DriverMaker = Callable[..., Awaitable[OpcUaDriver]]


@pytest.fixture
async def make_driver(sessions: OpcUaSessionPool) -> AsyncIterator[DriverMaker]:
    """Start drivers (closed at the end of the test): ``await make_driver(cls, url, ...)``."""
    started: list[OpcUaDriver] = []

    async def make(
        equipment_class: EquipmentClass,
        url: str,
        *,
        pool: OpcUaSessionPool | None = None,
        **config: object,
    ) -> OpcUaDriver:
        driver = OpcUaDriver(tool_config(equipment_class, url, **config), pool or sessions)  # type: ignore[arg-type]
        started.append(driver)
        await driver.start()
        return driver

    yield make
    for driver in started:
        await driver.close()


@pytest.fixture
async def driver(
    server: OpcUaToolServer, tool: VirtualTool, make_driver: DriverMaker
) -> OpcUaDriver:
    driver = await make_driver(tool.equipment_class, server.url, tool_id=tool.tool_id)
    assert driver.connected
    return driver
