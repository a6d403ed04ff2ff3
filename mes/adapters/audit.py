"""Verifying the lot history's and the security log's hash chains on a database (``pkgline
audit verify``).

Reads every history entry in ``seq`` order, in batches, within one snapshot (a read
transaction on SQLite's WAL, REPEATABLE READ on PostgreSQL: writers carry on, and what they
write meanwhile is not half seen), and checks it with :class:`mes.domain.audit.ChainCheck`,
then the heads the store keeps, the signatures, the security log with
:class:`mes.domain.security_chain.SecurityChainCheck`, then that the append-only guards are
still in place.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Table, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mes.adapters.database import READONLY
from mes.adapters.rows import entry_from_row, signature_from_row
from mes.adapters.sql_identity import security_event_from_row
from mes.adapters.tables import (
    LOTS_CHAIN,
    SECURITY_CHAIN,
    audit_heads,
    lot_history,
    lots,
    material_events,
    material_signatures,
    security_events,
    signatures,
)
from mes.domain.audit import GENESIS, ChainCheck, Finding, Problem
from mes.domain.security_chain import SecurityChainCheck
from mes.domain.signature_audit import SignedEntry, check_signature_rows, signed_manifests
from mes.domain.signature_records import Signature, SignatureMethod

APPEND_ONLY = ("lot_history", "security_events", "signatures", "material_signatures")
"""Tables whose rows the database refuses to change or delete (revisions 0004, 0005,
0029)."""


def guard_names(table: str, dialect: str) -> tuple[str, ...]:
    """The triggers that keep ``table`` append-only (as the revisions name them)."""
    if dialect == "postgresql":
        return (f"{table}_append_only", f"{table}_no_truncate")
    return (f"{table}_no_update", f"{table}_no_delete")


@dataclass(frozen=True, slots=True)
class Verification:
    """What ``audit verify`` found: entries and lots checked, and the first problem."""

    entries: int
    lots: int
    lots_head: str
    """The head of the chain over lots (worth keeping elsewhere: docs/security.md)."""
    problem: Problem | None
    signatures: int = 0
    """Electronic signatures checked against the entries they sign."""
    security_events: int = 0
    """Events of the security log checked."""
    security_head: str = ""
    """The head of the security log's chain (worth keeping elsewhere, as ``lots_head``)."""

    @property
    def ok(self) -> bool:
        return self.problem is None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ok": self.ok,
            "entries": self.entries,
            "lots": self.lots,
            "lots_head": self.lots_head,
            "signatures": self.signatures,
            "security_events": self.security_events,
            "security_head": self.security_head,
        }
        if self.problem is not None:
            out["problem"] = self.problem.to_dict()
        return out


async def verify_history(
    engine: AsyncEngine, *, anchors: Sequence[str] = (), batch: int = 2000
) -> Verification:
    """Check the whole history and security log of the database behind ``engine`` (and that
    the ``anchors``, hashes kept elsewhere, are still in one or the other)."""
    check = ChainCheck()
    log = SecurityChainCheck()
    signed: dict[str, SignedEntry] = {}
    checked = 0
    options: dict[str, Any] = {READONLY: True}
    if engine.dialect.name == "postgresql":
        options["isolation_level"] = "REPEATABLE READ"
    async with engine.connect() as plain:
        conn = await plain.execution_options(**options)
        async with conn.begin():
            await _check_entries(conn, check, batch, signed)
            await _check_security_log(conn, log, batch)
            # an anchor may be a head of either chain (each is printed and published to be
            # kept elsewhere), or the start of both (the heads of a database with none yet)
            anchors = [a for a in anchors if a not in log and a != GENESIS]
            problem = check.problem
            if problem is None:
                heads = (
                    await conn.execute(select(lots.c.id, lots.c.history_head, lots.c.state))
                ).all()
                lot_heads: Mapping[str, str | None] = {r.id: r.history_head for r in heads}
                states: Mapping[str, str] = {r.id: r.state for r in heads}
                recorded = (
                    await conn.execute(
                        select(audit_heads.c.head).where(audit_heads.c.chain == LOTS_CHAIN)
                    )
                ).scalar_one_or_none()
                problem = check.finish(lot_heads, recorded or "", anchors, states)
            if problem is None:
                rows = await conn.execute(select(signatures).order_by(signatures.c.seq))
                problem, checked = check_signature_rows(
                    signed, (signature_from_row(dict(r)) for r in rows.mappings()), check.seq_of
                )
            if problem is None:
                problem, of_materials = await _check_material_signatures(conn)
                checked += of_materials
            if problem is None:
                recorded = (
                    await conn.execute(
                        select(audit_heads.c.head).where(audit_heads.c.chain == SECURITY_CHAIN)
                    )
                ).scalar_one_or_none()
                problem = log.finish(recorded)
            if problem is None:
                problem = await _missing_guard(conn)
    return Verification(
        check.entries, check.lots, check.lots_head, problem, checked, log.events, log.head
    )


async def _check_material_signatures(conn: AsyncConnection) -> tuple[Problem | None, int]:
    """The signatures of material lots' releases from quarantine (revision 0029), as a lot's
    are checked against its entries: every row of ``material_signatures`` must name, by the
    material lot and the version it made, an event that records it, and every signature an
    event records must have its row. (A material lot's history is not hash-chained: this
    finds a signature changed, removed or made up on one side only.)"""
    _E, _S = material_events.c, material_signatures.c

    def key(material_id: str, version: object) -> str:
        return f"{material_id}@{version}"

    events = await conn.execute(
        select(_E.seq, _E.material_id, _E.version, _E.signatures).order_by(_E.seq)
    )
    seqs: dict[str, int] = {}
    signed: dict[str, SignedEntry] = {}
    for e in events.mappings():
        k = key(e["material_id"], e["version"])
        seqs[k] = int(e["seq"])
        manifests = signed_manifests({"signatures": e["signatures"]})
        if manifests:
            signed[k] = SignedEntry(int(e["seq"]), e["material_id"], manifests)
    rows = await conn.execute(select(material_signatures).order_by(_S.seq))
    found = (
        Signature(
            r["material_id"],
            r["signer"],
            r["printed_name"],
            r["meaning"],
            r["at"],
            SignatureMethod(r["method"]),
            key(r["material_id"], r["material_version"]),
            int(r["seq"]),
        )
        for r in rows.mappings()
    )
    problem, checked = check_signature_rows(signed, found, seqs.get)
    if problem is not None:
        problem = replace(problem, message=f"material lot signatures: {problem.message}")
    return problem, checked


async def _in_order(
    conn: AsyncConnection, table: Table, batch: int
) -> AsyncGenerator[dict[str, Any], None]:
    """Every row of ``table`` in ``seq`` order, read ``batch`` rows at a time."""
    last = 0
    while True:
        result = await conn.execute(
            select(table).where(table.c.seq > last).order_by(table.c.seq).limit(batch)
        )
        rows = result.mappings().all()
        if not rows:
            return
        for row in rows:
            yield dict(row)
        last = rows[-1]["seq"]


async def _check_entries(
    conn: AsyncConnection, check: ChainCheck, batch: int, signed: dict[str, SignedEntry]
) -> None:
    """Feed every entry to ``check``; keep the entries that record signatures in ``signed``."""
    async with aclosing(_in_order(conn, lot_history, batch)) as rows:
        async for row in rows:
            try:
                entry = entry_from_row(row)
            except (KeyError, TypeError, ValueError) as exc:  # not even a valid entry now
                check.problem = Problem(
                    Finding.CONTENT_CHANGED,
                    f"history entry {row['seq']} (lot {row['lot_id']}) is no longer a valid "
                    f"entry ({exc}): it was changed after it was written",
                    row["seq"],
                    row["lot_id"],
                )
                return
            if not check.add(entry, row["prev_hash"], row["hash"]):
                return
            manifests = signed_manifests(entry.data)
            if manifests:
                signed[row["hash"]] = SignedEntry(row["seq"], row["lot_id"], manifests)


async def _check_security_log(conn: AsyncConnection, log: SecurityChainCheck, batch: int) -> None:
    """Feed every security event to ``log``, in ``seq`` order."""
    async with aclosing(_in_order(conn, security_events, batch)) as rows:
        async for row in rows:
            try:
                event = security_event_from_row(row)
            except (KeyError, TypeError, ValueError) as exc:  # not even a valid event now
                log.stop(
                    Finding.CONTENT_CHANGED,
                    f"security event {row['seq']} is no longer a valid event ({exc}): it was "
                    "changed after it was written",
                    row["seq"],
                )
                return
            if not log.add(event, row["prev_hash"], row["hash"]):
                return


async def _missing_guard(conn: AsyncConnection) -> Problem | None:
    dialect = conn.dialect.name
    if dialect == "postgresql":
        query = text(
            "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgenabled <> 'D' "
            "AND tgrelid = CAST(:t AS regclass)"
        )
    else:
        query = text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t")
    for table in APPEND_ONLY:
        present = {r[0] for r in await conn.execute(query, {"t": table})}
        missing = [g for g in guard_names(table, dialect) if g not in present]
        if missing:
            return Problem(
                Finding.GUARD_MISSING,
                f"{table} is no longer append-only: the trigger(s) {', '.join(missing)} are "
                "missing or disabled (the chain itself verifies)",
            )
    return None
