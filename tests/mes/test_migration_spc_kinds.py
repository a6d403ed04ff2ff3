"""Revision 0026, SPC charts of three kinds, on SQLite and PostgreSQL: up keeps every chart a
chart of one point per lot and every point one value; down refuses, naming them and changing
nothing, while a carrier or subgroup chart or points of one are there, and goes down and up
again once they are not."""

from __future__ import annotations

from collections.abc import Generator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from flows import FlowLibrary
from mes.adapters.database import create_engine
from mes.adapters.migrate import downgrade, upgrade
from mes.adapters.schema import schema_status
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain.commands import StartLot
from mes.domain.equipment import ToolRegistration
from mes.domain.spc import ChartKind, Point
from mes.equipment import EquipmentService
from mes.ports_spc import add_points
from mes.service import LotService
from mes.spc import SpcService
from tests.mes.test_migrations import DATABASES, _diff

TOOL = ToolRegistration("DB-1", "die_bonder", "modbus 127.0.0.1:5020", ("DIE_ATTACH",))
BLT = "bond_line_thickness_um"
AT = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)


def _columns(conn: Connection, table: str) -> set[str]:
    return {str(c["name"]) for c in inspect(conn).get_columns(table)}


@pytest.mark.parametrize("database", DATABASES)
async def test_chart_kinds_go_down_only_without_carrier_or_subgroup_charts(
    request: pytest.FixtureRequest, database: str, library: FlowLibrary
) -> None:
    engine = create_engine(request.getfixturevalue(database))
    try:
        await upgrade(engine)  # the tool and the lot written by this code, then down to 0025
        factory = SqlUnitOfWorkFactory(engine)
        await EquipmentService(factory).register("a", [TOOL])
        await LotService(factory, library).start(StartLot("L1", "fo-organic", "op1"))
        await downgrade(engine, "0025")
        async with engine.connect() as conn:  # a chart and its point as revision 0025 kept them
            await conn.execute(
                text(
                    "INSERT INTO spc_charts (step, value, tool_id, baseline_n, nelson, inhibit, "
                    "set_by, set_at, limits) VALUES ('DIE_ATTACH', :value, 'DB-1', 20, false, "
                    "false, 'eng1', :at, :limits)"
                ),
                {"value": BLT, "at": AT, "limits": '{"center": 25.0, "sigma": 1.0}'},
            )
            await conn.execute(
                text(
                    "INSERT INTO spc_points (step, value, tool_id, lot_id, at, x, rules) "
                    "VALUES ('DIE_ATTACH', :value, 'DB-1', 'L1', :at, '25.4', '[]')"
                ),
                {"value": BLT, "at": AT},
            )
            await conn.commit()
        await upgrade(engine)
        spc = SpcService(factory, library, lambda: AT)
        [before] = await spc.show("DIE_ATTACH", BLT)
        assert (before.chart.kind, before.chart.center) == (ChartKind.LOT, 25.0)
        assert [(p.x, p.carrier_id, p.n, p.s) for p in before.points] == [(25.4, None, 1, None)]

        await spc.configure("DIE_ATTACH", "xy_offset_um", "DB-1", "eng1", kind="subgroup")
        point = Point("DIE_ATTACH", BLT, "DB-1", "L1", AT, 25.5, (), "L1-02")

        def work() -> Generator[Any, Any, None]:
            yield from add_points([point])

        await factory.write(work())
        [view] = await spc.show("DIE_ATTACH", BLT)
        assert [(p.carrier_id, p.n) for p in view.points] == [(None, 1), ("L1-02", 1)]

        await downgrade(engine, "0026")  # the revisions after it, down first
        with pytest.raises(RuntimeError) as refused:
            await downgrade(engine, "0025")
        assert (
            "revision 0025 knows only charts of one point per lot, and this database has "
            f"others: DIE_ATTACH {BLT} on DB-1 (points of carriers or subgroups); "
            "DIE_ATTACH xy_offset_um on DB-1 (subgroup)."
        ) in str(refused.value)
        assert "nothing was changed" in str(refused.value)
        assert (await schema_status(engine)).current == "0026"

        async with engine.connect() as conn:  # what the message asks the owner to do
            await conn.execute(text("DELETE FROM spc_points WHERE carrier_id IS NOT NULL"))
            await conn.execute(text("UPDATE spc_charts SET kind = 'lot'"))
            await conn.commit()
        await downgrade(engine, "0025")
        async with engine.connect() as conn:
            assert "kind" not in await conn.run_sync(_columns, "spc_charts")
            assert {"carrier_id", "n", "s"}.isdisjoint(await conn.run_sync(_columns, "spc_points"))
        await upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
        assert [c.kind for c in await spc.charts()] == [ChartKind.LOT, ChartKind.LOT]
    finally:
        await engine.dispose()
