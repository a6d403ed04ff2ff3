"""Database URLs and engines: SQLite (embedded default) and PostgreSQL (production).

The plain URL forms work as written (``sqlite:///PATH``, ``postgresql://...``): we pick the
async driver (aiosqlite, asyncpg). Durability is explicit:

- SQLite: WAL journal, ``synchronous=FULL`` (a committed move survives a power cut), foreign
  keys on, and writers take the lock up front with ``BEGIN IMMEDIATE`` so a concurrent writer
  waits (``busy_timeout``) instead of failing half-way. Read-only units of work use a plain
  ``BEGIN`` and never block writers.
- PostgreSQL: READ COMMITTED with an optimistic version check on every lot update, and
  ``synchronous_commit`` left at the server's default (on).

Nothing waits for the database without a limit (:class:`DatabaseTimeouts`): a server that
stops answering, or a network that silently drops its packets, becomes
:class:`mes.adapters.errors.DatabaseUnavailable` within seconds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import URL, event, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection, ExceptionContext
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from mes.adapters import jsontext
from mes.adapters.errors import classify_opening
from mes.adapters.location import DatabaseTimeouts as DatabaseTimeouts
from mes.adapters.location import DatabaseUrlError as DatabaseUrlError
from mes.adapters.location import check_password_file as check_password_file
from mes.adapters.location import default_database_url as default_database_url

READONLY = "pkgline_readonly"
"""Execution option marking a read-only transaction (SQLite: plain BEGIN, no write lock)."""


DEFAULT_TIMEOUTS = DatabaseTimeouts()
SQLITE_BUSY_TIMEOUT_MS = round(DEFAULT_TIMEOUTS.statement_s * 1000)


def async_url(url: str | URL) -> URL:
    """The URL with pkgline's async driver: sqlite -> aiosqlite, postgresql -> asyncpg."""
    text = str(url) if isinstance(url, URL) else url
    if text.startswith("postgres://"):
        text = "postgresql://" + text.removeprefix("postgres://")
    try:
        parsed = make_url(text)
    except ArgumentError as exc:
        raise DatabaseUrlError(
            f"{text!r} is not a database URL: expected sqlite:///PATH or postgresql://HOST/DB"
        ) from exc
    backend = parsed.get_backend_name()
    # The plain form names no driver (``postgresql://``); one given explicitly must be ours.
    explicit = parsed.drivername.partition("+")[2]
    if backend == "sqlite":
        if explicit not in ("", "aiosqlite"):
            raise DatabaseUrlError(f"SQLite is used through aiosqlite, not {explicit}")
        if not parsed.database or parsed.database == ":memory:":
            raise DatabaseUrlError("pkgline needs a SQLite file: sqlite:///PATH")
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend == "postgresql":
        if explicit not in ("", "asyncpg"):
            raise DatabaseUrlError(f"PostgreSQL is used through asyncpg, not {explicit}")
        return parsed.set(drivername="postgresql+asyncpg")
    raise DatabaseUrlError(
        f"unsupported database {backend!r}: expected sqlite:///PATH or postgresql://HOST/DB"
    )


POSTGRES_QUERY = (
    "host",
    "port",
    "passfile",
    "ssl",
    "direct_tls",
    "target_session_attrs",
    "krbsrvname",
    "gsslib",
    "statement_cache_size",
    "prepared_statement_cache_size",
)
"""What a PostgreSQL URL's query may set: the connection settings asyncpg takes by name
(SQLAlchemy hands the query to it as they are), less those pkgline sets itself (timeouts)."""


def usable_url(url: str | URL) -> URL:
    """:func:`async_url`, and for PostgreSQL a query asyncpg would not take, or a password
    file it would read that cannot work, refused now (a DatabaseUrlError naming it), where
    asyncpg would raise a TypeError at the first connection (``?sslmode=require``, libpq's
    spelling) or warn, ignore the file and fail the login for want of the password."""
    target = async_url(url)
    if target.get_backend_name() == "postgresql":
        unknown = sorted(set(target.query) - set(POSTGRES_QUERY))
        if unknown:
            hint = (
                " (libpq's sslmode is asyncpg's ssl: ?ssl=require, verify-full, ...)"
                if "sslmode" in unknown
                else ""
            )
            raise DatabaseUrlError(
                f"the database URL sets {', '.join(unknown)}, which the PostgreSQL driver "
                f"does not take{hint}; expected only {', '.join(POSTGRES_QUERY)}"
            )
        if target.password is None:
            check_password_file()
    return target


def display_url(url: str | URL) -> str:
    """The URL as people should see it: plain form, password hidden."""
    parsed = async_url(url)
    plain = parsed.set(drivername=parsed.get_backend_name())
    return plain.render_as_string(hide_password=True)


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def create_engine(
    url: str | URL,
    *,
    pool_size: int = 5,
    echo: bool = False,
    timeouts: DatabaseTimeouts = DEFAULT_TIMEOUTS,
    role: str | None = None,
) -> AsyncEngine:
    """An async engine for ``url`` with pkgline's durability settings and ``timeouts``;
    ``role`` (PostgreSQL only): every connection's session acts as that role (the server
    sets it at connection, as ``SET ROLE``: the login role must be a member of it or a
    superuser), so that what it creates is that role's (migrations as the tables' owner,
    deploy/postgresql-roles.sql)."""
    target = usable_url(url)
    if role is not None and target.get_backend_name() != "postgresql":
        raise DatabaseUrlError("a role to act as is for PostgreSQL only (--as-role)")
    # No rollback on return to the pool: every unit of work ends its transaction itself, and
    # Connection.close() rolls back one left open. The reset would cost a round trip per
    # transaction (a thread hop on SQLite).
    kwargs: dict[str, Any] = {
        "echo": echo,
        "pool_reset_on_return": None,
        "pool_timeout": timeouts.pool_s,
        "json_deserializer": jsontext.loads,
    }
    if target.get_backend_name() == "sqlite":
        assert target.database is not None
        create_private_file(Path(target.database).expanduser())
        # pool_size connections kept open: one past them is opened for the moment (a thread
        # and the PRAGMAs below, tens of milliseconds under load) and closed again.
        kwargs.update(pool_size=pool_size, connect_args={"timeout": timeouts.statement_s})
        engine = create_async_engine(target, **kwargs)
        _configure_sqlite(engine, busy_timeout_ms=round(timeouts.statement_s * 1000))
    else:
        kwargs.update(
            pool_size=pool_size,
            max_overflow=0,
            pool_pre_ping=False,
            connect_args={
                "timeout": timeouts.connect_s,
                "command_timeout": timeouts.statement_s,
                **({"server_settings": {"role": role}} if role is not None else {}),
            },
        )
        engine = create_async_engine(target, **kwargs)
    event.listen(engine.sync_engine, "handle_error", _opening_failed)
    return engine


def _opening_failed(context: ExceptionContext) -> Exception | None:
    """SQLAlchemy's ``handle_error`` hook: an error raised while opening a connection (no
    connection yet; a pre-ping's is SQLAlchemy's own business) is raised as the store's
    (:func:`~mes.adapters.errors.classify_opening`: the database unavailable, whatever the
    server's SQLSTATE, or the client's settings wrong). Errors of statements on a
    connection pass through, for the store's edge to classify."""
    if context.connection is not None or context.is_pre_ping:
        return None
    return classify_opening(context.sqlalchemy_exception or context.original_exception)


def create_private_file(path: Path) -> None:
    """Create the SQLite file ``path`` empty (an empty file is an empty database), mode 0600,
    when it does not exist, and its directory, mode 0700, when that does not exist: a new
    database is its owner's alone (docs/security.md). SQLite gives the -wal and -shm files
    the database file's mode. An existing file or directory keeps its mode."""
    directory = path.parent
    if not directory.exists():
        directory.parent.mkdir(parents=True, exist_ok=True)
        directory.mkdir(mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError:
        return  # not creatable here: SQLite's own error on connecting says why
    os.close(fd)


def _configure_sqlite(engine: AsyncEngine, *, busy_timeout_ms: int) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Take transaction control away from the sqlite3 module, so that our BEGIN below is
        # the only one (SQLAlchemy docs, "Serializable isolation / Savepoints / Transactional
        # DDL"), then set durability.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        readonly = conn.get_execution_options().get(READONLY, False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")
