"""The tool, audit and user routes: the same JSON as the CLI's ``--json``, the same roles
(a tool's dispatch is the technician's or engineer's; users are read by anyone known; the
audit trail verifies through the server)."""

from __future__ import annotations

from mes.domain.authority import CONTROLLER, Role
from mes.domain.equipment import ToolRegistration
from tests.api.conftest import ACCOUNT, RunningApi


async def test_tools_read_and_switched_as_the_cli_does(api: RunningApi) -> None:
    equipment = api.state.services.equipment
    await equipment.register(
        "line-1", [ToolRegistration("DB-1", "die_bonder", "modbus 127.0.0.1", ("DIE_ATTACH",))],
        by=CONTROLLER,
    )  # fmt: skip
    async with api.client() as client:
        listed = await client.get("/tools")
        assert listed.status_code == 200 and [t["id"] for t in listed.json()["tools"]] == ["DB-1"]
        shown = await client.get("/tools/DB-1", params={"window": "1h"})
        assert shown.status_code == 200 and shown.json()["window"]["window_s"] == 3600
        assert (await client.get("/tools/DB-1", params={"window": "soon"})).status_code == 422
        unknown = await client.get("/tools/NOPE")
        assert unknown.status_code == 404 and unknown.json()["allowed"] == ["DB-1"]
        denied = await client.post("/tools/DB-1/manual", json={"reason": "cleaning"})
        assert denied.status_code == 403 and "technician" in denied.json()["allowed"]
        await api.roles(Role.TECHNICIAN)
        assert (await client.post("/tools/DB-1/manual", json={})).status_code == 422
        manual = await client.post("/tools/DB-1/manual", json={"reason": "cleaning"})
        assert manual.status_code == 200, manual.text
        assert (manual.json()["dispatch"], manual.json()["dispatch_by"]) == ("manual", ACCOUNT)
        auto = await client.post("/tools/DB-1/auto", json={})
        assert auto.json()["dispatch"] == "auto"


async def test_audit_verify_and_users_through_the_server(api: RunningApi) -> None:
    async with api.client() as client:
        started = await client.post("/lots", json={"lot": "A1", "flow": "fo-organic"})
        assert started.status_code in (201, 422)
        verified = await client.get("/audit/verify")
        assert verified.status_code == 200 and verified.json()["ok"] is True
        bad = await client.get("/audit/verify", params={"anchor": "xyz"})
        assert bad.status_code == 422
        # found by a quality engineer's walkthrough: the answer named pydantic's regular
        # expression ("String should match pattern '^[0-9a-fA-F]{64}$'"), not what an anchor is
        [problem] = bad.json()["problems"]
        assert problem["problem"] == (
            "expected a SHA-256 in hex (64 characters: a lots_head, security_head or hash), "
            "got the text 'xyz'"
        )
        cut = await client.post("/audit/verify", json={"anchors": ["923c65c5"]})
        assert "expected a SHA-256 in hex" in cut.json()["message"], cut.text
        head = verified.json()["lots_head"]
        anchored = await client.post("/audit/verify", json={"anchors": [head, head.upper()]})
        assert anchored.status_code == 200 and anchored.json()["ok"] is True, anchored.text
        for refused in ({"anchors": ["xyz"]}, {"anchors": [head] * 3001}, {}, {"anchor": []}):
            answer = await client.post("/audit/verify", json=refused)
            assert answer.status_code == 422, (refused, answer.text)
        users = await client.get("/users")
        assert ACCOUNT in [u["username"] for u in users.json()]
        me = await client.get(f"/users/{ACCOUNT}")
        assert me.json()["roles"] == ["operator"] and "password_hash" not in me.json()
        assert (await client.get("/users/nobody-here")).status_code == 404
