"""The Modbus driver keeps its connection on its own and fails clearly: events on the edge,
reconnection after the tool comes back, timeouts instead of hangs, protocol errors for
garbage, configuration errors with file and line. Each test runs once per equipment class."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from pathlib import Path

import pytest

from drivers.errors import ConfigurationError, ProtocolError, ToolTimeout, ToolUnreachable
from drivers.interface import ConnectionLost, ConnectionRestored, StatusChanged
from drivers.modbus.driver import ModbusDriver
from drivers.modbus.mapfile import packaged_map, packaged_map_path
from drivers.model import EquipmentClass, ProcessState
from simulators.engine import VirtualTool
from simulators.modbus_server import ModbusToolServer
from tests.drivers.common import event_stream, full_recipe, next_event, wait_for_state

from .conftest import FAST, tool_config
from .fakes import FakeModbusServer, mute, serve_image


async def test_events_start_with_connectivity_and_status_then_report_changes(
    driver: ModbusDriver, equipment_class: EquipmentClass
) -> None:
    async with event_stream(driver) as stream:
        assert isinstance(await anext(stream), ConnectionRestored)
        first = await anext(stream)
        assert isinstance(first, StatusChanged) and first.status.state is ProcessState.IDLE
        await driver.load_recipe(full_recipe(equipment_class))
        while True:
            event = await next_event(stream, StatusChanged)
            assert isinstance(event, StatusChanged)
            if event.status.state is ProcessState.READY:
                break


async def test_the_driver_reports_the_loss_and_reconnects_when_the_tool_restarts(
    driver: ModbusDriver, tool: VirtualTool, server: ModbusToolServer
) -> None:
    port = server.port
    async with event_stream(driver) as stream:
        await next_event(stream, StatusChanged)
        await server.stop()  # the simulator is killed
        lost = await next_event(stream, ConnectionLost, within=2.0)
        assert isinstance(lost, ConnectionLost) and lost.tool_id == tool.tool_id
        with pytest.raises(ToolUnreachable):
            await driver.status()

        async with ModbusToolServer(tool, port=port):  # ...and restarted on the same port
            await next_event(stream, ConnectionRestored, within=3.0)
            status = await next_event(stream, StatusChanged)
            assert isinstance(status, StatusChanged) and status.status.state is ProcessState.IDLE
            assert driver.connected
            assert (await driver.status()).state is ProcessState.IDLE


async def test_dropped_connections_are_reopened_by_the_driver(
    driver: ModbusDriver, server: ModbusToolServer
) -> None:
    async with event_stream(driver) as stream:
        await next_event(stream, StatusChanged)
        await server.drop_connections(refuse_for_s=0.2)
        await next_event(stream, ConnectionLost, within=2.0)
        await next_event(stream, ConnectionRestored, within=3.0)
    assert (await driver.status()).state is ProcessState.IDLE


async def test_requests_fail_at_once_with_tool_unreachable_when_nothing_listens(
    equipment_class: EquipmentClass,
) -> None:
    async with FakeModbusServer(mute) as fake:
        port = fake.port  # a port that was free a moment ago and is closed now
    driver = ModbusDriver(tool_config(equipment_class, port))
    await driver.start()
    try:
        assert not driver.connected
        async with event_stream(driver) as stream:
            assert isinstance(await anext(stream), ConnectionLost)
        with pytest.raises(ToolUnreachable, match="not connected"):
            await driver.status()
        with pytest.raises(ToolUnreachable):
            await driver.abort()
    finally:
        await driver.close()


async def test_a_tool_that_never_answers_gives_tool_timeout_not_a_hang(
    equipment_class: EquipmentClass,
) -> None:
    policy = FAST.model_copy(update={"timeout_s": 0.2})
    async with FakeModbusServer(mute) as fake:
        driver = ModbusDriver(tool_config(equipment_class, fake.port, policy=policy))
        await driver.start()
        try:
            async with asyncio.timeout(policy.timeout_s + 1.0):
                with pytest.raises(ToolTimeout, match=r"no answer within 0\.2 s"):
                    await driver.status()
            assert not driver.connected
        finally:
            await driver.close()


async def test_garbage_on_the_wire_gives_a_protocol_error(
    equipment_class: EquipmentClass,
) -> None:
    async with FakeModbusServer(lambda request: b"HTTP/1.1 400 Bad Request\r\n\r\n") as fake:
        driver = ModbusDriver(tool_config(equipment_class, fake.port))
        await driver.start()
        try:
            with pytest.raises(ProtocolError, match="not a Modbus TCP frame"):
                await driver.status()
        finally:
            await driver.close()


async def test_an_impossible_state_value_gives_a_protocol_error_naming_the_register(
    equipment_class: EquipmentClass,
) -> None:
    status = packaged_map(equipment_class).status
    state = status.field("state").address
    async with FakeModbusServer(serve_image({state: 9})) as fake:
        driver = ModbusDriver(tool_config(equipment_class, fake.port))
        await driver.start()
        try:
            with pytest.raises(ProtocolError) as error:
                await driver.status()
            message = str(error.value)
            assert "status.state (input register 0)" in message
            assert "9 is not a valid value" in message
        finally:
            await driver.close()


@pytest.mark.parametrize(("done", "total"), [(40, 32), (1, 0), (65535, 65534)])
async def test_impossible_progress_gives_a_protocol_error_as_over_opc_ua(
    equipment_class: EquipmentClass, done: int, total: int
) -> None:
    """More sites done than the job has: garbage, refused like every other impossible
    register (the OPC UA driver refuses it too), not a progress that the controller would
    record in a held lot's history (its partial work) and show in `tool list`."""
    status = packaged_map(equipment_class).status
    image = {
        status.field("state").address: int(ProcessState.EXECUTING),
        status.field("sites_done").address: done,
        status.field("sites_total").address: total,
    }
    async with FakeModbusServer(serve_image(image)) as fake:
        driver = ModbusDriver(tool_config(equipment_class, fake.port))
        await driver.start()
        try:
            with pytest.raises(ProtocolError, match=f"{done} of {total} sites is impossible"):
                await driver.status()
        finally:
            await driver.close()


async def test_a_nan_or_unknown_enum_in_the_results_gives_a_protocol_error(
    equipment_class: EquipmentClass,
) -> None:
    regmap = packaged_map(equipment_class)
    header = regmap.results
    first_measured = regmap.measured.fields[0]
    image = {
        header.field("present").address: 1,
        header.field("rows").address: 1,
        header.field("cols").address: 1,
    }
    nan_high, nan_low = struct.unpack(">HH", struct.pack(">f", float("nan")))
    image[first_measured.address] = nan_high
    if first_measured.size == 2:
        image[first_measured.address + 1] = nan_low
    async with FakeModbusServer(serve_image(image)) as fake:
        driver = ModbusDriver(tool_config(equipment_class, fake.port))
        await driver.start()
        try:
            with pytest.raises(ProtocolError, match=first_measured.name) as error:
                await driver.results()
            assert "not a number" in str(error.value) or "not a known value" in str(error.value)
        finally:
            await driver.close()


async def test_a_malformed_map_file_gives_a_configuration_error_with_path_and_line(
    equipment_class: EquipmentClass, tmp_path: Path
) -> None:
    text = packaged_map_path(equipment_class).read_text()
    text = text.replace("extends: common.yaml", "extends: pkgline:common.yaml")
    lines = text.splitlines()
    line = next(i for i, entry in enumerate(lines, 1) if "{address: 500," in entry)
    lines[line - 1] = lines[line - 1].replace("address: 500", "address: 50")  # into status
    path = tmp_path / "real-tool.yaml"
    path.write_text("\n".join(lines))
    with pytest.raises(ConfigurationError) as error:
        ModbusDriver(tool_config(equipment_class, 502, map=path))
    assert str(error.value).startswith(f"{path}:{line}: ")
    assert "overlaps block status" in str(error.value)


async def test_a_cancelled_caller_does_not_disturb_the_next_request(
    driver: ModbusDriver, tool: VirtualTool
) -> None:
    for _ in range(5):
        pending = asyncio.ensure_future(driver.identify())
        await asyncio.sleep(0)
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pending
        assert (await driver.status()).state is ProcessState.IDLE
        assert await driver.identify() == tool.identity
    assert driver.connected


async def test_close_is_idempotent_and_ends_the_event_streams(driver: ModbusDriver) -> None:
    stream = driver.events()
    assert isinstance(await anext(stream), ConnectionRestored)
    await driver.close()
    await driver.close()
    remaining = [event async for event in stream]
    assert all(isinstance(e, StatusChanged) for e in remaining)
    with pytest.raises(ToolUnreachable):
        await driver.status()


async def test_a_job_survives_a_dropped_connection(
    driver: ModbusDriver, equipment_class: EquipmentClass, server: ModbusToolServer
) -> None:
    await driver.load_recipe(full_recipe(equipment_class))
    await wait_for_state(driver, ProcessState.READY)
    async with event_stream(driver) as stream:
        await next_event(stream, ConnectionRestored)
        await server.drop_connections()
        await next_event(stream, ConnectionLost, within=2.0)
        await next_event(stream, ConnectionRestored, within=3.0)
    assert (await driver.status()).state is ProcessState.READY
