"""The one Modbus TCP connection to a tool, owned by a session.

pymodbus does the framing; this layer makes it safe to use from a supervisor that reconnects
on its own, and translates every failure once into :mod:`drivers.errors`:

- One connection per tool, requests in order (pymodbus serialises them on one client).
- pymodbus' own retries and reconnects are off (``retries=0``, ``reconnect_delay=0``): a
  retry on a dead socket would wait ``timeout x retries``; reconnecting is the driver's
  supervision (``drivers.supervision.backoff_delays``).
- Every request has a deadline of ``timeout_s`` from the moment it is made (waiting for the
  requests before it included). When it passes, the connection is closed: a late answer
  would otherwise be taken for the next request's. Every request still waiting fails at
  once with :class:`~drivers.errors.ToolTimeout`.
- A pymodbus request is never cancelled mid-flight by its caller: it runs in a task of its
  own and a cancelled caller just stops waiting for it (pymodbus treats a request as an atom;
  cancelling it leaves the transaction state undefined). Only the requests of a connection
  that is already closed and dropped are cancelled.
- When the connection drops, every waiting request fails at once with
  :class:`~drivers.errors.ToolUnreachable`, and requests made while disconnected fail
  immediately.
- Every answer frame is checked before pymodbus decodes it (protocol id, length, transaction
  and unit id, function code, byte count): garbage fails the request at once with
  :class:`~drivers.errors.ProtocolError` and closes the connection, instead of a hang until
  the timeout or an exception inside pymodbus' protocol callback.
- With Modbus/TCP Security the tool's certificate is checked right after the handshake
  (``tls_peer_check``: revocation, :func:`drivers.tls.check_tls_peer`); a refused tool's
  connection is closed before any request goes out, with :class:`~drivers.errors.SecurityRefused`
  naming the certificate and the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, NoReturn

import structlog
from pymodbus.client import AsyncModbusTcpClient, AsyncModbusTlsClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from drivers.errors import (
    ConfigurationError,
    DriverError,
    ProtocolError,
    SecurityRefused,
    ToolTimeout,
    ToolUnreachable,
)
from drivers.modbus.tls_failures import HUNG_UP, PLAIN_HINT, SILENT_HANDSHAKE, TLS_HINT, tls_refusal
from drivers.pki import CertificateRejected, PkiError

log = structlog.get_logger("pkgline.drivers.modbus")

_READ_FUNCTIONS: Final = frozenset({3, 4})
_WRITE_MULTIPLE: Final = 16

LostCallback = Callable[[str], None]

HANDSHAKES_AT_ONCE: Final = 16
"""TLS connections being opened at once by one event loop. A handshake costs both sides
milliseconds of CPU (RSA signatures); 500 tools connecting at once (the daemon starting)
queued every handshake behind the others, past the 1 s connect timeout, and every one was
retried together after the backoff: none got through on a loaded machine. A connection
waits for a slot first; its timeout runs from when it has one."""

_handshakes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _handshake_slot() -> asyncio.Semaphore:
    """This event loop's limit of TLS connections being opened (:data:`HANDSHAKES_AT_ONCE`)."""
    loop = asyncio.get_running_loop()
    slots = _handshakes.get(loop)
    if slots is None:
        slots = _handshakes[loop] = asyncio.Semaphore(HANDSHAKES_AT_ONCE)
    return slots


def answer_problem(answer: bytes, request: bytes) -> str | None:
    """What is wrong with ``answer`` (the bytes received so far) as the answer to
    ``request`` (a whole Modbus TCP frame), or None: fine, or not complete yet.

    MBAP header: transaction id (2 bytes), protocol id (2, always 0), length (2: unit id,
    function code and data), unit id (1); then function code (1) and data.
    """
    if len(answer) >= 4 and answer[2:4] != b"\x00\x00":
        return f"not a Modbus TCP frame (protocol id must be 0): {answer[:12]!r}"
    if len(answer) < 8:
        return None
    length = int.from_bytes(answer[4:6], "big")
    if not 2 <= length <= 254:
        return f"impossible MBAP length {length} (2..254): {answer[:12]!r}"
    tid, expected_tid = answer[0:2], request[0:2]
    if tid != expected_tid:
        return (
            f"the answer is for transaction {int.from_bytes(tid, 'big')}, "
            f"not {int.from_bytes(expected_tid, 'big')}"
        )
    if answer[6] != request[6]:
        return f"the answer comes from unit {answer[6]}, not {request[6]}"
    total = 6 + length
    if len(answer) < total:
        return None
    if len(answer) > total:
        return f"{len(answer) - total} unexpected bytes after the answer"
    function, expected = answer[7], request[7]
    if function == expected | 0x80:
        return None if length == 3 else f"malformed exception response {answer!r}"
    if function != expected:
        return f"function code {function} answers a request with function code {expected}"
    if function in _READ_FUNCTIONS:
        count = int.from_bytes(request[10:12], "big")
        byte_count = answer[8]
        if byte_count != 2 * count or length != 3 + byte_count:
            return (
                f"{byte_count} data bytes ({length - 3} sent) answer a read of {count} "
                f"registers ({2 * count} bytes)"
            )
    elif function == _WRITE_MULTIPLE and (length != 6 or answer[8:12] != request[8:12]):
        return "the write answer does not echo the address and count written"
    return None


def exception_name(code: int) -> str:
    try:
        return ExcCodes(code).name
    except ValueError:
        return "unknown exception"


class _Connection:
    """One TCP connection and the requests made on it."""

    __slots__ = ("answered", "broken", "client", "request_frame", "tasks", "waiting")

    def __init__(self) -> None:
        self.client: AsyncModbusTcpClient | None = None
        self.answered = False
        self.waiting: dict[asyncio.Future[ModbusPDU], str] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.broken = False
        self.request_frame = b""


class ModbusSession:
    """Owns the pymodbus client of one tool. Not thread-safe; one event loop.

    ``on_lost(reason)`` is called once each time an open connection is lost (dropped by the
    tool, timed out, garbage received), not when :meth:`close` closes it.
    """

    def __init__(
        self,
        *,
        tool_id: str,
        host: str,
        port: int,
        unit_id: int = 1,
        timeout_s: float = 1.0,
        on_lost: LostCallback | None = None,
        tls: Callable[[], ssl.SSLContext] | None = None,
        tls_identity: Callable[[], object] | None = None,
        tls_peer_check: Callable[[asyncio.BaseTransport | None], object] | None = None,
    ) -> None:
        """``tls``: Modbus/TCP Security; makes the TLS context at each connection (so a
        certificate trusted or renewed since is taken). ``tls_identity``: a value that changes
        when our own certificate is replaced (:meth:`identity_changed`). ``tls_peer_check``:
        checks the tool's certificate right after the handshake, from the connection's
        transport (:func:`drivers.tls.check_tls_peer`: revocation); raises
        :class:`~drivers.pki.CertificateRejected` to refuse the tool."""
        self.tool_id = tool_id
        self._tls = tls
        self._tls_peer_check = tls_peer_check
        self._tls_identity = tls_identity
        self._identity: object = None
        self._last_failure: str | None = None
        """Why the last connection attempt failed (said by requests made while offline)."""
        self.host = host
        self.port = port
        self.unit_id = unit_id
        self.timeout_s = timeout_s
        self._on_lost = on_lost
        self._conn: _Connection | None = None
        self._orphans: set[asyncio.Task[None]] = set()

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def _error(self, cls: type[DriverError], message: str, request: str) -> DriverError:
        return cls(message, tool_id=self.tool_id, request=request)

    # -- connecting ----------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the connection: one attempt, bounded by the timeout. Raises ToolUnreachable
        when the tool cannot be reached. Does nothing when already connected."""
        if self._conn is not None:
            return
        conn = _Connection()
        loop = asyncio.get_running_loop()
        failures: list[BaseException] = []
        settings: dict[str, Any] = {
            "port": self.port,
            "name": f"pkgline:{self.tool_id}",
            "timeout": self.timeout_s,
            "retries": 0,
            "reconnect_delay": 0,  # no reconnect task: our supervision owns reconnecting
            "reconnect_delay_max": 0,
            "trace_packet": lambda sending, data: self._trace_packet(conn, sending, data),
            "trace_connect": lambda up: None if up else self._dropped(conn),
        }
        client: AsyncModbusTcpClient
        if self._tls is not None:
            try:
                self._identity = self._tls_identity() if self._tls_identity else None
                context = self._tls()
            except (PkiError, OSError, ssl.SSLError) as exc:
                # said by the requests made meanwhile too, not only logged once
                self._last_failure = f"Modbus/TCP Security: {exc}"
                raise self._error(ConfigurationError, self._last_failure, "connect") from exc
            client = AsyncModbusTlsClient(self.host, sslctx=context, **settings)
            self._keep_handshake_error(client, failures)
        else:
            client = AsyncModbusTcpClient(self.host, **settings)
        conn.client = client
        connected = False
        async with _handshake_slot() if self._tls is not None else contextlib.nullcontext():
            began = loop.time()
            try:
                connected = await client.connect()
            finally:
                if not connected:
                    client.close()
        if connected and conn.broken:
            # Dropped as soon as it was made (a tool closing its connections while this one
            # came in, or a TLS tool refusing our certificate after the handshake): not a
            # connection to keep, or the next request would find it gone.
            self._last_failure = (
                f"cannot connect to {self.host}:{self.port}: the tool closed the connection"
                + (TLS_HINT if self._tls is not None else PLAIN_HINT)
            )
            raise self._error(
                SecurityRefused if self._tls is not None else ToolUnreachable,
                self._last_failure,
                "connect",
            )
        if not connected and failures and isinstance(failures[0], (ssl.SSLError, *HUNG_UP)):
            # the handshake refused, or the tool hung up in it (TLS 1.2: its refusal of our
            # certificate, often without an alert)
            self._refused_in_handshake(failures[0])
        if not connected:
            waited = loop.time() - began
            silent = waited >= 0.9 * self.timeout_s
            why = (
                f"no answer within {self.timeout_s:g} s"
                if silent
                else "connection refused or unreachable"
            )
            if self._tls is not None:
                why = SILENT_HANDSHAKE.format(timeout=self.timeout_s) if silent else why + TLS_HINT
            self._last_failure = f"cannot connect to {self.host}:{self.port}: {why}"
            # (with TLS the hint says it may be the handshake: a refused or unreachable
            # tool cannot be told from a refused certificate here)
            raise self._error(ToolUnreachable, self._last_failure, "connect")
        if self._tls_peer_check is not None:
            self._check_peer(client)
        self._last_failure = None
        self._conn = conn

    @staticmethod
    def _keep_handshake_error(client: AsyncModbusTlsClient, failures: list[BaseException]) -> None:
        """Keep why pymodbus' connection attempt failed: it logs the exception and answers
        only False, and with TLS the exception is what says which certificate was refused and
        why (untrusted, expired, another host's)."""
        create = client.ctx.call_create

        async def create_keeping_the_error() -> Any:
            try:
                return await create()
            except BaseException as exc:
                failures.append(exc)
                raise

        client.ctx.call_create = create_keeping_the_error

    def _refused_in_handshake(self, exc: ssl.SSLError | OSError) -> NoReturn:
        """The TLS handshake failed: say why (the tool's certificate refused, and which rule
        it broke, or the handshake itself), logged once per reason."""
        reason, code = tls_refusal(exc, self.host)
        failure = f"Modbus/TCP Security: refused the tool at {self.host}:{self.port}: {reason}"
        if not isinstance(exc, ssl.SSLCertVerificationError):
            failure = f"Modbus/TCP Security: cannot connect to {self.host}:{self.port}: {reason}"
        if failure != self._last_failure:  # once per reason, not at every reconnection
            log.warning(
                "tool certificate refused"
                if isinstance(exc, ssl.SSLCertVerificationError)
                else "tls handshake failed",
                tool_id=self.tool_id,
                reason=code,
                error=failure,
            )
        self._last_failure = failure
        raise self._error(SecurityRefused, failure, "connect") from exc

    def _check_peer(self, client: AsyncModbusTcpClient) -> None:
        """Refuse a tool whose certificate passed the handshake but not our own check
        (revoked): close the connection before any request goes out on it."""
        assert self._tls_peer_check is not None
        try:
            self._tls_peer_check(client.ctx.transport)
        except (CertificateRejected, PkiError, OSError) as exc:
            client.close()
            message = exc.message if isinstance(exc, CertificateRejected) else str(exc)
            failure = (
                f"Modbus/TCP Security: refused the tool at {self.host}:{self.port}: its {message}"
                if isinstance(exc, CertificateRejected)
                else f"Modbus/TCP Security: cannot check the tool's certificate: {message}"
            )
            if failure != self._last_failure:  # once per reason, not at every reconnection
                log.warning(
                    "tool certificate refused",
                    tool_id=self.tool_id,
                    reason=exc.reason.value if isinstance(exc, CertificateRejected) else None,
                    error=failure,
                )
            self._last_failure = failure
            raise self._error(SecurityRefused, failure, "connect") from exc

    def identity_changed(self) -> bool:
        """Our certificate was replaced (``pkgline pki renew``) since this connection was
        made: the caller reconnects (:meth:`renew`) to present the new one."""
        return (
            self._conn is not None
            and self._tls_identity is not None
            and self._tls_identity() != self._identity
        )

    def renew(self) -> None:
        """Drop the connection to reconnect with the renewed certificate."""
        conn = self._conn
        if conn is not None:
            self._break(
                conn, ToolUnreachable, "the controller's certificate was renewed: reconnecting"
            )

    async def close(self) -> None:
        """Close the connection; waiting requests fail with ToolUnreachable. Idempotent."""
        conn = self._conn
        if conn is not None:
            self._break(conn, ToolUnreachable, "the connection was closed", notify=False)
        if self._orphans:
            await asyncio.gather(*self._orphans, return_exceptions=True)
        # The transport closes its socket on the next turn of the loop.
        await asyncio.sleep(0)

    def _dropped(self, conn: _Connection) -> None:
        message = "the tool closed the connection"
        refused = self._tls is not None and not conn.answered
        if refused:
            # With TLS 1.3 a server's refusal of our certificate arrives after the handshake,
            # at the first request: the connection closes before any answer.
            message += TLS_HINT
            self._last_failure = message  # said by the requests made until it reconnects
        elif self._tls is None and not conn.answered:
            # A TLS tool takes our first request for a bad handshake and hangs up.
            message += PLAIN_HINT
            self._last_failure = message
        self._break(conn, SecurityRefused if refused else ToolUnreachable, message)

    def _break(
        self,
        conn: _Connection,
        error: type[DriverError],
        message: str,
        *,
        notify: bool = True,
    ) -> None:
        """Drop ``conn``: fail its waiting requests with ``error``, close the client and
        cancel its requests in flight (safe: this client is never used again)."""
        if conn.broken:
            return
        conn.broken = True
        if self._conn is conn:
            self._conn = None
        waiting, conn.waiting = conn.waiting, {}
        for answer, request in waiting.items():
            if not answer.done():
                answer.set_exception(self._error(error, message, request))
        if conn.client is not None:
            conn.client.close()
        for task in conn.tasks:
            task.cancel()
            self._orphans.add(task)
            task.add_done_callback(self._orphans.discard)
        conn.tasks.clear()
        if notify and self._on_lost is not None:
            self._on_lost(message)

    def _trace_packet(self, conn: _Connection, sending: bool, data: bytes) -> bytes:
        if sending:
            conn.request_frame = data
            return data
        problem = answer_problem(data, conn.request_frame)
        if problem is None:
            conn.answered = True
            return data
        self._break(conn, ProtocolError, f"the tool answered garbage: {problem}")
        return b""  # nothing for pymodbus to decode: the connection is closed

    # -- requests ------------------------------------------------------------------------

    async def _execute(
        self, request: str, call: Callable[[AsyncModbusTcpClient], Awaitable[ModbusPDU]]
    ) -> ModbusPDU:
        conn = self._conn
        if conn is None or conn.client is None:
            why = f" ({self._last_failure})" if self._last_failure else ""
            raise self._error(ToolUnreachable, f"not connected{why}", request)
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[ModbusPDU] = loop.create_future()
        conn.waiting[answer] = request
        # The pymodbus call runs in a task of its own, which hands its outcome to ``answer``:
        # a caller cancelled while waiting cancels ``answer``, never the call.
        task = loop.create_task(self._call(conn, answer, request, call))
        conn.tasks.add(task)
        task.add_done_callback(conn.tasks.discard)
        timer = loop.call_later(self.timeout_s, self._expire, conn, answer)
        try:
            return await answer
        finally:
            timer.cancel()
            conn.waiting.pop(answer, None)

    async def _call(
        self,
        conn: _Connection,
        answer: asyncio.Future[ModbusPDU],
        request: str,
        call: Callable[[AsyncModbusTcpClient], Awaitable[ModbusPDU]],
    ) -> None:
        assert conn.client is not None
        try:
            pdu = await call(conn.client)
        except (TimeoutError, ModbusException, OSError) as exc:
            error, drop = self._translate(exc, request)
            if not answer.done():  # else nobody waits any more (a cancelled caller)
                answer.set_exception(error)
            if drop:
                self._break(conn, type(error), error.message)
        except Exception as exc:  # a bug, not a transport failure: show it as it is
            if not answer.done():
                answer.set_exception(exc)
        else:
            if not answer.done():
                answer.set_result(pdu)

    def _expire(self, conn: _Connection, answer: asyncio.Future[ModbusPDU]) -> None:
        if not answer.done():
            self._break(conn, ToolTimeout, f"no answer within {self.timeout_s:g} s")

    def _translate(self, exc: Exception, request: str) -> tuple[DriverError, bool]:
        """A pymodbus exception as ours, and whether the connection must be dropped (its
        state is unknown after it)."""
        error: DriverError
        drop = True
        if isinstance(exc, ConnectionException | OSError):
            error = self._error(ToolUnreachable, f"connection failed: {exc}", request)
        elif isinstance(exc, ModbusIOException):
            error = self._error(ProtocolError, f"cannot read the answer: {exc}", request)
        elif isinstance(exc, TimeoutError):
            error = self._error(ToolTimeout, f"no answer within {self.timeout_s:g} s", request)
        elif isinstance(exc, ModbusException):
            error, drop = self._error(ProtocolError, str(exc), request), False
        else:  # pragma: no cover - callers pass only the exceptions above
            raise TypeError(f"not a transport failure: {exc!r}")
        error.__cause__ = exc
        return error, drop

    def _checked(self, pdu: ModbusPDU, request: str) -> ModbusPDU:
        if pdu.isError():
            code = pdu.exception_code
            raise self._error(
                ProtocolError,
                f"the tool answered Modbus exception {code} ({exception_name(code)})",
                request,
            )
        return pdu

    async def read_input_registers(self, address: int, count: int, *, request: str) -> list[int]:
        """``count`` input registers from ``address`` (function code 4), in one request."""
        unit = self.unit_id
        pdu = await self._execute(
            request, lambda c: c.read_input_registers(address, count=count, device_id=unit)
        )
        return self._registers(pdu, count, request)

    async def read_holding_registers(self, address: int, count: int, *, request: str) -> list[int]:
        """``count`` holding registers from ``address`` (function code 3), in one request."""
        unit = self.unit_id
        pdu = await self._execute(
            request, lambda c: c.read_holding_registers(address, count=count, device_id=unit)
        )
        return self._registers(pdu, count, request)

    async def write_registers(self, address: int, values: Sequence[int], *, request: str) -> None:
        """Holding registers from ``address`` (function code 16), in one request."""
        unit = self.unit_id
        registers = list(values)
        self._checked(
            await self._execute(
                request, lambda c: c.write_registers(address, registers, device_id=unit)
            ),
            request,
        )

    def _registers(self, pdu: ModbusPDU, count: int, request: str) -> list[int]:
        registers = self._checked(pdu, request).registers
        if len(registers) != count:  # answer_problem checked it; pymodbus decoded it
            raise self._error(
                ProtocolError, f"{len(registers)} registers answer a read of {count}", request
            )
        return list(registers)
