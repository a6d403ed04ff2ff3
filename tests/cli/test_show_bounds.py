"""A durable's and a material lot's ``show`` stay readable however long they served: the last
history events (``--history N`` or ``all`` for more, as ``lot show``) and the last lots, each
saying how many there are; ``--json`` keeps every one; a ``--history`` that is neither a number
nor ``all`` is a usage error (exit 2)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain import commands as cmd
from mes.domain.equipment import DispatchMode, ToolRegistration, ToolSnapshot
from mes.durables import DurableService
from mes.equipment import EquipmentService
from mes.materials import MaterialService
from mes.service import LotService, utc_now
from pkgline.bootstrap import flow_library
from pkgline.page_sizes import SHOW_LOTS
from tests.cli.test_tool_cli import ok_json, pkgline

UP = ToolSnapshot(connected=True, e10="standby", process_state="IDLE", mode="PRODUCTION")
LOTS = [f"S{i:02}" for i in range(1, SHOW_LOTS + 3)]  # two more than a show names


async def _served(url: str) -> None:
    """Capillary CAP-1 and wire spool W-1 on WB-1 (in manual); lots S01..S12 of
    stiffener-bga bonded on it one after the other."""
    engine = create_engine(url)
    try:
        await upgrade(engine)
        factory = SqlUnitOfWorkFactory(engine)
        equipment = EquipmentService(factory)
        wb = ToolRegistration("WB-1", "wire_bonder", "opc.tcp://127.0.0.1:4840", ("WIRE_BOND",))
        await equipment.register("cli-line", [wb])
        await equipment.report("WB-1", UP)
        await equipment.set_dispatch("WB-1", DispatchMode.MANUAL, "tech", "by hand")
        durables = DurableService(factory, utc_now)
        await durables.add("CAP-1", "capillary", 10_000_000, "eng")
        await durables.mount("CAP-1", "WB-1", "tech")
        materials = MaterialService(factory, utc_now)
        await materials.add("W-1", "wire", utc_now() + timedelta(days=30), "eng")
        await materials.load("W-1", "WB-1", "tech")
        lots = LotService(factory, flow_library())
        for lot in LOTS:
            await lots.start(cmd.StartLot(lot, "stiffener-bga", "op1"))
            for step in ("SUBSTRATE_LOAD", "DIE_ATTACH", "WIRE_BOND"):
                tool = "WB-1" if step == "WIRE_BOND" else None
                await lots.track_in(cmd.TrackIn(lot, step, "op1", tool=tool))
                await lots.track_out(cmd.TrackOut(lot, "op1"))
    finally:
        await engine.dispose()


def _out(url: str, *args: str) -> str:
    done = pkgline(url, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_durable_shows_its_last_events_and_lots_and_says_how_many(sqlite_url: str) -> None:
    asyncio.run(_served(sqlite_url))
    every = ok_json(sqlite_url, "durable", "show", "CAP-1")
    assert every["lots"] == LOTS and len(every["history"]) == 2 + len(LOTS)  # added, mounted

    shown = _out(sqlite_url, "durable", "show", "CAP-1", "--history", "3")
    assert f"the last 3 of {2 + len(LOTS)} events; --history N or --history all" in shown
    assert shown.count(" used ") == 3
    named = ", ".join(LOTS[-SHOW_LOTS:])
    assert f"{named} (the last {SHOW_LOTS} of {len(LOTS)}; --json has every one)" in shown
    assert "S01," not in shown and "S02," not in shown

    default = _out(sqlite_url, "durable", "show", "CAP-1")  # 20 by default: all 14
    assert f"History ({2 + len(LOTS)} events)" in default
    assert default.count(" used ") == len(LOTS) and " mounted " in default
    assert _out(sqlite_url, "durable", "show", "CAP-1", "--history", "all").count(" used ") == 12


def test_a_material_lot_shows_its_last_events_and_the_last_lots_it_went_into(
    sqlite_url: str,
) -> None:
    asyncio.run(_served(sqlite_url))
    every = ok_json(sqlite_url, "material", "show", "W-1")
    assert [u["lot"] for u in every["uses"]] == LOTS

    shown = _out(sqlite_url, "material", "show", "W-1", "--history", "1")
    assert "History (the last 1 of 2 events; --history N or --history all for more)" in shown
    assert " loaded WB-1 by tech" in shown and " added by eng" not in shown
    named = ", ".join(LOTS[-SHOW_LOTS:])
    assert f"used in   {named} (the last {SHOW_LOTS} of {len(LOTS)}; --json has every one)" in (
        shown
    )
    assert " added by eng" in _out(sqlite_url, "material", "show", "W-1")


def test_a_history_that_is_neither_a_number_nor_all_is_refused(sqlite_url: str) -> None:
    asyncio.run(_served(sqlite_url))
    for command in (("durable", "show", "CAP-1"), ("material", "show", "W-1")):
        for typed in ("lots", "\u00b2", "\u0663"):  # a superscript two made int() raise
            refused = pkgline(sqlite_url, *command, "--history", typed)
            assert refused.returncode == 2, refused.stdout + refused.stderr
            assert f"--history {typed!r}: expected a number of entries or 'all'" in refused.stderr


def test_one_item_is_said_in_the_singular() -> None:
    from pkgline.cli.common import the_last

    assert the_last(["a"], None, "events", "more")[1] == "1 event"
    assert the_last(["a"], 5, "entries", "more")[1] == "1 entry"
    assert the_last(["a", "b"], None, "entries", "more")[1] == "2 entries"
    assert the_last(["a", "b"], 1, "events", "--all")[1] == "the last 1 of 2 events; --all"
