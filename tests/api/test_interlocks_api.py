"""The interlocks' routes (durables, material lots, reason codes, SPC) over the server's Unix
socket: the CLI's JSON, acting for the socket's OS account; a role lacking the authority is
refused (403, recorded as a security event, nothing changed); unknown ids are 404, malformed
values 422, and neither changes anything."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest

from mes.domain.authority import Role
from mes.domain.identity import EventKind
from mes.domain.spc import ChartKind
from pkgline.api.spc import ChartBody
from tests.api.conftest import ACCOUNT, ADMIN, RunningApi, start_api
from tests.api.interlock_line import BLT, make_line

EVERY_ROLE = (Role.OPERATOR, Role.TECHNICIAN, Role.ENGINEER, Role.QUALITY)


@pytest.fixture(params=["sqlite", "postgres"])
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunningApi]:
    """The server on SQLite, and on PostgreSQL."""
    url = request.getfixturevalue(f"{request.param}_url")
    async with start_api(url, tmp_path / "api.sock") as running:
        yield running


async def _refusals(api: RunningApi) -> list[tuple[str | None, list[str]]]:
    events = await api.state.identity.events(ADMIN)
    return [
        (e.action, list(e.detail["needed"]))
        for e in events
        if e.kind is EventKind.REFUSED and e.actor == ACCOUNT
    ]


NONE = {"total": 0, "total_exact": True, "shown": 0, "more": False, "next_after": None}
NO_DURABLES = {"durables": [], **NONE}
NO_MATERIALS = {"materials": [], **NONE}


async def _state(client: httpx.AsyncClient) -> list[Any]:
    """Everything the interlock routes keep, as read through them."""
    return [
        (await client.get(path)).json()
        for path in ("/durables", "/materials", "/reasons?retired=true")
    ]


async def test_an_operator_is_refused_what_needs_another_role_recorded_and_nothing_changes(
    api: RunningApi,
) -> None:
    """The OS account is an operator: adding durables (technician, engineer), material lots
    (engineer, quality), reason codes (quality) and SPC charts (engineer) is refused with the
    roles that may, each refusal a security event; the lists stay empty."""
    await make_line(api.db)
    expiry = "2099-12-31T00:00:00+00:00"
    asks: list[tuple[str, dict[str, Any], str, list[str]]] = [
        ("/durables", {"durable": "CAP-1", "kind": "capillary", "life": 128}, "durables",
         ["engineer", "technician"]),
        ("/materials", {"material": "W-1", "kind": "wire", "expires_at": expiry}, "materials",
         ["engineer", "quality"]),
        ("/reasons", {"code": "VOID", "kind": "hold", "text": "voids"}, "reasons", ["quality"]),
        ("/spc/charts", {"step": "DIE_ATTACH", "value": BLT, "tool": "DB-1"}, "spc",
         ["engineer"]),
        ("/spc/clear", {"step": "DIE_ATTACH", "tool": "DB-1", "reason": "checked"}, "spc",
         ["engineer"]),
    ]  # fmt: skip
    async with api.client() as client:
        before = await _state(client)
        assert before == [NO_DURABLES, NO_MATERIALS, []]
        for path, body, _action, allowed in asks:
            refused = await client.post(path, json=body)
            assert refused.status_code == 403, (path, refused.text)
            said = refused.json()
            assert said["error"] == "not_authorized" and said["allowed"] == allowed, path
            assert refused.headers["pkgline-principal"] == f"{ACCOUNT} (os_account)"
        assert await _state(client) == before
        shown = (await client.get("/spc/charts/DIE_ATTACH/" + BLT)).json()
        assert shown == []
    assert await _refusals(api) == [(action, allowed) for _, _, action, allowed in asks]

    await api.roles(Role.OPERATOR, Role.QUALITY)  # quality adds the wire; an operator loads it
    async with api.client() as client:
        added = await client.post(
            "/materials", json={"material": "W-1", "kind": "wire", "expires_at": expiry}
        )
        assert added.status_code == 201, added.text
        assert added.json()["added_by"] == ACCOUNT
        await api.roles(Role.OPERATOR)
        loaded = await client.post("/materials/W-1/load", json={"tool": "WB-1"})
        assert loaded.status_code == 200, loaded.text
        assert loaded.json()["tool"] == "WB-1"
        shown = (await client.get("/materials/W-1")).json()
    assert [(e["event"], e["by"]) for e in shown["history"]] == [
        ("added", ACCOUNT),
        ("loaded", ACCOUNT),
    ]


async def _expect(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    status: int,
    error: str,
) -> dict[str, Any]:
    answer = await client.request(method, path, json=body)
    assert answer.status_code == status, (method, path, answer.text)
    said: dict[str, Any] = answer.json()
    assert said["error"] == error, (method, path, said)
    assert said["message"], (method, path)
    return said


async def test_unknown_ids_are_404_and_malformed_values_422_changing_nothing(
    api: RunningApi,
) -> None:
    await make_line(api.db)
    await api.roles(*EVERY_ROLE)
    expiry = "2099-12-31T00:00:00+00:00"
    async with api.client() as client:
        made = [
            ("/durables", {"durable": "CAP-1", "kind": "capillary", "life": 128}),
            ("/materials", {"material": "W-1", "kind": "wire", "expires_at": expiry}),
            ("/reasons", {"code": "VOID", "kind": "hold", "text": "voids"}),
        ]
        for path, body in made:
            assert (await client.post(path, json=body)).status_code == 201, path
        before = await _state(client)
        history = (await client.get("/durables/CAP-1")).json()["history"]

        unknown: list[tuple[str, str, dict[str, Any] | None, str]] = [
            ("GET", "/durables/NOPE", None, "unknown_durable"),
            ("GET", "/durables?tool=NOPE", None, "unknown_tool"),
            ("POST", "/durables/NOPE/mount", {"tool": "WB-1"}, "unknown_durable"),
            ("POST", "/durables/CAP-1/mount", {"tool": "NOPE"}, "unknown_tool"),
            ("POST", "/durables/NOPE/unmount", {}, "unknown_durable"),
            ("POST", "/durables/NOPE/renew", {"reason": "cleaned"}, "unknown_durable"),
            ("GET", "/materials/NOPE", None, "unknown_material"),
            ("GET", "/materials?tool=NOPE", None, "unknown_tool"),
            ("GET", "/materials/NOPE/where-used", None, "unknown_material"),
            ("POST", "/materials/NOPE/thaw", {}, "unknown_material"),
            ("POST", "/materials/NOPE/load", {"tool": "WB-1"}, "unknown_material"),
            ("POST", "/materials/W-1/load", {"tool": "NOPE"}, "unknown_tool"),
            ("POST", "/materials/NOPE/unload", {}, "unknown_material"),
            ("GET", "/lots/NOPE/genealogy", None, "unknown_lot"),
            ("POST", "/reasons/NOPE/retire", {"reason": "gone"}, "unknown_reason_code"),
            ("POST", "/spc/charts", {"step": "DIE_ATTACH", "value": BLT, "tool": "NOPE"},
             "unknown_tool"),
            ("POST", "/spc/clear", {"step": "DIE_ATTACH", "tool": "NOPE", "reason": "x"},
             "unknown_tool"),
            ("GET", "/spc/charts?tool=NOPE", None, "unknown_tool"),
        ]  # fmt: skip
        for method, path, body, error in unknown:
            said = await _expect(client, method, path, body, 404, error)
            assert "NOPE" in said["message"], said

        malformed: list[tuple[str, dict[str, Any], str]] = [
            ("/durables", {"durable": "CAP-2", "kind": "capillary", "life": "many"},
             "invalid_request"),
            # the lot tracker's bounds, declared in the API's schema (docs/api.md, Bounds)
            ("/durables", {"durable": "CAP-2", "kind": "capillary", "life": 0}, "invalid_request"),
            ("/durables", {"durable": "CAP-2", "kind": "sponge", "life": 9}, "invalid_input"),
            ("/durables", {"durable": "CAP-2", "kind": "capillary", "life": 9, "user": "x"},
             "invalid_request"),
            ("/durables/CAP-1/renew", {"reason": "   "}, "invalid_request"),
            ("/materials", {"material": "W-2", "kind": "wire", "expires_at": "soon"},
             "invalid_request"),
            ("/materials", {"material": "W-2", "kind": "wire", "expires_at": "2099-12-31T00:00"},
             "invalid_input"),
            ("/materials", {"material": "W-2", "kind": "wire", "expires_at": 4102444800},
             "invalid_request"),
            ("/materials", {"material": "W-2", "kind": "wire", "expires_at": expiry,
                            "thaw_minutes": 60}, "invalid_input"),
            ("/reasons", {"code": "VOID2", "kind": "sideways", "text": "x"}, "invalid_input"),
            ("/reasons", {"code": "VOID2", "kind": "hold", "text": "x", "release_by": ["boss"]},
             "invalid_input"),
            ("/reasons/VOID/retire", {}, "invalid_request"),
            ("/spc/charts", {"step": "DIE_ATTACH", "value": BLT, "tool": "DB-1",
                             "center": 1e300, "sigma": 1}, "invalid_request"),
            ("/spc/charts", {"step": "DIE_ATTACH", "value": BLT, "tool": "DB-1",
                             "center": 25}, "invalid_input"),
            ("/spc/charts", {"step": "NO_STEP", "value": BLT, "tool": "DB-1"}, "invalid_input"),
            ("/spc/charts", {"step": "DIE_ATTACH", "value": BLT, "tool": "DB-1",
                             "kind": "xbar"}, "invalid_request"),
            ("/spc/clear", {"step": "DIE_ATTACH", "tool": "DB-1"}, "invalid_request"),
        ]  # fmt: skip
        for path, body, error in malformed:
            await _expect(client, "POST", path, body, 422, error)
        taken: list[tuple[str, dict[str, Any]]] = [
            ("/durables", {"durable": "CAP-1", "kind": "capillary", "life": 9}),
            ("/materials", {"material": "W-1", "kind": "wire", "expires_at": expiry}),
            ("/reasons", {"code": "VOID", "kind": "hold", "text": "x"}),
        ]
        for path, body in taken:  # as a lot that exists: 409, not a malformed value
            said = await _expect(client, "POST", path, body, 409, "record_exists")
            assert "exists already" in said["message"], said
        await _expect(client, "GET", "/reasons?kind=sideways", None, 422, "invalid_request")
        said = await _expect(client, "GET", "/spc/charts?step=NO_STEP", None, 422, "invalid_input")
        assert "there is no step NO_STEP" in said["message"] and "DIE_ATTACH" in said["allowed"]

        conflict = await _expect(
            client, "POST", "/durables/CAP-1/renew", {"reason": "cleaned"}, 409,
            "operation_not_allowed",
        )  # fmt: skip
        assert conflict["allowed"] == ["mold_chase"]

        assert await _state(client) == before
        assert (await client.get("/durables/CAP-1")).json()["history"] == history
        assert (await client.get("/spc/charts/DIE_ATTACH/" + BLT)).json() == []
        assert (await client.get("/spc/charts")).json() == []


async def test_a_chart_of_each_kind_is_set_and_listed_and_another_kind_refused(
    api: RunningApi,
) -> None:
    await make_line(api.db)
    await api.roles(Role.ENGINEER)
    async with api.client() as client:
        for value, kind in ((BLT, "subgroup"), ("xy_offset_um", "carrier")):
            body = {"step": "DIE_ATTACH", "value": value, "tool": "DB-1", "kind": kind}
            made = await client.post("/spc/charts", json=body)
            assert made.status_code == 200, made.text
            assert made.json()["kind"] == kind
        listed = (await client.get("/spc/charts?tool=DB-1")).json()
        assert [(c["value"], c["kind"], c["rules"]) for c in listed] == [
            (BLT, "subgroup", [1, 2, 3, 4, 9]),
            ("xy_offset_um", "carrier", [1, 2, 3, 4]),
        ]
        # the body's kinds are the domain's (pkgline/api/spc.py names them for the schema)
        assert get_args(ChartBody.model_fields["kind"].annotation) == tuple(ChartKind)
        body = {"step": "DIE_ATTACH", "value": BLT, "tool": "DB-1", "kind": "xbar"}
        said = await _expect(client, "POST", "/spc/charts", body, 422, "invalid_request")
        assert "'lot', 'carrier' or 'subgroup'" in said["message"], said
        assert [c["kind"] for c in (await client.get("/spc/charts")).json()] == [
            "subgroup",
            "carrier",
        ]
