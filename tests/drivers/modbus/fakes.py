"""Misbehaving Modbus TCP servers for tests: mute, garbage, closing, or serving a fixed image.

A :class:`FakeModbusServer` is a plain asyncio protocol server on 127.0.0.1 (no tasks of its
own): for each complete request frame it calls ``respond(frame)`` and sends what it returns
(``None``: nothing, :data:`CLOSE`: close the connection). :func:`serve_image` answers like a
well-behaved tool whose input registers hold a fixed image, to test values that no sane
simulator would produce.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Mapping
from typing import Final

CLOSE: Final = b"<close>"
Responder = Callable[[bytes], bytes | None]


class _Connection(asyncio.Protocol):
    def __init__(self, server: FakeModbusServer) -> None:
        self.server = server
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.transports.add(transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 6:
            size = 6 + int.from_bytes(self.buffer[4:6], "big")
            if len(self.buffer) < size:
                return
            frame, self.buffer = self.buffer[:size], self.buffer[size:]
            self.server.requests.append(frame)
            reply = self.server.respond(frame)
            assert self.transport is not None
            if reply is CLOSE:
                self.transport.close()
                return
            if reply is not None:
                delay = self.server.delay_s
                if delay > 0:
                    asyncio.get_running_loop().call_later(delay, self._send, reply)
                else:
                    self.transport.write(reply)

    def _send(self, reply: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.server.transports.discard(self.transport)


class FakeModbusServer:
    """A TCP server on 127.0.0.1 that answers each request frame with ``respond(frame)``."""

    def __init__(self, respond: Responder, *, delay_s: float = 0.0) -> None:
        self.respond = respond
        self.delay_s = delay_s
        self.requests: list[bytes] = []
        self.transports: set[asyncio.Transport] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> FakeModbusServer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for transport in list(self.transports):
            transport.close()
        await self._server.wait_closed()
        for _ in range(3):
            await asyncio.sleep(0)


def mute(frame: bytes) -> bytes | None:
    """Accepts the connection and never answers."""
    return None


def frame(request: bytes, pdu: bytes) -> bytes:
    """An answer frame to ``request`` (same transaction and unit id) carrying ``pdu``."""
    return request[0:2] + b"\x00\x00" + (len(pdu) + 1).to_bytes(2, "big") + request[6:7] + pdu


def exception_answer(code: int) -> Responder:
    """Answers every request with Modbus exception ``code``."""
    return lambda request: frame(request, bytes([request[7] | 0x80, code]))


def serve_image(input_registers: Mapping[int, int], *, default: int = 0) -> Responder:
    """A well-formed tool whose input registers hold ``input_registers`` (``default``
    elsewhere); holding registers read as ``default``; writes are acknowledged."""

    def respond(request: bytes) -> bytes | None:
        function = request[7]
        if function in (3, 4):
            address, count = struct.unpack(">HH", request[8:12])
            image = input_registers if function == 4 else {}
            values = [image.get(address + i, default) for i in range(count)]
            return frame(request, bytes([function, 2 * count]) + struct.pack(f">{count}H", *values))
        if function == 16:
            return frame(request, request[7:12])
        return frame(request, bytes([function | 0x80, 1]))

    return respond


def echo_address(request: bytes) -> bytes | None:
    """Answers a read of ``count`` registers at ``address`` with ``count`` times ``address``."""
    function = request[7]
    address, count = struct.unpack(">HH", request[8:12])
    return frame(
        request, bytes([function, 2 * count]) + struct.pack(f">{count}H", *[address] * count)
    )
