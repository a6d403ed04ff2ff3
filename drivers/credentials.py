"""User credentials for the equipment links, and keeping them out of logs: a credentials
file only the service account can read (:func:`read_credentials`), and a filter that redacts
passwords from asyncua's request logs (:func:`redact_asyncua_passwords`)."""

from __future__ import annotations

import logging
import os
import re
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path

from drivers.pki import PkiError


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never show the password, even in a traceback
        return f"Credentials(username={self.username!r}, password=***)"


def read_credentials(path: Path) -> Credentials:
    """The user and password in ``path`` (TOML: ``username = "..."``, ``password = "..."``).
    The file must belong to this process's user and be readable by nobody else (mode 0600 or
    0400): a password others can read is refused, with the mode found."""
    try:
        info = path.stat()
    except OSError as exc:
        raise PkiError(f"credentials file {path}: cannot read it: {exc.strerror or exc}") from exc
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PkiError(
            f"credentials file {path} is readable or writable by group or others (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); it holds a password: `chmod 600 {path}`"
        )
    if info.st_uid != os.geteuid():
        raise PkiError(
            f"credentials file {path} belongs to uid {info.st_uid}, not to the service account "
            f"(uid {os.geteuid()}) that reads it"
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        # The TOML error may quote the line, which may be the password: say where only.
        raise PkiError(
            f"credentials file {path}: not TOML with username and password ({type(exc).__name__})"
        ) from None
    username, password = data.get("username"), data.get("password")
    if not isinstance(username, str) or not username or not isinstance(password, str):
        raise PkiError(f'credentials file {path}: expected username = "..." and password = "..."')
    return Credentials(username, password)


# -- keeping secrets out of logs ---------------------------------------------------------------------

_PASSWORD = re.compile(r"""Password=(b?'(?:[^'\\]|\\.)*'|b?"(?:[^"\\]|\\.)*")""")

REQUEST_LOGGERS = (
    "asyncua.client.ua_client.UASocketProtocol",
    "asyncua.client.ua_session.UaSession",
    "asyncua.server.uaprocessor",
    "asyncua.server.internal_session",
)
"""asyncua loggers that write whole requests at DEBUG (ActivateSession carries the user's
password: in clear when the channel is encrypted and the token policy is None)."""


class RedactPasswords(logging.Filter):
    """Replaces any ``Password=...`` in a record with ``Password=***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "Password=" in message:
            record.msg, record.args = _PASSWORD.sub("Password=***", message), None
        return True


_REDACT = RedactPasswords()


def redact_asyncua_passwords() -> None:
    """Install :class:`RedactPasswords` on asyncua's request loggers (idempotent)."""
    for name in REQUEST_LOGGERS:
        logging.getLogger(name).addFilter(_REDACT)
