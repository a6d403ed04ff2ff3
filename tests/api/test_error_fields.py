"""A refusal about one of the request's inputs says which, in its JSON: ``field`` of an
``invalid_input`` (the lot tracker's ``InvalidInput.field``: ``values.NAME`` of a track-in's
recipe value, ``measured.NAME`` of a track-out's, ``params.NAME`` of a start's, ``rejects``,
``sites``), and ``field`` of each violation of a ``limit_violated`` given in the request (none
for a value an earlier step recorded). The API's error body and the CLI's ``--json`` say the
same, through the server and in direct mode; a refusal about no input has no ``field``."""

from __future__ import annotations

import json
from typing import Any

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
        assert deep["field"] == "values.cavity_depth_um" and "expected a number" in deep["message"]
        glass = {"substrate_material": "glass", "cavity_method": "drilled"}
        claims = await refused(
            track_in, {"step": "SUBSTRATE_PREP", "params": glass}, "limit_violated"
        )
        assert [(v["value"], v["field"]) for v in claims["violations"]] == [
            ("substrate_material", "values.substrate_material"),
            ("cavity_method", "values.cavity_method"),
        ]
        assert "field" not in claims
        assert (await client.post(track_in, json={"step": "SUBSTRATE_PREP"})).status_code == 200
        off = {"rejects": [{"carrier": "A1-01", "row": 9, "col": 1, "code": "VOID"}]}
        outside = await refused("/lots/A1/track-out", off, "invalid_input")
        assert outside["field"] == "rejects" and "outside the carrier" in outside["message"]
        reason = await refused("/lots/A1/hold", {}, "invalid_input")
        assert "field" not in reason  # about no input of a mapping or list
        assert (await client.get("/lots/A1")).json()["state"] == "RUNNING"


async def test_the_cli_json_error_names_the_refused_input_direct_and_through_the_server(
    api: RunningApi,
) -> None:
    server = ("--server", f"unix://{api.socket}")
    started = await cli("lot", "start", "A1", "--flow", "fo-organic", "--json", *server)
    assert started.returncode == 0, started.stderr
    for args, field in (
        (("lot", "track-in", "A1", "--step", "SUBSTRATE_PREP", "--param", "cavity_depth_um=deep"), "values.cavity_depth_um"),
        (("lot", "start", "A2", "--flow", "fo-organic", "--param", f"layers={2**64}"), "params.layers"),
    ):  # fmt: skip
        through = await cli(*args, "--json", *server)
        direct = await cli(*args, "--json", "--db", api.db)
        assert through.returncode == direct.returncode == 1, through.stderr + direct.stderr
        assert json.loads(through.stdout) == json.loads(direct.stdout)
        assert json.loads(direct.stdout)["field"] == field
    args = ("lot", "track-in", "A1", "--step", "SUBSTRATE_PREP", "--param", "cavity_method=drilled")
    through = await cli(*args, "--json", *server)
    direct = await cli(*args, "--json", "--db", api.db)
    assert json.loads(through.stdout) == json.loads(direct.stdout)
    [violation] = json.loads(direct.stdout)["violations"]
    assert violation["field"] == "values.cavity_method"
