"""A subgroup chart's page (pkgline/station/spc_pages.py) in a real browser, over the server as
it runs and a die bonder whose lots the line controller ran job by job (one carrier a job):
the X-bar chart with limits that follow each lot's number of carriers, the S chart beneath
with the lot whose spread broke rule 9 marked there (and not on the X-bar chart), the points'
n and s listed; the list of charts names each chart's kind."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec

from mes.domain.authority import CONTROLLER
from mes.domain.equipment import ToolRegistration, ToolSnapshot
from pkgline.api.server import open_state
from tests.mes.spc_lots import by_jobs
from tests.station.browsing import log_in, shot, wait
from tests.station.client import logged_in
from tests.station.conftest import Station, running_station
from tests.station.seed import OWNER, fast_passwords

BLT = "bond_line_thickness_um"
LOTS = {
    "G-1": [25.4, 24.6, 25.2, 24.8],
    "G-2": [25.3, 24.9],  # two carriers: wider limits than G-1's four
    "G-3": [22.0, 28.0, 22.0, 28.0],  # on the centre, spread beyond the S chart's UCL
    "G-4": [25.1, 24.8, 25.0, 25.2],
}


async def _charted(db: str) -> None:
    """DB-8 with a subgroup chart of BLT (centre 25, sigma 1); the lots of LOTS through
    DIE_ATTACH there, as the line controller runs them: a job per carrier."""
    async with open_state(db, passwords=fast_passwords()) as state:
        services = state.services
        equipment = services.equipment.acting_as(CONTROLLER)
        await equipment.register(
            "line-8", [ToolRegistration("DB-8", "die_bonder", "127.0.0.1:1598", ("DIE_ATTACH",))]
        )
        idle = ToolSnapshot(connected=True, e10="standby", process_state="IDLE", mode="PRODUCTION")
        await equipment.report("DB-8", idle)
        await services.spc.acting_as(OWNER).configure(
            "DIE_ATTACH", BLT, "DB-8", "erin", center=25.0, sigma=1.0, kind="subgroup"
        )
        lots, controller = services.lots.acting_as(OWNER), services.lots.acting_as(CONTROLLER)
        for lot_id, blts in LOTS.items():
            await by_jobs(lots, lot_id, blts, "DB-8", controller)


@pytest.fixture(scope="module")
def subgroup_station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    with running_station(tmp_path_factory.mktemp("subgroup")) as running:
        asyncio.run(_charted(running.db))
        yield running


def test_the_xbar_and_s_charts_are_drawn_with_limits_for_each_lots_carriers(
    browser: WebDriver, subgroup_station: Station, shots: Path
) -> None:
    log_in(browser, subgroup_station, "quinn")
    browser.get(f"{subgroup_station.url}/station/spc/DIE_ATTACH/{BLT}?tool=DB-8")
    wait(browser).until(ec.presence_of_element_located((By.CSS_SELECTOR, "svg.spc-spread")))
    kind = browser.find_element(By.CLASS_NAME, "spc-kind")
    assert (kind.get_attribute("data-kind"), kind.text) == (
        "subgroup",
        "X-bar / S chart of each lot's carriers, a point at each pass through the step",
    )
    said = browser.find_element(By.CLASS_NAME, "spc-limits").text
    assert said.startswith("centre 25, sigma 1 (of one carrier's value); a lot of n carriers"), said
    means, spreads = browser.find_elements(By.CSS_SELECTOR, "svg.spc-chart")
    assert "spc-spread" in str(spreads.get_attribute("class"))
    points = means.find_elements(By.CSS_SELECTOR, "circle.point")
    assert [p.get_attribute("data-lot") for p in points] == list(LOTS)
    assert means.find_elements(By.CSS_SELECTOR, "circle.point.broke") == []
    [broke] = spreads.find_elements(By.CSS_SELECTOR, "circle.point.broke")
    assert broke.get_attribute("data-lot") == "G-3"
    # the X-bar chart's UCL is a step per lot: G-2's (two carriers) above the others' (four)
    ucl = [
        float(str(line.get_attribute("y1")))
        for line in means.find_elements(By.CSS_SELECTOR, 'line.limit[data-limit="UCL"]')
    ]
    assert len(ucl) == 4 and ucl[1] < ucl[0] == ucl[2] == ucl[3]
    rows = browser.find_elements(By.CSS_SELECTOR, "table.spc-points tbody tr")
    cells = [
        [c.get_attribute("textContent") for c in r.find_elements(By.TAG_NAME, "td")] for r in rows
    ]
    assert [(c[1], c[4]) for c in cells] == [("G-1", "4"), ("G-2", "2"), ("G-3", "4"), ("G-4", "4")]
    assert cells[2][5] == "3.464" and cells[2][6] == "9"
    violation = browser.find_element(By.CSS_SELECTOR, '.spc-violations tr[data-rule="9"]')
    assert "a lot's spread beyond the S chart's limits" in violation.text
    assert "#3 (G-3)" in violation.text
    shot(browser, shots / "spc-subgroup.png")


def test_the_list_names_each_charts_kind(subgroup_station: Station) -> None:
    with logged_in(subgroup_station, "olga") as client:
        page = client.get("/station/spc", params={"tool": "DB-8"})
        assert page.status_code == 200, page.text
        assert '<td class="spc-kind">subgroup</td>' in page.text
        assert "25 +- 3 &times; 1 / &radic;n (engineering)" in page.text
