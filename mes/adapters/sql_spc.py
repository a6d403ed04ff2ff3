"""SPC's store (charts and points) for SQLite and PostgreSQL, on the same compiled statements
and driver sessions as the lot store. Limits and points are kept as JSON numbers, exact on
both dialects (the driver layer has no float type processor for PostgreSQL)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Integer, bindparam, delete, func, insert, select
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement

from mes.adapters.driver import CompiledStatement, Execute, ExecuteMany, Fetch, Plan
from mes.adapters.tables import LOT_STEP, spc_charts, spc_points, tool_of_lot
from mes.domain.spc import Chart, ChartKind, Point
from mes.ports_spc import (
    AddPoints,
    CountPoints,
    GetCharts,
    GetPoints,
    SaveChart,
    SpcRequest,
)

_C = spc_charts.c
_P = spc_points.c


class SpcStatements:
    def __init__(self, dialect: Dialect):
        def c(statement: ClauseElement, keys: list[str] | None = None) -> CompiledStatement:
            return CompiledStatement.compile(statement, dialect, keys)

        every = select(spc_charts).order_by(_C.step, _C.value, _C.tool_id)
        self.lots_charts = c(
            every.where(_C.step == tool_of_lot(LOT_STEP), _C.tool_id == tool_of_lot())
        )
        self.charts: dict[tuple[bool, bool, bool], CompiledStatement] = {}
        """By which of step, tool and value are given."""
        for step, tool, value in itertools.product((False, True), repeat=3):
            given = (step, tool, value)
            filters = [
                column == bindparam(name)
                for column, name, on in zip(
                    (_C.step, _C.tool_id, _C.value),
                    ("step", "tool_id", "value"),
                    given,
                    strict=True,
                )
                if on
            ]
            self.charts[given] = c(every.where(*filters))
        self.delete_chart = c(
            delete(spc_charts).where(
                _C.step == bindparam("b_step"),
                _C.value == bindparam("b_value"),
                _C.tool_id == bindparam("b_tool_id"),
            )
        )
        self.insert_chart = c(insert(spc_charts), [col.name for col in spc_charts.c])
        of_chart = select(spc_points).where(
            _P.step == bindparam("step"),
            _P.value == bindparam("value"),
            _P.tool_id == bindparam("tool_id"),
        )
        self.points = c(of_chart.order_by(_P.seq))
        self.last_points = c(of_chart.order_by(_P.seq.desc()).limit(bindparam("n", type_=Integer)))
        self.count_points = c(
            select(func.count().label("n")).where(
                _P.step == bindparam("step"),
                _P.value == bindparam("value"),
                _P.tool_id == bindparam("tool_id"),
            )
        )
        self.insert_point = c(
            insert(spc_points), [col.name for col in spc_points.c if col.name != "seq"]
        )


def _chart(m: Mapping[str, Any]) -> Chart:
    limits = m["limits"] or {}
    return Chart(
        step=m["step"],
        value=m["value"],
        tool_id=m["tool_id"],
        baseline_n=int(m["baseline_n"]),
        nelson=bool(m["nelson"]),
        inhibit=bool(m["inhibit"]),
        set_by=m["set_by"],
        set_at=m["set_at"],
        center=limits.get("center"),
        sigma=limits.get("sigma"),
        limits_source=limits.get("source"),
        kind=ChartKind(m["kind"]),
    )


def _point(m: Mapping[str, Any]) -> Point:
    return Point(
        m["step"],
        m["value"],
        m["tool_id"],
        m["lot_id"],
        m["at"],
        float(m["x"]),
        tuple(m["rules"]),
        m["carrier_id"],
        int(m["n"]),
        None if m["s"] is None else float(m["s"]),
    )


def spc_plan(sql: SpcStatements, request: SpcRequest) -> Plan[Any]:
    """The statements that answer ``request`` (:data:`mes.ports.Work`)."""
    if isinstance(request, GetCharts) and request.running_lot is not None:
        rows = yield Fetch(sql.lots_charts, {"lot_id": request.running_lot})
        return [_chart(r) for r in rows]
    if isinstance(request, GetCharts):
        values = {"step": request.step, "tool_id": request.tool_id, "value": request.value}
        statement = sql.charts[
            (request.step is not None, request.tool_id is not None, request.value is not None)
        ]
        rows = yield Fetch(statement, {k: v for k, v in values.items() if v is not None})
        return [_chart(r) for r in rows]
    if isinstance(request, SaveChart):
        ch = request.chart
        yield Execute(
            sql.delete_chart, {"b_step": ch.step, "b_value": ch.value, "b_tool_id": ch.tool_id}
        )
        limits = (
            None
            if ch.center is None
            else {"center": ch.center, "sigma": ch.sigma, "source": ch.limits_source}
        )
        yield Execute(
            sql.insert_chart,
            {
                "step": ch.step,
                "value": ch.value,
                "tool_id": ch.tool_id,
                "baseline_n": ch.baseline_n,
                "nelson": ch.nelson,
                "inhibit": ch.inhibit,
                "set_by": ch.set_by,
                "set_at": ch.set_at,
                "limits": limits,
                "kind": ch.kind.value,
            },
        )
        return None
    if isinstance(request, GetPoints):
        key = {"step": request.step, "value": request.value, "tool_id": request.tool_id}
        if request.last is None:
            return [_point(r) for r in (yield Fetch(sql.points, key))]
        rows = yield Fetch(sql.last_points, {**key, "n": request.last})
        return [_point(r) for r in reversed(rows)]
    if isinstance(request, CountPoints):
        key = {"step": request.step, "value": request.value, "tool_id": request.tool_id}
        rows = yield Fetch(sql.count_points, key)
        return int(rows[0]["n"])
    if isinstance(request, AddPoints):
        yield ExecuteMany(
            sql.insert_point,
            [
                {
                    "step": p.step,
                    "value": p.value,
                    "tool_id": p.tool_id,
                    "lot_id": p.lot_id,
                    "at": p.at,
                    "x": p.x,
                    "rules": list(p.rules),
                    "carrier_id": p.carrier_id,
                    "n": p.n,
                    "s": p.s,
                }
                for p in request.points
            ],
        )
        return None
    raise TypeError(f"not an SPC store request: {request!r}")
