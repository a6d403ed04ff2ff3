"""``pkgline tool`` in a subprocess against a database a real line controller wrote: what
each tool does and since when, time in each E10 state over a window with availability, the
state changes; manual and auto dispatch recorded with the user and honoured by a running
controller; an unknown tool is exit 1 with the known ids, a bad window exit 2."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mes.domain import commands as cmd
from mes.domain.equipment import E10_STATES
from mes.domain.model import LotState
from pkgline.cli.tool import ago
from pkgline.tool_views import parse_window
from tests.cli.recorded_line import (
    FLOW,
    LINE,
    create_database,
    line_config,
    running_line,
    wait_until,
)
from tests.pkgline_cli import pkgline as run_pkgline


def pkgline(
    db: str, *args: str, user: str = "op1", tz: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PKGLINE_DB": db, "PKGLINE_USER": user, "COLUMNS": "200"}
    if tz is not None:
        env["TZ"] = tz
    return run_pkgline(*args, env=env)


def ok_json(db: str, *args: str) -> Any:
    result = pkgline(db, *args, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_tool_list_shows_state_mode_e10_and_alarm_as_the_controller_recorded(
    line_db: str,
) -> None:
    tools = {t["id"]: t for t in ok_json(line_db, "tool", "list")}
    assert set(tools) == {"DB-1", "WB-1"}
    bonder, wire = tools["DB-1"], tools["WB-1"]
    assert bonder["line"] == LINE and bonder["class"] == "die_bonder"
    assert bonder["address"].startswith("modbus://127.0.0.1:")
    assert wire["address"].startswith("opc.tcp://127.0.0.1:")
    assert bonder["dispatch"] == "auto" and bonder["connected"] is False
    assert bonder["controller_running"] is False
    # The controller stopped: nobody follows the tools, what they last did stays on record.
    assert (bonder["process_state"], bonder["mode"], bonder["e10"]) == (
        "READY",
        "PRODUCTION",
        "unmonitored",
    )
    assert wire["process_state"] == "ALARM" and wire["e10"] == "unmonitored"
    assert wire["alarm"]["code"] == 1001 and "fault" in wire["alarm"]["text"]
    assert "STIFFENER_ATTACH" in bonder["steps"]

    table = pkgline(line_db, "tool", "list")
    assert table.returncode == 0, table.stderr
    assert "WB-1" in table.stdout and "unmonitored" in table.stdout
    assert "1001 error: process fault" in table.stdout
    assert "its line controller is not running" in table.stdout
    assert "not connected (last ALARM)" in table.stdout  # not what it does now


def test_tool_show_gives_seconds_and_percent_per_e10_state_availability_and_changes(
    line_db: str,
) -> None:
    shown = ok_json(line_db, "tool", "show", "DB-1", "--window", "1h")
    window = shown["window"]
    assert window["window_s"] == pytest.approx(3600, abs=1)
    assert set(window["seconds"]) == set(E10_STATES)
    seconds = window["seconds"]
    assert seconds["productive"] > 0  # it ran jobs
    assert sum(seconds.values()) == pytest.approx(window["recorded_s"], abs=0.01)
    assert window["unmonitored_s"] > 0, "since the controller stopped"
    assert sum(window["percent"].values()) == pytest.approx(100, abs=0.1)
    uptime = seconds["productive"] + seconds["standby"] + seconds["engineering"]
    # The seconds are rounded to the millisecond, over a recorded time of about a second.
    assert window["availability_pct"] == pytest.approx(100 * uptime / window["recorded_s"], abs=0.2)
    assert window["utilization_pct"] == pytest.approx(
        100 * seconds["productive"] / window["recorded_s"], abs=0.2
    )
    changes = shown["changes"]
    assert changes[0]["e10"] == "unscheduled_down" and not changes[0]["connected"]
    assert {"productive", "standby"} <= {c["e10"] for c in changes}
    assert changes[-1]["e10"] == "unmonitored" and "stopped" in changes[-1]["reason"]
    assert [c["at"] for c in changes] == sorted(c["at"] for c in changes)

    text = pkgline(line_db, "tool", "show", "WB-1", "--window", "30m", "--changes", "3")
    assert text.returncode == 0, text.stderr
    assert "Time in state, last 30m" in text.stdout and "availability" in text.stdout
    assert "State changes (the last 3 of" in text.stdout
    assert "1001 error: process fault during job" in text.stdout


def test_an_unknown_tool_is_refused_with_the_known_ids(line_db: str) -> None:
    result = pkgline(line_db, "tool", "show", "DB-9", "--json")
    assert result.returncode == 1
    refusal = json.loads(result.stdout)
    assert refusal["error"] == "unknown_tool" and refusal["allowed"] == ["DB-1", "WB-1"]
    text = pkgline(line_db, "tool", "manual", "DB-9", "--reason", "x")
    assert text.returncode == 1
    assert "there is no tool DB-9" in text.stderr and "DB-1, WB-1" in text.stderr


def test_a_bad_window_is_a_usage_error(line_db: str) -> None:
    result = pkgline(line_db, "tool", "show", "DB-1", "--window", "8x")
    assert result.returncode == 2
    assert "--window '8x'" in result.stderr
    months = pkgline(line_db, "tool", "show", "DB-1", "--window", "10M")
    assert months.returncode == 2 and "M is no unit: m for minutes" in months.stderr


@pytest.mark.parametrize(
    "text",
    [
        "8x",
        "h",
        "0h",
        "-2d",
        "2 days",
        "",
        "36501d",
        "99999999999999999999d",
        "10M",  # months, to some
        "\u0663h",  # an Arabic-Indic three
    ],
)
def test_a_window_without_a_number_and_a_unit_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="--window"):
        parse_window(text)


def test_manual_and_auto_are_recorded_with_the_user_and_the_reason(line_db: str) -> None:
    manual = ok_json(line_db, "tool", "manual", "DB-1", "--reason", "bond head cleaning")
    assert manual["dispatch"] == "manual" and manual["dispatch_by"] == "op1"
    assert manual["dispatch_reason"] == "bond head cleaning"

    back = pkgline(line_db, "tool", "auto", "DB-1", user="op2")
    assert back.returncode == 0, back.stderr
    assert "tool DB-1 is now auto (by op2)" in back.stdout
    shown = ok_json(line_db, "tool", "show", "DB-1")
    assert shown["dispatch"] == "auto" and shown["dispatch_by"] == "op2"


def test_manual_or_auto_again_changes_nothing_and_says_since_when(line_db: str) -> None:
    """The same command twice rewrote who, when and why: DB-1 looked manual since the
    second time, for the second reason."""
    first = ok_json(line_db, "tool", "manual", "DB-1", "--reason", "bond head cleaning")
    assert first["changed"] is True
    again = pkgline(line_db, "tool", "manual", "DB-1", "--reason", "still cleaning", user="op2")
    assert again.returncode == 0, again.stderr
    assert "tool DB-1 is manual already (since " in again.stdout
    assert "by op1: bond head cleaning); nothing changed" in again.stdout
    shown = ok_json(line_db, "tool", "show", "DB-1")
    assert (shown["dispatch_by"], shown["dispatch_at"], shown["dispatch_reason"]) == (
        "op1",
        first["dispatch_at"],
        "bond head cleaning",
    )
    switched = pkgline(line_db, "tool", "auto", "DB-1", "--json", user="op2")
    assert switched.returncode == 0, switched.stderr
    back = json.loads(switched.stdout)
    assert back["changed"] is True and back["dispatch_by"] == "op2"
    twice = pkgline(line_db, "tool", "auto", "DB-1", "--json", user="op3")
    assert twice.returncode == 0, twice.stderr
    kept = json.loads(twice.stdout)
    assert kept["changed"] is False
    assert (kept["dispatch_by"], kept["dispatch_at"]) == ("op2", back["dispatch_at"])


def test_manual_needs_a_reason(line_db: str) -> None:
    result = pkgline(line_db, "tool", "manual", "DB-1", "--reason", " ")
    assert result.returncode == 2
    assert "--reason must say why" in result.stderr


async def test_a_running_controller_starts_no_lot_on_a_manual_tool_until_it_is_auto(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    await create_database(url)

    async def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(pkgline, url, *args)

    async with running_line(line_config(), url) as line:
        lots = line.services.lots
        result = await cli("tool", "manual", "DB-1", "--reason", "recipe qualification")
        assert result.returncode == 0, result.stderr
        assert "starts no new lot on it within its dispatch interval" in result.stdout
        await lots.start(cmd.StartLot("M-1", FLOW, "planner", carriers=1))

        async def loaded() -> bool:
            return (await lots.get("M-1")).step == "SUBSTRATE_LOAD"

        await wait_until(loaded, "the manual step done")
        # Several dispatch intervals (0.2 s) with DIE_ATTACH waiting for the manual DB-1.
        for _ in range(5):
            await asyncio.sleep(0.2)
            lot = await lots.get("M-1")
            assert lot.state is LotState.WAITING and lot.step == "SUBSTRATE_LOAD"

        result = await cli("tool", "auto", "DB-1")
        assert result.returncode == 0, result.stderr

        async def bonded() -> bool:
            lot = await lots.get("M-1")
            return "DIE_ATTACH" in lot.path or (
                lot.running is not None and lot.running.tool == "DB-1"
            )

        await wait_until(bonded, "DIE_ATTACH on DB-1 once it is auto")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("30m", 1800),
        ("8h", 28800),
        ("2d", 172800),
        ("1.5h", 5400),
        (" 2H ", 7200),
        ("36500d", 36500 * 86400),
    ],
)
def test_windows_are_a_number_and_a_unit(text: str, seconds: float) -> None:
    assert parse_window(text) == timedelta(seconds=seconds)


def test_durations_read_shortest_first() -> None:
    assert [ago(timedelta(seconds=s)) for s in (4, 192, 7500, 273600, -3)] == [
        "4s",
        "3m12s",
        "2h05m",
        "3d04h",
        "0s",
    ]


def test_a_tool_not_connected_shows_so_with_what_it_last_reported() -> None:
    """It showed READY, what the tool last reported before the link went (the probe)."""
    from rich.console import Console

    from pkgline.cli.tool import tools_table

    tool = {
        "id": "MOLD-1",
        "line": "l1",
        "class": "molder",
        "address": "modbus 127.0.0.1:5020",
        "dispatch": "auto",
        "e10": "unscheduled_down",
        "e10_since": "2026-12-06T08:00:00+00:00",
        "e10_for_s": 60.0,
        "connected": False,
        "process_state": "READY",
        "mode": "PRODUCTION",
        "reason": "connection refused",
        "alarm": None,
        "lot": None,
        "job": None,
        "sites_done": 0,
        "sites_total": 0,
        "controller_running": True,
    }
    for compact, says in (
        (False, "not connected (last READY): connection refused"),
        (True, "not connected (last READY)"),
    ):
        console = Console(width=400, record=True)
        console.print(tools_table([tool], compact=compact))
        assert says in console.export_text()
        console = Console(width=400, record=True)
        console.print(tools_table([{**tool, "connected": True}], compact=compact))
        assert "not connected" not in console.export_text()
