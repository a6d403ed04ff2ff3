"""Several line controllers share one PostgreSQL, each with its own tools: lots flow from one
controller's tools to the other's without conflict, each tool is driven only by its owner,
and a controller that claims another's tool is refused before it touches anything."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from mes.adapters.database import create_engine
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain.errors import ToolOwnedElsewhere
from mes.domain.model import LotState, Operation
from mes.equipment import EquipmentService
from mes.service import LotService
from pkgline.bootstrap import flow_library
from pkgline.config import LineConfig
from tests.controller.conftest import (
    Stack,
    all_in,
    line_config,
    lots_in,
    running_controller,
    simulated,
    start_lots,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def _split(whole: LineConfig) -> tuple[LineConfig, LineConfig]:
    modbus = tuple(t for t in whole.tools if t.endpoint.transport == "modbus")
    opcua = tuple(t for t in whole.tools if t.endpoint.transport == "opcua")
    manual_on = whole.controller
    manual_off = whole.controller.model_copy(update={"auto_manual_steps": False})
    return (
        whole.model_copy(update={"name": "line-a", "tools": modbus, "controller": manual_on}),
        whole.model_copy(update={"name": "line-b", "tools": opcua, "controller": manual_off}),
    )


@contextlib.asynccontextmanager
async def _own_stack(url: str) -> AsyncIterator[Stack]:
    """A second process's view of the same database: its own engine and connections."""
    engine = create_engine(url)
    try:
        factory = SqlUnitOfWorkFactory(engine)
        yield Stack(LotService(factory, flow_library()), EquipmentService(factory), url)
    finally:
        await engine.dispose()


async def test_two_controllers_on_one_postgresql_finish_their_lots_without_conflict(
    postgres_url: str,
) -> None:
    from mes.adapters.migrate import upgrade

    whole = line_config(time_scale=0.0, reject_rate=0.01)
    line_a, line_b = _split(whole)
    engine = create_engine(postgres_url)
    await upgrade(engine)
    await engine.dispose()
    async with (
        _own_stack(postgres_url) as a,
        _own_stack(postgres_url) as b,
        simulated(whole),
        running_controller(line_a, a),
        running_controller(line_b, b),
    ):
        ids = await start_lots(a.lots)

        async def done() -> bool:
            return all_in(await lots_in(a.lots, ids), LotState.COMPLETED, LotState.HOLD)

        await wait_until(done, timeout_s=150, what="every lot to complete")
        found = await lots_in(a.lots, ids)
        assert all_in(found, LotState.COMPLETED), {k: (v.state, v.hold) for k, v in found.items()}

        owners = {t.id: t.line for t in await a.equipment.tools()}
        assert {owners[t.id] for t in line_a.tools} == {"line-a"}
        assert {owners[t.id] for t in line_b.tools} == {"line-b"}
        users_by_tool: dict[str, set[str]] = {}
        for lot_id in ids:
            for entry in (await a.lots.report(lot_id)).history:
                if entry.operation is Operation.JOB_START and entry.tool:
                    users_by_tool.setdefault(entry.tool, set()).add(owners[entry.tool])
        assert users_by_tool, "jobs ran"
        assert all(len(lines) == 1 for lines in users_by_tool.values())

        intruder = line_b.model_copy(update={"name": "line-c", "tools": line_a.tools[:1]})
        with pytest.raises(ToolOwnedElsewhere):
            async with running_controller(intruder, b):
                pass
        assert (await a.equipment.tool(line_a.tools[0].id)).line == "line-a"
