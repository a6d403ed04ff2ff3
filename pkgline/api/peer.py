"""Who is on the other end of the server's Unix socket: the kernel's word (``SO_PEERCRED``),
never a name the client sends.

uvicorn puts no peer credentials in the ASGI scope (it gives ``client`` as None on a Unix
socket), so the server uses this HTTP protocol class: when a connection is made it reads the
peer's uid, gid and pid from the socket once, and every request on that connection carries
them in ``scope["pkgline.peer"]``. The credentials are those of the process that connected,
taken by the kernel at ``connect()``; a client cannot name another account.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

PEER_KEY = "pkgline.peer"


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket) -> PeerCredentials | None:
    """The credentials of a connected Unix socket's peer (Linux), or None elsewhere."""
    if sock.family != socket.AF_UNIX or not hasattr(socket, "SO_PEERCRED"):
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return PeerCredentials(pid, uid, gid)


class PeerCredentialsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (the C parser: h11's pure-Python parsing was a good part
    of the server's time per request), adding the peer's credentials to every request."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        peer = peer_credentials(sock) if sock is not None else None
        inner = self.app

        async def app(scope: Any, receive: Any, send: Any) -> None:
            scope[PEER_KEY] = peer
            await inner(scope, receive, send)

        self.app = app
