"""A line's Modbus tools are polled at evenly spread phases: the factory gives each driver its
phase, and the driver reads the tool's status at that phase of every poll interval."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
from collections.abc import Awaitable, Callable

import pytest

from drivers.config import ConnectionPolicy, OpcUaEndpoint, ToolConfig
from drivers.factory import DriverFactory
from drivers.modbus.driver import ModbusDriver
from drivers.model import EquipmentClass, ToolStatus
from simulators.engine import SimulationSettings, VirtualTool
from simulators.modbus_server import ModbusToolServer
from tests.drivers.common import eventually

from .conftest import tool_config

INTERVAL = 0.1
POLICY = ConnectionPolicy(timeout_s=0.5, poll_interval_s=INTERVAL)


def test_the_factory_spreads_the_modbus_tools_of_a_line_and_leaves_opcua_tools_alone() -> None:
    modbus = [
        tool_config(EquipmentClass.DIE_BONDER, 15021 + i, tool_id=tool_id, policy=POLICY)
        for i, tool_id in enumerate(["MOLD-1", "DB-1", "GRIND-1", "WB-1"])
    ]
    opcua = ToolConfig(
        id="COAT-1",
        equipment_class=EquipmentClass.COATER,
        endpoint=OpcUaEndpoint(url="opc.tcp://127.0.0.1:4840"),
        policy=POLICY,
    )
    drivers = DriverFactory().create_all([*modbus, opcua])
    assert [d.tool_id for d in drivers] == ["MOLD-1", "DB-1", "GRIND-1", "WB-1", "COAT-1"]
    phases = {d.tool_id: d.poll_phase_s for d in drivers if isinstance(d, ModbusDriver)}
    assert phases == pytest.approx({"DB-1": 0.0, "GRIND-1": 0.025, "MOLD-1": 0.05, "WB-1": 0.075})


def _offset(t: float, phase: float) -> float:
    """How far ``t`` is from the nearest tick ``phase + k * INTERVAL`` (either side)."""
    off = (t - phase) % INTERVAL
    return min(off, INTERVAL - off)


def _record_reads(driver: ModbusDriver, into: list[float]) -> None:
    """Note the loop time of every status read the driver makes (its polls included)."""
    status: Callable[[], Awaitable[ToolStatus]] = driver.status
    loop = asyncio.get_running_loop()

    async def timed() -> ToolStatus:
        into.append(loop.time())
        return await status()

    driver.status = timed  # type: ignore[method-assign]


async def test_each_driver_reads_its_tool_at_the_phase_the_factory_gave_it() -> None:
    tools = [
        VirtualTool(tool_id, cls, SimulationSettings(time_scale=0))
        for tool_id, cls in [("DB-1", EquipmentClass.DIE_BONDER), ("MOLD-1", EquipmentClass.MOLDER)]
    ]
    async with contextlib.AsyncExitStack() as stack:
        servers = [
            await stack.enter_async_context(ModbusToolServer(t, host="127.0.0.1", port=0))
            for t in tools
        ]
        for tool in tools:
            stack.push_async_callback(tool.close)
        configs = [
            tool_config(t.equipment_class, s.port, tool_id=t.tool_id, policy=POLICY)
            for t, s in zip(tools, servers, strict=True)
        ]
        drivers = [d for d in DriverFactory().create_all(configs) if isinstance(d, ModbusDriver)]
        reads: dict[str, list[float]] = {d.tool_id: [] for d in drivers}
        for driver in drivers:
            _record_reads(driver, reads[driver.tool_id])
            await driver.start()
            stack.push_async_callback(driver.close)

        async def polled_enough() -> bool:
            return all(len(r) >= 12 for r in reads.values())

        await eventually(polled_enough)
    phases = {d.tool_id: d.poll_phase_s for d in drivers}
    assert phases == pytest.approx({"DB-1": 0.0, "MOLD-1": INTERVAL / 2})
    for tool_id, times in reads.items():
        polls = times[2:]  # the first read comes with the connection, not on a tick
        # half an interval apart; a timer fires at its time or a little after it
        assert statistics.median(_offset(t, phases[tool_id]) for t in polls) < INTERVAL / 5, (
            tool_id,
            [round((t - phases[tool_id]) % INTERVAL, 4) for t in polls],
        )
