"""The driver factory builds the right driver per transport; OPC UA drivers of tools behind one
server share one session; nothing connects before start() and aclose() closes the sessions."""

from __future__ import annotations

from drivers.config import ModbusEndpoint, ToolConfig
from drivers.factory import DriverFactory
from drivers.interface import ToolDriver
from drivers.model import EquipmentClass, ProcessState
from drivers.opcua import OpcUaDriver
from simulators.opcua_server import OpcUaToolServer

from .conftest import tool_config, virtual_tool


def test_the_factory_builds_an_opcua_or_a_modbus_driver_and_connects_nothing() -> None:
    from drivers.modbus.driver import ModbusDriver

    factory = DriverFactory()
    before = factory.opcua_sessions
    assert before is None, "no session pool before the first OPC UA tool"
    opcua: ToolDriver = factory.create(
        tool_config(EquipmentClass.DICER, "opc.tcp://127.0.0.1:4840")
    )
    modbus: ToolDriver = factory.create(
        ToolConfig(id="GRIND-1", equipment_class=EquipmentClass.GRINDER, endpoint=ModbusEndpoint())
    )
    assert isinstance(opcua, OpcUaDriver)
    assert isinstance(modbus, ModbusDriver)
    sessions = factory.opcua_sessions
    assert sessions is not None
    assert len(sessions) == 0, "a session opens only when a driver starts"


async def test_drivers_of_one_server_share_a_session_until_the_factory_closes() -> None:
    tools = [virtual_tool(EquipmentClass.PLATER), virtual_tool(EquipmentClass.SPUTTER)]
    async with OpcUaToolServer(tools) as server:
        factory = DriverFactory()
        drivers = [factory.create(tool_config(t.equipment_class, server.url)) for t in tools]
        try:
            for driver in drivers:
                await driver.start()
            sessions = factory.opcua_sessions
            assert sessions is not None
            assert len(sessions) == 1
            for driver in drivers:
                assert (await driver.status()).state is ProcessState.IDLE
        finally:
            for driver in drivers:
                await driver.close()
            await factory.aclose()
            await factory.aclose()  # idempotent
        assert factory.opcua_sessions is None
