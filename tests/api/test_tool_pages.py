"""``GET /tools`` and ``pkgline tool list`` a page at a time, through the server and directly
on the same database: pages by tool id after a cursor lose and repeat no tool, say how many
match and how to see the next; ``--line``, ``--class``, ``--state`` and ``--dispatch`` filter; ``--json``
without ``--limit`` is every tool, read a page at a time; a cursor naming no tool is exit 1
(404), a bad limit or state exit 2 (422), changing nothing."""

from __future__ import annotations

import json
import re

import pytest

from mes.domain.authority import CONTROLLER
from mes.domain.equipment import DispatchMode, ToolRegistration, ToolSnapshot
from pkgline.tool_views import MAX_TOOL_PAGE
from tests.api.conftest import RunningApi, cli, walk_pages

pytestmark = pytest.mark.slow

CLASSES = ("die_bonder", "wire_bonder", "molder")
WIDE = {"COLUMNS": "200"}


async def _register(api: RunningApi, per_line: int) -> list[str]:
    """``per_line`` tools on each of line-a and line-b, classes in turn; their ids, sorted."""
    ids = []
    for line in ("line-b", "line-a"):
        regs = [
            ToolRegistration(f"{line[-1].upper()}-{i:04d}", CLASSES[i % 3], "modbus 127.0.0.1", ())
            for i in range(per_line)
        ]
        await api.state.services.equipment.register(line, regs, by=CONTROLLER)
        ids += [r.id for r in regs]
    return sorted(ids)


async def test_the_route_pages_filters_and_counts(api: RunningApi) -> None:
    ids = await _register(api, 6)
    await api.state.services.equipment.report(
        "B-0004", ToolSnapshot(True, "productive", "EXECUTING", "PRODUCTION"), by=CONTROLLER
    )
    async with api.client() as client:
        seen = await walk_pages(client, "/tools", "tools", total=12, limit=5)
        assert seen == ids  # none lost, none repeated, by id

        molders = (await client.get("/tools", params={"class": "molder", "line": "line-a"})).json()
        assert [t["id"] for t in molders["tools"]] == ["A-0002", "A-0005"]
        assert (molders["total"], molders["more"]) == (2, False)
        running = (await client.get("/tools", params={"state": "productive"})).json()
        assert [t["id"] for t in running["tools"]] == ["B-0004"] and running["total"] == 1

        unknown = await client.get("/tools", params={"after": "NOPE"})
        assert unknown.status_code == 404
        assert unknown.json()["message"] == "there is no tool NOPE to list the tools after"
        for bad in ({"limit": 0}, {"limit": MAX_TOOL_PAGE + 1}, {"limit": "many"}):
            assert (await client.get("/tools", params=bad)).status_code == 422, bad
        state = await client.get("/tools", params={"state": "up"})
        assert state.status_code == 422 and "expected an E10 state" in state.json()["message"]

        await api.state.services.equipment.set_dispatch(
            "A-0003", DispatchMode.MANUAL, "tech", "cleaning", by=CONTROLLER
        )
        manual = (await client.get("/tools", params={"dispatch": "manual"})).json()
        assert [t["id"] for t in manual["tools"]] == ["A-0003"] and manual["total"] == 1
        auto = (await client.get("/tools", params={"dispatch": "auto", "line": "line-a"})).json()
        assert auto["total"] == 5 and "A-0003" not in [t["id"] for t in auto["tools"]]
        off = await client.get("/tools", params={"dispatch": "off"})
        assert off.status_code == 422 and "'auto' or 'manual'" in off.json()["message"]


def _mode(stderr: str) -> str:
    return "server" if "via server" in stderr else "direct"


async def test_tool_list_pages_with_the_notice_of_more_either_way(api: RunningApi) -> None:
    ids = await _register(api, 6)
    for where in (("--server", f"unix://{api.socket}"), ("--db", api.db)):
        first = await cli("tool", "list", "--limit", "5", *where, env=WIDE)
        assert first.returncode == 0, first.stderr
        assert f"5 of 12 tools; more follow: the same command with --after {ids[4]}" in (
            first.stdout
        ), first.stdout
        shown = re.findall(r"^│ ([AB]-\d{4}) ", first.stdout, re.M)
        assert shown == ids[:5], (_mode(first.stderr), first.stdout)
        rest = await cli("tool", "list", "--after", ids[4], *where, env=WIDE)
        assert rest.returncode == 0, rest.stderr
        assert re.findall(r"^│ ([AB]-\d{4}) ", rest.stdout, re.M) == ids[5:]
        assert "7 of 12 tools" in rest.stdout and "more follow" not in rest.stdout

        filtered = await cli(
            "tool", "list", "--class", "molder", "--line", "line-b", *where, env=WIDE
        )
        assert "2 of 2 tools" in filtered.stdout and "B-0005" in filtered.stdout
        nothing = await cli("tool", "list", "--state", "engineering", *where)
        assert nothing.returncode == 0 and "no tools match (0 of 0 tools)" in nothing.stdout
        in_manual = await cli("tool", "list", "--dispatch", "manual", *where)
        assert in_manual.returncode == 0 and "no tools match (0 of 0 tools)" in in_manual.stdout
        in_auto = await cli("tool", "list", "--dispatch", "auto", "--json", *where)
        assert len(json.loads(in_auto.stdout)) == 12, in_auto.stderr

        page = await cli("tool", "list", "--json", "--limit", "3", "--after", ids[0], *where)
        assert page.returncode == 0, page.stderr
        assert [t["id"] for t in json.loads(page.stdout)] == ids[1:4]
        notice = json.loads(page.stderr.strip().splitlines()[-1])
        assert {k: notice[k] for k in ("total", "shown", "more", "next_after")} == {
            "total": 12,
            "shown": 3,
            "more": True,
            "next_after": ids[3],
        }
        assert notice["mode"].startswith("via server" if where[0] == "--server" else "direct")


async def test_bad_cursor_limit_or_state_is_refused_either_way(api: RunningApi) -> None:
    await _register(api, 2)
    for where in (("--server", f"unix://{api.socket}"), ("--db", api.db)):
        unknown = await cli("tool", "list", "--after", "NOPE", *where)
        assert unknown.returncode == 1, (where, unknown.stdout, unknown.stderr)
        assert "there is no tool NOPE to list the tools after" in unknown.stderr
        as_json = await cli("tool", "list", "--json", "--after", "NOPE", *where)
        assert as_json.returncode == 1 and json.loads(as_json.stdout)["error"] == "unknown_tool"
    # Checked before either mode is chosen: the same refusal through the server.
    via = ("--server", f"unix://{api.socket}")
    for limit in ("0", str(MAX_TOOL_PAGE + 1), "many"):
        bad = await cli("tool", "list", "--limit", limit, *via)
        assert bad.returncode == 2 and "--limit" in bad.stderr, (limit, bad.stderr)
    state = await cli("tool", "list", "--state", "up", *via)
    assert state.returncode == 2 and "expected one of productive" in state.stderr
    # a class no tool can have listed no tools and said nothing of it (found by a probe)
    kind = await cli("tool", "list", "--class", "molders", *via)
    assert kind.returncode == 2 and "--class 'molders': expected one of die_bonder" in kind.stderr
    async with api.client() as client:
        answer = await client.get("/tools", params={"class": "molders"})
    assert answer.status_code == 422 and "die_bonder" in answer.text


async def test_json_without_limit_is_every_tool_read_a_page_at_a_time(api: RunningApi) -> None:
    ids = await _register(api, MAX_TOOL_PAGE // 2 + 3)  # two pages of the JSON's reading
    assert len(ids) > MAX_TOOL_PAGE
    for where in (("--server", f"unix://{api.socket}"), ("--db", api.db)):
        every = await cli("tool", "list", "--json", *where)
        assert every.returncode == 0, every.stderr
        assert [t["id"] for t in json.loads(every.stdout)] == ids
        molders = await cli("tool", "list", "--json", "--class", "molder", *where)
        got = [t["id"] for t in json.loads(molders.stdout)]
        assert got == [i for i in ids if int(i[2:]) % 3 == 2]
