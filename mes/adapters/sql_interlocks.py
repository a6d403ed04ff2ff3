"""The interlocks' store (tool qualifications, the lots running on a tool) for SQLite and
PostgreSQL, on the same compiled statements and driver sessions as the lot store."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import bindparam, delete, insert, select
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement

from mes.adapters.driver import CompiledStatement, ExecuteMany, Fetch, Plan
from mes.adapters.sql_expressions import rare
from mes.adapters.tables import lots, tool_qualifications
from mes.domain.interlocks import Qualification
from mes.domain.model import LotState
from mes.ports import GetLotsRunningOn, GetQualifications, InterlockRequest, SaveQualifications

_Q = tool_qualifications.c


class InterlockStatements:
    """The interlocks' statements, compiled once for one dialect."""

    def __init__(self, dialect: Dialect):
        def c(statement: ClauseElement, keys: list[str] | None = None) -> CompiledStatement:
            return CompiledStatement.compile(statement, dialect, keys)

        everything = select(tool_qualifications).order_by(_Q.tool_id, _Q.step)
        self.qualifications = {
            (False, False): c(everything),
            (True, False): c(everything.where(_Q.step == bindparam("step"))),
            (False, True): c(everything.where(_Q.tool_id == bindparam("tool_id"))),
            (True, True): c(
                everything.where(_Q.step == bindparam("step"), _Q.tool_id == bindparam("tool_id"))
            ),
        }
        self.delete_qualification = c(
            delete(tool_qualifications).where(
                _Q.tool_id == bindparam("b_tool_id"), _Q.step == bindparam("b_step")
            )
        )
        self.insert_qualification = c(
            insert(tool_qualifications), [col.name for col in tool_qualifications.c]
        )
        # Few lots run at a time (one per tool, and the manual steps): their running step is
        # JSON, read here and matched by tool in Python, the same on both dialects.
        self.running = c(
            select(lots.c.id, lots.c.running).where(rare(lots.c.state == LotState.RUNNING.value))
        )


def _qualification_from_row(m: Mapping[str, Any]) -> Qualification:
    return Qualification(
        tool_id=m["tool_id"],
        step=m["step"],
        qualified=bool(m["qualified"]),
        by=m["by"],
        at=m["at"],
        reason=m["reason"],
    )


def interlock_plan(sql: InterlockStatements, request: InterlockRequest) -> Plan[Any]:
    """The statements that answer ``request`` (:data:`mes.ports.Work`)."""
    if isinstance(request, GetQualifications):
        values = {"step": request.step, "tool_id": request.tool_id}
        statement = sql.qualifications[(request.step is not None, request.tool_id is not None)]
        rows = yield Fetch(statement, {k: v for k, v in values.items() if v is not None})
        return [_qualification_from_row(r) for r in rows]
    if isinstance(request, SaveQualifications):
        given = request.qualifications
        yield ExecuteMany(
            sql.delete_qualification, [{"b_tool_id": q.tool_id, "b_step": q.step} for q in given]
        )
        yield ExecuteMany(
            sql.insert_qualification,
            [
                {
                    "tool_id": q.tool_id,
                    "step": q.step,
                    "qualified": q.qualified,
                    "by": q.by,
                    "at": q.at,
                    "reason": q.reason,
                }
                for q in given
            ],
        )
        return None
    if isinstance(request, GetLotsRunningOn):
        rows = yield Fetch(sql.running, {})
        return sorted(r["id"] for r in rows if (r["running"] or {}).get("tool") == request.tool_id)
    raise TypeError(f"not an interlock store request: {request!r}")
