"""How the store fails: every error of a database driver is classified once, here, at the
store's edge, into what its caller can do about it.

::

    DatabaseError                   root of the store's own errors
    ├── IntegrityViolation          a unique or foreign key constraint refused a write
    └── DatabaseUnavailable         cannot be used now: wait and try again (with backoff)
        ├── DatabaseReadOnly        it accepts no writes (a standby after a failover,
        │                           default_transaction_read_only, a read-only file)
        └── DatabaseRetryable       this attempt was refused for a passing reason
                                    (serialization failure, deadlock, too many connections,
                                    statement cancelled, lock not available, SQLite busy)

Plain :class:`DatabaseUnavailable`: unreachable, connection refused, lost or silent past its
timeout (:class:`mes.adapters.database.DatabaseTimeouts`), server shutting down, login
refused, disk full. Anything else a driver raises (a syntax error, a missing table, a value
of the wrong type) is a bug and is raised as it is.

Opening a connection is different (:func:`classify_opening`): whatever the server answers
then, it has begun no work, and whatever its SQLSTATE (55000 "database is not currently
accepting connections" after ``ALTER DATABASE ... ALLOW_CONNECTIONS false``, say) the
database cannot be used now: :class:`DatabaseUnavailable`, unless :func:`classify` says more
(retryable, read-only). Only the client's own refusal of its connection settings, before it
reaches any server (asyncpg's ClientConfigurationError: an unknown ``ssl`` mode, a
certificate file it cannot read), is a configuration error (a
:class:`~mes.adapters.location.DatabaseUrlError`): waiting would not mend it.

A failed unit of work committed nothing, with one exception no client can rule out: a
connection lost while its COMMIT was under way may have committed. Every write of the lot
tracker is checked against what is recorded (version column, job status), so trying it
again is refused or finds it done, never does it twice.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from mes.adapters.location import DatabaseUrlError

if TYPE_CHECKING:
    import asyncpg

Kind = Literal["unavailable", "read-only", "retryable"]


class DatabaseError(Exception):
    """The store's root error (see the module docstring for the tree)."""


class IntegrityViolation(DatabaseError):
    """A unique or foreign key constraint refused a write (whatever the driver)."""


class DatabaseUnavailable(DatabaseError):
    """The database cannot do this now: wait and try again. ``reason`` says why, in a few
    words for an operator (the driver's message)."""

    kind: Kind = "unavailable"

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class DatabaseReadOnly(DatabaseUnavailable):
    """The database accepts no writes now (reads still work): a standby after a failover,
    ``default_transaction_read_only``, a read-only SQLite file or file system."""

    kind: Kind = "read-only"


class DatabaseRetryable(DatabaseUnavailable):
    """This attempt was refused for a passing reason (serialization failure, deadlock, too
    many connections, statement cancelled, lock not available, SQLite busy or locked): the
    same work, tried again shortly, normally goes through."""

    kind: Kind = "retryable"


# PostgreSQL: SQLSTATE classes and codes (Appendix A of the PostgreSQL manual).
_PG_READ_ONLY = {"25006"}  # read_only_sql_transaction
_PG_RETRYABLE = {
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
    "53300",  # too_many_connections
    "55P03",  # lock_not_available
    "57014",  # query_canceled (statement_timeout, pg_cancel_backend)
}
_PG_UNAVAILABLE_CLASSES = {
    "08",  # connection exception
    "28",  # invalid authorization specification (login refused)
    "53",  # insufficient resources: disk full, out of memory (53300 is retryable, above)
    "57",  # operator intervention: shutdown, cannot connect now (57014 is retryable, above)
    "58",  # system error (I/O error)
}
_PG_UNAVAILABLE = {"3D000"}  # invalid_catalog_name: the database does not exist (any more)

# SQLite: primary result codes (https://sqlite.org/rescode.html).
_SQLITE_RETRYABLE = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_INTERRUPT}
_SQLITE_READ_ONLY = {sqlite3.SQLITE_READONLY}
_SQLITE_UNAVAILABLE = {
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_NOMEM,
    sqlite3.SQLITE_PROTOCOL,
    sqlite3.SQLITE_NOLFS,
    sqlite3.SQLITE_NOTADB,  # not a database file (a wrong path): not usable
}


def classify(exc: BaseException) -> DatabaseError | None:
    """The store's error for what a driver (or SQLAlchemy's pool around it) raised, or None
    for a bug, to be raised as it is. Already classified errors come back unchanged."""
    if isinstance(exc, DatabaseError):
        return exc
    if isinstance(exc, PoolTimeout):
        return DatabaseUnavailable(f"no database connection free in time ({exc})")
    if isinstance(exc, DBAPIError):
        # SQLAlchemy's wrapper: the driver's error is .orig, or (asyncpg, through SQLAlchemy's
        # adapter) the cause of .orig.
        inner = exc.orig.__cause__ if exc.orig is not None else None
        found = classify(inner) if inner is not None else None
        if found is None and exc.orig is not None and exc.orig is not exc:
            found = classify(exc.orig)
        if found is None and exc.connection_invalidated:
            found = DatabaseUnavailable(_message(exc.orig or exc))
        return found
    # asyncpg's errors: none can have been raised unless asyncpg was imported (by the
    # dialect, for a PostgreSQL URL), and importing it for SQLite costs every command
    pg: Any = sys.modules.get("asyncpg")
    if pg is not None and isinstance(exc, pg.PostgresError):
        return _postgres(exc)
    if (
        pg is not None
        and isinstance(exc, pg.InterfaceError | pg.InternalClientError)
        and not isinstance(exc, pg.ClientConfigurationError)
    ):
        # The client side of a connection: closed, or left unusable by a timeout or by the
        # server ending it mid-operation ("cannot switch to state 12; another operation is
        # in progress", asyncpg's InternalClientError, after pg_terminate_backend).
        return DatabaseUnavailable(_message(exc))
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityViolation(str(exc))
    if isinstance(exc, sqlite3.Error):
        return _sqlite(exc)
    if isinstance(exc, TimeoutError):  # asyncpg's connect and command timeouts
        return DatabaseUnavailable("the database did not answer in time")
    if isinstance(exc, OSError):  # connection refused, reset, no route, no such file
        return DatabaseUnavailable(_message(exc))
    return None


def classify_opening(exc: BaseException) -> Exception:
    """The error to raise for what opening a connection raised (``exc``, the driver's own;
    SQLAlchemy calls this through the engine's ``handle_error`` hook,
    :func:`mes.adapters.database.create_engine`): :func:`classify`'s answer where it has one;
    a configuration error (DatabaseUrlError) where the client refused its own settings; else
    DatabaseUnavailable with the server's words. Nothing opening a connection raises is a
    bug of a statement: the server refused the connection, for a reason an operator reads in
    the message."""
    found = classify(exc)
    if found is not None:
        return found
    driver: BaseException = exc
    if isinstance(driver, DBAPIError) and driver.orig is not None:
        driver = driver.orig
    if driver.__cause__ is not None:  # asyncpg's error, behind SQLAlchemy's adapter
        driver = driver.__cause__
    pg: Any = sys.modules.get("asyncpg")
    if pg is not None and isinstance(driver, pg.ClientConfigurationError):
        return DatabaseUrlError(f"the database connection settings are refused: {driver}")
    return DatabaseUnavailable(_message(driver))


def _postgres(exc: asyncpg.PostgresError) -> DatabaseError | None:
    import asyncpg  # imported already: exc is one of its errors

    code = str(getattr(exc, "sqlstate", "") or "")
    message = _message(exc)
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return IntegrityViolation(str(exc))
    if code in _PG_READ_ONLY:
        return DatabaseReadOnly(message)
    if code in _PG_RETRYABLE or code.startswith("40"):  # 40: transaction rollback
        return DatabaseRetryable(message)
    if code == "28P01":  # invalid_password: where one is given
        return DatabaseUnavailable(
            f"{message}: the password is kept in a password file (PGPASSFILE, or the "
            "account's ~/.pgpass, mode 0600), not in the URL"
        )
    if code in _PG_UNAVAILABLE or code[:2] in _PG_UNAVAILABLE_CLASSES:
        return DatabaseUnavailable(message)
    if isinstance(exc, asyncpg.PostgresConnectionError):
        return DatabaseUnavailable(message)
    return None


def _sqlite(exc: sqlite3.Error) -> DatabaseError | None:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return None
    primary = code & 0xFF  # extended codes carry the primary one in their low byte
    message = _message(exc)
    if primary in _SQLITE_RETRYABLE:
        return DatabaseRetryable(message)
    if primary in _SQLITE_READ_ONLY:
        return DatabaseReadOnly(message)
    if primary in _SQLITE_UNAVAILABLE:
        return DatabaseUnavailable(message)
    return None


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        # the OS's words for its error number: asyncio's connect puts its own text in
        # strerror ("Connect call failed ('127.0.0.1', 5999)") where the OS says "Connection
        # refused"; a resolver's error (a negative number) keeps its own text
        if exc.errno is not None and exc.errno > 0:
            return os.strerror(exc.errno)
        if exc.strerror:
            return exc.strerror
    return str(exc) or type(exc).__name__


@contextmanager
def classified() -> Iterator[None]:
    """Driver errors become the store's own (:func:`classify`), once, here; a bug is raised
    as it is. Every store's edge goes through this (the lot store's driver, and the plain
    SQLAlchemy stores of identities, sessions and flow versions)."""
    try:
        yield
    except DatabaseError:
        raise
    except Exception as exc:
        found = classify(exc)
        if found is None:
            raise
        raise found from exc
