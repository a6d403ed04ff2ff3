"""``pkgline tool ...`` and ``pkgline line status`` as clients of a running server (on a Unix
socket in tmp_path): the same JSON and output as direct mode on the same database, each
command saying which mode it used; a role without the authority is refused (403, recorded as
a security event, nothing changed); an unknown tool is 404, a malformed value 422."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from drivers.model import Alarm, AlarmSeverity
from mes.domain.authority import CONTROLLER, Role
from mes.domain.equipment import ToolRegistration
from mes.domain.identity import EventKind
from tests.api.conftest import ACCOUNT, ADMIN, RunningApi, cli, start_api
from tests.cli.recorded_line import line_config, running_line, wait_until
from tests.interrupt import interrupt, interruptible

pytestmark = pytest.mark.slow

TOOLS = [
    ToolRegistration("DB-1", "die_bonder", "modbus 127.0.0.1", ("DIE_ATTACH",)),
    ToolRegistration("WB-1", "wire_bonder", "opc.tcp://127.0.0.1", ("WIRE_BOND",)),
]


async def _registered(api: RunningApi) -> None:
    await api.state.services.equipment.register("line-1", TOOLS, by=CONTROLLER)


def _steady(value: Any) -> Any:
    """A tool's JSON without what moves with the clock (time in state so far)."""
    if isinstance(value, list):
        return [_steady(v) for v in value]
    return {k: v for k, v in value.items() if k not in ("e10_for_s", "window")}


async def _refusals(api: RunningApi, action: str) -> list[Any]:
    return [
        e
        for e in await api.state.identity.events(ADMIN, 1000)
        if e.kind is EventKind.REFUSED and e.action == action and e.actor == ACCOUNT
    ]


def _mode_said(ran: Any, api: RunningApi) -> None:
    assert f"via server unix://{api.socket} as {ACCOUNT} (os_account)" in ran.stderr, ran.stderr


async def test_tool_list_show_manual_and_auto_through_the_server(api: RunningApi) -> None:
    await _registered(api)
    via = ("--server", f"unix://{api.socket}")

    listed = await cli("tool", "list", "--json", *via)
    direct = await cli("tool", "list", "--json", "--db", api.db)
    assert listed.returncode == direct.returncode == 0, listed.stderr + direct.stderr
    _mode_said(listed, api)
    assert direct.stderr.startswith("direct database sqlite:///")
    assert _steady(json.loads(listed.stdout)) == _steady(json.loads(direct.stdout))
    assert [t["id"] for t in json.loads(listed.stdout)] == ["DB-1", "WB-1"]
    one_line = await cli("tool", "list", "--line", "nowhere", *via)
    assert one_line.returncode == 0 and "no tools" in one_line.stdout

    shown = await cli("tool", "show", "DB-1", "--window", "1h", "--json", *via)
    shown_direct = await cli("tool", "show", "DB-1", "--window", "1h", "--json", "--db", api.db)
    assert shown.returncode == shown_direct.returncode == 0, shown.stderr + shown_direct.stderr
    remote, local = json.loads(shown.stdout), json.loads(shown_direct.stdout)
    assert _steady(remote) == _steady(local)
    assert remote["window"]["window_s"] == local["window"]["window_s"] == 3600
    assert remote["window"].keys() == local["window"].keys()
    human = await cli("tool", "show", "DB-1", *via)
    assert human.returncode == 0 and "DB-1  (die_bonder, line line-1)" in human.stdout
    assert "Time in state, last 8h" in human.stdout and "availability" in human.stdout

    unknown = await cli("tool", "show", "NOPE", "--json", *via)
    assert unknown.returncode == 1
    assert json.loads(unknown.stdout)["error"] == "unknown_tool"
    assert json.loads(unknown.stdout)["allowed"] == ["DB-1", "WB-1"]
    async with api.client() as client:
        malformed = await client.get("/tools/DB-1", params={"window": "soon"})
        assert malformed.status_code == 422
        assert malformed.json()["message"].startswith("window 'soon': expected")  # the query's

    # an operator may not switch a tool's dispatch: refused, recorded, nothing changed
    refused = await cli("tool", "manual", "DB-1", "--reason", "cleaning", "--json", *via)
    assert refused.returncode == 1, refused.stdout
    assert json.loads(refused.stdout)["error"] == "not_authorized"
    assert json.loads(refused.stdout)["allowed"] == ["controller", "engineer", "technician"]
    assert len(await _refusals(api, "tool_mode")) == 1
    assert (await api.state.services.equipment.tool("DB-1", by=ADMIN)).dispatch.value == "auto"

    await api.roles(Role.TECHNICIAN)
    manual = await cli("tool", "manual", "DB-1", "--reason", "cleaning", *via)
    assert manual.returncode == 0, manual.stderr
    assert f"✔ tool DB-1 is now manual (by {ACCOUNT}: cleaning)" in manual.stdout
    assert "line controller line-1 is not running" in manual.stdout
    record = await api.state.services.equipment.tool("DB-1", by=ADMIN)
    assert (record.dispatch.value, record.dispatch_by) == ("manual", ACCOUNT)
    auto = await cli("tool", "auto", "DB-1", "--json", *via)
    auto_direct = await cli("tool", "auto", "DB-1", "--json", "--db", api.db)
    assert auto.returncode == auto_direct.returncode == 0, auto.stderr + auto_direct.stderr
    # the second asks a tool in auto already: nothing written, the same record
    assert (json.loads(auto.stdout)["changed"], json.loads(auto_direct.stdout)["changed"]) == (
        True,
        False,
    )
    ignore = ("e10_for_s", "updated_at", "changed")
    assert {k: v for k, v in json.loads(auto.stdout).items() if k not in ignore} == {
        k: v for k, v in json.loads(auto_direct.stdout).items() if k not in ignore
    }
    not_found = await cli("tool", "auto", "NOPE", *via)
    assert not_found.returncode == 1 and "there is no tool NOPE" in not_found.stderr


async def test_tool_show_gives_the_tools_jobs_in_the_window_through_the_server(
    api: RunningApi,
) -> None:
    """``tool show`` (and GET /tools/{tool}) list the tool's jobs started in the window, the
    newest first, with lot, step, carrier, status, sites in and yield; the same JSON as
    direct mode."""
    from mes.domain import commands as cmd

    await _registered(api)
    lots = api.state.services.lots
    start = cmd.StartLot("J-1", "stiffener-bga", "olga", carriers=2, site_rows=2, site_cols=5)
    await lots.start(start, by=ADMIN)
    await lots.track_in(cmd.TrackIn("J-1", "SUBSTRATE_LOAD", "olga"), by=ADMIN)
    await lots.track_out(cmd.TrackOut("J-1", "olga"), by=ADMIN)
    first, second = (await lots.get("J-1", by=ADMIN)).carriers
    track_in = cmd.TrackIn("J-1", "DIE_ATTACH", "line-1", tool="DB-1", dispatched=True)
    await lots.track_in(track_in, by=CONTROLLER)
    await lots.start_job(cmd.StartJob("J-1", "J-1-A", "DB-1", first, "line-1"), by=CONTROLLER)
    missing = (cmd.SiteRejectGiven(first, 1, 1, "MISSING_DIE"),)
    await lots.record_job(cmd.RecordJob("J-1-A", "line-1", {}, missing), by=CONTROLLER)
    await lots.start_job(cmd.StartJob("J-1", "J-1-B", "DB-1", second, "line-1"), by=CONTROLLER)
    via = ("--server", f"unix://{api.socket}")

    shown = await cli("tool", "show", "DB-1", "--json", *via)
    direct = await cli("tool", "show", "DB-1", "--json", "--db", api.db)
    assert shown.returncode == direct.returncode == 0, shown.stderr + direct.stderr
    jobs = json.loads(shown.stdout)["jobs"]
    assert jobs == json.loads(direct.stdout)["jobs"]
    assert [(j["job_id"], j["lot"], j["step"], j["carrier"], j["status"]) for j in jobs] == [
        ("J-1-B", "J-1", "DIE_ATTACH", second, "started"),
        ("J-1-A", "J-1", "DIE_ATTACH", first, "recorded"),
    ]
    assert [(j["sites_in"], j["rejected"], j["yield_pct"]) for j in jobs] == [
        (10, 0, None),
        (10, 1, 90.0),
    ]
    human = await cli("tool", "show", "DB-1", *via)
    assert human.returncode == 0, human.stderr
    assert "Jobs (the newest 2 in 8h)" in human.stdout and "90.0" in human.stdout
    idle = await cli("tool", "show", "WB-1", *via)
    assert idle.returncode == 0 and "no job started in the last 8h" in idle.stdout

    # tool jobs: the same jobs a page at a time, the notice of more, either way alike
    page = await cli("tool", "jobs", "DB-1", "--limit", "1", "--json", *via)
    page_direct = await cli("tool", "jobs", "DB-1", "--limit", "1", "--json", "--db", api.db)
    assert page.returncode == page_direct.returncode == 0, page.stderr + page_direct.stderr
    assert json.loads(page.stdout) == json.loads(page_direct.stdout) == jobs[:1]
    notice = json.loads(page.stderr.strip().splitlines()[-1])
    assert (notice["total"], notice["shown"], notice["more"]) == (2, 1, True)
    assert notice["next_after"] == "J-1-B" and notice["mode"].startswith("via server")
    rest = await cli("tool", "jobs", "DB-1", "--after", "J-1-B", "--json", *via)
    assert rest.returncode == 0 and json.loads(rest.stdout) == jobs[1:]
    table = await cli("tool", "jobs", "DB-1", "--limit", "1", *via)
    assert table.returncode == 0, table.stderr
    assert "J-1-B" in table.stdout and "J-1-A" not in table.stdout  # the job id: the cursor
    assert "1 of 2 jobs; more follow: the same command with --after J-1-B" in table.stdout
    of_lot = await cli("tool", "jobs", "DB-1", "--lot", "NO-LOT", "--json", *via)
    assert of_lot.returncode == 1 and json.loads(of_lot.stdout)["error"] == "unknown_lot"
    bad_since = await cli("tool", "jobs", "DB-1", "--since", "yesterday", *via)
    assert bad_since.returncode == 2 and "expected a duration ago (30m" in bad_since.stderr
    lately = await cli("tool", "jobs", "DB-1", "--since", "1h", "--json", *via)
    assert lately.returncode == 0 and json.loads(lately.stdout) == jobs, lately.stderr
    bad_cursor = await cli("tool", "jobs", "DB-1", "--after", "NOPE", "--json", *via)
    assert bad_cursor.returncode == 1
    assert "there is no job NOPE of tool DB-1" in json.loads(bad_cursor.stdout)["message"]
    unknown = await cli("tool", "jobs", "NOPE", "--json", *via)
    assert unknown.returncode == 1 and json.loads(unknown.stdout)["error"] == "unknown_tool"
    async with api.client() as client:
        for params, status in (
            ({"since": "soon"}, 422),
            ({"limit": 0}, 422),
            ({"after": "NOPE"}, 422),
            ({"since": "2026-12-02T10:00", "until": "2026-12-01"}, 422),
        ):
            answer = await client.get("/tools/DB-1/jobs", params=params)
            assert answer.status_code == status, (params, answer.text)
        assert (await client.get("/tools/NOPE/jobs")).status_code == 404


async def test_a_lot_tracked_in_by_hand_is_named_on_its_tool_through_the_server(
    api: RunningApi,
) -> None:
    """``tool list``, ``tool show`` and ``line status`` through the server name the lot an
    operator tracked in by hand on a tool in manual (no job runs it, the tool reports no
    lot), as direct mode does: ``lot`` and ``by_hand`` in the JSON, "(by hand)" in tables."""
    from mes.domain import commands as cmd
    from mes.domain.equipment import DispatchMode, ToolSnapshot

    await _registered(api)
    equipment, lots = api.state.services.equipment, api.state.services.lots
    up = ToolSnapshot(connected=True, e10="standby", process_state="IDLE", mode="PRODUCTION")
    await equipment.report("DB-1", up, by=CONTROLLER)
    await equipment.set_dispatch("DB-1", DispatchMode.MANUAL, "tech", "by hand", by=ADMIN)
    await lots.start(cmd.StartLot("H-3", "stiffener-bga", "olga"), by=ADMIN)
    await lots.track_in(cmd.TrackIn("H-3", "SUBSTRATE_LOAD", "olga"), by=ADMIN)
    await lots.track_out(cmd.TrackOut("H-3", "olga"), by=ADMIN)
    await lots.track_in(cmd.TrackIn("H-3", "DIE_ATTACH", "olga", tool="DB-1"), by=ADMIN)
    via = ("--server", f"unix://{api.socket}")

    for args in (("tool", "list"), ("tool", "show", "DB-1"), ("line", "status")):
        shown = await cli(*args, "--json", *via)
        direct = await cli(*args, "--json", "--db", api.db)
        assert shown.returncode == direct.returncode == 0, shown.stderr + direct.stderr
        remote, local = json.loads(shown.stdout), json.loads(direct.stdout)
        tools = remote if args == ("tool", "list") else remote.get("tools", [remote])
        db1 = next(t for t in tools if t["id"] == "DB-1")
        assert (db1["lot"], db1["by_hand"], db1["job"]) == ("H-3", True, None), args
        if args == ("tool", "list"):
            assert _steady(remote) == _steady(local)
    wide = {"COLUMNS": "200"}
    listed = await cli("tool", "list", *via, env=wide)
    assert listed.returncode == 0, listed.stderr
    assert "H-3 (by hand)" in listed.stdout
    human = await cli("tool", "show", "DB-1", *via, env=wide)
    assert human.returncode == 0 and "H-3 (tracked in by hand)" in human.stdout
    status = await cli("line", "status", *via, env=wide)
    assert status.returncode == 0 and "H-3 (by hand)" in status.stdout


async def test_manual_and_auto_answer_the_tool_with_the_lot_tracked_in_by_hand_on_it(
    api: RunningApi,
) -> None:
    """``tool manual|auto --json`` (and ``POST /tools/{tool}/manual|auto``) answered the tool
    without the lot an operator tracked in by hand on it (``lot`` null, ``by_hand`` false):
    a script switching the tool saw it idle. They answer the tool as ``tool show`` gives it,
    ``lot`` and ``by_hand`` too, through the server and directly, and the table names the
    lot as ``tool show`` does."""
    from mes.domain import commands as cmd
    from mes.domain.equipment import DispatchMode, ToolSnapshot

    await _registered(api)
    equipment, lots = api.state.services.equipment, api.state.services.lots
    up = ToolSnapshot(connected=True, e10="standby", process_state="IDLE", mode="PRODUCTION")
    await equipment.report("DB-1", up, by=CONTROLLER)
    await equipment.set_dispatch("DB-1", DispatchMode.MANUAL, "tech", "by hand", by=ADMIN)
    await lots.start(cmd.StartLot("H-3", "stiffener-bga", "olga"), by=ADMIN)
    await lots.track_in(cmd.TrackIn("H-3", "SUBSTRATE_LOAD", "olga"), by=ADMIN)
    await lots.track_out(cmd.TrackOut("H-3", "olga"), by=ADMIN)
    await lots.track_in(cmd.TrackIn("H-3", "DIE_ATTACH", "olga", tool="DB-1"), by=ADMIN)
    await api.roles(Role.TECHNICIAN)
    via = ("--server", f"unix://{api.socket}")
    ignore = ("e10_for_s", "updated_at", "changed")

    for command in (
        ("tool", "auto", "DB-1"),
        ("tool", "manual", "DB-1", "--reason", "bond head check"),
    ):
        for mode in (via, ("--db", api.db)):  # the second finds it switched: changed false
            ran = await cli(*command, "--json", *mode)
            assert ran.returncode == 0, ran.stderr
            switched = json.loads(ran.stdout)
            assert (switched["lot"], switched["by_hand"], switched["job"]) == ("H-3", True, None)
            shown = json.loads((await cli("tool", "show", "DB-1", "--json", *mode)).stdout)
            assert {k: v for k, v in switched.items() if k not in ignore} == {
                k: shown[k] for k in switched if k not in ignore
            }
    async with api.client() as client:
        answered = await client.post("/tools/DB-1/auto", json={})
        assert answered.status_code == 200, answered.text
        assert (answered.json()["lot"], answered.json()["by_hand"]) == ("H-3", True)
    for command, mode in (
        (("tool", "manual", "DB-1", "--reason", "again"), via),  # manual already
        (("tool", "auto", "DB-1"), ("--db", api.db)),
        (("tool", "manual", "DB-1", "--reason", "again"), via),
    ):
        table = await cli(*command, *mode)
        assert table.returncode == 0, table.stderr
        assert "\n  lot H-3 (tracked in by hand) is on it\n" in table.stdout, table.stdout


async def test_qualifications_through_the_server_need_a_technician_or_an_engineer(
    api: RunningApi,
) -> None:
    await _qualifications(api)


async def test_qualifications_through_the_server_on_postgresql(pg_api: RunningApi) -> None:
    await _qualifications(pg_api)


async def _qualifications(api: RunningApi) -> None:
    await _registered(api)
    via = ("--server", f"unix://{api.socket}")
    before = await cli("tool", "qualifications", "--json", *via)
    assert before.returncode == 0, before.stderr
    _mode_said(before, api)

    refused = await cli(
        "tool", "disqualify", "DB-1", "--step", "DIE_ATTACH", "--reason", "drift", "--json", *via
    )
    assert refused.returncode == 1, refused.stdout
    assert json.loads(refused.stdout)["error"] == "not_authorized"
    assert json.loads(refused.stdout)["allowed"] == ["engineer", "technician"]
    assert len(await _refusals(api, "qualify")) == 1
    after = await cli("tool", "qualifications", "--json", *via)
    assert json.loads(after.stdout) == json.loads(before.stdout), "nothing changed"

    await api.roles(Role.TECHNICIAN)
    done = await cli(
        "tool", "disqualify", "DB-1", "--step", "DIE_ATTACH", "--reason", "drift", *via
    )
    assert done.returncode == 0, done.stderr
    assert f"tool DB-1 is now disqualified for DIE_ATTACH (by {ACCOUNT}: drift)" in done.stdout

    listed = await cli("tool", "qualifications", "--tool", "DB-1", "--json", *via)
    listed_direct = await cli("tool", "qualifications", "--tool", "DB-1", "--json", "--db", api.db)
    assert listed.returncode == listed_direct.returncode == 0
    assert json.loads(listed.stdout) == json.loads(listed_direct.stdout)
    [q] = json.loads(listed.stdout)
    assert (q["step"], q["qualified"], q["by"], q["reason"]) == (
        "DIE_ATTACH",
        False,
        ACCOUNT,
        "drift",
    )
    table = await cli("tool", "qualifications", "--tool", "DB-1", *via)
    table_direct = await cli("tool", "qualifications", "--tool", "DB-1", "--db", api.db)
    assert table.stdout == table_direct.stdout and "drift" in table.stdout

    unknown = await cli("tool", "qualify", "NOPE", "--step", "DIE_ATTACH", "--json", *via)
    assert unknown.returncode == 1 and json.loads(unknown.stdout)["error"] == "unknown_tool"
    wrong_step = await cli("tool", "qualify", "DB-1", "--step", "WIRE_BOND", "--json", *via)
    assert wrong_step.returncode == 1
    assert json.loads(wrong_step.stdout)["error"] == "invalid_input"
    assert "DIE_ATTACH" in json.loads(wrong_step.stdout)["allowed"]
    async with api.client() as client:
        status = (await client.post("/tools/DB-1/qualify", json={"step": "WIRE_BOND"})).status_code
        assert status == 422
        empty = await client.post("/tools/DB-1/disqualify", json={"step": "DIE_ATTACH"})
        assert empty.status_code == 422 and "reason" in empty.json()["message"]
        nope = await client.get("/qualifications", params={"step": "NOPE"})  # not [] (probe)
        assert nope.status_code == 422 and "DIE_ATTACH" in nope.json()["allowed"], nope.text
        assert (await client.get("/qualifications", params={"tool": "NOPE"})).status_code == 404
    by_step = await cli("tool", "qualifications", "--step", "NOPE", "--json", "--db", api.db)
    assert by_step.returncode == 1 and json.loads(by_step.stdout)["error"] == "invalid_input"

    # the one change made (the refused ones made none) is in the security log, from where
    await api.roles(Role.ADMIN)
    async with api.client() as client:
        page = await client.get("/security/events", params={"kind": "engineering_change"})
    assert page.status_code == 200, page.text
    [change] = page.json()["events"]
    assert (change["action"], change["actor"], change["method"]) == (
        "tool_disqualify",
        ACCOUNT,
        "os_account",
    )
    assert (change["detail"]["tool"], change["detail"]["step"]) == ("DB-1", "DIE_ATTACH")
    assert change["detail"]["before"]["qualified"] is True
    assert change["detail"]["after"] == {**change["detail"]["after"], "qualified": False}
    assert change["detail"]["reason"] == "drift" and "local socket" in change["detail"]["from"]
    verified = await cli("audit", "verify", "--json", "--db", api.db)
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_line_status_through_the_server_matches_direct_mode(api: RunningApi) -> None:
    await _line_status(api)


async def test_line_status_through_the_server_on_postgresql(pg_api: RunningApi) -> None:
    await _line_status(pg_api)


async def _line_status(api: RunningApi) -> None:
    await _registered(api)
    via = ("--server", f"unix://{api.socket}")
    async with api.client() as client:
        started = await client.post("/lots", json={"lot": "Q1", "flow": "fo-organic"})
        assert started.status_code == 201, started.text

    shown = await cli("line", "status", "--json", *via)
    direct = await cli("line", "status", "--json", "--db", api.db)
    assert shown.returncode == direct.returncode == 0, shown.stderr + direct.stderr
    _mode_said(shown, api)
    remote, local = json.loads(shown.stdout), json.loads(direct.stdout)
    assert remote.keys() == local.keys()
    for part in ("database", "controllers", "running", "queue", "held"):
        assert remote[part] == local[part], part
    assert _steady(remote["tools"]) == _steady(local["tools"])
    assert remote["queue"][0]["lots"] == ["Q1"]
    human = await cli("line", "status", *via)
    assert human.returncode == 0 and "Queue per step (1 waiting" in human.stdout
    assert "Q1/5" in human.stdout and "Tools" in human.stdout

    await api.roles()  # no role at all: not even a read
    refused = await cli("line", "status", "--json", *via)
    assert refused.returncode == 1 and json.loads(refused.stdout)["error"] == "not_authorized"
    assert len(await _refusals(api, "read")) == 1


FAULT = Alarm(4711, "bond head crash", AlarmSeverity.ERROR)


async def test_an_alarm_is_reset_through_the_server_by_the_line_controller(
    sqlite_url: str, tmp_path: Any
) -> None:
    """The server asks, the real line controller (simulated tools on loopback) resets the
    tool and records the outcome, the server answers it: the same JSON as direct mode."""
    async with (
        start_api(sqlite_url, tmp_path / "api.sock") as api,
        running_line(line_config(), sqlite_url) as line,
    ):
        via = ("--server", f"unix://{api.socket}")
        line.simulated.tool("DB-1").inject_alarm(FAULT)

        async def alarmed() -> bool:
            return (await line.services.equipment.tool("DB-1")).snapshot.process_state == "ALARM"

        await wait_until(alarmed, "the alarm recorded")
        await api.roles(Role.QUALITY)  # may not ask for a reset
        refused = await cli("tool", "reset", "DB-1", "--reason", "cleared", "--json", *via)
        assert refused.returncode == 1 and json.loads(refused.stdout)["error"] == "not_authorized"
        assert len(await _refusals(api, "tool_reset")) == 1
        assert await line.services.equipment.resets("DB-1") == []

        await api.roles(Role.OPERATOR)
        unknown = await cli("tool", "reset", "DB-9", "--reason", "x", "--json", *via)
        assert unknown.returncode == 1 and json.loads(unknown.stdout)["error"] == "unknown_tool"
        async with api.client() as client:
            too_long = await client.post("/tools/DB-1/reset", json={"reason": "x", "wait": 9999})
            assert too_long.status_code == 422
        assert await line.services.equipment.resets("DB-1") == []

        reset = await cli("tool", "reset", "DB-1", "--reason", "head cleared", "--json", *via)
        assert reset.returncode == 0, reset.stdout + reset.stderr
        _mode_said(reset, api)
        answer = json.loads(reset.stdout)
        assert (answer["status"], answer["requested_by"], answer["reason"]) == (
            "done",
            ACCOUNT,
            "head cleared",
        )
        assert answer["dispatch"] == "auto"
        [recorded] = await line.services.equipment.resets("DB-1")
        assert recorded.status.value == "done" and recorded.requested_by == ACCOUNT

        # both ways find the tool out of its alarm once the controller has recorded it so
        # (until then the server asks the controller, and the tool itself refuses)
        async def recorded_idle() -> bool:
            return not await alarmed()

        await wait_until(recorded_idle, "the tool recorded out of its alarm")
        not_alarmed = await cli("tool", "reset", "DB-1", "--reason", "again", *via)
        direct = await cli("tool", "reset", "DB-1", "--reason", "again", "--db", api.db)
        assert not_alarmed.returncode == direct.returncode == 1
        assert not_alarmed.stderr.splitlines()[1:] == direct.stderr.splitlines()[1:]


async def test_a_client_that_stops_waiting_withdraws_its_reset_through_the_server(
    api: RunningApi,
) -> None:
    """Ctrl-C at ``tool reset --server``: the client goes away, the server sees it and
    withdraws the request, so no controller carries it out after the operator has gone."""
    import os
    import sys

    from mes.domain.equipment import ControllerRecord, ToolSnapshot
    from mes.service import utc_now
    from pkgline.tool_resets import STOPPED_WAITING

    equipment = api.state.services.equipment
    await _registered(api)
    now = utc_now()
    await equipment.heartbeat(
        ControllerRecord("line-1", "host", 1, now, now, "hung", ("DB-1", "WB-1")), by=CONTROLLER
    )
    alarm = {"code": 4711, "severity": "error", "text": "bond head crash"}
    snapshot = ToolSnapshot(True, "unscheduled_down", "ALARM", "PRODUCTION", alarm)
    await equipment.report("DB-1", snapshot, by=CONTROLLER)
    env = {k: v for k, v in os.environ.items() if k not in ("PKGLINE_SERVER", "PKGLINE_DB")}
    process = await asyncio.create_subprocess_exec(
        *interruptible(sys.executable, "-m", "pkgline", "tool", "reset", "DB-1"),
        "--reason", "x", "--wait", "120", "--server", f"unix://{api.socket}",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:

        async def asked() -> bool:
            return bool(await equipment.open_resets("line-1", by=ADMIN))

        await wait_until(asked, "the reset asked")
        await interrupt(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode != 0, "interrupted"

    async def withdrawn() -> bool:
        [found] = await equipment.resets("DB-1", by=ADMIN)
        return not found.status.open

    await wait_until(withdrawn, "the request withdrawn")
    [found] = await equipment.resets("DB-1", by=ADMIN)
    assert (found.status.value, found.outcome) == ("expired", STOPPED_WAITING)
