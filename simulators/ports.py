"""Free TCP ports on the loopback interface for simulated tools, brokers and servers that a
demo or a test starts: :func:`free_loopback_ports`.

Ports are chosen at random from :func:`port_range`: below the system's ephemeral range by
default, or the range ``$PKGLINE_SIM_PORTS`` names (``LOW-HIGH``, both included), so that
runs side by side on one machine (the test suite's workers, two demos) choose from ranges of
their own and never the same port.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
from pathlib import Path
from typing import Final

LOOPBACK: Final = "127.0.0.1"

PORTS_FROM: Final = 20000
"""By default, free ports are chosen from here up to the start of the system's ephemeral
range."""

PORTS_ENV: Final = "PKGLINE_SIM_PORTS"
"""``LOW-HIGH`` (both included): the ports to choose from instead of the default range."""

_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST: Final = 1024
_HIGHEST: Final = 65535


class PortRangeError(ValueError):
    """``$PKGLINE_SIM_PORTS`` is not a range of ports."""


def _ephemeral_start() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def default_port_range() -> range:
    """From :data:`PORTS_FROM` up to the start of the system's ephemeral range."""
    return range(PORTS_FROM, _ephemeral_start())


def port_range() -> range:
    """The ports :func:`free_loopback_ports` chooses from: ``$PKGLINE_SIM_PORTS`` when set,
    else :func:`default_port_range`. Raises :class:`PortRangeError`, saying what was
    expected, when the variable is not ``LOW-HIGH`` with 1024 <= LOW <= HIGH <= 65535."""
    spec = os.environ.get(PORTS_ENV, "").strip()
    if not spec:
        return default_port_range()
    low, _, high = spec.partition("-")
    try:
        first, last = int(low), int(high)
    except ValueError:
        first = last = -1
    if not _LOWEST <= first <= last <= _HIGHEST:
        raise PortRangeError(
            f"${PORTS_ENV} is {spec!r}; expected LOW-HIGH, two port numbers from {_LOWEST} "
            f"to {_HIGHEST} with LOW <= HIGH (for example 20000-24999), or nothing for "
            f"{PORTS_FROM} up to the system's ephemeral ports"
        )
    return range(first, last + 1)


def free_loopback_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 now, held together while they are
    chosen, so they differ, chosen at random from :func:`port_range`.

    Below the ephemeral range by default: a port the kernel hands out for binding to port 0
    is one it also hands out as the source port of outgoing connections, and one of those (a
    database or HTTP client of any process) took such a port between its choice and the
    line's start (seen on CI with the suite on two workers). Another process choosing from
    the same range could still bind one first, which then shows as an OSError when the line
    starts (``pkgline demo`` then chooses again and starts its simulators anew); runs side by
    side avoid that with ranges of their own (``$PKGLINE_SIM_PORTS``). A range with no free
    port left falls back to one the kernel chooses."""
    ports_range = port_range()
    tries = 1000 if len(ports_range) >= count else 0
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            for _try in range(tries):
                port = random.choice(ports_range)
                if port in ports:
                    continue
                try:
                    sock.bind((LOOPBACK, port))
                except OSError:
                    continue
                break
            else:
                sock.bind((LOOPBACK, 0))  # no room left in the range
            ports.append(int(sock.getsockname()[1]))
        return ports
