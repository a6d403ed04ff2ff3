"""Which pkgline server a command goes through (``--server``, ``$PKGLINE_SERVER``, else the
local socket when it exists), or none: direct mode. Apart from the client
(:mod:`pkgline.cli.remote`, ``http.client`` and with it ``ssl``: about 17 ms) so that a
command in direct mode does not import it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pkgline.api.defaults import DEFAULT_SOCKET

TIMEOUT_S = 30.0
"""How long a request may wait for the server's answer."""


class ServerUrlError(ValueError):
    """``--server`` / ``$PKGLINE_SERVER`` is not a server URL: says what is expected."""


class ServerTrustError(ServerUrlError):
    """``$PKGLINE_SERVER_CA`` does not name a CA file the client can check the server with."""


class ApiKeyFileError(ServerUrlError):
    """``$PKGLINE_API_KEY_FILE`` does not name a file holding an API key that only its owner
    may read."""


class Unreachable(Exception):
    """The server did not answer (no one listens, refused, timed out)."""


@dataclass(frozen=True, slots=True)
class Server:
    url: str
    """``unix:///path`` or ``https://host:port``."""
    socket_path: str | None = None
    host: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, url: str) -> Server:
        parts = urlsplit(url.strip())
        if parts.scheme == "unix" and parts.path and not parts.netloc:
            return cls(f"unix://{parts.path}", socket_path=parts.path)
        if parts.scheme == "https" and parts.hostname:
            if parts.username or parts.password or parts.query:
                raise ServerUrlError(
                    f"--server {url!r}: no user, password or query in the URL (pkgline login "
                    "keeps the session)"
                )
            if parts.path not in ("", "/") or parts.fragment:
                raise ServerUrlError(
                    f"--server {url!r}: no path in the URL: expected https://HOST:PORT"
                )
            try:
                port = 443 if parts.port is None else parts.port
            except ValueError:  # past 65535, or not a number
                port = 0
            if port < 1:
                raise ServerUrlError(f"--server {url!r}: the port is a number from 1 to 65535")
            return cls(f"https://{parts.hostname}:{port}", host=parts.hostname, port=port)
        raise ServerUrlError(
            f"--server {url!r}: expected unix:///PATH (the server's socket) or https://HOST:PORT"
        )


def choose(server: str | None, db: str | None) -> Server | None:
    """The server a lot command goes through, or None for direct database mode: ``server``
    (``--server`` or ``$PKGLINE_SERVER``); else, unless a database was named (``--db``,
    ``$PKGLINE_DB``), the local server's socket when it exists."""
    if server:
        return Server.parse(server)
    if db:
        return None
    path = os.environ.get("PKGLINE_API_SOCKET") or DEFAULT_SOCKET
    try:
        if Path(path).is_socket():
            return Server(f"unix://{path}", socket_path=path)
    except OSError:
        pass
    return None
