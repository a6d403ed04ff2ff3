"""The lot tables' statements, built once and compiled once per dialect, and the cache of
lot heads already converted (:mod:`mes.adapters.sql`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
from sqlalchemy.sql import ClauseElement, Select
from sqlalchemy.sql.expression import CTE

from mes.adapters.driver import CompiledStatement
from mes.adapters.sql_durables import DurableStatements
from mes.adapters.sql_equipment import EquipmentStatements
from mes.adapters.sql_expressions import capped_count, common, rare
from mes.adapters.sql_interlocks import InterlockStatements
from mes.adapters.sql_materials import MaterialStatements
from mes.adapters.sql_reasons import ReasonStatements
from mes.adapters.sql_rows import (
    CARRIER_KEYS,
    HEAD_COLUMNS,
    HISTORY_KEYS,
    JOB_KEYS,
    LOT_COLUMNS,
    LOT_KEYS,
    LOT_WITH_CARRIERS,
    OUTBOX_KEYS,
    REJECT_KEYS,
)
from mes.adapters.sql_security import SecurityStatements
from mes.adapters.sql_signatures import SignatureStatements
from mes.adapters.sql_spc import SpcStatements
from mes.adapters.tables import (
    LOT_STEP,
    LOT_TOOL,
    LOTS_CHAIN,
    audit_heads,
    carriers,
    jobs,
    lot_counts,
    lot_history,
    lots,
    outbox,
    site_rejects,
)
from mes.domain.model import FINAL_STATES, LotHead, LotState, Operation
from mes.ports import LotQuery, ToolJobQuery


def sites_in() -> ColumnElement[int]:
    """A job's carrier's sites that came into the job: all, less those rejected at earlier
    steps (labelled ``sites_in``)."""
    earlier = (
        select(func.count())
        .select_from(site_rejects)
        .where(
            site_rejects.c.carrier_id == jobs.c.carrier_id,
            site_rejects.c.path_index < jobs.c.path_index,
        )
        .scalar_subquery()
    )
    return (carriers.c.rows * carriers.c.cols - earlier).label("sites_in")


class Statements:
    """The lot store's statements, compiled once for one dialect."""

    def __init__(self, dialect: Dialect):
        self.dialect = dialect
        self.equipment = EquipmentStatements(dialect)
        self.interlocks = InterlockStatements(dialect)
        self.durables = DurableStatements(dialect)
        self.materials = MaterialStatements(dialect)
        self.reasons = ReasonStatements(dialect)
        self.spc = SpcStatements(dialect)
        self.signatures = SignatureStatements(dialect)
        self.security = SecurityStatements(dialect)

        def c(statement: ClauseElement, keys: list[str] | None = None) -> CompiledStatement:
            return CompiledStatement.compile(statement, dialect, keys)

        self.get_lot = c(
            select(*LOT_COLUMNS)
            .select_from(LOT_WITH_CARRIERS)
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
        self.history_at = c(
            history.where(lot_history.c.at == bindparam("at")).order_by(lot_history.c.seq)
        )
        self.page_key = c(
            select(lots.c.priority, lots.c.created_at).where(lots.c.id == bindparam("lot_id"))
        )
        self.children = c(
            select(lots.c.id)
            .where(rare(lots.c.parent_id == bindparam("lot_id")))
            .order_by(lots.c.created_at)
        )
        self.insert_lot = c(insert(lots), LOT_KEYS)
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
        self.insert_carrier = c(insert(carriers), CARRIER_KEYS)
        self.move_carrier = c(
            update(carriers)
            .where(carriers.c.id == bindparam("b_id"))
            .values(lot_id=bindparam("v_lot_id"), position=bindparam("v_position"))
        )
        self.insert_reject = c(insert(site_rejects), REJECT_KEYS)
        self.insert_history = c(insert(lot_history).returning(lot_history.c.seq), HISTORY_KEYS)
        self.insert_outbox = c(insert(outbox), OUTBOX_KEYS)
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
            select(*LOT_COLUMNS, *(col.label(f"job_{col.name}") for col in jobs.c))
            .select_from(jobs.join(LOT_WITH_CARRIERS, lots.c.id == jobs.c.lot_id))
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
        self.tool_jobs = c(
            select(jobs, sites_in())
            .join(carriers, carriers.c.id == jobs.c.carrier_id)
            .where(
                jobs.c.tool_id == bindparam("tool_id"),
                jobs.c.started_at >= bindparam("since"),
                jobs.c.started_at < bindparam("until"),
            )
            .order_by(jobs.c.started_at.desc(), jobs.c.job_id.desc())
            .limit(bindparam("limit"))
        )
        self.insert_job = c(insert(jobs), JOB_KEYS)
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
        self.move_in_one = c(move_in_one_statement()) if postgres else None
        self.entry_in_one = c(entry_in_one_statement()) if postgres else None
        self.job_key = c(
            select(jobs.c.started_at, jobs.c.tool_id).where(jobs.c.job_id == bindparam("job_id"))
        )
        self.history_key = c(
            select(lot_history.c.seq).where(lot_history.c.seq == bindparam("history_seq"))
        )
        self._find: dict[tuple[int, bool], CompiledStatement] = {}
        self._heads: dict[tuple[int, int | None], CompiledStatement] = {}
        self._track_outs: dict[tuple[int, bool], CompiledStatement] = {}
        self._releases: dict[bool, CompiledStatement] = {}
        self._hold_entries: dict[int, CompiledStatement] = {}

    def heads(self, states: int, tools: int | None = None) -> CompiledStatement:
        """Lot heads by state (bound as s0, s1, ...), most urgent first; given ``tools``,
        only those running on one of that many tools (bound as t0, t1, ...)."""
        key = (states, tools)
        if key not in self._heads:
            query = (
                select(*(lots.c[n] for n in HEAD_COLUMNS))
                .where(rare(lots.c.state.in_([bindparam(f"s{i}") for i in range(states)])))
                .order_by(lots.c.priority, lots.c.created_at, lots.c.id)
            )
            if tools is not None:
                query = query.where(LOT_TOOL.in_([bindparam(f"t{i}") for i in range(tools)]))
            self._heads[key] = CompiledStatement.compile(query, self.dialect)
        return self._heads[key]

    def last_track_outs(self, steps: int, until: bool = False) -> CompiledStatement:
        """Each of a lot's track-outs of ``steps`` steps (bound as p0, p1, ...), in order:
        the step and when (on the lot's history index; only those rows converted); with
        ``until``, only those at or before it (bound as until)."""
        if (steps, until) not in self._track_outs:
            query = (
                select(lot_history.c.step, lot_history.c.at)
                .where(
                    lot_history.c.lot_id == bindparam("lot_id"),
                    lot_history.c.operation == Operation.TRACK_OUT.value,
                    lot_history.c.step.in_([bindparam(f"p{i}") for i in range(steps)]),
                )
                .order_by(lot_history.c.seq)
            )
            if until:
                query = query.where(lot_history.c.at <= bindparam("until"))
            self._track_outs[steps, until] = CompiledStatement.compile(query, self.dialect)
        return self._track_outs[steps, until]

    def hold_entries(self, holds: int) -> CompiledStatement:
        """The entries of ``holds`` lots (bound as l0, l1, ...) written at any of their holds'
        times (a0, a1, ...), by lot and order, on the history's index of times: a superset
        of each lot's entries at its own hold's time, which the caller keeps."""
        if holds not in self._hold_entries:
            query = (
                select(lot_history)
                .where(
                    lot_history.c.at.in_(
                        [bindparam(f"a{i}", type_=lot_history.c.at.type) for i in range(holds)]
                    ),
                    lot_history.c.lot_id.in_([bindparam(f"l{i}") for i in range(holds)]),
                )
                .order_by(lot_history.c.lot_id, lot_history.c.seq)
            )
            self._hold_entries[holds] = CompiledStatement.compile(query, self.dialect)
        return self._hold_entries[holds]

    def releases(self, until: bool = False) -> CompiledStatement:
        """A lot's releases in order: when, and their data (what was held); with ``until``,
        only those at or before it."""
        if until not in self._releases:
            query = (
                select(lot_history.c.at, lot_history.c.data)
                .where(
                    lot_history.c.lot_id == bindparam("lot_id"),
                    lot_history.c.operation == Operation.RELEASE.value,
                )
                .order_by(lot_history.c.seq)
            )
            if until:
                query = query.where(lot_history.c.at <= bindparam("until"))
            self._releases[until] = CompiledStatement.compile(query, self.dialect)
        return self._releases[until]

    def find(self, states: int, by_flow: bool) -> CompiledStatement:
        """Lots with their carriers by state (``states`` of them, bound as s0, s1, ...) and
        flow, most urgent first."""
        key = (states, by_flow)
        if key not in self._find:
            query = select(*LOT_COLUMNS).select_from(LOT_WITH_CARRIERS)
            if states:
                in_states = lots.c.state.in_([bindparam(f"s{i}") for i in range(states)])
                query = query.where(rare(in_states))
            if by_flow:
                query = query.where(lots.c.flow == bindparam("flow"))
            query = query.order_by(
                lots.c.priority, lots.c.created_at, lots.c.id, carriers.c.position
            )
            self._find[key] = CompiledStatement.compile(query, self.dialect)
        return self._find[key]


def move_in_one_statement() -> ClauseElement:
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
    return entry_in_one_statement(moved)


def entry_in_one_statement(after: CTE | None = None) -> ClauseElement:
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
                by_hand=bool(r["running"].get("by_hand")) if r["running"] else False,
            )
        return head


_IN_PROGRESS = frozenset({LotState.WAITING, LotState.RUNNING, LotState.HOLD})


def page_conditions(query: LotQuery, dialect: Dialect) -> tuple[list[Any], dict[str, Any]]:
    """The WHERE conditions of a lot list's filters, and their values."""
    where: list[Any] = []
    values: dict[str, Any] = {}
    if query.states:
        in_states = lots.c.state.in_([bindparam(f"s{i}") for i in range(len(query.states))])
        # the states in progress are a plant's few lots; the finished ones its many
        where.append(rare(in_states) if set(query.states) <= _IN_PROGRESS else in_states)
        values.update({f"s{i}": s.value for i, s in enumerate(query.states)})
    for name, column, given in (
        ("flow", lots.c.flow, query.flow),
        ("priority", lots.c.priority, query.priority),
        ("tool", LOT_TOOL, query.tool),  # along ix_lots_tool and ix_lots_step (revision 0019)
        ("step", LOT_STEP, query.step),
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


def counted_by_state(query: LotQuery) -> bool:
    """Whether a lot list's count is :func:`_kept_count`'s, exact whatever the number of lots
    (filtered by state and flow at most), or else the lots that match, counted up to
    :data:`mes.domain.paging.COUNTED_UP_TO`."""
    return all(
        given is None
        for given in (query.priority, query.tool, query.step, query.moved_since, query.moved_before)
    )


def _kept_count(query: LotQuery, values: dict[str, Any]) -> Select[Any] | None:
    """The count of a list filtered by state and flow at most: the lots in progress that
    match, counted in ``lots`` (few, along ix_lots_state_priority), plus the finished ones
    from ``lot_counts`` (a few rows per flow, kept by triggers: revision 0021), whatever the
    number of lots the plant finished. None for other filters (a priority, a tool, a step, a
    time window): their count is of the lots that match, in ``lots``. The states' values are
    added to ``values`` (as c_live* and c_final*)."""
    if not counted_by_state(query):
        return None
    states = query.states or tuple(LotState)
    live = [s for s in LotState if s in states and s in _IN_PROGRESS]
    final = [s for s in LotState if s in states and s in FINAL_STATES]
    values.update({f"c_live{i}": s.value for i, s in enumerate(live)})
    values.update({f"c_final{i}": s.value for i, s in enumerate(final)})
    flow = [] if query.flow is None else [bindparam("f_flow", type_=lots.c.flow.type)]
    in_progress = (
        select(func.count())
        .select_from(lots)
        .where(rare(lots.c.state.in_([bindparam(f"c_live{i}") for i in range(len(live))])))
        .where(*(common(lots.c.flow == f) for f in flow))
        .scalar_subquery()
        if live
        else literal(0, BigInteger())
    )
    finished = (
        select(cast(func.coalesce(func.sum(lot_counts.c.n), 0), BigInteger()))
        .where(lot_counts.c.state.in_([bindparam(f"c_final{i}") for i in range(len(final))]))
        .where(*(lot_counts.c.flow == f for f in flow))
        .scalar_subquery()
        if final
        else literal(0, BigInteger())
    )
    return select((in_progress + finished).label("n"))


def page_statements(
    query: LotQuery, dialect: Dialect
) -> tuple[CompiledStatement, CompiledStatement, dict[str, Any]]:
    """A lot list's page (the lots after the cursor's key, one more than the limit, with
    their carriers) and count (every lot the filters select), with their values. The page
    walks an index in (priority, created_at, id) order from the cursor on (keyset paging):
    its cost does not grow with the page number, and no lot is skipped or shown twice
    while lots move, since a move changes none of the three."""
    where, values = page_conditions(query, dialect)
    count = _kept_count(query, values)
    if count is None:
        count = capped_count(lots, *where)
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
        select(*LOT_COLUMNS)
        .select_from(ids.join(LOT_WITH_CARRIERS, lots.c.id == ids.c.id))
        .order_by(*_PAGE_ORDER, carriers.c.position)
    )
    return (
        CompiledStatement.compile(page, dialect),
        CompiledStatement.compile(count, dialect),
        values,
    )


_JOB_ORDER = (jobs.c.started_at.desc(), jobs.c.job_id.desc())


def tool_job_page_statements(
    query: ToolJobQuery, dialect: Dialect
) -> tuple[CompiledStatement, CompiledStatement, dict[str, Any]]:
    """A tool's jobs page (newest first, from the cursor's key on, one more than the limit,
    each with its sites in) and count (every job the filters select), with their values.
    Keyset paging on (started_at, job_id) along ix_jobs_tool_started: a page costs the same
    whatever its number, and jobs started meanwhile do not shift the pages after the first.
    The cursor's key is bound as k_started_at and k_job_id."""
    c = jobs.c
    where: list[Any] = [c.tool_id == bindparam("tool_id", type_=c.tool_id.type)]
    values: dict[str, Any] = {"tool_id": query.tool_id}
    for name, condition, given in (
        ("lot_id", c.lot_id == bindparam("lot_id", type_=c.lot_id.type), query.lot_id),
        ("since", c.started_at >= bindparam("since", type_=c.started_at.type), query.since),
        ("until", c.started_at < bindparam("until", type_=c.started_at.type), query.until),
    ):
        if given is not None:
            where.append(condition)
            values[name] = given
    count = capped_count(jobs, *where)
    keyed = list(where)
    if query.after is not None:
        at = bindparam("k_started_at", type_=c.started_at.type)
        keyed.append(
            (c.started_at < at)
            | ((c.started_at == at) & (c.job_id < bindparam("k_job_id", type_=c.job_id.type)))
        )
    page = (
        select(jobs, sites_in())
        .join(carriers, carriers.c.id == c.carrier_id)
        .where(*keyed)
        .order_by(*_JOB_ORDER)
        .limit(bindparam("page_limit", type_=Integer()))
    )
    return (
        CompiledStatement.compile(page, dialect),
        CompiledStatement.compile(count, dialect),
        values,
    )
