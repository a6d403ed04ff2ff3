"""The Modbus simulator speaks the documented register map to any Modbus client: status in
input registers, the command handshake over holding registers, illegal addresses outside the
map, and switches to drop connections or refuse them for a while.

These tests use a bare pymodbus client, as a third-party integrator would, not our driver.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.pdu import ModbusPDU

from drivers.modbus.codec import decode_string, encode_string
from drivers.modbus.mapfile import packaged_map
from drivers.modbus.regmap import Command, RegisterMap
from drivers.model import EquipmentClass, Mode, ProcessState, RefusalCode
from simulators.engine import SimulationSettings, VirtualTool
from simulators.modbus_server import FUNCTION_CODES, ModbusToolServer

MOLDER: RegisterMap = packaged_map(EquipmentClass.MOLDER)
ANSWER_WITHIN_S = 5.0
"""The bare client's timeout: a loopback answer takes milliseconds, but on a loaded 2-core CI
machine a request once waited past 1 s (no test here waits for a timeout)."""


@pytest.fixture
async def tool() -> AsyncIterator[VirtualTool]:
    tool = VirtualTool("MOLD-1", EquipmentClass.MOLDER, SimulationSettings(time_scale=0, seed=3))
    yield tool
    await tool.close()


@pytest.fixture
async def server(tool: VirtualTool) -> AsyncIterator[ModbusToolServer]:
    async with ModbusToolServer(tool, host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture
async def client(server: ModbusToolServer) -> AsyncIterator[AsyncModbusTcpClient]:
    client = AsyncModbusTcpClient(
        "127.0.0.1", port=server.port, timeout=ANSWER_WITHIN_S, retries=0, reconnect_delay=0
    )
    assert await client.connect()
    yield client
    client.close()
    await asyncio.sleep(0)


def ok(pdu: ModbusPDU) -> ModbusPDU:
    assert not pdu.isError(), pdu
    return pdu


async def read_status(client: AsyncModbusTcpClient) -> dict[str, object]:
    block = MOLDER.status
    pdu = ok(await client.read_input_registers(block.start, count=block.count, device_id=1))
    return dict(block.decode(list(pdu.registers)))


async def send_command(
    client: AsyncModbusTcpClient, command: Command, sequence: int
) -> tuple[int, int, str]:
    """Write the command code and sequence in one request; read the answer block."""
    code = MOLDER.command_codes[command]
    ok(await client.write_registers(MOLDER.command.start, [code, sequence], device_id=1))
    block = MOLDER.answer
    pdu = ok(await client.read_input_registers(block.start, count=block.count, device_id=1))
    answer = block.decode(list(pdu.registers))
    return int(answer["sequence"]), int(answer["code"]), str(answer["reason"])


async def test_the_server_binds_a_free_port_and_serves_the_status_block(
    server: ModbusToolServer, client: AsyncModbusTcpClient
) -> None:
    assert server.port > 0
    status = await read_status(client)
    assert status["state"] == ProcessState.IDLE and status["mode"] == Mode.PRODUCTION
    assert status["job_id"] == "" and status["alarm_severity"] == 0


async def test_a_port_taken_is_said_in_the_os_s_words(tool: VirtualTool) -> None:
    """pymodbus says only "Could not start listen, please check address."; the server says
    that the address is in use (EADDRINUSE), as a caller choosing ports needs to know
    (pkgline demo chooses new ones then)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        server = ModbusToolServer(tool, host="127.0.0.1", port=port)
        try:
            with pytest.raises(OSError) as raised:
                await server.start()
        finally:
            await server.stop()
    assert raised.value.errno == errno.EADDRINUSE
    assert str(raised.value) == (
        f"[Errno {errno.EADDRINUSE}] cannot listen on 127.0.0.1:{port}: Address already in use"
    )


async def test_a_command_runs_once_per_sequence_number_and_is_answered(
    client: AsyncModbusTcpClient, tool: VirtualTool
) -> None:
    header = MOLDER.recipe_header
    for address, registers in header.encode_runs(
        {"name": "R-7", "version": 7, "present_mask": 0b1}
    ):
        ok(await client.write_registers(address, registers, device_id=1))
    temperature = MOLDER.recipe.fields[0]  # bit 0: the first recipe value by address
    ok(await client.write_registers(temperature.address, temperature.encode(180.5), device_id=1))

    assert await send_command(client, Command.LOAD_RECIPE, 1) == (1, RefusalCode.OK, "")
    assert tool.recipe is not None and tool.recipe.body == {temperature.name: 180.5}
    for _ in range(100):
        if tool.status.state is ProcessState.READY:
            break
        await asyncio.sleep(0.005)
    # The same sequence number again does not load the recipe a second time.
    answer = await send_command(client, Command.LOAD_RECIPE, 1)
    assert answer == (1, RefusalCode.OK, "")
    assert tool.status.state is ProcessState.READY
    status = await read_status(client)
    assert status["state"] == ProcessState.READY


async def test_a_refused_command_answers_the_refusal_code_and_the_reason(
    client: AsyncModbusTcpClient,
) -> None:
    sequence, code, reason = await send_command(client, Command.ABORT, 5)
    assert (sequence, code) == (5, RefusalCode.WRONG_STATE)
    assert reason == "nothing to abort while IDLE"


async def test_an_unknown_command_code_is_refused_with_unknown_command(
    client: AsyncModbusTcpClient,
) -> None:
    ok(await client.write_registers(MOLDER.command.start, [999, 3], device_id=1))
    block = MOLDER.answer
    pdu = ok(await client.read_input_registers(block.start, count=block.count, device_id=1))
    answer = block.decode(list(pdu.registers))
    assert answer["code"] == RefusalCode.UNKNOWN_COMMAND and answer["sequence"] == 3


async def test_a_malformed_argument_is_refused_with_invalid_argument(
    client: AsyncModbusTcpClient,
) -> None:
    mode = MOLDER.mode.field("mode")
    ok(await client.write_registers(mode.address, [9], device_id=1))
    _, code, reason = await send_command(client, Command.SET_MODE, 1)
    assert code == RefusalCode.INVALID_ARGUMENT and "9" in reason


async def test_identity_strings_are_ascii_registers(client: AsyncModbusTcpClient) -> None:
    tool_id = MOLDER.identity.field("tool_id")
    pdu = ok(await client.read_input_registers(tool_id.address, count=tool_id.size, device_id=1))
    assert decode_string(list(pdu.registers)) == "MOLD-1"
    assert list(pdu.registers)[:3] == encode_string("MOLD-1", 3)


async def test_addresses_outside_the_map_are_illegal(client: AsyncModbusTcpClient) -> None:
    pdu = await client.read_input_registers(60, count=2, device_id=1)  # between two blocks
    assert pdu.isError() and pdu.exception_code == 2
    pdu = await client.write_registers(5000, [1], device_id=1)
    assert pdu.isError() and pdu.exception_code == 2


async def test_drop_connections_closes_the_clients_and_the_server_keeps_listening(
    server: ModbusToolServer, client: AsyncModbusTcpClient
) -> None:
    await server.drop_connections()
    for _ in range(100):
        if not client.connected:
            break
        await asyncio.sleep(0.005)
    assert not client.connected
    assert await client.connect(), "new connections are accepted"
    await read_status(client)


async def test_a_client_that_leaves_before_its_answer_is_no_error_of_the_server(
    server: ModbusToolServer, client: AsyncModbusTcpClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A driver that closes (or times out) with a request in flight: the answer has nobody to
    go to. pymodbus logged "Cancel send, because not connected!" at ERROR, with the frames,
    on the simulator's stderr (seen in CI, as `pkgline sim` stopped after a test's driver)."""
    block = MOLDER.status
    request = struct.pack(">HHHBBHH", 1, 0, 6, 1, 0x04, block.start, block.count)
    with caplog.at_level(logging.DEBUG, logger="pymodbus"):
        for _ in range(5):
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(request)
            await writer.drain()
            writer.transport.abort()  # gone before the server answers
            await asyncio.sleep(0.05)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert (await read_status(client))["state"] == ProcessState.IDLE, "the others are served"


async def test_refusing_connections_for_a_while_then_listening_again_on_the_same_port(
    server: ModbusToolServer, client: AsyncModbusTcpClient
) -> None:
    port = server.port
    await server.drop_connections(refuse_for_s=0.3)
    assert not await client.connect(), "refused while the tool is away"
    for _ in range(200):
        if server.serving:
            break
        await asyncio.sleep(0.01)
    assert server.port == port
    assert await client.connect()
    status = await read_status(client)
    assert status["state"] == ProcessState.IDLE, "the image is rebuilt for the new listener"


async def test_a_stopped_server_can_be_started_again_on_the_same_port(
    server: ModbusToolServer, tool: VirtualTool
) -> None:
    port = server.port
    await server.stop()
    await server.stop()
    assert not server.serving
    await server.start()
    assert server.port == port
    client = AsyncModbusTcpClient(
        "127.0.0.1", port=port, timeout=ANSWER_WITHIN_S, retries=0, reconnect_delay=0
    )
    assert await client.connect()
    try:
        assert (await read_status(client))["state"] == ProcessState.IDLE
    finally:
        client.close()
        await asyncio.sleep(0)


# -- what docs/equipment.md says a tool answers ------------------------------------------------


def documented_function_codes() -> set[int]:
    """The function codes docs/equipment.md's Modbus section names ("Function codes: ...")."""
    doc = (Path(__file__).parents[2] / "docs" / "equipment.md").read_text(encoding="utf-8")
    section = doc[doc.index("## Modbus TCP") : doc.index("## OPC UA")]
    match = re.search(r"Function codes:(.*?)\.\s", section, re.DOTALL)
    assert match, "docs/equipment.md lists the Modbus function codes"
    sentence = re.sub(r"\([^)]*\)", "", match[1])  # "(read input registers)" etc.
    return {int(n) for n in re.findall(r"\b\d+\b", sentence)}


async def test_the_simulator_answers_exactly_the_documented_function_codes(
    client: AsyncModbusTcpClient, tool: VirtualTool
) -> None:
    documented = documented_function_codes()
    assert documented == FUNCTION_CODES
    holding = MOLDER.spans("holding")[0][0]
    inputs = MOLDER.status.start
    sequence = MOLDER.command.field("sequence").address
    requests = {
        1: client.read_coils(0, count=1, device_id=1),
        2: client.read_discrete_inputs(0, count=1, device_id=1),
        3: client.read_holding_registers(holding, count=1, device_id=1),
        4: client.read_input_registers(inputs, count=1, device_id=1),
        5: client.write_coil(0, True, device_id=1),
        # a command code and a new sequence number one register at a time: not a command
        6: client.write_register(sequence, 7, device_id=1),
        15: client.write_coils(0, [True], device_id=1),
        16: client.write_registers(holding, [0], device_id=1),
    }
    for code, request in requests.items():
        pdu = await request
        if code in documented:
            assert not pdu.isError(), f"function {code}: {pdu}"
        else:
            assert pdu.isError() and pdu.exception_code == 1, f"function {code}: {pdu}"
    assert tool.status.mode is Mode.PRODUCTION, "nothing ran"
