"""A track-in by hand refused for one of its recipe values is shown on that field, as a
track-out's or a start's refusal is: the field marked (``aria-invalid``, a red border), the
message beside it (``aria-describedby``), the message at the top as before, every value as
the operator typed it, and nothing changed. The field comes from the lot tracker's refusal
(``InvalidInput.field``, ``LimitViolated.fields``: ``values.NAME``), not from its words: a
value not of its type, one that cannot be physical, one outside a claimed limit (each of
them, where several are). Over HTTP and in a real browser, against a real server whose lots
wait for a step run by hand (SUBSTRATE_LOAD, SUBSTRATE_PREP)."""

from __future__ import annotations

import html
import re
import sqlite3
from collections.abc import Iterator

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec

from mes.domain import commands as cmd
from pkgline.api.auth import ApiState
from tests.station.browsing import log_in, wait
from tests.station.client import csrf, logged_in, lot_version, message
from tests.station.conftest import Station, running_station
from tests.station.seed import OWNER

LOAD = "SUBSTRATE_LOAD"
"""stiffener-bga's first step: substrate_thickness_mm, a number the claims hold to 0.1-0.5."""

PREP = "SUBSTRATE_PREP"
"""fo-organic's first step: substrate_material and cavity_method, each one of a claimed few,
and cavity_depth_um, a number."""

PREP_TYPED = {
    "substrate_material": "organic",
    "cavity_method": "injection_molding",
    "cavity_depth_um": "150",
}

CASES = {
    # lot: (flow, step, the values typed, the fields marked, a word of the refusal)
    "I-1": ("stiffener-bga", LOAD, {"substrate_thickness_mm": "thick"}, {"substrate_thickness_mm": "expected a number"}),
    "I-2": ("stiffener-bga", LOAD, {"substrate_thickness_mm": "0.8"}, {"substrate_thickness_mm": "claim 000: 14"}),
    "I-3": ("stiffener-bga", LOAD, {"substrate_thickness_mm": "-0.2"}, {"substrate_thickness_mm": "is negative"}),
    "I-4": ("fo-organic", PREP, {**PREP_TYPED, "cavity_depth_um": "deep"}, {"cavity_depth_um": "expected a number"}),
    "I-5": (
        "fo-organic",
        PREP,
        {**PREP_TYPED, "substrate_material": "glass", "cavity_method": "drilled"},
        {"substrate_material": "substrate_material is glass", "cavity_method": "cavity_method is drilled"},
    ),
}  # fmt: skip
BROWSER_LOT = "I-6"
LOTS = {**{lot: case[0] for lot, case in CASES.items()}, BROWSER_LOT: "stiffener-bga"}

TABLES = ("lots", "lot_history", "outbox")
"""What a track-in would change."""


async def _waiting(state: ApiState) -> None:
    """Each lot of :data:`LOTS` started, waiting for its flow's first step (run by hand)."""
    lots = state.services.lots.acting_as(OWNER)
    for lot, flow in LOTS.items():
        await lots.start(cmd.StartLot(lot, flow, "olga", carriers=2))


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    with running_station(tmp_path_factory.mktemp("station"), prepare=_waiting) as up:
        yield up


def _database(station: Station) -> dict[str, list[tuple[object, ...]]]:
    with sqlite3.connect(station.db.removeprefix("sqlite:///")) as db:
        return {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in TABLES}


def _form(page: str, step: str) -> str:
    found = re.search(rf'<form [^>]*id="track-in-{step}"[^>]*>(.*?)</form>', page, re.S)
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


@pytest.mark.parametrize("lot", list(CASES))
def test_a_track_in_refused_for_a_recipe_value_marks_that_field(station: Station, lot: str) -> None:
    _, step, typed, marked = CASES[lot]
    with logged_in(station, "olga") as client:
        page = client.get(f"/station/lots/{lot}").text
        before = _database(station)
        data = {"csrf": csrf(page), "lot_version": lot_version(page), "step": step}
        data |= {f"value.{k}": v for k, v in typed.items()}
        refused = client.post(f"/station/lots/{lot}/track-in", data=data)
        assert refused.status_code == 422, refused.text
        top = html.unescape(message(refused.text))
        form = _form(refused.text, step)
        for name, said in marked.items():
            field_id = f"track-in-{step}-{name}"
            field = _input(form, field_id)
            assert 'aria-invalid="true"' in field, name
            assert f'aria-describedby="{field_id}-error"' in field
            beside = re.search(
                rf'<span class="field-error" id="{field_id}-error" role="alert">([^<]*)<', form
            )
            assert beside is not None, form
            assert said in beside[1] and beside[1] in top  # its own words, said at the top too
        assert form.count('aria-invalid="true"') == len(marked)  # those fields only
        assert form.count('class="field-error"') == len(marked)
        for name, text in typed.items():  # what the operator typed, every field
            assert _value(_input(form, f"track-in-{step}-{name}")) == text, name
        assert refused.text.count('aria-invalid="true"') == len(marked)
        assert _database(station) == before


def test_the_track_in_form_marks_no_field_when_nothing_was_refused(station: Station) -> None:
    """The lot's page, and a refusal about no field (a page older than the lot)."""
    with logged_in(station, "olga") as client:
        page = client.get("/station/lots/I-1").text
        assert "aria-invalid" not in _form(page, LOAD) and 'class="field-error"' not in page
        stale = {"csrf": csrf(page), "lot_version": "9", "step": LOAD}
        refused = client.post(
            "/station/lots/I-1/track-in", data={**stale, "value.substrate_thickness_mm": "x"}
        )
        assert refused.status_code == 409, refused.text
        assert "changed since this page was loaded" in html.unescape(message(refused.text))
        assert "aria-invalid" not in refused.text
        assert (
            _value(_input(_form(refused.text, LOAD), f"track-in-{LOAD}-substrate_thickness_mm"))
            == "x"
        )


def test_a_recipe_value_past_its_claimed_limit_is_marked_in_the_browser_and_kept(
    browser: WebDriver, station: Station
) -> None:
    """What the operator sees: the field with a red border and the claim's words under it,
    the value as typed; once corrected, the step is tracked in."""
    log_in(browser, station, "olga")
    browser.get(f"{station.url}/station/lots/{BROWSER_LOT}")
    field_id = f"track-in-{LOAD}-substrate_thickness_mm"
    field = browser.find_element(By.ID, field_id)
    field.clear()
    field.send_keys("0.8")
    browser.find_element(By.ID, f"track-in-{LOAD}-go").click()
    top = wait(browser).until(ec.presence_of_element_located((By.ID, "message")))
    error = browser.find_element(By.ID, f"{field_id}-error")
    assert error.is_displayed() and "claim 000: 14" in error.text and error.text in top.text
    field = browser.find_element(By.ID, field_id)
    assert field.get_attribute("aria-invalid") == "true"
    assert field.get_attribute("aria-describedby") == error.get_attribute("id")
    assert field.value_of_css_property("border-top-color") == "rgba(214, 39, 40, 1)"
    assert field.get_attribute("value") == "0.8"
    assert browser.find_element(By.ID, "lot-state").text == "WAITING"
    field.clear()
    field.send_keys("0.3")
    browser.find_element(By.ID, f"track-in-{LOAD}-go").click()
    notice = wait(browser).until(ec.presence_of_element_located((By.ID, "notice")))
    assert notice.text == "The step was tracked in: the lot runs it."
    assert browser.find_element(By.ID, "lot-state").text == "RUNNING"
