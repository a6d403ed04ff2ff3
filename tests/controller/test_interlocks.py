"""The interlocks in the line controller: whatever the database says, the controller sends
no recipe to a tool whose class is not the step's (the issue's second reproduction: die
attach on the dicer), it gives the lot back with the reason instead; and it holds a waiting
lot past a queue-time limit as soon as it looks, not only at the lot's next track-in."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from flows import load_library
from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain import commands as cmd
from mes.domain import steps
from mes.domain.equipment import DispatchMode
from mes.domain.errors import InterlockRefused, UnknownLot
from mes.domain.model import HoldSource, LotState, Operation
from mes.equipment import EquipmentService
from mes.ports import Work, get_lot, save
from mes.service import LotService, utc_now
from pkgline.bootstrap import flow_library
from tests.controller.conftest import (
    Stack,
    line_config,
    running_controller,
    simulated,
    wait_until,
)

OP = "op1"


def _tracked_in_unchecked(lot_id: str, step: str, tool: str) -> Work[None]:
    """A track-in written with no interlock (a database an older pkgline, or a hand, wrote),
    as a controller's (one tracked in by hand is left to the operator: test_by_hand.py)."""
    lot = yield from get_lot(lot_id)
    if lot is None:
        raise UnknownLot(lot_id)
    flow = load_library().get(lot.flow)
    dispatched = cmd.TrackIn(lot_id, step, OP, tool=tool, dispatched=True)
    yield from save(steps.track_in(lot, flow, dispatched, utc_now()))


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


class _Later:
    """The lot tracker's clock, moved on at will (the controller's own time is real)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utc_now() + self.offset


async def test_a_waiting_lot_past_its_queue_time_is_held_by_the_controller(
    database: str,
) -> None:
    engine = create_engine(database, pool_size=10)
    later = _Later()
    try:
        await upgrade(engine)
        factory = SqlUnitOfWorkFactory(engine)
        stack = Stack(
            LotService(factory, flow_library(), later), EquipmentService(factory), database
        )
        lots = stack.lots
        await lots.start(cmd.StartLot("Q1", "fo-organic", OP, carriers=1))
        while True:  # walked by hand to its first DIELECTRIC_COAT
            step = lots.next_in_order(await lots.get("Q1"))[0]
            await lots.track_in(cmd.TrackIn("Q1", step, OP))
            await lots.track_out(cmd.TrackOut("Q1", OP))
            if step == "DIELECTRIC_COAT":
                break
        later.offset = timedelta(minutes=241)
        config = line_config(tools=["DB-1"], auto_manual_steps=False)
        async with simulated(config), running_controller(config, stack):

            async def held() -> bool:
                return (await lots.get("Q1")).state is LotState.HOLD

            await wait_until(held, timeout_s=30, what="Q1 held for its queue time")
        lot = await lots.get("Q1")
        assert lot.hold is not None and lot.hold.source is HoldSource.QUEUE_TIME
        assert "queue time DIELECTRIC_COAT -> VIA_PATTERN: waited 241 min" in lot.hold.reason
    finally:
        await engine.dispose()
