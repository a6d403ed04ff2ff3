"""The simulated Modbus tool's connections: pymodbus' server and handler of a connection,
made to behave as a tool's server does where pymodbus does otherwise (an answer to a client
that left is dropped, not logged as an error; a TLS client whose certificate is refused is
closed before anything it sent is served). :mod:`simulators.modbus_server` serves the tool's
register map over them."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

from pymodbus.server import ModbusTcpServer, ModbusTlsServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import SimDevice


class Handler(ServerRequestHandler):
    """pymodbus' handler of one connection, which drops the answer to a client that left
    before it was sent (a driver closing or timing out with a request in flight), as a tool's
    server does. pymodbus logs that as an ERROR with the last frames, for nothing the
    simulated tool did wrong."""

    def server_send(self, pdu: object, addr: tuple[str, int] | None) -> None:
        if not self.is_active():  # the connection is lost: nobody to answer
            return
        super().server_send(pdu, addr)  # type: ignore[no-untyped-call]  # unannotated


class TcpServer(ModbusTcpServer):
    """``ModbusTcpServer`` whose connections are :class:`Handler`."""

    def callback_new_connection(self) -> Handler:
        return Handler(  # type: ignore[no-untyped-call]  # pymodbus leaves it unannotated
            self, self.trace_packet, self.trace_pdu, self.trace_connect
        )


class CheckedHandler(Handler):
    """pymodbus' handler of one connection, which asks ``peer_check`` (with the transport)
    when the connection is made, that is after the TLS handshake, and closes it at once when
    the answer is no; nothing it received is served."""

    def __init__(
        self, owner: CheckedTlsServer, peer_check: Callable[[asyncio.BaseTransport], bool]
    ) -> None:
        super().__init__(  # type: ignore[no-untyped-call]  # pymodbus leaves it unannotated
            owner, owner.trace_packet, owner.trace_pdu, owner.trace_connect
        )
        self._peer_check = peer_check
        self._refused = False

    def callback_connected(self) -> None:
        if not self._peer_check(self.transport):
            self._refused = True
            self.close()
            return
        super().callback_connected()

    def callback_data(self, data: bytes, addr: tuple[str, int] | None = None) -> int:
        if self._refused:  # a request sent with the handshake's last flight: dropped
            return len(data)
        return int(super().callback_data(data, addr))


class CheckedTlsServer(ModbusTlsServer):
    """``ModbusTlsServer`` whose connections are :class:`CheckedHandler`."""

    def __init__(
        self,
        context: SimDevice,
        *,
        address: tuple[str, int],
        sslctx: ssl.SSLContext,
        peer_check: Callable[[asyncio.BaseTransport], bool],
    ) -> None:
        super().__init__(context, address=address, sslctx=sslctx)
        self._peer_check = peer_check

    def callback_new_connection(self) -> CheckedHandler:
        return CheckedHandler(self, self._peer_check)
