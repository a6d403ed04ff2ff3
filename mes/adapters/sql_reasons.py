"""The reason-code catalogues' store for SQLite and PostgreSQL, on the same compiled
statements and driver sessions as the lot store."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement

from mes.adapters.driver import CompiledStatement, Execute, Fetch, Plan
from mes.adapters.tables import reason_codes
from mes.domain.authority import Role
from mes.domain.reasons import ReasonCode, ReasonKind
from mes.ports_reasons import GetReasonCodes, ReasonRequest, SaveReasonCode

_R = reason_codes.c


class ReasonStatements:
    """The catalogue's statements, compiled once for one dialect."""

    def __init__(self, dialect: Dialect):
        def c(statement: ClauseElement, keys: list[str] | None = None) -> CompiledStatement:
            return CompiledStatement.compile(statement, dialect, keys)

        everything = select(reason_codes).order_by(_R.code)
        self.all = c(everything)
        self.one = c(everything.where(_R.code == bindparam("code")))
        self.insert = c(insert(reason_codes), [col.name for col in reason_codes.c])
        self.retire = c(
            update(reason_codes)
            .where(_R.code == bindparam("b_code"))
            .values(
                retired_by=bindparam("b_by"),
                retired_at=bindparam("b_at"),
                retired_reason=bindparam("b_reason"),
            )
        )


def _code(m: Mapping[str, Any]) -> ReasonCode:
    return ReasonCode(
        code=m["code"],
        kind=ReasonKind(m["kind"]),
        text=m["text"],
        added_by=m["added_by"],
        added_at=m["added_at"],
        release_roles=frozenset(Role(r) for r in m["release_roles"]),
        retired_by=m["retired_by"],
        retired_at=m["retired_at"],
        retired_reason=m["retired_reason"],
    )


def reason_plan(sql: ReasonStatements, request: ReasonRequest) -> Plan[Any]:
    """The statements that answer ``request`` (:data:`mes.ports.Work`)."""
    if isinstance(request, GetReasonCodes):
        if request.codes is None:
            return [_code(r) for r in (yield Fetch(sql.all, {}))]
        found: list[ReasonCode] = []
        for code in sorted(set(request.codes)):  # a hold names one
            found.extend(_code(r) for r in (yield Fetch(sql.one, {"code": code})))
        return found
    if isinstance(request, SaveReasonCode):
        r = request.code
        if request.new:
            yield Execute(
                sql.insert,
                {
                    "code": r.code,
                    "kind": r.kind.value,
                    "text": r.text,
                    "release_roles": sorted(role.value for role in r.release_roles),
                    "added_by": r.added_by,
                    "added_at": r.added_at,
                    "retired_by": r.retired_by,
                    "retired_at": r.retired_at,
                    "retired_reason": r.retired_reason,
                },
            )
        else:
            yield Execute(
                sql.retire,
                {
                    "b_code": r.code,
                    "b_by": r.retired_by,
                    "b_at": r.retired_at,
                    "b_reason": r.retired_reason,
                },
            )
        return None
    raise TypeError(f"not a reason-code store request: {request!r}")
