"""The tool interlock in the line controller: whatever the database says, the controller
sends no recipe to a tool whose class is not the step's (the issue's second reproduction:
die attach on the dicer); it gives the lot back with the reason instead."""

from __future__ import annotations

import pytest

from flows import load_library
from mes.adapters.database import create_engine
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain import commands as cmd
from mes.domain import operations as ops
from mes.domain.equipment import DispatchMode
from mes.domain.errors import InterlockRefused, UnknownLot
from mes.domain.model import LotState, Operation
from mes.ports import Work, get_lot, save
from mes.service import utc_now
from tests.controller.conftest import (
    Stack,
    line_config,
    running_controller,
    simulated,
    wait_until,
)

OP = "op1"


def _tracked_in_unchecked(lot_id: str, step: str, tool: str) -> Work[None]:
    """A track-in written with no interlock (a database an older pkgline, or a hand, wrote)."""
    lot = yield from get_lot(lot_id)
    if lot is None:
        raise UnknownLot(lot_id)
    flow = load_library().get(lot.flow)
    yield from save(ops.track_in(lot, flow, cmd.TrackIn(lot_id, step, OP, tool=tool), utc_now()))


async def test_die_attach_recorded_on_the_dicer_is_given_back_and_no_recipe_is_sent(
    stack: Stack,
) -> None:
    config = line_config(tools=["DB-1", "DICE-1"], auto_manual_steps=False)
    async with simulated(config) as line, running_controller(config, stack):
        for tool in ("DB-1", "DICE-1"):
            await stack.equipment.set_dispatch(tool, DispatchMode.MANUAL, OP, "manual runs")
        await stack.lots.start(cmd.StartLot("R5", "fo-organic", OP, carriers=1))
        await stack.lots.track_in(cmd.TrackIn("R5", "SUBSTRATE_PREP", OP))
        await stack.lots.track_out(cmd.TrackOut("R5", OP))
        with pytest.raises(InterlockRefused) as refused:  # the operator's track-in
            await stack.lots.track_in(cmd.TrackIn("R5", "DIE_ATTACH", OP, tool="DICE-1"))
        assert refused.value.interlock == "tool_class"

        engine = create_engine(stack.url)
        try:
            await SqlUnitOfWorkFactory(engine).write(
                _tracked_in_unchecked("R5", "DIE_ATTACH", "DICE-1")
            )
        finally:
            await engine.dispose()

        async def given_back() -> bool:
            return (await stack.lots.get("R5")).state is LotState.WAITING

        await wait_until(given_back, timeout_s=30, what="R5 given back")
        history = (await stack.lots.report("R5")).history
        abort = history[-1]
        assert abort.operation is Operation.ABORT
        assert abort.reason is not None
        assert "tool DICE-1 is a dicer, step DIE_ATTACH runs on a die_bonder" in abort.reason
        assert line.tool("DICE-1").recipe is None, "no recipe reached the dicer"
