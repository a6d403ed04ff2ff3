"""An unknown tool's refusal names the tools there are: all of them on a small line, the
closest few and how many on a plant's line of hundreds (mes.known_tools)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mes.domain.equipment import ToolRegistration
from mes.domain.errors import UnknownTool
from mes.durables import DurableService
from mes.equipment import EquipmentService
from mes.known_tools import ALL_NAMED_UP_TO, unknown_tool
from mes.materials import MaterialService
from mes.ports import UnitOfWorkFactory
from tests.mes.conftest import Clock

PLANT = [f"WB-{n}" for n in range(1, 201)] + [f"DB-{n}" for n in range(1, 101)]


def test_a_small_line_names_every_tool() -> None:
    refused = unknown_tool("WB-9", ["WB-2", "DB-1", "WB-1"])
    assert refused.message == "there is no tool WB-9"
    assert refused.allowed == ("DB-1", "WB-1", "WB-2")
    assert refused.tool_id == "WB-9"
    tools = [f"T-{n}" for n in range(ALL_NAMED_UP_TO)]
    assert unknown_tool("X", tools).allowed == tuple(sorted(tools))


def test_a_line_with_no_tool_says_so() -> None:
    refused = unknown_tool("WB-1", [])
    assert refused.message == "there is no tool WB-1 (no tool is registered yet)"
    assert refused.allowed == ()


def test_a_plants_line_names_the_closest_tools_and_how_many_there_are() -> None:
    refused = unknown_tool("WD-17", PLANT)  # a D for a B
    assert refused.allowed and len(refused.allowed) <= 5
    assert "WB-17" in refused.allowed and "DB-17" in refused.allowed
    assert refused.message.startswith("there is no tool WD-17 (300 tools are registered; ")
    assert "the closest: " in refused.message and "WB-17" in refused.message
    assert len(refused.message) < 200  # read by a person: not the 300 ids


def test_a_plants_line_says_when_no_tool_is_close() -> None:
    refused = unknown_tool("MOLDER-ZZZZ", PLANT)
    assert refused.allowed == ()
    assert refused.message == (
        "there is no tool MOLDER-ZZZZ (300 tools are registered; none of them close to it)"
    )


async def test_commands_that_name_a_tool_refuse_an_unknown_one_on_a_plants_line(
    store: UnitOfWorkFactory, clock: Clock
) -> None:
    """Mounting a durable and loading a material lot on a misspelt tool of a line of 300."""
    await EquipmentService(store, clock).register(
        "plant",
        [
            ToolRegistration(t, "wire_bonder", "modbus 127.0.0.1:5020", ("WIRE_BOND",))
            for t in PLANT
        ],
    )
    durables = DurableService(store, clock)
    await durables.add("CAP-1", "capillary", 1000, "eng")
    with pytest.raises(UnknownTool) as refused:
        await durables.mount("CAP-1", "WD-17", "tech")
    assert "WB-17" in refused.value.allowed and len(refused.value.allowed) <= 5
    assert "300 tools are registered" in refused.value.message
    materials = MaterialService(store, clock)
    await materials.add("W-1", "wire", clock() + timedelta(days=90), "eng")
    with pytest.raises(UnknownTool) as refused:
        await materials.load("W-1", "WD-17", "tech")
    assert "WB-17" in refused.value.allowed
