"""The CLI as a client of the pkgline server: one request to it (which server:
:mod:`pkgline.cli.servers`, re-exported here).

Standard library only (``http.client`` speaks HTTP over a Unix socket with a small subclass,
and HTTPS): a command through the server imports neither the server nor the database code.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from pkgline.api.defaults import PRINCIPAL_HEADER
from pkgline.cli.servers import TIMEOUT_S as TIMEOUT_S
from pkgline.cli.servers import ApiKeyFileError as ApiKeyFileError
from pkgline.cli.servers import Server as Server
from pkgline.cli.servers import ServerTrustError as ServerTrustError
from pkgline.cli.servers import ServerUrlError as ServerUrlError
from pkgline.cli.servers import Unreachable as Unreachable
from pkgline.cli.servers import choose as choose
from pkgline.oserrors import in_words


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: Any
    principal: str | None


def session_file(server: Server) -> Path:
    """Where ``pkgline login`` keeps the session token for ``server``: the user's config
    directory, one file per server, mode 0600 (directory 0700)."""
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    name = f"{server.host}_{server.port}" if server.host else "local"
    return base / "pkgline" / "sessions" / name


API_KEY_FILE = "PKGLINE_API_KEY_FILE"


def api_key() -> str | None:
    """The API key a system's scripts call the server with: the first line of the file
    ``$PKGLINE_API_KEY_FILE`` names (as ``pkgline user key`` printed it), or None when it
    names none. Never from the command line or the environment itself, where other users'
    ``ps`` or a shell's history would see it; the file must be readable by its owner only
    (ApiKeyFileError, saying what is expected)."""
    named = os.environ.get(API_KEY_FILE)
    if not named:
        return None
    path = Path(named).expanduser()
    what = f"{API_KEY_FILE} {path}"
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise ApiKeyFileError(f"{what}: not a plain file; expected a file holding an API key")
        if mode & 0o077:
            raise ApiKeyFileError(
                f"{what}: others may read it (mode {stat.S_IMODE(mode):04o}), so its key is not "
                f"used: chmod 600 {path}"
            )
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ApiKeyFileError(f"{what}: cannot read it: {in_words(exc)}") from None
    except UnicodeDecodeError:
        lines = []
    key = lines[0].strip() if lines else ""
    if not key.startswith("pkl_"):
        raise ApiKeyFileError(
            f"{what}: expected an API key (pkl_...) on its first line, as pkgline user key "
            "printed it"
        )
    return key


def stored_token(server: Server) -> str | None:
    """The session token ``pkgline login`` stored for ``server``, or None (a kept file that
    holds none is said on standard error: the server's refusal then names no file)."""
    if server.host is None:
        return None  # the Unix socket: the OS account is who the client is
    path = session_file(server)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a kept session"
        sys.stderr.write(f"the session kept in {path} cannot be used ({why}): pkgline login\n")
        return None
    token = data.get("token") if isinstance(data, dict) else None
    if not isinstance(token, str):
        sys.stderr.write(f"the session kept in {path} holds no token: pkgline login\n")
        return None
    return token


def store_token(server: Server, token: str, expires_at: str) -> Path:
    """Keep ``token`` for ``server`` (replacing one kept before), readable by the user only."""
    path = session_file(server)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.parent.chmod(0o700)
    temporary = path.with_name(path.name + ".new")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"server": server.url, "token": token, "expires_at": expires_at}, f)
    temporary.replace(path)
    return path


def _connection(server: Server, timeout: float = TIMEOUT_S) -> http.client.HTTPConnection:
    if server.socket_path is not None:
        return _UnixConnection(server.socket_path, timeout)
    return http.client.HTTPSConnection(
        server.host or "", server.port, timeout=timeout, context=_tls_context()
    )


def _tls_context() -> ssl.SSLContext:
    """The context that checks the server's certificate: against ``$PKGLINE_SERVER_CA``'s
    CA file when it names one, else the system's CAs."""
    cafile = os.environ.get("PKGLINE_SERVER_CA") or None
    try:
        return ssl.create_default_context(cafile=cafile)
    except OSError as exc:  # ssl.SSLError is an OSError too
        raise ServerTrustError(
            f"PKGLINE_SERVER_CA {cafile!r}: {in_words(exc)}; expected a PEM file of the CA "
            "that signed the server's certificate"
        ) from None


def _unanswered(server: Server, exc: Exception, timeout: float) -> Unreachable:
    """Why ``server`` did not answer, in words: the OS's reason, or that its certificate was
    not one this client trusts (and how to give it the CA)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = (
            f"its certificate was not accepted ({exc.verify_message}): PKGLINE_SERVER_CA names "
            "the PEM file of the CA that signed it, when the system's CAs do not"
        )
    elif isinstance(exc, ssl.SSLError):
        why = f"the TLS handshake failed ({exc.reason or exc})"
    elif isinstance(exc, TimeoutError):
        why = f"no answer within {timeout:g} s"
    elif isinstance(exc, OSError) and exc.strerror:
        why = exc.strerror
    else:
        why = str(exc) or type(exc).__name__
    return Unreachable(f"the server {server.url} did not answer: {why}")


def request(
    server: Server,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    query: list[tuple[str, str]] | None = None,
    token: str | None = None,
    *,
    timeout: float = TIMEOUT_S,
) -> Answer:
    """One request; the answer's JSON (or ``{"error": "http", ...}`` when it is not JSON).
    ``timeout``: how long to wait for the answer (longer for a request that waits on the
    line, ``tool reset``)."""
    target = path + ("?" + urlencode(query) if query else "")
    headers = {"accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["content-type"] = "application/json"
    token = token or api_key() or stored_token(server)
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    conn = _connection(server, timeout)
    try:
        conn.request(method, target, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise _unanswered(server, exc, timeout) from exc
    finally:
        conn.close()
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = {"error": "http", "message": raw.decode(errors="replace")[:500]}
    return Answer(response.status, parsed, response.getheader(PRINCIPAL_HEADER))
