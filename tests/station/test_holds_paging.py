"""The holds page a page at a time (issue 20), over HTTP against a real server with more held
lots than a page (``?limit=5``): in the lot list's order (most urgent first: priority, then
the oldest, then the id), no lot lost or repeated across pages, the total on every page, a
"next page" link carrying the cursor; a malformed cursor or page size, or a cursor naming no
lot, refused with a page saying what was expected, nothing read or changed; a release from a
later page comes back to it, and a refused one is shown on it with the dialog opened again
(also for a lot no longer on that page); the rows' extra reads are for the page's lots only."""

from __future__ import annotations

import asyncio
import html
import re
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest

from mes.domain import commands as cmd
from mes.domain.model import Lot
from mes.materials import MaterialService
from mes.service import LotService
from pkgline.api.auth import ApiState
from pkgline.bootstrap import open_services
from pkgline.station.holds_view import holds_view
from tests.station.client import csrf, logged_in, lot_state, message
from tests.station.conftest import Station, running_station
from tests.station.seed import OWNER, PASSWORDS

PRIORITIES = (5, 1, 9, 3, 1, 7, 3, 2, 9, 4, 1)
"""H-01 ... H-11's priorities (S-3, held by the seed and started before them, has 3)."""
HELD = len(PRIORITIES) + 1
EXPECTED = [
    lot
    for _, _, lot in sorted(
        [(3, 0, "S-3")] + [(p, i, f"H-{i:02d}") for i, p in enumerate(PRIORITIES, 1)]
    )
]
"""Every held lot in the lot list's order: priority, then the oldest (started first)."""
PAGE = 5


async def _held(state: ApiState) -> None:
    lots = state.services.lots.acting_as(OWNER)
    for i, priority in enumerate(PRIORITIES, 1):
        lot_id = f"H-{i:02d}"
        await lots.start(
            cmd.StartLot(
                lot_id=lot_id,
                flow="fo-organic",
                user="olga",
                carriers=1,
                site_rows=2,
                site_cols=2,
                params={"layers": 3},
                priority=priority,
            )
        )
        await lots.hold(cmd.HoldLot(lot_id, "olga", f"held for paging {i}"))


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    with running_station(tmp_path_factory.mktemp("station"), prepare=_held) as running:
        yield running


def _rows(page: str) -> list[str]:
    table = re.search(r'<table id="holds">(.*?)</table>', page, re.S)
    assert table is not None, page
    return re.findall(r'<tr data-lot="([^"]+)">', table[1])


def _next(page: str) -> str | None:
    found = re.search(r'<a href="([^"]+)" id="next-page"', page)
    return html.unescape(found[1]) if found else None


def _total(page: str) -> str:
    found = re.search(r'<small id="total">([^<]*)</small>', page)
    assert found is not None, page
    return html.unescape(found[1])


def _walk(client: httpx.Client, first: str) -> list[tuple[str, list[str]]]:
    """Each page from ``first`` on, following its "next page" link: its text and its lots."""
    pages = []
    url: str | None = first
    while url is not None:
        answer = client.get(url)
        assert answer.status_code == 200, answer.text
        pages.append((answer.text, _rows(answer.text)))
        url = _next(answer.text)
        assert len(pages) <= HELD, "the next-page links go round"
    return pages


def test_the_held_lots_come_a_page_at_a_time_in_the_lot_lists_order(station: Station) -> None:
    with logged_in(station, "olga") as client:
        pages = _walk(client, f"/station/holds?limit={PAGE}")
        default = client.get("/station/holds").text
    assert [len(lots) for _, lots in pages] == [5, 5, 2]
    seen = [lot for _, lots in pages for lot in lots]
    assert seen == EXPECTED  # none lost, none repeated, most urgent first
    for text, _ in pages:
        assert _total(text).startswith(f"{HELD} held lots"), _total(text)
        assert "Most urgent first" in text and "by priority, then the oldest lot" in text
    first, second, last = (text for text, _ in pages)
    assert _next(first) == f"/station/holds?limit={PAGE}&after={EXPECTED[4]}"
    assert "more follow" in first and f"these after lot {EXPECTED[4]}" in _total(second)
    assert _next(last) is None and "more follow" not in last
    assert 'id="first-page"' in second and 'id="first-page"' not in first
    # the default page (the lot list's, 50) holds every one of them, no next page
    assert _rows(default) == EXPECTED and _next(default) is None


@pytest.mark.parametrize(
    ("query", "status", "said"),
    [
        ({"after": "H-" + "9" * 60}, 422, "after: expected the id of the last lot"),
        ({"after": "../x"}, 422, "after: expected the id of the last lot"),
        ({"after": "NOPE-9"}, 404, "there is no lot NOPE-9"),
        ({"after": "H-01", "limit": "0"}, 422, "limit: expected held lots per page"),
        ({"limit": "many"}, 422, "limit: expected held lots per page"),
        ({"limit": "1" * 50}, 422, "limit: expected held lots per page"),
    ],
)
def test_a_malformed_cursor_or_size_is_refused_saying_what_was_expected(
    station: Station, query: dict[str, str], status: int, said: str
) -> None:
    with logged_in(station, "olga") as client:
        answer = client.get("/station/holds", params=query)
        again = _walk(client, f"/station/holds?limit={PAGE}")
    assert answer.status_code == status, answer.text
    text = html.unescape(message(answer.text))
    assert said in text and text.endswith("nothing was read"), text
    assert 'id="holds"' not in answer.text and 'id="release-dialog"' not in answer.text
    assert 'id="first-page"' in answer.text
    assert [lot for _, lots in again for lot in lots] == EXPECTED  # nothing changed


def _release(client: httpx.Client, page: str, lot: str, **more: str) -> httpx.Response:
    """The release dialog's form of ``page``, for ``lot``, as holds.js fills it in."""
    button = re.search(rf'id="release-{lot}"[^>]*data-version="(\d+)"', page)
    assert button is not None, page
    hidden = dict(re.findall(r'<input type="hidden" name="(after|limit)" value="([^"]*)">', page))
    form = {
        "csrf": csrf(page),
        "back": "holds",
        **hidden,
        "lot_version": button[1],
        "reason": "re-inspected, fine",
        "meaning": "approved release",
        "password": PASSWORDS["olga"],
        **more,
    }
    return client.post(f"/station/lots/{lot}/release", data=form)


def test_a_release_from_a_later_page_comes_back_to_it(station: Station) -> None:
    second = f"/station/holds?limit={PAGE}&after={EXPECTED[4]}"
    lot = EXPECTED[6]
    with logged_in(station, "olga") as client:
        page = client.get(second).text
        assert _rows(page) == EXPECTED[5:10]
        # refused (a stale page): shown on the same page, its dialog opened again
        refused = _release(client, page, lot, lot_version="1")
        assert refused.status_code == 409, refused.text
        assert _rows(refused.text) == EXPECTED[5:10]
        assert f'data-reopen="{lot}"' in refused.text
        assert f'name="after" value="{EXPECTED[4]}"' in refused.text
        assert lot_state(client, lot) == "HOLD"
        try:
            done = _release(client, page, lot)
            assert done.status_code == 303, done.text
            assert done.headers["location"] == (
                f"/station/holds?after={EXPECTED[4]}&limit={PAGE}&done=release&lot={lot}"
            )
            back = client.get(done.headers["location"]).text
            assert lot_state(client, lot) != "HOLD"
        finally:  # held again, for the module's other tests: its place in the order is kept
            asyncio.run(_hold_again(station, lot))
    assert f"Lot {lot} was released." in back
    # the same page: the lots after the same cursor, the one released gone, one more in
    assert _rows(back) == [*EXPECTED[5:6], *EXPECTED[7:11]]
    assert _total(back).startswith(f"{HELD - 1} held lots")


async def _hold_again(station: Station, lot: str) -> None:
    async with open_services(station.db) as services:
        if (await services.lots.get(lot, by=OWNER)).hold is None:
            await services.lots.acting_as(OWNER).hold(cmd.HoldLot(lot, "olga", "held again"))


def test_the_lot_whose_dialog_opens_again_is_shown_on_any_page(station: Station) -> None:
    """The login came back for a release sent from a page the lot is no longer on (or an
    address naming it on the first page): the lot is shown above the page's for its
    dialog; a lot no longer held is not."""
    last = EXPECTED[-1]
    with logged_in(station, "olga") as client:
        page = client.get(f"/station/holds?limit={PAGE}&lot={last}&expired=1").text
        gone = client.get(f"/station/holds?limit={PAGE}&lot=S-1&expired=1").text
        on_it = client.get(f"/station/holds?limit={PAGE}&lot={EXPECTED[0]}&expired=1").text
    reopened = re.search(r'<tr data-lot="([^"]+)" class="off-page" id="reopened">', page)
    assert reopened is not None and reopened[1] == last, page
    assert f'id="release-{last}"' in page and f'data-reopen="{last}"' in page
    assert _rows(page) == EXPECTED[:PAGE]  # the page's own lots, as before
    assert 'id="reopened"' not in gone and _rows(gone) == EXPECTED[:PAGE]
    assert 'id="reopened"' not in on_it and on_it.count(f'id="release-{EXPECTED[0]}"') == 1


def test_the_rows_extra_reads_are_for_the_pages_lots_only(
    station: Station, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[list[str]] = []

    def spying(name: str, cls: Any) -> None:
        real = getattr(cls, name)

        async def spy(self: Any, lots: Sequence[Any], *args: Any, **kw: Any) -> Any:
            asked.append([x.id if isinstance(x, Lot) else x for x in lots])
            return await real(self, lots, *args, **kw)

        monkeypatch.setattr(cls, name, spy)

    spying("quarantined_in", MaterialService)
    spying("hold_entries", LotService)

    async def read() -> list[str]:
        async with open_services(station.db) as services:
            shown = await holds_view(services, OWNER, after=EXPECTED[1], limit=3)
        return [h.lot.id for h in shown.held]

    assert asyncio.run(read()) == EXPECTED[2:5]
    assert asked == [EXPECTED[2:5], EXPECTED[2:5]]


def test_a_release_sent_without_a_session_leads_back_to_its_page(station: Station) -> None:
    """The session ended while the dialog was open on a later page: the login goes back to
    that page (its cursor and size, none of the form's other fields), the dialog opened
    again for the lot."""
    sent = {"back": "holds", "after": EXPECTED[4], "limit": str(PAGE), "reason": "secret-why"}
    with httpx.Client(base_url=station.url, timeout=10) as client:
        answer = client.post(f"/station/lots/{EXPECTED[6]}/release", data=sent)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/station/login?next=" + urllib.parse.quote(
        f"/station/holds?after={EXPECTED[4]}&limit={PAGE}&lot={EXPECTED[6]}&expired=1", safe="/"
    )


def test_a_refused_release_whose_form_names_no_lot_is_shown_on_the_first_page(
    station: Station,
) -> None:
    """A forged form (its cursor naming no lot, or malformed): the release's own refusal is
    shown, on the first page, not a refusal of the cursor."""
    lot = EXPECTED[6]
    with logged_in(station, "olga") as client:
        page = client.get(f"/station/holds?limit={PAGE}&after={EXPECTED[4]}").text
        for after in ("NOPE-1", "../x"):
            refused = _release(client, page, lot, lot_version="1", after=after)
            assert refused.status_code == 409, refused.text
            assert "nothing was read" not in message(refused.text)
            assert _rows(refused.text) == EXPECTED and f'data-reopen="{lot}"' in refused.text
        assert lot_state(client, lot) == "HOLD"
