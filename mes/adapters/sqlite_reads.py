"""A lot's report read from a pkgline SQLite file with the standard library's sqlite3 alone.

Why: a direct-mode ``pkgline lot show`` is a process of its own, and SQLAlchemy, aiosqlite
and the lot store's compiled statements cost it about 0.4 s of imports before it reads a
row, four times the read itself. This reader answers the requests of
:func:`mes.lot_reads.report_work` (:data:`mes.ports_lots.LotRead`), the same work the lot
service runs on its store, with hand-written SELECTs of the same rows, and converts each
column by the type the schema declares for it (``DATETIME``: aware UTC, ``JSON``: decoded,
``BOOLEAN``), as SQLAlchemy's types do: the same domain values, so the same report. A test
compares the two on lots of every kind (tests/mes/test_sqlite_reads.py).

It only reads: the file is opened read-only (``mode=ro``), and the requests are run in one
read transaction (a snapshot in WAL mode). What it does not answer, it says with
:class:`NotAnswered`, and the caller takes the full path, which answers or refuses as ever.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Generator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

from mes.adapters import jsontext
from mes.adapters.report_reads import (
    ANY_QUARANTINE,
    FLOW_VERSION_HASHES,
    REVISION,
    NotAnswered,
    plan,
)
from mes.ports_lots import LotRead

__all__ = ["NotAnswered", "SqliteReader"]

T = TypeVar("T")

Row = dict[str, Any]


def _utc(value: str) -> datetime:
    """A ``DATETIME`` column as :class:`mes.adapters.tables.UtcDateTime` reads it."""
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _json(value: str) -> Any:
    return jsontext.loads(value)


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "DATETIME": _utc,
    "JSON": _json,
    "BOOLEAN": bool,
}
"""Each declared column type that is not read as it is stored, and how its values (never
NULL) are read."""


class SqliteReader:
    """A read-only connection to a pkgline SQLite file (a context manager that closes it)."""

    def __init__(self, path: Path, *, timeout_s: float = 15.0):
        try:
            self._conn = sqlite3.connect(
                f"file:{quote(str(path))}?mode=ro",
                uri=True,
                timeout=timeout_s,  # a writer's lock (a database not in WAL mode)
                isolation_level=None,  # transactions as this class opens them
            )
        except sqlite3.Error as exc:
            raise NotAnswered(f"{path}: {exc}") from exc
        self._columns: dict[str, dict[str, Callable[[Any], Any]]] = {}

    def __enter__(self) -> SqliteReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    def revision(self) -> str | None:
        """The schema revision recorded in the file (None: no pkgline schema)."""
        try:
            row = self._conn.execute(REVISION).fetchone()
        except sqlite3.Error:
            return None
        return None if row is None else str(row[0])

    def run(self, work: Generator[LotRead, Any, T]) -> T:
        """``work`` run to its end in one read transaction: each request it yields answered
        (:meth:`answer`), its result returned, whatever it raises raised."""
        self._conn.execute("BEGIN")
        try:
            answer: Any = None
            while True:
                try:
                    request = work.send(answer)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
                answer = self.answer(request)
        finally:
            work.close()
            self._conn.execute("ROLLBACK")  # nothing was written

    def answer(self, request: LotRead) -> Any:
        """What the lot store answers to ``request`` (:mod:`mes.adapters.report_reads`)."""
        step = plan(request)
        return step.answer(self._rows(step.table, step.sql, step.values))

    def any_quarantined(self) -> bool:
        """Whether any material lot is quarantined now (:data:`ANY_QUARANTINE`)."""
        try:
            return self._conn.execute(ANY_QUARANTINE).fetchone() is not None
        except sqlite3.Error as exc:
            raise NotAnswered(f"materials: {exc}") from exc

    def flow_version_hashes(self) -> dict[tuple[str, int], str]:
        """The content hash of every published flow version, by flow and version (empty:
        none is published, and every lot is on its file's flow)."""
        rows = self._conn.execute(FLOW_VERSION_HASHES)
        return {(str(r[0]), int(r[1])): str(r[2]) for r in rows}

    def _rows(self, table: str, sql: str, values: tuple[Any, ...]) -> list[Row]:
        """The rows ``sql`` selects, each column read by its type in ``table`` (a column
        not of the table, as a join's, is read as stored)."""
        columns = self._columns.get(table)
        if columns is None:
            columns = self._columns[table] = self._types(table)
        try:
            cursor = self._conn.execute(sql, values)
        except sqlite3.Error as exc:
            raise NotAnswered(f"{table}: {exc}") from exc
        names = [d[0] for d in cursor.description]
        readers = [columns.get(n) for n in names]
        return [
            {
                n: (v if f is None or v is None else f(v))
                for n, f, v in zip(names, readers, r, strict=True)
            }
            for r in cursor
        ]

    def _types(self, table: str) -> dict[str, Callable[[Any], Any]]:
        found = self._conn.execute(
            "SELECT name, type FROM pragma_table_info(?)", (table,)
        ).fetchall()
        if not found:
            raise NotAnswered(f"no table {table}")
        return {
            name: _CONVERTERS[kind]
            for name, declared in found
            if (kind := str(declared).split("(")[0].strip().upper()) in _CONVERTERS
        }
