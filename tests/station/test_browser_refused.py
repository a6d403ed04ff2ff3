"""Nothing an operator entered is lost, in a real browser (tests/station/browsing.py): sites
picked on the strip map and a scrap refused for a malformed field come back picked on the
map, and once the field is fixed the scrap lands on exactly those sites; a scrap sent after
the session ended leads to the login, then back to the lot's page, which says nothing was
done and has the form filled in again (the sites picked, never the password) to send again.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec

from tests.station.browsing import log_in, shot, wait
from tests.station.client import csrf
from tests.station.conftest import Station
from tests.station.seed import PASSWORDS

PICKED = {("S-1-01", 1, 1), ("S-1-01", 1, 2), ("S-1-01", 3, 7), ("S-1-02", 2, 2),
          ("S-1-02", 4, 1), ("S-1-02", 4, 8)}  # fmt: skip


def _pick(browser: WebDriver, sites: set[tuple[str, int, int]]) -> None:
    for carrier, row, col in sorted(sites):
        browser.find_element(
            By.CSS_SELECTOR, f'[data-carrier="{carrier}"] rect[data-row="{row}"][data-col="{col}"]'
        ).click()


def _marked(browser: WebDriver, selector: str) -> set[tuple[str, int, int]]:
    """The sites of the maps that ``selector`` (a class or state of a site) finds."""
    found = set()
    for site in browser.find_elements(By.CSS_SELECTOR, selector):
        carrier = site.find_element(By.XPATH, "ancestor::*[@data-carrier]")
        found.add(
            (
                str(carrier.get_attribute("data-carrier")),
                int(str(site.get_attribute("data-row"))),
                int(str(site.get_attribute("data-col"))),
            )
        )
    return found


def _scrapped(browser: WebDriver) -> set[tuple[str, int, int]]:
    return _marked(browser, 'rect[data-state="scrapped"]')


def test_sites_picked_stay_picked_through_a_refusal_and_are_scrapped_once_fixed(
    browser: WebDriver, station: Station, shots: Path
) -> None:
    """A scanner's NUL character in the reason: refused, with the six sites still picked on
    the map, the reason (without the NUL) and code kept, the password to give again; then
    sent again: exactly those six sites are scrapped."""
    log_in(browser, station, "olga")
    browser.get(f"{station.url}/station/lots/S-1")
    before = _scrapped(browser)
    _pick(browser, PICKED)
    assert _marked(browser, "rect.site.picked") == PICKED
    browser.find_element(By.ID, "scrap-code").clear()
    browser.find_element(By.ID, "scrap-code").send_keys("CHIP")
    reason = browser.find_element(By.ID, "scrap-reason")
    browser.execute_script("arguments[0].value = 'chipped edge\\u0000';", reason)  # a scanner
    browser.find_element(By.ID, "scrap-password").send_keys(PASSWORDS["olga"])
    browser.find_element(By.ID, "scrap").click()
    message = wait(browser).until(ec.presence_of_element_located((By.ID, "message")))
    assert "reason: the text holds a NUL character" in message.text
    assert "nothing was changed" in message.text
    assert _marked(browser, "rect.site.picked") == PICKED  # still picked, on the map
    assert _scrapped(browser) == before
    assert browser.find_element(By.ID, "scrap-reason").get_attribute("value") == "chipped edge"
    assert browser.find_element(By.ID, "scrap-code").get_attribute("value") == "CHIP"
    assert browser.find_element(By.ID, "scrap-password").get_attribute("value") == ""
    shot(browser, Path(os.environ.get("PKGLINE_REFUSED_PNG") or shots / "lot-scrap-refused.png"))
    browser.find_element(By.ID, "scrap-password").send_keys(PASSWORDS["olga"])
    browser.find_element(By.ID, "scrap").click()
    notice = wait(browser).until(ec.presence_of_element_located((By.ID, "notice")))
    assert "scrapped" in notice.text
    assert _scrapped(browser) == before | PICKED


def test_a_scrap_sent_after_the_session_ended_is_filled_in_again_after_the_login(
    browser: WebDriver, station: Station, shots: Path
) -> None:
    log_in(browser, station, "olga")
    browser.get(f"{station.url}/station/lots/S-1")
    before = _scrapped(browser)
    picked = {("S-1-01", 2, 5), ("S-1-02", 1, 8), ("S-1-02", 3, 3)}
    _pick(browser, picked)
    browser.find_element(By.ID, "scrap-reason").send_keys("scratched at handling")
    browser.find_element(By.ID, "scrap-password").send_keys(PASSWORDS["olga"])
    # meanwhile the session ends (logged out from another panel)
    cookie = browser.get_cookie("pkgline_station")
    assert cookie is not None
    ended = httpx.post(
        f"{station.url}/station/logout",
        data={"csrf": csrf(browser.page_source)},
        cookies={"pkgline_station": cookie["value"]},
        timeout=10,
    )
    assert ended.status_code == 303
    browser.find_element(By.ID, "scrap").click()
    note = wait(browser).until(ec.presence_of_element_located((By.ID, "ended")))
    assert "nothing was done" in note.text
    assert "scratched" not in browser.current_url and PASSWORDS["olga"] not in browser.current_url
    browser.find_element(By.ID, "username").send_keys("olga")
    browser.find_element(By.ID, "password").send_keys(PASSWORDS["olga"] + Keys.ENTER)
    expired = wait(browser).until(ec.presence_of_element_located((By.ID, "expired")))
    assert "nothing was done" in expired.text and "send it again" in expired.text
    assert browser.current_url == f"{station.url}/station/lots/S-1?expired=1"
    assert _scrapped(browser) == before  # not done by the login
    assert _marked(browser, "rect.site.picked") == picked  # filled in again
    field = browser.find_element(By.ID, "scrap-reason")
    assert field.get_attribute("value") == "scratched at handling"
    assert browser.find_element(By.ID, "scrap-password").get_attribute("value") == ""
    shot(browser, shots / "lot-expired.png")
    browser.find_element(By.ID, "scrap-password").send_keys(PASSWORDS["olga"])
    browser.find_element(By.ID, "scrap").click()
    wait(browser).until(ec.presence_of_element_located((By.ID, "notice")))
    assert _scrapped(browser) == before | picked
    browser.get(f"{station.url}/station/lots/S-1?expired=1")  # the draft was used once
    assert not _marked(browser, "rect.site.picked")
