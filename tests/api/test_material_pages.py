"""``GET /materials`` and ``pkgline material list`` a page at a time, through the server and
directly on the same database: pages by id after a cursor lose and repeat no material lot,
say how many match and how to see the next; ``--tool`` and ``--loaded`` filter; ``--json``
without ``--limit`` is every material lot, read a page at a time; a cursor naming no material
lot, or a tool that does not exist, is exit 1 (404), a bad limit exit 2 (422), changing
nothing."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert

from mes.adapters.database import create_engine
from mes.adapters.tables import materials
from mes.domain.authority import CONTROLLER
from mes.domain.equipment import ToolRegistration
from pkgline.page_sizes import MAX_MATERIAL_PAGE
from tests.api.conftest import RunningApi, cli, walk_pages

WIDE = {"COLUMNS": "200"}
AT = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)


async def _add(api: RunningApi, n: int) -> tuple[list[str], list[str]]:
    """``n`` wire lots, every third loaded on WB-1 (registered), written in SQL (more than
    the rules would let one bonder hold: these tests are about the pages): all their ids,
    sorted, and those loaded."""
    await api.state.services.equipment.register(
        "line-a", [ToolRegistration("WB-1", "wire_bonder", "modbus 127.0.0.1", ())], by=CONTROLLER
    )
    rows = [
        {
            "id": f"W-{i:04d}",
            "kind": "wire",
            "expires_at": datetime(2099, 1, 1, tzinfo=UTC),
            "added_by": "quality",
            "added_at": AT,
            "thaw_minutes": 0,
            "tool_id": "WB-1" if i % 3 == 0 else None,
            "loaded_at": AT if i % 3 == 0 else None,
        }
        for i in range(n)
    ]
    engine = create_engine(api.db)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(materials), rows)
    finally:
        await engine.dispose()
    ids = sorted(r["id"] for r in rows)
    return ids, [r["id"] for r in rows if r["tool_id"]]


async def test_the_route_pages_filters_and_counts(api: RunningApi) -> None:
    ids, loaded = await _add(api, 12)
    async with api.client() as client:
        seen = await walk_pages(client, "/materials", "materials", total=12, limit=5)
        assert seen == ids  # none lost, none repeated, by id

        on_tool = (await client.get("/materials", params={"tool": "WB-1", "limit": 2})).json()
        assert [m["id"] for m in on_tool["materials"]] == loaded[:2]
        assert (on_tool["total"], on_tool["more"]) == (4, True)
        after = {"loaded": "true", "after": loaded[1]}
        rest = (await client.get("/materials", params=after)).json()
        assert [m["id"] for m in rest["materials"]] == loaded[2:] and rest["total"] == 4

        unknown = await client.get("/materials", params={"after": "NOPE"})
        assert unknown.status_code == 404, unknown.text
        assert unknown.json()["message"].startswith("there is no material lot NOPE")
        assert (await client.get("/materials", params={"tool": "NOPE"})).status_code == 404
        for bad in ({"limit": 0}, {"limit": MAX_MATERIAL_PAGE + 1}, {"limit": "many"}):
            assert (await client.get("/materials", params=bad)).status_code == 422, bad


async def test_material_list_pages_with_the_notice_of_more_either_way(api: RunningApi) -> None:
    ids, _ = await _add(api, 12)
    for where in (("--server", f"unix://{api.socket}"), ("--db", api.db)):
        first = await cli("material", "list", "--limit", "5", *where, env=WIDE)
        assert first.returncode == 0, first.stderr
        assert f"5 of 12 material lots; more follow: the same command with --after {ids[4]}" in (
            first.stdout
        ), first.stdout
        assert re.findall(r"^(W-\d{4}) ", first.stdout, re.M) == ids[:5], first.stdout
        rest = await cli("material", "list", "--after", ids[4], *where, env=WIDE)
        assert re.findall(r"^(W-\d{4}) ", rest.stdout, re.M) == ids[5:], rest.stdout
        assert "7 of 12 material lots" in rest.stdout and "more follow" not in rest.stdout
        on_tool = await cli("material", "list", "--tool", "WB-1", *where, env=WIDE)
        assert "4 of 4 material lots" in on_tool.stdout

        page = await cli("material", "list", "--json", "--limit", "3", "--after", ids[0], *where)
        assert page.returncode == 0, page.stderr
        assert [m["id"] for m in json.loads(page.stdout)] == ids[1:4]
        notice = json.loads(page.stderr.strip().splitlines()[-1])
        assert {k: notice[k] for k in ("total", "shown", "more", "next_after")} == {
            "total": 12,
            "shown": 3,
            "more": True,
            "next_after": ids[3],
        }
        assert notice["mode"].startswith("via server" if where[0] == "--server" else "direct")

        for args, said in (
            (("--after", "NOPE"), "there is no material lot NOPE"),
            (("--tool", "NOPE"), "there is no tool NOPE"),
        ):
            refused = await cli("material", "list", *args, *where)
            assert refused.returncode == 1 and said in refused.stderr, refused.stderr
            as_json = await cli("material", "list", "--json", *args, *where)
            assert as_json.returncode == 1 and json.loads(as_json.stdout)["error"], as_json
    for limit in ("0", str(MAX_MATERIAL_PAGE + 1)):
        bad = await cli("material", "list", "--limit", limit, "--db", api.db)
        assert bad.returncode == 2 and "--limit" in bad.stderr, (limit, bad.stderr)


@pytest.mark.slow
async def test_json_without_limit_is_every_material_lot_read_a_page_at_a_time(
    api: RunningApi,
) -> None:
    ids, loaded = await _add(api, MAX_MATERIAL_PAGE + 5)  # two pages of the JSON's reading
    for where in (("--server", f"unix://{api.socket}"), ("--db", api.db)):
        every = await cli("material", "list", "--json", *where)
        assert every.returncode == 0, every.stderr
        assert [m["id"] for m in json.loads(every.stdout)] == ids
        on_tool = await cli("material", "list", "--json", "--loaded", *where)
        assert [m["id"] for m in json.loads(on_tool.stdout)] == sorted(loaded)
