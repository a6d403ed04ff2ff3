"""The material lot page's recall in a real browser (tests/station/browsing.py): a quality
engineer reaches the adhesive ADH-7 from the lot page of S-4, picks the hold code from the
catalogue's list, quarantines it holding the two lots still on the line that got it, and
reads the quarantine and the holds back on the page; a code the catalogue has not is
refused on the page first, the reason typed kept."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec

from tests.station.browsing import log_in, shot, wait
from tests.station.conftest import Station, running_station
from tests.station.test_material_recall_page import _prepare


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    with running_station(tmp_path_factory.mktemp("station"), prepare=_prepare) as running:
        yield running


def test_quality_quarantines_the_adhesive_and_holds_its_lots_in_the_browser(
    browser: WebDriver, station: Station, shots: Path
) -> None:
    log_in(browser, station, "quinn")
    browser.get(f"{station.url}/station/lots/S-4")
    wait(browser).until(ec.presence_of_element_located((By.LINK_TEXT, "ADH-7"))).click()
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "material-id"), "ADH-7"))
    assert browser.find_element(By.ID, "quarantine-hold-lots").is_selected()  # by default
    browser.find_element(By.ID, "quarantine-code").send_keys("RECAL")
    browser.find_element(By.ID, "quarantine-reason").send_keys("voids at X-ray")
    browser.find_element(By.ID, "quarantine").click()
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "message"), "RECALL?"))
    assert browser.find_element(By.ID, "quarantine-reason").get_attribute("value") == (
        "voids at X-ray"
    )
    assert "WAITING" in browser.find_element(By.ID, "on-line").text  # nothing held
    code = browser.find_element(By.ID, "quarantine-code")
    code.clear()
    code.send_keys("RECALL")
    browser.find_element(By.ID, "quarantine").click()
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "notice"), "Lots held now: 2"))
    facts = browser.find_element(By.ID, "quarantine-facts").text
    assert "by quinn" in facts and "RECALL Material recall: voids at X-ray" in facts
    on_line = browser.find_element(By.ID, "on-line").text
    assert on_line.count("HOLD") == 2 and "WAITING" not in on_line
    assert browser.find_element(By.ID, "release-form").is_displayed()
    shot(browser, shots / "material-recall.png")
