"""Track-in interlocks through ``pkgline`` in a subprocess, on a database a real line
controller wrote: the issue's first reproduction (a tool that does not exist) is exit 1 with
which interlock refused, what was expected and the qualified tools; engineering's
qualification table is kept with ``tool qualify|disqualify|qualifications``, each change
recorded in the security log (``user events --kind engineering_change``); a track-in past its
queue time puts the lot on hold instead and exits 1."""

from __future__ import annotations

import asyncio
import getpass
import json
from datetime import timedelta
from typing import Any

from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain import commands as cmd
from mes.service import LotService, utc_now
from pkgline.bootstrap import flow_library
from tests.cli.recorded_line import FLOW, LINE
from tests.cli.test_tool_cli import ok_json, pkgline


def _at_die_attach(db: str, lot: str) -> None:
    ok_json(db, "lot", "start", lot, "--flow", FLOW, "--carriers", "1")
    ok_json(db, "lot", "track-in", lot, "--step", "SUBSTRATE_LOAD")
    ok_json(db, "lot", "track-out", lot)


def test_a_track_in_on_a_tool_that_does_not_exist_is_refused_saying_what_was_expected(
    line_db: str,
) -> None:
    _at_die_attach(line_db, "R6")
    refused = pkgline(
        line_db, "lot", "track-in", "R6", "--step", "DIE_ATTACH", "--tool", "NOSUCHTOOL", "--json"
    )
    assert refused.returncode == 1, refused.stdout + refused.stderr
    shown = json.loads(refused.stdout)
    assert shown["error"] == "interlock" and shown["interlock"] == "unknown_tool"
    assert shown["allowed"] == ["DB-1"]
    assert shown["expected"] == "a tool qualified for DIE_ATTACH (DB-1)"
    text = pkgline(line_db, "lot", "track-in", "R6", "--step", "DIE_ATTACH", "--tool", "NOPE")
    assert text.returncode == 1
    assert "there is no tool NOPE; expected a tool qualified for DIE_ATTACH" in text.stderr
    assert "qualified for DIE_ATTACH (DB-1)" in text.stderr and "allowed:" not in text.stderr
    assert ok_json(line_db, "lot", "show", "R6")["state"] == "WAITING"
    # without a tool: a step done off the line's tools, recorded as such
    off = ok_json(line_db, "lot", "track-in", "R6", "--step", "DIE_ATTACH")
    assert off["state"] == "RUNNING" and off["recorded"][0]["data"]["off_tools"] is True


def test_qualifications_are_kept_by_engineering_and_checked_at_track_in(line_db: str) -> None:
    table = ok_json(line_db, "tool", "qualifications", "--tool", "DB-1")
    die_attach = next(q for q in table if q["step"] == "DIE_ATTACH")
    assert die_attach["qualified"] is True and die_attach["by"] == f"line {LINE}"

    no_reason = pkgline(line_db, "tool", "disqualify", "DB-1", "--step", "DIE_ATTACH")
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    done = ok_json(
        line_db, "tool", "disqualify", "DB-1", "--step", "DIE_ATTACH", "--reason", "BLT drift"
    )
    assert (done["qualified"], done["by"], done["reason"]) == (False, "op1", "BLT drift")

    _at_die_attach(line_db, "R7")
    ok_json(line_db, "tool", "manual", "DB-1", "--reason", "engineering lot")
    refused = pkgline(
        line_db, "lot", "track-in", "R7", "--step", "DIE_ATTACH", "--tool", "DB-1", "--json"
    )
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["interlock"] == "tool_qualification"

    wrong = pkgline(line_db, "tool", "qualify", "DB-1", "--step", "WIRE_BOND", "--json")
    assert wrong.returncode == 1
    shown = json.loads(wrong.stdout)
    assert "WIRE_BOND runs on a wire_bonder" in shown["message"]
    assert "DIE_ATTACH" in shown["allowed"]
    unknown = pkgline(line_db, "tool", "qualify", "NOPE", "--step", "DICE")
    assert unknown.returncode == 1 and "there is no tool NOPE" in unknown.stderr
    again = ok_json(line_db, "tool", "qualify", "DB-1", "--step", "DIE_ATTACH")
    assert again["qualified"] is True
    listed = pkgline(line_db, "tool", "qualifications", "--step", "DIE_ATTACH")
    assert listed.returncode == 0 and "DB-1" in listed.stdout and "yes" in listed.stdout


def test_tool_show_names_the_steps_the_tool_is_disqualified_for(line_db: str) -> None:
    """Found by a quality engineer's walkthrough: an SPC inhibit disqualified a molder, the
    station's tool page said so, and `pkgline tool show` did not (only `tool qualifications`,
    which one has to know to ask): the tool looked ready while every lot for the step
    waited."""
    assert ok_json(line_db, "tool", "show", "DB-1")["disqualified"] == []
    ok_json(line_db, "tool", "disqualify", "DB-1", "--step", "DIE_ATTACH", "--reason", "BLT drift")
    shown = ok_json(line_db, "tool", "show", "DB-1")
    [q] = shown["disqualified"]
    assert (q["tool"], q["step"], q["qualified"], q["by"], q["reason"]) == (
        "DB-1",
        "DIE_ATTACH",
        False,
        "op1",
        "BLT drift",
    )
    text = pkgline(line_db, "tool", "show", "DB-1")
    assert text.returncode == 0, text.stderr
    said = " ".join(text.stdout.split())
    assert "disqualified for DIE_ATTACH by op1 since " in said
    assert ": BLT drift (its track-ins of DIE_ATTACH here are refused" in said
    ok_json(line_db, "tool", "qualify", "DB-1", "--step", "DIE_ATTACH")
    assert ok_json(line_db, "tool", "show", "DB-1")["disqualified"] == []


def test_an_unknown_tool_in_an_engineering_command_is_refused_naming_the_tools(
    line_db: str,
) -> None:
    """Found by the engineer's walk-through: ``tool qualify NOSUCH --step DIE_ATTACH`` and
    ``spc chart ... --tool NOPE`` said only "there is no tool NOSUCH" (no ``allowed``), where
    ``durable mount`` and ``tool show`` name the tools there are; nothing is written."""
    before = ok_json(line_db, "user", "events", "--kind", "engineering_change")
    for args in (
        ("tool", "qualify", "NOSUCH", "--step", "DIE_ATTACH"),
        ("tool", "disqualify", "NOSUCH", "--step", "DIE_ATTACH", "--reason", "drift"),
        ("tool", "qualifications", "--tool", "NOSUCH"),
        ("spc", "chart", "DIE_ATTACH", "bond_line_thickness_um", "--tool", "NOSUCH",
         "--center", "25", "--sigma", "1"),
        ("spc", "clear", "DIE_ATTACH", "--tool", "NOSUCH", "--reason", "levelled"),
    ):  # fmt: skip
        refused = pkgline(line_db, *args, "--json")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert json.loads(refused.stdout) == {
            "error": "unknown_tool",
            "message": "there is no tool NOSUCH",
            "allowed": ["DB-1", "WB-1"],
        }, args
        text = pkgline(line_db, *args)
        assert text.returncode == 1 and "allowed: DB-1, WB-1" in text.stderr, text.stderr
    assert ok_json(line_db, "user", "events", "--kind", "engineering_change") == before
    assert ok_json(line_db, "spc", "list") == []


def test_each_qualification_change_is_one_event_in_the_security_log_that_verifies(
    line_db: str,
) -> None:
    def changes() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = ok_json(
            line_db, "user", "events", "--kind", "engineering_change"
        )
        return found

    assert changes() == []  # the controller's registration qualified by configuration
    ok_json(line_db, "tool", "disqualify", "DB-1", "--step", "DIE_ATTACH", "--reason", "BLT drift")
    [off] = changes()
    assert (off["kind"], off["action"]) == ("engineering_change", "tool_disqualify")
    assert (off["actor"], off["method"]) == (getpass.getuser(), "file_owner")
    detail = off["detail"]
    assert (detail["tool"], detail["step"], detail["reason"]) == ("DB-1", "DIE_ATTACH", "BLT drift")
    assert (detail["before"]["qualified"], detail["before"]["by"]) == (True, f"line {LINE}")
    assert (detail["after"]["qualified"], detail["after"]["by"]) == (False, "op1")
    assert detail["after"]["reason"] == "BLT drift"

    for refused, code in (
        (("tool", "qualify", "DB-1", "--step", "WIRE_BOND"), 1),  # a wire bonder's step
        (("tool", "qualify", "NOPE", "--step", "DICE"), 1),
        (("tool", "disqualify", "DB-1", "--step", "DIE_ATTACH"), 2),  # no reason
    ):
        assert pkgline(line_db, *refused).returncode == code
    assert changes() == [off]

    ok_json(line_db, "tool", "qualify", "DB-1", "--step", "DIE_ATTACH", "--reason", "re-levelled")
    on, was = changes()  # newest first
    assert was == off and on["action"] == "tool_qualify"
    assert on["detail"]["before"] == detail["after"]
    assert on["detail"]["after"]["qualified"] is True and on["seq"] > off["seq"]
    table = " ".join(
        pkgline(line_db, "user", "events", "--kind", "engineering_change").stdout.split()
    )
    assert "engineering_change tool_qualify" in table, table
    # what changed, not two whole records: the reason, kept the same, is the new one's
    assert "tool: DB-1; step: DIE_ATTACH; reason: re-levelled; changed: qualified no → yes" in table
    assert "reason BLT drift → re-levelled" in table
    assert "new: " not in table.split("tool_qualify", 1)[1].split("tool_disqualify")[0]

    verified = pkgline(line_db, "audit", "verify", "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    every = ok_json(line_db, "user", "events", "--limit", "500")
    assert json.loads(verified.stdout)["security_events"] == len(every) >= 2


async def test_a_track_in_past_its_queue_time_puts_the_lot_on_hold_and_exits_1(
    sqlite_url: str,
) -> None:
    engine = create_engine(sqlite_url)
    try:  # the lot coated five hours ago (written with the lot tracker's clock set back)
        await upgrade(engine)
        lots = LotService(
            SqlUnitOfWorkFactory(engine), flow_library(), lambda: utc_now() - timedelta(hours=5)
        )
        await lots.start(cmd.StartLot("Q1", "fo-organic", "op1", carriers=1))
        while (step := lots.next_in_order(await lots.get("Q1"))[0]) != "VIA_PATTERN":
            await lots.track_in(cmd.TrackIn("Q1", step, "op1"))
            await lots.track_out(cmd.TrackOut("Q1", "op1"))
    finally:
        await engine.dispose()
    held = await asyncio.to_thread(
        pkgline, sqlite_url, "lot", "track-in", "Q1", "--step", "VIA_PATTERN", "--json"
    )
    assert held.returncode == 1, held.stdout + held.stderr
    shown = json.loads(held.stdout)
    assert shown["state"] == "HOLD"
    assert shown["recorded"][0]["operation"] == "hold"
    assert (
        "queue time DIELECTRIC_COAT -> VIA_PATTERN: waited 300 min"
        in (shown["recorded"][0]["reason"])
    )
    again = await asyncio.to_thread(pkgline, sqlite_url, "lot", "show", "Q1")
    assert again.returncode == 0 and "HOLD" in again.stdout
