"""Who placed a hold, on the holds page and the lot page: a hold the line controller placed
(a queue time run out) or a system placed with its API key (an SPC system's hold through the
API) showed the name the command was given, as a person's hold does: ``controller``, or
``spc-bridge``, which reads like someone's login. The history entry of the hold records who
acted and how they were known; the pages now say it plainly: ``line controller``, ``system
spc-bridge with its API key``, a person by name (and who acted under the name, where someone
else did). Against a real server over HTTP, the key's hold placed through its API."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from mes.domain import commands as cmd
from mes.domain.authority import CONTROLLER, AuthMethod, Principal, Role
from mes.domain.identity import UserKind
from mes.domain.model import HoldSource
from pkgline.api.auth import ApiState
from tests.station.client import logged_in
from tests.station.conftest import Station, running_station
from tests.station.seed import OWNER

TOKENS: dict[str, str] = {}
"""The SPC system's API key, issued while the line is prepared."""
OLGA = Principal("olga", frozenset({Role.OPERATOR, Role.QUALITY}), AuthMethod.PASSWORD)


async def _held_lots(state: ApiState) -> None:
    """H-1 held by the line controller (a queue time run out); H-2 waiting, for the SPC
    system to hold through the API; H-3 held by Olga logged in; H-4 held in direct mode by
    the database file's owner under Olga's name."""
    lots = state.services.lots.acting_as(OWNER)
    for lot_id in ("H-1", "H-2", "H-3", "H-4"):
        await lots.start(cmd.StartLot(lot_id, "fo-organic", "olga", 1, 4, 8, {"layers": 3}))
    expired = cmd.HoldLot("H-1", "controller", "queue time run out", HoldSource.QUEUE_TIME)
    await state.services.lots.acting_as(CONTROLLER).hold(expired)
    await state.services.lots.acting_as(OLGA).hold(cmd.HoldLot("H-3", "olga", "chipped die"))
    await lots.hold(cmd.HoldLot("H-4", "olga", "scratched strip"))
    identity = state.identity
    await identity.add_user(
        OWNER, "spc-bridge", "SPC system", [Role.OPERATOR], kind=UserKind.SYSTEM
    )
    _, TOKENS["spc-bridge"] = await identity.issue_api_key(OWNER, "spc-bridge", "spc")


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    with running_station(tmp_path_factory.mktemp("station"), prepare=_held_lots) as running:
        token = TOKENS["spc-bridge"]
        with httpx.Client(base_url=running.url, timeout=10) as spc:
            held = spc.post(
                "/lots/H-2/hold",
                json={"reason": "Cpk 0.9 on wire pull"},
                headers={"authorization": f"Bearer {token}"},
            )
        assert held.status_code == 200, held.text
        yield running


def _text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", "", html).split())


def test_the_holds_page_says_which_holds_a_system_placed(station: Station) -> None:
    with logged_in(station, "erin") as client:
        page = client.get("/station/holds").text
    placed = {
        lot: _text(cell)
        for lot, cell in re.findall(
            r'<tr data-lot="([^"]+)">.*?<td class="placed-by">(.*?)</td>', page, re.S
        )
        if lot.startswith("H-")  # the seed's S-3 aside
    }
    assert placed == {
        "H-1": "line controller (queue_time, ruled)",
        "H-2": "system spc-bridge with its API key (operator)",
        "H-3": "olga (operator)",
        "H-4": "olga, acting: test-owner (file_owner) (operator)",
    }


@pytest.mark.parametrize(
    ("lot", "words"),
    [
        ("H-1", "line controller"),
        ("H-2", "system spc-bridge with its API key"),
        ("H-3", "olga"),
        ("H-4", "olga, acting: test-owner (file_owner)"),
    ],
)
def test_the_lot_page_says_who_placed_its_hold(station: Station, lot: str, words: str) -> None:
    with logged_in(station, "erin") as client:
        page = client.get(f"/station/lots/{lot}").text
    found = re.search(r'<span id="hold-placed-by">([^<]*)</span>', page)
    assert found is not None, page
    assert found[1] == words


def test_the_line_pages_held_lots_say_who_placed_each_hold(station: Station) -> None:
    """The line page's held table said the name the command was given (``controller``,
    ``spc-bridge``); it says who placed each hold in the holds page's words."""
    with logged_in(station, "erin") as client:
        page = client.get("/station/").text
    table = page[page.index('<table id="held">') :]
    placed = {
        lot: _text(cell)
        for lot, cell in re.findall(
            r'<tr data-lot="([^"]+)">.*?<td class="placed-by">(.*?)</td>', table, re.S
        )
        if lot.startswith("H-")
    }
    assert placed == {
        "H-1": "line controller (queue_time)",
        "H-2": "system spc-bridge with its API key (operator)",
        "H-3": "olga (operator)",
        "H-4": "olga, acting: test-owner (file_owner) (operator)",
    }
