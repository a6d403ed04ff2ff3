"""Split and merge on every store: carriers move between lots at the same position, a split
leaves its parent a carrier and names each carrier once, and a merge needs the same flow,
position, parameters and the values later limits check."""

from __future__ import annotations

import pytest

from mes.domain import commands as cmd
from mes.domain.errors import InvalidInput, OperationNotAllowed, SplitMergeNotAllowed
from mes.domain.model import LotState
from mes.service import LotService
from tests.mes.test_service import USER, _run, _start


async def test_split_and_merge_move_carriers_between_lots_at_the_same_position(
    service: LotService,
) -> None:
    await _start(service, "L1", "stiffener-bga", carriers=3)
    await _run(service, "L1", ["SUBSTRATE_LOAD", "DIE_ATTACH"])
    parent = await service.get("L1")
    child = (await service.split(cmd.SplitLot("L1", "L1A", ("2", parent.carriers[2]), USER))).lot
    assert child.carriers == parent.carriers[1:]
    assert child.path == parent.path and child.parent_id == "L1"
    assert (await service.get("L1")).carriers == parent.carriers[:1]
    child_report = await service.report("L1A")
    assert [p.step for p in child_report.path] == ["SUBSTRATE_LOAD", "DIE_ATTACH"], "inherited"
    assert (await service.report("L1")).children == ("L1A",)

    await _run(service, "L1A", ["WIRE_BOND"])
    with pytest.raises(SplitMergeNotAllowed) as refused:
        await service.merge(cmd.MergeLots("L1A", "L1", USER))
    assert "position" in refused.value.message
    await _run(service, "L1", ["WIRE_BOND"])
    merged = (await service.merge(cmd.MergeLots("L1A", "L1", USER))).lot
    assert merged.carriers == parent.carriers
    assert merged.good_sites == parent.good_sites
    assert (await service.get("L1A")).state is LotState.MERGED
    with pytest.raises(OperationNotAllowed):
        await service.track_in(cmd.TrackIn("L1A", "STIFFENER_ATTACH", USER))


async def test_a_merge_needs_the_values_later_limits_check_alike(service: LotService) -> None:
    """The merged lot keeps the target's recorded values: a lot loaded 300 um thick (to be
    refused at VIA_PATTERN by claim 002: 109 until thinned) merged into one loaded 100 um
    thick would be patterned unthinned, so the merge is refused, saying which value; lots
    loaded alike merge."""
    bond = ["DIE_ATTACH", "FILL", "GRIND", "SUBSTRATE_BOND"]
    for lot, thickness in (("I1", 300.0), ("I2", 100.0), ("I3", 100.0)):
        await _start(service, lot, "fo-organic-insulating")
        await service.track_in(
            cmd.TrackIn(lot, "CARRIER_LOAD", USER, values={"insulating_thickness_um": thickness})
        )
        await service.track_out(cmd.TrackOut(lot, USER))
        await _run(service, lot, bond)
    flow = service.flows.get("fo-organic-insulating")
    assert "insulating_thickness_um" in flow.checked_later()
    with pytest.raises(SplitMergeNotAllowed) as refused:
        await service.merge(cmd.MergeLots("I1", "I2", USER))
    assert refused.value.message == (
        "lot I1 cannot be merged into I2: they differ in values recorded at earlier steps "
        "that later limits check: insulating_thickness_um 300 vs 100"
    )
    assert (await service.get("I1")).state is LotState.WAITING
    merged = (await service.merge(cmd.MergeLots("I3", "I2", USER))).lot
    assert len(merged.carriers) == 4


async def test_a_split_must_leave_the_parent_a_carrier(service: LotService) -> None:
    await _start(service, "L1", "stiffener-bga", carriers=2)
    with pytest.raises(SplitMergeNotAllowed):
        await service.split(cmd.SplitLot("L1", "L1A", ("1", "2"), USER))
    with pytest.raises(InvalidInput):
        await service.split(cmd.SplitLot("L1", "L1A", ("7",), USER))
    first = (await service.get("L1")).carriers[0]
    with pytest.raises(InvalidInput) as twice:  # by position and by id: a typo, not a wish
        await service.split(cmd.SplitLot("L1", "L1A", ("1", first), USER))
    assert twice.value.message == (
        f"carrier {first} of lot L1 is named more than once (1, {first}); expected each "
        "carrier once, by id or by position"
    )
    assert len((await service.get("L1")).carriers) == 2
    await _start(service, "L2", "fc-heatsink-muf", carriers=2)
    with pytest.raises(SplitMergeNotAllowed) as apart:
        await service.merge(cmd.MergeLots("L2", "L1", USER))
    assert "lot parameters die_area_mm2=100 vs none" in apart.value.message
