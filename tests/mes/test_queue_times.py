"""Queue-time limits (fo-organic: DIELECTRIC_COAT -> VIA_PATTERN, warning after 180 min, at
most 240 min, line practice): within the warning the track-in goes on; past the warning it is
recorded with a warning; past the limit the lot goes on hold with the reason instead of
starting, at its next track-in or when a line controller looks. A fake clock; every store."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mes.domain import commands as cmd
from mes.domain.errors import SplitMergeNotAllowed
from mes.domain.model import HoldSource, LotState, Operation
from mes.ports import get_history, get_last_track_outs
from mes.service import LotService
from tests.mes.conftest import Clock

OP = "op1"


async def _coated(
    service: LotService, lot_id: str, *, carriers: int = 2, started: bool = False
) -> None:
    """A fo-organic lot walked to its first DIELECTRIC_COAT and tracked out of it."""
    if not started:
        await service.start(cmd.StartLot(lot_id, "fo-organic", OP, carriers=carriers))
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


async def test_a_release_waives_the_wait_so_far_and_the_clock_runs_again_from_it(
    service: LotService, clock: Clock
) -> None:
    """The engineer's release of a queue-time hold is their word on the wait so far: the lot
    starts the step at its next track-in and the controller's look leaves it (both held it
    again at once, for ever); past the limit again, counted from the release, it is held."""
    await _coated(service, "L1")
    clock.now += timedelta(minutes=241)
    held = (await service.track_in(cmd.TrackIn("L1", "VIA_PATTERN", OP))).lot
    assert held.state is LotState.HOLD
    clock.now += timedelta(minutes=5)
    release = (await service.release(cmd.ReleaseLot("L1", "eng", "checked: dry"))).entries[0]
    assert release.data["held_source"] == "queue_time"
    clock.now += timedelta(minutes=1)
    assert await service.hold_expired_queue_times("ctl") == []
    outcome = await service.track_in(cmd.TrackIn("L1", "VIA_PATTERN", OP))
    assert outcome.lot.state is LotState.RUNNING
    assert "queue_time_warnings" not in outcome.entries[0].data
    # abandoned, and waiting again past the limit counted from the release: held again
    await service.abort(cmd.AbortStep("L1", OP, "wrong mask"))
    clock.now += timedelta(minutes=238)  # 239 min after the release
    assert await service.hold_expired_queue_times("ctl") == []
    clock.now += timedelta(minutes=2)
    (again,) = await service.hold_expired_queue_times("ctl")
    assert again.lot.hold is not None
    assert "waited 241 min since its queue-time hold was released at" in again.lot.hold.reason


async def test_a_release_of_another_hold_waives_no_queue_time(
    service: LotService, clock: Clock
) -> None:
    await _coated(service, "L1")
    await service.hold(cmd.HoldLot("L1", OP, "check the coat"))
    clock.now += timedelta(minutes=250)
    await service.release(cmd.ReleaseLot("L1", "eng", "coat fine"))
    outcome = await service.track_in(cmd.TrackIn("L1", "VIA_PATTERN", OP))
    assert outcome.lot.state is LotState.HOLD
    assert outcome.lot.hold is not None and outcome.lot.hold.source is HoldSource.QUEUE_TIME


async def test_a_lot_split_off_keeps_its_parents_clock(service: LotService, clock: Clock) -> None:
    """A child's history starts at the split: its wait counts from the parent's track-out
    (the child started VIA_PATTERN past the limit, its parent was held), at its track-in and
    at the controller's look, and down a second split."""
    await _coated(service, "P1")
    clock.now += timedelta(minutes=30)
    await service.split(cmd.SplitLot("P1", "C1", ("2",), OP))
    clock.now += timedelta(minutes=200)
    outcome = await service.track_in(cmd.TrackIn("C1", "VIA_PATTERN", OP))
    assert outcome.lot.state is LotState.RUNNING
    assert (
        outcome.entries[0]
        .data["queue_time_warnings"][0]
        .startswith("queue time DIELECTRIC_COAT -> VIA_PATTERN: waited 230 min")
    )
    await service.abort(cmd.AbortStep("C1", OP, "mask"))
    await _coated(service, "P2", carriers=3)
    await service.split(cmd.SplitLot("P2", "C2", ("2", "3"), OP))
    await service.split(cmd.SplitLot("C2", "G2", ("2",), OP))
    clock.now += timedelta(minutes=241)
    held = {o.lot.id for o in await service.hold_expired_queue_times("ctl")}
    assert held == {"P1", "C1", "P2", "C2", "G2"}


async def test_a_lot_split_off_before_the_step_counts_from_its_own_track_out(
    service: LotService, clock: Clock
) -> None:
    await service.start(cmd.StartLot("P1", "fo-organic", OP, carriers=2))
    await service.split(cmd.SplitLot("P1", "C1", ("2",), OP))
    clock.now += timedelta(minutes=300)
    await _coated(service, "C1", started=True)
    clock.now += timedelta(minutes=10)
    assert (await service.track_in(cmd.TrackIn("C1", "VIA_PATTERN", OP))).lot.state is (
        LotState.RUNNING
    )


async def test_a_lot_is_not_merged_into_one_that_waited_less(
    service: LotService, clock: Clock
) -> None:
    """The merged lot keeps the target's clock: a lot that waited longer is refused, saying
    to merge the other way, which keeps the longer wait."""
    await _coated(service, "OLD")
    clock.now += timedelta(minutes=200)
    await _coated(service, "NEW")
    with pytest.raises(SplitMergeNotAllowed) as refused:
        await service.merge(cmd.MergeLots("OLD", "NEW", OP))
    assert "it has waited longer" in str(refused.value)
    assert "pkgline lot merge NEW --into OLD" in str(refused.value)
    assert (await service.get("OLD")).state is LotState.WAITING
    merged = (await service.merge(cmd.MergeLots("NEW", "OLD", OP))).lot
    assert merged.id == "OLD" and len(merged.carriers) == 4
    clock.now += timedelta(minutes=41)
    assert (await service.track_in(cmd.TrackIn("OLD", "VIA_PATTERN", OP))).lot.state is (
        LotState.HOLD
    )
