"""What a tool would refuse every track-in for, read off what is on it (line status, the
station's tiles): a spent durable mounted on it, a material lot loaded on it that is expired,
frozen, thawing or past its floor life, each with what is expected, by the interlocks' own
rules. Pure rules first, then the reads of what is on the tools on every store."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from mes.domain import durables as durable_rules
from mes.domain import materials as material_rules
from mes.domain.equipment import ToolRegistration
from mes.domain.errors import InterlockRefused
from mes.domain.interlocks import consumable_blocks
from mes.durables import DurableService
from mes.equipment import EquipmentService
from mes.materials import MaterialService
from mes.ports import UnitOfWorkFactory
from tests.mes.conftest import Clock

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def _durable(durable_id: str, count: int, tool: str | None) -> durable_rules.Durable:
    added = durable_rules.add(durable_id, "capillary", 1000, 0.9, "eng", T0)[0]
    return replace(added, count=count, tool_id=tool)


def _material(
    material_id: str, kind: str, tool: str | None, **given: int
) -> material_rules.Material:
    added = material_rules.add(material_id, kind, T0 + timedelta(days=30), "eng", T0, **given)[0]
    return replace(added, tool_id=tool)


def test_only_what_is_on_a_tool_and_in_the_way_blocks_it_and_says_what_is_expected() -> None:
    durables = [
        _durable("CAP-1", 1000, "WB-1"),  # spent, mounted: blocks WB-1
        _durable("CAP-2", 999, "WB-2"),  # one touchdown left: warns, does not block
        _durable("CAP-3", 5000, None),  # spent, on the shelf: blocks nothing
    ]
    materials = [
        _material("EMC-1", "mold_compound", "MOLD-1"),  # still frozen
        _material("WIRE-1", "wire", "WB-2"),  # usable
        _material("WIRE-2", "wire", None),  # off the tools
    ]
    blocks = consumable_blocks(durables, materials, T0 + timedelta(hours=1))
    assert set(blocks) == {"WB-1", "MOLD-1"}
    assert blocks["WB-1"] == [
        "capillary CAP-1 at 1,000 of 1,000 touchdowns (100 %), at or past its life; expected "
        "capillary CAP-1 under its life of 1,000 touchdowns (count 1,000): unmount it and "
        "mount a new one"
    ]
    (frozen,) = blocks["MOLD-1"]
    assert "mold_compound EMC-1 is still frozen" in frozen
    assert "expected EMC-1 out of the freezer at least 4 h before use" in frozen
    # the words are those a refused track-in says
    with pytest.raises(InterlockRefused) as refused:
        material_rules.check_materials("L1", "MOLD", "MOLD-1", [materials[0]], T0)
    assert refused.value.expected in frozen
    expired = consumable_blocks([], [materials[1]], T0 + timedelta(days=31))
    assert list(expired) == ["WB-2"] and "expired" in expired["WB-2"][0]


async def test_the_durables_mounted_and_material_lots_loaded_on_any_tool_are_read_alone(
    store: UnitOfWorkFactory, clock: Clock
) -> None:
    await EquipmentService(store, clock).register(
        "line-a",
        [
            ToolRegistration("WB-1", "wire_bonder", "modbus 127.0.0.1:5021", ("WIRE_BOND",)),
            ToolRegistration("WB-2", "wire_bonder", "modbus 127.0.0.1:5022", ("WIRE_BOND",)),
        ],
    )
    durables, materials = DurableService(store, clock), MaterialService(store, clock)
    for durable_id in ("CAP-1", "CAP-2", "CAP-3"):
        await durables.add(durable_id, "capillary", 1000, "eng")
    await durables.mount("CAP-3", "WB-1", "eng")
    await durables.mount("CAP-1", "WB-2", "eng")
    expires = clock.now + timedelta(days=30)
    for material_id in ("WIRE-1", "WIRE-2", "WIRE-3"):
        await materials.add(material_id, "wire", expires, "eng")
    await materials.load("WIRE-2", "WB-1", "eng")
    await materials.load("WIRE-3", "WB-2", "eng")
    await materials.unload("WIRE-3", "eng", "spool empty")

    assert [(d.id, d.tool_id) for d in await durables.list(mounted=True)] == [
        ("CAP-1", "WB-2"),
        ("CAP-3", "WB-1"),
    ]
    assert [(m.id, m.tool_id) for m in await materials.find(loaded=True)] == [("WIRE-2", "WB-1")]
    assert len(await durables.list()) == 3 and len(await materials.find()) == 3
