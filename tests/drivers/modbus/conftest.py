"""Fixtures: a virtual tool of every equipment class behind a real Modbus TCP server on
127.0.0.1 (port 0), and a started driver connected to it. Timings are short so that the
tests are fast: a 0.5 s request timeout, a 20 ms poll and a backoff from 20 to 100 ms.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from drivers.config import ConnectionPolicy, ModbusEndpoint, ToolConfig
from drivers.modbus.driver import ModbusDriver
from drivers.model import EquipmentClass
from simulators.engine import SimulationSettings, VirtualTool
from simulators.modbus_server import ModbusToolServer
from tests.drivers.common import eventually

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
