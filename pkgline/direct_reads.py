"""Direct-mode reads that need none of SQLAlchemy: ``lot show`` on a SQLite file the user
owns, read with the standard library (:mod:`mes.adapters.sqlite_reads`), or on PostgreSQL
with asyncpg alone (:mod:`mes.adapters.postgres_reads`), in a fraction of the time the full
path takes to start (docs/api.md, the CLI's figures).

Each answers what the full path would, or None where it does not answer (another database,
a file of another account, a URL with options, a server that does not answer, another
schema revision, an unknown lot, a flow version not built yet, a lot that may have got a
material lot while some material lot is quarantined: which, only the full path reads): the
caller then takes the
full path, which answers, or refuses and says why, as ever; a database that does not answer
in time is said so at once (:class:`mes.adapters.report_reads.Silent`), where the full path
would wait as long again to say the same. The authority is the full
path's too: a SQLite file is read here only by its owner, who holds every role in direct
mode (:func:`pkgline.bootstrap.direct_principal`); on PostgreSQL the database's own
privileges decide, as they do for the full path."""

from __future__ import annotations

import os
from typing import Any

from flows import Flow, UnknownFlow
from mes.adapters.location import (
    SCHEMA_REVISION,
    DatabaseUrlError,
    default_database_url,
    sqlite_file,
)
from mes.adapters.report_reads import NotAnswered
from mes.domain.errors import InvalidInput, UnknownLot
from mes.domain.model import Lot, Operation
from mes.domain.report import LotReport, report_dict
from mes.lot_reads import report_work


def lot_report(url: str | None, lot_id: str) -> dict[str, Any] | None:
    """``lot show``'s JSON of ``lot_id`` on the database of ``url`` (default:
    ``$PKGLINE_DB`` or the user's file), or None: take the full path."""
    target = url or default_database_url()
    try:
        path = sqlite_file(target)
        if path is None:
            return _postgres_report(target, lot_id)
        from mes.adapters.sqlite_reads import SqliteReader

        if path.stat().st_uid != os.getuid():
            return None  # direct mode refuses another account's file: the full path says so
        with SqliteReader(path) as reader:
            if reader.revision() != SCHEMA_REVISION:
                return None
            flows = _Flows(reader.flow_version_hashes())
            report = reader.run(report_work(lot_id, flows.of))
            return _answered(report, reader.any_quarantined())
    except (OSError, NotAnswered, UnknownLot, InvalidInput, UnknownFlow, DatabaseUrlError):
        return None


def _answered(report: LotReport, any_quarantined: bool) -> dict[str, Any] | None:
    """``report``'s JSON, or None where a material lot quarantined now may have gone into
    the lot (some material lot is quarantined, and the lot's history shows a track-in that
    recorded material lots, its own or its parent's before the split, or a lot merged into
    it): which (``quarantined_materials``, which decides who may release it) is the full
    path's to read. The common case, no quarantine at all, is answered here."""
    if any_quarantined:
        for e in report.history:
            if e.operation is Operation.MERGE or (
                e.operation is Operation.TRACK_IN and e.data.get("materials")
            ):
                return None
    return report_dict(report)


def _postgres_report(url: str, lot_id: str) -> dict[str, Any] | None:
    from mes.adapters.location import postgres_dsn

    dsn = postgres_dsn(url)
    if dsn is None:
        return None
    import asyncio

    from mes.adapters.postgres_reads import PostgresReader

    async def read() -> dict[str, Any] | None:
        async with PostgresReader(dsn) as reader:
            if await reader.revision() != SCHEMA_REVISION:
                return None
            flows = _Flows(await reader.flow_version_hashes())
            report = await reader.run(report_work(lot_id, flows.of))
            return _answered(report, await reader.any_quarantined())

    return asyncio.run(read())


class _Flows:
    """The flow each lot is checked against, as the lot service finds it
    (:meth:`mes.service_core.LotServiceCore.flow_of`): its published version's, built
    already (the user's cache: :class:`pkgline.flowcache.VersionShelf`); the packaged file's
    where no version is published."""

    def __init__(self, hashes: dict[tuple[str, int], str]):
        self._hashes = hashes
        """The content hash of each published flow version (empty: none is published)."""

    def of(self, lot: Lot) -> Flow:
        from pkgline import flowcache

        if not self._hashes:
            return flowcache.cached_library().get(lot.flow)
        digest = self._hashes.get((lot.flow, lot.flow_version))
        library = None if digest is None else flowcache.VersionShelf().read(digest)
        if library is None:
            raise NotAnswered(f"flow {lot.flow} v{lot.flow_version} is not built here yet")
        return library.get(lot.flow)
