"""Where the lot tracker's database is, and which schema revision this code needs: known
without SQLAlchemy, for the short-lived commands that read a SQLite file with the standard
library alone (:mod:`mes.adapters.sqlite_reads`). :mod:`mes.adapters.database` and
:mod:`mes.adapters.schema` take them from here."""

from __future__ import annotations

import os
from pathlib import Path

SCHEMA_REVISION = "0021"
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
