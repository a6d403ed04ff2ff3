"""The station in a real browser: Debian's ``chromium`` driven by Selenium through
``chromium-driver`` (headless; nothing downloaded). One browser for the module, started
once (a start costs seconds). Each page visited is saved as a screenshot in
``$PKGLINE_SCREENSHOTS`` when set (docs/screenshots/ for the README), else in the test's
tmp dir.

Skipped with the reason when chromium or chromedriver is missing, except on CI
(``CI=true``), where .ci/run installs them and their absence is a failure."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.station.conftest import Station
from tests.station.seed import PASSWORDS

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WAIT_S = 10.0


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    missing = [p for p in (CHROMIUM, DRIVER) if not Path(p).is_file()]
    if missing:
        reason = f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the CI container runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,800",  # the touch panel
        "--no-first-run",
        "--disable-background-networking",
        "--disable-extensions",
    ):
        options.add_argument(argument)
    # no keep-alive: each command its own connection, none left open between tests
    driver = webdriver.Chrome(
        service=Service(executable_path=DRIVER), options=options, keep_alive=False
    )
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("PKGLINE_SCREENSHOTS")
    where = Path(given) if given else tmp_path_factory.mktemp("screenshots")
    where.mkdir(parents=True, exist_ok=True)
    return where


def _shot(browser: WebDriver, path: Path) -> None:
    """A screenshot of the whole page (the window made as tall as the page for it)."""
    size = browser.get_window_size()
    width, height = size["width"], size["height"]
    tall = browser.execute_script("return document.documentElement.scrollHeight;")
    browser.set_window_size(width, max(int(tall) + 140, height))
    try:
        browser.save_screenshot(str(path))
    finally:
        browser.set_window_size(width, height)


def _wait(browser: WebDriver) -> WebDriverWait[WebDriver]:
    return WebDriverWait(browser, WAIT_S)


def _log_in(browser: WebDriver, station: Station, user: str, shots: Path | None = None) -> None:
    browser.delete_all_cookies()
    browser.get(f"{station.url}/station/")
    _wait(browser).until(ec.presence_of_element_located((By.ID, "username")))
    assert browser.current_url.startswith(f"{station.url}/station/login")
    if shots is not None:
        browser.save_screenshot(str(shots / "login.png"))
    browser.find_element(By.ID, "username").send_keys(user)
    browser.find_element(By.ID, "password").send_keys(PASSWORDS[user] + Keys.ENTER)
    _wait(browser).until(ec.presence_of_element_located((By.ID, "line")))


def test_log_in_and_see_the_line_live(browser: WebDriver, station: Station, shots: Path) -> None:
    """The login leads to the line: a tile per tool with its E10 state, the alarm text, the
    held lot; the page's event stream connects (the page says "live")."""
    _log_in(browser, station, "olga", shots)
    tile = browser.find_element(By.CSS_SELECTOR, '[data-tool="PREP-1"]')
    assert tile.get_attribute("data-e10") == "productive"
    assert "S-2" in tile.text and "12/32" in tile.text
    alarmed = browser.find_element(By.CSS_SELECTOR, '[data-tool="DA-1"]')
    assert "bond head vacuum low" in alarmed.text
    assert "S-3" in browser.find_element(By.ID, "held").text
    _wait(browser).until(
        lambda b: b.find_element(By.ID, "live").get_attribute("data-state") == "live"
    )
    browser.save_screenshot(str(shots / "line.png"))


def test_open_a_lot_by_its_id_and_read_a_rejected_site(
    browser: WebDriver, station: Station, shots: Path
) -> None:
    """A lot id typed (or scanned) into the search field with Enter opens the lot: its route,
    and the strip map with the rejected site coloured and named, in the legend."""
    _log_in(browser, station, "olga")
    search = browser.find_element(By.ID, "lot-search")
    search.send_keys("S-1" + Keys.ENTER)
    _wait(browser).until(ec.text_to_be_present_in_element((By.ID, "lot-id"), "S-1"))
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
    _shot(browser, shots / "lot.png")


def test_hold_and_release_a_lot_and_the_line_page_follows(
    browser: WebDriver, station: Station, shots: Path
) -> None:
    """The operator holds S-1 with a reason, then releases it: each is one form, the page
    says what happened, and the history records who did it (by session)."""
    _log_in(browser, station, "olga")
    browser.get(f"{station.url}/station/lots/S-1")
    browser.find_element(By.ID, "hold-reason").send_keys("check the strip")
    browser.find_element(By.ID, "hold").click()
    _wait(browser).until(ec.text_to_be_present_in_element((By.ID, "lot-state"), "HOLD"))
    assert "check the strip" in browser.find_element(By.ID, "lot-hold").text
    _shot(browser, shots / "lot-held.png")
    browser.get(f"{station.url}/station/")
    assert "S-1" in browser.find_element(By.ID, "held").text
    browser.get(f"{station.url}/station/lots/S-1")
    browser.find_element(By.ID, "release-reason").send_keys("strip looked fine")
    browser.find_element(By.ID, "release").click()  # no password: the service asks for one
    _wait(browser).until(ec.presence_of_element_located((By.ID, "message")))
    assert "signature" in browser.find_element(By.ID, "message").text
    assert "HOLD" in browser.find_element(By.ID, "lot-state").text
    browser.find_element(By.ID, "release-reason").send_keys("strip looked fine")
    browser.find_element(By.ID, "release-password").send_keys(PASSWORDS["olga"])
    _shot(browser, shots / "lot-release-signature.png")
    browser.find_element(By.ID, "release").click()
    _wait(browser).until(ec.text_to_be_present_in_element((By.ID, "lot-state"), "WAITING"))
    history = browser.find_element(By.ID, "history").text
    assert "release" in history and "olga (session)" in history
    assert "approved release" in browser.find_element(By.TAG_NAME, "main").text


def test_a_role_that_lacks_release_is_refused_on_the_page(
    browser: WebDriver, station: Station, shots: Path
) -> None:
    """A technician may hold but not release: the refusal is shown on the page, naming the
    roles that may, and the lot stays held."""
    _log_in(browser, station, "tom")
    browser.get(f"{station.url}/station/lots/S-3")
    browser.find_element(By.ID, "release").click()
    message = _wait(browser).until(ec.presence_of_element_located((By.ID, "message")))
    assert "may not release" in message.text
    assert browser.find_element(By.ID, "lot-state").text == "HOLD"
    browser.save_screenshot(str(shots / "refused.png"))


def test_the_line_page_updates_without_a_reload(
    browser: WebDriver, station: Station, shots: Path
) -> None:
    """A lot held elsewhere (another browser, the CLI) appears in the open line page's held
    lots by the event stream, the page not reloaded."""
    _log_in(browser, station, "olga")
    _wait(browser).until(
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
    _wait(browser).until(ec.text_to_be_present_in_element((By.ID, "held"), "S-2"))
    assert browser.execute_script("return window.notReloaded === true;")
