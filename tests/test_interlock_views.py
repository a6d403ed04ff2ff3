"""The CLI prints a person's view of a durable or a material lot from its JSON, whichever way
it got it: reading one back from its JSON gives the same record (its clocks, status and
wording included)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from mes.domain import durables, materials
from pkgline.interlock_views import (
    durable_dict,
    durable_from_dict,
    material_dict,
    material_from_dict,
)

NOW = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)


def test_a_durable_read_back_from_its_json_is_the_same_durable() -> None:
    added, _ = durables.add("CAP-1", "capillary", 500, 0.5, "eng1", NOW, description="4x")
    mounted, _ = durables.mount(added, "WB-1", "wire_bonder", [], "tech1", NOW)
    for d in (added, mounted):
        back = durable_from_dict(durable_dict(d))
        assert back == d
        assert back.text() == "capillary CAP-1 at 0 of 500 touchdowns (0 %)"


def test_a_material_lot_read_back_from_its_json_is_the_same_lot_frozen_or_not() -> None:
    plus_one = timezone(timedelta(hours=1))
    expires = datetime(2099, 6, 30, 12, 0, tzinfo=plus_one)
    wire, _ = materials.add("W-1", "wire", expires, "eng1", NOW, part_number="AU-25")
    compound, _ = materials.add("EMC-1", "mold_compound", expires, "eng1", NOW, thaw_minutes=240)
    thawed, _ = materials.thaw(compound, "op1", NOW + timedelta(hours=1))
    for m in (wire, compound, thawed):
        back = material_from_dict(material_dict(m))
        assert back == m
        later = NOW + timedelta(hours=3)
        assert back.problem(later) == m.problem(later)
    assert material_from_dict(material_dict(thawed)).usable_from == NOW + timedelta(hours=5)
    assert material_from_dict(material_dict(compound)).problem(NOW) is not None  # still frozen


def test_a_material_lot_s_status_says_which_clock_holds_it() -> None:
    """Out of the freezer or not is told apart: 'frozen' asks for a thaw, 'thawing' only for
    time."""
    from pkgline.interlock_views import material_status

    expires = NOW + timedelta(days=30)
    compound, _ = materials.add(
        "EMC-1", "mold_compound", expires, "eng1", NOW, thaw_minutes=240, floor_life_minutes=600
    )
    thawed, _ = materials.thaw(compound, "op1", NOW)
    wire, _ = materials.add("W-1", "wire", expires, "eng1", NOW)
    assert material_status(compound, NOW + timedelta(hours=5)) == "frozen"
    assert material_status(thawed, NOW + timedelta(hours=1)) == "thawing"
    assert material_status(thawed, NOW + timedelta(hours=5)) == "usable"
    assert material_status(thawed, NOW + timedelta(hours=10)) == "floor life ended"
    assert material_status(wire, NOW + timedelta(days=31)) == "expired"
