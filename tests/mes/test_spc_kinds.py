"""SPC's carrier and subgroup charts at track-out, every store, with the line controller's
jobs (one carrier each): a carrier chart takes a point per carrier and holds the lot on the
carrier a lot's mean would hide, naming it; a subgroup chart takes the lot's mean against
limits for its number of carriers and its spread against the S chart's; its limits come from
lots of different sizes; a track-out by hand adds the lot's one value; the track-out's entry
keeps each carrier's values; a kind that does not exist is refused."""

from __future__ import annotations

import statistics

import pytest

from flows import FlowLibrary
from mes.domain import commands as cmd
from mes.domain.equipment import ToolRegistration
from mes.domain.errors import InvalidInput
from mes.domain.model import HoldSource, LotState
from mes.domain.spc import SPREAD, ChartKind, c4
from mes.equipment import EquipmentService
from mes.ports import UnitOfWorkFactory
from mes.service import LotService
from mes.spc import SpcService
from tests.mes.conftest import Clock
from tests.mes.spc_lots import BLT, at_die_attach, by_jobs

TOOLS = [ToolRegistration("DB-1", "die_bonder", "modbus 127.0.0.1:5020", ("DIE_ATTACH",))]


@pytest.fixture
def spc(store: UnitOfWorkFactory, library: FlowLibrary, clock: Clock) -> SpcService:
    return SpcService(store, library, clock)


@pytest.fixture
async def line(equipment: EquipmentService) -> None:
    await equipment.register("line-a", TOOLS)


async def _at_die_attach(service: LotService, lot_id: str, carriers: int) -> list[str]:
    return await at_die_attach(service, lot_id, carriers, "DB-1")


async def _by_jobs(service: LotService, lot_id: str, blts: list[float]) -> None:
    await by_jobs(service, lot_id, blts, "DB-1")


@pytest.mark.usefixtures("line")
async def test_a_carrier_chart_holds_the_lot_on_the_carrier_its_mean_hides(
    service: LotService, spc: SpcService
) -> None:
    chart = await spc.configure(
        "DIE_ATTACH", BLT, "DB-1", "eng1", center=25.0, sigma=1.0, kind="carrier"
    )
    assert chart.kind is ChartKind.CARRIER
    await _by_jobs(service, "C1", [25.2, 24.9, 25.1, 24.8])
    assert (await service.get("C1")).state is LotState.WAITING
    await _by_jobs(service, "C2", [25.0, 24.9, 28.6, 25.1])  # mean 25.9: within 28
    held = await service.get("C2")
    assert held.state is LotState.HOLD and held.hold is not None
    assert held.hold.source is HoldSource.SPC
    assert f"SPC {BLT} on DB-1 (carrier C2-03): rule 1 (one point beyond 3 sigma)" in (
        held.hold.reason
    )
    out = (await service.report("C2")).history[-1]
    assert out.data["measured_by_carrier"] == {
        "C2-01": {BLT: 25.0},
        "C2-02": {BLT: 24.9},
        "C2-03": {BLT: 28.6},
        "C2-04": {BLT: 25.1},
    }
    [violation] = out.data["spc"]
    assert violation["points"] == [{"lot": "C2", "x": 28.6, "carrier": "C2-03"}]
    [view] = await spc.show("DIE_ATTACH", BLT, tool_id="DB-1")
    assert [(p.lot_id, p.carrier_id, p.x) for p in view.points][3:] == [
        ("C1", "C1-04", 24.8),
        ("C2", "C2-01", 25.0),
        ("C2", "C2-02", 24.9),
        ("C2", "C2-03", 28.6),
        ("C2", "C2-04", 25.1),
    ]
    assert [(v.rule, v.points) for v in view.violations] == [(1, (6,))]


@pytest.mark.usefixtures("line")
async def test_a_subgroup_chart_judges_a_lots_mean_by_its_carriers_and_its_spread(
    service: LotService, spc: SpcService
) -> None:
    await spc.configure("DIE_ATTACH", BLT, "DB-1", "eng1", center=25.0, sigma=1.0, kind="subgroup")
    await _by_jobs(service, "G1", [25.4, 24.6, 25.2, 24.8])
    assert (await service.get("G1")).state is LotState.WAITING
    # mean 26.6: within 3 sigma of one value (28), beyond 3 sigma / sqrt(4) (26.5)
    await _by_jobs(service, "G2", [26.4, 26.8, 26.5, 26.7])
    held = await service.get("G2")
    assert held.state is LotState.HOLD and held.hold is not None
    assert held.hold.source is HoldSource.SPC and "rule 1" in held.hold.reason
    # mean 25.0 on the center; spread 3.46 beyond the S chart's 2.09 for 4 carriers
    await _by_jobs(service, "G3", [22.0, 28.0, 22.0, 28.0])
    spread = await service.get("G3")
    assert spread.state is LotState.HOLD and spread.hold is not None
    assert f"rule {SPREAD} (a lot's spread beyond the S chart's limits)" in spread.hold.reason
    [violation] = (await service.report("G3")).history[-1].data["spc"]
    [p] = violation["points"]
    assert (p["lot"], p["x"], p["n"]) == ("G3", 25.0, 4)
    assert p["s"] == pytest.approx(statistics.stdev([22.0, 28.0, 22.0, 28.0]))
    [view] = await spc.show("DIE_ATTACH", BLT)
    assert [(p.lot_id, p.n, p.rules) for p in view.points] == [
        ("G1", 4, ()),
        ("G2", 4, (1,)),
        ("G3", 4, (SPREAD,)),
    ]
    assert [(v.rule, v.points) for v in view.violations] == [(1, (1,)), (SPREAD, (2,))]
    assert view.cpk is not None and view.ppk is not None


@pytest.mark.usefixtures("line")
async def test_a_subgroup_charts_limits_come_from_lots_of_different_sizes(
    service: LotService, spc: SpcService
) -> None:
    await spc.configure("DIE_ATTACH", BLT, "DB-1", "eng1", baseline_n=5, kind="subgroup")
    lots = [[25.0, 25.6], [24.8, 25.3, 25.1], [25.2, 24.7, 25.0, 25.4], [25.1], [24.9, 25.5]]
    for n, blts in enumerate(lots):
        if len(blts) == 1:  # tracked out by hand: the lot's one value, n 1
            await _at_die_attach(service, f"B{n}", 1)
            await service.track_out(
                cmd.TrackOut(f"B{n}", "op1", measured={BLT: blts[0]}, dispatched=True)
            )
        else:
            await _by_jobs(service, f"B{n}", blts)
        assert (await service.get(f"B{n}")).state is LotState.WAITING
    [view] = await spc.show("DIE_ATTACH", BLT)
    values = [x for blts in lots for x in blts]
    assert view.chart.limits_source == "baseline"
    assert view.chart.center == pytest.approx(statistics.fmean(values))
    within = [statistics.stdev(b) / c4(len(b)) for b in lots if len(b) >= 2]
    assert view.chart.sigma == pytest.approx(statistics.fmean(within))
    assert [(p.n, p.s is None) for p in view.points] == [
        (2, False),
        (3, False),
        (4, False),
        (1, True),
        (2, False),
    ]


@pytest.mark.usefixtures("line")
async def test_a_track_out_not_job_by_job_adds_the_lots_one_value_to_a_carrier_chart(
    service: LotService, spc: SpcService
) -> None:
    await spc.configure("DIE_ATTACH", BLT, "DB-1", "eng1", center=25.0, sigma=1.0, kind="carrier")
    await _at_die_attach(service, "H1", 2)
    await service.track_out(cmd.TrackOut("H1", "op1", measured={BLT: 28.4}, dispatched=True))
    held = await service.get("H1")
    assert held.state is LotState.HOLD and held.hold is not None
    assert f"SPC {BLT} on DB-1: rule 1" in held.hold.reason  # no carrier: the lot's value
    [view] = await spc.show("DIE_ATTACH", BLT)
    assert [(p.lot_id, p.carrier_id, p.n, p.x) for p in view.points] == [("H1", None, 1, 28.4)]
    assert "measured_by_carrier" not in (await service.report("H1")).history[-1].data


@pytest.mark.usefixtures("line")
async def test_a_kind_of_chart_that_does_not_exist_is_refused(spc: SpcService) -> None:
    with pytest.raises(InvalidInput, match="'xbar' is not a kind of chart; expected one of lot"):
        await spc.configure("DIE_ATTACH", BLT, "DB-1", "eng1", kind="xbar")
    assert await spc.charts() == []
