"""``POST /tools/{tool}/down|up`` and ``pkgline tool down|up`` through the server and
directly: a technician declares a tool scheduled down (planned maintenance) or non-scheduled
and brings it back; ``tool show``, ``tool list`` and ``line status`` say who, why and since
when; an operator is refused (403); a malformed body is 422; a tool running a lot is 409."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from mes.domain import commands as cmd
from mes.domain.authority import CONTROLLER, Role
from mes.domain.equipment import DispatchMode, ToolRegistration, ToolSnapshot
from pkgline.events.payloads import tool_state
from tests.api.conftest import ACCOUNT, ADMIN, RunningApi, cli

pytestmark = pytest.mark.slow

BONDER = ToolRegistration("DB-1", "die_bonder", "modbus 127.0.0.1", ("DIE_ATTACH",))
WIDE = {"COLUMNS": "250"}
UP = ToolSnapshot(connected=True, e10="standby", process_state="IDLE", mode="PRODUCTION")
DOCUMENT = Path(__file__).parents[2] / "docs" / "openapi.json"


def _answer_schema(path: str, method: str = "get") -> dict[str, Any]:
    document = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    schema: dict[str, Any] = document["paths"][path][method]["responses"]["200"]["content"][
        "application/json"
    ]["schema"]
    return schema


async def _feeds_declared(api: RunningApi) -> dict[str, Any] | None:
    """The ``declared`` the event feed's tool-state of DB-1 gives now."""
    record = await api.state.services.equipment.tool("DB-1", by=ADMIN)
    declared: dict[str, Any] | None = tool_state(record)["declared"]
    return declared


async def _registered(api: RunningApi) -> None:
    equipment = api.state.services.equipment
    await equipment.register("line-1", [BONDER], by=CONTROLLER)
    await equipment.report("DB-1", UP, by=CONTROLLER)


async def test_a_tool_declared_down_and_up_through_the_api(api: RunningApi) -> None:
    await _registered(api)
    body = {"e10": "scheduled_down", "reason": "PM 500 h"}
    async with api.client() as client:
        denied = await client.post("/tools/DB-1/down", json=body)
        assert denied.status_code == 403 and "technician" in denied.json()["allowed"]
        await api.roles(Role.TECHNICIAN)
        assert (await client.post("/tools/DB-1/down", json={"e10": "standby", "reason": "x"})).status_code == 422  # fmt: skip
        assert (await client.post("/tools/DB-1/down", json={"e10": "scheduled_down"})).status_code == 422  # fmt: skip
        down = await client.post("/tools/DB-1/down", json=body)
        assert down.status_code == 200, down.text
        tool = down.json()
        assert (tool["e10"], tool["down"], tool["down_by"]) == (
            "scheduled_down",
            "scheduled_down",
            ACCOUNT,
        )
        assert tool["down_reason"] == "PM 500 h" and tool["reported_e10"] == "standby"
        assert tool["changed"] is True
        feed = await _feeds_declared(api)
        assert feed is not None and (feed["down"], feed["user"]) == ("scheduled_down", ACCOUNT)
        assert tool["declared"] == feed
        shown = (await client.get("/tools/DB-1")).json()
        assert shown["declared"] == feed
        jsonschema.validate(shown, _answer_schema("/tools/{tool_id}"))
        assert (
            shown["down"] == "scheduled_down" and shown["window"]["seconds"]["scheduled_down"] >= 0
        )
        listed = await client.get("/tools", params={"state": "scheduled_down"})
        assert [t["id"] for t in listed.json()["tools"]] == ["DB-1"]
        assert listed.json()["tools"][0]["declared"] == feed
        jsonschema.validate(listed.json(), _answer_schema("/tools"))
        up = await client.post("/tools/DB-1/up", json={"reason": "PM done"})
        assert up.status_code == 200, up.text
        assert (up.json()["e10"], up.json()["down"], up.json()["changed"]) == (
            "standby",
            None,
            True,
        )
        # Up, the tool keeps its last declaration: who brought it up, why, as the feed says.
        feed = await _feeds_declared(api)
        assert feed is not None and (feed["down"], feed["user"], feed["reason"]) == (
            None,
            ACCOUNT,
            "PM done",
        )
        shown = (await client.get("/tools/DB-1")).json()
        listed = await client.get("/tools")
        assert shown["declared"] == listed.json()["tools"][0]["declared"] == feed
        jsonschema.validate(shown, _answer_schema("/tools/{tool_id}"))
        jsonschema.validate(listed.json(), _answer_schema("/tools"))
        jsonschema.validate(up.json(), _answer_schema("/tools/{tool_id}/up", "post"))


async def test_a_tool_running_a_lot_is_refused_with_409(api: RunningApi) -> None:
    await _registered(api)
    services = api.state.services
    await services.equipment.set_dispatch("DB-1", DispatchMode.MANUAL, "eng", by=ADMIN)
    lots = services.lots
    await lots.start(cmd.StartLot("L1", "fo-organic", "op1"), by=ADMIN)
    await lots.track_in(cmd.TrackIn("L1", "SUBSTRATE_PREP", "op1"), by=ADMIN)
    await lots.track_out(cmd.TrackOut("L1", "op1"), by=ADMIN)
    await lots.track_in(cmd.TrackIn("L1", "DIE_ATTACH", "op1", tool="DB-1"), by=ADMIN)
    await api.roles(Role.TECHNICIAN)
    async with api.client() as client:
        refused = await client.post(
            "/tools/DB-1/down", json={"e10": "non_scheduled", "reason": "no orders"}
        )
        assert refused.status_code == 409, refused.text
        assert "running lot L1" in refused.json()["message"]
    assert (await services.equipment.tool("DB-1", by=ADMIN)).down is None


async def test_tool_down_and_up_from_the_cli_through_the_server_and_directly(
    api: RunningApi,
) -> None:
    await _registered(api)
    await api.roles(Role.TECHNICIAN)
    via = ("--server", f"unix://{api.socket}")
    both = await cli("tool", "down", "DB-1", "--reason", "PM", *via)
    assert both.returncode == 2 and "--planned" in both.stdout + both.stderr
    down = await cli("tool", "down", "DB-1", "--planned", "--reason", "PM 500 h", *via)
    assert down.returncode == 0, down.stderr
    assert f"✔ tool DB-1 is scheduled_down (by {ACCOUNT}: PM 500 h)" in down.stdout
    assert "pkgline tool up DB-1" in down.stdout
    shown = await cli("tool", "show", "DB-1", *via, env=WIDE)
    assert f"scheduled_down by {ACCOUNT}" in shown.stdout and "PM 500 h" in shown.stdout
    assert "the tool reports standby" in shown.stdout
    listed = await cli("tool", "list", *via, env=WIDE)
    assert f"(declared by {ACCOUNT})" in listed.stdout
    line = await cli("line", "status", *via, env=WIDE)
    assert "declared by" in line.stdout
    again = await cli(
        "tool", "down", "DB-1", "--planned", "--reason", "x", "--json", "--db", api.db
    )
    assert json.loads(again.stdout)["changed"] is False
    # tool show and tool list --json give the feed's declared, through the server and directly
    feed = await _feeds_declared(api)
    shown_json = await cli("tool", "show", "DB-1", "--json", *via)
    assert json.loads(shown_json.stdout)["declared"] == feed, shown_json.stderr
    listed_json = await cli("tool", "list", "--json", "--db", api.db)
    assert json.loads(listed_json.stdout)[0]["declared"] == feed, listed_json.stderr
    up = await cli("tool", "up", "DB-1", "--reason", "PM done", *via)
    assert up.returncode == 0, up.stderr
    assert "✔ tool DB-1 is up: standby as it reports" in up.stdout
    feed = await _feeds_declared(api)
    assert feed is not None and (feed["down"], feed["reason"]) == (None, "PM done")
    shown = await cli("tool", "show", "DB-1", *via, env=WIDE)
    assert f"brought up by {ACCOUNT} at " in shown.stdout and ": PM done" in shown.stdout
    shown_json = await cli("tool", "show", "DB-1", "--json", "--db", api.db)
    assert json.loads(shown_json.stdout)["declared"] == feed, shown_json.stderr
    listed_json = await cli("tool", "list", "--json", *via)
    assert json.loads(listed_json.stdout)[0]["declared"] == feed, listed_json.stderr
    direct = await cli("tool", "down", "DB-1", "--not-scheduled", "--reason", "no orders", "--json", "--db", api.db)  # fmt: skip
    assert json.loads(direct.stdout)["e10"] == "non_scheduled", direct.stderr
