"""The holds, tool and start-lot pages and the lot page's actions in a real browser
(tests/station/browsing.py), against a server whose line.toml asks two signers for a scrap
of sites: release from the holds page's signature dialog, the tool page reached from its
tile, a lot started with a refusal shown on its field first, sites scrapped by clicking them
on the map (two signers), carriers split off, a running step aborted, a role refused, a step
run by hand tracked in (a value the claims refuse first) and out with a reject."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select

from tests.station.browsing import log_in, shot, wait
from tests.station.conftest import Station, running_station
from tests.station.seed import PASSWORDS
from tests.station.test_work_pages import LINE_TOML


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    with running_station(tmp_path_factory.mktemp("station"), LINE_TOML) as running:
        yield running


def test_release_from_the_holds_page_in_the_signature_dialog(
    browser: WebDriver, station: Station, shots: Path
) -> None:
    log_in(browser, station, "olga")
    browser.find_element(By.ID, "nav-holds").click()
    row = wait(browser).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, '#holds tr[data-lot="S-3"]'))
    )
    assert "voids at incoming inspection" in row.text and "olga" in row.text
    shot(browser, shots / "holds.png")
    browser.find_element(By.ID, "release-S-3").click()
    dialog = browser.find_element(By.ID, "release-dialog")
    wait(browser).until(lambda b: dialog.is_displayed())
    assert "S-3" in dialog.text
    assert not browser.find_element(By.ID, "dialog-second").is_displayed()  # one signer
    browser.find_element(By.ID, "dialog-reason").send_keys("voids within limits")
    browser.find_element(By.ID, "dialog-password").send_keys(PASSWORDS["olga"])
    browser.save_screenshot(str(shots / "holds-release.png"))
    browser.find_element(By.ID, "dialog-password").send_keys(Keys.ENTER)  # by keyboard
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "notice"), "S-3"))
    assert "S-3" not in browser.find_element(By.ID, "holds").text


def test_the_tool_page_from_its_tile(browser: WebDriver, station: Station, shots: Path) -> None:
    log_in(browser, station, "tom")
    browser.find_element(By.CSS_SELECTOR, '[data-tool="DA-1"] a.tool-link').click()
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "tool-id"), "DA-1"))
    Select(browser.find_element(By.ID, "window")).select_by_value("1h")
    browser.find_element(By.ID, "show-window").click()
    wait(browser).until(ec.url_contains("window=1h"))
    states = [
        s.get_attribute("data-e10")
        for s in browser.find_elements(By.CSS_SELECTOR, "#timeline rect.seg")
    ]
    assert "productive" in states and states[-1] == "unscheduled_down"
    assert browser.find_element(By.ID, "availability").text.endswith("%")
    assert "bond head vacuum low" in browser.find_element(By.ID, "tool-alarm").text
    jobs = browser.find_element(By.ID, "jobs").text
    assert "S-4" in jobs and "DIE_ATTACH" in jobs and "96.9" in jobs
    # what is loaded on it: the film still thawing is marked, with what a track-in would say
    thawing = browser.find_element(By.CSS_SELECTOR, '#on-tool tr[data-on-tool="DAF-7"]')
    assert thawing.get_attribute("data-status") == "thawing"
    assert "attention" in (thawing.get_attribute("class") or "")
    assert "usable from" in thawing.text, thawing.text
    ready = browser.find_element(By.CSS_SELECTOR, '#on-tool tr[data-on-tool="ADH-7"]')
    assert ready.get_attribute("data-status") == "usable"
    shot(browser, shots / "tool.png")


def test_swap_a_spool_on_the_wire_bonder(browser: WebDriver, station: Station, shots: Path) -> None:
    """An operator takes the empty spool off WB-1 (its row's button, with a reason), then
    scans the next one into the load field (a scanner types the id and Enter)."""
    log_in(browser, station, "olga")
    browser.get(f"{station.url}/station/tools/WB-1")
    row = browser.find_element(By.CSS_SELECTOR, '#on-tool tr[data-on-tool="WIRE-7"]')
    row.find_element(By.NAME, "reason").send_keys("spool empty")
    row.find_element(By.CSS_SELECTOR, "button.unload").click()
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "notice"), "taken off"))
    assert not browser.find_elements(By.CSS_SELECTOR, '#on-tool tr[data-on-tool="WIRE-7"]')
    browser.find_element(By.ID, "material").send_keys("WIRE-8", Keys.ENTER)
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "notice"), "was loaded"))
    loaded = browser.find_element(By.CSS_SELECTOR, '#on-tool tr[data-on-tool="WIRE-8"]')
    assert loaded.get_attribute("data-status") == "usable"
    browser.find_element(By.ID, "material").send_keys("WIRE-9", Keys.ENTER)  # one per kind
    wait(browser).until(ec.presence_of_element_located((By.ID, "message")))
    assert "loaded" in browser.find_element(By.ID, "message").text
    assert browser.find_element(By.ID, "material").get_attribute("value") == "WIRE-9"
    shot(browser, shots / "tool-load.png")


def test_start_a_lot_with_a_refusal_on_its_field_first(
    browser: WebDriver, station: Station, shots: Path
) -> None:
    log_in(browser, station, "olga")
    browser.find_element(By.ID, "nav-start").click()
    Select(
        wait(browser).until(ec.presence_of_element_located((By.ID, "flow-choice")))
    ).select_by_value("fo-organic")
    browser.find_element(By.ID, "choose-flow").click()
    layers = wait(browser).until(ec.presence_of_element_located((By.ID, "f-param.layers")))
    assert layers.get_attribute("value") == "2"  # the flow's default, its limit beside it
    assert "1 to 8" in browser.find_element(By.ID, "params").text
    browser.find_element(By.ID, "f-lot").send_keys("B-1")
    layers.clear()
    layers.send_keys("12")
    browser.find_element(By.ID, "start").click()
    error = wait(browser).until(ec.presence_of_element_located((By.ID, "e-param.layers")))
    assert "1 to 8" in error.text
    field = browser.find_element(By.ID, "f-param.layers")
    assert field.get_attribute("aria-invalid") == "true" and field.get_attribute("value") == "12"
    shot(browser, shots / "start-refused.png")
    field.clear()
    field.send_keys(str(2**64) + Keys.ENTER)  # the lot tracker's refusal, on the field it names
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "e-param.layers"), "bad data"))
    field = browser.find_element(By.ID, "f-param.layers")
    assert field.get_attribute("aria-invalid") == "true"
    assert field.get_attribute("value") == str(2**64)
    field.clear()
    field.send_keys("3" + Keys.ENTER)
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "lot-id"), "B-1"))
    assert browser.find_element(By.ID, "lot-state").text == "WAITING"
    assert "layers=3" in browser.find_element(By.TAG_NAME, "main").text


def test_scrap_sites_by_clicking_them_signed_by_two(
    browser: WebDriver, station: Station, shots: Path
) -> None:
    log_in(browser, station, "olga")
    browser.get(f"{station.url}/station/lots/S-1")
    for carrier, row, col in (("S-1-01", 1, 1), ("S-1-02", 3, 5), ("S-1-02", 3, 6)):
        browser.find_element(
            By.CSS_SELECTOR, f'[data-carrier="{carrier}"] rect[data-row="{row}"][data-col="{col}"]'
        ).click()
    browser.find_element(
        By.CSS_SELECTOR, '[data-carrier="S-1-02"] rect[data-row="3"][data-col="6"]'
    ).click()  # a second click takes it back
    field = browser.find_element(By.ID, "scrap-sites")
    assert field.get_attribute("value") == "S-1-01:1:1, S-1-02:3:5"
    assert len(browser.find_elements(By.CSS_SELECTOR, "rect.site.picked")) == 2
    browser.find_element(By.ID, "scrap-reason").send_keys("chipped edge")
    browser.find_element(By.ID, "scrap-password").send_keys(PASSWORDS["olga"])
    browser.find_element(By.ID, "scrap").click()  # one signer: two are asked for
    message = wait(browser).until(ec.presence_of_element_located((By.ID, "message")))
    assert "two different people" in message.text
    assert not browser.find_elements(By.CSS_SELECTOR, 'rect[data-state="scrapped"]')
    field = browser.find_element(By.ID, "scrap-sites")
    assert field.get_attribute("value") == "S-1-01:1:1, S-1-02:3:5"  # kept for a retry
    browser.find_element(By.ID, "scrap-password").send_keys(PASSWORDS["olga"])
    browser.find_element(By.ID, "scrap-second-username").send_keys("quinn")
    browser.find_element(By.ID, "scrap-second-password").send_keys(PASSWORDS["quinn"])
    shot(browser, shots / "lot-scrap.png")
    browser.find_element(By.ID, "scrap").click()
    wait(browser).until(ec.presence_of_element_located((By.ID, "notice")))
    scrapped = browser.find_elements(By.CSS_SELECTOR, 'rect[data-state="scrapped"]')
    assert len(scrapped) == 2
    assert "Quinn Quality (quinn)" in browser.find_element(By.ID, "history").text


def test_maps_per_step_split_abort_and_the_limits_of_each_step(
    browser: WebDriver, station: Station, shots: Path
) -> None:
    log_in(browser, station, "olga")
    browser.get(f"{station.url}/station/lots/S-4")
    limits = browser.find_element(By.ID, "limits-1")  # DIE_ATTACH, the last step: open
    row = limits.find_element(By.CSS_SELECTOR, 'tr[data-value="xy_offset_um"]')
    assert "4.2 um" in row.text and "spec" in row.text
    Select(browser.find_element(By.ID, "map-choice")).select_by_value("at:1")
    browser.find_element(By.ID, "show-map").click()
    wait(browser).until(ec.url_contains("map=at%3A1"))
    assert not browser.find_elements(By.CSS_SELECTOR, 'rect[data-state="rejected"]')
    Select(browser.find_element(By.ID, "map-choice")).select_by_value("upto:2")
    browser.find_element(By.ID, "show-map").click()
    wait(browser).until(ec.url_contains("map=upto%3A2"))
    assert len(browser.find_elements(By.CSS_SELECTOR, 'rect[data-state="rejected"]')) == 1
    browser.find_element(By.ID, "split-S-4-02").click()
    browser.find_element(By.ID, "split-into").send_keys("S-4B")
    browser.find_element(By.ID, "split").click()
    wait(browser).until(ec.presence_of_element_located((By.ID, "notice")))
    browser.find_element(By.CSS_SELECTOR, "#notice a").click()
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "lot-id"), "S-4B"))
    assert browser.find_elements(By.CSS_SELECTOR, '[data-carrier="S-4-02"]')
    browser.get(f"{station.url}/station/lots/S-2")
    browser.find_element(By.ID, "abort-reason").send_keys("substrate dropped" + Keys.ENTER)
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "lot-state"), "WAITING"))


def test_a_technician_is_offered_no_start(browser: WebDriver, station: Station) -> None:
    """A technician starts no lot: the navigation has no link to the start page, and the page
    opened by its address shows the flow but no start form, saying why. The server still
    refuses (and records) a start he forges (tests/station/test_pages.py)."""
    log_in(browser, station, "tom")
    assert not browser.find_elements(By.ID, "nav-start")
    browser.get(f"{station.url}/station/start?flow=fo-organic")
    said = browser.find_element(By.ID, "no-start").text
    assert said == (
        "Your role (technician) may not start lots: that needs the role engineer or operator."
    )
    assert not browser.find_elements(By.ID, "start-form")
    assert not browser.find_elements(By.ID, "f-lot")


def test_a_step_run_by_hand_tracked_in_and_out_on_the_lot_page(
    browser: WebDriver, station: Station, shots: Path
) -> None:
    log_in(browser, station, "olga")
    browser.get(f"{station.url}/station/start?flow=fo-organic")
    browser.find_element(By.ID, "f-lot").send_keys("B-9" + Keys.ENTER)
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "lot-state"), "WAITING"))
    method = browser.find_element(By.ID, "track-in-SUBSTRATE_PREP-cavity_method")
    assert method.get_attribute("value") == "injection_molding"  # the flow's default
    method.clear()
    method.send_keys("drilled")
    browser.find_element(By.ID, "track-in-SUBSTRATE_PREP-go").click()
    message = wait(browser).until(ec.presence_of_element_located((By.ID, "message")))
    assert "cavity_method" in message.text and "002: 64-68" in message.text
    method = browser.find_element(By.ID, "track-in-SUBSTRATE_PREP-cavity_method")
    assert method.get_attribute("value") == "drilled"  # kept, to be corrected
    method.clear()
    method.send_keys("laminated_core")
    shot(browser, shots / "lot-by-hand.png")
    browser.find_element(By.ID, "track-in-SUBSTRATE_PREP-go").click()
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "lot-state"), "RUNNING"))
    assert "by hand" in browser.find_element(By.ID, "lot-step").text
    browser.find_element(By.ID, "track-out-rejects").send_keys("B-9-01:2:3:VOID")
    browser.find_element(By.ID, "track-out-SUBSTRATE_PREP-go").click()
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "lot-state"), "WAITING"))
    assert "DIE_ATTACH" in browser.find_element(By.TAG_NAME, "main").text
    assert browser.find_elements(By.CSS_SELECTOR, 'rect[data-code="VOID"]')
