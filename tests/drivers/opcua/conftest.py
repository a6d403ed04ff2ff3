"""Fixtures: virtual tools behind a real OPC UA server on 127.0.0.1 (port 0), a session pool,
and started drivers. Timings are short so the tests are fast: a 0.5 s request timeout, a 50 ms
publishing interval and a backoff from 50 to 200 ms; the simulated process time is zero.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from drivers.config import INSECURE, ConnectionPolicy, OpcUaEndpoint, ToolConfig
from drivers.model import EquipmentClass
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
    """A tool's configuration; plain OPC UA unless ``security=`` says otherwise (the servers
    of these tests are insecure for speed; test_security.py tests the secure ones)."""
    endpoint.setdefault("security", INSECURE)
    return ToolConfig(
        id=tool_id or tool_id_of(equipment_class),
        equipment_class=equipment_class,
        endpoint=OpcUaEndpoint(url=url, **endpoint),
        policy=policy,
    )


def virtual_tool(equipment_class: EquipmentClass, **settings: float) -> VirtualTool:
    return VirtualTool(
        tool_id_of(equipment_class),
        equipment_class,
        SimulationSettings(**{"time_scale": 0.0, "seed": 11, **settings}),  # type: ignore[arg-type]
    )


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
