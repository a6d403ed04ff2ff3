"""The holes of a page of the outbox on PostgreSQL, settled before the page is answered.

PostgreSQL hands out an event's id (the outbox's ``seq``) when the row is inserted, not when
its transaction commits: a transaction can hold id 41 uncommitted while another commits 42. A
page read then shows 42 and not 41, and a consumer that asks on from 42 (``GET /events?after=
42``, as it is told to) never sees 41 (docs/events.md). So before a page that has a hole (an
id missing between ``after``, or the oldest id kept, and its last event) is answered, its
holes are probed: an insert of those ids that is always rolled back. PostgreSQL makes it wait for a transaction that holds
the id (the primary key's uniqueness check) until it ends; then the id is either there (the
transaction committed it: the page is read again) or free (rolled back, pruned, or never
used: the hole is for good). A hole still held after :data:`HOLE_WAIT_S` ends the page
before it. SQLite needs none of this: one writer at a time commits, in id order.

The probe needs the INSERT privilege on the outbox, which the server's role has (it writes
events); a role that may only read, or a standby, passes over the holes unprobed. Nothing is ever written: the probes' transaction is rolled back, and the outbox's
NOTIFY trigger fires at COMMIT only.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

HOLE_WAIT_S = 2.0
"""How long a page waits for a transaction holding one of its holes (PostgreSQL's
``lock_timeout`` on the probe); past it, the page ends before its first hole."""
MAX_HOLES = 50_000
"""The most holes one page probes; a page with more ends before the first one not probed."""
LOCK_NOT_AVAILABLE = "55P03"
CANNOT_PROBE = ("42501", "25006")
"""insufficient_privilege (a role that may only read, deploy/postgresql-roles.sql's reports
role), read_only_sql_transaction (a standby): the holes are passed over unprobed, as before."""

_PROBE = text(
    "INSERT INTO outbox (seq, lot_id, kind, payload, created_at, subject) "
    "SELECT s, '-', 'probe', '{}', now(), 'lot' FROM unnest(CAST(:seqs AS bigint[])) AS s "
    "ON CONFLICT (seq) DO NOTHING RETURNING seq"
)


class Hole(Enum):
    FREE = "free"
    """No transaction holds any of the ids: they stay missing."""
    FILLED = "filled"
    """A transaction committed one after the page was read: read the page again."""
    HELD = "held"
    """A transaction still holds one (or too many to probe): the page ends before it."""


def holes(after: int | None, seqs: Sequence[int]) -> list[int]:
    """The ids missing between ``after`` (else the first of ``seqs``) and the last of
    ``seqs`` (in increasing order), at most :data:`MAX_HOLES` + 1 of them."""
    found: list[int] = []
    previous = after if after is not None else (seqs[0] - 1 if seqs else 0)
    for seq in seqs:
        missing = previous + 1
        while missing < seq and len(found) <= MAX_HOLES:
            found.append(missing)
            missing += 1
        previous = seq
    return found


async def settle(engine: AsyncEngine, missing: Sequence[int]) -> tuple[Hole, int | None]:
    """Probe ``missing`` (ids in increasing order) in one statement: ``(FREE, None)`` when
    no transaction holds any; ``(FILLED, id)``, the first a transaction committed meanwhile;
    ``(HELD, id)``, the first hole, when one is still held after :data:`HOLE_WAIT_S` (or
    the first not probed, past :data:`MAX_HOLES`)."""
    if not missing:
        return Hole.FREE, None
    if len(missing) > MAX_HOLES:
        return Hole.HELD, missing[MAX_HOLES]
    async with engine.connect() as conn:
        trans = await conn.begin()
        try:
            await conn.execute(text(f"SET LOCAL lock_timeout = {round(HOLE_WAIT_S * 1000)}"))
            try:
                free = {row[0] for row in await conn.execute(_PROBE, {"seqs": list(missing)})}
            except DBAPIError as exc:
                code = _sqlstate(exc)
                if code in CANNOT_PROBE:  # a role that only reads, a standby: as before
                    return Hole.FREE, None
                if code != LOCK_NOT_AVAILABLE:
                    raise
                return Hole.HELD, missing[0]
        finally:
            await trans.rollback()
    filled = [seq for seq in missing if seq not in free]
    return (Hole.FILLED, filled[0]) if filled else (Hole.FREE, None)


def _sqlstate(exc: DBAPIError) -> str:
    driver: BaseException | None = exc.orig
    while driver is not None:
        code = getattr(driver, "sqlstate", None)
        if code:
            return str(code)
        driver = driver.__cause__
    return ""
