"""The lot repository and unit of work for SQLite and PostgreSQL.

Every statement is SQLAlchemy Core, built once and compiled once per dialect; a unit of work
runs them on the pooled driver connection (:mod:`mes.adapters.driver`). Lots are read with
their carriers in one query and written with an optimistic version check:
``UPDATE lots ... WHERE id = :id AND version = :expected``. When another transaction moved the
lot first, no row matches and the change is refused with ConcurrentUpdate. Every history entry
is mirrored by an outbox row in the same transaction, and carries the hash of the entry before
it and its own (:mod:`mes.domain.audit`); the lot row keeps the hash of its newest entry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Text,
    bindparam,
    cast,
    func,
    insert,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.expression import CTE

from mes.adapters.driver import (
    AiosqliteSession,
    CompiledStatement,
    DatabaseRetryable,
    DatabaseUnavailable,
    Done,
    DriverSession,
    Execute,
    ExecuteMany,
    Fetch,
    IntegrityViolation,
    Outcome,
    Plan,
    session_for,
)
from mes.adapters.errors import classify
from mes.adapters.health import DatabaseHealth
from mes.adapters.sql_equipment import (
    EquipmentStatements,
    SqlEquipmentRepository,
    equipment_plan,
)
from mes.adapters.sql_interlocks import InterlockStatements, interlock_plan
from mes.adapters.tables import (
    LOTS_CHAIN,
    audit_heads,
    carriers,
    jobs,
    lot_history,
    lots,
    outbox,
    site_rejects,
)
from mes.domain import audit
from mes.domain.errors import ConcurrentUpdate, InvalidInput, LotExists, UnknownLot
from mes.domain.model import (
    Carrier,
    Change,
    HistoryEntry,
    Hold,
    HoldSource,
    JobRecord,
    JobStatus,
    Lot,
    LotHead,
    LotState,
    Operation,
    RunningStep,
    SiteReject,
)
from mes.domain.report import history_dict
from mes.ports import (
    EquipmentRequest,
    GetCarriers,
    GetChildren,
    GetHeads,
    GetHistory,
    GetJob,
    GetJobsOf,
    GetJobWithLot,
    GetLot,
    GetRejects,
    InterlockRequest,
    LotPage,
    LotQuery,
    Request,
    Save,
    Work,
)

T = TypeVar("T")

# -- rows <-> values -------------------------------------------------------------------------


def _iso(value: datetime) -> str:
    return value.isoformat()


def _running_json(r: RunningStep | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {
        "step": r.step,
        "tool": r.tool,
        "values": dict(r.values),
        "since": _iso(r.since),
        "user": r.user,
    }


def _hold_json(h: Hold | None) -> dict[str, Any] | None:
    if h is None:
        return None
    return {"reason": h.reason, "user": h.user, "since": _iso(h.since), "source": h.source.value}


def _lot_values(lot: Lot) -> dict[str, Any]:
    return {
        "flow": lot.flow,
        "flow_version": lot.flow_version,
        "state": lot.state.value,
        "priority": lot.priority,
        "params": dict(lot.params),
        "site_rows": lot.site_rows,
        "site_cols": lot.site_cols,
        "total_sites": lot.total_sites,
        "good_sites": lot.good_sites,
        "units": lot.units,
        "path": list(lot.path),
        "recorded": dict(lot.recorded),
        "running": _running_json(lot.running),
        "hold": _hold_json(lot.hold),
        "rework_counts": dict(lot.rework_counts),
        "pending_rework": lot.pending_rework,
        "parent_id": lot.parent_id,
        "created_at": lot.created_at,
        "updated_at": lot.updated_at,
        "created_by": lot.created_by,
        "version": lot.version,
        "history_head": lot.history_head,
    }


def _lot_from_row(m: Mapping[str, Any], carrier_ids: tuple[str, ...]) -> Lot:
    running = m["running"]
    hold = m["hold"]
    return Lot(
        id=m["id"],
        flow=m["flow"],
        flow_version=m["flow_version"],
        state=LotState(m["state"]),
        params=m["params"],
        priority=m["priority"],
        site_rows=m["site_rows"],
        site_cols=m["site_cols"],
        carriers=carrier_ids,
        total_sites=m["total_sites"],
        good_sites=m["good_sites"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        created_by=m["created_by"],
        path=tuple(m["path"]),
        running=None
        if running is None
        else RunningStep(
            step=running["step"],
            tool=running["tool"],
            values=running["values"],
            since=datetime.fromisoformat(running["since"]),
            user=running["user"],
        ),
        hold=None
        if hold is None
        else Hold(
            reason=hold["reason"],
            user=hold["user"],
            since=datetime.fromisoformat(hold["since"]),
            source=HoldSource(hold["source"]),
        ),
        recorded=m["recorded"],
        rework_counts=m["rework_counts"],
        pending_rework=m["pending_rework"],
        units=m["units"],
        parent_id=m["parent_id"],
        version=m["version"],
        history_head=m["history_head"],
    )


def entry_from_row(m: Mapping[str, Any]) -> HistoryEntry:
    """A history entry as stored (its row's values, SQLAlchemy's types applied)."""
    return HistoryEntry(
        lot_id=m["lot_id"],
        operation=Operation(m["operation"]),
        user=m["user"],
        at=m["at"],
        state_before=LotState(m["state_before"]) if m["state_before"] else None,
        state_after=LotState(m["state_after"]),
        step=m["step"],
        tool=m["tool"],
        reason=m["reason"],
        data=m["data"],
        seq=m["seq"],
        by=m["by"],
        auth=m["auth"],
        prev_hash=m["prev_hash"],
        hash=m["hash"],
    )


_LOT_COLUMNS = (*lots.c, carriers.c.id.label("carrier_id"))
_LOT_WITH_CARRIERS = lots.outerjoin(carriers, carriers.c.lot_id == lots.c.id)
_LOT_KEYS = [c.name for c in lots.c]
_HEAD_COLUMNS = (
    "id",
    "version",
    "flow",
    "state",
    "priority",
    "created_at",
    "path",
    "params",
    "pending_rework",
    "running",
    "flow_version",
)
_HISTORY_KEYS = [c.name for c in lot_history.c if c.name != "seq"]
_OUTBOX_KEYS = ["lot_id", "kind", "payload", "created_at"]
_CARRIER_KEYS = [c.name for c in carriers.c]
_REJECT_KEYS = [c.name for c in site_rejects.c if c.name != "id"]
_JOB_KEYS = [c.name for c in jobs.c]


def _job_values(job: JobRecord) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "lot_id": job.lot_id,
        "tool_id": job.tool_id,
        "step": job.step,
        "path_index": job.path_index,
        "carrier_id": job.carrier_id,
        "status": job.status.value,
        "started_at": job.started_at,
        "recorded_at": job.recorded_at,
        "measured": dict(job.measured),
        "rejects": [
            {"carrier_id": r.carrier_id, "row": r.row, "col": r.col, "code": r.code}
            for r in job.rejects
        ],
        "tool_data": dict(job.tool_data),
    }


def _job_from_row(m: Mapping[str, Any]) -> JobRecord:
    return JobRecord(
        job_id=m["job_id"],
        lot_id=m["lot_id"],
        tool_id=m["tool_id"],
        step=m["step"],
        path_index=m["path_index"],
        carrier_id=m["carrier_id"],
        status=JobStatus(m["status"]),
        started_at=m["started_at"],
        recorded_at=m["recorded_at"],
        measured=m["measured"],
        rejects=tuple(
            SiteReject(r["carrier_id"], r["row"], r["col"], r["code"], m["step"], m["path_index"])
            for r in m["rejects"]
        ),
        tool_data=m["tool_data"],
    )


class Statements:
    """The lot store's statements, compiled once for one dialect."""

    def __init__(self, dialect: Dialect):
        self.dialect = dialect
        self.equipment = EquipmentStatements(dialect)
        self.interlocks = InterlockStatements(dialect)

        def c(statement: ClauseElement, keys: list[str] | None = None) -> CompiledStatement:
            return CompiledStatement.compile(statement, dialect, keys)

        self.get_lot = c(
            select(*_LOT_COLUMNS)
            .select_from(_LOT_WITH_CARRIERS)
            .where(lots.c.id == bindparam("lot_id"))
            .order_by(carriers.c.position)
        )
        self.carriers = c(
            select(carriers)
            .where(carriers.c.lot_id == bindparam("lot_id"))
            .order_by(carriers.c.position)
        )
        self.rejects = c(
            select(site_rejects)
            .join(carriers, carriers.c.id == site_rejects.c.carrier_id)
            .where(carriers.c.lot_id == bindparam("lot_id"))
            .order_by(site_rejects.c.id)
        )
        history = select(lot_history).where(lot_history.c.lot_id == bindparam("lot_id"))
        self.history = c(history.order_by(lot_history.c.seq))
        self.history_before = c(
            history.where(lot_history.c.seq < bindparam("before_seq")).order_by(lot_history.c.seq)
        )
        self.page_key = c(
            select(lots.c.priority, lots.c.created_at).where(lots.c.id == bindparam("lot_id"))
        )
        self.children = c(
            select(lots.c.id)
            .where(lots.c.parent_id == bindparam("lot_id"))
            .order_by(lots.c.created_at)
        )
        self.insert_lot = c(insert(lots), _LOT_KEYS)
        self.update_lot = c(
            update(lots)
            .where(lots.c.id == bindparam("b_id"), lots.c.version == bindparam("b_expected"))
            .values(
                {
                    col: bindparam(f"v_{col.name}", type_=col.type)
                    for col in lots.c
                    if col.name != "id"
                }
            )
            .returning(lots.c.id)
        )
        self.insert_carrier = c(insert(carriers), _CARRIER_KEYS)
        self.move_carrier = c(
            update(carriers)
            .where(carriers.c.id == bindparam("b_id"))
            .values(lot_id=bindparam("v_lot_id"), position=bindparam("v_position"))
        )
        self.insert_reject = c(insert(site_rejects), _REJECT_KEYS)
        self.insert_history = c(insert(lot_history).returning(lot_history.c.seq), _HISTORY_KEYS)
        self.insert_outbox = c(insert(outbox), _OUTBOX_KEYS)
        # New lots take their turn on the chain over lots: the row stays locked to the end
        # of the transaction (SQLite: BEGIN IMMEDIATE holds the one write lock already).
        self.lots_head = c(
            select(audit_heads.c.head).where(audit_heads.c.chain == LOTS_CHAIN).with_for_update()
        )
        self.set_lots_head = c(
            update(audit_heads)
            .where(audit_heads.c.chain == LOTS_CHAIN)
            .values(head=bindparam("head", type_=audit_heads.c.head.type))
        )
        self.job = c(select(jobs).where(jobs.c.job_id == bindparam("job_id")))
        self.job_with_lot = c(
            select(*_LOT_COLUMNS, *(col.label(f"job_{col.name}") for col in jobs.c))
            .select_from(jobs.join(_LOT_WITH_CARRIERS, lots.c.id == jobs.c.lot_id))
            .where(jobs.c.job_id == bindparam("job_id"))
            .order_by(carriers.c.position)
        )
        lot_jobs = (
            select(jobs)
            .join(carriers, carriers.c.id == jobs.c.carrier_id)
            .where(carriers.c.lot_id == bindparam("lot_id"))
        )
        order = (jobs.c.started_at, jobs.c.job_id)
        self.jobs_at = c(
            lot_jobs.where(jobs.c.path_index == bindparam("path_index")).order_by(*order)
        )
        self.jobs_from = c(
            lot_jobs.where(jobs.c.path_index >= bindparam("path_index")).order_by(*order)
        )
        self.insert_job = c(insert(jobs), _JOB_KEYS)
        self.update_job = c(
            update(jobs)
            .where(jobs.c.job_id == bindparam("b_job_id"), jobs.c.status == bindparam("b_expected"))
            .values(
                {
                    col: bindparam(f"v_{col.name}", type_=col.type)
                    for col in jobs.c
                    if col.name in ("status", "recorded_at", "measured", "rejects", "tool_data")
                }
            )
            .returning(jobs.c.job_id)
        )
        postgres = dialect.name == "postgresql"
        self.move_in_one = c(_move_in_one_statement()) if postgres else None
        self.entry_in_one = c(_entry_in_one_statement()) if postgres else None
        self._find: dict[tuple[int, bool], CompiledStatement] = {}
        self._heads: dict[int, CompiledStatement] = {}

    def heads(self, states: int) -> CompiledStatement:
        """Lot heads by state (bound as s0, s1, ...), most urgent first."""
        if states not in self._heads:
            query = (
                select(*(lots.c[n] for n in _HEAD_COLUMNS))
                .where(lots.c.state.in_([bindparam(f"s{i}") for i in range(states)]))
                .order_by(lots.c.priority, lots.c.created_at, lots.c.id)
            )
            self._heads[states] = CompiledStatement.compile(query, self.dialect)
        return self._heads[states]

    def find(self, states: int, by_flow: bool) -> CompiledStatement:
        """Lots with their carriers by state (``states`` of them, bound as s0, s1, ...) and
        flow, most urgent first."""
        key = (states, by_flow)
        if key not in self._find:
            query = select(*_LOT_COLUMNS).select_from(_LOT_WITH_CARRIERS)
            if states:
                query = query.where(lots.c.state.in_([bindparam(f"s{i}") for i in range(states)]))
            if by_flow:
                query = query.where(lots.c.flow == bindparam("flow"))
            query = query.order_by(
                lots.c.priority, lots.c.created_at, lots.c.id, carriers.c.position
            )
            self._find[key] = CompiledStatement.compile(query, self.dialect)
        return self._find[key]


def _move_in_one_statement() -> ClauseElement:
    """PostgreSQL: update the lot (version-checked), append its history row and its outbox
    row in one statement. The inserts select from the update's RETURNING, so when the version
    check fails nothing at all is written and no row comes back. One round trip instead of
    three on every move."""
    moved = (
        update(lots)
        .where(lots.c.id == bindparam("b_id"), lots.c.version == bindparam("b_expected"))
        .values(
            {col: bindparam(f"v_{col.name}", type_=col.type) for col in lots.c if col.name != "id"}
        )
        .returning(lots.c.id)
        .cte("moved")
    )
    return _entry_in_one_statement(moved)


def _entry_in_one_statement(after: CTE | None = None) -> ClauseElement:
    """PostgreSQL: append a history row (``h_`` values) and its outbox row (``o_`` values,
    the payload given without its sequence number) in one statement, returning the history
    row's ``seq``. With ``after``, both rows are written only when that CTE returns a row.
    One round trip instead of two for each history entry."""
    history_columns = [col for col in lot_history.c if col.name != "seq"]
    values = select(*[bindparam(f"h_{col.name}", type_=col.type) for col in history_columns])
    recorded = (
        insert(lot_history)
        .from_select(
            [col.name for col in history_columns],
            values.select_from(after) if after is not None else values,
        )
        .returning(lot_history.c.seq)
        .cte("recorded")
    )
    # The outbox payload is the history entry, sequence number included.
    payload = func.jsonb_set(
        bindparam("o_payload", type_=JSONB),
        literal("{seq}", type_=Text).cast(ARRAY(Text)),
        func.to_jsonb(recorded.c.seq),
    )
    return (
        insert(outbox)
        .from_select(
            ["lot_id", "kind", "payload", "created_at"],
            select(
                bindparam("o_lot_id", type_=outbox.c.lot_id.type),
                bindparam("o_kind", type_=outbox.c.kind.type),
                payload,
                bindparam("o_created_at", type_=outbox.c.created_at.type),
            ).select_from(recorded),
        )
        .returning(cast(outbox.c.payload["seq"].as_string(), BigInteger).label("seq"))
    )


def _group_lots(rows: Sequence[Mapping[str, Any]]) -> dict[str, Lot]:
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["id"], []).append(row)
    return {
        lot_id: _lot_from_row(
            group[0], tuple(r["carrier_id"] for r in group if r["carrier_id"] is not None)
        )
        for lot_id, group in grouped.items()
    }


class HeadCache:
    """Lot heads already converted, by lot id and version. The dispatcher reads the heads of
    every waiting lot after every step, and few of them changed since: converting their JSON
    columns again was most of its time. A lot's version changes with every write of it, so a
    head found under (id, version) is the lot's head now. Kept per database (its factory),
    and bounded: cleared when it outgrows ``limit``."""

    def __init__(self, limit: int = 20_000):
        self._limit = limit
        self._heads: dict[tuple[str, int], LotHead] = {}

    def get(self, statement: CompiledStatement, raw: Sequence[Any]) -> LotHead:
        """The head of a row of ``statement`` (id and version its first two columns)."""
        key = (raw[0], raw[1])
        head = self._heads.get(key)
        if head is None:
            if len(self._heads) >= self._limit:
                self._heads.clear()
            r = statement.row(raw)
            head = self._heads[key] = LotHead(
                id=r["id"],
                flow=r["flow"],
                state=LotState(r["state"]),
                priority=r["priority"],
                created_at=r["created_at"],
                path=tuple(r["path"]),
                params=r["params"],
                pending_rework=r["pending_rework"],
                tool=r["running"]["tool"] if r["running"] else None,
                flow_version=r["flow_version"],
            )
        return head


def _lot_step(dialect: Dialect) -> ColumnElement[Any]:
    """``Lot.step`` in SQL: the running step, else the last step of the path."""
    if dialect.name == "postgresql":
        last: ColumnElement[Any] = lots.c.path.op("->>")(func.jsonb_array_length(lots.c.path) - 1)
    else:
        last = func.json_extract(lots.c.path, "$[#-1]")
    return func.coalesce(lots.c.running["step"].as_string(), last)


def _page_conditions(query: LotQuery, dialect: Dialect) -> tuple[list[Any], dict[str, Any]]:
    """The WHERE conditions of a lot list's filters, and their values."""
    where: list[Any] = []
    values: dict[str, Any] = {}
    if query.states:
        where.append(lots.c.state.in_([bindparam(f"s{i}") for i in range(len(query.states))]))
        values.update({f"s{i}": s.value for i, s in enumerate(query.states)})
    for name, column, given in (
        ("flow", lots.c.flow, query.flow),
        ("priority", lots.c.priority, query.priority),
        ("tool", lots.c.running["tool"].as_string(), query.tool),
        ("step", _lot_step(dialect), query.step),
    ):
        if given is not None:
            where.append(column == bindparam(f"f_{name}", type_=getattr(column, "type", None)))
            values[f"f_{name}"] = given
    if query.moved_since is not None:
        where.append(lots.c.updated_at >= bindparam("moved_since", type_=lots.c.updated_at.type))
        values["moved_since"] = query.moved_since
    if query.moved_before is not None:
        where.append(lots.c.updated_at < bindparam("moved_before", type_=lots.c.updated_at.type))
        values["moved_before"] = query.moved_before
    return where, values


_PAGE_ORDER = (lots.c.priority, lots.c.created_at, lots.c.id)


def page_statements(
    query: LotQuery, dialect: Dialect
) -> tuple[CompiledStatement, CompiledStatement, dict[str, Any]]:
    """A lot list's page (the lots after the cursor's key, one more than the limit, with
    their carriers) and count (every lot the filters select), with their values. The page
    walks an index in (priority, created_at, id) order from the cursor on (keyset paging):
    its cost does not grow with the page number, and no lot is skipped or shown twice
    while lots move, since a move changes none of the three."""
    where, values = _page_conditions(query, dialect)
    count = select(func.count()).select_from(lots).where(*where)
    keyed = list(where)
    if query.after is not None:
        keyed.append(
            tuple_(*_PAGE_ORDER)
            > tuple_(
                bindparam("k_priority", type_=lots.c.priority.type),
                bindparam("k_created_at", type_=lots.c.created_at.type),
                bindparam("k_id", type_=lots.c.id.type),
            )
        )
    ids = (
        select(lots.c.id)
        .where(*keyed)
        .order_by(*_PAGE_ORDER)
        .limit(bindparam("page_limit", type_=Integer()))
        .subquery("page")
    )
    page = (
        select(*_LOT_COLUMNS)
        .select_from(ids.join(_LOT_WITH_CARRIERS, lots.c.id == ids.c.id))
        .order_by(*_PAGE_ORDER, carriers.c.position)
    )
    return (
        CompiledStatement.compile(page, dialect),
        CompiledStatement.compile(count, dialect),
        values,
    )


class SqlLotRepository:
    """:class:`mes.ports.LotRepository` on one driver session (inside a transaction)."""

    def __init__(self, session: DriverSession, statements: Statements):
        self._db = session
        self._sql = statements

    async def find(
        self, *, states: Sequence[LotState] = (), flow: str | None = None, limit: int = 1000
    ) -> list[Lot]:
        values: dict[str, Any] = {f"s{i}": s.value for i, s in enumerate(states)}
        values.update(flow=flow)
        rows = await self._db.fetch(self._sql.find(len(states), flow is not None), values)
        found = _group_lots(rows)  # insertion order: most urgent first
        return list(found.values())[:limit]

    async def page(self, query: LotQuery) -> LotPage:
        if query.limit < 1:
            raise InvalidInput(f"a page holds 1 lot or more, not {query.limit}")
        page, count, values = page_statements(query, self._sql.dialect)
        if query.after is not None:
            key = await self._db.fetch(self._sql.page_key, {"lot_id": query.after})
            if not key:
                raise UnknownLot(
                    f"there is no lot {query.after} to list the lots after", lot_id=query.after
                )
            values.update(
                k_priority=key[0]["priority"], k_created_at=key[0]["created_at"], k_id=query.after
            )
        found = list(
            _group_lots(
                await self._db.fetch(page, {**values, "page_limit": query.limit + 1})
            ).values()
        )
        total = (await self._db.fetch(count, values))[0]
        return LotPage(
            found[: query.limit], int(next(iter(total.values()))), len(found) > query.limit
        )


def _work_plan(sql: Statements, heads: HeadCache, work: Work[T]) -> Plan[T]:
    """``work`` as statements: each of its requests answered by :func:`_answer_plan`."""
    answer: Any = None
    try:
        while True:
            try:
                request = work.send(answer)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            answer = yield from _answer_plan(sql, heads, request)
    finally:
        work.close()


def _answer_plan(sql: Statements, heads: HeadCache, request: Request) -> Plan[Any]:
    if isinstance(request, EquipmentRequest):
        return (yield from equipment_plan(sql.equipment, request))
    if isinstance(request, InterlockRequest):
        return (yield from interlock_plan(sql.interlocks, request))
    if isinstance(request, GetHeads):
        if not request.states:
            return []
        statement = sql.heads(len(request.states))
        values = {f"s{i}": s.value for i, s in enumerate(request.states)}
        raw = yield Fetch(statement, values, raw=True)
        return [heads.get(statement, r) for r in raw]
    if isinstance(request, Save):
        return (yield from _save_plan(sql, request.change))
    if isinstance(request, GetLot):
        rows = yield Fetch(sql.get_lot, {"lot_id": request.lot_id})
        return _group_lots(rows).get(request.lot_id)
    if isinstance(request, GetJob):
        rows = yield Fetch(sql.job, {"job_id": request.job_id})
        return _job_from_row(rows[0]) if rows else None
    if isinstance(request, GetJobWithLot):
        rows = yield Fetch(sql.job_with_lot, {"job_id": request.job_id})
        if not rows:
            return None
        job = _job_from_row(
            {k.removeprefix("job_"): v for k, v in rows[0].items() if k.startswith("job_")}
        )
        return job, _group_lots(rows)[job.lot_id]
    if isinstance(request, GetJobsOf):
        statement = sql.jobs_from if request.and_later else sql.jobs_at
        rows = yield Fetch(statement, {"lot_id": request.lot_id, "path_index": request.path_index})
        return [_job_from_row(r) for r in rows]
    if isinstance(request, GetRejects):
        rows = yield Fetch(sql.rejects, {"lot_id": request.lot_id})
        return [
            SiteReject(r["carrier_id"], r["row"], r["col"], r["code"], r["step"], r["path_index"])
            for r in rows
        ]
    if isinstance(request, GetCarriers):
        rows = yield Fetch(sql.carriers, {"lot_id": request.lot_id})
        return [Carrier(r["id"], r["lot_id"], r["position"], r["rows"], r["cols"]) for r in rows]
    if isinstance(request, GetHistory):
        if request.before_seq is None:
            rows = yield Fetch(sql.history, {"lot_id": request.lot_id})
        else:
            rows = yield Fetch(
                sql.history_before, {"lot_id": request.lot_id, "before_seq": request.before_seq}
            )
        return [entry_from_row(r) for r in rows]
    if isinstance(request, GetChildren):
        rows = yield Fetch(sql.children, {"lot_id": request.lot_id})
        return [r["id"] for r in rows]
    raise TypeError(f"not a lot store request: {request!r}")


def _save_plan(sql: Statements, change: Change) -> Plan[tuple[HistoryEntry, ...]]:
    """Write ``change``: the statements in order, each lot and job checked against what it
    must still be, each history entry chained to the one before it (:mod:`mes.domain.audit`:
    the lot's head comes with the lot read; a new lot takes its turn on the chain over
    lots)."""
    for lot in change.lots:
        expected = change.expected_versions[lot.id]
        if expected is not None and lot.version <= expected:  # HeadCache relies on it
            raise ValueError(f"lot {lot.id} written without a new version ({lot.version})")
    lots_head: str | None = None
    if any(v is None for v in change.expected_versions.values()):
        rows = yield Fetch(sql.lots_head, {})
        lots_head = rows[0]["head"]
    chained = audit.chain(change, lots_head)
    change = chained.change
    if chained.lots_head != lots_head:
        yield Execute(sql.set_lots_head, {"head": chained.lots_head})
    written: list[HistoryEntry] = []
    lots_left, entries_left = change.lots, change.entries
    if sql.move_in_one is not None and _moves_one_lot(change):
        # the lot and its first entry in one statement, then the rest of the change
        written.append((yield from _move_in_one_plan(sql, change)))
        lots_left, entries_left = (), change.entries[1:]
    for lot in lots_left:
        expected = change.expected_versions[lot.id]
        if expected is None:
            try:
                yield Execute(sql.insert_lot, {"id": lot.id, **_lot_values(lot)})
            except IntegrityViolation:  # the unit of work rolls the transaction back
                raise LotExists(f"lot {lot.id} already exists", lot_id=lot.id) from None
            continue
        values = {f"v_{k}": v for k, v in _lot_values(lot).items()}
        updated = yield Fetch(sql.update_lot, {"b_id": lot.id, "b_expected": expected, **values})
        if not updated:
            raise _conflict(lot.id, expected)
    if change.new_carriers:
        yield ExecuteMany(
            sql.insert_carrier,
            [
                {
                    "id": c.id,
                    "lot_id": c.lot_id,
                    "position": c.position,
                    "rows": c.rows,
                    "cols": c.cols,
                }
                for c in change.new_carriers
            ],
        )
    if change.moved_carriers:
        yield ExecuteMany(
            sql.move_carrier,
            [
                {"b_id": carrier_id, "v_lot_id": lot_id, "v_position": position}
                for carrier_id, (lot_id, position) in change.moved_carriers.items()
            ],
        )
    if change.rejects:
        yield ExecuteMany(
            sql.insert_reject,
            [
                {
                    "carrier_id": r.carrier_id,
                    "row": r.row,
                    "col": r.col,
                    "code": r.code,
                    "step": r.step,
                    "path_index": r.path_index,
                }
                for r in change.rejects
            ],
        )
    for job, expected_status in change.jobs:
        values = _job_values(job)
        if expected_status is None:
            try:
                yield Execute(sql.insert_job, values)
            except IntegrityViolation:
                raise ConcurrentUpdate(
                    f"job {job.job_id} exists already", lot_id=job.lot_id
                ) from None
            continue
        changed = yield Fetch(
            sql.update_job,
            {
                "b_job_id": job.job_id,
                "b_expected": expected_status.value,
                **{
                    f"v_{k}": values[k]
                    for k in ("status", "recorded_at", "measured", "rejects", "tool_data")
                },
            },
        )
        if not changed:
            raise ConcurrentUpdate(
                f"job {job.job_id} is no longer {expected_status.value}: another controller "
                "or operator got there first; nothing was changed",
                lot_id=job.lot_id,
            )
    for entry in entries_left:
        if sql.entry_in_one is not None:
            rows = yield Fetch(sql.entry_in_one, _entry_in_one_values(entry))
            written.append(replace(entry, seq=int(rows[0]["seq"])))
            continue
        rows = yield Fetch(sql.insert_history, _history_values(entry))
        stored = replace(entry, seq=rows[0]["seq"])
        written.append(stored)
        yield Execute(
            sql.insert_outbox,
            {
                "lot_id": entry.lot_id,
                "kind": entry.event_kind,
                "payload": history_dict(stored),
                "created_at": entry.at,
            },
        )
    return tuple(written)


def _move_in_one_plan(sql: Statements, change: Change) -> Plan[HistoryEntry]:
    """The change's one lot, version-checked, and its first history entry: the entry as
    stored."""
    lot, entry = change.lots[0], change.entries[0]
    expected = change.expected_versions[lot.id]
    assert sql.move_in_one is not None
    assert expected is not None
    values: dict[str, Any] = {f"v_{k}": v for k, v in _lot_values(lot).items()}
    values.update(_entry_in_one_values(entry), b_id=lot.id, b_expected=expected)
    rows = yield Fetch(sql.move_in_one, values)
    if not rows:
        raise _conflict(lot.id, expected)
    return replace(entry, seq=int(rows[0]["seq"]))


def _entry_in_one_values(entry: HistoryEntry) -> dict[str, Any]:
    """The values of :func:`_entry_in_one_statement` for ``entry``."""
    values: dict[str, Any] = {f"h_{k}": v for k, v in _history_values(entry).items()}
    values.update(
        o_lot_id=entry.lot_id,
        o_kind=entry.event_kind,
        o_payload=history_dict(entry),
        o_created_at=entry.at,
    )
    return values


def _moves_one_lot(change: Change) -> bool:
    """One existing lot whose history entry comes first, and no carriers made or moved: every
    move of a lot, job start and record (not a split, merge or new lot)."""
    return (
        len(change.lots) == 1
        and change.expected_versions[change.lots[0].id] is not None
        and bool(change.entries)
        and change.entries[0].lot_id == change.lots[0].id
        and not (change.new_carriers or change.moved_carriers)
    )


def _conflict(lot_id: str, expected: int) -> ConcurrentUpdate:
    return ConcurrentUpdate(
        f"lot {lot_id} was changed by someone else while this command ran "
        f"(it is no longer at version {expected}); nothing was changed: "
        "look at it again (lot show) and retry",
        lot_id=lot_id,
    )


def _history_values(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "lot_id": entry.lot_id,
        "at": entry.at,
        "user": entry.user,
        "operation": entry.operation.value,
        "state_before": entry.state_before.value if entry.state_before else None,
        "state_after": entry.state_after.value,
        "step": entry.step,
        "tool": entry.tool,
        "reason": entry.reason,
        "data": dict(entry.data),
        "by": entry.by,
        "auth": entry.auth,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


class SqliteWriters:
    """SQLite lets one transaction write at a time. The writers of one factory wait for
    their turn here, in order, and go on the moment the one before commits. Left to SQLite,
    a writer that finds the database locked waits in its busy handler, which sleeps 1, 2,
    5, 10, ... up to 100 ms between tries: with the line controller's many writers, a 5 ms
    transaction then often takes 50 to 100. (Other processes still wait for us, and we for
    them, in the busy handler, up to the busy timeout.) A writer must not open another
    writing unit of work of the same factory inside its own: it would wait for itself."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()

    def lock(self) -> asyncio.Lock:
        """The lock for the running event loop (a factory may outlive one)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._lock = loop, asyncio.Lock()
        return self._lock


class SqlUnitOfWork:
    """One transaction on a pooled connection, run on its driver. Rolls back unless
    committed."""

    def __init__(
        self,
        engine: AsyncEngine,
        statements: Statements,
        equipment: EquipmentStatements,
        *,
        readonly: bool = False,
        writers: SqliteWriters | None = None,
        heads: HeadCache,
        health: DatabaseHealth | None = None,
    ):
        self._engine = engine
        self._health = health
        self._statements = statements
        self._head_cache = heads
        self._equipment_statements = equipment
        self._readonly = readonly
        self._writers = None if readonly else writers
        self._turn: asyncio.Lock | None = None
        self._conn: AsyncConnection | None = None
        self._session: DriverSession | None = None
        self._lots: SqlLotRepository | None = None
        self._equipment: SqlEquipmentRepository | None = None
        self._committed = False

    @property
    def lots(self) -> SqlLotRepository:
        assert self._lots is not None, "use the unit of work inside 'async with'"
        return self._lots

    @property
    def equipment(self) -> SqlEquipmentRepository:
        assert self._equipment is not None, "use the unit of work inside 'async with'"
        return self._equipment

    async def __aenter__(self) -> SqlUnitOfWork:
        if self._writers is not None:
            turn = self._writers.lock()
            await turn.acquire()
            self._turn = turn
        try:
            conn = await self._engine.connect()
        except BaseException as exc:
            self._end_turn()
            error = self._failed(exc)
            if error is exc:
                raise
            raise error from exc
        try:
            raw = await conn.get_raw_connection()
            session = session_for(self._engine.dialect.name, raw.driver_connection)
            await session.begin(readonly=self._readonly)
        except BaseException as exc:
            try:
                await conn.invalidate()
                await conn.close()
            finally:
                self._end_turn()
            error = self._failed(exc)
            if error is exc:
                raise
            raise error from exc
        self._conn, self._session = conn, session
        self._lots = SqlLotRepository(session, self._statements)
        self._equipment = SqlEquipmentRepository(session, self._equipment_statements)
        return self

    async def commit(self) -> None:
        assert self._session is not None
        await self._session.commit()
        self._committed = True

    async def run(self, work: Work[T], *, commit: bool = False) -> T:
        assert self._session is not None, "use the unit of work inside 'async with'"
        plan = _work_plan(self._statements, self._head_cache, work)
        result = await self._session.run(plan, commit=commit)
        self._committed = self._committed or commit
        return result

    async def run_each(self, works: Sequence[Work[Any]]) -> list[Outcome]:
        """SQLite: do each work under a savepoint of its own, then commit, in one call on the
        connection's thread. A work that raises leaves nothing written (rolled back to its
        savepoint), and the others are committed; a failure of the database fails them all."""
        session = self._session
        assert isinstance(session, AiosqliteSession), "groups are for SQLite"
        outcomes = await session.run_each(
            [_work_plan(self._statements, self._head_cache, w) for w in works]
        )
        self._committed = True
        return outcomes

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, session = self._conn, self._session
        self._conn = self._session = self._lots = self._equipment = None
        if conn is None or session is None:
            self._end_turn()
            return
        if isinstance(exc, DatabaseUnavailable):
            self._failed(exc)
        elif exc is None and self._health is not None:
            self._health.answered(wrote=self._committed and not self._readonly)
        try:
            if isinstance(exc, DatabaseUnavailable) and not isinstance(exc, DatabaseRetryable):
                # Lost, silent or read-only: not reused (a new connection may reach the server
                # again, or the new primary after a failover). Closing it is bounded (2 s).
                await conn.invalidate()
            elif not self._committed:
                await session.rollback()
        except BaseException:
            await conn.invalidate()  # a connection that cannot roll back is not reused
            if exc is None:
                raise
            # Leaving on an exception already (a cancellation during COMMIT, say, after which
            # there is nothing left to roll back): that one goes on, not the rollback's. A
            # cancelled task that got a DatabaseUnavailable instead would carry on running.
        finally:
            try:
                await conn.close()
            finally:
                self._end_turn()

    def _failed(self, exc: BaseException) -> BaseException:
        """What to raise for ``exc`` (classified at the store's edge), told to the health
        monitor when the database is unavailable."""
        found = classify(exc) if isinstance(exc, Exception) else None
        error: BaseException = exc if found is None else found
        if isinstance(error, DatabaseUnavailable) and self._health is not None:
            self._health.failed(error)
        return error

    def _end_turn(self) -> None:
        turn, self._turn = self._turn, None
        if turn is not None:
            turn.release()


class SqliteGroupCommit:
    """Group commit for SQLite. Every commit there waits for its fsync (``synchronous=FULL``)
    while holding the one write lock, and takes a turn on the connection's thread. Works
    written while a group is being written wait, and go together as the next group: one
    transaction, each work under a savepoint of its own (all or nothing, each), one COMMIT.
    A work that raises is rolled back alone and its caller gets the error; the others are
    committed. Nobody is told "written" before the group's COMMIT returned. At most
    ``limit`` works per group, so that other writers' turns come round."""

    def __init__(self, factory: SqlUnitOfWorkFactory, limit: int = 32):
        self._factory = factory
        self._limit = limit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: list[tuple[Work[Any], asyncio.Future[Any]]] = []
        self._writing: asyncio.Task[None] | None = None

    async def write(self, work: Work[T]) -> T:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a factory may outlive an event loop
            self._loop, self._waiting, self._writing = loop, [], None
        written: asyncio.Future[T] = loop.create_future()
        self._waiting.append((work, written))
        if self._writing is None:
            self._writing = loop.create_task(self._write_groups(), name="sqlite-group-commit")
        return await written

    async def _write_groups(self) -> None:
        try:
            while self._waiting:
                group = [(w, f) for w, f in self._waiting[: self._limit] if not f.done()]
                del self._waiting[: self._limit]
                if group:
                    await self._write_group(group)
        finally:
            self._writing = None

    async def _write_group(self, group: list[tuple[Work[Any], asyncio.Future[Any]]]) -> None:
        try:
            async with self._factory() as uow:
                outcomes = await uow.run_each([work for work, _ in group])
        except Exception as exc:  # the database: nothing of the group was written
            for _, written in group:
                if not written.done():
                    written.set_exception(_copy(exc))
            return
        except BaseException:  # cancelled (the event loop is closing): so are the callers
            for _, written in group:
                written.cancel()
            raise
        for (_, written), outcome in zip(group, outcomes, strict=True):
            if written.done():  # its caller was cancelled meanwhile: written all the same
                continue
            if isinstance(outcome, Done):
                written.set_result(outcome.value)
            else:
                written.set_exception(outcome.error)


def _copy(exc: Exception) -> Exception:
    """An exception to raise in one of several callers (each gets its own traceback)."""
    copy = type(exc)(exc.reason) if isinstance(exc, DatabaseUnavailable) else exc
    if copy is not exc:
        copy.__cause__ = exc.__cause__
    return copy


class SqlUnitOfWorkFactory:
    """Makes units of work on one engine (the :class:`mes.ports.UnitOfWorkFactory`)."""

    def __init__(self, engine: AsyncEngine, *, health: DatabaseHealth | None = None):
        """``health``: told how every unit of work ends (:class:`DatabaseHealth` logs an
        outage on the edge)."""
        self.engine = engine
        self.health = health
        self.statements = Statements(engine.dialect)
        self._writers = SqliteWriters() if engine.dialect.name == "sqlite" else None
        self._heads = HeadCache()
        self._group = SqliteGroupCommit(self) if self._writers is not None else None

    async def write(self, work: Work[T]) -> T:
        """Do ``work`` in a transaction and commit it: on SQLite with group commit
        (:class:`SqliteGroupCommit`), on PostgreSQL in a transaction of its own."""
        if self._group is not None:
            return await self._group.write(work)
        async with self() as uow:
            return await uow.run(work, commit=True)

    def __call__(self, *, readonly: bool = False) -> SqlUnitOfWork:
        return SqlUnitOfWork(
            self.engine,
            self.statements,
            self.statements.equipment,
            readonly=readonly,
            writers=self._writers,
            heads=self._heads,
            health=self.health,
        )
