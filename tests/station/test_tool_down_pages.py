"""A tool declared down (``tool down --planned``) on the station: its tile on the line page
and its tool page say so, who declared it and why, and its E10 state shows the declared one
although no line controller follows the line. A technician declares a tool down and brings
it up from its page; an operator sees no such form, and a forged one is refused, recorded,
and changes nothing; a tool running a lot is refused on the form."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mes.domain.authority import AuthMethod, Principal, Role
from mes.domain.equipment import ToolRecord
from pkgline.api.auth import ApiState
from pkgline.api.server import open_state
from tests.station.client import csrf, logged_in, message
from tests.station.conftest import Station, running_station
from tests.station.seed import OWNER, fast_passwords


async def _declared(state: ApiState) -> None:
    tom = Principal("tom", frozenset({Role.TECHNICIAN}), AuthMethod.PASSWORD)
    equipment = state.services.equipment.acting_as(tom)
    await equipment.declare_down("WB-1", "scheduled_down", "tom", "PM 500 h")


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    with running_station(tmp_path_factory.mktemp("station"), prepare=_declared) as running:
        yield running


def test_the_line_page_and_the_tool_page_show_who_declared_the_tool_down_and_why(
    station: Station,
) -> None:
    with logged_in(station, "tom") as client:
        line = client.get("/station/").text
        tool = client.get("/station/tools/WB-1").text
    tile = re.search(
        r'<article class="tile [^"]*" data-tool="WB-1" data-e10="([^"]+)">(.*?)</article>',
        line,
        re.S,
    )
    assert tile is not None, line
    assert tile[1] == "scheduled_down"
    assert 'data-down="scheduled_down">declared by tom: PM 500 h' in tile[2]
    down = re.search(r'<dd id="tool-down" data-down="scheduled_down">(.*?)</dd>', tool, re.S)
    assert down is not None, tool
    assert "scheduled down by tom since" in down[1] and "PM 500 h" in down[1]
    assert "pkgline tool up WB-1" in down[1]
    assert 'data-e10="scheduled_down"' in tool


def _declared_on(client: httpx.Client, tool: str) -> str | None:
    """The declaration the tool page shows (its state), None when there is none."""
    found = re.search(
        r'<dd id="tool-down" data-down="([^"]+)">', client.get(f"/station/tools/{tool}").text
    )
    return found[1] if found else None


async def _record(db: str, tool: str) -> ToolRecord:
    async with open_state(db, passwords=fast_passwords()) as state:
        return await state.services.equipment.tool(tool, by=OWNER)


def _refusals(station: Station, user: str) -> list[dict[str, Any]]:
    """The security log's ``refused`` events of ``user``, newest first, as the API answers
    them to an admin."""
    with logged_in(station, "ada") as admin:
        answer = admin.get(
            "/security/events",
            params={"user": user, "kind": "refused"},
            headers={"authorization": f"Bearer {admin.cookies['pkgline_station']}"},
        )
        assert answer.status_code == 200, answer.text
        events: list[dict[str, Any]] = answer.json()["events"]
        return events


def test_a_technician_declares_a_tool_down_from_its_page_and_brings_it_up(
    station: Station,
) -> None:
    """DA-1 (in alarm: unscheduled down) goes to planned maintenance from its page, with the
    reason; brought up, it is in the state it reports again. A refused form (no state, no
    reason) is shown again with what was given, nothing changed."""
    with logged_in(station, "tom") as client:
        page = client.get("/station/tools/DA-1").text
        assert 'id="down-form"' in page and 'id="up-form"' not in page
        refused = client.post(
            "/station/tools/DA-1/down", data={"csrf": csrf(page), "e10": "", "reason": "PM"}
        )
        assert refused.status_code == 422, refused.text
        assert "e10: choose planned maintenance or not scheduled" in message(refused.text)
        assert 'value="PM"' in refused.text  # kept in the form
        refused = client.post(
            "/station/tools/DA-1/down",
            data={"csrf": csrf(page), "e10": "scheduled_down", "reason": " "},
        )
        assert refused.status_code == 422, refused.text
        assert "reason: say why the tool goes down" in message(refused.text)
        assert '<option value="scheduled_down" selected>' in refused.text
        assert _declared_on(client, "DA-1") is None
        done = client.post(
            "/station/tools/DA-1/down",
            data={"csrf": csrf(page), "e10": "scheduled_down", "reason": "vacuum pump PM"},
            follow_redirects=True,
        )
        assert str(done.url).endswith("/station/tools/DA-1?done=down")  # after a redirect
        assert "The tool was declared down" in done.text
        back = client.get("/station/tools/DA-1/down")  # the form's address reloaded: the page
        assert back.status_code == 303 and back.headers["location"] == "/station/tools/DA-1"
        shown = re.search(r'<dd id="tool-down" data-down="scheduled_down">(.*?)</dd>', done.text)
        assert shown is not None, done.text
        assert "scheduled down by tom since" in shown[1] and "vacuum pump PM" in shown[1]
        assert 'id="up-form"' in done.text and 'id="down-form"' not in done.text
        record = asyncio.run(_record(station.db, "DA-1"))  # what the event feed says
        assert (record.declared_by, record.declared_auth) == ("tom", "session")
        up = client.post(
            "/station/tools/DA-1/up",
            data={"csrf": csrf(done.text), "reason": "PM done"},
            follow_redirects=True,
        )
        assert str(up.url).endswith("/station/tools/DA-1?done=up")
        assert "The tool was brought up" in up.text
        assert 'id="tool-down"' not in up.text and 'data-e10="unscheduled_down"' in up.text
        again = client.post(  # the form sent again (back, and the form): nothing to do
            "/station/tools/DA-1/up", data={"csrf": csrf(done.text)}, follow_redirects=True
        )
        assert "The tool was so already: nothing was changed" in again.text


def test_an_operator_sees_no_form_and_a_forged_one_is_refused_and_recorded(
    station: Station,
) -> None:
    with logged_in(station, "olga") as client:
        page = client.get("/station/tools/DA-1").text
        assert 'id="down-form"' not in page and 'id="up-form"' not in page
        assert 'id="up-form"' not in client.get("/station/tools/WB-1").text  # declared
        before = {e["seq"] for e in _refusals(station, "olga")}
        sent = [
            ("DA-1", "down", {"e10": "scheduled_down", "reason": "forged"}),
            ("WB-1", "up", {"reason": "forged"}),
        ]
        for tool, action, fields in sent:
            answer = client.post(
                f"/station/tools/{tool}/{action}", data={"csrf": csrf(page), **fields}
            )
            assert answer.status_code == 403, answer.text
            said = html.unescape(message(answer.text))
            assert "olga (operator, quality) may not declare a tool down" in said, said
        assert (_declared_on(client, "DA-1"), _declared_on(client, "WB-1")) == (
            None,
            "scheduled_down",
        )
    recorded = [e for e in _refusals(station, "olga") if e["seq"] not in before]
    assert [(e["actor"], e["action"]) for e in recorded] == [("olga", "tool_down")] * 2, recorded


def test_a_tool_running_a_lot_is_refused_on_the_form(station: Station) -> None:
    with logged_in(station, "tom") as client:
        page = client.get("/station/tools/PREP-1").text
        refused = client.post(
            "/station/tools/PREP-1/down",
            data={"csrf": csrf(page), "e10": "non_scheduled", "reason": "no orders"},
        )
        assert refused.status_code == 409, refused.text
        said = html.unescape(message(refused.text))
        assert said.startswith("tool PREP-1 is running lot S-2: it finishes"), said
        assert 'id="down-form"' in refused.text and 'value="no orders"' in refused.text
        assert _declared_on(client, "PREP-1") is None
