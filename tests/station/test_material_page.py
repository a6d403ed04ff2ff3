"""The material lot page, a quality engineer's recall in the browser: the material lot, its
history, and every lot it went into (through splits after the use too), those still on the
line apart from those that left it; linked from the lot page and the tool page. Over HTTP
against a real server, with a station of this module's own (S-4 split after it got ADH-7)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from mes.domain import commands as cmd
from pkgline.api.auth import ApiState
from tests.station.client import logged_in
from tests.station.conftest import Station, running_station
from tests.station.seed import OWNER


async def _split_s4(state: ApiState) -> None:
    """S-4, which got the adhesive ADH-7 at its die attach on DA-1, gives a carrier to S-4B."""
    lots = state.services.lots.acting_as(OWNER)
    lot = await lots.get("S-4")
    await lots.split(cmd.SplitLot("S-4", "S-4B", (lot.carriers[-1],), "olga", "rush"))


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    with running_station(tmp_path_factory.mktemp("station"), prepare=_split_s4) as running:
        yield running


def _rows(page: str, table: str) -> dict[str, str]:
    found = re.search(rf'<table id="{table}">(.*?)</table>', page, re.S)
    assert found is not None, page
    return dict(re.findall(r'<tr data-lot="([^"]+)">(.*?)</tr>', found[1], re.S))


def test_a_material_lots_page_lists_every_lot_it_went_into_through_the_split(
    station: Station,
) -> None:
    with logged_in(station, "quinn") as client:
        answer = client.get("/station/materials/ADH-7")
    assert answer.status_code == 200, answer.text
    page = answer.text
    assert 'id="material-id">ADH-7<' in page and 'data-status="usable"' in page
    assert '<a href="/station/tools/DA-1">DA-1</a>' in page  # loaded there
    on_line = _rows(page, "on-line")
    assert sorted(on_line) == ["S-4", "S-4B"]
    # when each lot got it, not since when it is in its state (a lot held later)
    head = re.search(r'<table id="on-line"><thead>(.*?)</thead>', page, re.S)
    assert head is not None
    assert re.findall(r"<th>([^<]*)</th>", head[1]) == [
        "lot",
        "state",
        "step",
        "got it (UTC)",
        "through",
    ]
    assert "used in it" in on_line["S-4"]
    through = re.sub(r"<[^>]+>", "", on_line["S-4B"])
    assert "S-4 → S-4B" in through  # through the split after the use
    assert _rows(page, "off-line") == {}  # none has left the line
    history = re.search(r'<table id="material-history">(.*?)</table>', page, re.S)
    assert history is not None
    events = re.findall(r"<tr><td>([a-z]+)</td>", history[1])
    assert events == ["loaded", "thawed", "added"]  # newest first


def test_a_material_lot_never_used_and_an_unknown_one(station: Station) -> None:
    with logged_in(station, "quinn") as client:
        shelf = client.get("/station/materials/WIRE-8")
        unknown = client.get("/station/materials/NO-SUCH")
    assert shelf.status_code == 200
    assert "no lot that got it is still on the line" in shelf.text
    assert 'id="material-id">WIRE-8<' in shelf.text and "on tool</dt><dd>none" in shelf.text
    # quality may quarantine it, but there is no lot to hold: no form nor box offers to
    assert 'id="quarantine-form"' in shelf.text and 'id="no-lots-to-hold"' in shelf.text
    assert 'id="hold-lots-form"' not in shelf.text
    assert 'id="quarantine-hold-lots"' not in shelf.text
    assert unknown.status_code == 404
    assert "NO-SUCH" in unknown.text


def test_the_lot_page_and_the_tool_page_link_to_the_material_lots(station: Station) -> None:
    with logged_in(station, "olga") as client:
        lot = client.get("/station/lots/S-4").text
        tool = client.get("/station/tools/DA-1").text
    assert '<a href="/station/materials/ADH-7">ADH-7</a>' in lot
    assert '<a href="/station/materials/DAF-7">DAF-7</a>' in tool
