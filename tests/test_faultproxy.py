"""The tests' TCP fault proxy (tests/faultproxy.py) does what each mode says, in front of an
server on loopback that answers each chunk reversed: passes bytes, flips one byte of each chunk, drops everything while
holding connections open, resets connections."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from tests.faultproxy import FaultProxy

SILENCE_S = 0.5
"""How long a silent connection is listened to (it answers never; no timing is asserted)."""


@contextlib.asynccontextmanager
async def _reversing_server() -> AsyncIterator[int]:
    async def reverse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1024):
                writer.write(data[::-1])
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(reverse, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def _client(
    proxy: FaultProxy,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_pass_mode_carries_bytes_both_ways_and_corrupt_mode_flips_one_byte() -> None:
    async with _reversing_server() as port, FaultProxy("127.0.0.1", port) as proxy:
        async with _client(proxy) as (reader, writer):
            writer.write(b"abcdef")
            assert await reader.readexactly(6) == b"fedcba"
            proxy.set_mode("corrupt")
            writer.write(b"abcdef")
            answer = await reader.readexactly(6)
        # one byte flipped on the way there (d), one on the way back (c, after the reversal)
        assert answer == bytes([ord("f"), ord("e"), ord("d") ^ 0xFF, ord("c") ^ 0xFF, 98, 97])


async def test_silent_mode_holds_connections_open_and_answers_nothing() -> None:
    async with _reversing_server() as port, FaultProxy("127.0.0.1", port) as proxy:
        async with _client(proxy) as (reader, writer):
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"gnip"
            proxy.set_mode("silent")
            writer.write(b"ping")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.read(4), SILENCE_S)
            async with _client(proxy) as (new_reader, new_writer):  # accepted, never answered
                new_writer.write(b"ping")
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(new_reader.read(4), SILENCE_S)
            proxy.set_mode("pass")  # the silenced connection lost its bytes: it is reset
            with pytest.raises(ConnectionResetError):
                await reader.read(4)
        async with _client(proxy) as (reader, writer):
            writer.write(b"pong")
            assert await reader.readexactly(4) == b"gnop"


async def test_reset_mode_resets_open_connections_and_every_new_one() -> None:
    async with _reversing_server() as port, FaultProxy("127.0.0.1", port) as proxy:
        async with _client(proxy) as (reader, writer):
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"gnip"
            proxy.set_mode("reset")
            with pytest.raises(ConnectionResetError):
                await reader.read(4)
        async with _client(proxy) as (reader, _):
            with pytest.raises(ConnectionResetError):
                await reader.read(4)
