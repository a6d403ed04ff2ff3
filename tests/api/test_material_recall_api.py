"""A material recall over the server's Unix socket (``POST /materials/ID/quarantine``,
``/release``, ``/hold-lots``): strict bodies (an unknown field, a missing code or reason is
422, nothing changed); quality only (403 for another role, recorded as a security event);
an unknown material lot 404, a code that is not an active hold code 422, a second
quarantine 409; the answers the CLI's ``--json`` prints."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mes.domain.authority import Role
from mes.domain.identity import EventKind
from tests.api.conftest import ACCOUNT, ADMIN, RunningApi, start_api
from tests.api.interlock_line import make_line

EXPIRY = "2099-12-31T00:00:00+00:00"


@pytest.fixture(params=["sqlite", "postgres"])
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunningApi]:
    url = request.getfixturevalue(f"{request.param}_url")
    async with start_api(url, tmp_path / "api.sock") as running:
        yield running


async def _lot(client: Any, lot: str) -> dict[str, Any]:
    found: dict[str, Any] = (await client.get(f"/lots/{lot}")).json()
    return found


async def test_quality_quarantines_a_spool_holds_the_lot_that_got_it_and_releases_it(
    api: RunningApi,
) -> None:
    await make_line(api.db)
    await api.roles(Role.OPERATOR, Role.QUALITY)
    async with api.client() as client:
        made = [
            ("/reasons", {"code": "RECALL", "kind": "hold", "text": "Material recall",
                          "release_by": ["quality"]}),
            ("/materials", {"material": "W-1", "kind": "wire", "expires_at": EXPIRY}),
        ]  # fmt: skip
        for path, body in made:
            assert (await client.post(path, json=body)).status_code == 201, path
        assert (await client.post("/materials/W-1/load", json={"tool": "WB-1"})).is_success
        tracked = await client.post("/lots/M1/track-in", json={"step": "WIRE_BOND", "tool": "WB-1"})
        assert tracked.status_code == 200, tracked.text

        body = {"code": "RECALL", "reason": "kinks", "hold_lots": True}
        done = await client.post("/materials/W-1/quarantine", json=body)
        assert done.status_code == 200, done.text
        said = done.json()
        assert said["status"] == "quarantined"
        assert said["quarantine"]["code"] == "RECALL"
        assert said["quarantine"]["by"] == ACCOUNT
        assert said["quarantine"]["reason"] == "RECALL Material recall: kinks"
        assert [r["lot"] for r in said["recall"]["held"]] == ["M1"]
        assert said["recall"]["on_hold"] == said["recall"]["off_line"] == []
        lot = await _lot(client, "M1")
        assert lot["state"] == "HOLD"

        again = await client.post(
            "/materials/W-1/hold-lots", json={"code": "RECALL", "reason": "kinks"}
        )
        assert again.status_code == 200, again.text
        assert again.json()["held"] == []
        assert [r["lot"] for r in again.json()["on_hold"]] == ["M1"]
        assert (await _lot(client, "M1"))["version"] == lot["version"]

        twice = await client.post("/materials/W-1/quarantine", json=body)
        assert twice.status_code == 409, twice.text
        assert "quarantined already" in twice.json()["message"]

        unsigned = await client.post("/materials/W-1/release", json={"reason": "cleared"})
        assert unsigned.status_code == 422, unsigned.text
        assert unsigned.json()["error"] == "signature_required"
        assert unsigned.json()["action"] == "material_release"
        version = (await client.get("/materials/W-1")).json()["version"]
        signature = {
            "username": ACCOUNT,
            "password": await api.own_password(),
            "meaning": "approved release from quarantine: cleared",
            "lot_version": version,
        }
        body = {"reason": "cleared", "signatures": [signature]}
        released = await client.post("/materials/W-1/release", json=body)
        assert released.status_code == 200, released.text
        assert released.json()["quarantine"] is None
        assert released.json()["version"] == version + 1
        again = await client.post(
            "/materials/W-1/quarantine", json={"code": "RECALL", "reason": "cleared"}
        )
        assert again.status_code == 200, again.text
        replayed = await client.post("/materials/W-1/release", json=body)
        assert replayed.status_code == 409, replayed.text
        assert replayed.json()["error"] == "signature_stale"
        shown = (await client.get("/materials/W-1")).json()
    assert [(e["event"], e["reason"]) for e in shown["history"]][-3:] == [
        ("quarantined", "RECALL Material recall: kinks"),
        ("released", "cleared"),
        ("quarantined", "RECALL Material recall: cleared"),
    ]
    released_event = [e for e in shown["history"] if e["event"] == "released"][-1]
    assert [(s["signer"], s["meaning"], s["method"]) for s in released_event["signatures"]] == [
        (ACCOUNT, "approved release from quarantine: cleared", "password")
    ]
    kinds = [e.kind for e in await api.state.identity.events(ADMIN)]
    assert kinds.count(EventKind.SIGNATURE_REFUSED) == 2  # unsigned, and the replay


async def test_a_recall_is_quality_s_and_its_bodies_are_strict(api: RunningApi) -> None:
    await make_line(api.db)
    await api.roles(Role.QUALITY)
    async with api.client() as client:
        made = [
            ("/reasons", {"code": "RECALL", "kind": "hold", "text": "Material recall"}),
            ("/reasons", {"code": "BROKEN", "kind": "scrap", "text": "Broken"}),
            ("/materials", {"material": "W-1", "kind": "wire", "expires_at": EXPIRY}),
        ]
        for path, body in made:
            assert (await client.post(path, json=body)).status_code == 201, path
        await api.roles(Role.OPERATOR, Role.ENGINEER)
        asks = [
            ("/materials/W-1/quarantine", {"code": "RECALL", "reason": "kinks"}),
            ("/materials/W-1/release", {"reason": "cleared"}),
            ("/materials/W-1/hold-lots", {"code": "RECALL"}),
        ]
        for path, body in asks:
            refused = await client.post(path, json=body)
            assert refused.status_code == 403, (path, refused.text)
            assert refused.json()["allowed"] == ["quality"]
        await api.roles(Role.QUALITY)
        wrong: list[tuple[str, dict[str, Any], int, str]] = [
            ("/materials/NOPE/quarantine", {"code": "RECALL", "reason": "x"}, 404,
             "unknown_material"),
            ("/materials/NOPE/hold-lots", {"code": "RECALL"}, 404, "unknown_material"),
            ("/materials/NOPE/release", {"reason": "x"}, 404, "unknown_material"),
            ("/materials/W-1/quarantine", {"code": "RECAL", "reason": "x"}, 422,
             "invalid_input"),
            ("/materials/W-1/hold-lots", {"code": "BROKEN"}, 422, "invalid_input"),
            ("/materials/W-1/quarantine", {"code": "RECALL"}, 422, "invalid_request"),
            ("/materials/W-1/quarantine", {"code": "RECALL", "reason": "  "}, 422,
             "invalid_request"),
            ("/materials/W-1/quarantine", {"reason": "x"}, 422, "invalid_request"),
            ("/materials/W-1/quarantine", {"code": "RECALL", "reason": "x", "user": "bob"},
             422, "invalid_request"),
            ("/materials/W-1/quarantine", {"code": "RECALL", "reason": "x",
                                           "hold_lots": "yes"}, 422, "invalid_request"),
            ("/materials/W-1/release", {}, 422, "invalid_request"),
            ("/materials/W-1/release", {"reason": "x"}, 409, "operation_not_allowed"),
            ("/materials/W-1/hold-lots", {"code": "RECALL", "lots": ["M1"]}, 422,
             "invalid_request"),
        ]  # fmt: skip
        for path, body, status, error in wrong:
            answer = await client.post(path, json=body)
            assert answer.status_code == status, (path, body, answer.text)
            assert answer.json()["error"] == error, (path, body, answer.text)
        shown = (await client.get("/materials/W-1")).json()
        assert shown["quarantine"] is None and [e["event"] for e in shown["history"]] == ["added"]
        assert (await _lot(client, "M1"))["state"] == "WAITING"
    events = await api.state.identity.events(ADMIN)
    refused = [e.action for e in events if e.kind is EventKind.REFUSED and e.actor == ACCOUNT]
    assert refused == ["quarantine", "quarantine", "quarantine"]


async def test_a_lot_held_already_that_got_a_recalled_spool_is_released_by_quality_only(
    api: RunningApi,
) -> None:
    """M1 got W-1 and an operator held it with a code of their own (CUSTOMER) before the
    recall, which reports it on hold and says its release now needs quality; ``GET /lots/M1``
    names the quarantined spool; the operator's release, with a wrong password, is 403
    not_authorized naming the spool, recorded, the password not checked nor counted; quality
    releases it."""
    await make_line(api.db)
    identity = api.state.identity
    password = await api.own_password()
    await api.roles(Role.OPERATOR, Role.QUALITY)
    async with api.client() as client:
        made = [
            ("/reasons", {"code": "RECALL", "kind": "hold", "text": "Material recall",
                          "release_by": ["quality"]}),
            ("/reasons", {"code": "CUSTOMER", "kind": "hold", "text": "Customer request"}),
            ("/materials", {"material": "W-1", "kind": "wire", "expires_at": EXPIRY}),
        ]  # fmt: skip
        for path, body in made:
            assert (await client.post(path, json=body)).status_code == 201, path
        assert (await client.post("/materials/W-1/load", json={"tool": "WB-1"})).is_success
        tracked = await client.post("/lots/M1/track-in", json={"step": "WIRE_BOND", "tool": "WB-1"})
        assert tracked.status_code == 200, tracked.text
        held = await client.post("/lots/M1/hold", json={"reason": "x", "code": "CUSTOMER"})
        assert held.status_code == 200, held.text
        body = {"code": "RECALL", "reason": "kinks", "hold_lots": True}
        done = await client.post("/materials/W-1/quarantine", json=body)
        assert done.status_code == 200, done.text
        recall = done.json()["recall"]
        assert [r["lot"] for r in recall["on_hold"]] == ["M1"] and recall["held"] == []
        assert recall["release_by"] == ["quality"]
        lot = await _lot(client, "M1")
        [q] = lot["quarantined_materials"]
        assert (q["material"], q["code"], q["by"], q["release_by"]) == (
            "W-1",
            "RECALL",
            ACCOUNT,
            ["quality"],
        )
        assert q["reason"] == "RECALL Material recall: kinks"

        await api.roles(Role.OPERATOR)
        before = len(await identity.events(ADMIN))
        signature = {"username": ACCOUNT, "meaning": "approved", "lot_version": lot["version"]}
        for given in ("not-it", password):
            refused = await client.post(
                "/lots/M1/release",
                json={"reason": "ok", "signatures": [{**signature, "password": given}]},
            )
            assert refused.status_code == 403, refused.text
            assert refused.json()["error"] == "not_authorized", refused.text
            assert refused.json()["allowed"] == ["quality"]
            assert "it got material lot W-1, quarantined with code RECALL" in refused.text
        events = (await identity.events(ADMIN))[before:]
        assert [(e.kind, e.action) for e in events] == [(EventKind.REFUSED, "release")] * 2
        assert (await identity.user(ADMIN, ACCOUNT)).failed_attempts == 0

        await api.roles(Role.QUALITY)
        released = await client.post(
            "/lots/M1/release",
            json={"reason": "ok", "signatures": [{**signature, "password": password}]},
        )
        assert released.status_code == 200, released.text
        assert released.json()["state"] == "WAITING"
