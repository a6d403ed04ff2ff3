"""Where a held lot goes once released: ``lot show``'s report and every lot's summary (``lot
list``, the API) say it beside the next steps, which stay those the lot may take now. The
rule is the one that gives a waiting lot its next steps (its position in the flow, narrowed by
a pending rework), so a release leads exactly where the report said."""

from __future__ import annotations

import pytest

from flows import FlowLibrary
from mes.adapters.memory import MemoryUnitOfWorkFactory
from mes.domain import commands as cmd
from mes.domain.equipment import ToolRegistration
from mes.domain.model import LotState
from mes.domain.report import next_after_release, report_dict, summary_dict
from mes.equipment import EquipmentService
from mes.service import LotService
from tests.mes.conftest import Clock
from tests.mes.test_service import STIFFENER_TO_MOLD, USER, _run, _start

CTRL = "controller"


@pytest.fixture
async def lots(library: FlowLibrary, clock: Clock) -> LotService:
    """A lot service in memory, with a molder its line controller registered (and so
    qualified for MOLD), for lots held with carriers done at a step."""
    store = MemoryUnitOfWorkFactory()
    molder = ToolRegistration("MOLD-1", "molder", "modbus 127.0.0.1:5021", ("MOLD",))
    await EquipmentService(store, clock).register("line-a", [molder])
    return LotService(store, library, clock)


async def _said(lots: LotService, lot_id: str) -> tuple[list[str], list[str]]:
    """(next steps, next steps once released) as ``lot show --json`` says them, checked to be
    what the lot's summary (``lot list``) and :func:`next_after_release` say."""
    shown = report_dict(await lots.report(lot_id))
    lot = await lots.get(lot_id)
    summary = summary_dict(lot, lots.flow_of(lot))
    assert (summary["next_steps"], summary["next_after_release"]) == (
        shown["next_steps"],
        shown["next_after_release"],
    )
    assert list(next_after_release(lot, lots.flow_of(lot))) == shown["next_after_release"]
    return shown["next_steps"], shown["next_after_release"]


async def _release(lots: LotService, lot_id: str) -> list[str]:
    """Release the lot; the steps it may take then."""
    await lots.release(cmd.ReleaseLot(lot_id, "eng1", "checked"))
    return (await _said(lots, lot_id))[0]


async def test_a_held_lot_says_where_it_goes_once_released_and_may_go_nowhere_now(
    lots: LotService,
) -> None:
    await _start(lots, "L1", "stiffener-bga")
    await _run(lots, "L1", STIFFENER_TO_MOLD[:3])
    assert await _said(lots, "L1") == (["STIFFENER_ATTACH"], [])
    await lots.hold(cmd.HoldLot("L1", USER, "customer asks"))
    assert await _said(lots, "L1") == ([], ["STIFFENER_ATTACH"])
    assert await _release(lots, "L1") == ["STIFFENER_ATTACH"]


async def test_every_step_the_flow_offers_after_the_hold_is_named_sorted(
    lots: LotService,
) -> None:
    await _start(lots, "L1", "stiffener-bga")
    await _run(lots, "L1", STIFFENER_TO_MOLD)
    await lots.hold(cmd.HoldLot("L1", USER, "x-ray the wires"))
    assert await _said(lots, "L1") == ([], ["BALL_MOUNT", "DICE"])
    assert await _release(lots, "L1") == ["BALL_MOUNT", "DICE"]


async def test_a_lot_held_mid_step_with_carriers_done_there_goes_back_to_that_step(
    lots: LotService,
) -> None:
    await _start(lots, "L1", "stiffener-bga")
    await _run(lots, "L1", STIFFENER_TO_MOLD[:4])
    await lots.track_in(cmd.TrackIn("L1", "MOLD", CTRL, tool="MOLD-1", dispatched=True))
    first = (await lots.get("L1")).carriers[0]
    await lots.start_job(cmd.StartJob("L1", "J1", "MOLD-1", first, CTRL))
    await lots.record_job(cmd.RecordJob("J1", CTRL, {}))
    assert await _said(lots, "L1") == ([], []), "running: neither"
    await lots.hold(cmd.HoldLot("L1", USER, "mold flash"))
    held = await lots.report("L1")
    assert held.history[-1].data["carriers_done"] == [first]
    assert await _said(lots, "L1") == ([], ["MOLD"])
    assert await _release(lots, "L1") == ["MOLD"]


async def test_a_lot_held_again_before_its_rework_goes_to_the_reworked_step_only(
    lots: LotService,
) -> None:
    """After a rework the lot must run the reworked step, though its position also offers
    FILL: held again, it says so, and the release keeps it."""
    await _start(lots, "L1", "fo-organic")
    await _run(lots, "L1", ["SUBSTRATE_PREP", "DIE_ATTACH", "DIELECTRIC_COAT", "VIA_PATTERN"])
    await lots.hold(cmd.HoldLot("L1", "eng1", "via opening undersized"))
    assert await _said(lots, "L1") == (
        [],
        ["ELECTROLESS_PLATE", "ELECTROPLATE", "SPUTTER", "VIA_FILL"],
    )
    await lots.rework(cmd.ReworkLot("L1", "DIELECTRIC_COAT", "eng1", "strip and re-coat"))
    assert await _said(lots, "L1") == (["DIELECTRIC_COAT"], [])
    await lots.hold(cmd.HoldLot("L1", USER, "coater down"))
    assert await _said(lots, "L1") == ([], ["DIELECTRIC_COAT"])
    assert await _release(lots, "L1") == ["DIELECTRIC_COAT"]


async def test_a_held_lot_split_leaves_both_held_each_saying_where_it_goes(
    lots: LotService,
) -> None:
    await _start(lots, "L1", "stiffener-bga", carriers=3)
    await _run(lots, "L1", STIFFENER_TO_MOLD[:2])
    await lots.hold(cmd.HoldLot("L1", USER, "voids on some strips"))
    await lots.split(cmd.SplitLot("L1", "L1A", ("3",), USER))
    assert (await lots.get("L1A")).state is LotState.HOLD
    for lot_id in ("L1", "L1A"):
        assert await _said(lots, lot_id) == ([], ["WIRE_BOND"])
    assert await _release(lots, "L1A") == ["WIRE_BOND"]
    assert await _said(lots, "L1") == ([], ["WIRE_BOND"]), "the parent is still held"
    assert await _release(lots, "L1") == ["WIRE_BOND"]
    await lots.merge(cmd.MergeLots("L1A", "L1", USER))
    assert await _said(lots, "L1A") == ([], []), "merged: it goes nowhere"


async def test_a_lot_that_ended_goes_nowhere_once_released_or_not(lots: LotService) -> None:
    await _start(lots, "L1", "stiffener-bga")
    await lots.scrap(cmd.ScrapLot("L1", "eng1", "dropped"))
    assert await _said(lots, "L1") == ([], [])
