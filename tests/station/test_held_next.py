"""Where a held lot goes once released, on the station over HTTP against a real server: the
lot page's next steps and route, and the holds page, say it for whoever decides to release
or rework the lot (they said nothing: a held lot's next steps are empty). Each test reads
lots of its own, prepared before the server starts, and changes none but its own."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from mes.domain import commands as cmd
from mes.domain.authority import CONTROLLER, AuthMethod, Principal, Role
from mes.domain.equipment import ToolRegistration
from mes.domain.signatures import SignatureGiven
from pkgline.api.auth import ApiState
from tests.station.client import csrf, logged_in, lot_version
from tests.station.conftest import Station, running_station
from tests.station.seed import OWNER, PASSWORDS

FO_ORGANIC_TO_VIA = ["SUBSTRATE_PREP", "DIE_ATTACH", "DIELECTRIC_COAT", "VIA_PATTERN"]


async def _held_lots(state: ApiState) -> None:
    """N-1 held after VIA_PATTERN (its plating steps next); N-2 held while DA-9 ran its
    DIE_ATTACH, one carrier done there; N-3 reworked back to DIELECTRIC_COAT, then held
    (FILL, which its position also offers, is not for it); N-4 held after SUBSTRATE_PREP,
    to be released from its page; N-5 waiting."""
    lots = state.services.lots.acting_as(OWNER)
    for lot_id in ("N-1", "N-2", "N-3", "N-4", "N-5"):
        start = cmd.StartLot(lot_id, "fo-organic", "olga", 2, 4, 8, {"layers": 3})
        await lots.start(start)
    for lot_id, steps in (
        ("N-1", FO_ORGANIC_TO_VIA),
        ("N-2", FO_ORGANIC_TO_VIA[:1]),
        ("N-3", FO_ORGANIC_TO_VIA),
        ("N-4", FO_ORGANIC_TO_VIA[:1]),
    ):
        for step in steps:
            await lots.track_in(cmd.TrackIn(lot_id, step, "olga", None, {}))
            await lots.track_out(cmd.TrackOut(lot_id, "olga", {}, ()))
    # a die bonder of its own (the seed's DA-1 has a film thawing), its controller's
    bonder = ToolRegistration("DA-9", "die_bonder", "127.0.0.1:1509", ("DIE_ATTACH",))
    await state.services.equipment.acting_as(CONTROLLER).register("line-9", [bonder])
    await lots.track_in(cmd.TrackIn("N-2", "DIE_ATTACH", "olga", "DA-9", {}, dispatched=True))
    first = (await lots.get("N-2")).carriers[0]
    await lots.start_job(cmd.StartJob("N-2", "N-2-DA-9", "DA-9", first, "olga"))
    await lots.record_job(cmd.RecordJob("N-2-DA-9", "olga", {}, ()))
    for lot_id in ("N-1", "N-2", "N-3", "N-4"):
        await lots.hold(cmd.HoldLot(lot_id, "olga", "looked at under the microscope"))
    erin = Principal("erin", frozenset({Role.ENGINEER}), AuthMethod.PASSWORD, "Erin Engineer")
    held = await lots.get("N-3")
    signed = SignatureGiven("erin", "approved rework", PASSWORDS["erin"], held.version)
    rework = cmd.ReworkLot("N-3", "DIELECTRIC_COAT", "erin", "strip and re-coat")
    await lots.rework(rework, by=erin, signatures=(signed,))
    await lots.hold(cmd.HoldLot("N-3", "olga", "coater down"))


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    with running_station(tmp_path_factory.mktemp("station"), prepare=_held_lots) as running:
        yield running


def _next(page: str) -> str:
    """The lot page's next steps, as a person reads them."""
    found = re.search(r'<dd id="lot-next">(.*?)</dd>', page, re.S)
    assert found is not None, page
    return " ".join(re.sub(r"<[^>]+>", "", found[1]).split())


def _route(page: str) -> dict[str, str]:
    """The route's steps, each with its status."""
    return dict(re.findall(r'data-step="([A-Z_]+)" data-status="([a-z-]+)"', page))


def test_a_held_lots_page_names_its_next_steps_once_released(station: Station) -> None:
    with logged_in(station, "erin") as client:
        page = client.get("/station/lots/N-1").text
    plating = "ELECTROLESS_PLATE, ELECTROPLATE, SPUTTER, VIA_FILL"
    assert _next(page) == f"{plating} (once released)"
    route = _route(page)
    assert {s for s, status in route.items() if status == "on-release"} == set(plating.split(", "))
    assert "next" not in route.values(), "held: nothing is allowed next now"
    assert '<span class="route-on-release">next once released</span>' in page


def test_a_lot_held_mid_step_goes_back_to_that_step_for_the_carriers_left(
    station: Station,
) -> None:
    with logged_in(station, "erin") as client:
        page = client.get("/station/lots/N-2").text
    done = re.search(r'<dt>done at step</dt><dd class="hold-record">([^<]*)</dd>', page)
    assert done is not None and done[1].startswith("DIE_ATTACH: carriers N-2-"), page
    assert _next(page) == "DIE_ATTACH (once released)"
    assert _route(page)["DIE_ATTACH"] == "on-release"


def test_a_lot_held_after_a_rework_goes_to_the_reworked_step_only(station: Station) -> None:
    with logged_in(station, "erin") as client:
        page = client.get("/station/lots/N-3").text
    assert _next(page) == "DIELECTRIC_COAT (once released)"
    route = _route(page)
    assert route["DIELECTRIC_COAT"] == "on-release" and route["FILL"] == "later"


def test_a_waiting_lots_page_is_as_it_was(station: Station) -> None:
    with logged_in(station, "olga") as client:
        page = client.get("/station/lots/N-5").text
    assert _next(page) == "SUBSTRATE_PREP"
    assert _route(page)["SUBSTRATE_PREP"] == "next"
    assert "on-release" not in page and "once released" not in page


def test_the_holds_page_says_where_each_held_lot_goes_once_released(station: Station) -> None:
    with logged_in(station, "erin") as client:
        page = client.get("/station/holds").text
    assert "<th>next once released</th>" in page
    rows = dict(
        re.findall(r'<tr data-lot="([^"]+)">.*?<td class="once-released">([^<]*)</td>', page, re.S)
    )
    assert rows["N-2"] == "DIE_ATTACH"
    assert rows["N-3"] == "DIELECTRIC_COAT"
    assert rows["N-1"] == "ELECTROLESS_PLATE, ELECTROPLATE, SPUTTER, VIA_FILL"
    assert "N-5" not in rows


def test_once_released_the_lot_may_take_the_steps_its_page_named(station: Station) -> None:
    with logged_in(station, "olga") as client:
        page = client.get("/station/lots/N-4").text
        assert _next(page) == "DIE_ATTACH (once released)"
        released = client.post(
            "/station/lots/N-4/release",
            data={
                "csrf": csrf(page),
                "lot_version": lot_version(page),
                "reason": "looked fine",
                "password": PASSWORDS["olga"],
                "meaning": "approved release",
            },
        )
        assert released.status_code == 303, released.text
        page = client.get("/station/lots/N-4").text
    assert _next(page) == "DIE_ATTACH"
    assert _route(page)["DIE_ATTACH"] == "next"
