"""The SELECTs of a lot's report written by hand, for the readers that need none of
SQLAlchemy: the standard library's sqlite3 (:mod:`mes.adapters.sqlite_reads`) and asyncpg
alone (:mod:`mes.adapters.postgres_reads`). Each request of :func:`mes.lot_reads.report_work`
(:data:`mes.ports_lots.LotRead`) is planned once here: the table whose column types read the
rows, the statement (``?`` placeholders, which a reader may renumber), its values, and how
the rows become the domain values the lot store answers (:mod:`mes.adapters.rows`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mes.adapters.rows import (
    carrier_from_row,
    entry_from_row,
    group_lots,
    reject_from_row,
    signature_from_row,
    tool_snapshot_from_row,
)
from mes.domain.tool_state import TrackInRefusal
from mes.ports_lots import (
    GetCarriers,
    GetChildren,
    GetHistory,
    GetLot,
    GetRefusals,
    GetRejects,
    GetSignatures,
    GetToolState,
    LotRead,
    refusals_of_lot,
)

Row = Mapping[str, Any]


class NotAnswered(Exception):
    """A reader cannot answer: no such database, not a pkgline schema it knows, a request it
    does not read. The full path answers (or refuses, saying why)."""


class Silent(Exception):
    """The database did not answer in time: the full path would wait as long again and say
    so, so the caller says it now (the reason, in the full path's words)."""


@dataclass(frozen=True, slots=True)
class Plan:
    """One request's statement: ``table`` names the table whose declared column types read
    the rows (a column of another table, as a join's, is read as stored)."""

    table: str
    sql: str
    values: tuple[Any, ...]
    answer: Callable[[Sequence[Row]], Any]


def plan(request: LotRead) -> Plan:
    """The statement that answers ``request`` as the lot store does
    (:mod:`mes.adapters.sql_plans`), or :class:`NotAnswered`."""
    if isinstance(request, GetLot):
        lot_id = request.lot_id
        return Plan(
            "lots",
            "SELECT lots.*, carriers.id AS carrier_id FROM lots"
            " LEFT OUTER JOIN carriers ON carriers.lot_id = lots.id"
            " WHERE lots.id = ? ORDER BY carriers.position",
            (lot_id,),
            lambda rows: group_lots(rows).get(lot_id),
        )
    if isinstance(request, GetCarriers):
        return Plan(
            "carriers",
            "SELECT * FROM carriers WHERE lot_id = ? ORDER BY position",
            (request.lot_id,),
            lambda rows: [carrier_from_row(r) for r in rows],
        )
    if isinstance(request, GetRejects):
        return Plan(
            "site_rejects",
            "SELECT site_rejects.* FROM site_rejects"
            " JOIN carriers ON carriers.id = site_rejects.carrier_id"
            " WHERE carriers.lot_id = ? ORDER BY site_rejects.id",
            (request.lot_id,),
            lambda rows: [reject_from_row(r) for r in rows],
        )
    if isinstance(request, GetHistory):
        where = "lot_id = ?"
        values: tuple[Any, ...] = (request.lot_id,)
        if request.before_seq is not None:
            where, values = "lot_id = ? AND seq < ?", (request.lot_id, request.before_seq)
        return Plan(
            "lot_history",
            f"SELECT * FROM lot_history WHERE {where} ORDER BY seq",
            values,
            lambda rows: [entry_from_row(r) for r in rows],
        )
    if isinstance(request, GetChildren):
        return Plan(
            "lots",
            "SELECT id FROM lots WHERE parent_id = ? ORDER BY created_at",
            (request.lot_id,),
            lambda rows: [r["id"] for r in rows],
        )
    if isinstance(request, GetSignatures):
        marks = ", ".join("?" * len(request.lot_ids)) or "NULL"  # IN (NULL): no row
        return Plan(
            "signatures",
            f"SELECT * FROM signatures WHERE lot_id IN ({marks}) ORDER BY seq",
            request.lot_ids,
            lambda rows: [signature_from_row(r) for r in rows],
        )
    if isinstance(request, GetToolState):
        return Plan(
            "tools",
            "SELECT * FROM tools WHERE id = ?",
            (request.tool_id,),
            lambda rows: tool_snapshot_from_row(rows[0]) if rows else None,
        )
    if isinstance(request, GetRefusals):
        lot_id = request.lot_id
        return Plan(
            "controllers",
            "SELECT refusals FROM controllers",
            (),
            lambda rows: refusals_of_lot(
                lot_id,
                [[TrackInRefusal.from_dict(r) for r in row["refusals"] or ()] for row in rows],
            ),
        )
    raise NotAnswered(f"not a request this reader answers: {request!r}")


FLOW_VERSION_HASHES = "SELECT flow, version, content_hash FROM flow_versions"
"""The content hash of every published flow version (a few rows per flow)."""

REVISION = "SELECT version_num FROM alembic_version"

ANY_QUARANTINE = "SELECT 1 FROM materials WHERE quarantined_at IS NOT NULL LIMIT 1"
"""Whether any material lot is quarantined now: where none is, no lot got one, and a lot's
report says so (``quarantined_materials`` empty) without reading its genealogy."""
"""The schema revision recorded in the database."""
