"""A held lot that got a quarantined material lot, on the station (a module of its own, its
own seeded database): olga, an operator here, held S-4 with a code of her own (CUSTOMER)
before quality quarantined the adhesive ADH-7 that went into it. The lot page and the holds
page say that S-4 got ADH-7, quarantined (RECALL), and that its release is quality's: neither
offers olga the release, and a release she forges is refused, naming the material lot."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest

from mes.domain import commands as cmd
from mes.domain.authority import AuthMethod, Principal, Role
from mes.domain.reasons import ReasonKind
from pkgline.api.auth import ApiState
from tests.station.client import csrf, logged_in, lot_version, message
from tests.station.conftest import Station, running_station
from tests.station.seed import OWNER, PASSWORDS


async def _prepare(state: ApiState) -> None:
    services = state.services
    await state.identity.change_roles(OWNER, "olga", [], [Role.QUALITY])
    for code, roles in (("CUSTOMER", []), ("RECALL", ["quality"])):
        await services.reasons.add(
            code, ReasonKind.HOLD.value, code.title(), "quinn", release_roles=roles, by=OWNER
        )
    olga = Principal("olga", frozenset({Role.OPERATOR}), AuthMethod.PASSWORD)
    await services.lots.acting_as(olga).hold(
        cmd.HoldLot("S-4", "olga", "customer asked", code="CUSTOMER")
    )
    await services.materials.acting_as(OWNER).quarantine(
        "ADH-7", "RECALL", "voids", "quinn", hold_lots=True
    )


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    with running_station(tmp_path_factory.mktemp("station"), prepare=_prepare) as running:
        yield running


def test_the_lot_and_holds_pages_say_the_lot_got_a_quarantined_material(
    station: Station,
) -> None:
    with logged_in(station, "olga") as client:
        page = client.get("/station/lots/S-4")
        assert page.status_code == 200, page.text
        shown = html.unescape(page.text)
        said = re.search(r'<dd class="quarantined[^"]*">(.*?)</dd>', shown, re.S)
        assert said is not None, shown
        text = re.sub(r"<[^>]+>", "", said[1])
        assert text.startswith("got material lot ADH-7, quarantined (RECALL) by quinn since ")
        assert "RECALL Recall: voids; its release and rework need quality" in text
        assert 'id="release-form"' not in shown
        assert 'id="release-by">release: quality<' in shown

        holds = html.unescape(client.get("/station/holds").text)
        row = re.search(r'<tr data-lot="S-4">(.*?)</tr>', holds, re.S)
        assert row is not None, holds
        assert "got quarantined material lot" in row[1] and ">ADH-7</a> (RECALL)" in row[1]
        assert ": release by quality" in row[1] and "release: quality" in row[1]
        assert 'id="release-S-4"' not in row[1]

        forged = client.post(
            "/station/lots/S-4/release",
            data={
                "csrf": csrf(page.text),
                "reason": "customer agreed",
                "lot_version": lot_version(page.text),
                "meaning": "approved release",
                "password": PASSWORDS["olga"],
            },
        )
        assert forged.status_code == 403, forged.text
        refused = html.unescape(message(forged.text))
        assert "olga (operator) may not release lot S-4: it got material lot ADH-7" in refused
        assert "its release is for quality" in refused
