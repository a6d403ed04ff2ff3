"""The security log at the station (``/station/security``): an admin pages through the whole
log newest first in a real browser (tests/station/browsing.py), the filters of ``GET
/security/events`` in its form; an engineer reads its engineering changes only (made here
through the API, thin over the same services), in the words of ``pkgline user events``; an
operator is refused, and the refusal is in the log; malformed filters are answered with a
422 saying what was expected, and nothing is read or written."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec

from tests.station.browsing import log_in, shot, wait
from tests.station.client import csrf, logged_in, lot_version, message
from tests.station.conftest import Station

OTTO = "otto-Pa55word-6"


def _bearer(client: httpx.Client) -> dict[str, str]:
    return {"authorization": f"Bearer {client.cookies['pkgline_station']}"}


def _log(station: Station, **params: Any) -> dict[str, Any]:
    """The security log as the API answers it to an admin."""
    with logged_in(station, "ada") as admin:
        answer = admin.get("/security/events", params=params, headers=_bearer(admin))
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found


def _rows(page: str) -> list[tuple[int, str]]:
    """The page's events: (seq, kind) each."""
    return [
        (int(seq), kind)
        for seq, kind in re.findall(r'<tr data-seq="(\d+)" data-kind="([a-z_]+)"', page)
    ]


@contextmanager
def _otto(station: Station) -> Iterator[httpx.Client]:
    """An operator and nothing else (the seed's olga is quality too), added by the admin."""
    with logged_in(station, "ada") as admin:
        added = admin.post(
            "/users",
            json={"username": "otto", "name": "Otto Operator", "roles": ["operator"],
                  "password": OTTO},
            headers=_bearer(admin),
        )  # fmt: skip
        assert added.status_code in (201, 409), added.text
    with httpx.Client(base_url=station.url, timeout=10) as client:
        form = re.search(r'name="csrf" value="([^"]+)"', client.get("/station/login").text)
        assert form is not None
        answer = client.post(
            "/station/login", data={"csrf": form[1], "username": "otto", "password": OTTO}
        )
        assert answer.status_code == 303, answer.text
        yield client


def test_an_admin_pages_through_the_whole_log_newest_first_in_a_browser(
    browser: WebDriver, station: Station, shots: Path
) -> None:
    """Every kind, newest first, five a page by the "more" link until the last page: each
    event once, the same as the API's; a refusal on a lot links to the lot's page; the kind
    filter of the form narrows the page to that kind."""
    with logged_in(station, "tom") as tom:  # a refusal on lot S-3 (a technician may not scrap)
        lot = tom.get("/station/lots/S-3").text
        data = {"csrf": csrf(lot), "lot_version": lot_version(lot), "reason": "x"}
        assert tom.post("/station/lots/S-3/scrap", data=data).status_code == 403
    log_in(browser, station, "ada")
    browser.find_element(By.ID, "nav-security").click()
    wait(browser).until(ec.presence_of_element_located((By.ID, "security-events")))
    whole = _log(station, limit=1000)
    assert whole["total"] > 10
    browser.get(f"{station.url}/station/security?limit=5")
    seen: list[tuple[int, str]] = []
    while True:
        seen += _rows(browser.page_source)
        links = browser.find_elements(By.ID, "more")
        if not links:
            break
        links[0].click()
        wait(browser).until(ec.staleness_of(links[0]))
    shot(browser, shots / "security-log.png")
    assert [seq for seq, _ in seen] == [e["seq"] for e in whole["events"]]
    assert len(seen) == whole["total"] and len({seq for seq, _ in seen}) == len(seen)
    assert {kind for _, kind in seen} >= {"login", "refused", "user_added", "engineering_change"}
    browser.get(f"{station.url}/station/security?kind=refused&user=tom")
    refused = browser.find_element(By.CSS_SELECTOR, 'tr[data-kind="refused"] a[href$="/S-3"]')
    refused.click()
    wait(browser).until(ec.url_to_be(f"{station.url}/station/lots/S-3"))
    browser.get(f"{station.url}/station/security")
    browser.find_element(By.ID, "f-user").send_keys("ada")
    browser.find_element(By.CSS_SELECTOR, '#f-kind option[value="login"]').click()
    browser.find_element(By.ID, "filter").click()
    wait(browser).until(ec.url_contains("kind=login"))
    rows = _rows(browser.page_source)
    assert rows and {kind for _, kind in rows} == {"login"}
    assert {e.text for e in browser.find_elements(By.CSS_SELECTOR, "td.actor")} == {"ada"}
    logins = _log(station, kind="login", user="ada")["events"]  # one more: its own login
    assert [seq for seq, _ in rows] == [e["seq"] for e in logins if e["seq"] <= rows[0][0]]


def test_an_engineer_reads_the_engineering_changes_only(station: Station) -> None:
    """Erin qualifies WB-1 for a step and disqualifies it (through the API: the service's
    engineering changes); her page shows engineering changes alone, the kind fixed and said
    so, each change as ``field old → new``; asking for another kind is refused (403) and
    recorded, as the API refuses it."""
    with logged_in(station, "erin") as erin:
        for action, reason in (("qualify", "new capillary"), ("disqualify", "bond pull low")):
            done = erin.post(
                f"/tools/WB-1/{action}",
                json={"step": "WIRE_BOND", "reason": reason},
                headers=_bearer(erin),
            )
            assert done.status_code == 200, done.text
        page = erin.get("/station/security")
        assert page.status_code == 200, page.text
        assert 'id="nav-security"' in page.text and 'id="changes-only"' in page.text
        rows = _rows(page.text)
        assert rows and {kind for _, kind in rows} == {"engineering_change"}
        expected = _log(station, kind="engineering_change", limit=1000)["events"]
        assert [seq for seq, _ in rows] == [e["seq"] for e in expected]
        text = html.unescape(page.text)
        assert "engineering_change tool_qualify" in text, text
        assert "engineering_change tool_disqualify" in text, text
        assert "qualified yes → no" in text, text
        other = erin.get("/station/security", params={"kind": "login"})
        assert other.status_code == 403, other.text
        said = html.unescape(message(other.text))
        assert said.startswith("erin (engineer) may not"), said
    assert _log(station, kind="refused", user="erin")["total"] == 1


def test_an_operator_is_refused_and_the_refusal_recorded(station: Station) -> None:
    """No link in the navigation, the station's refusal page (403) for the page, also with
    malformed filters (refused before they are read), and each refusal in the log."""
    with _otto(station) as otto:
        assert 'id="nav-security"' not in otto.get("/station/").text
        for params in ({}, {"kind": "nope", "since": "yesterday"}):
            answer = otto.get("/station/security", params=params)
            assert answer.status_code == 403, answer.text
            said = html.unescape(message(answer.text))
            assert said.startswith("otto (operator) may not read the engineering changes"), said
            assert 'id="security-events"' not in answer.text
    refused = _log(station, kind="refused", user="otto")["events"]
    assert [e["action"] for e in refused] == ["changes", "changes"], refused


def test_malformed_filters_are_answered_with_what_was_expected(station: Station) -> None:
    """A bad time, an unknown kind, a cursor that names no event or is no number, a window
    that ends before it starts: 422, the page's form with the values given, no event shown,
    the log as it was."""
    before = _log(station, limit=1)["total"]
    with logged_in(station, "ada") as ada:
        cases = [
            ({"since": "yesterday"}, "since 'yesterday': expected an ISO 8601 date or time"),
            ({"kind": "nope"}, "kind 'nope': expected one of "),
            ({"after": "99999999"}, "after 99999999: expected the seq of an event"),
            ({"after": "x1"}, "after 'x1': expected the seq of an event of the log, a whole"),
            ({"limit": "0"}, "limit '0': expected events per page, a whole number from 1"),
            ({"since": "2026-12-02", "until": "2026-12-01"}, "expected"),
            ({"user": "u" * 65}, "user: expected at most 64 characters"),
        ]
        for params, expected in cases:
            answer = ada.get("/station/security", params=params)
            assert answer.status_code == 422, (params, answer.text)
            said = html.unescape(message(answer.text))
            assert expected in said and said.endswith("nothing was read"), (params, said)
            assert 'id="security-events"' not in answer.text
        kept = ada.get("/station/security", params={"since": "yesterday", "user": "tom"})
        assert 'value="yesterday"' in kept.text and 'value="tom"' in kept.text
    after = _log(station, limit=1)["total"]
    assert after == before + 2  # the two logins of ada's (here and in _log), nothing else
