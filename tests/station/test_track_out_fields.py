"""A track-out by hand refused for one of its values or its rejects is shown on that field,
as a start's refusal is: the field marked (``aria-invalid``, a red border), the message beside
it (``aria-describedby``), the message at the top as before, every other field as the
operator typed it, the spec limits still beside the fields, and nothing changed. The field
comes from the lot tracker's refusal (``InvalidInput.field``: ``measured.NAME``,
``rejects``), not from its words. Over HTTP and in a real browser, against a real server
whose lots run DIE_ATTACH by hand, each on a die bonder of its own switched to manual."""

from __future__ import annotations

import html
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec

from mes.domain import commands as cmd
from mes.domain.authority import CONTROLLER
from mes.domain.equipment import DispatchMode, ToolRegistration, ToolSnapshot
from pkgline.api.auth import ApiState
from tests.station.browsing import log_in, shot, wait
from tests.station.client import csrf, logged_in, lot_version, message
from tests.station.conftest import Station, running_station
from tests.station.seed import OWNER

MEASURED = ("bond_force_n", "xy_offset_um", "bond_line_thickness_um")
"""What DIE_ATTACH measures: the track-out form's value fields, in its order."""

TYPED = {"bond_force_n": "5.1", "xy_offset_um": "3.5", "bond_line_thickness_um": "24"}
"""What the operator types in them, unless a case gives a bad one."""

CASES = {
    # lot: (the field given, what, the form's field marked, a word of the refusal)
    "T-1": ("xy_offset_um", "twelve", "xy_offset_um", "expected a number"),
    "T-2": ("xy_offset_um", "nan", "xy_offset_um", "expected a number"),
    "T-3": ("bond_line_thickness_um", "1e999", "bond_line_thickness_um", "expected a number"),
    "T-4": ("bond_force_n", "-5", "bond_force_n", "is negative"),
    "T-5": ("bond_line_thickness_um", "-3", "bond_line_thickness_um", "is negative, and a um"),
    "T-6": ("rejects", "T-6-01:2", "rejects", "expected CARRIER:ROW:COL:CODE"),
    "T-7": ("rejects", "T-7-01:9:9:VOID", "rejects", "outside the carrier"),
    "T-8": ("rejects", "T-8-07:1:1:VOID", "rejects", "is not in lot T-8"),
    "T-9": ("rejects", "T-9-01:1:1:void", "rejects", "reject code 'void' is not valid"),
    "T-10": ("rejects", "T-10-01:1:1:VOID T-10-01:1:1:CRACK", "rejects", "given twice"),
}
BROWSER_LOT = "T-11"
LOTS = (*CASES, BROWSER_LOT)

TABLES = ("lots", "carriers", "site_rejects", "lot_history", "outbox", "durables")
"""What a track-out would change."""


async def _running_by_hand(state: ApiState) -> None:
    """Each lot of :data:`LOTS` running DIE_ATTACH, tracked in by hand on a die bonder of its
    own (DB-T-1 ...), qualified for it, up and switched to manual."""
    tools = [f"DB-{lot}" for lot in LOTS]
    equipment = state.services.equipment
    await equipment.acting_as(CONTROLLER).register(
        "line-9",
        [
            ToolRegistration(t, "die_bonder", f"127.0.0.1:{1700 + n}", ("DIE_ATTACH",))
            for n, t in enumerate(tools)
        ],
    )
    up = ToolSnapshot(connected=True, e10="standby", process_state="READY")
    lots = state.services.lots.acting_as(OWNER)
    for lot, tool in zip(LOTS, tools, strict=True):
        await equipment.acting_as(CONTROLLER).report(tool, up)
        await equipment.acting_as(OWNER).set_dispatch(tool, DispatchMode.MANUAL, "tom", "by hand")
        await lots.start(cmd.StartLot(lot, "fo-organic", "olga", carriers=2))
        await lots.track_in(cmd.TrackIn(lot, "SUBSTRATE_PREP", "olga", None, {}))
        await lots.track_out(cmd.TrackOut(lot, "olga", {}, ()))
        await lots.track_in(cmd.TrackIn(lot, "DIE_ATTACH", "olga", tool, {}))


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    with running_station(tmp_path_factory.mktemp("station"), prepare=_running_by_hand) as up:
        yield up


def _database(station: Station) -> dict[str, list[tuple[object, ...]]]:
    with sqlite3.connect(station.db.removeprefix("sqlite:///")) as db:
        return {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in TABLES}


def _form(page: str) -> str:
    found = re.search(r'<form [^>]*id="track-out-DIE_ATTACH"[^>]*>(.*?)</form>', page, re.S)
    assert found is not None, page
    return html.unescape(found[1])


def _input(form: str, field_id: str) -> str:
    found = re.search(rf'<input id="{field_id}"[^>]*>', form)
    assert found is not None, form
    return found[0]


def _value(tag: str) -> str:
    found = re.search(r' value="([^"]*)"', tag)
    assert found is not None, tag
    return found[1]


def _field_id(field: str) -> str:
    return "track-out-rejects" if field == "rejects" else f"track-out-DIE_ATTACH-{field}"


@pytest.mark.parametrize("lot", list(CASES))
def test_a_track_out_refused_for_a_value_or_its_rejects_marks_that_field(
    station: Station, lot: str
) -> None:
    given, bad, marked, said = CASES[lot]
    typed = {**TYPED, "rejects": f"{lot}-02:1:1:VOID", given: bad}
    with logged_in(station, "olga") as client:
        page = client.get(f"/station/lots/{lot}").text
        before = _database(station)
        data = {"csrf": csrf(page), "lot_version": lot_version(page), "step": "DIE_ATTACH"}
        data |= {("rejects" if k == "rejects" else f"value.{k}"): v for k, v in typed.items()}
        refused = client.post(f"/station/lots/{lot}/track-out", data=data)
        assert refused.status_code == 422, refused.text
        top = html.unescape(message(refused.text))
        assert said in top  # the message at the top, as before
        form = _form(refused.text)
        field = _input(form, _field_id(marked))
        error = f"{_field_id(marked)}-error"
        assert 'aria-invalid="true"' in field and f'aria-describedby="{error}"' in field
        beside = re.search(rf'<span class="field-error" id="{error}" role="alert">([^<]*)<', form)
        assert beside is not None, form
        assert beside[1] == top
        assert form.count('aria-invalid="true"') == 1  # that field only
        assert form.count('class="field-error"') == 1
        for name in (*MEASURED, "rejects"):  # what the operator typed, every field
            assert _value(_input(form, _field_id(name))) == typed[name], name
        # the spec limits still beside their field
        assert "spec at most 15.0 um, target 0.0 um (line practice: die placement)" in form
        assert refused.text.count('aria-invalid="true"') == 1  # no field of the other forms
        assert _database(station) == before


def test_the_track_out_form_marks_no_field_when_nothing_was_refused(station: Station) -> None:
    """The lot's page, and a refusal about no field (a page older than the lot)."""
    with logged_in(station, "olga") as client:
        page = client.get("/station/lots/T-1").text
        assert "aria-invalid" not in _form(page) and 'class="field-error"' not in page
        stale = {"csrf": csrf(page), "lot_version": "1", "step": "DIE_ATTACH"}
        refused = client.post(
            "/station/lots/T-1/track-out", data={**stale, "value.xy_offset_um": "x"}
        )
        assert refused.status_code == 409, refused.text
        assert "changed since this page was loaded" in html.unescape(message(refused.text))
        assert "aria-invalid" not in refused.text
        assert _value(_input(_form(refused.text), _field_id("xy_offset_um"))) == "x"


def test_a_value_refused_in_the_browser_is_marked_on_its_field_and_kept(
    browser: WebDriver, station: Station, shots: Path
) -> None:
    """What the operator sees: the field with a red border and the message under it, the
    other values and the rejects as typed; once corrected, the step is tracked out."""
    log_in(browser, station, "olga")
    browser.get(f"{station.url}/station/lots/{BROWSER_LOT}")
    fields = {name: browser.find_element(By.ID, _field_id(name)) for name in MEASURED}
    for name, text in {**TYPED, "xy_offset_um": "3,5"}.items():
        fields[name].clear()
        fields[name].send_keys(text)
    browser.find_element(By.ID, "track-out-rejects").send_keys(f"{BROWSER_LOT}-01:2:3:VOID")
    browser.find_element(By.ID, "track-out-DIE_ATTACH-go").click()
    top = wait(browser).until(ec.presence_of_element_located((By.ID, "message")))
    error = browser.find_element(By.ID, "track-out-DIE_ATTACH-xy_offset_um-error")
    assert error.is_displayed() and "expected a number" in error.text and error.text == top.text
    field = browser.find_element(By.ID, "track-out-DIE_ATTACH-xy_offset_um")
    assert field.get_attribute("aria-invalid") == "true"
    assert field.get_attribute("aria-describedby") == error.get_attribute("id")
    assert field.value_of_css_property("border-top-color") == "rgba(214, 39, 40, 1)"
    assert field.get_attribute("value") == "3,5"
    for name in ("bond_force_n", "bond_line_thickness_um"):
        other = browser.find_element(By.ID, _field_id(name))
        assert other.get_attribute("value") == TYPED[name]
        assert other.get_attribute("aria-invalid") is None
    rejects = browser.find_element(By.ID, "track-out-rejects")
    assert rejects.get_attribute("value") == f"{BROWSER_LOT}-01:2:3:VOID"
    assert browser.find_element(By.ID, "lot-state").text == "RUNNING"
    shot(browser, shots / "track-out-refused.png")
    field.clear()
    field.send_keys("3.5")
    browser.find_element(By.ID, "track-out-DIE_ATTACH-go").click()
    notice = wait(browser).until(ec.presence_of_element_located((By.ID, "notice")))
    assert notice.text == "The step was tracked out."
    assert browser.find_element(By.ID, "lot-state").text == "WAITING"
