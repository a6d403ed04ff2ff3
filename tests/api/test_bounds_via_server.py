"""The API's bounds on a body are the lot tracker's (a lot's carriers, a carrier's rows and
columns, a lot's priority, a site's row and column, the carriers a split names, a durable's
life, an SPC baseline), so that its document says what is accepted; the CLI checks the same
ranges before it sends anything, so that a value out of range is the same usage error (exit
2, the same words) directly and through a server."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from mes.domain import durables, materials, model, spc
from pkgline.api.app import openapi_document
from pkgline.cli import bounds
from tests.api.conftest import RunningApi, cli


def test_the_clis_bounds_are_the_lot_trackers() -> None:
    assert bounds.MAX_CARRIERS == model.MAX_CARRIERS
    assert (bounds.MAX_SITE_ROWS, bounds.MAX_SITE_COLS) == (
        model.MAX_SITE_ROWS,
        model.MAX_SITE_COLS,
    )
    assert range(bounds.MIN_PRIORITY, bounds.MAX_PRIORITY + 1) == model.PRIORITY_RANGE
    assert bounds.MAX_LIFE == durables.MAX_LIFE
    assert bounds.MAX_CLOCK_MINUTES == materials.MAX_CLOCK_MINUTES  # fmt: skip


def _schema(name: str) -> dict[str, Any]:
    found: dict[str, Any] = openapi_document()["components"]["schemas"][name]["properties"]
    return found


def test_the_openapi_document_says_the_lot_trackers_bounds() -> None:
    start = _schema("StartBody")
    for field, high in (
        ("carriers", model.MAX_CARRIERS),
        ("rows", model.MAX_SITE_ROWS),
        ("cols", model.MAX_SITE_COLS),
        ("priority", model.PRIORITY_RANGE.stop - 1),
    ):
        assert (start[field]["minimum"], start[field]["maximum"]) == (1, high), field
    for body in ("Site", "Reject"):
        site = _schema(body)
        assert site["row"]["maximum"] == model.MAX_SITE_ROWS
        assert site["col"]["maximum"] == model.MAX_SITE_COLS
    assert _schema("SplitBody")["carriers"]["maxItems"] == model.MAX_CARRIERS
    life = _schema("AddDurableBody")["life"]
    assert (life["minimum"], life["maximum"]) == (1, durables.MAX_LIFE)
    baseline = _schema("ChartBody")["baseline"]
    assert (baseline["minimum"], baseline["maximum"]) == (spc.MIN_BASELINE, spc.MAX_BASELINE)


async def test_the_api_refuses_what_the_lot_tracker_would_as_an_invalid_request(
    api: RunningApi,
) -> None:
    start = {"lot": "A1", "flow": "stiffener-bga"}
    async with api.client() as client:
        for past in ({"carriers": 101}, {"rows": 129}, {"cols": 129}, {"carriers": 0}):
            said = await client.post("/lots", json={**start, **past})
            assert said.status_code == 422 and said.json()["error"] == "invalid_request", past
        made = await client.post("/lots", json={**start, "carriers": 100, "rows": 128, "cols": 128})
        assert made.status_code == 201, made.text
        assert (
            await client.post("/lots/A1/track-in", json={"step": "SUBSTRATE_LOAD"})
        ).status_code == 200
        far = {"rejects": [{"carrier": "1", "row": 129, "col": 1, "code": "VOID"}]}
        said = await client.post("/lots/A1/track-out", json=far)
        assert said.status_code == 422 and said.json()["error"] == "invalid_request", said.text
        assert "rejects.0.row" in said.json()["message"]
        assert (await client.get("/lots/A1")).json()["state"] == "RUNNING"  # fmt: skip


OUT_OF_RANGE = [
    ("lot", "start", "H-4", "--flow", "stiffener-bga", "--carriers", "0"),
    ("lot", "start", "H-4", "--flow", "stiffener-bga", "--carriers", "101"),
    ("lot", "start", "H-4", "--flow", "stiffener-bga", "--rows", "129"),
    ("lot", "start", "H-4", "--flow", "stiffener-bga", "--cols", "0"),
    ("lot", "start", "H-4", "--flow", "stiffener-bga", "--priority", "10"),
    ("lot", "list", "--priority", "0"),
    ("lot", "track-out", "A1", "--reject", "1:129:1:VOID"),
    ("lot", "track-out", "A1", "--reject", "1:0:1:VOID"),
    ("lot", "scrap", "A1", "--site", "1:1:129", "--reason", "dropped"),
    ("lot", "split", "A1", "--into", "A2", "--carriers", ",".join(str(n) for n in range(1, 102))),
    ("durable", "add", "CAP-2", "--kind", "capillary", "--life", "0"),
    ("durable", "add", "CAP-2", "--kind", "capillary", "--life", str(10**12 + 1)),
    ("spc", "chart", "DIE_ATTACH", "bond_force_n", "--tool", "DB-1", "--baseline", "4"),
    ("material", "add", "EMC-9", "--kind", "mold_compound", "--expires", "2099-06-30", "--thaw-hours", "20000"),
]  # fmt: skip


@pytest.mark.parametrize("json_output", [False, True])
async def test_a_value_out_of_the_lot_trackers_range_is_the_same_usage_error_either_way(
    api: RunningApi, json_output: bool
) -> None:
    """``lot start --carriers 0`` said "a lot has 1 to 100 carriers, not 0" directly (exit 1)
    and "the request is not as expected (carriers: ...)" through the server (exit 2); the
    API took up to 1000 carriers, rows and columns where the lot tracker takes 100 and 128."""
    server = ("--server", f"unix://{api.socket}")
    as_json = ("--json",) if json_output else ()
    for args in OUT_OF_RANGE:
        direct = await cli(*args, *as_json, "--db", api.db)
        through = await cli(*args, *as_json, *server)
        assert direct.returncode == through.returncode == 2, (args, direct, through)
        assert (direct.stdout, direct.stderr) == (through.stdout, through.stderr), args
        said = json.loads(direct.stdout)["message"] if json_output else direct.stderr
        assert re.search(r"not in the range|at most \d|at most 16,666", said), (args, said)
        if json_output:
            assert json.loads(direct.stdout)["error"] == "usage", args
