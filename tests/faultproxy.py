"""A TCP fault proxy the tests own: put it between a client and a server on 127.0.0.1 and
choose what the network does.

Modes (:meth:`FaultProxy.set_mode`, at any time, for the connections open and new ones):

- ``pass``: bytes go through both ways.
- ``silent``: a partition. Connections stay open and every byte is dropped, both ways; new
  connections are accepted and never answered. A connection that dropped bytes has lost its
  stream: it is reset when the mode goes back to ``pass``.
- ``reset``: every open connection is reset (RST), and so is each new one at once.
- ``corrupt``: bytes go through with one byte of each chunk flipped, both ways.

Usage::

    async with FaultProxy("127.0.0.1", 5432) as proxy:
        url = f"postgresql://postgres@127.0.0.1:{proxy.port}/db"
        proxy.set_mode("silent")
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from types import TracebackType
from typing import Literal

Mode = Literal["pass", "silent", "reset", "corrupt"]
CHUNK = 65536


class _Link:
    """One client connection and its connection to the server."""

    def __init__(self, client: asyncio.StreamWriter):
        self.client = client
        self.server: asyncio.StreamWriter | None = None
        self.dropped = False

    def reset(self) -> None:
        for writer in (self.client, self.server):
            if writer is None:
                continue
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):  # linger 0: close() sends RST, not FIN
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()


class FaultProxy:
    def __init__(self, host: str, port: int, *, mode: Mode = "pass"):
        self._target = (host, port)
        self.mode: Mode = mode
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.accepted = 0
        """Connections accepted so far (whatever the mode)."""

    @property
    def port(self) -> int:
        assert self._server is not None, "start the proxy first"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    def set_mode(self, mode: Mode) -> None:
        previous, self.mode = self.mode, mode
        if mode == "reset":
            for link in list(self._links):
                link.reset()
        elif mode in ("pass", "corrupt") and previous == "silent":
            for link in list(self._links):
                if link.dropped or link.server is None:
                    link.reset()

    def _now(self, mode: Mode) -> bool:
        return self.mode == mode

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.reset()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- connections -------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        link = _Link(writer)
        self._links.add(link)
        try:
            await self._serve(link, reader)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            link.reset()
            self._links.discard(link)
            self._tasks.discard(task)

    async def _serve(self, link: _Link, client: asyncio.StreamReader) -> None:
        if self.mode == "reset":
            return
        while self.mode == "silent":  # a partition: the server is never reached
            if not await client.read(CHUNK):
                return
            link.dropped = True
        if link.dropped or self._now("reset"):  # (the mode may have changed while reading)
            return
        server, link.server = await asyncio.open_connection(*self._target)
        async with asyncio.TaskGroup() as pumps:
            pumps.create_task(self._pump(link, client, link.server))
            pumps.create_task(self._pump(link, server, link.client))

    async def _pump(
        self, link: _Link, source: asyncio.StreamReader, sink: asyncio.StreamWriter
    ) -> None:
        try:
            while data := await source.read(CHUNK):
                if self.mode == "silent":
                    link.dropped = True
                    continue
                if self.mode == "reset":
                    return
                if self.mode == "corrupt":
                    middle = len(data) // 2
                    data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
                sink.write(data)
                await sink.drain()
        except OSError:  # reset meanwhile
            pass
        # one side closed: close the other (its pump then ends too)
        sink.close()
