"""Durables through ``pkgline`` in a subprocess: ``durable add|mount|unmount|renew|show|list``,
an operator's run on a tool counted on its capillary, the next track-in on it refused once the
capillary is spent (exit 1, which durable, its count and its life) or a lot would take it past
its life (what the lot needs), and bad input refused with what was expected, changing
nothing."""

from __future__ import annotations

import asyncio
import json

from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain import commands as cmd
from mes.domain.equipment import DispatchMode, ToolRegistration, ToolSnapshot
from mes.equipment import EquipmentService
from mes.service import LotService
from pkgline.bootstrap import flow_library
from tests.cli.test_tool_cli import ok_json, pkgline

UP = ToolSnapshot(connected=True, e10="standby", process_state="IDLE", mode="PRODUCTION")


async def _line(url: str) -> None:
    """A wire bonder WB-1 and a molder MOLD-1, up and in manual; lots D1 and D2 of
    stiffener-bga waiting for WIRE_BOND (two carriers of 4 x 8 sites, none rejected)."""
    engine = create_engine(url)
    try:
        await upgrade(engine)
        factory = SqlUnitOfWorkFactory(engine)
        equipment = EquipmentService(factory)
        tools = [
            ToolRegistration("WB-1", "wire_bonder", "opc.tcp://127.0.0.1:4840", ("WIRE_BOND",)),
            ToolRegistration("MOLD-1", "molder", "modbus://127.0.0.1:1502", ("MOLD",)),
        ]
        await equipment.register("cli-line", tools)
        for tool in tools:
            await equipment.report(tool.id, UP)
            await equipment.set_dispatch(tool.id, DispatchMode.MANUAL, "tech", "by hand")
        lots = LotService(factory, flow_library())
        for lot in ("D1", "D2"):
            await lots.start(cmd.StartLot(lot, "stiffener-bga", "op1"))
            for step in ("SUBSTRATE_LOAD", "DIE_ATTACH"):
                await lots.track_in(cmd.TrackIn(lot, step, "op1"))
                await lots.track_out(cmd.TrackOut(lot, "op1"))
    finally:
        await engine.dispose()


def test_a_capillary_counts_an_operators_run_and_refuses_the_next_lot_once_spent(
    sqlite_url: str,
) -> None:
    asyncio.run(_line(sqlite_url))
    added = ok_json(sqlite_url, "durable", "add", "CAP-1", "--kind", "capillary", "--life", "128")
    assert (added["count"], added["life"], added["unit"], added["tool"]) == (
        0,
        128,
        "touchdowns",
        None,
    )
    assert ok_json(sqlite_url, "durable", "mount", "CAP-1", "--tool", "WB-1")["tool"] == "WB-1"
    ok_json(sqlite_url, "lot", "track-in", "D1", "--step", "WIRE_BOND", "--tool", "WB-1")
    ok_json(sqlite_url, "lot", "track-out", "D1")

    shown = ok_json(sqlite_url, "durable", "show", "CAP-1")
    assert (shown["count"], shown["spent"], shown["lots"]) == (128, True, ["D1"])
    assert [e["event"] for e in shown["history"]] == ["added", "mounted", "used"]
    assert shown["history"][-1]["amount"] == 2 * 2 * 32  # two touchdowns per site

    refused = pkgline(
        sqlite_url, "lot", "track-in", "D2", "--step", "WIRE_BOND", "--tool", "WB-1", "--json"
    )
    assert refused.returncode == 1, refused.stdout + refused.stderr
    said = json.loads(refused.stdout)
    assert said["error"] == "interlock" and said["interlock"] == "durable_life"
    assert "capillary CAP-1 at 128 of 128 touchdowns (100 %)" in said["message"]
    assert said["expected"].startswith("capillary CAP-1 under its life of 128 touchdowns")
    assert ok_json(sqlite_url, "lot", "show", "D2")["state"] == "WAITING"

    text = pkgline(sqlite_url, "durable", "show", "CAP-1")
    assert text.returncode == 0 and "spent" in text.stdout and "D1" in text.stdout
    ok_json(sqlite_url, "durable", "unmount", "CAP-1", "--reason", "end of life")
    ok_json(sqlite_url, "durable", "add", "CAP-2", "--kind", "capillary", "--life", "1000")
    ok_json(sqlite_url, "durable", "mount", "CAP-2", "--tool", "WB-1")
    tracked = ok_json(sqlite_url, "lot", "track-in", "D2", "--step", "WIRE_BOND", "--tool", "WB-1")
    assert tracked["state"] == "RUNNING"


def test_a_lot_that_would_run_a_capillary_past_its_life_is_refused_then_split_to_fit(
    sqlite_url: str,
) -> None:
    """CAP-1 (life 100) is not spent, but D1's two carriers may need 128 touchdowns: refused
    (exit 1) saying what the lot needs and what is left, and that a split fits; split to one
    carrier (64), D1 is tracked in."""
    asyncio.run(_line(sqlite_url))
    ok_json(sqlite_url, "durable", "add", "CAP-1", "--kind", "capillary", "--life", "100")
    ok_json(sqlite_url, "durable", "mount", "CAP-1", "--tool", "WB-1")
    track_in = ("lot", "track-in", "D1", "--step", "WIRE_BOND", "--tool", "WB-1")
    refused = pkgline(sqlite_url, *track_in, "--json")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    said = json.loads(refused.stdout)
    assert said["error"] == "interlock" and said["interlock"] == "durable_life"
    assert (
        "capillary CAP-1 at 0 of 100 touchdowns (0 %); lot D1 needs up to 128 touchdowns at "
        "WIRE_BOND (2 carriers), 100 left" in said["message"]
    )
    assert said["expected"] == (
        "capillary CAP-1 with 128 touchdowns left: unmount it and mount a new one, or split "
        "lot D1 to at most 1 carrier"
    )
    assert ok_json(sqlite_url, "lot", "show", "D1")["state"] == "WAITING"
    ok_json(sqlite_url, "lot", "split", "D1", "--carriers", "2", "--into", "D1A")
    assert ok_json(sqlite_url, *track_in)["state"] == "RUNNING"


def test_bad_durable_input_is_refused_with_what_was_expected_changing_nothing(
    sqlite_url: str,
) -> None:
    asyncio.run(_line(sqlite_url))
    kind = pkgline(sqlite_url, "durable", "add", "X-1", "--kind", "sponge", "--life", "5")
    assert kind.returncode == 1
    assert "'sponge' is not a kind of durable; expected one of capillary" in kind.stderr
    ok_json(sqlite_url, "durable", "add", "CH-1", "--kind", "mold_chase", "--life", "500")
    wrong = pkgline(sqlite_url, "durable", "mount", "CH-1", "--tool", "WB-1", "--json")
    assert wrong.returncode == 1
    assert (
        "a mold_chase is mounted on a molder; WB-1 is a wire_bonder"
        in (json.loads(wrong.stdout)["message"])
    )
    no_reason = pkgline(sqlite_url, "durable", "renew", "CH-1")
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    renewed = ok_json(sqlite_url, "durable", "renew", "CH-1", "--reason", "chase cleaned")
    assert renewed["count"] == 0
    listed = ok_json(sqlite_url, "durable", "list")
    assert [(d["id"], d["tool"]) for d in listed] == [("CH-1", None)]  # X-1 was not added


def test_a_tool_that_does_not_exist_is_refused_naming_the_tools_as_tool_show_does(
    sqlite_url: str,
) -> None:
    """``durable mount CAP-1 --tool WB-9`` said only "there is no tool WB-9" (no ``allowed``
    in its JSON), where ``tool show WB-9`` names the tools there are."""
    asyncio.run(_line(sqlite_url))
    ok_json(sqlite_url, "durable", "add", "CAP-1", "--kind", "capillary", "--life", "1000")
    sibling = json.loads(pkgline(sqlite_url, "tool", "show", "WB-9", "--json").stdout)
    for args in (
        ("durable", "mount", "CAP-1", "--tool", "WB-9"),
        ("durable", "list", "--tool", "WB-9"),
    ):
        for paged in ((), ("--limit", "5")) if args[1] == "list" else ((),):
            result = pkgline(sqlite_url, *args, *paged, "--json")
            assert result.returncode == 1, result.stdout + result.stderr
            assert (
                json.loads(result.stdout)
                == sibling
                == {
                    "error": "unknown_tool",
                    "message": "there is no tool WB-9",
                    "allowed": ["MOLD-1", "WB-1"],
                }
            )
    text = pkgline(sqlite_url, "durable", "mount", "CAP-1", "--tool", "WB-9")
    assert text.returncode == 1 and "allowed: MOLD-1, WB-1" in text.stderr
    assert ok_json(sqlite_url, "durable", "show", "CAP-1")["tool"] is None
