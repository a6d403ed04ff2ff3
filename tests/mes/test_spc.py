"""SPC at track-out, every store: each lot tracked out on a charted (step, value, tool) adds
a point; one that breaks a rule holds the lot (source SPC, the rule, the points) and, where
the chart says so, disqualifies the tool for the step until an engineer clears it, so the
next track-in there is refused; limits come from a baseline window or from engineering; the
controller's own track-out (its last job recorded) is checked the same way; ``show`` gives
points, limits, violations and Cpk/Ppk."""

from __future__ import annotations

import pytest

from flows import FlowLibrary
from mes.domain import commands as cmd
from mes.domain.authority import AuthMethod, NotAuthorized, Principal, Role
from mes.domain.equipment import ToolRegistration
from mes.domain.errors import InterlockRefused, InvalidInput, UnknownTool
from mes.domain.model import HoldSource, LotState
from mes.equipment import EquipmentService
from mes.ports import UnitOfWorkFactory
from mes.service import LotService
from mes.spc import SpcService
from tests.mes.conftest import Clock

CTRL = "controller"
BLT = "bond_line_thickness_um"
TOOLS = [ToolRegistration("DB-1", "die_bonder", "modbus 127.0.0.1:5020", ("DIE_ATTACH",))]


@pytest.fixture
def spc(store: UnitOfWorkFactory, library: FlowLibrary, clock: Clock) -> SpcService:
    return SpcService(store, library, clock)


@pytest.fixture
async def line(equipment: EquipmentService) -> None:
    await equipment.register("line-a", TOOLS)


async def _die_attach(service: LotService, lot_id: str, blt: float, **more: float) -> None:
    """A lot through DIE_ATTACH on DB-1 (one carrier, tracked out by hand), measuring
    ``blt``."""
    await service.start(cmd.StartLot(lot_id, "fo-organic", "op1", carriers=1))
    await service.track_in(cmd.TrackIn(lot_id, "SUBSTRATE_PREP", "op1"))
    await service.track_out(cmd.TrackOut(lot_id, "op1"))
    await service.track_in(cmd.TrackIn(lot_id, "DIE_ATTACH", CTRL, tool="DB-1", dispatched=True))
    await service.track_out(
        cmd.TrackOut(lot_id, "op1", measured={BLT: blt, **more}, dispatched=True)
    )


@pytest.mark.usefixtures("line")
async def test_a_point_beyond_3_sigma_holds_the_lot_and_inhibits_the_tool_until_cleared(
    service: LotService, spc: SpcService
) -> None:
    await spc.configure("DIE_ATTACH", BLT, "DB-1", "eng1", center=25.0, sigma=1.0, inhibit=True)
    for n, blt in enumerate([25.3, 24.6, 25.1]):
        await _die_attach(service, f"L{n}", blt)
        assert (await service.get(f"L{n}")).state is LotState.WAITING
    await _die_attach(service, "L9", 28.5)  # within spec (10-40), beyond 3 sigma (28)
    held = await service.get("L9")
    assert held.state is LotState.HOLD and held.hold is not None
    assert held.hold.source is HoldSource.SPC
    assert f"SPC {BLT} on DB-1: rule 1 (one point beyond 3 sigma)" in held.hold.reason
    entry = (await service.report("L9")).history[-1]
    [violation] = entry.data["spc"]
    assert violation["rule"] == 1 and violation["points"] == [{"lot": "L9", "x": 28.5}]

    await service.start(cmd.StartLot("N1", "fo-organic", "op1", carriers=1))
    await service.track_in(cmd.TrackIn("N1", "SUBSTRATE_PREP", "op1"))
    await service.track_out(cmd.TrackOut("N1", "op1"))
    with pytest.raises(InterlockRefused) as refused:
        await service.track_in(cmd.TrackIn("N1", "DIE_ATTACH", CTRL, tool="DB-1", dispatched=True))
    assert refused.value.interlock == "tool_qualification"
    assert "disqualified for DIE_ATTACH by SPC" in refused.value.message
    # the way back is spc clear (found by the probe: it said "pkgline tool qualify")
    assert refused.value.expected == (
        "a tool qualified for DIE_ATTACH (none is: an engineer clears DB-1 once the violation "
        "is dealt with: pkgline spc clear DIE_ATTACH --tool DB-1 --reason ...)"
    )
    with pytest.raises(InvalidInput, match="NOPE is not a step code"):  # not "not inhibited"
        await spc.clear("NOPE", "DB-1", "eng1", "bond head re-levelled")
    await spc.clear("DIE_ATTACH", "DB-1", "eng1", "bond head re-levelled")
    await service.track_in(cmd.TrackIn("N1", "DIE_ATTACH", CTRL, tool="DB-1", dispatched=True))

    [view] = await spc.show("DIE_ATTACH", BLT, tool_id="DB-1")
    assert [p.x for p in view.points] == [25.3, 24.6, 25.1, 28.5]
    assert [(v.rule, v.points) for v in view.violations] == [(1, (3,))]
    assert (view.spec_lower, view.spec_upper) == (10.0, 40.0)
    assert view.cpk is not None and view.ppk is not None

    # the station's page reads only the newest points of a chart that has more: the count of
    # all, the violations their track-outs recorded numbered over the whole chart
    [newest] = await spc.show("DIE_ATTACH", BLT, tool_id="DB-1", last=2)
    assert [p.x for p in newest.points] == [25.1, 28.5] and newest.total == 4
    assert [(v.rule, v.points) for v in newest.violations] == [(1, (3,))]
    assert newest.cpk is not None and newest.cpk != view.cpk  # of the two points read
    [whole] = await spc.show("DIE_ATTACH", BLT, tool_id="DB-1", last=4)
    assert whole == view  # no more than asked for: read as without it
    # the station's list: each chart's points counted, the newest that broke a rule
    [summary] = await spc.summaries(step="DIE_ATTACH", looked=3)
    assert summary.chart == view.chart and summary.points == 4
    assert summary.last_violation is not None and summary.last_violation.lot_id == "L9"
    [unseen] = await spc.summaries(tool_id="DB-1", looked=0)
    assert (unseen.points, unseen.last_violation) == (0, None)


@pytest.mark.usefixtures("line")
async def test_a_baseline_that_does_not_vary_gives_no_limits_and_refuses_no_track_out(
    service: LotService, spc: SpcService
) -> None:
    """A value reported the same at every lot (a set point): the track-outs go on, the chart
    waits for the first five points in a row that vary, and its violations start after them."""
    await spc.configure("DIE_ATTACH", BLT, "DB-1", "eng1", baseline_n=5)
    for n in range(7):
        await _die_attach(service, f"F{n}", 25.0)
        assert (await service.get(f"F{n}")).state is LotState.WAITING
    [flat] = await spc.show("DIE_ATTACH", BLT)
    assert flat.chart.center is None and len(flat.points) == 7
    await _die_attach(service, "V0", 26.0)  # the latest five vary: limits from them
    [view] = await spc.show("DIE_ATTACH", BLT)
    assert view.chart.limits_source == "baseline"
    assert view.chart.center == pytest.approx((4 * 25.0 + 26) / 5)
    assert view.chart.sigma == pytest.approx(0.25 / 1.128)
    await _die_attach(service, "X0", 60.0)
    [view] = await spc.show("DIE_ATTACH", BLT)
    assert [(v.rule, v.points) for v in view.violations] == [(1, (8,)), (2, (7, 8))]


@pytest.mark.usefixtures("line")
async def test_a_chart_set_again_takes_its_baseline_from_the_points_after_it(
    service: LotService, spc: SpcService
) -> None:
    """Found by the probe: a chart set again with --baseline 5 (after a bond head was
    changed, say) took its limits at the second track-out after it, from the three points of
    the chart it replaced, an out-of-control one among them; and show checked the new limits
    over the old points."""
    await spc.configure("DIE_ATTACH", BLT, "DB-1", "eng1", center=25.0, sigma=1.0)
    for n, blt in enumerate([25.1, 29.5, 25.4]):
        await _die_attach(service, f"O{n}", blt)
    assert (await service.get("O1")).state is LotState.HOLD  # rule 1 on the old chart
    await spc.configure("DIE_ATTACH", BLT, "DB-1", "eng1", baseline_n=5)
    new = [30.0, 31.0, 30.5, 29.5, 30.2]
    for n, blt in enumerate(new[:4]):
        await _die_attach(service, f"N{n}", blt)
        [view] = await spc.show("DIE_ATTACH", BLT)
        assert view.chart.center is None, f"limits after {n + 1} new points"
    await _die_attach(service, "N4", new[4])
    [view] = await spc.show("DIE_ATTACH", BLT)
    assert view.chart.limits_source == "baseline"
    assert view.chart.center == pytest.approx(sum(new) / 5)
    assert [p.lot_id for p in view.points][:3] == ["O0", "O1", "O2"]  # still shown
    assert view.violations == []  # O1 broke the old chart's rule, not this one's
    await _die_attach(service, "N5", 36.0)
    [view] = await spc.show("DIE_ATTACH", BLT)
    assert [(v.rule, v.points) for v in view.violations] == [(1, (8,))]
    assert (await service.get("N5")).state is LotState.HOLD


@pytest.mark.usefixtures("line")
async def test_limits_come_from_the_baseline_and_a_run_on_one_side_is_caught_with_nelson(
    service: LotService, spc: SpcService
) -> None:
    await spc.configure("DIE_ATTACH", BLT, "DB-1", "eng1", baseline_n=5, nelson=True)
    baseline = [24.0, 26.0, 25.0, 24.5, 25.5]
    for n, blt in enumerate(baseline):
        await _die_attach(service, f"B{n}", blt)
    [view] = await spc.show("DIE_ATTACH", BLT)
    assert view.chart.limits_source == "baseline"
    assert view.chart.center == pytest.approx(25.0)
    assert view.chart.sigma == pytest.approx(((2 + 1 + 0.5 + 1) / 4) / 1.128)
    # a slow upward trend, inside 1 sigma until its sixth point: Nelson's trend rule (5)
    for n, blt in enumerate([24.1, 24.3, 24.5, 24.7, 24.9, 25.1]):
        await _die_attach(service, f"T{n}", blt)
    last = await service.get("T5")
    assert last.state is LotState.HOLD and last.hold is not None
    assert "rule 5 (six points in a row steadily increasing or decreasing)" in last.hold.reason
    assert (await service.get("T4")).state is LotState.WAITING


@pytest.mark.usefixtures("line")
async def test_the_controllers_track_out_by_its_last_job_is_checked_too(
    service: LotService, spc: SpcService
) -> None:
    await spc.configure("DIE_ATTACH", BLT, "DB-1", "eng1", center=25.0, sigma=1.0)
    await service.start(cmd.StartLot("J1", "fo-organic", "op1", carriers=2))
    await service.track_in(cmd.TrackIn("J1", "SUBSTRATE_PREP", "op1"))
    await service.track_out(cmd.TrackOut("J1", "op1"))
    await service.track_in(cmd.TrackIn("J1", "DIE_ATTACH", CTRL, tool="DB-1", dispatched=True))
    for n, (carrier, blt) in enumerate(
        zip((await service.get("J1")).carriers, [30.0, 31.0], strict=True)
    ):
        await service.start_job(cmd.StartJob("J1", f"J1-{n}", "DB-1", carrier, CTRL))
        await service.record_job(cmd.RecordJob(f"J1-{n}", CTRL, {BLT: blt}))
    lot = await service.get("J1")
    assert lot.state is LotState.HOLD and lot.hold is not None
    assert lot.hold.source is HoldSource.SPC  # the mean, 30.5, beyond 28


@pytest.mark.usefixtures("line")
async def test_a_step_tracked_out_by_a_job_recorded_after_a_hold_gets_its_point(
    service: LotService, spc: SpcService
) -> None:
    await spc.configure("DIE_ATTACH", BLT, "DB-1", "eng1", center=25.0, sigma=1.0)
    await service.start(cmd.StartLot("J1", "fo-organic", "op1", carriers=1))
    await service.track_in(cmd.TrackIn("J1", "SUBSTRATE_PREP", "op1"))
    await service.track_out(cmd.TrackOut("J1", "op1"))
    await service.track_in(cmd.TrackIn("J1", "DIE_ATTACH", CTRL, tool="DB-1", dispatched=True))
    [carrier] = (await service.get("J1")).carriers
    await service.start_job(cmd.StartJob("J1", "J1-0", "DB-1", carrier, CTRL))
    await service.hold(cmd.HoldLot("J1", "qe1", "audit"))
    late = await service.record_job(cmd.RecordJob("J1-0", CTRL, {BLT: 30.0}))
    [view] = await spc.show("DIE_ATTACH", BLT)
    assert [(p.lot_id, p.x) for p in view.points] == [("J1", 30.0)]
    assert [v.rule for v in view.violations] == [1]
    assert late.entries[-1].data["spc"][0]["rule"] == 1  # beside the hold the lot had
    lot = await service.get("J1")
    assert lot.hold is not None and lot.hold.reason == "audit"


async def test_charts_are_engineerings_and_name_a_numeric_measured_value(
    store: UnitOfWorkFactory, library: FlowLibrary, clock: Clock, equipment: EquipmentService
) -> None:
    await equipment.register("line-a", TOOLS)
    operator = Principal("op1", frozenset({Role.OPERATOR}), AuthMethod.PASSWORD)
    service = SpcService(store, library, clock, principal=operator)
    with pytest.raises(NotAuthorized, match="engineer"):
        await service.configure("DIE_ATTACH", BLT, "DB-1", "op1")
    engineer = service.acting_as(Principal("e1", frozenset({Role.ENGINEER}), AuthMethod.PASSWORD))
    with pytest.raises(InvalidInput, match="expected one of bond_force_n, bond_line_thickness"):
        await engineer.configure("DIE_ATTACH", "colour", "DB-1", "e1")
    with pytest.raises(InvalidInput, match="center and sigma together"):
        await engineer.configure("DIE_ATTACH", BLT, "DB-1", "e1", center=1.0)
    assert await engineer.show("DIE_ATTACH", BLT) == []


async def test_the_charts_set_are_listed_by_step_value_and_tool_and_filtered(
    equipment: EquipmentService, spc: SpcService
) -> None:
    await equipment.register(
        "line-a",
        [
            *TOOLS,
            ToolRegistration("DB-2", "die_bonder", "modbus 127.0.0.1:5021", ("DIE_ATTACH",)),
            ToolRegistration("MOLD-1", "molder", "modbus 127.0.0.1:5022", ("MOLD",)),
        ],
    )
    assert await spc.charts() == []
    await spc.configure("MOLD", "mold_temperature_c", "MOLD-1", "eng1", center=175.0, sigma=1.5)
    await spc.configure("DIE_ATTACH", BLT, "DB-2", "eng1", baseline_n=10, nelson=True)
    await spc.configure("DIE_ATTACH", BLT, "DB-1", "eng1", center=25.0, sigma=1.0, inhibit=True)
    await spc.configure("DIE_ATTACH", "xy_offset_um", "DB-1", "eng1", center=5.0, sigma=1.0)
    listed = [(c.step, c.value, c.tool_id) for c in await spc.charts()]
    assert listed == [
        ("DIE_ATTACH", BLT, "DB-1"),
        ("DIE_ATTACH", BLT, "DB-2"),
        ("DIE_ATTACH", "xy_offset_um", "DB-1"),
        ("MOLD", "mold_temperature_c", "MOLD-1"),
    ]
    on_db1 = await spc.charts(tool_id="DB-1")
    assert [(c.value, c.inhibit, c.ucl) for c in on_db1] == [
        (BLT, True, 28.0),
        ("xy_offset_um", False, 8.0),
    ]
    assert [c.tool_id for c in await spc.charts(step="MOLD")] == ["MOLD-1"]
    assert await spc.charts(step="DIE_ATTACH", tool_id="MOLD-1") == []
    (collecting,) = await spc.charts(step="DIE_ATTACH", tool_id="DB-2")
    assert collecting.center is None and collecting.baseline_n == 10 and collecting.nelson
    with pytest.raises(InvalidInput) as step:
        await spc.charts(step="NO_SUCH_STEP")
    assert "there is no step NO_SUCH_STEP" in step.value.message
    assert "DIE_ATTACH" in step.value.allowed
    with pytest.raises(UnknownTool):
        await spc.charts(tool_id="NOPE-1")
