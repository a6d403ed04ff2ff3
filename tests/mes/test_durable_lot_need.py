"""A track-in is refused when its lot would take a durable mounted on the tool past its life
at the step, not only when the durable is spent already: each carrier still to run there
counts as a whole job (the most it can add), with the tool's jobs not yet recorded; to its
life exactly is allowed; a lot resuming a step a hold stopped counts only the carriers it has
left there. A mold chase 2 shots into a life of 3 took a 2-carrier lot and ended at 4 of 3.
Pure rules first, then the service on every store."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from flows import FlowLibrary
from mes.domain import commands as cmd
from mes.domain import durables as rules
from mes.domain import operations as ops
from mes.domain.errors import InterlockRefused
from mes.domain.model import JobRecord, JobStatus, LotState
from mes.durables import DurableService
from mes.equipment import EquipmentService
from mes.ports import UnitOfWorkFactory
from mes.service import LotService
from tests.mes.conftest import Clock
from tests.mes.test_durables import CTRL, TOOLS, UP, _at_wire_bond

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def _chase(count: int, life: int = 3) -> rules.Durable:
    return replace(rules.add("CH-1", "mold_chase", life, 0.9, "eng", NOW)[0], count=count)


TWO = rules.LotNeed(carriers=2, rows=4, cols=8)


def test_a_lot_that_takes_a_durable_exactly_to_its_life_is_tracked_in() -> None:
    [warned] = rules.check_durables("L2", "MOLD", "MOLD-1", [_chase(1)], need=TWO)
    assert "lot L2 may take it to its warning" in warned  # accepted, warned
    with pytest.raises(InterlockRefused):  # one carrier more: one shot past
        rules.check_durables("L2", "MOLD", "MOLD-1", [_chase(1)], need=replace(TWO, carriers=3))


def test_a_lot_that_may_take_a_durable_to_its_warning_is_tracked_in_with_the_warning() -> None:
    """The replacement falls due during the lot, not after it: the track-in is accepted and
    says so (recorded with it), where only a durable past its warning already had warned. A
    capillary of 1,000 touchdowns warns from 900; a 2-carrier lot of 4 x 8 needs up to 128."""
    cap = rules.add("CAP-1", "capillary", 1000, 0.9, "eng", NOW)[0]
    assert (
        rules.check_durables("L1", "WIRE_BOND", "WB-1", [replace(cap, count=771)], need=TWO) == []
    )
    [warned] = rules.check_durables("L1", "WIRE_BOND", "WB-1", [replace(cap, count=772)], need=TWO)
    assert warned == (
        "capillary CAP-1 at 772 of 1,000 touchdowns (77 %): lot L1 may take it to its warning "
        "at 90% of life (900), needing up to 128 touchdowns at WIRE_BOND"
    )
    one = replace(TWO, carriers=1)
    [past] = rules.check_durables("L1", "WIRE_BOND", "WB-1", [replace(cap, count=900)], need=one)
    assert past.endswith("(90 %): past its warning at 90% of life"), "in the words it had"
    # without the lot's need (an unknown amount), only one past its warning warns
    assert rules.check_durables("L1", "WIRE_BOND", "WB-1", [replace(cap, count=899)]) == []


def test_a_lot_one_past_a_durables_life_is_refused_saying_what_it_needs_and_what_is_left() -> None:
    with pytest.raises(InterlockRefused) as refused:
        rules.check_durables("L2", "MOLD", "MOLD-1", [_chase(2)], need=TWO)
    assert refused.value.interlock == "durable_life" and refused.value.lot_id == "L2"
    assert refused.value.message == (
        "track-in of lot L2 at MOLD on MOLD-1 refused: mold_chase CH-1 at 2 of 3 shots (67 %); "
        "lot L2 needs up to 2 shots at MOLD (2 carriers), 1 left; expected mold_chase CH-1 with "
        "2 shots left: unmount it and mount a new one or renew it after cleaning, or split lot "
        "L2 to at most 1 carrier"
    )
    assert refused.value.expected in refused.value.message
    # spent already: the words it always had
    with pytest.raises(InterlockRefused, match=r"at 3 of 3 shots \(100 %\), at or past its life"):
        rules.check_durables("L2", "MOLD", "MOLD-1", [_chase(3)], need=TWO)


def test_the_jobs_not_yet_recorded_count_with_the_lot() -> None:
    """A capillary (64 touchdowns a 4 x 8 carrier) at 100 of 292, one job in flight (64):
    a 2-carrier lot (128) takes it to 292 exactly; at 101, one past, refused; no carrier of
    the lot fits in 63, so splitting it is not offered."""
    cap = replace(rules.add("CAP-1", "capillary", 292, 0.9, "eng", NOW)[0], count=100)
    flight = [rules.PendingJob("J9", 4, 8)]
    [warned] = rules.check_durables("L2", "WIRE_BOND", "WB-1", [cap], flight, TWO)
    assert "at 164 of 292 touchdowns (56 %): lot L2 may take it to its warning" in warned
    with pytest.raises(InterlockRefused) as refused:
        rules.check_durables("L2", "WIRE_BOND", "WB-1", [replace(cap, count=101)], flight, TWO)
    assert (
        "capillary CAP-1 at 165 of 292 touchdowns (57 %) (with 1 job of WB-1 not yet recorded: "
        "J9); lot L2 needs up to 128 touchdowns at WIRE_BOND (2 carriers), 127 left"
    ) in refused.value.message
    assert "split" in refused.value.expected
    assert "split" not in rules.replacement_expected(replace(cap, count=230), "L2", TWO)


def test_a_lot_resuming_a_step_counts_only_the_carriers_it_has_left_there(
    library: FlowLibrary,
) -> None:
    flow = library.flows["stiffener-bga"]
    lot = ops.start_lot(cmd.StartLot("L1", "stiffener-bga", "op1", carriers=3), flow, NOW).lot
    first, second, third = lot.carriers

    def job(carrier: str, status: JobStatus, step: str = "MOLD") -> JobRecord:
        return JobRecord(f"J-{carrier}", "L1", "MOLD-1", step, 0, carrier, status, NOW)

    jobs = [
        job(first, JobStatus.RECORDED),
        job(second, JobStatus.ABANDONED),  # runs again
        job(third, JobStatus.RECORDED, step="UNDERFILL"),  # another step's
    ]
    need = rules.lot_need(lot, "MOLD", jobs)
    assert (need.carriers, need.done) == (2, 1)
    assert rules.lot_need(lot, "MOLD") == rules.LotNeed(3, lot.site_rows, lot.site_cols)
    [warned] = rules.check_durables("L1", "MOLD", "MOLD-1", [_chase(1)], need=need)
    assert "needing up to 2 shots at MOLD" in warned  # accepted: 2 carriers, not 3
    with pytest.raises(InterlockRefused, match=r"needs up to 2 shots at MOLD \(2 carriers, 1 "):
        rules.check_durables("L1", "MOLD", "MOLD-1", [_chase(2)], need=need)


# -- the service, on every store ------------------------------------------------------------------


@pytest.fixture
def durables(store: UnitOfWorkFactory, clock: Clock) -> DurableService:
    return DurableService(store, clock)


@pytest.fixture
async def line(equipment: EquipmentService) -> None:
    await equipment.register("line-a", TOOLS)
    for tool in TOOLS:
        await equipment.report(tool.id, UP)


def _wire_bond(lot_id: str) -> cmd.TrackIn:
    return cmd.TrackIn(lot_id, "WIRE_BOND", CTRL, tool="WB-1", dispatched=True)


@pytest.mark.usefixtures("line")
async def test_a_track_in_whose_lot_would_run_a_capillary_past_its_life_is_refused(
    service: LotService, durables: DurableService
) -> None:
    """CAP-1 (life 250) at 126 after lot L1: L2's two carriers may need 128, 2 more than
    it has left; nothing changes; split to one carrier (64), L2 is tracked in."""
    await durables.add("CAP-1", "capillary", 250, "eng")
    await durables.mount("CAP-1", "WB-1", "tech")
    await _at_wire_bond(service, "L1")
    await service.track_in(_wire_bond("L1"))
    for n, carrier in enumerate((await service.get("L1")).carriers):
        await service.start_job(cmd.StartJob("L1", f"J{n}", "WB-1", carrier, CTRL))
        await service.record_job(cmd.RecordJob(f"J{n}", CTRL))
    assert (await durables.show("CAP-1")).durable.count == 126
    await _at_wire_bond(service, "L2")
    before = await service.get("L2")
    with pytest.raises(InterlockRefused) as refused:
        await service.track_in(_wire_bond("L2"))
    assert refused.value.interlock == "durable_life"
    assert refused.value.message == (
        "track-in of lot L2 at WIRE_BOND on WB-1 refused: capillary CAP-1 at 126 of 250 "
        "touchdowns (50 %); lot L2 needs up to 128 touchdowns at WIRE_BOND (2 carriers), 124 "
        "left; expected capillary CAP-1 with 128 touchdowns left: unmount it and mount a new "
        "one, or split lot L2 to at most 1 carrier"
    )
    assert await service.get("L2") == before
    [batch] = await service.track_in_all([_wire_bond("L2")])
    assert isinstance(batch, InterlockRefused) and batch.interlock == "durable_life"

    await service.split(cmd.SplitLot("L2", "L2A", (before.carriers[1],), "eng"))
    assert (await service.track_in(_wire_bond("L2"))).lot.state is LotState.RUNNING


@pytest.mark.usefixtures("line")
async def test_a_lot_resuming_a_step_a_hold_stopped_needs_only_its_carriers_left(
    service: LotService, durables: DurableService
) -> None:
    """CAP-1 (life 128) takes L1's two carriers (64 each, none rejected); the first recorded,
    L1 is held and released: it resumes WIRE_BOND with one carrier left, 64 to 128 exactly."""
    await durables.add("CAP-1", "capillary", 128, "eng")
    await durables.mount("CAP-1", "WB-1", "tech")
    await _at_wire_bond(service, "L1", reject=False)
    await service.track_in(_wire_bond("L1"))
    first, _ = (await service.get("L1")).carriers
    await service.start_job(cmd.StartJob("L1", "J0", "WB-1", first, CTRL))
    await service.record_job(cmd.RecordJob("J0", CTRL))
    await service.hold(cmd.HoldLot("L1", CTRL, "check the bonds"))
    await service.release(cmd.ReleaseLot("L1", "eng"))
    assert (await durables.show("CAP-1")).durable.count == 64
    resumed = await service.track_in(_wire_bond("L1"))
    assert resumed.lot.state is LotState.RUNNING
