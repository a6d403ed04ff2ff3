"""A tool declared down (``tool down --planned``) on the station: its tile on the line page
and its tool page say so, who declared it and why, and its E10 state shows the declared one
although no line controller follows the line."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from mes.domain.authority import AuthMethod, Principal, Role
from pkgline.api.auth import ApiState
from tests.station.client import logged_in
from tests.station.conftest import Station, running_station


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
