"""Set-point windows of recipe values (line practice, ``window:`` in the flow files): a
track-in that sets a recipe value outside its window is refused as bad input, naming the
value, the window, its origin and what is expected, and changes nothing; at the window's
limits it is accepted. A dispatch pass (the line controller's) is held to it the same way."""

from __future__ import annotations

import pytest

from flows import FlowLibrary
from mes.adapters.memory import MemoryUnitOfWorkFactory
from mes.domain import commands as cmd
from mes.domain.errors import InvalidInput
from mes.domain.model import LotState
from mes.service import LotService, TrackedIn
from tests.mes.conftest import Clock

OP = "op1"
TO_MOLD = ("SUBSTRATE_LOAD", "DIE_ATTACH", "WIRE_BOND", "STIFFENER_ATTACH")


async def _after(service: LotService, lot_id: str, steps: tuple[str, ...]) -> None:
    await service.start(cmd.StartLot(lot_id, "stiffener-bga", OP))
    for step in steps:
        await service.track_in(cmd.TrackIn(lot_id, step, OP))
        await service.track_out(cmd.TrackOut(lot_id, OP))


@pytest.fixture
def memory(library: FlowLibrary) -> LotService:
    return LotService(MemoryUnitOfWorkFactory(), library, Clock())


@pytest.mark.parametrize(
    ("value", "accepted"),
    [("100", True), ("160", True), ("99.99", False), ("160.01", False), ("900", False)],
)
async def test_a_set_point_at_its_windows_limit_is_accepted_and_just_past_it_refused(
    memory: LotService, value: str, accepted: bool
) -> None:
    """DIE_ATTACH bond_temperature_c: window 100 to 160 degC (line practice)."""
    await _after(memory, "L1", ("SUBSTRATE_LOAD",))
    given = cmd.TrackIn("L1", "DIE_ATTACH", OP, values={"bond_temperature_c": value})
    if accepted:
        lot = (await memory.track_in(given)).lot
        assert lot.running is not None
        assert lot.running.values["bond_temperature_c"] == float(value)
        return
    with pytest.raises(InvalidInput) as refused:
        await memory.track_in(given)
    assert refused.value.field == "values.bond_temperature_c"
    assert f"bond_temperature_c {value} degC is outside its set-point window 100 to 160 degC" in (
        refused.value.message
    )


async def test_a_mold_temperature_outside_its_window_is_refused_and_changes_nothing(
    service: LotService,
) -> None:
    await _after(service, "L1", TO_MOLD)
    before = await service.get("L1")
    history = (await service.report("L1")).history
    given = {"mold_temperature_c": "900", "cure_time_s": "30"}
    with pytest.raises(InvalidInput) as refused:
        await service.track_in(cmd.TrackIn("L1", "MOLD", OP, tool="MOLD-1", values=given))
    said = refused.value
    assert said.field == "values.mold_temperature_c" and said.lot_id == "L1"
    assert said.message == (
        "track-in of lot L1 at MOLD refused: mold_temperature_c 900 degC is outside its "
        "set-point window 165 to 185 degC, target 175 degC (line practice: epoxy molding "
        "compound transfer molding): above the upper limit 185 degC; cure_time_s 30 s is "
        "outside its set-point window 60 to 180 s, target 90 s (line practice: epoxy molding "
        "compound in-mold cure): below the lower limit 60 s; expected mold_temperature_c from "
        "165 to 185 degC (default 175 degC); cure_time_s from 60 to 180 s (default 90 s); "
        "nothing was changed"
    )
    assert await service.get("L1") == before
    assert (await service.report("L1")).history == history
    lot = (await service.track_in(cmd.TrackIn("L1", "MOLD", OP))).lot  # the defaults: inside
    assert lot.state is LotState.RUNNING and lot.running is not None
    assert lot.running.values["mold_temperature_c"] == 175.0


async def test_a_dispatch_pass_with_a_value_outside_its_window_is_refused_too(
    memory: LotService,
) -> None:
    """The line controller dispatches with the defaults; a track-in of a dispatch pass that
    gave a value outside its window is refused as any other (the others are written)."""
    await _after(memory, "L1", TO_MOLD)
    await _after(memory, "L2", ("SUBSTRATE_LOAD",))
    outside = cmd.TrackIn(
        "L1", "MOLD", "ctl", tool="MOLD-1", values={"transfer_pressure_mpa": 12}, dispatched=True
    )
    inside = cmd.TrackIn("L2", "DIE_ATTACH", OP, values={"bond_force_n": 20})
    refused, tracked = await memory.track_in_all([outside, inside])
    assert isinstance(refused, InvalidInput)
    assert refused.field == "values.transfer_pressure_mpa"
    assert "transfer_pressure_mpa 12 MPa is outside its set-point window 4 to 10 MPa" in str(
        refused
    )
    assert isinstance(tracked, TrackedIn)
    assert (await memory.get("L1")).state is LotState.WAITING
    assert (await memory.get("L2")).state is LotState.RUNNING
