"""Tool lists at plant size: pages by tool id after a cursor, filters (line, class, E10 state,
dispatch mode)
applied by the store, how many tools match and whether more follow; on every store (memory,
SQLite, PostgreSQL). Bad input (a cursor naming no tool, an empty page, a state that is no
E10 state) is refused with what was expected."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mes.domain.equipment import DispatchMode, ToolRegistration, ToolSnapshot
from mes.domain.errors import InvalidInput, UnknownTool
from mes.equipment import EquipmentService
from mes.ports import ToolQuery

CLASSES = ("die_bonder", "wire_bonder", "molder")


async def _register(equipment: EquipmentService) -> dict[str, tuple[str, str]]:
    """40 tools on two lines, three classes; registered out of id order. Answer: the line
    and class of each tool by id."""
    made: dict[str, tuple[str, str]] = {}
    for line, n in (("line-b", 15), ("line-a", 25)):
        regs = []
        for i in reversed(range(n)):
            tool_id = f"{line[-1].upper()}-{i:02d}"
            cls = CLASSES[i % 3]
            regs.append(ToolRegistration(tool_id, cls, "modbus 127.0.0.1", ("DIE_ATTACH",)))
            made[tool_id] = (line, cls)
        await equipment.register(line, regs)
    return made


async def _every_page(equipment: EquipmentService, query: ToolQuery) -> list[list[str]]:
    pages: list[list[str]] = []
    while True:
        page = await equipment.page(query)
        pages.append([t.id for t in page.tools])
        if not page.more:
            return pages
        query = replace(query, after=page.tools[-1].id)


async def test_pages_by_id_show_every_tool_once_with_the_count(
    equipment: EquipmentService,
) -> None:
    made = await _register(equipment)
    first = await equipment.page(ToolQuery(limit=7))
    assert first.total == 40 and first.more is True
    assert [t.id for t in first.tools] == sorted(made)[:7]

    pages = await _every_page(equipment, ToolQuery(limit=7))
    assert [len(p) for p in pages] == [7, 7, 7, 7, 7, 5]
    assert [t for p in pages for t in p] == sorted(made)  # none lost, none repeated

    exact = await _every_page(equipment, ToolQuery(limit=20))
    assert [len(p) for p in exact] == [20, 20]  # the last full page says no more follow


async def test_filters_are_applied_by_the_store_and_counted(
    equipment: EquipmentService,
) -> None:
    made = await _register(equipment)
    await equipment.report("A-03", ToolSnapshot(True, "productive", "EXECUTING", "PRODUCTION"))
    await equipment.report("B-06", ToolSnapshot(True, "productive", "EXECUTING", "PRODUCTION"))
    await equipment.report("A-08", ToolSnapshot(True, "standby", "READY", "PRODUCTION"))

    line_a = await equipment.page(ToolQuery(line="line-a", limit=100))
    assert [t.id for t in line_a.tools] == sorted(t for t in made if made[t][0] == "line-a")
    assert line_a.total == 25 and not line_a.more

    molders = await _every_page(equipment, ToolQuery(equipment_class="molder", limit=4))
    expected = sorted(t for t in made if made[t][1] == "molder")
    assert [t for p in molders for t in p] == expected
    page = await equipment.page(ToolQuery(equipment_class="molder", limit=4))
    assert page.total == len(expected) == 13 and page.more

    productive = await equipment.page(ToolQuery(e10="productive", limit=1))
    assert [t.id for t in productive.tools] == ["A-03"]
    assert productive.total == 2 and productive.more
    rest = await equipment.page(ToolQuery(e10="productive", after="A-03", limit=1))
    assert [t.id for t in rest.tools] == ["B-06"] and not rest.more

    both = await equipment.page(
        ToolQuery(line="line-a", equipment_class="molder", e10="standby", limit=10)
    )
    assert [t.id for t in both.tools] == ["A-08"] and both.total == 1
    # Newly registered tools are not connected yet: unscheduled down.
    down = await equipment.page(ToolQuery(e10="unscheduled_down", limit=100))
    assert down.total == 37 and "A-03" not in [t.id for t in down.tools]
    none = await equipment.page(ToolQuery(line="line-z", limit=10))
    assert (none.tools, none.total, none.more) == ([], 0, False)


async def test_the_tools_in_manual_are_listed_by_the_store(equipment: EquipmentService) -> None:
    """A shift's question: which tools are out of automatic dispatch (an operator's switch, a
    controller's quarantine)."""
    await _register(equipment)
    for tool_id in ("B-04", "A-11", "A-02", "A-17"):
        await equipment.set_dispatch(tool_id, DispatchMode.MANUAL, "tech", "cleaning")
    manual = await _every_page(equipment, ToolQuery(dispatch="manual", limit=3))
    assert manual == [["A-02", "A-11", "A-17"], ["B-04"]]
    first = await equipment.page(ToolQuery(dispatch="manual", limit=3))
    assert first.total == 4 and first.more
    auto = await equipment.page(ToolQuery(dispatch="auto", line="line-b", limit=100))
    assert auto.total == 14 and "B-04" not in [t.id for t in auto.tools]
    molders = await equipment.page(ToolQuery(dispatch="manual", equipment_class="molder"))
    assert [t.id for t in molders.tools] == ["A-02", "A-11", "A-17"]  # B-04: a wire bonder
    with pytest.raises(InvalidInput, match="dispatch 'off': expected one of auto, manual"):
        await equipment.page(ToolQuery(dispatch="off"))


async def test_a_cursor_is_the_last_id_seen_whatever_the_filters(
    equipment: EquipmentService,
) -> None:
    await _register(equipment)
    # B-00 is not a molder; the page starts at the first molder after it all the same.
    after = await equipment.page(ToolQuery(equipment_class="molder", after="B-00", limit=2))
    assert [t.id for t in after.tools] == ["B-02", "B-05"]
    assert after.total == 13  # the count is of every match, not of what follows the cursor
    last = await equipment.page(ToolQuery(after="B-14", limit=5))
    assert (last.tools, last.more) == ([], False)


async def test_bad_cursor_limit_or_state_is_refused_with_what_was_expected(
    equipment: EquipmentService,
) -> None:
    await _register(equipment)
    with pytest.raises(UnknownTool, match="no tool NOPE to list the tools after"):
        await equipment.page(ToolQuery(after="NOPE"))
    with pytest.raises(InvalidInput, match="1 tool or more"):
        await equipment.page(ToolQuery(limit=0))
    with pytest.raises(InvalidInput, match="expected an E10 state, one of productive"):
        await equipment.page(ToolQuery(e10="up"))
    page = await equipment.page(ToolQuery(e10="unmonitored"))
    assert page.total == 0
