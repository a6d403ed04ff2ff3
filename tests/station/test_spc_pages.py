"""The SPC pages (pkgline/station/spc_pages.py) of the server as it runs, over its seeded
database and a die bonder of its own with a chart whose points come from real track-outs:
the chart page in a real browser (its points in order, the centre line and limits, the spec
limits, the point that broke rule 1 marked, listed with its lot and linked to it; Cpk/Ppk),
only the newest points of a long chart (the count of the older said), a chart with no limits
yet, the list of charts reached from the navigation, the links from a tool SPC disqualified
and from a lot SPC held; an unknown step, value or tool answers 404 saying what there is,
a malformed one 422; nobody logged in is sent to the login, as the API refuses them."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec

from mes.adapters.database import create_engine
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain import commands as cmd
from mes.domain.authority import CONTROLLER
from mes.domain.equipment import DispatchMode, ToolRegistration, ToolSnapshot
from mes.domain.spc import Point
from mes.ports import Work
from mes.ports_spc import add_points
from pkgline.api.server import open_state
from pkgline.station.spc_pages import SHOWN
from tests.station.browsing import log_in, shot, wait
from tests.station.client import logged_in, message
from tests.station.conftest import Station, running_station
from tests.station.seed import OWNER, fast_passwords

BLT = "bond_line_thickness_um"
XOFF = "xy_offset_um"
FORCE = "bond_force_n"
LONG = SHOWN + 250
CALM = [25.0, 25.4, 24.7, 25.2, 24.9, 25.1]
"""Bond line thickness within 1 sigma of 25 (the chart's centre, sigma 1): no rule broken."""
OUT = 31.0
"""Beyond 3 sigma: rule 1, the lot held, DB-9 disqualified for DIE_ATTACH (the chart
inhibits)."""


async def _through_die_attach(lots: object, lot_id: str, measured: dict[str, float]) -> None:
    from mes.service import LotService

    assert isinstance(lots, LotService)
    await lots.start(cmd.StartLot(lot_id, "fo-organic", "olga", carriers=1))
    await lots.track_in(cmd.TrackIn(lot_id, "SUBSTRATE_PREP", "olga", None, {}))
    await lots.track_out(cmd.TrackOut(lot_id, "olga", {}, ()))
    await lots.track_in(cmd.TrackIn(lot_id, "DIE_ATTACH", "olga", "DB-9", {}))
    await lots.track_out(cmd.TrackOut(lot_id, "olga", measured, ()))


async def _charted(db: str) -> None:
    """DB-9 with a chart of BLT (limits set, inhibit) and one of XOFF (a baseline of 20
    points: no limits yet); six calm lots, then one beyond 3 sigma (P-7: held)."""
    async with open_state(db, passwords=fast_passwords()) as state:
        services = state.services
        await services.equipment.acting_as(CONTROLLER).register(
            "line-9",
            [ToolRegistration("DB-9", "die_bonder", "127.0.0.1:1599", ("DIE_ATTACH",))],
        )
        idle = ToolSnapshot(connected=True, e10="standby", process_state="IDLE", mode="PRODUCTION")
        await services.equipment.acting_as(CONTROLLER).report("DB-9", idle)
        await services.equipment.acting_as(OWNER).set_dispatch(
            "DB-9", DispatchMode.MANUAL, "erin", "die attach by hand"
        )
        spc = services.spc.acting_as(OWNER)
        await spc.configure("DIE_ATTACH", BLT, "DB-9", "erin", center=25.0, sigma=1.0, inhibit=True)
        await spc.configure("DIE_ATTACH", XOFF, "DB-9", "erin", baseline_n=20)
        lots = services.lots.acting_as(OWNER)
        for n, x in enumerate([*CALM, OUT], start=1):
            await _through_die_attach(lots, f"P-{n}", {BLT: x, XOFF: 4.0 + n / 10})
        # a long chart: more points than the page reads, their lots P-1 to P-7
        await spc.configure("DIE_ATTACH", FORCE, "DB-9", "erin", center=2.0, sigma=0.1)
        at = datetime.now(UTC)
        points = [
            Point("DIE_ATTACH", FORCE, "DB-9", f"P-{i % 7 + 1}", at, 2.0 + (i % 3) / 100)
            for i in range(LONG)
        ]
        points[-2] = replace(points[-2], x=2.5, rules=(1,))  # as its track-out recorded it

        def work() -> Work[None]:
            yield from add_points(points)

        engine = create_engine(db)  # the points straight into the store, as track-outs write them
        try:
            await SqlUnitOfWorkFactory(engine).write(work())
        finally:
            await engine.dispose()


@pytest.fixture(scope="module")
def spc_station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    with running_station(tmp_path_factory.mktemp("spc")) as running:
        asyncio.run(_charted(running.db))
        yield running


def _text(page: str, id_or_class: str) -> str:
    found = re.search(rf'(?:id|class)="{id_or_class}"[^>]*>(.*?)</dd>', page, re.S)
    assert found is not None, page
    return html.unescape(re.sub(r"<[^>]+>", "", found[1]))


def test_the_chart_page_draws_the_points_limits_and_the_violation_in_a_browser(
    browser: WebDriver, spc_station: Station, shots: Path
) -> None:
    log_in(browser, spc_station, "quinn")
    browser.find_element(By.ID, "nav-spc").click()
    wait(browser).until(ec.presence_of_element_located((By.ID, "spc-charts")))
    rows = browser.find_elements(By.CSS_SELECTOR, "#spc-charts tr[data-chart]")
    assert [r.get_attribute("data-chart") for r in rows] == [
        f"DIE_ATTACH/{FORCE}/DB-9",
        f"DIE_ATTACH/{BLT}/DB-9",
        f"DIE_ATTACH/{XOFF}/DB-9",
    ]
    counted = [
        (
            r.find_element(By.CLASS_NAME, "spc-count").text,
            re.sub(
                r", \d{4}-\d\d-\d\d \d\d:\d\d$", "", r.find_element(By.CLASS_NAME, "spc-last").text
            ),
        )
        for r in rows
    ]
    assert counted == [
        (f"{LONG}", f"rule 1, P-{(LONG - 2) % 7 + 1}"),  # the one recorded among the newest
        ("7", "rule 1, P-7"),
        ("7", f"none in the last {SHOWN}"),
    ]
    rows[1].find_element(By.LINK_TEXT, BLT).click()
    wait(browser).until(ec.presence_of_element_located((By.CSS_SELECTOR, "svg.spc-chart")))
    assert browser.current_url.endswith(f"/station/spc/DIE_ATTACH/{BLT}?tool=DB-9")
    svg = browser.find_element(By.CSS_SELECTOR, "svg.spc-chart")
    points = svg.find_elements(By.CSS_SELECTOR, "circle.point")
    assert [p.get_attribute("data-lot") for p in points] == [f"P-{n}" for n in range(1, 8)]
    ys = [float(str(p.get_attribute("cy"))) for p in points]
    assert ys[-1] < min(ys[:-1])  # the 31 drawn above the calm points (y grows down)
    broke = svg.find_elements(By.CSS_SELECTOR, "circle.point.broke")
    assert [b.get_attribute("data-lot") for b in broke] == ["P-7"]
    limits = {
        str(line.get_attribute("data-limit")): float(str(line.get_attribute("y1")))
        for line in svg.find_elements(By.CSS_SELECTOR, "line.limit")
    }
    assert {"UCL", "CL", "LCL"} <= limits.keys()
    assert limits["UCL"] < limits["CL"] < limits["LCL"]
    assert ys[-1] < limits["UCL"] < max(ys[:-1])  # P-7 beyond the UCL, the others inside
    said = browser.find_element(By.CLASS_NAME, "spc-limits").text
    assert said.startswith("centre 25, sigma 1, UCL 28, LCL 22 ("), said
    violation = browser.find_element(By.CSS_SELECTOR, '.spc-violations tr[data-rule="1"]')
    assert "#7 (P-7)" in violation.text
    assert "Cpk" in browser.find_element(By.CLASS_NAME, "spc-capability").text
    shot(browser, shots / "spc.png")
    violation.find_element(By.LINK_TEXT, "P-7").click()  # to the lot SPC held
    wait(browser).until(ec.presence_of_element_located((By.ID, "lot-spc")))
    assert "HOLD" in browser.find_element(By.ID, "lot-state").text
    browser.find_element(By.ID, "lot-spc").find_element(By.CLASS_NAME, "spc-link").click()
    wait(browser).until(ec.presence_of_element_located((By.CSS_SELECTOR, "svg.spc-chart")))
    assert browser.current_url.endswith(f"/station/spc/DIE_ATTACH/{BLT}?tool=DB-9")


def test_a_chart_without_limits_yet_and_the_tool_pages_link(spc_station: Station) -> None:
    with logged_in(spc_station, "olga") as client:
        page = client.get(f"/station/spc/DIE_ATTACH/{XOFF}", params={"tool": "DB-9"})
        assert page.status_code == 200, page.text
        assert _text(page.text, "spc-limits") == "no limits yet: baseline 7 of 20 points"
        # not "one point per lot": a lot passing the step twice adds two
        assert _text(page.text, "spc-kind") == (
            "individuals chart, one point per lot at each pass through the step"
        )
        assert 'data-limit="CL"' not in page.text and 'data-limit="UCL"' not in page.text
        assert page.text.count('class="point"') == 7
        tool = client.get("/station/tools/DB-9").text
        said = _text(tool, "alarm")
        assert said.startswith("DIE_ATTACH, by SPC since ") and "its SPC charts" in said
        link = re.search(r'class="spc-link" href="([^"]+)"', tool)
        assert link is not None and html.unescape(link[1]) == (
            "/station/spc?step=DIE_ATTACH&tool=DB-9"
        )
        listed = client.get(html.unescape(link[1])).text
        assert listed.count("data-chart=") == 3


def test_only_the_newest_points_are_shown_with_the_count_of_the_older(
    tmp_path: Path,
) -> None:
    """A chart of many points: the page draws the newest SHOWN, says how many are older."""
    from datetime import UTC, datetime, timedelta

    from mes.domain.spc import Point, configure
    from mes.spc import ChartView
    from pkgline.station.spc_pages import shown

    at = datetime(2026, 1, 1, tzinfo=UTC)
    chart = configure("S", "v", "T", "e", at, center=0.0, sigma=1.0)
    points = [
        Point("S", "v", "T", f"L-{i}", at + timedelta(minutes=i), 0.1 * (i % 5))
        for i in range(SHOWN + 250)
    ]
    view = ChartView(chart, points, [], None, None, None, None)
    s = shown(view)
    assert s.first == 250 and len(s.points) == SHOWN and s.points[0].lot_id == "L-250"
    assert s.svg.count("<circle") == SHOWN and 'data-point="251"' in s.svg


def test_a_long_chart_shows_its_newest_points_and_says_how_many_are_older(
    spc_station: Station,
) -> None:
    """The page reads the newest SHOWN points of a chart with more (the service's ``last``):
    they are drawn and listed, the older counted, the point its track-out recorded as broken
    marked and listed with its number over the whole chart."""
    with logged_in(spc_station, "olga") as client:
        page = client.get(f"/station/spc/DIE_ATTACH/{FORCE}", params={"tool": "DB-9"}).text
    numbers = [int(n) for n in re.findall(r'data-point="(\d+)"', page)]
    assert numbers == list(range(LONG - SHOWN + 1, LONG + 1))
    older = re.search(r'id="spc-older-DB-9">(.*?)</p>', page, re.S)
    assert older is not None, page
    said = html.unescape(re.sub(r"<[^>]+>", "", older[1]))
    assert said.startswith(f"The newest {SHOWN} of {LONG} points (the violations are those")
    assert f"the {LONG - SHOWN} older ones" in said
    assert re.findall(r'class="point broke" data-point="(\d+)"', page) == [str(LONG - 1)]
    assert re.search(rf'data-rule="1">.*?#{LONG - 1} \(<a href="/station/lots/P-', page, re.S)


def test_unknown_and_malformed_names_are_answered_with_what_there_is(
    spc_station: Station,
) -> None:
    with logged_in(spc_station, "olga") as client:
        cases = [
            (f"/station/spc/NOPE/{BLT}", {}, 404, "NOPE is not a step code; there are: "),
            ("/station/spc/DIE_ATTACH/colour", {}, 404, "expected one of bond_force_n, " + BLT),
            (
                f"/station/spc/DIE_ATTACH/{BLT}",
                {"tool": "NOPE-1"},
                404,
                f"there is no tool NOPE-1: no SPC chart of {BLT} at DIE_ATTACH on NOPE-1; "
                f"the charts of DIE_ATTACH: {FORCE} on DB-9, {BLT} on DB-9, {XOFF} on DB-9",
            ),
            (
                f"/station/spc/DIE_ATTACH/{BLT}",
                {"tool": "DA-1"},
                404,
                f"no SPC chart of {BLT} at DIE_ATTACH on DA-1; the charts of DIE_ATTACH: "
                f"{FORCE} on DB-9, {BLT} on DB-9, {XOFF} on DB-9",
            ),
            # the steps listed, as the refusal's allowed are where its message does not list them
            (
                "/station/spc",
                {"step": "NOPE"},
                404,
                "there is no step NOPE; expected one of the flows' step codes; there are: ",
            ),
            (f"/station/spc/DIE_ATTACH/{BLT}", {"tool": "X" * 65}, 422, "tool: expected a name"),
            (f"/station/spc/DIE_ATTACH/{BLT}", {"tool": ""}, 422, "tool: expected a name"),
            ("/station/spc", {"tool": "DB\x009"}, 422, "the URL holds a NUL character"),
        ]
        for path, query, status, said in cases:
            answer = client.get(path, params=query)
            assert answer.status_code == status, (path, query, answer.text)
            assert said in html.unescape(message(answer.text)), (path, message(answer.text))
        listed = html.unescape(message(client.get("/station/spc/DIE_ATTACH/colour").text))
        assert "there are" not in listed  # its message lists them: not twice
        steps = html.unescape(message(client.get("/station/spc", params={"step": "NOPE"}).text))
        assert "DIE_ATTACH" in steps.partition("there are: ")[2]


def test_the_pages_ask_for_a_login_as_the_api_asks_for_credentials(spc_station: Station) -> None:
    """Every account has a role and every role reads SPC (the API's ``GET /spc/charts``):
    nobody logged in is refused by both, the pages sending to the login and back."""
    with httpx.Client(base_url=spc_station.url, timeout=10) as client:
        assert client.get(f"/spc/charts/DIE_ATTACH/{BLT}").status_code == 401
        for path in ("/station/spc", f"/station/spc/DIE_ATTACH/{BLT}?tool=DB-9"):
            page = client.get(path)
            assert page.status_code == 303, (path, page.text)
            assert page.headers["location"].startswith("/station/login?next=")
