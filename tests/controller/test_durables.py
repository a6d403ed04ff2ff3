"""Durables in the line controller: each job a simulated wire bonder finishes counts on the
capillary mounted on it (two touchdowns per site of the tool's job), and once the capillary is
spent the controller's own track-in of the next lot on that tool is refused: it logs why and
the lot waits. The controller tracks a tool's next lot in while the last job's results are
being recorded: the track-in counts that job too (on PostgreSQL the two transactions overlap,
and without it the next lot ran on the spent capillary)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from structlog.testing import capture_logs

from mes.adapters.database import create_engine
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain import commands as cmd
from mes.domain.equipment import ToolRegistration
from mes.domain.model import LotState
from mes.durables import DurableService
from mes.materials import MaterialService
from mes.ports import HistoryQuery
from mes.service import utc_now
from tests.controller.conftest import Stack, line_config, running_controller, simulated, wait_until

LIFE = 2 * 2 * 32
"""Two carriers of 4 x 8 sites, two touchdowns per site: one lot's wire bonding."""


def _refusals(logs: list[dict[str, Any]], lot: str) -> list[str]:
    return [
        str(e.get("reason"))
        for e in logs
        if e.get("event") == "lot not started" and e.get("lot") == lot
    ]


async def test_jobs_count_on_the_capillary_and_a_spent_one_refuses_the_controllers_track_in(
    stack: Stack,
) -> None:
    config = line_config(tools=["DB-1", "WB-1"])
    engine = create_engine(stack.url)
    try:
        durables = DurableService(SqlUnitOfWorkFactory(engine), utc_now)
        # registered as the controller will, so that the capillary is on WB-1 from the start
        await stack.equipment.register(
            config.name,
            [
                ToolRegistration(t.id, t.equipment_class.value, "sim", tuple(t.steps or ()))
                for t in config.tools
            ],
        )
        await durables.add("CAP-1", "capillary", LIFE, "eng")
        await durables.mount("CAP-1", "WB-1", "tech")
        await stack.lots.start(cmd.StartLot("C1", "stiffener-bga", "planner", priority=1))
        await stack.lots.start(cmd.StartLot("C2", "stiffener-bga", "planner", priority=2))
        with capture_logs() as logs:
            async with simulated(config), running_controller(config, stack):

                async def c2_refused() -> bool:
                    return any("CAP-1" in r for r in _refusals(logs, "C2"))

                await wait_until(c2_refused, timeout_s=60, what="C2 refused on WB-1")
                await asyncio.sleep(1.5)  # passes every 0.2 s: C2 is refused again and again
        view = await durables.show("CAP-1")
        used = [e for e in view.events if e.lot_id is not None]
        assert [(e.lot_id, e.step, e.amount) for e in used] == [
            ("C1", "WIRE_BOND", 64),
            ("C1", "WIRE_BOND", 64),
        ]
        assert all(e.job_id for e in used) and view.durable.count == LIFE
        c1, c2 = await stack.lots.get("C1"), await stack.lots.get("C2")
        assert "WIRE_BOND" in c1.path
        assert c2.state is LotState.WAITING and c2.path[-1] == "DIE_ATTACH"
        refusals = [r for r in _refusals(logs, "C2") if "CAP-1" in r]
        # each reason logged once as it changed (the job counted, then recorded), not on
        # every dispatch pass
        assert len(refusals) == len(set(refusals)) <= 2, refusals
        refusal = refusals[-1]
        assert "capillary CAP-1 at 128 of 128 touchdowns (100 %)" in refusal
    finally:
        await engine.dispose()


async def test_a_tool_that_refuses_every_lot_does_not_keep_the_most_urgent_from_another(
    stack: Stack,
) -> None:
    """DB-1 and DB-2 both run die attach; a die attach film still frozen on DB-1 refuses
    every track-in there. DB-1 comes first in each pass, and is offered the lot first: once
    refused, the lot goes to DB-2 in the same pass (it waited forever before)."""
    base = line_config(tools=["DB-1", "DB-2"])
    config = base.model_copy(
        update={
            "tools": [
                t.model_copy(update={"steps": ["DIE_ATTACH"]}) if t.id == "DB-2" else t
                for t in base.tools
            ]
        }
    )
    engine = create_engine(stack.url)
    try:
        materials = MaterialService(SqlUnitOfWorkFactory(engine), utc_now)
        await stack.equipment.register(
            config.name,
            [
                ToolRegistration(t.id, t.equipment_class.value, "sim", tuple(t.steps or ()))
                for t in config.tools
            ],
        )
        expires = utc_now() + timedelta(days=30)
        await materials.add("DAF-1", "die_attach_film", expires, "eng")
        await materials.load("DAF-1", "DB-1", "tech")  # in the freezer still
        await stack.lots.start(cmd.StartLot("D1", "stiffener-bga", "planner", priority=1))
        with capture_logs() as logs:
            async with simulated(config), running_controller(config, stack):

                async def attached() -> bool:
                    return "DIE_ATTACH" in (await stack.lots.get("D1")).path

                await wait_until(attached, timeout_s=60, what="D1's die attach done")
        page = await stack.lots.history_page(HistoryQuery(lot_id="D1", limit=1000))
        tools = {e.tool for e in page.entries if e.step == "DIE_ATTACH"}
        assert tools == {"DB-2"}, tools
        refused = _refusals(logs, "D1")
        assert refused and all("DAF-1 is still frozen" in r for r in refused), refused
    finally:
        await engine.dispose()
