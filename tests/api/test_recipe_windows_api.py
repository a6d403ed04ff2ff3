"""A track-in whose recipe value is outside its set-point window (line practice) is refused
through the API (422 ``invalid_input``, ``field: params.NAME``) and the CLI (``--json``:
``field: --param NAME``, through the server and directly alike), the message naming the
value, the window, its origin and what is expected; nothing changes. The flow's description
(``flow show --json``) gives each recipe value's window."""

from __future__ import annotations

import json
from typing import Any

from tests.api.conftest import RunningApi, cli, lot_history

HOT = "bond_temperature_c=300"
SAYS = (
    "bond_temperature_c 300 degC is outside its set-point window 100 to 160 degC, target "
    "130 degC (line practice: die attach film tack temperature): above the upper limit "
    "160 degC; expected bond_temperature_c from 100 to 160 degC (default 130 degC)"
)


async def test_a_set_point_outside_its_window_is_refused_through_the_api_and_the_cli(
    api: RunningApi,
) -> None:
    server = ("--server", f"unix://{api.socket}")
    async with api.client() as client:
        started = await client.post("/lots", json={"lot": "A1", "flow": "fo-organic"})
        assert started.status_code == 201, started.text
        for path, body in (("track-in", {"step": "SUBSTRATE_PREP"}), ("track-out", {})):
            moved = await client.post(f"/lots/A1/{path}", json=body)
            assert moved.status_code == 200, moved.text
        history = await lot_history(api, "A1")
        body = {"step": "DIE_ATTACH", "params": {"bond_temperature_c": 300}}
        said = await client.post("/lots/A1/track-in", json=body)
        assert said.status_code == 422, said.text
        answer: dict[str, Any] = said.json()
        assert answer["error"] == "invalid_input" and answer["field"] == "params.bond_temperature_c"
        assert SAYS in answer["message"]
        assert await lot_history(api, "A1") == history
        assert (await client.get("/lots/A1")).json()["state"] == "WAITING"

    args = ("lot", "track-in", "A1", "--step", "DIE_ATTACH", "--param", HOT, "--json")
    through = await cli(*args, *server)
    direct = await cli(*args, "--db", api.db)
    assert through.returncode == direct.returncode == 1, through.stderr + direct.stderr
    refused: dict[str, Any] = json.loads(direct.stdout)
    assert json.loads(through.stdout) == refused
    assert refused["field"] == "--param bond_temperature_c" and SAYS in refused["message"]
    plain = await cli(*args[:-1], *server)
    assert plain.returncode == 1 and "set-point window 100 to 160 degC" in plain.stderr
    assert await lot_history(api, "A1") == history

    shown = await cli("flow", "show", "fo-organic", "--json")
    assert shown.returncode == 0, shown.stderr
    recipe = json.loads(shown.stdout)["steps"]["DIE_ATTACH"]["recipe"]
    assert recipe["bond_temperature_c"]["window"] == {
        "lower": 100.0,
        "upper": 160.0,
        "target": 130.0,
        "origin": "line practice: die attach film tack temperature",
    }
    assert recipe["die_orientation"]["window"] is None
    table = await cli("flow", "show", "fo-organic", env={"COLUMNS": "200"})
    assert "Set-point windows of recipe values" in table.stdout
    assert "line practice: die attach film tack temperature" in table.stdout
