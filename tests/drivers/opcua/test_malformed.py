"""A server that sends values which do not fit the equipment model (a wrong variant type, an
unknown enumerated value, a site map whose ByteString has the wrong length) gets a clear
ProtocolError naming the signal, never a crash or a wrong reading."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from asyncua import ua

from drivers.errors import ProtocolError
from drivers.model import EquipmentClass, Job, ProcessState, SiteMap
from drivers.opcua import OpcUaDriver
from simulators.opcua_server import OpcUaToolServer
from tests.drivers.common import full_recipe, wait_for_state

from .conftest import DriverMaker, virtual_tool

V = ua.VariantType


@pytest.fixture
async def server() -> AsyncIterator[OpcUaToolServer]:
    """A ball mounter (an enumerated measured value) and a dicer behind one server."""
    tools = [virtual_tool(EquipmentClass.BALL_MOUNTER), virtual_tool(EquipmentClass.DICER)]
    async with OpcUaToolServer(tools) as server:
        yield server


async def _driver(
    make_driver: DriverMaker, server: OpcUaToolServer, cls: EquipmentClass
) -> OpcUaDriver:
    driver = await make_driver(cls, server.url)
    assert driver.connected
    return driver


async def test_a_state_that_is_a_string_is_a_protocol_error(
    server: OpcUaToolServer, make_driver: DriverMaker
) -> None:
    driver = await _driver(make_driver, server, EquipmentClass.DICER)
    server.inject_raw_value(driver.tool_id, "State", ua.Variant("READY", V.String))
    with pytest.raises(
        ProtocolError, match="state: expected an integer, got String 'READY'"
    ) as err:
        await driver.status()
    assert err.value.tool_id == driver.tool_id
    assert err.value.request == "status"


async def test_an_unknown_state_number_is_a_protocol_error(
    server: OpcUaToolServer, make_driver: DriverMaker
) -> None:
    driver = await _driver(make_driver, server, EquipmentClass.DICER)
    server.inject_raw_value(driver.tool_id, "State", ua.Variant(99, V.Int32))
    with pytest.raises(ProtocolError, match="99 is not a known ProcessState"):
        await driver.status()
    with pytest.raises(ProtocolError, match="99 is not a known ProcessState"):
        await driver.active_recipe()


async def test_an_unknown_alarm_severity_is_a_protocol_error(
    server: OpcUaToolServer, make_driver: DriverMaker
) -> None:
    driver = await _driver(make_driver, server, EquipmentClass.DICER)
    server.inject_raw_value(driver.tool_id, "Alarm/ActiveCode", ua.Variant(7, V.Int32))
    server.inject_raw_value(driver.tool_id, "Alarm/Severity", ua.Variant(9, V.Int32))
    with pytest.raises(ProtocolError, match="alarm_severity: 9 is not a known AlarmSeverity"):
        await driver.status()


async def test_a_site_map_of_the_wrong_length_is_a_protocol_error(
    server: OpcUaToolServer, make_driver: DriverMaker
) -> None:
    driver = await _driver(make_driver, server, EquipmentClass.DICER)
    await driver.load_recipe(full_recipe(EquipmentClass.DICER))
    await wait_for_state(driver, ProcessState.READY)
    await driver.start_job(Job("J-1", "LOT-1", "DICE", "C-1", SiteMap.all_good(2, 3)))
    await wait_for_state(driver, ProcessState.COMPLETE)
    server.inject_raw_value(
        driver.tool_id, "Results/SiteMapCodes", ua.Variant(b"\0" * 5, V.ByteString)
    )
    with pytest.raises(ProtocolError, match="2 x 3 needs 6 codes, the ByteString holds 5"):
        await driver.results()


async def test_an_unknown_enumerated_measured_value_is_a_protocol_error(
    server: OpcUaToolServer, make_driver: DriverMaker
) -> None:
    driver = await _driver(make_driver, server, EquipmentClass.BALL_MOUNTER)
    await driver.load_recipe(full_recipe(EquipmentClass.BALL_MOUNTER))
    await wait_for_state(driver, ProcessState.READY)
    await driver.start_job(Job("J-1", "LOT-1", "BALL_MOUNT", "C-1", SiteMap.all_good(1, 2)))
    await wait_for_state(driver, ProcessState.COMPLETE)
    path = "Results/Measured/bonding_point"
    server.inject_raw_value(driver.tool_id, path, ua.Variant("glue", V.String))
    with pytest.raises(ProtocolError, match="bonding_point: 'glue' is not one of solder_ball"):
        await driver.results()


async def test_a_number_where_a_measured_word_belongs_is_a_protocol_error(
    server: OpcUaToolServer, make_driver: DriverMaker
) -> None:
    driver = await _driver(make_driver, server, EquipmentClass.BALL_MOUNTER)
    await driver.load_recipe(full_recipe(EquipmentClass.BALL_MOUNTER))
    await wait_for_state(driver, ProcessState.READY)
    await driver.start_job(Job("J-1", "LOT-1", "BALL_MOUNT", "C-1", SiteMap.all_good(1, 2)))
    await wait_for_state(driver, ProcessState.COMPLETE)
    server.inject_raw_value(
        driver.tool_id, "Results/Measured/missing_balls", ua.Variant(1.5, V.Double)
    )
    with pytest.raises(ProtocolError, match="missing_balls: expected an integer, got Double"):
        await driver.results()
