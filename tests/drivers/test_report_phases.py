"""A line's tools report at evenly spread phases of their poll interval: the factory gives each
driver its phase; a Modbus driver reads its tool's status at that phase, and an OPC UA driver
creates its tool's subscription then, so that tools behind one server publish one by one."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
from collections.abc import Awaitable, Callable

import pytest

from drivers.config import ConnectionPolicy
from drivers.errors import ConfigurationError
from drivers.factory import DriverFactory
from drivers.interface import StatusChanged, ToolDriver
from drivers.modbus.driver import ModbusDriver
from drivers.model import EquipmentClass, Job, ProcessState, SiteMap, ToolStatus
from drivers.opcua import OpcUaDriver, OpcUaSessionPool
from simulators.engine import SimulationSettings, VirtualTool
from simulators.modbus_server import ModbusToolServer
from simulators.opcua_server import OpcUaToolServer
from tests.drivers.common import event_stream, eventually, load_ready
from tests.drivers.modbus.conftest import tool_config as modbus_tool
from tests.drivers.opcua.conftest import tool_config as opcua_tool

INTERVAL = 0.1
POLICY = ConnectionPolicy(timeout_s=0.5, poll_interval_s=INTERVAL)


def _phase(driver: ToolDriver) -> float | None:
    if isinstance(driver, ModbusDriver):
        return driver.poll_phase_s
    assert isinstance(driver, OpcUaDriver)
    return driver.publish_phase_s


def _offset(t: float, phase: float, interval: float = INTERVAL) -> float:
    """How far ``t`` is from the nearest tick ``phase + k * interval`` (either side)."""
    off = (t - phase) % interval
    return min(off, interval - off)


def test_the_factory_spreads_every_tool_of_a_line_over_the_interval() -> None:
    url = "opc.tcp://127.0.0.1:4840"
    configs = [
        modbus_tool(EquipmentClass.MOLDER, 15021, tool_id="MOLD-1", policy=POLICY),
        opcua_tool(EquipmentClass.COATER, url, tool_id="COAT-1", policy=POLICY),
        modbus_tool(EquipmentClass.DIE_BONDER, 15022, tool_id="DB-1", policy=POLICY),
        opcua_tool(EquipmentClass.PLATER, url, tool_id="PLATE-1", policy=POLICY),
    ]
    drivers = DriverFactory().create_all(configs)
    assert [d.tool_id for d in drivers] == ["MOLD-1", "COAT-1", "DB-1", "PLATE-1"]
    assert {d.tool_id: _phase(d) for d in drivers} == pytest.approx(
        {"COAT-1": 0.0, "DB-1": 0.025, "MOLD-1": 0.05, "PLATE-1": 0.075}
    )
    # one tool alone: a Modbus tool's phase comes from its id, an OPC UA tool subscribes at once
    alone = DriverFactory().create(configs[1])
    assert _phase(alone) is None
    with pytest.raises(ConfigurationError, match="publishing phase"):
        OpcUaDriver(configs[1], OpcUaSessionPool(), poll_phase_s=INTERVAL)


def _record_reads(driver: ModbusDriver, into: list[float]) -> None:
    """Note the loop time of every status read the driver makes (its polls included)."""
    status: Callable[[], Awaitable[ToolStatus]] = driver.status
    loop = asyncio.get_running_loop()

    async def timed() -> ToolStatus:
        into.append(loop.time())
        return await status()

    driver.status = timed  # type: ignore[method-assign]


async def test_each_modbus_driver_reads_its_tool_at_the_phase_the_factory_gave_it() -> None:
    tools = [
        VirtualTool("DB-1", EquipmentClass.DIE_BONDER, SimulationSettings(time_scale=0)),
        VirtualTool("MOLD-1", EquipmentClass.MOLDER, SimulationSettings(time_scale=0)),
    ]
    async with contextlib.AsyncExitStack() as stack:
        configs = []
        for tool in tools:
            stack.push_async_callback(tool.close)
            server = ModbusToolServer(tool, host="127.0.0.1", port=0)
            await stack.enter_async_context(server)
            configs.append(
                modbus_tool(tool.equipment_class, server.port, tool_id=tool.tool_id, policy=POLICY)
            )
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


async def _started_behind_one_server(
    stack: contextlib.AsyncExitStack, tools: list[VirtualTool]
) -> tuple[OpcUaToolServer, list[ToolDriver]]:
    """``tools`` behind one OPC UA simulator, and their drivers from ``create_all``, started
    (everything closed when ``stack`` closes)."""
    for tool in tools:
        stack.push_async_callback(tool.close)
    server = await stack.enter_async_context(OpcUaToolServer(tools))
    factory = DriverFactory()
    stack.push_async_callback(factory.aclose)
    drivers = factory.create_all(
        [opcua_tool(t.equipment_class, server.url, tool_id=t.tool_id, policy=POLICY) for t in tools]
    )
    for driver in drivers:
        await driver.start()
        stack.push_async_callback(driver.close)
    sessions = factory.opcua_sessions
    assert sessions is not None and len(sessions) == 1, "one session for the tools of a server"
    return server, drivers


async def test_tools_behind_one_opcua_server_publish_at_the_phases_the_factory_gave_them() -> None:
    # jobs of many short sites: each tool's progress changes between any two publishes
    settings = SimulationSettings(time_scale=0.1, seed=3)
    tools = [
        VirtualTool("COAT-1", EquipmentClass.COATER, settings),
        VirtualTool("PLATE-1", EquipmentClass.PLATER, settings),
    ]
    loop = asyncio.get_running_loop()
    seen: dict[str, list[float]] = {t.tool_id: [] for t in tools}
    async with contextlib.AsyncExitStack() as stack:
        _, drivers = await _started_behind_one_server(stack, tools)

        async def run_a_job(driver: ToolDriver, tool: VirtualTool) -> None:
            await load_ready(driver, tool.equipment_class)
            async with event_stream(driver) as events:
                job = Job("J-1", "LOT-1", "STEP_A", "LOT-1.01", SiteMap(12, 12, (0,) * 144))
                await driver.start_job(job)
                async with asyncio.timeout(10):
                    async for event in events:
                        if not isinstance(event, StatusChanged):
                            continue
                        if event.status.state is ProcessState.EXECUTING:
                            seen[driver.tool_id].append(loop.time())
                        elif event.status.state is ProcessState.COMPLETE:
                            return

        await asyncio.gather(*(run_a_job(d, t) for d, t in zip(drivers, tools, strict=True)))
    phases = {d.tool_id: _phase(d) for d in drivers}
    assert phases == pytest.approx({"COAT-1": 0.0, "PLATE-1": INTERVAL / 2})
    for tool_id, times in seen.items():
        phase = phases[tool_id]
        assert phase is not None
        assert len(times) >= 4, (tool_id, "progress publishes", len(times))
        # the two tools' publishes come half an interval apart, not in one response
        assert statistics.median(_offset(t, phase) for t in times) < INTERVAL / 5, (
            tool_id,
            [round((t - phase) % INTERVAL, 4) for t in times],
        )


async def test_one_subscription_per_tool_and_one_heartbeat_per_connection() -> None:
    tools = [
        VirtualTool("COAT-1", EquipmentClass.COATER, SimulationSettings(time_scale=0)),
        VirtualTool("PLATE-1", EquipmentClass.PLATER, SimulationSettings(time_scale=0)),
        VirtualTool("SPUT-1", EquipmentClass.SPUTTER, SimulationSettings(time_scale=0)),
    ]
    async with contextlib.AsyncExitStack() as stack:
        server, drivers = await _started_behind_one_server(stack, tools)
        assert server._server is not None
        subscriptions = server._server.iserver.subscription_service.subscriptions.values()
        keep_alives = sorted(s.data.RevisedMaxKeepAliveCount for s in subscriptions)
        # the first keeps an idle connection heard (a keep-alive after about half the 0.5 s
        # timeout: 2 intervals); the others publish what changes, and a keep-alive every 10 s
        # (a third of the session timeout: 100 intervals of 0.1 s)
        assert keep_alives == [2, 100, 100], keep_alives
        await drivers[0].close()
        assert len(server._server.iserver.subscription_service.subscriptions) == 2
