"""The security log's chain on SQLite and PostgreSQL: the row an event is appended as (one
function, for the identity store's transactions, the flow version store's and the lot store's
units of work), appending on a SQLAlchemy connection, and the compiled statements a unit of
work appends with (an engineering change's event, in the change's own transaction)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ClauseElement

from mes.adapters.driver import CompiledStatement, Execute, Fetch, Plan
from mes.adapters.tables import SECURITY_CHAIN, audit_heads, security_events
from mes.domain.audit import GENESIS
from mes.domain.identity import SecurityEvent
from mes.domain.security_chain import event_hash
from mes.guard import with_origin
from mes.ports_security import AppendSecurityEvent, SecurityRequest

_H = audit_heads.c
EVENT_KEYS = [c.name for c in security_events.c if c.name != "seq"]


def event_row(event: SecurityEvent, head: str | None) -> tuple[dict[str, Any], str]:
    """The row that appends ``event`` after the chain's ``head`` (None: the head's row is
    gone; the chain goes on from GENESIS and ``audit verify`` reports the cut), and the new
    head: its hash. The detail gets the request's origin (``from``, :func:`with_origin`)
    when it has none, hashed as it is stored."""
    event = replace(event, detail=with_origin(event.detail))
    prev = head or GENESIS
    digest = event_hash(event, prev)
    row = {
        "at": event.at,
        "kind": event.kind.value,
        "actor": event.actor,
        "method": event.method.value if event.method else None,
        "subject": event.subject,
        "action": event.action,
        "lot_id": event.lot_id,
        "detail": event.detail,
        "prev_hash": prev,
        "hash": digest,
    }
    return row, digest


async def add_event(conn: AsyncConnection, event: SecurityEvent) -> None:
    """Append ``event`` to the log's chain in ``conn``'s transaction: it follows the head
    (taken FOR UPDATE on PostgreSQL, so writers of the log take turns; SQLite's BEGIN
    IMMEDIATE holds the one write lock already), and becomes the head."""
    prev = await conn.scalar(select(_H.head).where(_H.chain == SECURITY_CHAIN).with_for_update())
    row, digest = event_row(event, prev)  # with where the server's request came from
    await conn.execute(insert(security_events).values(row))
    if prev is None:  # the head's row is gone: the chain goes on (verify reports the cut)
        await conn.execute(insert(audit_heads).values(chain=SECURITY_CHAIN, head=digest))
    else:
        await conn.execute(
            update(audit_heads).where(_H.chain == SECURITY_CHAIN).values(head=digest)
        )


class SecurityStatements:
    """The statements a unit of work appends to the security log with, compiled once for one
    dialect."""

    def __init__(self, dialect: Dialect):
        def c(statement: ClauseElement, keys: list[str] | None = None) -> CompiledStatement:
            return CompiledStatement.compile(statement, dialect, keys)

        # Writers of the log take their turn on its head: the row stays locked to the end of
        # the transaction (SQLite: BEGIN IMMEDIATE holds the one write lock already).
        self.head = c(select(_H.head).where(_H.chain == SECURITY_CHAIN).with_for_update())
        self.insert_event = c(insert(security_events), EVENT_KEYS)
        head = bindparam("head", type_=_H.head.type)
        self.set_head = c(update(audit_heads).where(_H.chain == SECURITY_CHAIN).values(head=head))
        self.insert_head = c(insert(audit_heads).values(chain=SECURITY_CHAIN, head=head))


def security_plan(sql: SecurityStatements, request: SecurityRequest) -> Plan[None]:
    """The statements that answer ``request`` (:data:`mes.ports.Work`)."""
    if isinstance(request, AppendSecurityEvent):
        rows = yield Fetch(sql.head, {})
        head = rows[0]["head"] if rows else None
        row, digest = event_row(request.event, head)
        yield Execute(sql.insert_event, row)
        yield Execute(sql.set_head if head is not None else sql.insert_head, {"head": digest})
        return None
    raise TypeError(f"not a security log request: {request!r}")
