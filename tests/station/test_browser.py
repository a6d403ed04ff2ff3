"""The station in a real browser (tests/station/browsing.py): log in, the line live, a lot
and its strip map, hold and a signed release, a role refused, the line following a hold
made elsewhere, a tool declared down for maintenance and brought up."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.select import Select

from tests.station.browsing import log_in, shot, wait
from tests.station.conftest import Station
from tests.station.seed import PASSWORDS, beat


def test_log_in_and_see_the_line_live(browser: WebDriver, station: Station, shots: Path) -> None:
    """The login leads to the line: a tile per tool with its E10 state, the alarm text, the
    held lot; the page's event stream connects (the page says "live")."""
    asyncio.run(beat(station.db))  # the controller running now, however long the start took
    log_in(browser, station, "olga", shots)
    tile = browser.find_element(By.CSS_SELECTOR, '[data-tool="PREP-1"]')
    assert tile.get_attribute("data-e10") == "productive"
    assert "S-2" in tile.text and "12/32" in tile.text
    alarmed = browser.find_element(By.CSS_SELECTOR, '[data-tool="DA-1"]')
    assert "bond head vacuum low" in alarmed.text
    # a film still thawing on DA-1: its tile says track-ins are refused, the reason on hover
    blocked = alarmed.find_element(By.CSS_SELECTOR, ".blocked")
    assert "track-ins refused" in blocked.text
    assert "DAF-7 is thawing since" in (blocked.get_attribute("title") or "")
    assert not browser.find_elements(By.CSS_SELECTOR, '[data-tool="WB-1"] .blocked')
    assert "S-3" in browser.find_element(By.ID, "held").text
    wait(browser).until(
        lambda b: b.find_element(By.ID, "live").get_attribute("data-state") == "live"
    )
    browser.save_screenshot(str(shots / "line.png"))


def test_the_live_stamp_is_utc_in_a_browser_of_another_zone(
    browser: WebDriver, station: Station
) -> None:
    """Every time the station shows is UTC: so is the stamp of the last update, whatever the
    panel's zone and clock (here Chicago's, 12-hour)."""
    browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "America/Chicago"})
    try:
        log_in(browser, station, "olga")
        wait(browser).until(
            lambda b: b.find_element(By.ID, "live").get_attribute("data-state") == "live"
        )
        shown = browser.find_element(By.ID, "live").text
        stamp = re.fullmatch(r"live · (\d\d):(\d\d):(\d\d) UTC", shown)
        assert stamp is not None, shown
        now = datetime.now(UTC)
        said = now.replace(hour=int(stamp[1]), minute=int(stamp[2]), second=int(stamp[3]))
        apart = abs((now - said).total_seconds()) % 86400  # around midnight too
        assert min(apart, 86400 - apart) < 60, (shown, now)
    finally:
        browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": ""})


def test_open_a_lot_by_its_id_and_read_a_rejected_site(
    browser: WebDriver, station: Station, shots: Path
) -> None:
    """A lot id typed (or scanned) into the search field with Enter opens the lot: its route,
    and the strip map with the rejected site coloured and named, in the legend."""
    log_in(browser, station, "olga")
    search = browser.find_element(By.ID, "lot-search")
    search.send_keys("S-1" + Keys.ENTER)
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "lot-id"), "S-1"))
    route = browser.find_element(By.CSS_SELECTOR, '#route [data-step="SUBSTRATE_PREP"]')
    assert route.get_attribute("data-status") == "done"
    following = browser.find_element(By.CSS_SELECTOR, '#route [data-step="DIE_ATTACH"]')
    assert following.get_attribute("data-status") == "next"
    site = browser.find_element(
        By.CSS_SELECTOR, '[data-carrier="S-1-01"] rect[data-row="2"][data-col="3"]'
    )
    assert site.get_attribute("data-state") == "rejected"
    assert site.get_attribute("data-code") == "VOID"
    title = site.find_element(By.TAG_NAME, "title").get_attribute("textContent")
    assert title == "S-1-01 row 2 col 3: rejected VOID at SUBSTRATE_PREP"
    assert "VOID" in browser.find_element(By.ID, "map-legend").text
    shot(browser, shots / "lot.png")


def test_hold_and_release_a_lot_and_the_line_page_follows(
    browser: WebDriver, station: Station, shots: Path
) -> None:
    """The operator holds S-1 with a reason, then releases it: each is one form, the page
    says what happened, and the history records who did it (by session)."""
    log_in(browser, station, "olga")
    browser.get(f"{station.url}/station/lots/S-1")
    browser.find_element(By.ID, "hold-reason").send_keys("check the strip")
    browser.find_element(By.ID, "hold").click()
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "lot-state"), "HOLD"))
    assert "check the strip" in browser.find_element(By.ID, "lot-hold").text
    shot(browser, shots / "lot-held.png")
    browser.get(f"{station.url}/station/")
    assert "S-1" in browser.find_element(By.ID, "held").text
    browser.get(f"{station.url}/station/lots/S-1")
    browser.find_element(By.ID, "release-reason").send_keys("strip looked fine")
    browser.find_element(By.ID, "release").click()  # no password: the service asks for one
    wait(browser).until(ec.presence_of_element_located((By.ID, "message")))
    assert "signature" in browser.find_element(By.ID, "message").text
    assert "HOLD" in browser.find_element(By.ID, "lot-state").text
    browser.find_element(By.ID, "release-reason").send_keys("strip looked fine")
    browser.find_element(By.ID, "release-password").send_keys(PASSWORDS["olga"])
    shot(browser, shots / "lot-release-signature.png")
    browser.find_element(By.ID, "release").click()
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "lot-state"), "WAITING"))
    history = browser.find_element(By.ID, "history").text
    assert "release" in history and "olga (session)" in history
    assert "approved release" in browser.find_element(By.TAG_NAME, "main").text


def test_a_technician_declares_a_tool_down_for_maintenance_and_brings_it_up(
    browser: WebDriver, station: Station, shots: Path
) -> None:
    """DA-1 in alarm: the technician declares it down for planned maintenance on its page
    (the state chosen, a reason), the page says by whom and why; then brings it up."""
    log_in(browser, station, "tom")
    browser.get(f"{station.url}/station/tools/DA-1")
    Select(browser.find_element(By.ID, "down-e10")).select_by_value("scheduled_down")
    browser.find_element(By.ID, "down-reason").send_keys("vacuum pump PM")
    browser.find_element(By.ID, "declare-down").click()
    wait(browser).until(ec.presence_of_element_located((By.ID, "tool-down")))
    declared = browser.find_element(By.ID, "tool-down").text
    assert "scheduled down by tom" in declared and "vacuum pump PM" in declared
    assert "declared down" in browser.find_element(By.ID, "notice").text
    shot(browser, shots / "tool-declared-down.png")
    browser.find_element(By.ID, "bring-up").click()
    wait(browser).until(ec.presence_of_element_located((By.ID, "declare-down")))
    assert "brought up" in browser.find_element(By.ID, "notice").text
    assert not browser.find_elements(By.ID, "tool-down")


def test_a_role_that_lacks_release_is_not_offered_it(
    browser: WebDriver, station: Station, shots: Path
) -> None:
    """A technician may hold but not release: the held lot's page offers him no release (nor
    any of its other actions, none his) and says so, naming his role and the roles that may;
    the lot stays held. The server still refuses the release he forges
    (tests/station/test_pages.py)."""
    log_in(browser, station, "tom")
    browser.get(f"{station.url}/station/lots/S-3")
    assert browser.find_element(By.ID, "lot-state").text == "HOLD"
    assert not browser.find_elements(By.CSS_SELECTOR, "form.action[method=post]")
    said = browser.find_element(By.ID, "no-actions").text
    assert said.startswith("Your role (technician) may do none of what this held lot offers")
    assert "release" in said and "the role engineer, operator or quality" in said, said
    browser.save_screenshot(str(shots / "refused.png"))


def test_the_line_page_updates_without_a_reload(
    browser: WebDriver, station: Station, shots: Path
) -> None:
    """A lot held elsewhere (another browser, the CLI) appears in the open line page's held
    lots by the event stream, the page not reloaded."""
    log_in(browser, station, "olga")
    wait(browser).until(
        lambda b: b.find_element(By.ID, "live").get_attribute("data-state") == "live"
    )
    browser.execute_script("window.notReloaded = true;")
    assert "S-2" not in browser.find_element(By.ID, "held").text
    with httpx.Client(base_url=station.url, timeout=10) as other:
        form = other.get("/station/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        other.post(
            "/station/login",
            data={"csrf": csrf[1], "username": "tom", "password": PASSWORDS["tom"]},
        )
        page = other.get("/station/lots/S-2")
        token = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
        assert token is not None
        held = other.post("/station/lots/S-2/hold", data={"csrf": token[1], "reason": "tool drift"})
        assert held.status_code == 303, held.text
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "held"), "S-2"))
    assert browser.execute_script("return window.notReloaded === true;")
