"""The material lot page's recall over HTTP (the server as it runs, a seeded database of
this module's own: S-4 split after it got the adhesive ADH-7, a hold code RECALL): a quality
engineer quarantines ADH-7 and holds the lots still on the line that got it, from the page;
the page says who quarantined it and why, and offers the release; a bad code, an empty
reason, another role and a form without the session's token are refused on the page and
change nothing."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest

from mes.domain import commands as cmd
from mes.domain.reasons import ReasonKind
from pkgline.api.auth import ApiState
from tests.station.client import csrf, logged_in, message
from tests.station.conftest import Station, running_station
from tests.station.seed import OWNER, PASSWORDS


async def _prepare(state: ApiState) -> None:
    """S-4, which got ADH-7 at its die attach, gives a carrier to S-4B; quality's hold code
    RECALL, released by quality only."""
    lots = state.services.lots.acting_as(OWNER)
    lot = await lots.get("S-4")
    await lots.split(cmd.SplitLot("S-4", "S-4B", (lot.carriers[-1],), "olga", "rush"))
    await state.services.reasons.add(
        "RECALL", ReasonKind.HOLD.value, "Material recall", "quinn", release_roles=["quality"],
        by=OWNER,
    )  # fmt: skip


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    with running_station(tmp_path_factory.mktemp("station"), prepare=_prepare) as running:
        yield running


def _states(page: str) -> dict[str, str]:
    found = re.search(r'<table id="on-line">(.*?)</table>', page, re.S)
    assert found is not None, page
    rows = re.findall(
        r'<tr data-lot="([^"]+)">.*?<td class="lot-state">([^<]*)</td>', found[1], re.S
    )
    return dict(rows)


def test_quality_quarantines_the_adhesive_and_holds_its_lots_from_the_page(
    station: Station,
) -> None:
    with logged_in(station, "quinn") as client:
        page = client.get("/station/materials/ADH-7").text
        assert 'id="quarantine-form"' in page and 'id="hold-lots-form"' in page
        assert '<option value="RECALL">Material recall</option>' in page
        assert _states(page) == {"S-4": "WAITING", "S-4B": "WAITING"}
        done = client.post(
            "/station/materials/ADH-7/quarantine",
            data={"csrf": csrf(page), "code": "RECALL", "reason": "voids", "hold_lots": "on"},
            follow_redirects=True,
        )
        assert done.status_code == 200, done.text
        assert str(done.url).endswith("/station/materials/ADH-7?done=quarantine&held=2")
        assert "The material lot was quarantined" in done.text
        assert "Lots held now: 2" in done.text
        shown = html.unescape(done.text)
        assert 'data-status="quarantined"' in shown
        # the reason begins with its code (RECALL Material recall: ...), said once
        assert re.search(r'id="quarantine-facts">by quinn since [0-9: -]+ \(UTC\): RECALL '
                         r"Material recall: voids\. It cannot be loaded", shown)  # fmt: skip
        assert _states(done.text) == {"S-4": "HOLD", "S-4B": "HOLD"}
        assert 'id="release-form"' in done.text and 'id="quarantine-form"' not in done.text
        lot = html.unescape(client.get("/station/lots/S-4B").text)
        assert "RECALL Material recall: recall of material lot ADH-7: voids" in lot

        again = client.post(
            "/station/materials/ADH-7/hold-lots",
            data={"csrf": csrf(page), "code": "RECALL", "reason": ""},
            follow_redirects=True,
        )
        assert str(again.url).endswith("?done=hold-lots&held=0")  # nothing held twice
        assert 'name="password" type="password"' in done.text  # signed, as a lot's release
        version = re.search(r'name="lot_version" value="(\d+)"', done.text)
        assert version is not None, done.text
        form = {"csrf": csrf(page), "reason": "supplier cleared it", "lot_version": version[1]}
        unsigned = client.post("/station/materials/ADH-7/release", data=form)
        assert unsigned.status_code == 422, unsigned.text
        assert "must be signed by one person" in html.unescape(message(unsigned.text))
        signed = {**form, "meaning": "approved release from quarantine"}
        wrong = client.post(
            "/station/materials/ADH-7/release",
            data={**signed, "password": PASSWORDS["quinn"], "lot_version": "1"},
        )
        assert wrong.status_code == 409, wrong.text  # a stale page: signed another version
        assert "given for material lot ADH-7 at version 1" in html.unescape(message(wrong.text))
        released = client.post(
            "/station/materials/ADH-7/release",
            data={**signed, "password": PASSWORDS["quinn"]},
            follow_redirects=True,
        )
        assert released.status_code == 200 and "released from quarantine" in released.text
        assert 'id="quarantine-facts"' not in released.text
        assert _states(released.text) == {"S-4": "HOLD", "S-4B": "HOLD"}  # holds stay


def test_refusals_are_shown_on_the_material_page_and_change_nothing(station: Station) -> None:
    with logged_in(station, "quinn") as client:
        page = client.get("/station/materials/DAF-7").text
        token = csrf(page)
        refusals = [
            ("quarantine", {"code": "RECAL", "reason": "voids"}, 422,
             "there is no hold reason code RECAL (did you mean RECALL?)"),
            ("quarantine", {"code": "RECALL", "reason": " "}, 422, "needs a reason"),
            ("release", {"reason": "why"}, 409, "material lot DAF-7 is not quarantined"),
            ("hold-lots", {"code": ""}, 422, "there is no hold reason code"),
        ]  # fmt: skip
        for action, fields, status, said in refusals:
            answer = client.post(
                f"/station/materials/DAF-7/{action}", data={"csrf": token, **fields}
            )
            assert answer.status_code == status, (action, fields, answer.text)
            assert said in html.unescape(message(answer.text)), message(answer.text)
        kept = client.post(
            "/station/materials/DAF-7/quarantine",
            data={"csrf": token, "code": "RECAL", "reason": "bad film"},
        )
        assert 'value="bad film"' in kept.text and 'value="RECAL"' in kept.text
        stale = client.post(
            "/station/materials/DAF-7/quarantine",
            data={"csrf": "0" * 64, "code": "RECALL", "reason": "x"},
        )
        assert stale.status_code == 400
        unknown = client.post(
            "/station/materials/NOPE-9/quarantine",
            data={"csrf": token, "code": "RECALL", "reason": "x"},
        )
        assert unknown.status_code == 404 and "NOPE-9" in unknown.text
        assert 'data-status="quarantined"' not in client.get("/station/materials/DAF-7").text
    with logged_in(station, "tom") as tech:  # a technician handles material, recalls not
        page = tech.get("/station/materials/DAF-7").text
        assert 'id="quarantine-form"' not in page
        said = html.unescape(page)
        assert "Your role (technician) may not quarantine or release material lots" in said
        refused = tech.post(
            "/station/materials/DAF-7/quarantine",
            data={"csrf": csrf(page), "code": "RECALL", "reason": "x", "hold_lots": "on"},
        )
        assert refused.status_code == 403, refused.text
        assert "tom (technician) may not quarantine" in html.unescape(message(refused.text))
        assert 'data-status="quarantined"' not in tech.get("/station/materials/DAF-7").text
        # a signed form not as expected (no meaning): the role is refused first, as the API's
        unsigned = tech.post(
            "/station/materials/DAF-7/release",
            data={"csrf": csrf(page), "reason": "x", "password": "y", "lot_version": "1"},
        )
        assert unsigned.status_code == 403, unsigned.text
        assert "tom (technician) may not quarantine" in html.unescape(message(unsigned.text))
