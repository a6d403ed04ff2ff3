"""The line's lot history as a list (``lot history``, ``GET /history``): a page of entries
of every lot, newest first, filtered in SQL, for SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, bindparam, select
from sqlalchemy.engine import Dialect

from mes.adapters.driver import CompiledStatement
from mes.adapters.sql_expressions import capped_count
from mes.adapters.tables import lot_history
from mes.ports_history import HistoryQuery

_H = lot_history.c


def history_page_statements(
    query: HistoryQuery, dialect: Dialect
) -> tuple[CompiledStatement, CompiledStatement, dict[str, Any]]:
    """A history page (newest first, the entries before the cursor's ``seq``, one more than
    the limit) and count (the entries the filters select, up to
    :data:`mes.domain.paging.COUNTED_UP_TO` and one), with their values. Keyset paging
    on ``seq``: a page costs the same whatever its number, and entries written meanwhile
    (they come first, with higher numbers) shift none of the pages after the first. The lot,
    tool, user, operation and step filters walk indexes ending in ``seq``
    (ix_lot_history_lot_id; ix_lot_history_tool, ix_lot_history_user: revision 0018;
    ix_lot_history_operation, ix_lot_history_step: revision 0023), a time window
    ix_lot_history_at."""
    where: list[Any] = []
    values: dict[str, Any] = {}
    for name, column, given in (
        ("lot_id", _H.lot_id, query.lot_id),
        ("tool", _H.tool, query.tool),
        ("user", _H.user, query.user),
        ("operation", _H.operation, query.operation),
        ("step", _H.step, query.step),
    ):
        if given is not None:
            where.append(column == bindparam(f"f_{name}", type_=column.type))
            values[f"f_{name}"] = given
    if query.since is not None:
        where.append(_H.at >= bindparam("since", type_=_H.at.type))
        values["since"] = query.since
    if query.until is not None:
        where.append(_H.at < bindparam("until", type_=_H.at.type))
        values["until"] = query.until
    count = capped_count(lot_history, *where)
    keyed = list(where)
    if query.after is not None:
        keyed.append(_H.seq < bindparam("k_seq", type_=_H.seq.type))
        values["k_seq"] = query.after
    page = (
        select(lot_history)
        .where(*keyed)
        .order_by(_H.seq.desc())
        .limit(bindparam("page_limit", type_=Integer()))
    )
    return (
        CompiledStatement.compile(page, dialect),
        CompiledStatement.compile(count, dialect),
        values,
    )
