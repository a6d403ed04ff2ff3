"""The lot tracker's service layer, on every store: lots move only as their flow and its claimed
limits allow; every refusal changes nothing; holds, rework, rejects, yields and units behave
as an operator expects (split and merge: test_split_merge.py)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest

from flows import FlowLibrary
from mes.domain import commands as cmd
from mes.domain.equipment import DispatchMode, ToolRegistration
from mes.domain.errors import (
    ConcurrentUpdate,
    InvalidInput,
    LimitViolated,
    LotExists,
    LotTrackerError,
    OperationNotAllowed,
    ReworkNotAllowed,
    SplitMergeNotAllowed,
    StepNotAllowed,
    UnknownLot,
)
from mes.domain.model import HoldSource, LotState, Operation
from mes.domain.report import report_dict
from mes.equipment import EquipmentService
from mes.ports import LotQuery
from mes.service import LotService, TrackedIn

USER = "op1"


def _geometry(library: FlowLibrary, flow: str) -> tuple[int, int]:
    """Carrier rows/cols matching the flow's default stiffener openings, else 4 x 8."""
    step = library.get(flow).steps.get("STIFFENER_ATTACH")
    if step is not None:
        rows = step.recipe["stiffener_opening_rows"].default
        cols = step.recipe["stiffener_opening_cols"].default
        assert isinstance(rows, int | float) and isinstance(cols, int | float)
        return int(rows), int(cols)
    return 4, 8


async def _start(service: LotService, lot: str, flow: str, carriers: int = 2) -> None:
    rows, cols = _geometry(service.flows, flow)
    await service.start(
        cmd.StartLot(lot, flow, USER, carriers=carriers, site_rows=rows, site_cols=cols)
    )


async def _run(
    service: LotService, lot: str, steps: Sequence[str], tool: str | None = None
) -> None:
    for step in steps:
        await service.track_in(cmd.TrackIn(lot, step, USER, tool=tool))
        await service.track_out(cmd.TrackOut(lot, USER))


async def _snapshot(service: LotService, lot: str) -> dict[str, object]:
    return report_dict(await service.report(lot))


STIFFENER_TO_MOLD = ["SUBSTRATE_LOAD", "DIE_ATTACH", "WIRE_BOND", "STIFFENER_ATTACH", "MOLD"]


@pytest.mark.parametrize(
    "flow",
    [
        "stiffener-bga",
        "fc-heatsink-muf",
        "fc-stack-muf",
        "fc-stack3-muf",
        "fo-organic",
        "fo-organic-recon",
        "fo-organic-insulating",
        "fo-metal",
        "fo-metal-recon",
    ],
)
async def test_a_lot_of_every_flow_runs_to_completion_on_its_default_values(
    service: LotService, flow: str
) -> None:
    await _start(service, "L1", flow)
    for _ in range(100):
        lot = await service.get("L1")
        if lot.state is LotState.COMPLETED:
            break
        following = sorted(service.next_steps(lot))
        assert following, f"{flow} stopped after {lot.path} in {lot.state}"
        await _run(service, "L1", following[:1])
    lot = await service.get("L1")
    assert lot.state is LotState.COMPLETED
    if "DICE" in lot.path:
        assert lot.units == lot.good_sites == lot.total_sites


async def test_mold_before_stiffener_attach_is_refused_with_the_claim_and_what_is_allowed(
    service: LotService,
) -> None:
    await _start(service, "L1", "stiffener-bga")
    await _run(service, "L1", ["SUBSTRATE_LOAD", "DIE_ATTACH", "WIRE_BOND"])
    with pytest.raises(StepNotAllowed) as refused:
        await service.track_in(cmd.TrackIn("L1", "MOLD", USER))
    assert refused.value.allowed == ("STIFFENER_ATTACH",)
    assert refused.value.claim is not None and "000" in refused.value.claim
    assert "MOLD" in refused.value.message


async def test_a_refused_command_changes_nothing(service: LotService) -> None:
    await _start(service, "L1", "stiffener-bga")
    await _run(service, "L1", ["SUBSTRATE_LOAD"])
    before = await _snapshot(service, "L1")
    refusals = [
        service.track_in(cmd.TrackIn("L1", "MOLD", USER)),
        service.track_in(
            cmd.TrackIn("L1", "DIE_ATTACH", USER, values={"die_orientation": "face_down"})
        ),
        service.track_in(cmd.TrackIn("L1", "DIE_ATTACH", USER, values={"bond_force": "3"})),
        service.track_out(cmd.TrackOut("L1", USER)),
        service.release(cmd.ReleaseLot("L1", USER)),
        service.hold(cmd.HoldLot("L1", USER, "")),
        service.rework(cmd.ReworkLot("L1", "SUBSTRATE_LOAD", USER, "why not")),
        service.complete(cmd.CompleteLot("L1", USER)),
        service.split(cmd.SplitLot("L1", "L1", ("1",), USER)),
    ]
    for attempt in refusals:
        with pytest.raises(
            (StepNotAllowed, LimitViolated, InvalidInput, OperationNotAllowed, SplitMergeNotAllowed)
        ):
            await attempt
    assert await _snapshot(service, "L1") == before


async def test_a_track_out_that_names_another_step_than_the_running_one_is_refused(
    service: LotService,
) -> None:
    """A retried track-out that says which step it finishes cannot finish the lot's next
    one: the lot was tracked out and in again (by the controller) in between."""
    await _start(service, "L1", "stiffener-bga")
    await _run(service, "L1", ["SUBSTRATE_LOAD"])
    await service.track_in(cmd.TrackIn("L1", "DIE_ATTACH", USER))
    before = await _snapshot(service, "L1")
    with pytest.raises(StepNotAllowed) as refused:
        await service.track_out(cmd.TrackOut("L1", USER, step="SUBSTRATE_LOAD"))
    assert refused.value.allowed == ("DIE_ATTACH",)
    assert (
        "runs DIE_ATTACH" in refused.value.message
        and "nothing was changed" in refused.value.message
    )
    assert await _snapshot(service, "L1") == before
    done = await service.track_out(cmd.TrackOut("L1", USER, step="DIE_ATTACH"))
    assert done.lot.state is LotState.WAITING and done.lot.path[-1] == "DIE_ATTACH"


async def test_a_hold_without_a_reason_says_so_in_no_interface_s_words(
    service: LotService,
) -> None:
    """The API answered an empty hold with the CLI's "(--reason TEXT)" (found probing the
    station and the API)."""
    await _start(service, "L1", "stiffener-bga")
    with pytest.raises(InvalidInput) as refused:
        await service.hold(cmd.HoldLot("L1", USER, " "))
    assert refused.value.message == (
        "a hold needs a reason (a hold reason code of the catalogue or a text saying why); "
        "nothing was changed"
    )


async def test_a_hold_or_a_scrap_refused_without_a_reason_says_a_code_alone_would_do(
    service: LotService,
) -> None:
    """A hold (and a whole lot's scrap) takes a reason code alone, its text then the reason
    (mes.reasons.coded_hold): the refusal of one with neither said only "say why", so a
    client that had a code did not know it was enough. Rework's needs a text and says so."""
    await _start(service, "L1", "stiffener-bga")
    with pytest.raises(InvalidInput) as held:
        await service.hold(cmd.HoldLot("L1", USER, ""))
    with pytest.raises(InvalidInput) as scrapped:
        await service.scrap(cmd.ScrapLot("L1", USER, ""))
    for refused, kind in ((held, "hold"), (scrapped, "scrap")):
        said = refused.value.message
        assert f"a {kind} reason code of the catalogue or a text saying why" in said, said


async def test_an_unknown_lot_is_refused(service: LotService) -> None:
    with pytest.raises(UnknownLot):
        await service.track_in(cmd.TrackIn("NOPE", "SUBSTRATE_LOAD", USER))
    with pytest.raises(UnknownLot):
        await service.report("NOPE")


@pytest.mark.parametrize("lot_id", ["", "a b", "L" * 33, "-L1", "L1\n"])
async def test_an_id_no_lot_can_have_is_refused_saying_what_a_lot_id_is(
    service: LotService, lot_id: str
) -> None:
    """Not "there is no lot", as if a lot of that name might have been made: what a lot id
    is, for a read, a move and a page's cursor alike."""
    expected = f"{lot_id!r} is not a lot id: expected 1-32 ASCII letters"
    with pytest.raises(InvalidInput, match=re.escape(expected)):
        await service.report(lot_id)
    with pytest.raises(InvalidInput, match=re.escape(expected)):
        await service.hold(cmd.HoldLot(lot_id, USER, "why"))
    with pytest.raises(InvalidInput, match=re.escape(expected)):
        await service.page(LotQuery(after=lot_id))
    with pytest.raises(UnknownLot, match="there is no lot NOPE to list the lots after"):
        await service.page(LotQuery(after="NOPE"))


async def test_starting_a_lot_twice_is_refused(service: LotService) -> None:
    await _start(service, "L1", "stiffener-bga")
    with pytest.raises(LotExists):
        await _start(service, "L1", "fo-organic")


async def test_an_unknown_flow_is_refused_with_the_flows_there_are(service: LotService) -> None:
    with pytest.raises(InvalidInput) as refused:
        await service.start(cmd.StartLot("L1", "no-such-flow", USER))
    assert "stiffener-bga" in refused.value.allowed


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"layers": "9"}, LimitViolated),
        ({"layers": "0"}, LimitViolated),
        ({"layers": "two"}, InvalidInput),
        ({"colour": "red"}, InvalidInput),
    ],
)
async def test_lot_parameters_outside_their_limits_are_refused_at_start(
    service: LotService, params: dict[str, str], error: type[Exception]
) -> None:
    with pytest.raises(error):
        await service.start(cmd.StartLot("L1", "fo-organic", USER, params=params))
    with pytest.raises(UnknownLot):
        await service.get("L1")


async def test_eight_layers_are_accepted_at_start(service: LotService) -> None:
    await service.start(cmd.StartLot("L1", "fo-organic", USER, params={"layers": "8"}))
    assert (await service.get("L1")).params["layers"] == 8


@pytest.mark.parametrize(
    ("thickness", "accepted"), [("0.1", True), ("0.5", True), ("0.09", False), ("0.51", False)]
)
async def test_substrate_thickness_is_checked_at_track_in_at_its_edges(
    service: LotService, thickness: str, accepted: bool
) -> None:
    await _start(service, "L1", "stiffener-bga")
    track_in = cmd.TrackIn(
        "L1", "SUBSTRATE_LOAD", USER, values={"substrate_thickness_mm": thickness}
    )
    if accepted:
        await service.track_in(track_in)
        assert (await service.get("L1")).state is LotState.RUNNING
    else:
        with pytest.raises(LimitViolated) as refused:
            await service.track_in(track_in)
        assert refused.value.claim is not None and "000: 14" in refused.value.claim
        assert (await service.get("L1")).state is LotState.WAITING


async def test_a_measured_value_outside_its_claimed_limit_holds_the_lot(
    service: LotService,
) -> None:
    await _start(service, "L1", "fc-heatsink-muf")
    await _run(service, "L1", ["SUBSTRATE_LOAD", "FLIP_CHIP_BOND"])
    await service.track_in(
        cmd.TrackIn("L1", "HEAT_SINK_ATTACH", USER, values={"standoff_height_um": "100"})
    )
    await service.track_out(cmd.TrackOut("L1", USER))
    await service.track_in(
        cmd.TrackIn("L1", "MOLD", USER, values={"mold_cap_over_heat_sink_um": "100"})
    )
    outcome = await service.track_out(
        cmd.TrackOut("L1", USER, measured={"mold_cap_over_heat_sink_um": "106"})
    )
    lot = outcome.lot
    assert lot.state is LotState.HOLD
    assert lot.hold is not None and lot.hold.source is HoldSource.LIMIT
    assert "001: 2" in lot.hold.reason and "mold_cap_over_heat_sink_um" in lot.hold.reason
    assert lot.path[-1] == "MOLD", "the step happened: it is recorded, then the lot is held"
    released = await service.release(cmd.ReleaseLot("L1", "eng1", "cap re-measured by hand"))
    assert released.lot.state is LotState.WAITING


async def test_a_mold_cap_recipe_that_does_not_match_the_standoffs_is_refused(
    service: LotService,
) -> None:
    await _start(service, "L1", "fc-heatsink-muf")
    await _run(service, "L1", ["SUBSTRATE_LOAD", "FLIP_CHIP_BOND"])
    await service.track_in(
        cmd.TrackIn("L1", "HEAT_SINK_ATTACH", USER, values={"standoff_height_um": "100"})
    )
    await service.track_out(cmd.TrackOut("L1", USER))
    with pytest.raises(LimitViolated):
        await service.track_in(
            cmd.TrackIn("L1", "MOLD", USER, values={"mold_cap_over_heat_sink_um": "105.5"})
        )
    await service.track_in(
        cmd.TrackIn("L1", "MOLD", USER, values={"mold_cap_over_heat_sink_um": "105"})
    )


async def test_a_held_lot_cannot_be_moved_until_released(service: LotService) -> None:
    await _start(service, "L1", "stiffener-bga")
    await service.hold(cmd.HoldLot("L1", USER, "suspect substrate batch"))
    with pytest.raises(OperationNotAllowed) as refused:
        await service.track_in(cmd.TrackIn("L1", "SUBSTRATE_LOAD", USER))
    assert "release" in refused.value.allowed
    lot = (await service.release(cmd.ReleaseLot("L1", USER, "batch cleared"))).lot
    assert lot.state is LotState.WAITING
    await service.track_in(cmd.TrackIn("L1", "SUBSTRATE_LOAD", USER))


async def test_a_hold_needs_a_reason(service: LotService) -> None:
    await _start(service, "L1", "stiffener-bga")
    with pytest.raises(InvalidInput):
        await service.hold(cmd.HoldLot("L1", USER, "  "))


async def test_holding_a_running_lot_abandons_the_step_and_release_waits_for_it_again(
    service: LotService,
) -> None:
    await _start(service, "L1", "stiffener-bga")
    await service.track_in(cmd.TrackIn("L1", "SUBSTRATE_LOAD", USER))
    held = (await service.hold(cmd.HoldLot("L1", "ctrl", "tool alarm 1001", HoldSource.ALARM))).lot
    assert held.running is None and held.path == ()
    lot = (await service.release(cmd.ReleaseLot("L1", USER))).lot
    assert service.next_steps(lot) == {"SUBSTRATE_LOAD"}


async def test_abort_returns_the_lot_to_waiting_at_the_same_step(service: LotService) -> None:
    await _start(service, "L1", "stiffener-bga")
    await _run(service, "L1", ["SUBSTRATE_LOAD"])
    await service.track_in(cmd.TrackIn("L1", "DIE_ATTACH", USER))
    lot = (await service.abort(cmd.AbortStep("L1", USER, "wrong magazine"))).lot
    assert lot.state is LotState.WAITING and lot.path == ("SUBSTRATE_LOAD",)
    assert service.next_steps(lot) == {"DIE_ATTACH"}


async def test_rejected_sites_stay_rejected_and_give_yields_and_units(service: LotService) -> None:
    await _start(service, "L1", "stiffener-bga", carriers=2)
    await _run(service, "L1", ["SUBSTRATE_LOAD"])
    lot = await service.get("L1")
    total = lot.total_sites
    first, second = lot.carriers
    await service.track_in(cmd.TrackIn("L1", "DIE_ATTACH", USER))
    await service.track_out(
        cmd.TrackOut(
            "L1",
            USER,
            rejects=(
                cmd.SiteRejectGiven(first, 1, 1, "PICK_FAIL"),
                cmd.SiteRejectGiven("2", 2, 3, "PLACEMENT_OFFSET"),
            ),
        )
    )
    await service.track_in(cmd.TrackIn("L1", "WIRE_BOND", USER))
    with pytest.raises(InvalidInput) as refused:
        await service.track_out(
            cmd.TrackOut("L1", USER, rejects=(cmd.SiteRejectGiven(first, 1, 1, "NSOP"),))
        )
    assert "already rejected at DIE_ATTACH" in refused.value.message
    with pytest.raises(InvalidInput):
        await service.track_out(
            cmd.TrackOut("L1", USER, rejects=(cmd.SiteRejectGiven(first, 99, 1, "NSOP"),))
        )
    with pytest.raises(InvalidInput):
        await service.track_out(
            cmd.TrackOut("L1", USER, rejects=(cmd.SiteRejectGiven("C9", 1, 1, "NSOP"),))
        )
    await service.track_out(
        cmd.TrackOut("L1", USER, rejects=(cmd.SiteRejectGiven(second, 1, 1, "NON_STICK_ON_PAD"),))
    )
    await _run(service, "L1", ["STIFFENER_ATTACH", "MOLD", "DICE", "BALL_MOUNT"])
    report = await service.report("L1")
    lot = report.lot
    assert lot.state is LotState.COMPLETED
    assert lot.good_sites == total - 3
    assert lot.units == total - 3
    by_step = {y.step: y for y in report.yields}
    assert (by_step["DIE_ATTACH"].sites_in, by_step["DIE_ATTACH"].rejected) == (total, 2)
    assert (by_step["WIRE_BOND"].sites_in, by_step["WIRE_BOND"].rejected) == (total - 2, 1)
    assert by_step["MOLD"].sites_in == total - 3
    assert [m.good_sites for m in report.carriers] == [total // 2 - 1, total // 2 - 2]
    assert [p.step for p in report.path] == [
        "SUBSTRATE_LOAD",
        "DIE_ATTACH",
        "WIRE_BOND",
        "STIFFENER_ATTACH",
        "MOLD",
        "DICE",
        "BALL_MOUNT",
    ]


async def test_scrapping_sites_and_whole_lots(service: LotService) -> None:
    await _start(service, "L1", "stiffener-bga", carriers=1)
    lot = await service.get("L1")
    after = (
        await service.scrap_sites(
            cmd.ScrapSites("L1", USER, "cracked", (cmd.SiteRejectGiven("1", 1, 2, "SCRAP"),))
        )
    ).lot
    assert after.good_sites == lot.total_sites - 1
    with pytest.raises(InvalidInput):
        await service.scrap(cmd.ScrapLot("L1", USER, ""))
    scrapped = (await service.scrap(cmd.ScrapLot("L1", USER, "line down, material expired"))).lot
    assert scrapped.state is LotState.SCRAPPED
    with pytest.raises(OperationNotAllowed):
        await service.release(cmd.ReleaseLot("L1", USER))


async def test_the_flow_may_be_completed_where_only_optional_steps_remain(
    service: LotService,
) -> None:
    await _start(service, "L1", "fc-heatsink-muf")
    await service.track_in(
        cmd.TrackIn("L1", "SUBSTRATE_LOAD", USER, values={"carrier_type": "leadframe"})
    )
    await service.track_out(cmd.TrackOut("L1", USER))
    await _run(service, "L1", ["FLIP_CHIP_BOND", "HEAT_SINK_ATTACH"])
    with pytest.raises(StepNotAllowed) as refused:
        await service.complete(cmd.CompleteLot("L1", USER))
    assert refused.value.allowed == ("MOLD",)
    await _run(service, "L1", ["MOLD"])
    report = await service.report("L1")
    assert report.may_complete
    lot = (await service.complete(cmd.CompleteLot("L1", USER))).lot
    assert lot.state is LotState.COMPLETED and lot.units is None


async def _to_layer_one_via(service: LotService) -> None:
    await _start(service, "L1", "fo-organic")
    await _run(service, "L1", ["SUBSTRATE_PREP", "DIE_ATTACH", "DIELECTRIC_COAT", "VIA_PATTERN"])


async def test_rework_sends_a_held_lot_back_to_the_current_dielectric_layer(
    service: LotService,
) -> None:
    await _to_layer_one_via(service)
    with pytest.raises(OperationNotAllowed):
        await service.rework(cmd.ReworkLot("L1", "DIELECTRIC_COAT", "eng1", "not held"))
    await service.hold(cmd.HoldLot("L1", "eng1", "via opening undersized"))
    lot = (
        await service.rework(cmd.ReworkLot("L1", "DIELECTRIC_COAT", "eng1", "strip and re-coat"))
    ).lot
    assert lot.state is LotState.WAITING
    assert lot.path == ("SUBSTRATE_PREP", "DIE_ATTACH")
    assert service.next_steps(lot) == {"DIELECTRIC_COAT"}
    with pytest.raises(StepNotAllowed):
        await service.track_in(cmd.TrackIn("L1", "FILL", USER))
    await _run(service, "L1", ["DIELECTRIC_COAT", "VIA_PATTERN"])
    report = await service.report("L1")
    assert report.layer == 1
    assert [p.step for p in report.path] == [
        "SUBSTRATE_PREP",
        "DIE_ATTACH",
        "DIELECTRIC_COAT",
        "VIA_PATTERN",
    ]
    assert [e.operation for e in report.history].count(Operation.REWORK) == 1


async def test_rework_is_counted_and_limited_per_step(
    service: LotService, library: FlowLibrary
) -> None:
    await _to_layer_one_via(service)
    spec = library.get("fo-organic").steps["DIELECTRIC_COAT"].rework
    assert spec is not None
    for _ in range(spec.max_reworks):
        await service.hold(cmd.HoldLot("L1", "eng1", "thickness out"))
        await service.rework(cmd.ReworkLot("L1", "DIELECTRIC_COAT", "eng1", "re-coat"))
        await _run(service, "L1", ["DIELECTRIC_COAT", "VIA_PATTERN"])
    await service.hold(cmd.HoldLot("L1", "eng1", "thickness out again"))
    with pytest.raises(ReworkNotAllowed) as refused:
        await service.rework(cmd.ReworkLot("L1", "DIELECTRIC_COAT", "eng1", "once more"))
    assert str(spec.max_reworks) in refused.value.message


async def test_rework_cannot_undo_steps_beyond_what_the_flow_allows(service: LotService) -> None:
    await _to_layer_one_via(service)
    await _run(service, "L1", ["SPUTTER"])
    await service.hold(cmd.HoldLot("L1", "eng1", "delamination"))
    with pytest.raises(ReworkNotAllowed) as refused:
        await service.rework(cmd.ReworkLot("L1", "DIELECTRIC_COAT", "eng1", "re-coat"))
    assert "SPUTTER" in refused.value.message
    with pytest.raises(ReworkNotAllowed):
        await service.rework(cmd.ReworkLot("L1", "DIE_ATTACH", "eng1", "not reworkable"))


async def _on_bonder(service: LotService, equipment: EquipmentService, lot: str, user: str) -> None:
    """Walk a stiffener-bga lot through its first (manual) step and track it in at
    DIE_ATTACH on DB-1, as DB-1's line controller does."""
    await equipment.register(
        "line-1", [ToolRegistration("DB-1", "die_bonder", "modbus 127.0.0.1:5020", ("DIE_ATTACH",))]
    )
    await _run(service, lot, ["SUBSTRATE_LOAD"])
    await service.track_in(cmd.TrackIn(lot, "DIE_ATTACH", user, tool="DB-1", dispatched=True))


async def test_history_tells_who_did_what_with_states_before_and_after(
    service: LotService, equipment: EquipmentService
) -> None:
    await _start(service, "L1", "stiffener-bga")
    await _on_bonder(service, equipment, "L1", "alice")
    await service.track_out(cmd.TrackOut("L1", "bob", dispatched=True))
    await service.hold(cmd.HoldLot("L1", "carol", "customer request"))
    history = (await service.report("L1")).history
    history = history[:1] + history[3:]  # SUBSTRATE_LOAD's track-in and out left out
    assert [(e.operation, e.user, e.state_before, e.state_after) for e in history] == [
        (Operation.START, USER, None, LotState.WAITING),
        (Operation.TRACK_IN, "alice", LotState.WAITING, LotState.RUNNING),
        (Operation.TRACK_OUT, "bob", LotState.RUNNING, LotState.WAITING),
        (Operation.HOLD, "carol", LotState.WAITING, LotState.HOLD),
    ]
    assert history[1].tool == "DB-1" and history[1].step == "DIE_ATTACH"
    assert history[1].data["values"]["bond_force_n"] is not None
    assert history[3].reason == "customer request"
    seqs = [e.seq for e in history]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert history[0].at < history[1].at < history[2].at < history[3].at


async def test_layers_are_reported_for_fan_out_lots(service: LotService) -> None:
    await service.start(cmd.StartLot("L1", "fo-organic-insulating", USER, params={"layers": "3"}))
    report = await service.report("L1")
    assert report.layers == 3


async def test_lot_heads_give_dispatching_the_position_urgency_and_tool_of_lots(
    service: LotService, equipment: EquipmentService
) -> None:
    await service.start(cmd.StartLot("A", "stiffener-bga", USER, priority=5))
    await service.start(cmd.StartLot("B", "fo-organic", USER, priority=1))
    await service.start(cmd.StartLot("C", "stiffener-bga", USER, priority=9))
    await _on_bonder(service, equipment, "C", USER)
    heads = await service.heads([LotState.WAITING, LotState.RUNNING])
    assert [h.id for h in heads] == ["B", "A", "C"], "most urgent first"
    by_id = {h.id: h for h in heads}
    assert by_id["C"].state is LotState.RUNNING and by_id["C"].tool == "DB-1"
    assert by_id["B"].params["layers"] == 2 and by_id["B"].tool is None
    assert service.next_in_order(by_id["A"]) == ("SUBSTRATE_LOAD",)
    assert [h.id for h in await service.heads([LotState.WAITING])] == ["B", "A"]


async def test_a_dispatch_pass_reads_the_lots_and_the_tools_dispatch_modes_together(
    service: LotService, equipment: EquipmentService
) -> None:
    await equipment.register(
        "line-1",
        [
            ToolRegistration("LOADER-1", "loader", "modbus 127.0.0.1:5020", ("SUBSTRATE_LOAD",)),
            ToolRegistration("MOLD-1", "molder", "modbus 127.0.0.1:5021", ("MOLD",)),
        ],
    )
    await equipment.register(
        "line-2", [ToolRegistration("DB-9", "die_bonder", "opcua", ("DIE_ATTACH",))]
    )
    await equipment.set_dispatch("MOLD-1", DispatchMode.MANUAL, "ana", "maintenance")
    await service.start(cmd.StartLot("A", "stiffener-bga", USER, priority=5))
    await service.start(cmd.StartLot("B", "fo-organic", USER, priority=1))
    heads, modes = await service.dispatch_view([LotState.WAITING], "line-1")
    assert [h.id for h in heads] == ["B", "A"]
    assert modes == {"LOADER-1": DispatchMode.AUTO, "MOLD-1": DispatchMode.MANUAL}
    assert await service.dispatch_view([LotState.WAITING], "line-9") == (heads, {})


async def test_lot_heads_read_again_show_every_lot_as_it_is_now(
    service: LotService, equipment: EquipmentService
) -> None:
    """The SQL store keeps converted heads by lot version: a lot moved since is read anew."""
    await service.start(cmd.StartLot("A", "stiffener-bga", USER, priority=5))
    await service.start(cmd.StartLot("B", "fo-organic", USER, priority=1))
    before = {h.id: h for h in await service.heads([LotState.WAITING, LotState.RUNNING])}
    await _on_bonder(service, equipment, "A", USER)
    after = {h.id: h for h in await service.heads([LotState.WAITING, LotState.RUNNING])}
    assert before["A"].state is LotState.WAITING and before["A"].tool is None
    assert after["A"].state is LotState.RUNNING and after["A"].tool == "DB-1"
    assert after["B"] == before["B"]
    await service.track_out(cmd.TrackOut("A", USER, dispatched=True))
    (a,) = [h for h in await service.heads([LotState.WAITING]) if h.id == "A"]
    assert a.path == ("SUBSTRATE_LOAD", "DIE_ATTACH") and a.tool is None


async def test_track_ins_in_one_transaction_write_the_allowed_ones_and_give_back_each_refusal(
    service: LotService,
) -> None:
    await service.start(cmd.StartLot("A", "stiffener-bga", USER))
    await service.start(cmd.StartLot("B", "stiffener-bga", USER))
    results = await service.track_in_all(
        [
            cmd.TrackIn("A", "SUBSTRATE_LOAD", USER),
            cmd.TrackIn("B", "MOLD", USER),  # not B's next step
            cmd.TrackIn("NOPE", "SUBSTRATE_LOAD", USER),
        ]
    )
    a, b, nope = results
    assert isinstance(a, TrackedIn) and a.lot.state is LotState.RUNNING
    # what running the step takes comes with it, read in the same transaction
    assert a.view.lot == a.lot and a.view.jobs == []
    assert a.view.carriers == await service.carriers("A")
    assert a.view.rejected == []
    assert [e.operation for e in a.entries] == [Operation.TRACK_IN] and a.entries[0].seq
    assert isinstance(b, LotTrackerError) and "MOLD" in b.message
    assert isinstance(nope, UnknownLot)
    assert (await service.get("A")).running is not None
    assert (await service.get("B")).state is LotState.WAITING
    assert [e.operation for e in (await service.report("B")).history] == [Operation.START]


async def test_track_ins_in_one_transaction_write_nothing_when_a_lot_moved_meanwhile(
    service: LotService,
) -> None:
    await service.start(cmd.StartLot("A", "stiffener-bga", USER))
    await service.start(cmd.StartLot("B", "stiffener-bga", USER))
    with pytest.raises(ConcurrentUpdate):
        await service.track_in_all(  # the same lot twice: the second finds it moved
            [
                cmd.TrackIn("B", "SUBSTRATE_LOAD", USER),
                cmd.TrackIn("A", "SUBSTRATE_LOAD", USER),
                cmd.TrackIn("A", "SUBSTRATE_LOAD", "another"),
            ]
        )
    for lot in ("A", "B"):
        assert (await service.get(lot)).state is LotState.WAITING
    assert await service.track_in_all([]) == []


async def test_a_running_lot_knows_the_steps_it_waits_for_once_tracked_out(
    service: LotService,
) -> None:
    """What the dispatcher is told about a tool's lot before its step is tracked out is what
    the lot then waits for, at every step of a walk through each flow, layers included."""
    for flow in sorted(service.flows.flows):
        lot_id = f"L-{flow}"
        await _start(service, lot_id, flow)
        lot = await service.get(lot_id)
        assert service.next_in_order_after_step(lot) == (), "not running"
        steps = 0
        while lot.state is LotState.WAITING and (following := service.next_in_order(lot)):
            await service.track_in(cmd.TrackIn(lot_id, following[0], USER))
            running = await service.get(lot_id)
            predicted = service.next_in_order_after_step(running)
            lot = (await service.track_out(cmd.TrackOut(lot_id, USER))).lot
            assert predicted == service.next_in_order(lot), running.running
            steps += 1
        assert lot.state is LotState.COMPLETED and steps > 5, flow


async def test_an_operation_decided_on_a_version_of_the_lot_is_refused_once_it_moved(
    service: LotService,
) -> None:
    """Found by the station's probe: a page's version was compared before the operation, not
    in its transaction, so two people acting on the same lot within that gap both acted on
    what they saw. ``as_seen`` checks it where the lot is read to be written: a lot moved
    since refuses the operation with ConcurrentUpdate and nothing changes; the version seen,
    or another lot of the same operation, goes through."""
    await _start(service, "V1", "stiffener-bga")
    seen = (await service.get("V1")).version
    await service.track_in(cmd.TrackIn("V1", "SUBSTRATE_LOAD", USER))  # another person
    before = await _snapshot(service, "V1")
    stale = service.as_seen("V1", seen)
    with pytest.raises(ConcurrentUpdate, match=f"changed since its version {seen} was seen"):
        await stale.track_out(cmd.TrackOut("V1", USER))
    with pytest.raises(ConcurrentUpdate):
        await stale.abort(cmd.AbortStep("V1", USER, "wrong carrier"))
    assert await _snapshot(service, "V1") == before
    now = (await service.get("V1")).version
    moved = await service.as_seen("V1", now).track_out(cmd.TrackOut("V1", USER))
    assert moved.lot.step == "SUBSTRATE_LOAD" and moved.lot.version > now
    await _start(service, "V2", "stiffener-bga")
    await stale.track_in(cmd.TrackIn("V2", "SUBSTRATE_LOAD", USER))  # not the lot seen
