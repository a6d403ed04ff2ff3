"""A refusal about one of the request's inputs says which, in its JSON, where the caller gave
it: the API's ``field`` names the body's key, as a 422's ``problems`` say ``where``
(``params.NAME`` of a track-in's or a start's ``params``, ``data.NAME`` of a track-out's,
``rejects``, ``sites``: the lot tracker's ``InvalidInput.field`` names the command's input,
``values.NAME`` of a TrackIn, ``measured.NAME`` of a TrackOut, which no body has), and
``field`` of each violation of a ``limit_violated`` given in the request (none for a value an
earlier step recorded). The CLI's ``--json`` names its option (``--param NAME``, ``--data
NAME``, ``--reject``, ``--site``), the same through the server and in direct mode; a refusal
about no input has no ``field``."""

from __future__ import annotations

import json
from typing import Any

from pkgline.api.app import build_app
from pkgline.api.defaults import MAX_BODY_BYTES
from pkgline.api.fields import BODY_KEYS
from tests.api.conftest import RunningApi, cli

START = {"flow": "fo-organic", "carriers": 2, "rows": 4, "cols": 8}


async def test_the_api_error_names_the_refused_input(api: RunningApi) -> None:
    async with api.client() as client:

        async def refused(path: str, body: dict[str, Any], error: str) -> dict[str, Any]:
            said = await client.post(path, json=body)
            assert said.status_code == 422, said.text
            answer: dict[str, Any] = said.json()
            assert answer["error"] == error, answer
            return answer

        too_many = await refused(
            "/lots", {**START, "lot": "A0", "params": {"layers": 9}}, "limit_violated"
        )
        assert [v["field"] for v in too_many["violations"]] == ["params.layers"]
        wide = await refused(
            "/lots", {**START, "lot": "A0", "params": {"layers": 2**64}}, "invalid_input"
        )
        assert wide["field"] == "params.layers"
        assert (await client.post("/lots", json={**START, "lot": "A1"})).status_code == 201
        track_in = "/lots/A1/track-in"
        deep = await refused(
            track_in,
            {"step": "SUBSTRATE_PREP", "params": {"cavity_depth_um": "deep"}},
            "invalid_input",
        )
        assert deep["field"] == "params.cavity_depth_um" and "expected a number" in deep["message"]
        glass = {"substrate_material": "glass", "cavity_method": "drilled"}
        claims = await refused(
            track_in, {"step": "SUBSTRATE_PREP", "params": glass}, "limit_violated"
        )
        assert [(v["value"], v["field"]) for v in claims["violations"]] == [
            ("substrate_material", "params.substrate_material"),
            ("cavity_method", "params.cavity_method"),
        ]
        assert "field" not in claims
        assert (await client.post(track_in, json={"step": "SUBSTRATE_PREP"})).status_code == 200
        off = {"rejects": [{"carrier": "A1-01", "row": 9, "col": 1, "code": "VOID"}]}
        outside = await refused("/lots/A1/track-out", off, "invalid_input")
        assert outside["field"] == "rejects" and "outside the carrier" in outside["message"]
        measured = await refused("/lots/A1/track-out", {"data": {"nosuch": 1}}, "invalid_input")
        assert measured["field"] == "data.nosuch" and "expected:" in measured["message"]
        reason = await refused("/lots/A1/hold", {}, "invalid_input")
        assert "field" not in reason  # about no input of a mapping or list
        assert (await client.get("/lots/A1")).json()["state"] == "RUNNING"


async def test_the_cli_json_error_names_the_option_direct_and_through_the_server(
    api: RunningApi,
) -> None:
    server = ("--server", f"unix://{api.socket}")

    async def refused(*args: str) -> dict[str, Any]:
        """The refusal's JSON, the same through the server and directly."""
        through = await cli(*args, "--json", *server)
        direct = await cli(*args, "--json", "--db", api.db)
        assert through.returncode == direct.returncode == 1, through.stderr + direct.stderr
        said: dict[str, Any] = json.loads(direct.stdout)
        assert json.loads(through.stdout) == said
        return said

    started = await cli("lot", "start", "A1", "--flow", "fo-organic", "--json", *server)
    assert started.returncode == 0, started.stderr
    for args, field in (
        (("lot", "track-in", "A1", "--step", "SUBSTRATE_PREP", "--param", "cavity_depth_um=deep"), "--param cavity_depth_um"),
        (("lot", "start", "A2", "--flow", "fo-organic", "--param", f"layers={2**64}"), "--param layers"),
    ):  # fmt: skip
        assert (await refused(*args))["field"] == field
    args = ("lot", "track-in", "A1", "--step", "SUBSTRATE_PREP", "--param", "cavity_method=drilled")
    [violation] = (await refused(*args))["violations"]
    assert violation["field"] == "--param cavity_method"
    tracked = await cli("lot", "track-in", "A1", "--step", "SUBSTRATE_PREP", "--json", *server)
    assert tracked.returncode == 0, tracked.stderr
    for args, field in (
        (("lot", "track-out", "A1", "--data", "nosuch=1"), "--data nosuch"),
        (("lot", "track-out", "A1", "--reject", "A1-01:9:1:VOID"), "--reject"),
        (("lot", "track-out", "A1", "--reject", "A1-09:1:1:VOID"), "--reject"),
    ):
        assert (await refused(*args))["field"] == field


def test_every_body_key_a_refusal_names_is_one_its_route_takes() -> None:
    """The table the API names a refusal's field by (pkgline.api.fields.BODY_KEYS) names
    routes the API has and keys their bodies take: a name the caller could not find in what
    they sent would be no better than the lot tracker's."""
    document = build_app(None, MAX_BODY_BYTES).openapi()
    schemas = document["components"]["schemas"]
    for path, keys in BODY_KEYS.items():
        body = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        taken = schemas[body["schema"]["$ref"].rsplit("/", 1)[1]]["properties"]
        assert set(keys.values()) <= set(taken), path
