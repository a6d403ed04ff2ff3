"""``pkgline tool reset`` in a subprocess, against a real line controller running simulated
tools on loopback (a die bonder over Modbus, a wire bonder over OPC UA): an alarm raised on the
tool is reset through the controller that owns it, recorded with who and why, and the tool is
dispatched to again; the lot the alarm stopped stays on hold. Refusals change nothing: a tool
not in alarm, an unknown tool, a tool no controller runs, a tool that refuses (its reason is
printed and recorded), a tool that does not answer, a request no controller takes in time."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import pytest

from drivers.model import Alarm, AlarmSeverity, ProcessState
from mes.domain import commands as cmd
from mes.domain.equipment import ControllerRecord
from mes.domain.model import HoldSource, LotState
from mes.service import utc_now
from pkgline.bootstrap import open_services
from tests.cli.recorded_line import (
    FLOW,
    LINE,
    RunningLine,
    create_database,
    line_config,
    running_line,
    wait_until,
)
from tests.interrupt import interrupt, interruptible
from tests.pkgline_cli import pkgline as run_pkgline

pytestmark = pytest.mark.slow

FAULT = Alarm(4711, "bond head crash", AlarmSeverity.ERROR)


def pkgline(db: str, *args: str, user: str = "op1") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PKGLINE_DB": db, "PKGLINE_USER": user, "COLUMNS": "200"}
    return run_pkgline(*args, env=env, timeout=90)


async def cli(db: str, *args: str, user: str = "op1") -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(pkgline, db, *args, user=user)


async def _alarm_recorded(line: RunningLine, tool_id: str) -> None:
    async def alarmed() -> bool:
        snap = (await line.services.equipment.tool(tool_id)).snapshot
        return snap.connected and snap.process_state == "ALARM"

    await wait_until(alarmed, f"the alarm of {tool_id} recorded")


async def _resets(line: RunningLine, tool_id: str) -> list[Any]:
    return await line.services.equipment.resets(tool_id)


@pytest.mark.parametrize("tool_id", ["DB-1", "WB-1"], ids=["modbus", "opcua"])
async def test_an_alarm_is_reset_through_the_controller_and_recorded_with_who_and_why(
    tmp_path: Any, tool_id: str
) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    await create_database(url)
    async with running_line(line_config(), url) as line:
        virtual = line.simulated.tool(tool_id)
        virtual.inject_alarm(FAULT)
        await _alarm_recorded(line, tool_id)

        result = await cli(url, "tool", "reset", tool_id, "--reason", "head cleared", user="op2")
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"tool {tool_id}: alarm reset: the tool is IDLE" in result.stdout
        assert "(by op2: head cleared)" in result.stdout
        assert "dispatches waiting lots to it again" in result.stdout
        assert virtual.status.state is ProcessState.IDLE and virtual.status.alarm is None

        async def recorded_back() -> bool:
            snap = (await line.services.equipment.tool(tool_id)).snapshot
            return snap.process_state == "IDLE" and snap.alarm is None

        await wait_until(recorded_back, f"{tool_id} recorded back in IDLE")
        shown = await cli(url, "tool", "show", tool_id, "--json")
        assert shown.returncode == 0, shown.stderr
        [reset] = json.loads(shown.stdout)["resets"]
        assert (reset["status"], reset["requested_by"], reset["reason"]) == (
            "done",
            "op2",
            "head cleared",
        )
        assert reset["state_after"] == "IDLE" and reset["answered_at"] is not None
        text = await cli(url, "tool", "show", tool_id)
        assert "Alarm resets (the last 1)" in text.stdout and "head cleared" in text.stdout


async def test_after_a_reset_the_lot_the_alarm_stopped_stays_held_and_the_tool_runs_lots_again(
    tmp_path: Any,
) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    await create_database(url)
    config = line_config()
    async with running_line(config, url) as line:
        lots, bonder = line.services.lots, line.simulated.tool("DB-1")
        bonder.settings.time_scale = 1.0  # DIE_ATTACH takes long enough to alarm in the middle
        await lots.start(cmd.StartLot("A-1", FLOW, "planner", carriers=1))

        async def executing() -> bool:
            job = bonder.status.job_id
            return job is not None and await lots.job(job) is not None

        await wait_until(executing, "a job of A-1 written and executing on DB-1")
        bonder.inject_alarm(FAULT)

        async def held() -> bool:
            return (await lots.get("A-1")).state is LotState.HOLD

        await wait_until(held, "A-1 held by the alarm")
        await _alarm_recorded(line, "DB-1")  # the hold may be written before the tool's state
        bonder.settings.time_scale = 0.02
        result = await cli(url, "tool", "reset", "DB-1", "--reason", "crash cleared", "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        assert json.loads(result.stdout)["state_after"] == "READY", "the recipe stays active"

        lot = await lots.get("A-1")
        assert lot.state is LotState.HOLD and lot.hold is not None
        assert lot.hold.source is HoldSource.ALARM and "4711" in lot.hold.reason

        await lots.start(cmd.StartLot("A-2", FLOW, "planner", carriers=1))

        async def bonded() -> bool:
            return "DIE_ATTACH" in (await lots.get("A-2")).path

        await wait_until(bonded, "A-2 through DIE_ATTACH on DB-1 after the reset")


async def test_refusals_change_nothing_and_say_what_was_expected(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    await create_database(url)
    async with running_line(line_config(), url) as line:
        not_alarmed = await cli(url, "tool", "reset", "DB-1", "--reason", "just in case")
        assert not_alarmed.returncode == 1
        assert "tool DB-1 is IDLE, not in ALARM: nothing to reset" in not_alarmed.stderr

        unknown = await cli(url, "tool", "reset", "DB-9", "--reason", "x", "--json")
        assert unknown.returncode == 1
        refusal = json.loads(unknown.stdout)
        assert refusal["error"] == "unknown_tool" and refusal["allowed"] == ["DB-1", "WB-1"]

        no_reason = await cli(url, "tool", "reset", "DB-1", "--reason", "  ")
        assert no_reason.returncode == 2 and "--reason must say why" in no_reason.stderr
        for wait in ("nan", "-1"):  # both usage errors, alike (the CLI probe)
            waits = await cli(url, "tool", "reset", "DB-1", "--reason", "x", "--wait", wait)
            assert waits.returncode == 2, waits.stdout + waits.stderr
        assert await _resets(line, "DB-1") == []

        wire = line.simulated.tool("WB-1")
        wire.inject_alarm(FAULT, persists="clamp still open: close it at the tool")
        await _alarm_recorded(line, "WB-1")
        refused = await cli(url, "tool", "reset", "WB-1", "--reason", "try")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "tool WB-1 refused the reset" in refused.stderr
        assert "clamp still open: close it at the tool" in refused.stderr
        assert "(it stays ALARM)" in refused.stderr
        assert wire.status.state is ProcessState.ALARM
        [recorded] = await _resets(line, "WB-1")
        assert recorded.status.value == "refused" and "clamp still open" in (recorded.outcome or "")

        wire.clear_condition()
        again = await cli(url, "tool", "reset", "WB-1", "--reason", "clamp closed")
        assert again.returncode == 0, again.stdout + again.stderr
        assert wire.status.state is ProcessState.IDLE


async def test_a_tool_that_does_not_answer_is_not_reset(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    await create_database(url)
    async with running_line(line_config(), url) as line:
        bonder = line.simulated.tool("DB-1")
        bonder.inject_alarm(FAULT)
        await _alarm_recorded(line, "DB-1")
        await line.simulated.drop_connections("DB-1", refuse_for_s=60)

        async def down() -> bool:
            return not (await line.services.equipment.tool("DB-1")).snapshot.connected

        await wait_until(down, "DB-1 recorded as not answering")
        result = await cli(url, "tool", "reset", "DB-1", "--reason", "remote reset", "--json")
        assert result.returncode == 5, result.stdout + result.stderr
        answer = json.loads(result.stdout)
        assert answer["status"] == "unreachable"
        assert "tool DB-1 does not answer: nothing was reset" in answer["outcome"]
        assert bonder.status.state is ProcessState.ALARM


def test_a_tool_no_controller_runs_cannot_be_reset(line_db: str) -> None:
    """The recorded line's controller has stopped; its wire bonder was left in alarm."""
    result = pkgline(line_db, "tool", "reset", "WB-1", "--reason", "x")
    assert result.returncode == 1
    assert f"line controller {LINE} is not running" in result.stderr
    shown = json.loads(pkgline(line_db, "tool", "show", "WB-1", "--json").stdout)
    assert shown["resets"] == [] and shown["process_state"] == "ALARM"


async def test_a_request_no_controller_takes_in_time_expires_and_is_never_carried_out(
    line_db: str,
) -> None:
    """A controller that looks alive (its heartbeat is fresh) but does not answer: hung, or
    died a moment ago."""
    async with open_services(line_db) as services:
        now = utc_now()
        await services.equipment.heartbeat(
            ControllerRecord(LINE, "host", 1, now, now, "hung", ("DB-1", "WB-1"))
        )
    result = await cli(line_db, "tool", "reset", "WB-1", "--reason", "x", "--wait", "0.5")
    assert result.returncode == 5, result.stdout + result.stderr
    assert f"line controller {LINE} did not take it within 0.5 s: nothing was reset" in (
        result.stderr
    )
    async with open_services(line_db) as services:
        [expired] = await services.equipment.resets("WB-1")
        assert expired.status.value == "expired"
        assert await services.equipment.open_resets(LINE) == []


async def test_a_wait_too_long_to_be_a_time_is_a_usage_error_and_asks_nothing(
    line_db: str,
) -> None:
    """``--wait 1e12`` (31,700 years) ended in an OverflowError traceback (exit 1) once the
    tool was in alarm and its controller alive: the request's expiry is past year 9999."""
    async with open_services(line_db) as services:
        now = utc_now()
        await services.equipment.heartbeat(
            ControllerRecord(LINE, "host", 1, now, now, "hung", ("DB-1", "WB-1"))
        )
    for wait in ("1e12", "86401"):
        result = await cli(line_db, "tool", "reset", "WB-1", "--reason", "x", "--wait", wait)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        assert f"--wait {float(wait):g}: expected a number of seconds, 0.1 to 86,400" in (
            result.stderr
        )
    async with open_services(line_db) as services:
        assert await services.equipment.resets("WB-1") == []


async def test_an_operator_who_stops_waiting_withdraws_the_request(line_db: str) -> None:
    """Ctrl-C at the command: the request expires at once instead of at the end of --wait,
    so no controller carries it out after the operator has gone."""
    async with open_services(line_db) as services:
        now = utc_now()
        await services.equipment.heartbeat(
            ControllerRecord(LINE, "host", 1, now, now, "hung", ("DB-1", "WB-1"))
        )
        env = {**os.environ, "PKGLINE_DB": line_db, "PKGLINE_USER": "op1"}
        command = interruptible(sys.executable, "-m", "pkgline", "tool", "reset", "WB-1")
        process = await asyncio.create_subprocess_exec(
            *command,
            "--reason",
            "x",
            "--wait",
            "120",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:

            async def asked() -> bool:
                return bool(await services.equipment.open_resets(LINE))

            await wait_until(asked, "the reset asked")
            await interrupt(process)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert process.returncode != 0, "interrupted"
        [withdrawn] = await services.equipment.resets("WB-1")
        assert withdrawn.status.value == "expired"
        assert withdrawn.outcome == "the operator stopped waiting: not reset"
