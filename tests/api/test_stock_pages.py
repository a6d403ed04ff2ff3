"""``GET /durables`` and ``pkgline durable list``, ``GET /materials`` and ``pkgline material
list``, a page at a time, through the server and directly on the same database: pages by id
after a cursor lose and repeat nothing, say how many match and how to see the next; ``--tool``
and ``--mounted`` (``--loaded``) filter; ``--json`` without ``--limit`` is every one, read a
page at a time; a cursor naming nothing, or a tool that does not exist, is exit 1 (404), a bad
limit exit 2 (422), changing nothing. Durables and material lots pile up alike (every
capillary worn out, every spool of wire), so the two lists are one test each, run on both."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Table, insert

from mes.adapters.database import create_engine
from mes.adapters.tables import durables, materials
from mes.domain.authority import CONTROLLER
from mes.domain.durables import DurableKind
from mes.domain.equipment import ToolRegistration
from mes.domain.materials import MaterialKind
from pkgline.page_sizes import MAX_DURABLE_PAGE, MAX_MATERIAL_PAGE
from tests.api.conftest import RunningApi, cli, walk_pages

WIDE = {"COLUMNS": "200"}
AT = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Stock:
    """One of the two lists, as its command, route and words say it."""

    command: str
    key: str
    """The route's path and its answer's list: ``/durables``, ``durables``."""
    plural: str
    """As the notice counts them: "5 of 12 durables"."""
    noun: str
    """As a refusal names one: "there is no durable NOPE"."""
    error: str
    on_tool: str
    """The filter for those on a tool: ``mounted`` or ``loaded``."""
    prefix: str
    table: Table
    row: Callable[[int], dict[str, Any]]
    """Row ``i`` of the table, its id ``{prefix}-{i:04d}``, on WB-1 when ``i`` is a
    multiple of 3."""
    max_page: int

    @property
    def route(self) -> str:
        return f"/{self.key}"


def _placed(i: int, kinds: list[str]) -> dict[str, Any]:
    """Every third row on a tool, each of another kind there (the database keeps one of a
    kind on a tool, revision 0024): the first ``len(kinds)`` such on WB-1, the next on WB-2,
    and so on; the rest on none, of the first kind."""
    if i % 3:
        return {"tool_id": None, "kind": kinds[0]}
    k = i // 3
    return {"tool_id": f"WB-{k // len(kinds) + 1}", "kind": kinds[k % len(kinds)]}


DURABLE_KINDS = [k.value for k in DurableKind]
MATERIAL_KINDS = [k.value for k in MaterialKind]


DURABLES = Stock(
    "durable",
    "durables",
    "durables",
    "durable",
    "unknown_durable",
    "mounted",
    "CAP",
    durables,
    lambda i: {
        "id": f"CAP-{i:04d}",
        "life": 500_000,
        "warn_permille": 900,
        "count": i,
        "added_by": "eng",
        "added_at": AT,
        "mounted_at": AT if i % 3 == 0 else None,
        "description": None,
        **_placed(i, DURABLE_KINDS),
    },
    MAX_DURABLE_PAGE,
)
MATERIALS = Stock(
    "material",
    "materials",
    "material lots",
    "material lot",
    "unknown_material",
    "loaded",
    "W",
    materials,
    lambda i: {
        "id": f"W-{i:04d}",
        "expires_at": datetime(2099, 1, 1, tzinfo=UTC),
        "added_by": "quality",
        "added_at": AT,
        "thaw_minutes": 0,
        "loaded_at": AT if i % 3 == 0 else None,
        **_placed(i, MATERIAL_KINDS),
    },
    MAX_MATERIAL_PAGE,
)
STOCKS = [pytest.param(DURABLES, id="durables"), pytest.param(MATERIALS, id="materials")]


async def _add(api: RunningApi, stock: Stock, n: int) -> tuple[list[str], list[str]]:
    """``n`` of ``stock``, every third on a tool (registered: :func:`_placed`), written in
    SQL (kinds the rules would not let a bonder hold: these tests are about the pages): all
    their ids, sorted, and those on a tool (of 12, the four on WB-1)."""
    rows = [stock.row(i) for i in range(n)]
    tools = sorted({r["tool_id"] for r in rows if r["tool_id"]}, key=lambda t: int(t[3:]))
    await api.state.services.equipment.register(
        "line-a",
        [ToolRegistration(t, "wire_bonder", "modbus 127.0.0.1", ()) for t in tools],
        by=CONTROLLER,
    )
    engine = create_engine(api.db)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(stock.table), rows)
    finally:
        await engine.dispose()
    return sorted(r["id"] for r in rows), [r["id"] for r in rows if r["tool_id"]]


@pytest.mark.parametrize("stock", STOCKS)
async def test_the_route_pages_filters_and_counts(api: RunningApi, stock: Stock) -> None:
    ids, on_wb1 = await _add(api, stock, 12)
    async with api.client() as client:
        seen = await walk_pages(client, stock.route, stock.key, total=12, limit=5)
        assert seen == ids  # none lost, none repeated, by id

        on_tool = (await client.get(stock.route, params={"tool": "WB-1", "limit": 2})).json()
        assert [x["id"] for x in on_tool[stock.key]] == on_wb1[:2]
        assert (on_tool["total"], on_tool["more"], on_tool["next_after"]) == (4, True, on_wb1[1])
        after = {stock.on_tool: "true", "after": on_wb1[1]}
        rest = (await client.get(stock.route, params=after)).json()
        assert [x["id"] for x in rest[stock.key]] == on_wb1[2:] and rest["total"] == 4
        assert rest[stock.key][0]["kind"] == stock.row(6)["kind"]  # its own JSON

        unknown = await client.get(stock.route, params={"after": "NOPE"})
        assert unknown.status_code == 404, unknown.text
        assert unknown.json()["error"] == stock.error
        assert unknown.json()["message"].startswith(f"there is no {stock.noun} NOPE")
        no_tool = await client.get(stock.route, params={"tool": "NOPE"})
        assert no_tool.status_code == 404 and no_tool.json()["error"] == "unknown_tool"
        for bad in ({"limit": 0}, {"limit": stock.max_page + 1}, {"limit": "many"}):
            assert (await client.get(stock.route, params=bad)).status_code == 422, bad


@pytest.mark.parametrize("stock", STOCKS)
async def test_the_list_pages_with_the_notice_of_more_either_way(
    api: RunningApi, stock: Stock
) -> None:
    ids, _ = await _add(api, stock, 12)
    listed = re.compile(rf"^({stock.prefix}-\d{{4}}) ", re.M)
    for where in (("--server", f"unix://{api.socket}"), ("--db", api.db)):
        first = await cli(stock.command, "list", "--limit", "5", *where, env=WIDE)
        assert first.returncode == 0, first.stderr
        said = f"5 of 12 {stock.plural}; more follow: the same command with --after {ids[4]}"
        assert said in first.stdout, first.stdout
        assert listed.findall(first.stdout) == ids[:5], first.stdout
        rest = await cli(stock.command, "list", "--after", ids[4], *where, env=WIDE)
        assert listed.findall(rest.stdout) == ids[5:], rest.stdout
        assert f"7 of 12 {stock.plural}" in rest.stdout and "more follow" not in rest.stdout
        on_tool = await cli(stock.command, "list", "--tool", "WB-1", *where, env=WIDE)
        assert f"4 of 4 {stock.plural}" in on_tool.stdout
        past = await cli(stock.command, "list", f"--{stock.on_tool}", "--after", ids[-1], *where)
        assert past.returncode == 0 and f"0 of 4 {stock.plural}" in past.stdout, past

        page = await cli(stock.command, "list", "--json", "--limit", "3", "--after", ids[0], *where)
        assert page.returncode == 0, page.stderr
        assert [x["id"] for x in json.loads(page.stdout)] == ids[1:4]
        notice = json.loads(page.stderr.strip().splitlines()[-1])
        assert {k: notice[k] for k in ("total", "shown", "more", "next_after")} == {
            "total": 12,
            "shown": 3,
            "more": True,
            "next_after": ids[3],
        }
        assert notice["mode"].startswith("via server" if where[0] == "--server" else "direct")

        for args, refusal in (
            (("--after", "NOPE"), f"there is no {stock.noun} NOPE"),
            (("--tool", "NOPE"), "there is no tool NOPE"),
        ):
            refused = await cli(stock.command, "list", *args, *where)
            assert refused.returncode == 1 and refusal in refused.stderr, refused.stderr
            as_json = await cli(stock.command, "list", "--json", *args, *where)
            assert as_json.returncode == 1 and json.loads(as_json.stdout)["error"], as_json
    for limit in ("0", str(stock.max_page + 1)):
        bad = await cli(stock.command, "list", "--limit", limit, "--db", api.db)
        assert bad.returncode == 2 and "--limit" in bad.stderr, (limit, bad.stderr)


@pytest.mark.slow
@pytest.mark.parametrize("stock", STOCKS)
async def test_json_without_limit_is_every_one_read_a_page_at_a_time(
    api: RunningApi, stock: Stock
) -> None:
    ids, on_wb1 = await _add(api, stock, stock.max_page + 5)  # two pages of the JSON's reading
    for where in (("--server", f"unix://{api.socket}"), ("--db", api.db)):
        every = await cli(stock.command, "list", "--json", *where)
        assert every.returncode == 0, every.stderr
        assert [x["id"] for x in json.loads(every.stdout)] == ids
        on_tool = await cli(stock.command, "list", "--json", f"--{stock.on_tool}", *where)
        assert [x["id"] for x in json.loads(on_tool.stdout)] == sorted(on_wb1)
