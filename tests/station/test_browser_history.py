"""The browser's back button and reload, in a real browser (tests/station/browsing.py): they
show a lot as it is now, never as it was when its page was left, and never send a form
again."""

from __future__ import annotations

from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec

from tests.station.browsing import log_in, shot, wait
from tests.station.conftest import Station


def _history_rows(browser: WebDriver) -> int:
    return len(browser.find_elements(By.CSS_SELECTOR, "#history tbody tr"))


def test_back_after_a_hold_shows_the_lot_held(
    browser: WebDriver, station: Station, shots: Path
) -> None:
    """Olga holds S-1 from its page, then goes back: the page she left (S-1 WAITING, its hold
    form) is not shown from the browser's back-forward cache, which kept it as it was; the
    lot is shown held, with no hold form to send again."""
    log_in(browser, station, "olga")
    browser.get(f"{station.url}/station/lots/S-1")
    assert browser.find_element(By.ID, "lot-state").text == "WAITING"
    browser.find_element(By.ID, "hold-reason").send_keys("smear on carrier 2")
    browser.find_element(By.ID, "hold").click()
    wait(browser).until(ec.presence_of_element_located((By.ID, "notice")))
    assert browser.find_element(By.ID, "lot-state").text == "HOLD"
    browser.back()
    wait(browser).until(lambda b: b.find_element(By.ID, "lot-state").text == "HOLD")
    assert browser.current_url == f"{station.url}/station/lots/S-1"
    assert not browser.find_elements(By.ID, "hold-form")
    assert "smear on carrier 2" in browser.find_element(By.ID, "lot-hold").text
    shot(browser, shots / "back-after-hold.png")


def test_a_refused_form_reloaded_is_not_sent_again(browser: WebDriver, station: Station) -> None:
    """A hold of S-4 refused (a code not in the catalogue) is shown at the form's address;
    reloading it shows S-4's page as it is now, without sending the form a second time (it
    had been sent again, silently or after the browser's "resubmit the form?"), and so does
    the back button from the page after it."""
    log_in(browser, station, "olga")
    browser.get(f"{station.url}/station/lots/S-4")
    entries = _history_rows(browser)
    browser.find_element(By.ID, "hold-reason").send_keys("check the film")
    browser.find_element(By.ID, "hold-code").send_keys("NO-SUCH-CODE")
    browser.find_element(By.ID, "hold").click()
    wait(browser).until(ec.presence_of_element_located((By.ID, "message")))
    assert browser.current_url == f"{station.url}/station/lots/S-4/hold"
    assert "NO-SUCH-CODE" in browser.find_element(By.ID, "message").text
    browser.refresh()
    wait(browser).until(lambda b: b.current_url == f"{station.url}/station/lots/S-4")
    assert not browser.find_elements(By.ID, "message")  # nothing was sent to refuse
    assert browser.find_element(By.ID, "lot-state").text == "WAITING"
    assert _history_rows(browser) == entries
    browser.find_element(By.ID, "hold-code").send_keys("NO-SUCH-CODE")
    browser.find_element(By.ID, "hold").click()
    wait(browser).until(ec.presence_of_element_located((By.ID, "message")))
    browser.get(f"{station.url}/station/holds")
    browser.back()
    wait(browser).until(lambda b: b.current_url == f"{station.url}/station/lots/S-4")
    assert not browser.find_elements(By.ID, "message")


def test_a_narrow_panel_scrolls_a_wide_table_not_the_page(
    browser: WebDriver, station: Station, shots: Path
) -> None:
    """At 800 px wide the tool page's E10 times and the security log keep to the page's
    width: their many columns scroll inside the table's box, beside nothing hidden off the
    page's edge (the whole page scrolled sideways, the last columns out of sight)."""
    size = browser.get_window_size()
    browser.set_window_size(800, 700)
    try:
        log_in(browser, station, "quinn")
        for path, table in (
            ("/station/tools/DA-1", "e10-times"),
            ("/station/security", "security-events"),
        ):
            browser.get(f"{station.url}{path}")
            wait(browser).until(ec.presence_of_element_located((By.ID, table)))
            page_width, view_width = browser.execute_script(
                "const e = document.documentElement; return [e.scrollWidth, e.clientWidth];"
            )
            assert page_width <= view_width, (path, page_width, view_width)
            box = browser.find_element(By.ID, table).find_element(By.XPATH, "..")
            assert box.get_attribute("class") == "wide"
            shot(browser, shots / f"narrow-{table}.png")
    finally:
        browser.set_window_size(size["width"], size["height"])


def test_a_form_clicked_twice_is_sent_once(browser: WebDriver, station: Station) -> None:
    """A second submit of a form whose answer is on its way (a double click) is not sent:
    its answer would have said the lot changed since the page was loaded, as if the first,
    which worked, had failed. The page's own script decides it, before any request."""
    log_in(browser, station, "olga")
    browser.get(f"{station.url}/station/lots/S-4")
    browser.find_element(By.ID, "hold-reason").send_keys("check the film")
    browser.find_element(By.ID, "hold-code").send_keys("NO-SUCH-CODE")  # refused: S-4 stays
    sent = browser.execute_script(
        """const form = document.getElementById("hold-form");
        const seen = [];
        form.addEventListener("submit", (e) => seen.push(e.defaultPrevented));
        form.requestSubmit();
        form.requestSubmit();
        return seen;"""
    )
    assert sent == [False, True]  # the first sent, the second held back
    wait(browser).until(ec.presence_of_element_located((By.ID, "message")))
    assert "NO-SUCH-CODE" in browser.find_element(By.ID, "message").text
