"""Electronic signatures' store for SQLite and PostgreSQL, on the same compiled statements
and driver sessions as the lot store: a signature row is written in the transaction of the
history entry it signs (``signatures`` is append-only, revision 0005)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement

from mes.adapters.driver import CompiledStatement, ExecuteMany, Fetch, Plan
from mes.adapters.rows import signature_from_row
from mes.adapters.tables import signatures
from mes.domain.signatures import Signature
from mes.ports import GetSignatures, SaveSignatures, SignatureRequest

_S = signatures.c
_COLUMNS = [c.name for c in signatures.c if c.name != "seq"]


class SignatureStatements:
    """The signatures' statements, compiled once for one dialect."""

    def __init__(self, dialect: Dialect):
        def c(statement: ClauseElement, keys: list[str] | None = None) -> CompiledStatement:
            return CompiledStatement.compile(statement, dialect, keys)

        self.insert = c(insert(signatures), _COLUMNS)
        self.of_lot = c(select(signatures).where(_S.lot_id == bindparam("lot_id")).order_by(_S.seq))


def signature_values(s: Signature) -> dict[str, Any]:
    if s.entry_hash is None:
        raise ValueError(f"a signature of lot {s.lot_id} not linked to the entry it signs")
    return {
        "entry_hash": s.entry_hash,
        "lot_id": s.lot_id,
        "signer": s.signer,
        "printed_name": s.printed_name,
        "meaning": s.meaning,
        "at": s.at,
        "method": s.method.value,
    }


def signature_plan(sql: SignatureStatements, request: SignatureRequest) -> Plan[Any]:
    """The statements that answer ``request`` (:data:`mes.ports.Work`)."""
    if isinstance(request, SaveSignatures):
        yield ExecuteMany(sql.insert, [signature_values(s) for s in request.signatures])
        return None
    if isinstance(request, GetSignatures):
        found: list[Signature] = []
        for lot_id in request.lot_ids:
            rows = yield Fetch(sql.of_lot, {"lot_id": lot_id})
            found.extend(signature_from_row(r) for r in rows)
        return sorted(found, key=lambda s: s.seq or 0)
    raise TypeError(f"not a signature store request: {request!r}")
