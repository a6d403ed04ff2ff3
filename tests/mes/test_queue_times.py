"""Queue-time limits (fo-organic: DIELECTRIC_COAT -> VIA_PATTERN, warning after 180 min, at
most 240 min, line practice): within the warning the track-in goes on; past the warning it is
recorded with a warning; past the limit the lot goes on hold with the reason instead of
starting, at its next track-in or when a line controller looks. A fake clock; every store."""

from __future__ import annotations

from datetime import timedelta

from mes.domain import commands as cmd
from mes.domain.model import HoldSource, LotState, Operation
from mes.ports import get_history, get_last_track_outs
from mes.service import LotService
from tests.mes.conftest import Clock

OP = "op1"


async def _coated(service: LotService, lot_id: str) -> None:
    """A fo-organic lot walked to its first DIELECTRIC_COAT and tracked out of it."""
    await service.start(cmd.StartLot(lot_id, "fo-organic", OP))
    while True:
        lot = await service.get(lot_id)
        step = service.next_in_order(lot)[0]
        await service.track_in(cmd.TrackIn(lot_id, step, OP))
        await service.track_out(cmd.TrackOut(lot_id, OP))
        if step == "DIELECTRIC_COAT":
            return


async def test_a_track_in_within_the_warning_goes_on_unremarked(
    service: LotService, clock: Clock
) -> None:
    await _coated(service, "L1")
    clock.now += timedelta(minutes=170)
    outcome = await service.track_in(cmd.TrackIn("L1", "VIA_PATTERN", OP))
    assert outcome.lot.state is LotState.RUNNING
    assert "queue_time_warnings" not in outcome.entries[0].data


async def test_a_track_in_past_the_warning_is_recorded_with_it(
    service: LotService, clock: Clock
) -> None:
    await _coated(service, "L1")
    clock.now += timedelta(minutes=200)
    outcome = await service.track_in(cmd.TrackIn("L1", "VIA_PATTERN", OP))
    assert outcome.lot.state is LotState.RUNNING
    (warning,) = outcome.entries[0].data["queue_time_warnings"]
    assert warning.startswith("queue time DIELECTRIC_COAT -> VIA_PATTERN: waited 200 min")
    assert "max 240 min (warning after 180 min)" in warning
    assert "(line practice: dielectric moisture uptake before exposure)" in warning


async def test_a_track_in_past_the_limit_holds_the_lot_with_the_reason(
    service: LotService, clock: Clock
) -> None:
    await _coated(service, "L1")
    clock.now += timedelta(minutes=241)
    outcome = await service.track_in(cmd.TrackIn("L1", "VIA_PATTERN", OP))
    lot = outcome.lot
    assert lot.state is LotState.HOLD and lot.running is None and lot.hold is not None
    assert lot.hold.source is HoldSource.QUEUE_TIME
    assert "queue time DIELECTRIC_COAT -> VIA_PATTERN: waited 241 min" in lot.hold.reason
    assert [e.operation for e in outcome.entries] == [Operation.HOLD]
    # the engineer releases it (rework is the other way): the clock starts no new wait
    released = (await service.release(cmd.ReleaseLot("L1", "eng"))).lot
    assert released.state is LotState.WAITING


async def test_the_controllers_look_holds_a_waiting_lot_past_its_limit_and_only_that(
    service: LotService, clock: Clock
) -> None:
    await _coated(service, "LATE")
    clock.now += timedelta(minutes=120)
    await _coated(service, "EARLY")
    await service.start(cmd.StartLot("OTHER", "stiffener-bga", OP))
    assert await service.hold_expired_queue_times("ctl") == []
    clock.now += timedelta(minutes=121)
    (held,) = await service.hold_expired_queue_times("ctl")
    assert held.lot.id == "LATE" and held.lot.state is LotState.HOLD
    assert held.lot.hold is not None and held.lot.hold.source is HoldSource.QUEUE_TIME
    assert (await service.get("EARLY")).state is LotState.WAITING
    assert (await service.get("OTHER")).state is LotState.WAITING
    assert await service.hold_expired_queue_times("ctl") == []  # held once


async def test_the_limit_runs_from_the_last_coat_of_each_layer(
    service: LotService, clock: Clock
) -> None:
    await _coated(service, "L1")
    await service.track_in(cmd.TrackIn("L1", "VIA_PATTERN", OP))
    await service.track_out(cmd.TrackOut("L1", OP))
    clock.now += timedelta(minutes=600)  # long before the next layer's coat: no limit runs
    assert await service.hold_expired_queue_times("ctl") == []
    lot = await service.get("L1")
    while (step := service.next_in_order(lot)[0]) != "DIELECTRIC_COAT":
        await service.track_in(cmd.TrackIn("L1", step, OP))
        lot = (await service.track_out(cmd.TrackOut("L1", OP))).lot
    await service.track_in(cmd.TrackIn("L1", "DIELECTRIC_COAT", OP))
    await service.track_out(cmd.TrackOut("L1", OP))
    clock.now += timedelta(minutes=10)
    outcome = await service.track_in(cmd.TrackIn("L1", "VIA_PATTERN", OP))
    assert outcome.lot.state is LotState.RUNNING


async def test_the_store_says_when_each_step_was_last_left_as_the_history_does(
    service: LotService, clock: Clock
) -> None:
    """What the limits count from is read without the whole history (GetLastTrackOuts):
    the last track-out of each step asked, a step run twice by its last, a step never left
    or never run absent, nothing asked nothing read."""
    await service.start(cmd.StartLot("L1", "fo-organic", OP, params={"layers": "3"}))
    lot, coats_left = await service.get("L1"), 2
    while coats_left:
        step = service.next_in_order(lot)[0]
        clock.now += timedelta(minutes=7)
        await service.track_in(cmd.TrackIn("L1", step, OP))
        lot = (await service.track_out(cmd.TrackOut("L1", OP))).lot
        coats_left -= step == "DIELECTRIC_COAT"
    await service.track_in(cmd.TrackIn("L1", service.next_in_order(lot)[0], OP))  # running
    history = await service._read(get_history("L1"))
    expected = {e.step: e.at for e in history if e.operation is Operation.TRACK_OUT and e.step}
    coats = [
        e for e in history if e.step == "DIELECTRIC_COAT" and e.operation is Operation.TRACK_OUT
    ]
    assert len(coats) >= 2
    asked = sorted({*expected, "NOT_A_STEP", lot.path[-1] if lot.path else "X"})
    found = await service._read(get_last_track_outs("L1", asked))
    assert found == {s: expected[s] for s in asked if s in expected}
    assert found["DIELECTRIC_COAT"] == coats[-1].at
    assert await service._read(get_last_track_outs("L1", [])) == {}
    assert await service._read(get_last_track_outs("NOPE", ["DIELECTRIC_COAT"])) == {}
