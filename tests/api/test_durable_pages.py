"""``GET /durables`` and ``pkgline durable list`` a page at a time, through the server and
directly on the same database: pages by id after a cursor lose and repeat no durable, say how
many match and how to see the next; ``--tool`` and ``--mounted`` filter; ``--json`` without
``--limit`` is every durable, read a page at a time; a cursor naming no durable, or a tool
that does not exist, is exit 1 (404), a bad limit exit 2 (422), changing nothing."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert

from mes.adapters.database import create_engine
from mes.adapters.tables import durables
from mes.domain.authority import CONTROLLER
from mes.domain.equipment import ToolRegistration
from pkgline.page_sizes import MAX_DURABLE_PAGE
from tests.api.conftest import RunningApi, cli, walk_pages

WIDE = {"COLUMNS": "200"}
AT = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)


async def _add(api: RunningApi, n: int) -> tuple[list[str], list[str]]:
    """``n`` capillaries, every third mounted on WB-1 (registered), written in SQL (more than
    the rules would let one bonder hold: these tests are about the pages): all their ids,
    sorted, and those mounted."""
    await api.state.services.equipment.register(
        "line-a", [ToolRegistration("WB-1", "wire_bonder", "modbus 127.0.0.1", ())], by=CONTROLLER
    )
    rows = [
        {
            "id": f"CAP-{i:04d}",
            "kind": "capillary",
            "life": 500_000,
            "warn_permille": 900,
            "count": i,
            "added_by": "eng",
            "added_at": AT,
            "tool_id": "WB-1" if i % 3 == 0 else None,
            "mounted_at": AT if i % 3 == 0 else None,
            "description": None,
        }
        for i in range(n)
    ]
    engine = create_engine(api.db)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(durables), rows)
    finally:
        await engine.dispose()
    ids = sorted(r["id"] for r in rows)
    return ids, [r["id"] for r in rows if r["tool_id"]]


async def test_the_route_pages_filters_and_counts(api: RunningApi) -> None:
    ids, mounted = await _add(api, 12)
    async with api.client() as client:
        seen = await walk_pages(client, "/durables", "durables", total=12, limit=5)
        assert seen == ids  # none lost, none repeated, by id

        on_tool = (await client.get("/durables", params={"tool": "WB-1", "limit": 2})).json()
        assert [d["id"] for d in on_tool["durables"]] == mounted[:2]
        assert (on_tool["total"], on_tool["more"], on_tool["next_after"]) == (4, True, mounted[1])
        after = {"mounted": "true", "after": mounted[1]}
        rest = (await client.get("/durables", params=after)).json()
        assert [d["id"] for d in rest["durables"]] == mounted[2:] and rest["total"] == 4
        assert rest["durables"][0]["count"] == int(mounted[2][4:])  # a durable's own JSON

        unknown = await client.get("/durables", params={"after": "NOPE"})
        assert unknown.status_code == 404, unknown.text
        assert unknown.json()["error"] == "unknown_durable"
        assert unknown.json()["message"].startswith("there is no durable NOPE")
        no_tool = await client.get("/durables", params={"tool": "NOPE"})
        assert no_tool.status_code == 404 and no_tool.json()["error"] == "unknown_tool"
        for bad in ({"limit": 0}, {"limit": MAX_DURABLE_PAGE + 1}, {"limit": "many"}):
            assert (await client.get("/durables", params=bad)).status_code == 422, bad


async def test_durable_list_pages_with_the_notice_of_more_either_way(api: RunningApi) -> None:
    ids, _ = await _add(api, 12)
    for where in (("--server", f"unix://{api.socket}"), ("--db", api.db)):
        first = await cli("durable", "list", "--limit", "5", *where, env=WIDE)
        assert first.returncode == 0, first.stderr
        assert f"5 of 12 durables; more follow: the same command with --after {ids[4]}" in (
            first.stdout
        ), first.stdout
        assert re.findall(r"^(CAP-\d{4}) ", first.stdout, re.M) == ids[:5], first.stdout
        rest = await cli("durable", "list", "--after", ids[4], *where, env=WIDE)
        assert re.findall(r"^(CAP-\d{4}) ", rest.stdout, re.M) == ids[5:], rest.stdout
        assert "7 of 12 durables" in rest.stdout and "more follow" not in rest.stdout
        on_tool = await cli("durable", "list", "--tool", "WB-1", *where, env=WIDE)
        assert "4 of 4 durables" in on_tool.stdout
        mounted = await cli("durable", "list", "--mounted", "--after", ids[-1], *where)
        assert mounted.returncode == 0 and "0 of 4 durables" in mounted.stdout, mounted

        page = await cli("durable", "list", "--json", "--limit", "3", "--after", ids[0], *where)
        assert page.returncode == 0, page.stderr
        assert [d["id"] for d in json.loads(page.stdout)] == ids[1:4]
        notice = json.loads(page.stderr.strip().splitlines()[-1])
        assert {k: notice[k] for k in ("total", "shown", "more", "next_after")} == {
            "total": 12,
            "shown": 3,
            "more": True,
            "next_after": ids[3],
        }
        assert notice["mode"].startswith("via server" if where[0] == "--server" else "direct")

        for args, said in (
            (("--after", "NOPE"), "there is no durable NOPE"),
            (("--tool", "NOPE"), "there is no tool NOPE"),
        ):
            refused = await cli("durable", "list", *args, *where)
            assert refused.returncode == 1 and said in refused.stderr, refused.stderr
            as_json = await cli("durable", "list", "--json", *args, *where)
            assert as_json.returncode == 1 and json.loads(as_json.stdout)["error"], as_json
    for limit in ("0", str(MAX_DURABLE_PAGE + 1)):
        bad = await cli("durable", "list", "--limit", limit, "--db", api.db)
        assert bad.returncode == 2 and "--limit" in bad.stderr, (limit, bad.stderr)


@pytest.mark.slow
async def test_json_without_limit_is_every_durable_read_a_page_at_a_time(
    api: RunningApi,
) -> None:
    ids, mounted = await _add(api, MAX_DURABLE_PAGE + 5)  # two pages of the JSON's reading
    for where in (("--server", f"unix://{api.socket}"), ("--db", api.db)):
        every = await cli("durable", "list", "--json", *where)
        assert every.returncode == 0, every.stderr
        assert [d["id"] for d in json.loads(every.stdout)] == ids
        on_tool = await cli("durable", "list", "--json", "--mounted", *where)
        assert [d["id"] for d in json.loads(on_tool.stdout)] == sorted(mounted)
