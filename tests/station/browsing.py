"""The station in a real browser: Debian's ``chromium`` driven by Selenium through
``chromium-driver`` (headless; nothing downloaded). One browser per test module, started
once (a start costs seconds): the fixtures ``browser`` and ``shots`` (tests/station/
conftest.py) and the helpers here. Each page visited is saved as a screenshot in
``$PKGLINE_SCREENSHOTS`` when set (docs/screenshots/ for the README), else in the test's
tmp dir.

A browser leaves nothing behind: chromedriver and chromium keep their temporary files (the
profile, and the singleton socket's directory, which chromium does not remove when
chromedriver ends it) under ``$TMPDIR``, the crash reporter its database and dconf its cache
under the home's ``.config`` and ``.cache``; for each browser these all point into a
directory of its own (:data:`BROWSER_DIR_PREFIX`), removed once it has quit. That directory
is made in the system's temporary directory, not in pytest's: the singleton socket's path
must fit a Unix socket address (107 bytes), which a test's tmp_path may not.

Skipped with the reason when chromium or chromedriver is missing, except on CI
(``CI=true``), where .ci/run installs them and their absence is a failure."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
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
BROWSER_DIR_PREFIX = "pkgline-chromium-"


def _own_environment(where: Path) -> dict[str, str]:
    """The environment of chromedriver (and so of chromium, its child) with every place they
    write outside the profile in ``where``."""
    env = dict(os.environ)
    for name, sub in (
        ("TMPDIR", "tmp"),
        ("HOME", "home"),
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_CACHE_HOME", "cache"),
    ):
        (where / sub).mkdir()
        env[name] = str(where / sub)
    return env


def start_browser() -> Iterator[WebDriver]:
    """A headless chromium whose files are all in a directory of its own, removed after the
    browser has quit."""
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
    where = Path(tempfile.mkdtemp(prefix=BROWSER_DIR_PREFIX))
    try:
        service = Service(executable_path=DRIVER, env=_own_environment(where))
        # no keep-alive: each command its own connection, none left open between tests
        driver = webdriver.Chrome(service=service, options=options, keep_alive=False)
        try:
            driver.set_page_load_timeout(WAIT_S)
            yield driver
        finally:
            driver.quit()
    finally:
        shutil.rmtree(where)


def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("PKGLINE_SCREENSHOTS")
    where = Path(given) if given else tmp_path_factory.mktemp("screenshots")
    where.mkdir(parents=True, exist_ok=True)
    return where


def shot(browser: WebDriver, path: Path) -> None:
    """A screenshot of the whole page (the window made as tall as the page for it)."""
    size = browser.get_window_size()
    width, height = size["width"], size["height"]
    tall = browser.execute_script("return document.documentElement.scrollHeight;")
    browser.set_window_size(width, max(int(tall) + 140, height))
    try:
        browser.save_screenshot(str(path))
    finally:
        browser.set_window_size(width, height)


def wait(browser: WebDriver) -> WebDriverWait[WebDriver]:
    """A wait that polls through a page being replaced: a condition that found an element of
    the page a form's submit is leaving may read it as it goes, and Chromium then answers
    "Node with given id does not belong to the document", a WebDriverException that
    Selenium's conditions do not catch (as they do a stale element). The wait still fails,
    with a timeout, if the condition never holds."""
    return WebDriverWait(browser, WAIT_S, ignored_exceptions=(WebDriverException,))


def log_in(browser: WebDriver, station: Station, user: str, shots: Path | None = None) -> None:
    browser.delete_all_cookies()
    browser.get(f"{station.url}/station/")
    wait(browser).until(ec.presence_of_element_located((By.ID, "username")))
    assert browser.current_url.startswith(f"{station.url}/station/login")
    if shots is not None:
        browser.save_screenshot(str(shots / "login.png"))
    browser.find_element(By.ID, "username").send_keys(user)
    browser.find_element(By.ID, "password").send_keys(PASSWORDS[user] + Keys.ENTER)
    wait(browser).until(ec.presence_of_element_located((By.ID, "line")))
