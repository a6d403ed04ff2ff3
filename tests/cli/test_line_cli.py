"""``pkgline line status`` in a subprocess: the controllers (a stopped one, or one whose
heartbeat is stale, is "not running"; a live one is running), the tools, the lots running, the
queue per step (in flow order, most urgent first) and held lots with their reasons."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mes.domain import commands as cmd
from mes.domain.equipment import ControllerRecord, ToolRegistration
from mes.domain.model import LotState
from mes.domain.tool_state import ToolSnapshot
from pkgline.tool_views import STALE_AFTER_S, controller_running
from tests.cli.recorded_line import (
    FLOW,
    HOLD_REASON,
    LINE,
    create_database,
    line_config,
    running_line,
    wait_until,
)
from tests.pkgline_cli import pkgline as run_pkgline


def pkgline(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PKGLINE_DB": db, "COLUMNS": "200"}
    return run_pkgline(*args, env=env)


def status_json(db: str) -> Any:
    result = pkgline(db, "line", "status", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_status_shows_the_stopped_controller_tools_running_lots_queue_and_holds(
    line_db: str,
) -> None:
    status = status_json(line_db)
    (controller,) = status["controllers"]
    assert controller["name"] == LINE and controller["status"] == "stopped"
    assert controller["running"] is False and controller["pid"] > 0
    assert controller["tools"] == ["DB-1", "WB-1"]
    assert {t["id"]: (t["e10"], t["process_state"]) for t in status["tools"]} == {
        "DB-1": ("unmonitored", "READY"),
        "WB-1": ("unmonitored", "ALARM"),
    }
    assert [(r["lot"], r["step"], r["tool"]) for r in status["running"]] == [
        ("L-4", "SUBSTRATE_LOAD", None)
    ]
    # Flow order (SUBSTRATE_LOAD before MOLD); in a step, priority first, not age.
    assert [(q["step"], q["count"], q["lots"], q["tools"]) for q in status["queue"]] == [
        ("SUBSTRATE_LOAD", 2, ["L-5", "L-3"], []),
        ("MOLD", 1, ["L-1"], []),
    ]
    (held,) = status["held"]
    assert held["lot"] == "L-2" and held["reason"] == HOLD_REASON and held["user"] == "op1"

    text = pkgline(line_db, "line", "status")
    assert text.returncode == 0, text.stderr
    for expected in ("not running", "Queue per step (3 waiting", "L-5/1, L-3/6", HOLD_REASON):
        assert expected in text.stdout


async def _many_lots(url: str) -> None:
    """On top of the recorded line: 22 more lots held, 22 more running the manual first step
    and 22 more waiting for it (24 of each in all, with the recorded line's)."""
    from pkgline.bootstrap import open_services

    async with open_services(url) as services:
        lots = services.lots
        for n in range(22):
            for kind in ("H", "R", "W"):
                await lots.start(cmd.StartLot(f"{kind}-{n:02d}", FLOW, "planner", carriers=1))
            await lots.hold(cmd.HoldLot(f"H-{n:02d}", "op1", "inspection"))
            await lots.track_in(cmd.TrackIn(f"R-{n:02d}", "SUBSTRATE_LOAD", "op1"))


def test_a_table_of_many_lots_shows_the_first_of_each_saying_how_many_more_and_all_shows_every_one(
    line_db: str,
) -> None:
    """At plant size the table is read by a person: the first 20 lots running, held and
    waiting at each step, and how many more with where to see them; --all and --json have
    every one."""
    asyncio.run(_many_lots(line_db))
    everything = status_json(line_db)
    assert (len(everything["running"]), len(everything["held"])) == (23, 23)
    assert everything["queue"][0]["count"] == 24
    text = pkgline(line_db, "line", "status").stdout
    assert "Lots running (23; the longest first)" in text
    assert "and 3 more lots running: pkgline line status --all" in text
    assert "Held lots (23; most urgent first)" in text
    assert "and 3 more held lots: pkgline line status --all, lot list --state HOLD" in text
    assert "and 4 more" in text  # of the 24 waiting for SUBSTRATE_LOAD
    assert "each step's first 20 waiting lots, most urgent first" in text
    shown = [lot["lot"] for lot in everything["held"]]
    assert all(lot in text for lot in shown[:20]) and not any(lot in text for lot in shown[20:])
    every = pkgline(line_db, "line", "status", "--all").stdout
    assert all(lot["lot"] in every for lot in everything["held"] + everything["running"])
    assert all(lot in every for lot in everything["queue"][0]["lots"])
    assert " more " not in every


def test_status_of_a_database_no_controller_has_used(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    asyncio.run(create_database(url))
    result = pkgline(url, "line", "status")
    assert result.returncode == 0, result.stderr
    assert "no line controller has run on this database" in result.stdout
    assert "no lot waiting" in result.stdout


async def test_a_running_controller_is_shown_alive_with_its_lots(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    await create_database(url)
    async with running_line(line_config(), url) as line:
        lots = line.services.lots
        await lots.start(cmd.StartLot("R-1", FLOW, "planner", carriers=1))

        async def parked() -> bool:  # the line has no molder: the lot stops before MOLD
            lot = await lots.get("R-1")  # its stiffener attached, not attaching
            return lot.step == "STIFFENER_ATTACH" and lot.state is LotState.WAITING

        await wait_until(parked, "the lot waiting for MOLD")
        status = await asyncio.to_thread(status_json, url)
    (controller,) = status["controllers"]
    assert controller["running"] is True and controller["status"] != "stopped"
    assert controller["heartbeat_age_s"] < STALE_AFTER_S
    assert all(t["connected"] and t["controller_running"] for t in status["tools"])
    assert [(q["step"], q["lots"]) for q in status["queue"]] == [("MOLD", ["R-1"])]


def test_a_controller_is_not_running_once_stopped_or_its_heartbeat_is_stale() -> None:
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)

    def record(age_s: float, status: str = "2/2 tools answering") -> ControllerRecord:
        return ControllerRecord("l", "h", 1, now, now - timedelta(seconds=age_s), status)

    assert controller_running(record(4), now)
    assert controller_running(record(STALE_AFTER_S), now)
    assert not controller_running(record(STALE_AFTER_S + 0.1), now)
    assert not controller_running(record(0, "stopped"), now)


async def test_a_silent_controller_is_shown_without_heartbeat_not_as_stopped(
    tmp_path: Path,
) -> None:
    """A controller whose heartbeat is stale but that never recorded its stop may be alive
    and unable to write (a database read-only after a failover): "no heartbeat", with what
    it may mean, not "not running"."""
    from pkgline.bootstrap import open_services

    url = f"sqlite:///{tmp_path / 'silent.db'}"
    await create_database(url)
    now = datetime.now(UTC)
    old = now - timedelta(seconds=STALE_AFTER_S + 60)
    async with open_services(url) as services:
        await services.equipment.heartbeat(
            ControllerRecord(LINE, "cell-3", 4242, old, old, "2/2 tools answering")
        )
    result = await asyncio.to_thread(pkgline, url, "line", "status")
    assert result.returncode == 0, result.stderr
    assert "no heartbeat" in result.stdout and "not running" not in result.stdout
    assert "cannot write to the database" in result.stdout
    (controller,) = (await asyncio.to_thread(status_json, url))["controllers"]
    assert controller["running"] is False and controller["status"] == "2/2 tools answering"


UP = ToolSnapshot(True, "standby", "READY", "PRODUCTION")
"""A tool connected and up (registered alone, it is unscheduled_down, "not connected yet",
which blocks it too)."""


async def _mold_with_a_frozen_compound(url: str) -> None:
    from pkgline.bootstrap import open_services

    async with open_services(url) as services:
        await services.equipment.register(
            "line-b",
            [ToolRegistration("MOLD-1", "molder", "modbus 127.0.0.1:5022", ("MOLD",))],
        )
        await services.equipment.report("MOLD-1", UP)  # up: only the compound is in the way
        expires = datetime.now(UTC) + timedelta(days=30)
        await services.materials.add("EMC-9", "mold_compound", expires, "eng")
        await services.materials.load("EMC-9", "MOLD-1", "eng")


def test_a_tool_that_would_refuse_every_track_in_is_shown_blocked_with_what_it_expects(
    line_db: str,
) -> None:
    """L-1 waits for MOLD; the only molder holds a compound still in the freezer."""
    asyncio.run(_mold_with_a_frozen_compound(line_db))
    status = status_json(line_db)
    mold = next(q for q in status["queue"] if q["step"] == "MOLD")
    assert mold["tools"] == ["MOLD-1"] and mold["lots"] == ["L-1"]
    (why,) = mold["blocked"]["MOLD-1"]
    assert "mold_compound EMC-9 is still frozen" in why
    assert "expected EMC-9 out of the freezer at least 4 h before use" in why
    tools = {t["id"]: t["blocked"] for t in status["tools"]}
    assert tools == {"DB-1": [], "WB-1": [], "MOLD-1": [why]}
    assert all(q["blocked"] == {} for q in status["queue"] if q["step"] != "MOLD")

    text = pkgline(line_db, "line", "status")
    assert text.returncode == 0, text.stderr
    assert "MOLD-1 (blocked)" in text.stdout
    assert f"MOLD-1 refuses every track-in: {why}" in " ".join(text.stdout.split())


async def _mold_disqualified(url: str) -> None:
    from pkgline.bootstrap import open_services

    async with open_services(url) as services:
        await services.equipment.register(
            "line-b",
            [ToolRegistration("MOLD-1", "molder", "modbus 127.0.0.1:5022", ("MOLD", "FILL"))],
        )
        await services.equipment.report("MOLD-1", UP)  # up: only the disqualification is in the way
        await services.qualifications.set("MOLD-1", "MOLD", False, "eng", "chase worn")


def test_a_tool_disqualified_for_the_step_a_lot_waits_for_is_shown_blocked_with_why(
    line_db: str,
) -> None:
    """Found by a quality engineer's walkthrough: an SPC inhibit disqualified the only
    molder for MOLD, and every lot for MOLD waited with nothing in `line status` saying why
    (the controller refuses their track-ins and only logs it). The queue's group names the
    tool blocked for its step, in the words of the refused track-in; the tool's own
    `blocked` (every track-in) stays empty: FILL runs there still."""
    asyncio.run(_mold_disqualified(line_db))
    status = status_json(line_db)
    mold = next(q for q in status["queue"] if q["step"] == "MOLD")
    assert mold["lots"] == ["L-1"]
    (why,) = mold["blocked"]["MOLD-1"]
    assert why.startswith("MOLD-1 was disqualified for MOLD by ")
    assert "(chase worn); expected MOLD-1 qualified again (pkgline tool qualify MOLD-1" in why
    assert {t["id"]: t["blocked"] for t in status["tools"]}["MOLD-1"] == []

    text = pkgline(line_db, "line", "status")
    assert text.returncode == 0, text.stderr
    assert "MOLD-1 (blocked)" in text.stdout
    assert f"MOLD-1 refuses every track-in of MOLD: {why}" in " ".join(text.stdout.split())


async def _mold_in_maintenance(url: str) -> None:
    from pkgline.bootstrap import open_services

    async with open_services(url) as services:
        await services.equipment.register(
            "line-b",
            [ToolRegistration("MOLD-1", "molder", "modbus 127.0.0.1:5022", ("MOLD", "FILL"))],
        )
        await services.equipment.report(
            "MOLD-1", ToolSnapshot(True, "scheduled_down", "READY", "MAINTENANCE")
        )


def test_a_tool_down_for_maintenance_is_shown_blocked_with_why(line_db: str) -> None:
    """Found by an equipment engineer's walkthrough: the only molder in its MAINTENANCE mode
    (E10 scheduled_down), L-1 waited for MOLD and the queue named MOLD-1 with nothing saying
    it takes no lot. It is blocked for every track-in, in the words of the refused one."""
    asyncio.run(_mold_in_maintenance(line_db))
    status = status_json(line_db)
    mold = next(q for q in status["queue"] if q["step"] == "MOLD")
    assert mold["lots"] == ["L-1"]
    why = "MOLD-1 is scheduled_down, mode MAINTENANCE; expected MOLD-1 up (standby, productive "
    why += "or engineering)"
    assert mold["blocked"] == {"MOLD-1": [why]}
    tools = {t["id"]: t["blocked"] for t in status["tools"]}
    # the stopped controller's tools (unmonitored) are not: its own line says so
    assert tools == {"DB-1": [], "WB-1": [], "MOLD-1": [why]}

    text = pkgline(line_db, "line", "status")
    assert text.returncode == 0, text.stderr
    assert "MOLD-1 (blocked)" in text.stdout
    assert f"MOLD-1 refuses every track-in: {why}" in " ".join(text.stdout.split())
