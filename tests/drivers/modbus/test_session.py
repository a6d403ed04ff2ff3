"""The session owns the pymodbus connection: deadlines instead of hangs, every failure as the
project's own error with tool and request, waiting requests failed at once when the
connection goes, garbage frames caught before pymodbus decodes them, and a cancelled caller
that does not disturb the requests after it."""

from __future__ import annotations

import asyncio
import contextlib
import struct

import pytest

from drivers.errors import DriverError, ProtocolError, ToolTimeout, ToolUnreachable
from drivers.modbus.session import ModbusSession, answer_problem

from .fakes import CLOSE, FakeModbusServer, echo_address, exception_answer, frame, mute


def session_to(
    port: int, *, timeout_s: float = 0.3, lost: list[str] | None = None
) -> ModbusSession:
    return ModbusSession(
        tool_id="T-1",
        host="127.0.0.1",
        port=port,
        unit_id=1,
        timeout_s=timeout_s,
        on_lost=None if lost is None else lost.append,
    )


READ = bytes.fromhex("0007 0000 0006 01 04 0000 0002")
"""Read 2 input registers at 0, transaction 7, unit 1."""


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (bytes.fromhex("0007 0000 0007 01 04 04 0001 0002"), None),
        (bytes.fromhex("0007 0000 0007 01 04"), None),  # not complete yet
        (bytes.fromhex("0007 0000 0003 01 84 02"), None),  # exception response
        (b"HTTP/1.1 400", "not a Modbus TCP frame"),
        (bytes.fromhex("0007 0000 0400 01 04 04"), "impossible MBAP length 1024"),
        (bytes.fromhex("0008 0000 0007 01 04 04 0001 0002"), "for transaction 8, not 7"),
        (bytes.fromhex("0007 0000 0007 02 04 04 0001 0002"), "from unit 2, not 1"),
        (bytes.fromhex("0007 0000 0007 01 03 04 0001 0002"), "function code 3 answers"),
        (bytes.fromhex("0007 0000 0005 01 04 02 0001"), "2 data bytes (2 sent) answer a read of 2"),
        (bytes.fromhex("0007 0000 0007 01 04 04 0001 0002 ff"), "1 unexpected bytes"),
    ],
    ids=[
        "good",
        "incomplete",
        "exception",
        "not-modbus",
        "bad-length",
        "wrong-transaction",
        "wrong-unit",
        "wrong-function",
        "short-read",
        "trailing-bytes",
    ],
)
def test_answer_frames_are_checked_against_their_request(
    answer: bytes, problem: str | None
) -> None:
    found = answer_problem(answer, READ)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


async def test_reads_and_writes_reach_the_tool() -> None:
    async with FakeModbusServer(echo_address) as fake:
        session = session_to(fake.port)
        await session.connect()
        try:
            assert await session.read_input_registers(40, 3, request="probe") == [40, 40, 40]
            assert await session.read_holding_registers(7, 1, request="probe") == [7]
        finally:
            await session.close()
        assert fake.requests[0][7] == 4 and fake.requests[1][7] == 3


async def test_connecting_where_nothing_listens_is_tool_unreachable() -> None:
    async with FakeModbusServer(mute) as fake:
        port = fake.port
    session = session_to(port)
    with pytest.raises(ToolUnreachable, match=f"cannot connect to 127.0.0.1:{port}") as error:
        await session.connect()
    assert error.value.tool_id == "T-1" and error.value.request == "connect"
    with pytest.raises(ToolUnreachable, match="not connected"):
        await session.read_input_registers(0, 1, request="status")
    await session.close()


async def test_a_mute_tool_times_out_every_waiting_request_at_once_and_is_dropped() -> None:
    lost: list[str] = []
    async with FakeModbusServer(mute) as fake:
        session = session_to(fake.port, timeout_s=0.2, lost=lost)
        await session.connect()
        try:
            async with asyncio.timeout(1.0):
                results = await asyncio.gather(
                    session.read_input_registers(0, 1, request="status"),
                    session.read_input_registers(100, 3, request="answer"),
                    return_exceptions=True,
                )
            for result, request in zip(results, ("status", "answer"), strict=True):
                assert isinstance(result, ToolTimeout), result
                assert result.request == request and result.tool_id == "T-1"
                assert "no answer within 0.2 s" in str(result)
            assert not session.connected
            assert lost == ["no answer within 0.2 s"], "reported once"
            with pytest.raises(ToolUnreachable):
                await session.read_input_registers(0, 1, request="status")
        finally:
            await session.close()
        assert len(fake.requests) == 1, "pymodbus did not retry"


async def test_a_dropped_connection_fails_the_waiting_requests_at_once() -> None:
    lost: list[str] = []
    async with FakeModbusServer(lambda request: CLOSE) as fake:
        session = session_to(fake.port, timeout_s=5.0, lost=lost)
        await session.connect()
        try:
            async with asyncio.timeout(1.0):  # long before the 5 s timeout
                with pytest.raises(ToolUnreachable, match="closed the connection"):
                    await session.read_input_registers(0, 1, request="status")
            # (before any answer: with the hint that a TLS tool does this to a plain client)
            assert len(lost) == 1 and lost[0].startswith("the tool closed the connection (")
        finally:
            await session.close()


async def test_garbage_fails_the_request_at_once_with_a_protocol_error() -> None:
    async with FakeModbusServer(lambda request: b"\x00\x01garbage-garbage") as fake:
        session = session_to(fake.port, timeout_s=5.0)
        await session.connect()
        try:
            async with asyncio.timeout(1.0):
                with pytest.raises(ProtocolError, match="not a Modbus TCP frame") as error:
                    await session.read_input_registers(0, 1, request="status")
            assert error.value.request == "status"
            assert not session.connected, "a desynchronised stream is dropped"
        finally:
            await session.close()


async def test_a_short_answer_is_a_protocol_error() -> None:
    def short(request: bytes) -> bytes:
        return frame(request, bytes([4, 2]) + struct.pack(">H", 1))

    async with FakeModbusServer(short) as fake:
        session = session_to(fake.port)
        await session.connect()
        try:
            with pytest.raises(ProtocolError, match="answer a read of 3 registers"):
                await session.read_input_registers(0, 3, request="status")
        finally:
            await session.close()


async def test_a_modbus_exception_is_a_protocol_error_and_the_connection_stays() -> None:
    async with FakeModbusServer(exception_answer(2)) as fake:
        session = session_to(fake.port)
        await session.connect()
        try:
            with pytest.raises(ProtocolError, match=r"Modbus exception 2 \(ILLEGAL_ADDRESS\)"):
                await session.read_input_registers(9000, 1, request="status")
            with pytest.raises(ProtocolError, match="ILLEGAL_ADDRESS"):
                await session.write_registers(9000, [1, 2], request="abort")
            assert session.connected
        finally:
            await session.close()


async def test_a_cancelled_caller_leaves_its_request_to_finish_and_the_next_one_is_answered() -> (
    None
):
    async with FakeModbusServer(echo_address, delay_s=0.05) as fake:
        session = session_to(fake.port, timeout_s=1.0)
        await session.connect()
        try:
            first = asyncio.ensure_future(session.read_input_registers(1, 1, request="first"))
            await asyncio.sleep(0.01)  # the request is on the wire
            first.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await first
            assert await session.read_input_registers(2, 2, request="second") == [2, 2]
            assert session.connected
        finally:
            await session.close()


async def test_close_fails_waiting_requests_and_is_idempotent() -> None:
    async with FakeModbusServer(mute) as fake:
        session = session_to(fake.port, timeout_s=5.0)
        await session.connect()
        pending = asyncio.ensure_future(session.read_input_registers(0, 1, request="status"))
        await asyncio.sleep(0.01)
        await session.close()
        await session.close()
        with pytest.raises(ToolUnreachable, match="closed"):
            await pending


async def test_every_error_is_a_driver_error_naming_tool_and_request() -> None:
    async with FakeModbusServer(exception_answer(4)) as fake:
        session = session_to(fake.port)
        await session.connect()
        try:
            with pytest.raises(DriverError) as error:
                await session.read_input_registers(0, 1, request="identify")
            assert str(error.value).startswith("tool T-1, identify: ")
            assert "DEVICE_FAILURE" in str(error.value)
        finally:
            await session.close()
