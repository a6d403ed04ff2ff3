"""Direct-mode reads that need none of SQLAlchemy: ``lot show`` on a SQLite file the user
owns, read with the standard library (:mod:`mes.adapters.sqlite_reads`) in a fifth of the
time the full path takes to start (docs/api.md, the CLI's figures).

Each answers what the full path would, or None where it does not answer (another database,
a file of another account, another schema revision, an unknown lot, a flow version not built
yet): the caller then takes the full path, which answers, or refuses and says why, as ever.
The authority is the full path's too: a SQLite file is read here only by its owner, who
holds every role in direct mode (:func:`pkgline.bootstrap.direct_principal`)."""

from __future__ import annotations

import os
from typing import Any

from flows import Flow, UnknownFlow
from mes.adapters.location import SCHEMA_REVISION, default_database_url, sqlite_file
from mes.adapters.sqlite_reads import NotAnswered, SqliteReader
from mes.domain.errors import UnknownLot
from mes.domain.model import Lot
from mes.domain.report import report_dict
from mes.lot_reads import report_work


def lot_report(url: str | None, lot_id: str) -> dict[str, Any] | None:
    """``lot show``'s JSON of ``lot_id`` on the SQLite file of ``url`` (default:
    ``$PKGLINE_DB`` or the user's file), or None: take the full path."""
    path = sqlite_file(url or default_database_url())
    if path is None:
        return None
    try:
        if path.stat().st_uid != os.getuid():
            return None  # direct mode refuses another account's file: the full path says so
        with SqliteReader(path) as reader:
            if reader.revision() != SCHEMA_REVISION:
                return None
            flows = _Flows(reader)
            return report_dict(reader.run(report_work(lot_id, flows.of)))
    except (OSError, NotAnswered, UnknownLot, UnknownFlow):
        return None


class _Flows:
    """The flow each lot is checked against, as the lot service finds it
    (:meth:`mes.service_core.LotServiceCore.flow_of`): its published version's, built
    already (the user's cache: :class:`pkgline.flowcache.VersionShelf`); the packaged file's
    where no version is published."""

    def __init__(self, reader: SqliteReader):
        self._reader = reader

    def of(self, lot: Lot) -> Flow:
        from pkgline import flowcache

        if not self._reader.has_flow_versions():
            return flowcache.cached_library().get(lot.flow)
        digest = self._reader.flow_version_hash(lot.flow, lot.flow_version)
        library = None if digest is None else flowcache.VersionShelf().read(digest)
        if library is None:
            raise NotAnswered(f"flow {lot.flow} v{lot.flow_version} is not built here yet")
        return library.get(lot.flow)
