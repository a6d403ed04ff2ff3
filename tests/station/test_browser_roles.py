"""Each person is offered only what their roles may do (pkgline/station/offers.py, from the one
table of mes/domain/authority.py), in a real browser (tests/station/browsing.py): a viewer no
form on a waiting lot and a sentence saying so, naming the role; an operator track-in and hold
but not quality's scrap nor the release of a hold the line controller placed; quality the
scraps and that release; an admin no lot action (separation of duties). Over HTTP: a viewer's
forged hold is still refused by the server and recorded in the security log."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec

from mes.domain import commands as cmd
from mes.domain.authority import CONTROLLER, Role
from mes.domain.model import HoldSource
from pkgline.api.auth import ApiState
from tests.station.browsing import shot, wait
from tests.station.client import csrf, logged_in, lot_state, message
from tests.station.conftest import Station, running_station
from tests.station.seed import OWNER, PASSWORDS

ADDED = {"vera": ("Vera Viewer", "viewer"), "otto": ("Otto Operator", "operator")}
"""People added for this module: a viewer, and an operator and nothing else (the
seed's olga is quality too)."""

PASSWORD = {user: f"{user}-Pa55word-9" for user in ADDED}

POSTED = "main form[method=post]"
"""The forms of a page's body that change something (the header's logout aside)."""


async def _prepare(state: ApiState) -> None:
    """The people of :data:`ADDED`; S-4 (waiting after its die attach) held by the line
    controller: a hold the rules placed, released by engineering or quality only."""
    for user, (name, role) in ADDED.items():
        await state.identity.add_user(OWNER, user, name, [Role(role)], password=PASSWORD[user])
    hold = cmd.HoldLot("S-4", "controller", "results refused", HoldSource.CONTROLLER)
    await state.services.lots.acting_as(CONTROLLER).hold(hold)


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    with running_station(tmp_path_factory.mktemp("station"), prepare=_prepare) as running:
        yield running


def _log_in(browser: WebDriver, station: Station, user: str) -> None:
    browser.delete_all_cookies()
    browser.get(f"{station.url}/station/login")
    wait(browser).until(ec.presence_of_element_located((By.ID, "username")))
    browser.find_element(By.ID, "username").send_keys(user)
    password = PASSWORD.get(user) or PASSWORDS[user]
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(browser).until(ec.presence_of_element_located((By.ID, "line")))


def _forms(browser: WebDriver, station: Station, lot: str) -> set[str]:
    """The ids of the forms the lot's page offers."""
    browser.get(f"{station.url}/station/lots/{lot}")
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "lot-id"), lot))
    return {f.get_attribute("id") or "" for f in browser.find_elements(By.CSS_SELECTOR, POSTED)}


def _no_actions(browser: WebDriver) -> str:
    return str(browser.find_element(By.ID, "no-actions").text)


def test_a_viewer_sees_no_action_on_a_waiting_lot_and_is_told_so(
    browser: WebDriver, station: Station, shots: Path
) -> None:
    _log_in(browser, station, "vera")
    assert not browser.find_elements(By.ID, "nav-start")
    assert not browser.find_elements(By.ID, "nav-security")
    assert _forms(browser, station, "S-1") == set()
    assert browser.find_element(By.ID, "lot-state").text == "WAITING"
    assert _no_actions(browser) == "Your role (viewer) reads only; no action on this lot is yours."
    shot(browser, shots / "lot-viewer.png")
    browser.get(f"{station.url}/station/tools/WB-1")  # no material lot loaded or unloaded
    assert not browser.find_elements(By.CSS_SELECTOR, POSTED)
    assert "Your role (viewer) may not" in browser.find_element(By.ID, "no-material-actions").text
    browser.get(f"{station.url}/station/holds")  # no release
    assert not browser.find_elements(By.CSS_SELECTOR, "button.open-release")
    said = browser.find_element(By.ID, "no-releases").text
    assert said == "Your role (viewer) may release none of these holds."


def test_an_operator_sees_track_in_and_hold_but_not_what_needs_quality(
    browser: WebDriver, station: Station
) -> None:
    _log_in(browser, station, "otto")
    assert browser.find_elements(By.ID, "nav-start")
    waiting = _forms(browser, station, "S-1")
    assert "hold-form" in waiting and any(f.startswith("track-in-") for f in waiting), waiting
    assert {"scrap-lot-form", "scrap-form"}.isdisjoint(waiting), waiting
    assert "Sign and scrap" not in browser.find_element(By.TAG_NAME, "main").text
    assert not browser.find_elements(By.ID, "no-actions")
    # held by the line controller: its release is quality's or engineering's
    ruled = _forms(browser, station, "S-4")
    assert "release-form" not in ruled and "split-form" in ruled, ruled
    assert "release-form" in _forms(browser, station, "S-3")  # held by an operator
    browser.get(f"{station.url}/station/holds")
    wait(browser).until(ec.presence_of_element_located((By.ID, "holds")))
    assert browser.find_elements(By.ID, "release-S-3")
    assert not browser.find_elements(By.ID, "release-S-4")
    row = browser.find_element(By.CSS_SELECTOR, 'tr[data-lot="S-4"]').text
    assert "release: engineer or quality" in row, row


def test_quality_sees_the_scraps_and_the_release_of_a_ruled_hold(
    browser: WebDriver, station: Station
) -> None:
    _log_in(browser, station, "quinn")
    assert not browser.find_elements(By.ID, "nav-start")  # quality starts no lot
    waiting = _forms(browser, station, "S-1")
    assert {"scrap-lot-form", "scrap-form", "hold-form"} <= waiting, waiting
    assert not any(f.startswith("track-in-") for f in waiting), waiting  # not quality's
    assert {"split-form", "merge-form"}.isdisjoint(waiting), waiting
    assert "release-form" in _forms(browser, station, "S-4")


def test_an_admin_sees_no_lot_action(browser: WebDriver, station: Station) -> None:
    """Separation of duties: an admin keeps users, not lots."""
    _log_in(browser, station, "ada")
    assert browser.find_elements(By.ID, "nav-security")
    assert not browser.find_elements(By.ID, "nav-start")
    for lot in ("S-1", "S-3", "S-4"):
        assert _forms(browser, station, lot) == set(), lot
        assert _no_actions(browser) == (
            "Your role (admin) takes no action on lots; no action on this lot is yours."
        )


def test_a_viewers_forged_post_is_still_refused_and_recorded(station: Station) -> None:
    """Hiding the form is for the person: a hold sent without it (the page's own CSRF token,
    from its logout form) is refused by the server, changes nothing, and is recorded."""
    with httpx.Client(base_url=station.url, timeout=10) as client:
        login = client.get("/station/login").text
        token = re.search(r'name="csrf" value="([^"]+)"', login)
        assert token is not None
        client.post(
            "/station/login",
            data={"csrf": token[1], "username": "vera", "password": PASSWORD["vera"]},
        )
        page = client.get("/station/lots/S-1").text
        assert 'id="hold-form"' not in page and "/lots/S-1/hold" not in page
        forged = client.post(
            "/station/lots/S-1/hold", data={"csrf": csrf(page), "reason": "forged"}
        )
        assert forged.status_code == 403, forged.text
        said = html.unescape(message(forged.text))
        assert said.startswith("vera (viewer) may not hold lot S-1: that needs the role"), said
        assert lot_state(client, "S-1") == "WAITING"
    with logged_in(station, "ada") as admin:
        events = admin.get(
            "/security/events",
            params={"user": "vera", "kind": "refused"},
            headers={"authorization": f"Bearer {admin.cookies['pkgline_station']}"},
        ).json()["events"]
    assert [(e["lot"], e["action"]) for e in events] == [("S-1", "hold")], events
