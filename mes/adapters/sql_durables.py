"""The durables' store (durables, and their history) for SQLite and PostgreSQL, on the same
compiled statements and driver sessions as the lot store."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import BigInteger, Integer, String, and_, bindparam, func, insert, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement

from mes.adapters.driver import (
    CompiledStatement,
    Execute,
    ExecuteMany,
    Fetch,
    IntegrityViolation,
    Plan,
)
from mes.adapters.outbox import SUBJECT_ROW_KEYS, subject_row
from mes.adapters.tables import durable_events, durables, jobs, lots, outbox, tool_of_lot
from mes.domain.durables import (
    Durable,
    DurableEvent,
    DurableEventKind,
    DurableKind,
    Mounted,
    PendingJob,
    event_dict,
    event_kind,
)
from mes.domain.errors import ConcurrentUpdate
from mes.domain.model import JobStatus
from mes.ports_durables import (
    DurablePage,
    DurableQuery,
    DurableRequest,
    GetDurableEvents,
    GetDurablePage,
    GetDurables,
    GetMounted,
    SaveDurables,
)

_D = durables.c
_E = durable_events.c
_EVENT_COLUMNS = [c.name for c in durable_events.c if c.name != "seq"]
_IN_CHUNK = 200
"""Ids read at most per statement (a ``show`` of many names them all at once)."""


class DurableStatements:
    """The durables' statements, compiled once for one dialect."""

    def __init__(self, dialect: Dialect):
        def c(statement: ClauseElement, keys: list[str] | None = None) -> CompiledStatement:
            return CompiledStatement.compile(statement, dialect, keys)

        everything = select(durables).order_by(_D.id)
        self.all = c(everything)
        self.on_tool = c(everything.where(_D.tool_id == bindparam("tool_id")))
        self.on_any_tool = c(everything.where(_D.tool_id.is_not(None)))
        self.on_lots_tool = c(everything.where(_D.tool_id == tool_of_lot()))
        # a list's pages (by id, after the cursor's id, limit + 1 to tell more) and counts:
        # keyed by (on a tool, mounted, after a cursor)
        self.pages: dict[tuple[bool, bool, bool], CompiledStatement] = {}
        self.counts: dict[tuple[bool, bool], CompiledStatement] = {}
        for tool in (False, True):
            for mounted in (False, True):
                where = [_D.tool_id == bindparam("tool_id")] if tool else []
                where += [_D.tool_id.is_not(None)] if mounted else []
                self.counts[tool, mounted] = c(
                    select(func.count()).select_from(durables).where(*where)
                )
                for after in (False, True):
                    keyed = [*where, _D.id > bindparam("after")] if after else where
                    self.pages[tool, mounted, after] = c(
                        everything.where(*keyed).limit(bindparam("page_limit", type_=Integer()))
                    )
        self.dialect = dialect
        # A tool's durables and its jobs not yet recorded, in one statement: one snapshot,
        # in which a job is either counted on the durables or still started.
        started = and_(jobs.c.tool_id == _D.tool_id, jobs.c.status == JobStatus.STARTED.value)
        self.mounted = c(
            select(
                *durables.c,
                jobs.c.job_id.label("pending_job"),
                lots.c.site_rows.label("pending_rows"),
                lots.c.site_cols.label("pending_cols"),
            )
            .select_from(
                durables.outerjoin(jobs, started).outerjoin(lots, lots.c.id == jobs.c.lot_id)
            )
            .where(_D.tool_id == bindparam("tool_id"))
            .order_by(_D.id, jobs.c.job_id)
        )
        self.insert = c(insert(durables), [col.name for col in durables.c])
        self.count_up = c(
            update(durables)
            .where(_D.id == bindparam("b_id"))
            .values(count=_D.count + bindparam("b_amount"))
        )
        # a mount, unmount or renewal writes only over the durable as the command read it
        # (its tool and count): two commands on it at once, one wins, the other changes nothing
        self.write = c(
            update(durables)
            .where(
                _D.id == bindparam("b_id"),
                _D.tool_id.is_not_distinct_from(bindparam("b_was_tool_id", type_=String())),
                _D.count == bindparam("b_was_count", type_=BigInteger()),
            )
            .values(
                count=bindparam("b_count"),
                tool_id=bindparam("b_tool_id"),
                mounted_at=bindparam("b_mounted_at"),
            )
        )
        self.insert_event = c(insert(durable_events), _EVENT_COLUMNS)
        self.insert_outbox = c(insert(outbox), SUBJECT_ROW_KEYS)
        history = select(durable_events).order_by(_E.seq)
        self.events_of = c(history.where(_E.durable_id == bindparam("durable_id")))
        self.events_for_lot = c(history.where(_E.lot_id == bindparam("lot_id")))
        self.events_of_for_lot = c(
            history.where(
                _E.durable_id == bindparam("durable_id"), _E.lot_id == bindparam("lot_id")
            )
        )
        self.events_all = c(history)

    def ids(self, n: int) -> CompiledStatement:
        """``id IN (:i0, ...)`` for ``n`` ids (compiled per count; the reads that name ids
        are the engineers' commands, not the line's)."""
        names = [f"i{k}" for k in range(n)]
        return CompiledStatement.compile(
            select(durables).where(_D.id.in_([bindparam(x) for x in names])).order_by(_D.id),
            self.dialect,
        )


def _durable(m: Mapping[str, Any]) -> Durable:
    return Durable(
        id=m["id"],
        kind=DurableKind(m["kind"]),
        life=int(m["life"]),
        warn_fraction=int(m["warn_permille"]) / 1000,
        count=int(m["count"]),
        added_by=m["added_by"],
        added_at=m["added_at"],
        tool_id=m["tool_id"],
        mounted_at=m["mounted_at"],
        description=m["description"],
    )


def _event(m: Mapping[str, Any]) -> DurableEvent:
    return DurableEvent(
        durable_id=m["durable_id"],
        event=DurableEventKind(m["event"]),
        at=m["at"],
        by=m["by"],
        count_after=int(m["count_after"]),
        tool_id=m["tool_id"],
        lot_id=m["lot_id"],
        step=m["step"],
        job_id=m["job_id"],
        amount=int(m["amount"]),
        reason=m["reason"],
        seq=int(m["seq"]),
    )


def _durable_row(d: Durable) -> dict[str, Any]:
    return {
        "id": d.id,
        "kind": d.kind.value,
        "life": d.life,
        "warn_permille": round(d.warn_fraction * 1000),
        "count": d.count,
        "added_by": d.added_by,
        "added_at": d.added_at,
        "tool_id": d.tool_id,
        "mounted_at": d.mounted_at,
        "description": d.description,
    }


def _event_row(e: DurableEvent) -> dict[str, Any]:
    return {
        "durable_id": e.durable_id,
        "event": e.event.value,
        "at": e.at,
        "by": e.by,
        "count_after": e.count_after,
        "tool_id": e.tool_id,
        "lot_id": e.lot_id,
        "step": e.step,
        "job_id": e.job_id,
        "amount": e.amount,
        "reason": e.reason,
    }


def _page(sql: DurableStatements, query: DurableQuery) -> Plan[DurablePage]:
    tool, mounted, after = query.tool_id is not None, query.mounted, query.after is not None
    values = {"tool_id": query.tool_id, "after": query.after, "page_limit": query.limit + 1}
    rows = yield Fetch(sql.pages[tool, mounted, after], values)
    total = yield Fetch(sql.counts[tool, mounted], values)
    found = [_durable(r) for r in rows]
    return DurablePage(
        found[: query.limit], int(next(iter(total[0].values()))), len(found) > query.limit
    )


def durable_plan(sql: DurableStatements, request: DurableRequest) -> Plan[Any]:
    """The statements that answer ``request`` (:data:`mes.ports.Work`)."""
    if isinstance(request, GetDurables):
        if request.running_lot is not None:
            rows = yield Fetch(sql.on_lots_tool, {"lot_id": request.running_lot})
        elif request.tool_id is not None:
            rows = yield Fetch(sql.on_tool, {"tool_id": request.tool_id})
        elif request.mounted:
            rows = yield Fetch(sql.on_any_tool, {})
        elif request.durable_ids is None:
            rows = yield Fetch(sql.all, {})
        else:
            ids = sorted(set(request.durable_ids))
            rows = []
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = ids[start : start + _IN_CHUNK]
                values = {f"i{k}": v for k, v in enumerate(chunk)}
                rows.extend((yield Fetch(sql.ids(len(chunk)), values)))
        return [_durable(r) for r in rows]
    if isinstance(request, GetDurablePage):
        return (yield from _page(sql, request.query))
    if isinstance(request, GetMounted):
        rows = yield Fetch(sql.mounted, {"tool_id": request.tool_id})
        found = {r["id"]: _durable(r) for r in rows}
        pending = {
            r["pending_job"]: PendingJob(r["pending_job"], r["pending_rows"], r["pending_cols"])
            for r in rows
            if r["pending_job"] is not None
        }
        return Mounted(list(found.values()), sorted(pending.values(), key=lambda j: j.job_id))
    if isinstance(request, SaveDurables):
        added = [d for d, e in request.changed if e.event is DurableEventKind.ADDED]
        used = [e for _, e in request.changed if e.event is DurableEventKind.USED]
        others = [
            (d, e)
            for d, e in request.changed
            if e.event not in (DurableEventKind.ADDED, DurableEventKind.USED)
        ]
        if added:
            yield ExecuteMany(sql.insert, [_durable_row(d) for d in added])
        if used:
            yield ExecuteMany(
                sql.count_up, [{"b_id": e.durable_id, "b_amount": e.amount} for e in used]
            )
        for d, e in others:
            was_tool_id = None if e.event is DurableEventKind.MOUNTED else e.tool_id
            row: dict[str, Any] = {
                "b_id": d.id,
                "b_count": d.count,
                "b_tool_id": d.tool_id,
                "b_mounted_at": d.mounted_at,
                "b_was_tool_id": was_tool_id,
                "b_was_count": e.count_after - e.amount,
            }
            try:
                written = yield Execute(sql.write, row)
            except IntegrityViolation:  # ux_durables_tool_kind (revision 0024)
                raise ConcurrentUpdate(
                    f"a {d.kind.value} was mounted on {d.tool_id} by another command while this "
                    f"one mounted {d.id}: nothing was changed; see pkgline durable list --tool "
                    f"{d.tool_id}"
                ) from None
            if not written:
                raise ConcurrentUpdate(
                    f"durable {d.id} changed while this command ran (mounted, unmounted, "
                    "renewed or counted by another): nothing was changed; see pkgline durable "
                    f"show {d.id} and try again"
                )
        yield ExecuteMany(sql.insert_event, [_event_row(e) for _, e in request.changed])
        yield ExecuteMany(  # for the event feed, in the same transaction
            sql.insert_outbox,
            [
                subject_row("durable", e.durable_id, event_kind(e), event_dict((d, e)), e.at)
                for d, e in request.changed
            ],
        )
        return None
    if isinstance(request, GetDurableEvents):
        if request.durable_id is not None and request.lot_id is not None:
            values = {"durable_id": request.durable_id, "lot_id": request.lot_id}
            rows = yield Fetch(sql.events_of_for_lot, values)
        elif request.durable_id is not None:
            rows = yield Fetch(sql.events_of, {"durable_id": request.durable_id})
        elif request.lot_id is not None:
            rows = yield Fetch(sql.events_for_lot, {"lot_id": request.lot_id})
        else:
            rows = yield Fetch(sql.events_all, {})
        return [_event(r) for r in rows]
    raise TypeError(f"not a durables store request: {request!r}")
