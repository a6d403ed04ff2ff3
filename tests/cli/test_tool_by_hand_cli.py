"""A lot an operator tracked in by hand on a tool in manual (no job runs it: the tool reports
no lot) named on the tool by ``pkgline tool list``, ``tool show`` and ``line status``, as
tables and as JSON (``lot`` and ``by_hand``), as the station's line tile and tool page name
it: the tool is taken, a track-in of another lot on it is refused."""

from __future__ import annotations

import asyncio
import re

from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain import commands as cmd
from mes.domain.equipment import DispatchMode, ToolRegistration, ToolSnapshot
from mes.domain.model import LotState
from mes.equipment import EquipmentService
from mes.service import LotService
from pkgline.bootstrap import flow_library
from tests.cli.test_tool_cli import ok_json, pkgline

UP = ToolSnapshot(connected=True, e10="standby", process_state="IDLE", mode="PRODUCTION")


async def _line(url: str) -> None:
    """Die bonders DB-1 (manual) and DB-2 (auto), up; lots H-3 and H-4 of stiffener-bga
    waiting for DIE_ATTACH, and R-1 running on DB-2 by the line controller's track-in."""
    engine = create_engine(url)
    try:
        await upgrade(engine)
        factory = SqlUnitOfWorkFactory(engine)
        equipment = EquipmentService(factory)
        tools = [
            ToolRegistration("DB-1", "die_bonder", "modbus://127.0.0.1:1502", ("DIE_ATTACH",)),
            ToolRegistration("DB-2", "die_bonder", "modbus://127.0.0.1:1503", ("DIE_ATTACH",)),
        ]
        await equipment.register("cli-line", tools)
        for tool in tools:
            await equipment.report(tool.id, UP)
        await equipment.set_dispatch("DB-1", DispatchMode.MANUAL, "tech", "by hand")
        lots = LotService(factory, flow_library())
        for lot in ("H-3", "H-4", "R-1"):
            await lots.start(cmd.StartLot(lot, "stiffener-bga", "op1"))
            await lots.track_in(cmd.TrackIn(lot, "SUBSTRATE_LOAD", "op1"))
            await lots.track_out(cmd.TrackOut(lot, "op1"))
        dispatched = cmd.TrackIn("R-1", "DIE_ATTACH", "cli-line", tool="DB-2", dispatched=True)
        await lots.track_in(dispatched)
    finally:
        await engine.dispose()


def _row(text: str, tool: str) -> str:
    found = [line for line in text.splitlines() if re.match(rf"^\W*{tool}\b", line)]
    assert found, text
    return found[0]


def test_a_lot_tracked_in_by_hand_is_named_on_its_tool(sqlite_url: str) -> None:
    asyncio.run(_line(sqlite_url))
    tracked = ok_json(
        sqlite_url, "lot", "track-in", "H-3", "--step", "DIE_ATTACH", "--tool", "DB-1"
    )
    assert tracked["state"] == LotState.RUNNING.value
    # the tool is taken: another lot's track-in on it is refused
    refused = pkgline(
        sqlite_url, "lot", "track-in", "H-4", "--step", "DIE_ATTACH", "--tool", "DB-1"
    )
    assert refused.returncode == 1 and "H-3" in refused.stdout + refused.stderr

    tools = {t["id"]: t for t in ok_json(sqlite_url, "tool", "list")}
    assert (tools["DB-1"]["lot"], tools["DB-1"]["by_hand"]) == ("H-3", True)
    assert tools["DB-1"]["job"] is None  # no job runs it
    # the line controller's track-in: no lot reported by the tool either, but not by hand
    assert (tools["DB-2"]["lot"], tools["DB-2"]["by_hand"]) == ("R-1", False)
    one_page = pkgline(sqlite_url, "tool", "list")
    assert one_page.returncode == 0, one_page.stderr
    assert "H-3 (by hand)" in _row(one_page.stdout, "DB-1")
    assert "R-1" in _row(one_page.stdout, "DB-2")
    assert "by hand" not in _row(one_page.stdout, "DB-2")

    shown = ok_json(sqlite_url, "tool", "show", "DB-1")
    assert (shown["lot"], shown["by_hand"]) == ("H-3", True)
    text = pkgline(sqlite_url, "tool", "show", "DB-1")
    assert text.returncode == 0, text.stderr
    assert re.search(r"^lot\s+H-3 \(tracked in by hand\)\s*$", text.stdout, re.M), text.stdout
    assert ok_json(sqlite_url, "tool", "show", "DB-2")["lot"] == "R-1"

    status = ok_json(sqlite_url, "line", "status")
    on_line = {t["id"]: t for t in status["tools"]}
    assert (on_line["DB-1"]["lot"], on_line["DB-1"]["by_hand"]) == ("H-3", True)
    assert (on_line["DB-2"]["lot"], on_line["DB-2"]["by_hand"]) == ("R-1", False)
    table = pkgline(sqlite_url, "line", "status")
    assert table.returncode == 0, table.stderr
    assert "H-3 (by hand)" in _row(table.stdout, "DB-1")


def test_a_tool_no_lot_runs_on_says_none(sqlite_url: str) -> None:
    asyncio.run(_line(sqlite_url))
    tools = {t["id"]: t for t in ok_json(sqlite_url, "tool", "list")}
    assert (tools["DB-1"]["lot"], tools["DB-1"]["by_hand"]) == (None, False)
    shown = pkgline(sqlite_url, "tool", "show", "DB-1")
    assert shown.returncode == 0 and not re.search(r"^lot", shown.stdout, re.M), shown.stdout
