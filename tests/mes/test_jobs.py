"""A step on a tool runs as one job per carrier. Each job is recorded before the tool forgets
its results, exactly once; the last carrier's record tracks the lot out in the same
transaction. A hold abandons the open job but keeps the carriers already done; a job it
abandoned that the tool completed all the same is recorded, the lot held as it was."""

from __future__ import annotations

import pytest

from mes.domain import commands as cmd
from mes.domain.equipment import DispatchMode, ToolRegistration, ToolSnapshot
from mes.domain.errors import InvalidInput, OperationNotAllowed, StepNotAllowed, UnknownLot
from mes.domain.model import JobStatus, Lot, LotState, Operation
from mes.equipment import EquipmentService
from mes.service import LotService

CTRL = "controller"
TOOLS = [
    ToolRegistration("DB-1", "die_bonder", "modbus 127.0.0.1:5020", ("DIE_ATTACH",)),
    ToolRegistration("MOLD-1", "molder", "modbus 127.0.0.1:5021", ("MOLD",)),
    ToolRegistration("LITHO-1", "litho", "modbus 127.0.0.1:5022", ("VIA_PATTERN",)),
    ToolRegistration("BM-1", "ball_mounter", "modbus 127.0.0.1:5023", ("BALL_MOUNT",)),
    ToolRegistration("DICE-1", "dicer", "modbus 127.0.0.1:5024", ("DICE",)),
]


@pytest.fixture
async def service(service: LotService, equipment: EquipmentService) -> LotService:
    """The lot service, with the tools the jobs run on registered by their line controller
    (which qualifies them for their configured steps): the controller tracks lots in on them."""
    await equipment.register("line-a", TOOLS)
    return service


async def _at_die_attach(service: LotService, carriers: int = 2) -> list[str]:
    await service.start(cmd.StartLot("L1", "stiffener-bga", "op", carriers=carriers))
    await service.track_in(cmd.TrackIn("L1", "SUBSTRATE_LOAD", "op"))
    await service.track_out(cmd.TrackOut("L1", "op"))
    await service.track_in(cmd.TrackIn("L1", "DIE_ATTACH", CTRL, tool="DB-1", dispatched=True))
    return list((await service.get("L1")).carriers)


async def _at_mold(service: LotService, *, carriers: int) -> Lot:
    """A lot of fc-heatsink-muf at MOLD on MOLD-1, tracked in by its controller with a cap
    over the heat sink of 100 um (its claim: the carriers' within 5 um of it)."""
    await service.start(cmd.StartLot("L1", "fc-heatsink-muf", "op", carriers=carriers))
    for step in ("SUBSTRATE_LOAD", "FLIP_CHIP_BOND"):
        await service.track_in(cmd.TrackIn("L1", step, "op"))
        await service.track_out(cmd.TrackOut("L1", "op"))
    await service.track_in(
        cmd.TrackIn("L1", "HEAT_SINK_ATTACH", "op", values={"standoff_height_um": "100"})
    )
    await service.track_out(cmd.TrackOut("L1", "op"))
    values = {"mold_cap_over_heat_sink_um": "100"}
    await service.track_in(
        cmd.TrackIn("L1", "MOLD", CTRL, tool="MOLD-1", dispatched=True, values=values)
    )
    return await service.get("L1")


async def test_the_last_carrier_recorded_tracks_the_lot_out(service: LotService) -> None:
    first, second = await _at_die_attach(service)
    await service.start_job(cmd.StartJob("L1", "J1", "DB-1", first, CTRL))
    one = await service.record_job(
        cmd.RecordJob(
            "J1", CTRL, {"bond_force_n": 10.0}, (cmd.SiteRejectGiven(first, 1, 1, "PICK_FAIL"),)
        )
    )
    assert one.lot.state is LotState.RUNNING and one.job.status is JobStatus.RECORDED
    await service.start_job(cmd.StartJob("L1", "J2", "DB-1", second, CTRL))
    two = await service.record_job(
        cmd.RecordJob(
            "J2", CTRL, {"bond_force_n": 12.0}, (cmd.SiteRejectGiven(second, 2, 2, "PICK_FAIL"),)
        )
    )
    lot = two.lot
    assert lot.state is LotState.WAITING and lot.path[-1] == "DIE_ATTACH"
    assert lot.good_sites == lot.total_sites - 2
    assert lot.recorded["bond_force_n"] == pytest.approx(11.0)
    assert [e.operation for e in two.entries] == [Operation.JOB_RECORD, Operation.TRACK_OUT]
    report = await service.report("L1")
    assert report.yields[-1].rejected == 2
    operations = [e.operation for e in report.history]
    assert operations.count(Operation.JOB_START) == 2 and operations.count(Operation.TRACK_OUT) == 2


async def test_the_step_view_reads_the_lot_its_jobs_at_this_step_its_carriers_and_rejects(
    service: LotService,
) -> None:
    first, second = await _at_die_attach(service)
    await service.start_job(cmd.StartJob("L1", "J1", "DB-1", first, CTRL))
    await service.record_job(
        cmd.RecordJob("J1", CTRL, {}, (cmd.SiteRejectGiven(first, 1, 1, "PICK_FAIL"),))
    )
    view = await service.step_view("L1")
    assert view.lot == await service.get("L1")
    assert [(j.job_id, j.status) for j in view.jobs] == [("J1", JobStatus.RECORDED)]
    assert [c.id for c in view.carriers] == [first, second]
    assert view.rejected == []  # a step's rejects count when it ends
    await service.start_job(cmd.StartJob("L1", "J2", "DB-1", second, CTRL))
    await service.record_job(cmd.RecordJob("J2", CTRL))
    view = await service.step_view("L1")
    assert view.lot.state is LotState.WAITING and view.jobs == []  # the next step has none
    assert [(r.carrier_id, r.row, r.col, r.code) for r in view.rejected] == [
        (first, 1, 1, "PICK_FAIL")
    ]
    assert view.rejected == await service.rejected_sites("L1")
    with pytest.raises(UnknownLot):
        await service.step_view("NO-SUCH-LOT")


async def test_recording_a_job_twice_records_it_once(service: LotService) -> None:
    first, _ = await _at_die_attach(service)
    await service.start_job(cmd.StartJob("L1", "J1", "DB-1", first, CTRL))
    await service.record_job(cmd.RecordJob("J1", CTRL, {"bond_force_n": 10.0}))
    before = await service.report("L1")
    again = await service.record_job(cmd.RecordJob("J1", CTRL, {"bond_force_n": 10.0}))
    assert again.already_recorded and again.entries == ()
    assert (await service.report("L1")).history == before.history


async def test_jobs_are_refused_for_a_done_carrier_a_second_open_job_or_another_tool(
    service: LotService,
) -> None:
    first, second = await _at_die_attach(service)
    with pytest.raises(OperationNotAllowed):
        await service.start_job(cmd.StartJob("L1", "J0", "DB-2", first, CTRL))
    await service.start_job(cmd.StartJob("L1", "J1", "DB-1", first, CTRL))
    with pytest.raises(OperationNotAllowed):
        await service.start_job(cmd.StartJob("L1", "J2", "DB-1", second, CTRL))
    await service.record_job(cmd.RecordJob("J1", CTRL))
    with pytest.raises(InvalidInput):
        await service.start_job(cmd.StartJob("L1", "J3", "DB-1", first, CTRL))
    with pytest.raises(InvalidInput):
        await service.start_job(cmd.StartJob("L1", "J1", "DB-1", second, CTRL))
    with pytest.raises(InvalidInput):
        await service.record_job(cmd.RecordJob("NO-SUCH-JOB", CTRL))


async def test_no_job_runs_a_step_an_operator_tracked_in_by_hand(
    service: LotService, equipment: EquipmentService
) -> None:
    """A step tracked in by hand on a tool in manual is the operator's (they track it out
    with the measured values): recorded so, read so in the lots' heads, and a job of the
    tool's for it refused, nothing changed."""
    up = ToolSnapshot(connected=True, e10="standby", process_state="IDLE", mode="PRODUCTION")
    await equipment.report("DB-1", up)
    await equipment.set_dispatch("DB-1", DispatchMode.MANUAL, "tech", "by hand")
    await service.start(cmd.StartLot("L1", "stiffener-bga", "op", carriers=1))
    await service.track_in(cmd.TrackIn("L1", "SUBSTRATE_LOAD", "op"))
    await service.track_out(cmd.TrackOut("L1", "op"))
    await service.track_in(cmd.TrackIn("L1", "DIE_ATTACH", "op", tool="DB-1"))
    lot = await service.get("L1")
    assert lot.running is not None and lot.running.by_hand
    assert [h.by_hand for h in await service.heads([LotState.RUNNING])] == [True]
    with pytest.raises(OperationNotAllowed, match="tracked in at DIE_ATTACH on DB-1 by hand"):
        await service.start_job(cmd.StartJob("L1", "J1", "DB-1", lot.carriers[0], CTRL))
    assert (await service.get("L1")).version == lot.version
    out = await service.track_out(cmd.TrackOut("L1", "op", measured={"bond_force_n": 4.9}))
    assert out.lot.state is LotState.WAITING and out.lot.path[-1] == "DIE_ATTACH"


async def test_a_step_the_controller_tracked_in_is_not_by_hand(service: LotService) -> None:
    await _at_die_attach(service, carriers=1)
    lot = await service.get("L1")
    assert lot.running is not None and not lot.running.by_hand
    assert [h.by_hand for h in await service.heads([LotState.RUNNING])] == [False]


async def test_a_hold_abandons_the_open_job_and_keeps_the_carriers_done(
    service: LotService,
) -> None:
    first, second = await _at_die_attach(service)
    await service.start_job(cmd.StartJob("L1", "J1", "DB-1", first, CTRL))
    await service.record_job(cmd.RecordJob("J1", CTRL))
    await service.start_job(cmd.StartJob("L1", "J2", "DB-1", second, CTRL))
    await service.hold(cmd.HoldLot("L1", CTRL, "alarm 1001 on DB-1"))
    assert (job := await service.job("J2")) is not None and job.status is JobStatus.ABANDONED
    await service.release(cmd.ReleaseLot("L1", "eng"))
    await service.track_in(cmd.TrackIn("L1", "DIE_ATTACH", CTRL, tool="DB-1", dispatched=True))
    lot = await service.get("L1")
    jobs = await service.jobs_of_step(lot)
    assert {(j.carrier_id, j.status) for j in jobs} == {
        (first, JobStatus.RECORDED),
        (second, JobStatus.ABANDONED),
    }
    with pytest.raises(InvalidInput):
        await service.start_job(cmd.StartJob("L1", "J3", "DB-1", first, CTRL))
    await service.start_job(cmd.StartJob("L1", "J4", "DB-1", second, CTRL))
    done = await service.record_job(cmd.RecordJob("J4", CTRL))
    assert done.lot.state is LotState.WAITING and done.lot.path[-1] == "DIE_ATTACH"


async def test_one_carrier_outside_a_claimed_limit_holds_the_lot(service: LotService) -> None:
    lot = await _at_mold(service, carriers=2)
    caps = {lot.carriers[0]: 101.0, lot.carriers[1]: 106.0}  # the mean (103.5) is within 5 um
    for n, (carrier, cap) in enumerate(caps.items()):
        await service.start_job(cmd.StartJob("L1", f"M{n}", "MOLD-1", carrier, CTRL))
        outcome = await service.record_job(
            cmd.RecordJob(f"M{n}", CTRL, {"mold_cap_over_heat_sink_um": cap})
        )
    assert outcome.lot.state is LotState.HOLD
    assert outcome.lot.hold is not None and "001: 2" in outcome.lot.hold.reason


async def test_a_rework_supersedes_the_jobs_of_the_steps_it_undoes(service: LotService) -> None:
    await service.start(cmd.StartLot("L1", "fo-organic", "op", carriers=1))
    for step in ("SUBSTRATE_PREP", "DIE_ATTACH", "DIELECTRIC_COAT"):
        await service.track_in(cmd.TrackIn("L1", step, "op"))
        await service.track_out(cmd.TrackOut("L1", "op"))
    await service.track_in(cmd.TrackIn("L1", "VIA_PATTERN", CTRL, tool="LITHO-1", dispatched=True))
    carrier = (await service.get("L1")).carriers[0]
    await service.start_job(cmd.StartJob("L1", "V1", "LITHO-1", carrier, CTRL))
    await service.record_job(cmd.RecordJob("V1", CTRL))
    await service.hold(cmd.HoldLot("L1", "eng", "via undersized"))
    await service.rework(cmd.ReworkLot("L1", "DIELECTRIC_COAT", "eng", "re-coat"))
    assert (job := await service.job("V1")) is not None and job.status is JobStatus.SUPERSEDED


async def test_a_count_is_summed_over_the_carriers_and_a_measurement_averaged(
    service: LotService,
) -> None:
    await service.start(cmd.StartLot("B1", "stiffener-bga", "op", carriers=2))
    for step in ("SUBSTRATE_LOAD", "DIE_ATTACH", "WIRE_BOND", "STIFFENER_ATTACH", "MOLD"):
        await service.track_in(cmd.TrackIn("B1", step, "op"))
        await service.track_out(cmd.TrackOut("B1", "op"))
    await service.track_in(cmd.TrackIn("B1", "BALL_MOUNT", CTRL, tool="BM-1", dispatched=True))
    lot = await service.get("B1")
    for n, (carrier, missing, peak) in enumerate(
        zip(lot.carriers, (2, 1), (244.0, 246.0), strict=True)
    ):
        await service.start_job(cmd.StartJob("B1", f"B{n}", "BM-1", carrier, CTRL))
        outcome = await service.record_job(
            cmd.RecordJob(f"B{n}", CTRL, {"missing_balls": missing, "reflow_peak_c": peak})
        )
    recorded = outcome.lot.recorded
    assert recorded["missing_balls"] == 3 and isinstance(recorded["missing_balls"], int)
    assert recorded["reflow_peak_c"] == pytest.approx(245.0)


async def test_a_job_the_tool_completed_after_a_hold_is_recorded_and_the_lot_stays_held(
    service: LotService,
) -> None:
    first, second = await _at_die_attach(service)
    await service.start_job(cmd.StartJob("L1", "J1", "DB-1", first, CTRL))
    await service.hold(cmd.HoldLot("L1", "qe", "customer asked", code=None))
    late = await service.record_job(
        cmd.RecordJob(
            "J1", CTRL, {"bond_force_n": 10.0}, (cmd.SiteRejectGiven(first, 1, 1, "PICK_FAIL"),)
        )
    )
    assert late.job.status is JobStatus.RECORDED and late.job.measured == {"bond_force_n": 10.0}
    lot = await service.get("L1")
    assert lot.state is LotState.HOLD and lot.hold is not None
    assert lot.hold.reason == "customer asked" and lot.path[-1] == "SUBSTRATE_LOAD"
    assert lot.pending_rework == "DIE_ATTACH"  # a carrier done there: the lot finishes it
    [entry] = late.entries
    assert entry.operation is Operation.JOB_RECORD and entry.state_after is LotState.HOLD
    assert entry.reason is not None and "after the lot left it (HOLD)" in entry.reason
    again = await service.record_job(cmd.RecordJob("J1", CTRL))  # once only
    assert again.already_recorded
    await service.release(cmd.ReleaseLot("L1", "qe"))
    await service.track_in(cmd.TrackIn("L1", "DIE_ATTACH", CTRL, tool="DB-1", dispatched=True))
    with pytest.raises(InvalidInput, match="done at DIE_ATTACH already"):
        await service.start_job(cmd.StartJob("L1", "J2", "DB-1", first, CTRL))
    await service.start_job(cmd.StartJob("L1", "J3", "DB-1", second, CTRL))
    done = await service.record_job(cmd.RecordJob("J3", CTRL, {"bond_force_n": 12.0}))
    assert done.lot.state is LotState.WAITING and done.lot.path[-1] == "DIE_ATTACH"
    assert done.lot.good_sites == done.lot.total_sites - 1
    assert done.lot.recorded["bond_force_n"] == pytest.approx(11.0)


async def test_the_last_job_completed_after_a_hold_tracks_the_step_out_with_its_values(
    service: LotService,
) -> None:
    await _at_mold(service, carriers=1)
    [carrier] = (await service.get("L1")).carriers
    await service.start_job(cmd.StartJob("L1", "M1", "MOLD-1", carrier, CTRL))
    await service.hold(cmd.HoldLot("L1", "qe", "void scan due"))
    # the cap is checked against the value the step was tracked in with (100 +- 5 um)
    late = await service.record_job(cmd.RecordJob("M1", CTRL, {"mold_cap_over_heat_sink_um": 112}))
    job_entry, out = late.entries
    assert [job_entry.operation, out.operation] == [Operation.JOB_RECORD, Operation.TRACK_OUT]
    assert out.state_before is LotState.HOLD and out.state_after is LotState.HOLD
    assert [v["value"] for v in out.data["violations"]] == ["mold_cap_over_heat_sink_um"]
    lot = late.lot
    assert lot.state is LotState.HOLD and lot.path[-1] == "MOLD"
    assert lot.hold is not None and lot.hold.reason == "void scan due"
    assert lot.recorded["mold_cap_over_heat_sink_um"] == 112
    stored = await service.get("L1")
    assert (stored.state, stored.path, stored.hold) == (lot.state, lot.path, lot.hold)
    released = await service.release(cmd.ReleaseLot("L1", "qe"))
    assert released.lot.state is LotState.WAITING and released.lot.path[-1] == "MOLD"


async def test_a_job_completed_after_an_abort_tracks_the_step_out(service: LotService) -> None:
    [carrier] = await _at_die_attach(service, carriers=1)
    await service.start_job(cmd.StartJob("L1", "J1", "DB-1", carrier, CTRL))
    await service.abort(cmd.AbortStep("L1", "op", "wrong magazine"))
    late = await service.record_job(cmd.RecordJob("J1", CTRL, {"bond_force_n": 10.0}))
    assert late.lot.state is LotState.WAITING and late.lot.path[-1] == "DIE_ATTACH"
    assert [e.state_before for e in late.entries] == [LotState.WAITING, LotState.WAITING]


async def test_a_job_abandoned_for_a_lot_that_moved_on_is_refused_and_changes_nothing(
    service: LotService,
) -> None:
    first, _ = await _at_die_attach(service)
    await service.start_job(cmd.StartJob("L1", "J1", "DB-1", first, CTRL))
    await service.hold(cmd.HoldLot("L1", "qe", "check"))
    await service.release(cmd.ReleaseLot("L1", "qe"))
    await service.track_in(cmd.TrackIn("L1", "DIE_ATTACH", CTRL, tool="DB-1", dispatched=True))
    await service.start_job(cmd.StartJob("L1", "J2", "DB-1", first, CTRL))
    before = await service.report("L1")
    with pytest.raises(
        OperationNotAllowed, match=r"job J1 .* is abandoned: a hold or an abort took lot L1 off"
    ):
        await service.record_job(cmd.RecordJob("J1", CTRL))
    await service.abort(cmd.AbortStep("L1", "op", "again"))
    await service.track_in(cmd.TrackIn("L1", "DIE_ATTACH", "op"))
    await service.track_out(cmd.TrackOut("L1", "op"))
    moved = await service.report("L1")
    with pytest.raises(OperationNotAllowed, match="has moved on since"):
        await service.record_job(cmd.RecordJob("J1", CTRL))
    assert (await service.report("L1")).history == moved.history
    assert len(before.history) < len(moved.history)
    assert (job := await service.job("J1")) is not None and job.status is JobStatus.ABANDONED


async def _at_ball_mount(service: LotService) -> list[str]:
    """A lot of stiffener-bga at BALL_MOUNT on BM-1 (tracked in by its controller); its flow
    also allows DICE first at that position."""
    await service.start(cmd.StartLot("L1", "stiffener-bga", "op", carriers=2))
    for step in ("SUBSTRATE_LOAD", "DIE_ATTACH", "WIRE_BOND", "STIFFENER_ATTACH", "MOLD"):
        await service.track_in(cmd.TrackIn("L1", step, "op"))
        await service.track_out(cmd.TrackOut("L1", "op"))
    await service.track_in(cmd.TrackIn("L1", "BALL_MOUNT", CTRL, tool="BM-1", dispatched=True))
    return list((await service.get("L1")).carriers)


@pytest.mark.parametrize("stop", ["hold", "abort"])
async def test_a_step_stopped_with_carriers_done_must_be_finished_before_any_other(
    service: LotService, stop: str
) -> None:
    first, second = await _at_ball_mount(service)
    await service.start_job(cmd.StartJob("L1", "J1", "BM-1", first, CTRL))
    await service.record_job(cmd.RecordJob("J1", CTRL))
    await service.start_job(cmd.StartJob("L1", "J2", "BM-1", second, CTRL))
    if stop == "hold":
        await service.hold(cmd.HoldLot("L1", "op", "ball feeder jam"))
        report = await service.report("L1")
        assert report.next_after_release == ("BALL_MOUNT",)  # not DICE, which the flow allows
        await service.release(cmd.ReleaseLot("L1", "qe"))
    else:
        await service.abort(cmd.AbortStep("L1", "op", "ball feeder jam"))
    lot = await service.get("L1")
    assert lot.state is LotState.WAITING and lot.pending_rework == "BALL_MOUNT"
    before = await service.report("L1")
    assert before.next_steps == ("BALL_MOUNT",)
    with pytest.raises(StepNotAllowed, match=r"must run BALL_MOUNT next: .* with carriers done"):
        await service.track_in(cmd.TrackIn("L1", "DICE", "op"))
    assert (await service.report("L1")).history == before.history
    await service.track_in(cmd.TrackIn("L1", "BALL_MOUNT", CTRL, tool="BM-1", dispatched=True))
    with pytest.raises(InvalidInput, match="done at BALL_MOUNT already"):
        await service.start_job(cmd.StartJob("L1", "J3", "BM-1", first, CTRL))
    await service.start_job(cmd.StartJob("L1", "J4", "BM-1", second, CTRL))
    done = await service.record_job(cmd.RecordJob("J4", CTRL))
    assert done.lot.path[-1] == "BALL_MOUNT" and done.lot.pending_rework is None
    assert (await service.report("L1")).next_steps == ("DICE",)


async def test_a_step_stopped_before_any_carrier_was_done_leaves_the_flow_its_choice(
    service: LotService,
) -> None:
    first, _ = await _at_ball_mount(service)
    await service.start_job(cmd.StartJob("L1", "J1", "BM-1", first, CTRL))
    await service.hold(cmd.HoldLot("L1", "op", "ball feeder jam"))
    await service.release(cmd.ReleaseLot("L1", "qe"))
    assert (await service.get("L1")).pending_rework is None
    assert set((await service.report("L1")).next_steps) == {"BALL_MOUNT", "DICE"}


async def test_carriers_done_at_one_step_are_not_done_at_another_at_the_same_position(
    service: LotService,
) -> None:
    """Jobs are kept by step occurrence (position in the path) and step: a lot that went on
    to another step there (its first stopped before any carrier was done) sees none of the
    first step's jobs as its own."""
    first, second = await _at_ball_mount(service)
    await service.start_job(cmd.StartJob("L1", "J1", "BM-1", first, CTRL))
    await service.hold(cmd.HoldLot("L1", "op", "ball feeder jam"))
    await service.release(cmd.ReleaseLot("L1", "qe"))
    await service.track_in(cmd.TrackIn("L1", "DICE", CTRL, tool="DICE-1", dispatched=True))
    lot = await service.get("L1")
    assert await service.jobs_of_step(lot) == []  # J1 was BALL_MOUNT's
    for n, carrier in enumerate((first, second)):
        await service.start_job(cmd.StartJob("L1", f"D{n}", "DICE-1", carrier, CTRL))
        out = await service.record_job(cmd.RecordJob(f"D{n}", CTRL))
    assert out.lot.path[-1] == "DICE" and out.lot.state is LotState.WAITING
