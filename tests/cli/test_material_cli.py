"""Material lots through ``pkgline`` in a subprocess: ``material add|load|thaw|where-used``
and ``lot genealogy``; a track-in on a molder with its compound still frozen, then still
thawing, is refused (exit 1, which interlock and what was expected); a wire lot loaded on
the wire bonder goes into the lot tracked in there."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from datetime import UTC, datetime, timedelta

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
TOOLS = [
    ToolRegistration("WB-1", "wire_bonder", "opc.tcp://127.0.0.1:4840", ("WIRE_BOND",)),
    ToolRegistration("MOLD-1", "molder", "modbus://127.0.0.1:1502", ("MOLD",)),
]


async def _line(url: str) -> None:
    """WB-1 and MOLD-1 up and in manual; M1 waiting for WIRE_BOND, M2 for MOLD."""
    engine = create_engine(url)
    try:
        await upgrade(engine)
        factory = SqlUnitOfWorkFactory(engine)
        equipment = EquipmentService(factory)
        await equipment.register("cli-line", TOOLS)
        for tool in TOOLS:
            await equipment.report(tool.id, UP)
            await equipment.set_dispatch(tool.id, DispatchMode.MANUAL, "tech", "by hand")
        lots = LotService(factory, flow_library())
        for lot, last in (("M1", "DIE_ATTACH"), ("M2", "STIFFENER_ATTACH")):
            await lots.start(cmd.StartLot(lot, "stiffener-bga", "op1"))
            while True:
                step = lots.next_in_order(await lots.get(lot))[0]
                await lots.track_in(cmd.TrackIn(lot, step, "op1"))
                await lots.track_out(cmd.TrackOut(lot, "op1"))
                if step == last:
                    break
    finally:
        await engine.dispose()


def test_a_frozen_or_thawing_compound_refuses_the_track_in_and_wire_goes_into_the_lot(
    sqlite_url: str,
) -> None:
    asyncio.run(_line(sqlite_url))
    db = sqlite_url
    added = ok_json(
        db, "material", "add", "EMC-1", "--kind", "mold_compound", "--expires", "2099-12-31",
        "--thaw-hours", "4",
    )  # fmt: skip
    assert (added["thaw_minutes"], added["floor_life_minutes"]) == (240, 72 * 60)
    ok_json(db, "material", "load", "EMC-1", "--tool", "MOLD-1")
    mold = ("lot", "track-in", "M2", "--step", "MOLD", "--tool", "MOLD-1", "--json")
    frozen = pkgline(db, *mold)
    assert frozen.returncode == 1, frozen.stdout + frozen.stderr
    said = json.loads(frozen.stdout)
    assert said["interlock"] == "material_not_thawed"
    assert "mold_compound EMC-1 is still frozen" in said["message"]
    assert said["expected"].startswith("EMC-1 out of the freezer at least 4 h before use")
    ok_json(db, "material", "thaw", "EMC-1")
    ok_json(db, "material", "add", "DAF-0", "--kind", "die_attach_film", "--expires", "2099-12-31",
            "--thaw-hours", "0")  # fmt: skip
    at_once = pkgline(db, "material", "thaw", "DAF-0")  # it said "thawing, usable from <now>"
    assert at_once.returncode == 0 and "thawed, usable now" in at_once.stdout, at_once.stdout
    thawing = pkgline(db, *mold)
    assert thawing.returncode == 1 and "is thawing since" in json.loads(thawing.stdout)["message"]

    ok_json(db, "material", "add", "W-1", "--kind", "wire", "--expires", "2099-01-31")
    ok_json(db, "material", "load", "W-1", "--tool", "WB-1")
    tracked = ok_json(db, "lot", "track-in", "M1", "--step", "WIRE_BOND", "--tool", "WB-1")
    assert tracked["recorded"][0]["data"]["materials"] == ["W-1"]
    genealogy = ok_json(db, "lot", "genealogy", "M1")
    assert [(m["material"], m["step"], m["tool"]) for m in genealogy["materials"]] == [
        ("W-1", "WIRE_BOND", "WB-1")
    ]
    used = pkgline(db, "material", "where-used", "W-1")
    assert used.returncode == 0 and "M1" in used.stdout and "used at a step" in used.stdout
    assert "1 still on the line (waiting, running or held): M1" in used.stdout, used.stdout
    assert "RUNNING    WIRE_BOND" in used.stdout, used.stdout
    # the time is when M1 got W-1: beside its state, "since" read as running since then
    row = next(line for line in used.stdout.splitlines() if line.startswith("M1 "))
    assert re.search(r"WIRE_BOND +got it \d{4}-\d\d-\d\d \d\d:\d\d:\d\d  used at", row), row
    assert "since" not in row, row
    recalled = ok_json(db, "material", "where-used", "W-1")["lots"]
    assert [(r["lot"], r["state"], r["step"]) for r in recalled] == [("M1", "RUNNING", "WIRE_BOND")]
    bad = pkgline(db, "material", "add", "W-2", "--kind", "wire", "--expires", "next week")
    assert bad.returncode == 2 and "expected a date" in bad.stderr
    for option in ("--thaw-hours", "--floor-life-hours"):  # no number: no traceback
        nan = pkgline(db, "material", "add", "E-9", "--kind", "mold_compound",
                      "--expires", "2099-01-01", option, "nan")  # fmt: skip
        assert nan.returncode == 2, nan.stderr
        assert f"{option} nan: expected a number of hours" in nan.stderr, nan.stderr


def test_dates_and_hours_past_what_can_be_counted_are_usage_errors(sqlite_url: str) -> None:
    db = sqlite_url
    assert pkgline(db, "db", "upgrade").returncode == 0
    add = ("material", "add", "EMC-9", "--kind", "mold_compound")
    for extra, said in (
        (("--expires", "9999-12-31"), "expected a date before 9999-12-31"),
        (("--expires", "2027-03-31", "--thaw-hours", "1e308"), "expected a number of hours"),
        (("--expires", "2027-03-31", "--floor-life-hours", "1e308"), "expected a number"),
        (("--expires", "2027-03-31", "--thaw-hours", "-1"), "0 or more"),  # as nan (probe)
    ):
        refused = pkgline(db, *add, *extra)
        assert refused.returncode == 2, refused.stderr
        assert said in refused.stderr and "Traceback" not in refused.stderr
    assert ok_json(db, "material", "list") == []  # nothing was written
    # every date-only form is usable through that day
    added = ok_json(db, *add, "--expires", "20270131")
    assert added["expires_at"].startswith("2027-02-01")


def test_times_print_in_the_zone_they_are_given_in_and_json_says_the_status(
    sqlite_url: str,
) -> None:
    """Tokyo is UTC+9: a compound that expires at 18:00 there prints 18:00 there (09:00 UTC
    in --json and in the lot tracker's messages), and the status is in --json too."""
    db = sqlite_url
    assert pkgline(db, "db", "upgrade").returncode == 0
    tokyo = "Asia/Tokyo"
    add = ("material", "add", "EMC-9", "--kind", "mold_compound", "--thaw-hours", "4")
    added = pkgline(db, *add, "--expires", "2027-01-31 18:00", tz=tokyo)
    assert added.returncode == 0, added.stderr
    assert "expires 2027-01-31 18:00" in added.stdout
    shown = pkgline(db, "material", "show", "EMC-9", tz=tokyo)
    assert "expires   2027-01-31 18:00" in shown.stdout, shown.stdout
    found = ok_json(db, "material", "show", "EMC-9")
    assert found["expires_at"] == "2027-01-31T09:00:00+00:00"
    assert found["status"] == "frozen"
    assert [m["status"] for m in ok_json(db, "material", "list")] == ["frozen"]
    thawed = ok_json(db, "material", "thaw", "EMC-9")
    assert thawed["status"] == "thawing"


def test_an_expired_compound_is_not_thawed(sqlite_url: str) -> None:
    db = sqlite_url
    assert pkgline(db, "db", "upgrade").returncode == 0
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    added = ok_json(
        db, "material", "add", "EMC-8", "--kind", "mold_compound", "--expires", "2099-01-01"
    )
    assert added["status"] == "frozen"
    with sqlite3.connect(db.removeprefix("sqlite:///")) as conn:
        conn.execute(
            "UPDATE materials SET expires_at = ? WHERE id = 'EMC-8'", (f"{yesterday} 00:00:00",)
        )
    assert ok_json(db, "material", "show", "EMC-8")["status"] == "expired"
    refused = pkgline(db, "material", "thaw", "EMC-8")
    assert refused.returncode == 1
    assert "expired at" in refused.stderr and "UTC: an expired lot is not thawed" in refused.stderr
    assert ok_json(db, "material", "show", "EMC-8")["thawed_at"] is None


def test_a_tool_that_does_not_exist_is_refused_naming_the_tools_as_tool_show_does(
    sqlite_url: str,
) -> None:
    """``material load W-1 --tool WB-9`` said only "there is no tool WB-9" (no ``allowed``
    in its JSON), where ``tool show WB-9`` names the tools there are."""
    asyncio.run(_line(sqlite_url))
    ok_json(sqlite_url, "material", "add", "W-1", "--kind", "wire", "--expires", "2099-12-31")
    sibling = json.loads(pkgline(sqlite_url, "tool", "show", "WB-9", "--json").stdout)
    for args in (
        ("material", "load", "W-1", "--tool", "WB-9"),
        ("material", "list", "--tool", "WB-9"),
        ("material", "list", "--tool", "WB-9", "--limit", "5"),
    ):
        result = pkgline(sqlite_url, *args, "--json")
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
    assert ok_json(sqlite_url, "material", "show", "W-1")["tool"] is None


def test_a_date_given_as_expiry_is_read_back_as_the_day_it_is_usable_through(
    sqlite_url: str,
) -> None:
    """``--expires 2027-03-31`` (usable through that day) printed only "expires 2027-04-01
    00:00": the date typed never came back, and the next day's looked like a mistake."""
    db = sqlite_url
    assert pkgline(db, "db", "upgrade").returncode == 0
    tokyo = "Asia/Tokyo"
    added = pkgline(
        db, "material", "add", "W-1", "--kind", "wire", "--expires", "2027-03-31", tz=tokyo
    )
    assert added.returncode == 0, added.stderr
    assert "added (expires 2027-04-01 00:00, usable through 2027-03-31)" in added.stdout
    shown = pkgline(db, "material", "show", "W-1", tz=tokyo)
    assert "expires   2027-04-01 00:00, usable through 2027-03-31" in shown.stdout, shown.stdout
    timed = pkgline(
        db, "material", "add", "W-2", "--kind", "wire", "--expires", "2027-03-31 18:00", tz=tokyo
    )
    assert "added (expires 2027-03-31 18:00)" in timed.stdout, timed.stdout
