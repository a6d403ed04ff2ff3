"""The line page at plant size: its lists of lots running, held and waiting at each step
show their first 20 and say how many more there are (the held ones with a link to the holds
page, which pages them all), where it listed every lot in progress at every refresh (at
5,000 lots in progress, thousands of rows). Against a real server over HTTP."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from mes.domain import commands as cmd
from mes.domain.model import LotState
from pkgline.api.auth import ApiState
from pkgline.station.line_view import SHOWN, SHOWN_PER_STEP
from tests.station.client import logged_in
from tests.station.conftest import Station, running_station
from tests.station.seed import OWNER

COUNTS: dict[str, int] = {}
"""How many lots are running, held and waiting for SUBSTRATE_PREP once prepared."""


async def _many(state: ApiState) -> None:
    lots = state.services.lots.acting_as(OWNER)
    for n in range(SHOWN + 5):
        for kind in ("MH", "MR", "MW"):
            await lots.start(
                cmd.StartLot(f"{kind}-{n:02d}", "fo-organic", "olga", 1, 4, 8, {"layers": 3})
            )
        await lots.hold(cmd.HoldLot(f"MH-{n:02d}", "olga", "inspection"))
        await lots.track_in(cmd.TrackIn(f"MR-{n:02d}", "SUBSTRATE_PREP", "olga", None, {}))
    found = await lots.find(states=[LotState.RUNNING, LotState.HOLD, LotState.WAITING])
    COUNTS["running"] = sum(1 for x in found if x.state is LotState.RUNNING)
    COUNTS["held"] = sum(1 for x in found if x.state is LotState.HOLD)
    COUNTS["waiting"] = sum(1 for x in found if x.id.startswith("MW-"))


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    with running_station(tmp_path_factory.mktemp("station"), prepare=_many) as running:
        yield running


def _section(page: str, heading: str) -> str:
    start = page.index(f'id="{heading}"')
    return page[start : page.index("</section>", start)]


def test_the_line_page_lists_the_first_lots_of_each_and_says_how_many_more(
    station: Station,
) -> None:
    with logged_in(station, "erin") as client:
        page = client.get("/station/").text
    running = _section(page, "running-h")
    assert len(re.findall(r"<tr><td><a href=", running)) == SHOWN
    more = COUNTS["running"] - SHOWN
    assert f"and {more:,} more lots running (the {SHOWN} running longest above)" in running
    ours = re.findall(r'href="/station/lots/(MR-\d+)"', running)
    assert ours == sorted(ours) and f"MR-{SHOWN + 4:02d}" not in ours, "the longest first"
    assert 'href="/station/lots/S-2"' in running, "the seed's, running before them, first"

    held = _section(page, "held-h")
    assert len(re.findall(r'<tr data-lot="', held)) == SHOWN
    assert f"and {COUNTS['held'] - SHOWN:,} more held lots" in held
    assert 'href="/station/holds"' in held

    queue = _section(page, "queue-h")
    (row,) = re.findall(r"<tr><td>SUBSTRATE_PREP</td>(.*?)</tr>", queue, re.S)
    assert len(re.findall(r'href="/station/lots/', row)) == SHOWN_PER_STEP
    said = re.search(r"and (\d+) more \((\d+) waiting; the most urgent first\)", row)
    assert said is not None, row
    assert int(said[2]) >= COUNTS["waiting"] and int(said[1]) == int(said[2]) - SHOWN_PER_STEP
