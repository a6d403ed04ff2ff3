"""The tool page's actions over HTTP (the server as it runs, its own seeded database): an
operator scans a material lot onto a tool and takes one off with a reason; a lot of another
class, an unknown id, an empty field, one not on this tool, a role that may not handle
material and a form without the session's token are refused on the page and change
nothing."""

from __future__ import annotations

import asyncio
import html
import re

import httpx

from pkgline.api.server import open_state
from tests.station.client import csrf, logged_in, message
from tests.station.conftest import Station
from tests.station.seed import OWNER, fast_passwords


def _on_tool(client: httpx.Client, tool: str) -> dict[str, str]:
    page = client.get(f"/station/tools/{tool}").text
    return dict(re.findall(r'data-on-tool="([^"]+)" data-status="([^"]+)"', page))


def test_an_operator_unloads_the_spent_spool_and_scans_the_next_one_on(station: Station) -> None:
    with logged_in(station, "olga") as client:
        page = client.get("/station/tools/WB-1").text
        assert 'id="load-form"' in page
        done = client.post(
            "/station/tools/WB-1/unload",
            data={"csrf": csrf(page), "material": "WIRE-7", "reason": "spool empty"},
            follow_redirects=True,
        )
        assert done.status_code == 200 and "was taken off the tool" in done.text
        assert str(done.url).endswith("/station/tools/WB-1?done=unload")  # after a redirect
        assert _on_tool(client, "WB-1") == {"CAP-7": "ok"}
        loaded = client.post(
            "/station/tools/WB-1/load",
            data={"csrf": csrf(page), "material": " WIRE-8 "},
            follow_redirects=True,
        )
        assert loaded.status_code == 200 and "was loaded on the tool" in loaded.text
        assert _on_tool(client, "WB-1") == {"CAP-7": "ok", "WIRE-8": "usable"}
        shown = client.get("/station/tools/WB-1").text
        assert re.search(r'data-on-tool="WIRE-8".*?name="material" value="WIRE-8"', shown, re.S)


def test_refusals_are_shown_on_the_tool_page_and_change_nothing(station: Station) -> None:
    with logged_in(station, "olga") as client:
        page = client.get("/station/tools/DA-1").text
        token = csrf(page)
        before = {t: _on_tool(client, t) for t in ("DA-1", "WB-1")}
        refusals = [
            ("DA-1", "load", {"material": ""}, 422, "scan or type the material lot's id"),
            ("DA-1", "load", {"material": "NOPE-9"}, 404, "NOPE-9"),
            ("DA-1", "unload", {"material": "WIRE-7"}, 422, "is not loaded on DA-1"),
            ("WB-1", "unload", {"material": "DAF-7"}, 422, "is not loaded on WB-1"),
        ]
        for tool, action, fields, status, said in refusals:
            answer = client.post(f"/station/tools/{tool}/{action}", data={"csrf": token, **fields})
            assert answer.status_code == status, (tool, action, fields, answer.text)
            assert said in html.unescape(message(answer.text)), message(answer.text)
            assert f'Tool <span id="tool-id">{tool}</span>' in answer.text
        # a wire lot on a die bonder: the material service's own refusal, with the class
        wrong = client.post("/station/tools/DA-1/load", data={"csrf": token, "material": "WIRE-9"})
        assert wrong.status_code in (409, 422), wrong.text
        said = html.unescape(message(wrong.text))
        assert "material lot WIRE-9 is wire, loaded on a wire_bonder; DA-1 is a die_bonder" in said
        assert 'value="WIRE-9"' in wrong.text  # the scanned id stays in the field
        stale = client.post("/station/tools/DA-1/load", data={"csrf": "0" * 64, "material": "X"})
        assert stale.status_code == 400
        assert {t: _on_tool(client, t) for t in ("DA-1", "WB-1")} == before
    with logged_in(station, "ada") as admin:  # an admin keeps users, not the floor
        page = admin.get("/station/tools/DA-1").text
        refused = admin.post(
            "/station/tools/DA-1/unload", data={"csrf": csrf(page), "material": "ADH-7"}
        )
        assert refused.status_code == 403, refused.text
        assert "operator" in html.unescape(message(refused.text))
        # her role may never handle material: told so first (and recorded), not asked to
        # scan an id or pick one that is on the tool (the probe's: 422 for these)
        for action, material in (("load", ""), ("unload", "NOPE-9")):
            sent = admin.post(
                f"/station/tools/DA-1/{action}", data={"csrf": csrf(page), "material": material}
            )
            assert sent.status_code == 403, (action, sent.text)
            assert "ada (admin) may not" in html.unescape(message(sent.text))
        assert _on_tool(admin, "DA-1") == before["DA-1"]


async def _disqualify(db: str, tool: str, step: str, reason: str) -> None:
    async with open_state(db, passwords=fast_passwords()) as state:
        service = state.services.qualifications
        await service.set(tool, step, False, "erin", reason, by=OWNER)


def test_the_tool_page_says_which_steps_the_tool_is_disqualified_for(station: Station) -> None:
    """A tool an SPC violation inhibited (or an engineer disqualified) for a step refuses its
    track-ins: the tool page says so, by whom and why (found probing the station: DB-1 stood
    idle after an SPC hold with nothing on its page saying why)."""
    with logged_in(station, "olga") as client:
        assert 'id="tool-disqualified"' not in client.get("/station/tools/WB-1").text
        asyncio.run(_disqualify(station.db, "WB-1", "WIRE_BOND", "pull test failed"))
        page = client.get("/station/tools/WB-1").text
        shown = re.search(r'id="tool-disqualified">(.*?)</dd>', page, re.S)
        assert shown is not None, page
        said = html.unescape(re.sub(r"<[^>]+>", "", shown[1]))
        assert said.startswith("WIRE_BOND, by erin since ")
        assert "pull test failed" in said and "track-ins on this tool are refused" in said
