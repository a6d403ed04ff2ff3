"""Where the lot tracker's database is, which schema revision this code needs, how long a call
to it may wait and which PostgreSQL password file may be read: known without SQLAlchemy, for
the short-lived commands that read a lot with the standard library's sqlite3 or asyncpg alone
(:mod:`mes.adapters.sqlite_reads`, :mod:`mes.adapters.postgres_reads`).
:mod:`mes.adapters.database` and :mod:`mes.adapters.schema` take them from here."""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

SCHEMA_REVISION = "0031"
"""The head of the Alembic revisions in ``mes/migrations`` (a test keeps them equal)."""

_SQLITE_SCHEMES = ("sqlite:///", "sqlite+aiosqlite:///")


def default_database_url() -> str:
    """``$PKGLINE_DB``, else a SQLite file in the user's data directory."""
    configured = os.environ.get("PKGLINE_DB")
    if configured:
        return configured
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return f"sqlite:///{data_home / 'pkgline' / 'pkgline.db'}"


def sqlite_file(url: str) -> Path | None:
    """The file of a plain SQLite URL (``sqlite:///PATH``, ``sqlite+aiosqlite:///PATH``,
    as pkgline opens it); None for any other URL, and for a SQLite URL with a query, an
    escape, a ``~`` or no file, which only SQLAlchemy's parser reads as pkgline does."""
    for scheme in _SQLITE_SCHEMES:
        if url.startswith(scheme):
            path = url.removeprefix(scheme)
            if not path or path == ":memory:" or any(c in path for c in "?#%~"):
                return None
            return Path(path)
    return None


def plain_sqlite_url(path: Path) -> str:
    """How a SQLite file's URL is shown (the form of :func:`mes.adapters.database.display_url`)."""
    return f"sqlite:///{path}"


_POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")
_PLAIN_PART = re.compile(r"[A-Za-z0-9_.-]+")


def postgres_dsn(url: str) -> str | None:
    """The DSN asyncpg reads of a plain PostgreSQL URL (``postgresql://USER[:PASSWORD]@HOST
    [:PORT]/DB``, ``postgres://`` or ``postgresql+asyncpg://``; a user, host and database of
    letters, digits, ``_.-``; one ``@``; no query), to the server SQLAlchemy's dialect would
    reach, or None: a URL only SQLAlchemy's parser reads as pkgline does."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _POSTGRES_SCHEMES or "?" in url or "#" in url:
        return None
    if parts.netloc.count("@") != 1:
        return None
    host = parts.netloc.rpartition("@")[2].partition(":")[0]
    named = (parts.username, host, parts.path.removeprefix("/"))
    if not all(p and _PLAIN_PART.fullmatch(p) for p in named):
        return None
    user, _, database = named
    password = "" if parts.password is None else ":" + parts.password
    at = f"{host}:{port}" if port is not None else host
    return f"postgresql://{user}{password}@{at}/{database}"


def shown_postgres_url(dsn: str) -> str:
    """A :func:`postgres_dsn` as people should see it (as
    :func:`mes.adapters.database.display_url` shows it): its password hidden."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    host = parts.netloc.rpartition("@")[2]
    return f"postgresql://{parts.username}:***@{host}{parts.path}"


class DatabaseUrlError(ValueError):
    """A database URL pkgline cannot use."""


def check_password_file() -> None:
    """The PostgreSQL password file (``$PGPASSFILE``, else ``~/.pgpass``): usable, or absent
    when not named. libpq's rule, which asyncpg follows: a file that others may read is
    ignored."""
    named = os.environ.get("PGPASSFILE")
    path = Path(named).expanduser() if named else Path.home() / ".pgpass"
    what = f"PGPASSFILE {path}" if named else f"the PostgreSQL password file {path}"
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if named:
            raise DatabaseUrlError(f"{what}: there is no such file") from None
        return
    except OSError as exc:
        raise DatabaseUrlError(f"{what}: cannot read it: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise DatabaseUrlError(f"{what}: not a plain file")
    if mode & 0o077:
        raise DatabaseUrlError(
            f"{what}: others may read it (mode {stat.S_IMODE(mode):04o}), so its passwords "
            f"are not used: chmod 600 {path}"
        )


@dataclass(frozen=True, slots=True)
class DatabaseTimeouts:
    """How long any database call may wait, in seconds (line.toml ``[database_timeouts]``
    for ``pkgline serve``; the CLI uses the defaults).

    - ``connect_s``: to open a connection (PostgreSQL: TCP, TLS and login; asyncpg's
      ``timeout``). The CLI says an unreachable database is unreachable after this.
    - ``statement_s``: for one statement's answer, BEGIN and COMMIT included (asyncpg's
      ``command_timeout``; the statement is then cancelled and the connection dropped).
      SQLite: its busy timeout, how long a statement waits for another process's write lock.
    - ``pool_s``: for a connection from the engine's pool when all are in use.

    A call waits at most about their sum, and a silent partition is found within
    ``statement_s`` (a connection in use) or ``connect_s`` (a new one)."""

    connect_s: float = 5.0
    statement_s: float = 15.0
    pool_s: float = 10.0

    def __post_init__(self) -> None:
        for name in ("connect_s", "statement_s", "pool_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"database timeout {name} must be more than 0 s")
