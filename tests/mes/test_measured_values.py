"""Measured values at track-out: a value outside its spec limits (flow files, beside the
claimed limits) holds the lot with the value, the limit and which kind, for an operator's
track-out and for a tool's job alike; a value that cannot be physical (a mold temperature of
-300 C, not a number) is refused as bad data and changes nothing, as is a lot parameter past 64 bits at a start.
Every store in turn."""

from __future__ import annotations

import pytest

from mes.domain import commands as cmd
from mes.domain.commands import GivenValue
from mes.domain.equipment import ToolRegistration
from mes.domain.errors import InvalidInput, LimitViolated
from mes.domain.model import HoldSource, LotState
from mes.equipment import EquipmentService
from mes.service import LotService

OP = "op1"


async def _at_die_attach(service: LotService, lot_id: str, carriers: int = 1) -> None:
    await service.start(cmd.StartLot(lot_id, "stiffener-bga", OP, carriers=carriers))
    await service.track_in(cmd.TrackIn(lot_id, "SUBSTRATE_LOAD", OP))
    await service.track_out(cmd.TrackOut(lot_id, OP))
    await service.track_in(cmd.TrackIn(lot_id, "DIE_ATTACH", OP))


async def test_a_value_outside_its_spec_limit_holds_the_lot_with_value_limit_and_kind(
    service: LotService,
) -> None:
    await _at_die_attach(service, "L1")
    outcome = await service.track_out(
        cmd.TrackOut("L1", OP, measured={"bond_line_thickness_um": "44", "xy_offset_um": "3"})
    )
    lot = outcome.lot
    assert lot.state is LotState.HOLD and lot.hold is not None
    assert lot.hold.source is HoldSource.LIMIT
    assert "bond_line_thickness_um 44 um is outside its upper spec limit 40 um" in lot.hold.reason
    (entry,) = outcome.entries
    (violation,) = entry.data["violations"]
    assert violation == {
        "value": "bond_line_thickness_um",
        "given": 44.0,
        "expected": "<= 40 um, target 25 um",
        "claim": "line practice: die attach film",
        "kind": "spec_upper",
    }


async def test_values_within_their_spec_limits_let_the_lot_go_on(service: LotService) -> None:
    await _at_die_attach(service, "L1")
    outcome = await service.track_out(
        cmd.TrackOut("L1", OP, measured={"bond_line_thickness_um": "40", "xy_offset_um": "15"})
    )
    assert outcome.lot.state is LotState.WAITING and outcome.lot.hold is None


async def test_one_carrier_out_of_spec_in_a_tools_job_holds_the_lot(
    service: LotService, equipment: EquipmentService
) -> None:
    await equipment.register(
        "line-a", [ToolRegistration("DB-1", "die_bonder", "modbus 127.0.0.1", ("DIE_ATTACH",))]
    )
    await service.start(cmd.StartLot("L1", "stiffener-bga", OP, carriers=2))
    await service.track_in(cmd.TrackIn("L1", "SUBSTRATE_LOAD", OP))
    await service.track_out(cmd.TrackOut("L1", OP))
    await service.track_in(cmd.TrackIn("L1", "DIE_ATTACH", "ctl", tool="DB-1", dispatched=True))
    first, second = (await service.get("L1")).carriers
    for job_id, carrier, blt in (("J1", first, 24.0), ("J2", second, 8.0)):
        await service.start_job(cmd.StartJob("L1", job_id, "DB-1", carrier, "ctl"))
        done = await service.record_job(
            cmd.RecordJob(job_id, "ctl", {"bond_line_thickness_um": blt, "xy_offset_um": 2.0})
        )
    lot = done.lot
    assert lot.state is LotState.HOLD and lot.hold is not None
    assert "bond_line_thickness_um 8 um is outside its lower spec limit 10 um" in lot.hold.reason


@pytest.mark.parametrize(
    ("value", "why"),
    [("-300", "is below absolute zero (-273.15 degC)"), (float("nan"), "is not a finite number")],
)
async def test_a_recipe_temperature_that_cannot_be_physical_is_refused_as_bad_data(
    service: LotService, value: str | float, why: str
) -> None:
    await service.start(cmd.StartLot("L1", "stiffener-bga", OP))
    await service.track_in(cmd.TrackIn("L1", "SUBSTRATE_LOAD", OP))
    await service.track_out(cmd.TrackOut("L1", OP))
    before = await service.get("L1")
    with pytest.raises(InvalidInput) as refused:
        await service.track_in(
            cmd.TrackIn("L1", "DIE_ATTACH", OP, values={"bond_temperature_c": value})
        )
    assert "refused as bad data: bond_temperature_c" in refused.value.message
    assert why in refused.value.message
    assert await service.get("L1") == before


async def test_a_measured_value_that_cannot_be_physical_is_refused_and_changes_nothing(
    service: LotService,
) -> None:
    await _at_die_attach(service, "L1")
    before = await service.get("L1")
    with pytest.raises(InvalidInput, match="bond_force_n inf N is not a finite number"):
        await service.track_out(cmd.TrackOut("L1", OP, measured={"bond_force_n": float("inf")}))
    with pytest.raises(InvalidInput, match="expected a number in N"):  # the text "inf" too
        await service.track_out(cmd.TrackOut("L1", OP, measured={"bond_force_n": "inf"}))
    assert await service.get("L1") == before


@pytest.mark.parametrize(
    ("measured", "refused"),
    [
        ({"bond_force_n": -2}, "bond_force_n -2 N is negative"),
        ({"wire_pull_g": "-1"}, None),  # not a value of DIE_ATTACH: the rules say so
        ({"bond_line_thickness_um": -5}, "bond_line_thickness_um -5 um is negative"),
    ],
)
async def test_a_negative_size_or_force_is_refused_as_bad_data(
    service: LotService, measured: dict[str, GivenValue], refused: str | None
) -> None:
    """A force, a thickness, a time cannot be negative (found by the CLI probe: -2 N was
    recorded); nothing changes."""
    await _at_die_attach(service, "L1")
    before = await service.get("L1")
    with pytest.raises(InvalidInput) as said:
        await service.track_out(cmd.TrackOut("L1", OP, measured=measured))
    if refused is not None:
        assert refused in said.value.message and "refused as bad data" in said.value.message
    assert await service.get("L1") == before


@pytest.mark.parametrize("layers", ["9" * 400, 2**64])
async def test_a_lot_parameter_past_64_bits_is_refused_as_bad_data(
    service: LotService, layers: GivenValue
) -> None:
    """A whole number no database column keeps, given to a lot parameter with claimed limits
    (found at the station's start page: the limit's check raised OverflowError, a 500 and
    the connection dropped) is refused as bad data; no lot is started."""
    with pytest.raises(InvalidInput) as said:
        await service.start(cmd.StartLot("L1", "fo-organic", OP, params={"layers": layers}))
    assert "start of lot L1 refused as bad data: layers" in said.value.message
    assert "outside the range of a 64-bit whole number" in said.value.message
    assert await service.find() == []


def test_a_length_with_a_sign_may_be_negative() -> None:
    from flows.model import ValueSpec
    from mes.domain.physical import unphysical

    offset = ValueSpec("xy_offset_um", "float", None, "um", "an offset")
    thickness = ValueSpec("die_thickness_um", "float", None, "um", "a thickness")
    assert unphysical(offset, -3.0) is None
    assert unphysical(thickness, -3.0) is not None
    assert unphysical(thickness, 0.0) is None


@pytest.mark.parametrize(
    ("measured", "rejects", "field"),
    [
        ({"xy_offset_um": "twelve"}, (), "measured.xy_offset_um"),  # not a number
        ({"bond_force_n": -2}, (), "measured.bond_force_n"),  # cannot be physical
        ({"wire_pull_g": "1"}, (), "measured.wire_pull_g"),  # not one DIE_ATTACH measures
        ({}, (cmd.SiteRejectGiven("1", 9, 9, "VOID"),), "rejects"),  # off the carrier
        ({}, (cmd.SiteRejectGiven("7", 1, 1, "VOID"),), "rejects"),  # no such carrier
        ({}, (cmd.SiteRejectGiven("1", 1, 1, "void"),), "rejects"),  # a malformed code
    ],
)
async def test_a_refused_track_out_names_the_input_it_is_about(
    service: LotService,
    measured: dict[str, GivenValue],
    rejects: tuple[cmd.SiteRejectGiven, ...],
    field: str,
) -> None:
    """``InvalidInput.field`` says which of the command's inputs was refused (the station
    marks that field of its form with it); nothing changes."""
    await _at_die_attach(service, "L1")
    before = await service.get("L1")
    with pytest.raises(InvalidInput) as said:
        await service.track_out(cmd.TrackOut("L1", OP, measured=measured, rejects=rejects))
    assert said.value.field == field
    assert await service.get("L1") == before


async def test_a_refused_track_in_start_or_scrap_of_sites_names_the_input_it_is_about(
    service: LotService,
) -> None:
    with pytest.raises(InvalidInput) as said:
        await service.start(cmd.StartLot("L0", "fo-organic", OP, params={"layers": 2**64}))
    assert said.value.field == "params.layers"
    await _at_die_attach(service, "L1")
    await service.abort(cmd.AbortStep("L1", OP, "again, with its recipe"))
    for values, field in (
        ({"bond_temperature_c": "-300"}, "values.bond_temperature_c"),  # cannot be physical
        ({"bond_force_n": "a lot"}, "values.bond_force_n"),  # not a number
    ):
        with pytest.raises(InvalidInput) as said:
            await service.track_in(cmd.TrackIn("L1", "DIE_ATTACH", OP, values=values))
        assert said.value.field == field
    with pytest.raises(InvalidInput) as said:
        await service.scrap_sites(
            cmd.ScrapSites("L1", OP, "dropped", (cmd.SiteRejectGiven("1", 0, 1, "SCRAP"),))
        )
    assert said.value.field == "sites"


async def test_a_track_in_or_start_refused_by_a_claimed_limit_names_the_inputs_it_is_about(
    service: LotService,
) -> None:
    """``LimitViolated.fields``: the command's input each violation is about, in their order
    (the station marks those fields of its form); nothing changes."""
    with pytest.raises(LimitViolated) as violated:
        await service.start(cmd.StartLot("L0", "fo-organic", OP, params={"layers": "9"}))
    assert violated.value.fields == ("params.layers",)
    await service.start(cmd.StartLot("L1", "fo-organic", OP))
    before = await service.get("L1")
    values = {"substrate_material": "glass", "cavity_method": "drilled", "cavity_depth_um": "90"}
    with pytest.raises(LimitViolated) as violated:
        await service.track_in(cmd.TrackIn("L1", "SUBSTRATE_PREP", OP, values=values))
    assert violated.value.fields == ("values.substrate_material", "values.cavity_method")
    assert [v.value_name for v in violated.value.violations] == [
        "substrate_material",
        "cavity_method",
    ]
    assert set(violated.value.about()) == {"values.substrate_material", "values.cavity_method"}
    assert await service.get("L1") == before


async def test_a_limit_on_a_value_recorded_at_an_earlier_step_names_no_input(
    service: LotService,
) -> None:
    """A track-in refused for a value an earlier step recorded (VIA_PATTERN's check of the
    insulating substrate's thickness, given at CARRIER_LOAD) names no input of the track-in,
    though a step's recipe could hold a value of that name."""
    await service.start(cmd.StartLot("L1", "fo-organic-insulating", OP))
    thick = {"insulating_thickness_um": "250"}
    await service.track_in(cmd.TrackIn("L1", "CARRIER_LOAD", OP, values=thick))
    await service.track_out(cmd.TrackOut("L1", OP))
    for step, values in (
        ("DIE_ATTACH", {}),
        ("FILL", {"filling_material": "epoxy"}),
        ("GRIND", {}),
        ("SUBSTRATE_BOND", {}),
    ):
        await service.track_in(cmd.TrackIn("L1", step, OP, values=values))
        await service.track_out(cmd.TrackOut("L1", OP))
    with pytest.raises(LimitViolated) as violated:
        await service.track_in(cmd.TrackIn("L1", "VIA_PATTERN", OP))
    (violation,) = violated.value.violations
    assert violation.value_name == "insulating_thickness_um"
    assert violated.value.fields == (None,) and violated.value.about() == {}
