"""The lot operations' short way through the server (pkgline.api.fastlane) answers exactly
as FastAPI does: the same request, sent to the application with the lane and to FastAPI's
alone over the same services, gets the same status, body and principal, whether the lane
takes it (a valid body) or gives it to FastAPI (anything else)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from mes.domain.authority import Role
from pkgline.api import fastlane
from pkgline.api.app import DeclaredBodyLimit, ServerTiming, build_app, create_app
from pkgline.api.defaults import MAX_BODY_BYTES
from pkgline.api.peer import PEER_KEY, PeerCredentials
from tests.api.conftest import RunningApi

LIMIT = 4096


def _as_peer(app: ASGIApp, uid: int | None) -> ASGIApp:
    """``app`` with every request coming from the OS account ``uid`` (None: no peer), as the
    server's Unix socket says."""

    async def peer(scope: Scope, receive: Receive, send: Send) -> None:
        if uid is not None:
            scope[PEER_KEY] = PeerCredentials(1, uid, 0)
        await app(scope, receive, send)

    return peer


def _clients(api: RunningApi, uid: int | None) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
    """(with the lane, FastAPI alone), over the running server's services."""
    lane = create_app(api.state, max_body_bytes=LIMIT)
    plain = DeclaredBodyLimit(ServerTiming(build_app(api.state, LIMIT)), LIMIT)
    return tuple(  # type: ignore[return-value]
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=_as_peer(app, uid)), base_url="http://pkgline"
        )
        for app in (lane, plain)
    )


def _same(a: httpx.Response, b: httpx.Response, *, lot_a: str = "", lot_b: str = "") -> None:
    assert a.status_code == b.status_code, (a.text, b.text)
    text_b = b.text.replace(lot_b, lot_a) if lot_b else b.text
    if a.status_code < 300:  # the lots' answers: the same keys, state and step
        got, expected = a.json(), httpx.Response(200, text=text_b).json()
        assert got.keys() == expected.keys()
        assert (got["state"], got.get("step")) == (expected["state"], expected.get("step"))
    else:
        assert a.json() == httpx.Response(200, text=text_b).json()
    for header in ("pkgline-principal", "www-authenticate", "retry-after", "content-type"):
        assert a.headers.get_list(header) == b.headers.get_list(header), header


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths the lane answered itself."""
    seen: list[str] = []
    real: Callable[..., Any] = fastlane.principal

    async def counted(request: Any, response: Any) -> Any:
        seen.append(request.url.path)
        return await real(request, response)

    monkeypatch.setattr(fastlane, "principal", counted)
    return seen


async def test_a_valid_move_takes_the_lane_and_answers_as_fastapi(
    api: RunningApi, taken: list[str]
) -> None:
    import os

    await api.roles(Role.OPERATOR)
    lane, plain = _clients(api, os.getuid())
    async with lane, plain:
        for lot, client in (("F1", lane), ("F2", plain)):
            started = await client.post("/lots", json={"lot": lot, "flow": "stiffener-bga"})
            assert started.status_code == 201, started.text
        step = started.json()["next_steps"][0]
        for op, body in (("track-in", {"step": step}), ("track-out", {"data": {}})):
            got = await lane.post(f"/lots/F1/{op}", json=body)
            expected = await plain.post(f"/lots/F2/{op}", json=body)
            _same(got, expected, lot_a="F1", lot_b="F2")
        held = {"reason": "looked at", "code": None}
        _same(
            await lane.post("/lots/F1/hold", json=held),
            await plain.post("/lots/F2/hold", json=held),
            lot_a="F1",
            lot_b="F2",
        )
    assert taken == ["/lots/F1/track-in", "/lots/F1/track-out", "/lots/F1/hold"]


@pytest.mark.parametrize(
    ("path", "content", "headers"),
    [
        ("/lots/F1/track-in", b'{"step": "DIE_ATTACH", "extra": 1}', {}),  # unknown field
        ("/lots/F1/track-in", b'{"step": 5}', {}),  # wrong type
        ("/lots/F1/track-in", b"{}", {}),  # missing
        ("/lots/F1/track-in", b'{"step": ', {}),  # not JSON
        ("/lots/F1/track-in", b"", {}),  # no body
        ("/lots/F1/track-in", b"[1, 2]", {}),  # not an object
        ("/lots/F1/track-in", b'{"step": "X"}', {"content-type": "text/plain"}),
        (
            "/lots/F1/track-in",
            b'{"step": "X"}',
            {"content-type": "application/x-www-form-urlencoded"},
        ),
        ("/lots/NOPE/track-in", b'{"step": "DIE_ATTACH"}', {}),  # unknown lot
        ("/lots/F1/track-out", b"{}", {}),  # nothing running
        (  # a value the lot tracker refuses: its field named by the body's key
            "/lots/F1/track-in",
            b'{"step": "SUBSTRATE_LOAD", "params": {"substrate_thickness_mm": "thick"}}',
            {},
        ),
        ("/lots/F1/release", b"{}", {}),  # not held
        ("/lots/F1/nosuch", b"{}", {}),  # no such operation
        ("/lots/F1/track-in", b'{"step": "' + b"x" * LIMIT + b'"}', {}),  # too large
    ],
)
async def test_a_refusal_is_the_same_through_the_lane_and_through_fastapi(
    api: RunningApi, path: str, content: bytes, headers: dict[str, str]
) -> None:
    import os

    lane, plain = _clients(api, os.getuid())
    async with lane, plain:
        started = await lane.post("/lots", json={"lot": "F1", "flow": "stiffener-bga"})
        assert started.status_code == 201, started.text
        sent = {"content-type": "application/json", **headers}
        got = await lane.post(path, content=content, headers=sent)
        expected = await plain.post(path, content=content, headers=sent)
        assert 400 <= got.status_code < 500, got.text
        _same(got, expected)


async def test_a_body_past_the_limit_without_a_length_is_refused_before_it_is_read(
    api: RunningApi,
) -> None:
    import os

    async def chunks() -> Any:
        for _ in range(LIMIT // 64 + 2):
            yield b"x" * 64

    lane, plain = _clients(api, os.getuid())
    async with lane, plain:
        for client in (lane, plain):
            refused = await client.post("/lots/F1/track-in", content=chunks())
            assert refused.status_code == 413, refused.text
            assert refused.json()["error"] == "too_large"


async def test_no_credentials_are_refused_alike(api: RunningApi, taken: list[str]) -> None:
    lane, plain = _clients(api, None)
    async with lane, plain:
        body = {"step": "DIE_ATTACH"}
        got = await lane.post("/lots/F1/track-in", json=body)
        expected = await plain.post("/lots/F1/track-in", json=body)
    assert got.status_code == 401
    _same(got, expected)
    assert taken == ["/lots/F1/track-in"]


def test_every_lot_operation_of_the_lanes_shape_takes_it() -> None:
    """A new lot operation of the same shape takes the lane without being listed; one of
    another shape (start, list, show) stays FastAPI's."""
    operations = fastlane.lot_operations()
    assert {"track-in", "track-out", "abort", "hold", "release", "scrap", "rework"} <= set(
        operations
    )
    document = build_app(None, MAX_BODY_BYTES).openapi()
    for op, (model, _, _) in operations.items():
        posted = document["paths"][f"/lots/{{lot_id}}/{op}"]["post"]
        schema = posted["requestBody"]["content"]["application/json"]["schema"]
        assert schema["$ref"].endswith("/" + model.__name__), op


async def test_json_nested_past_the_parsers_depth_is_refused_alike(api: RunningApi) -> None:
    """No 500 for a body no parser reads (json.loads's RecursionError), with or without
    credentials: the lane leaves it to FastAPI, which refuses it as it refuses it elsewhere."""
    deep = b'{"step": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    headers = {"content-type": "application/json"}
    lane, plain = _clients(api, None)
    async with lane, plain:
        got = await lane.post("/lots/F1/track-in", content=deep, headers=headers)
        expected = await plain.post("/lots/F1/track-in", content=deep, headers=headers)
    assert got.status_code == 400, got.text
    assert got.json()["error"] == "invalid_request" and "not JSON" in got.json()["message"]
    _same(got, expected)
