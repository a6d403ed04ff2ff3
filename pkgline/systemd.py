"""Tell systemd how the daemon is doing: a small, dependency-free ``sd_notify`` client.

The protocol (``sd_notify(3)``): one datagram of ``KEY=VALUE`` lines, sent to the AF_UNIX
socket named in ``$NOTIFY_SOCKET``; a name starting with ``@`` is in the abstract namespace.
systemd sets the variable for ``Type=notify`` services; without it every method is a no-op,
so the same code runs from a terminal.

Sending never raises into the daemon: a failure is logged once, on the edge (and once more
when notifications go through again), and the method returns ``False``.

Usage::

    with Notifier.from_environment() as notifier:
        ...                                  # open the database, read every tool's state
        notifier.ready("3 tools online, 2 lots running")
        # in the main loop, every watchdog_interval_s x watchdog_fraction seconds:
        notifier.watchdog()
        # on SIGTERM:
        notifier.stopping("finishing 1 track-out")
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Mapping
from types import TracebackType

import structlog

log = structlog.get_logger("pkgline.systemd")

SEND_TIMEOUT_S = 1.0
"""How long a notification may block when systemd's queue is full (it never should be)."""


class Notifier:
    """A connection to systemd's notification socket, or a no-op when there is none.

    The socket is created on the first notification and kept until :meth:`close`; after
    ``close()`` notifications are ignored. Safe to call from several threads.
    """

    def __init__(self, address: str | None, *, watchdog_usec: int | None = None) -> None:
        """``address``: the value of ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the
        abstract namespace), or None for no systemd. ``watchdog_usec``: systemd's watchdog
        timeout for this process (``$WATCHDOG_USEC``), or None for no watchdog."""
        self._address = _socket_address(address) if address else None
        self._watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._sock: socket.socket | None = None
        self._closed = False
        self._failing = False
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """A notifier for what systemd passed this process (``os.environ`` by default):
        ``$NOTIFY_SOCKET``, and ``$WATCHDOG_USEC`` unless ``$WATCHDOG_PID`` names another
        process (only the named process pings the watchdog)."""
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET") or None, watchdog_usec=_watchdog_usec(env))

    @property
    def enabled(self) -> bool:
        """True when notifications go to systemd (``$NOTIFY_SOCKET`` set, not closed)."""
        return self._address is not None and not self._closed

    @property
    def watchdog_interval_s(self) -> float | None:
        """systemd's watchdog timeout (``WatchdogSec=``) in seconds, or None when this process
        need not ping. Ping well within it, at a fraction (the controller's
        ``watchdog_fraction``, 0.5 by default)."""
        if not self.enabled or self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 1_000_000

    # -- the messages ----------------------------------------------------------------------

    def ready(self, status: str | None = None) -> bool:
        """Start-up is complete (``READY=1``), with an optional status line."""
        return self.notify(READY="1", STATUS=status)

    def status(self, text: str) -> bool:
        """A one-line summary for ``systemctl status`` (``STATUS=``)."""
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        """The main loop is alive (``WATCHDOG=1``)."""
        return self.notify(WATCHDOG="1")

    def stopping(self, status: str | None = None) -> bool:
        """Shutting down (``STOPPING=1``), with an optional status line."""
        return self.notify(STOPPING="1", STATUS=status)

    def reloading(self) -> bool:
        """Reloading the configuration (``RELOADING=1``, with the ``MONOTONIC_USEC`` that
        systemd 253's ``Type=notify-reload`` requires). Send :meth:`ready` when done."""
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify(RELOADING="1", MONOTONIC_USEC=str(now_usec))

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for ``seconds`` more before systemd's start or stop timeout fires
        (``EXTEND_TIMEOUT_USEC=``): for a start-up or a shutdown that is slow but progressing."""
        return self.notify(EXTEND_TIMEOUT_USEC=str(max(0, round(seconds * 1_000_000))))

    def notify(self, **fields: str | None) -> bool:
        """Send ``KEY=VALUE`` fields in one datagram (None values are left out; line breaks
        in a value become spaces). True when systemd got it; False when there is no systemd,
        the notifier is closed, or the send failed (logged once)."""
        lines = [f"{key}={_one_line(value)}" for key, value in fields.items() if value is not None]
        if not lines:
            return False
        message = ("\n".join(lines) + "\n").encode("utf-8")
        with self._lock:
            if self._address is None or self._closed:
                return False
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    self._sock.settimeout(SEND_TIMEOUT_S)
                self._sock.sendto(message, self._address)
            except OSError as exc:
                if not self._failing:
                    self._failing = True
                    log.warning(
                        "systemd notification failed",
                        socket=_display(self._address),
                        error=exc.strerror or repr(exc),
                    )
                return False
            if self._failing:
                self._failing = False
                log.info("systemd notifications delivered again", socket=_display(self._address))
            return True

    # -- lifetime ----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the socket; later notifications are ignored. Idempotent."""
        with self._lock:
            self._closed = True
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        where = _display(self._address) if self._address is not None else "no systemd"
        return f"Notifier({where}{', closed' if self._closed else ''})"


def _socket_address(value: str) -> str | bytes | None:
    if value.startswith("@"):
        return b"\0" + value[1:].encode("utf-8")  # abstract namespace: a leading NUL byte
    if value.startswith("/"):
        return value
    # systemd 254+ may also pass "vsock:CID:PORT" (to a VM's host): not for a line controller.
    log.warning("NOTIFY_SOCKET is not an AF_UNIX socket; not notifying systemd", value=value)
    return None


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid:
        if not (pid.isascii() and pid.isdigit()):
            log.warning("WATCHDOG_PID is not a process id; not pinging the watchdog", value=pid)
            return None
        if int(pid) != os.getpid():
            return None  # the watchdog is another process's job
    if not (usec.isascii() and usec.isdigit()) or int(usec) == 0:
        log.warning("WATCHDOG_USEC is not a positive whole number; no watchdog", value=usec)
        return None
    return int(usec)


def _one_line(value: str) -> str:
    return " ".join(value.splitlines())


def _display(address: str | bytes) -> str:
    return "@" + address[1:].decode("utf-8", "replace") if isinstance(address, bytes) else address
