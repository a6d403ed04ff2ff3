"""Nothing an operator entered is lost to a refusal: every form of the station refused as
malformed (a field too long, a NUL character, a field missing, a value not as expected) is
shown again with what it gave, in the form it came from (the sites picked to scrap, values,
reasons, the carriers ticked, the step chosen, the meaning and the second signer's name),
never a password; the message says what was expected, and the database is unchanged. Over
HTTP against a real server whose line.toml asks two signers for a scrap of sites."""

from __future__ import annotations

import asyncio
import html
import re
import sqlite3
from collections.abc import Iterator

import httpx
import pytest

from tests.station.client import csrf, logged_in, lot_version, message
from tests.station.conftest import Station, running_station
from tests.station.seed import PASSWORDS
from tests.station.test_rework_scrap import _held_after_ball_mount
from tests.station.test_work_pages import LINE_TOML

TABLES = (
    "lots",
    "carriers",
    "site_rejects",
    "lot_history",
    "outbox",
    "signatures",
    "materials",
    "material_events",
    "material_uses",
    "users",
)
"""What an action would change (not the security log, which records a refusal)."""

LONG = "x" * 1025
"""A reason past the 1,024 characters a field may hold."""


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    with running_station(tmp_path_factory.mktemp("station"), LINE_TOML) as running:
        asyncio.run(_held_after_ball_mount(running.db))  # a rework to offer
        yield running


def database(station: Station) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the tables an action changes."""
    with sqlite3.connect(station.db.removeprefix("sqlite:///")) as db:
        return {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in TABLES}


def form_of(page: str, form_id: str) -> str:
    found = re.search(rf'<form [^>]*id="{form_id}"[^>]*>(.*?)</form>', page, re.S)
    assert found is not None, page
    return html.unescape(found[1])


def value_of(form: str, field_id: str) -> str:
    found = re.search(rf'<input id="{field_id}"[^>]*? value="([^"]*)"', form)
    assert found is not None, form
    return found[1]


def never_a_password(page: str) -> None:
    for secret in PASSWORDS.values():
        assert secret not in page
    assert not re.search(r'type="password"[^>]* value="[^"]', page), page


SITES = "S-1-01:1:1, S-1-02:3:5, S-1-02:4:7"
SIGNED_BY_TWO = {
    "meaning": "approved scrap of sites, edge chips",
    "password": PASSWORDS["olga"],
    "second_username": "quinn",
    "second_password": PASSWORDS["quinn"],
}


@pytest.mark.parametrize(
    ("given", "status", "said"),
    [
        ({"reason": LONG}, 400, "reason: longer than 1024 characters"),
        ({"reason": "chipped\x00 edge"}, 400, "reason: the text holds a NUL character"),
        ({"code": "CHIP\x00"}, 400, "code: the text holds a NUL character"),
        ({"reason": ""}, 422, "reason: say why the sites are scrapped"),
        ({"sites": SITES + ", S-1-02:4"}, 422, "expected CARRIER:ROW:COL"),
        ({"meaning": ""}, 422, "the signature needs its meaning"),
        ({"second_password": ""}, 422, "the second signer gives their username and"),
    ],
)
def test_a_scrap_of_sites_refused_as_malformed_keeps_the_sites_picked_and_every_field(
    station: Station, given: dict[str, str], status: int, said: str
) -> None:
    """The sites picked on the map (the field the map's clicks write, which the page's script
    marks on the map again), the code, the reason, the meaning and the second signer's name
    come back in the scrap form; neither password does; nothing is scrapped."""
    with logged_in(station, "olga") as client:
        page = client.get("/station/lots/S-1").text
        before = database(station)
        data = {
            "csrf": csrf(page),
            "lot_version": lot_version(page),
            "sites": SITES,
            "code": "CHIP",
            "reason": "chipped edge",
            **SIGNED_BY_TWO,
            **given,
        }
        refused = client.post("/station/lots/S-1/scrap-sites", data=data)
        assert refused.status_code == status, refused.text
        assert said in html.unescape(message(refused.text))
        assert "nothing was changed" in html.unescape(message(refused.text))
        form = form_of(refused.text, "scrap-form")
        shown = {k: v.replace("\x00", "") for k, v in data.items()}
        assert value_of(form, "scrap-sites") == shown["sites"]
        assert value_of(form, "scrap-code") == shown["code"]
        assert value_of(form, "scrap-reason") == shown["reason"]
        assert value_of(form, "scrap-meaning") == shown["meaning"]
        assert value_of(form, "scrap-second-username") == "quinn"
        never_a_password(refused.text)
        # the page's other forms show their own defaults, not this form's fields
        assert value_of(form_of(refused.text, "scrap-lot-form"), "scrap-lot-reason") == ""
        assert value_of(form_of(refused.text, "hold-form"), "hold-reason") == ""
        assert database(station) == before


def _lot_form(client: httpx.Client, lot: str) -> dict[str, str]:
    """The lot page's form token and lot version."""
    page = client.get(f"/station/lots/{lot}").text
    return {"csrf": csrf(page), "lot_version": lot_version(page)}


@pytest.mark.parametrize(
    ("who", "lot", "action", "form_id", "given", "kept"),
    [
        ("olga", "S-1", "hold", "hold-form", {"reason": "voids\x00 at wire bond"},
         {"hold-reason": "voids at wire bond"}),
        ("olga", "S-2", "abort", "abort-form", {"reason": LONG}, {"abort-reason": LONG}),
        ("olga", "S-3", "release", "release-form",
         {"reason": "re-inspected\x00", "meaning": "approved release after re-inspection",
          "password": PASSWORDS["olga"]},
         {"release-reason": "re-inspected",
          "release-meaning": "approved release after re-inspection"}),
        ("erin", "R-1", "rework", "rework-form",
         {"step": "BALL_MOUNT", "reason": "voids: prep again\x00",
          "meaning": "approved rework (voids)", "password": PASSWORDS["erin"]},
         {"rework-reason": "voids: prep again", "rework-meaning": "approved rework (voids)"}),
        ("olga", "S-1", "split", "split-form",
         {"carrier": "S-1-02", "into": "S-1B", "reason": LONG},
         {"split-into": "S-1B", "split-reason": LONG}),
        ("olga", "S-1", "merge", "merge-form", {"into": "S-4\x00", "reason": "same step"},
         {"merge-into": "S-4", "merge-reason": "same step"}),
        ("olga", "S-1", "scrap", "scrap-lot-form",
         {"reason": "dropped", "code": "HANDLING\x00", "meaning": "approved scrap (dropped)",
          "password": PASSWORDS["olga"]},
         {"scrap-lot-reason": "dropped", "scrap-lot-code": "HANDLING",
          "scrap-lot-meaning": "approved scrap (dropped)"}),
    ],
)  # fmt: skip
def test_each_lot_form_refused_as_malformed_keeps_what_it_gave(
    station: Station,
    who: str,
    lot: str,
    action: str,
    form_id: str,
    given: dict[str, str],
    kept: dict[str, str],
) -> None:
    """A field too long or holding a NUL character (the form read no further, before) is
    refused on the lot page with everything the form gave in its form (a NUL left out of its
    field, which the message says), never a password; nothing changes."""
    with logged_in(station, who) as client:
        base = _lot_form(client, lot)
        before = database(station)
        refused = client.post(f"/station/lots/{lot}/{action}", data={**base, **given})
        assert refused.status_code == 400, refused.text
        said = html.unescape(message(refused.text))
        assert ("NUL character" in said or "longer than 1024" in said) and "nothing was" in said
        form = form_of(refused.text, form_id)
        for field_id, value in kept.items():
            assert value_of(form, field_id) == value, field_id
        if action == "rework":
            assert '<option value="BALL_MOUNT" selected>' in form
        if action == "split":
            assert 'value="S-1-02" id="split-S-1-02" checked' in form
            assert 'id="split-S-1-01" checked' not in form
        never_a_password(refused.text)
        assert database(station) == before


def test_a_step_tracked_in_and_out_by_hand_refused_keeps_values_and_rejects(
    station: Station,
) -> None:
    """A track-in's recipe value and a track-out's rejected sites come back in the form of
    their step when another field is refused."""
    with logged_in(station, "olga") as client:
        start = client.get("/station/start", params={"flow": "fo-organic"}).text
        data = {"csrf": csrf(start), "flow": "fo-organic", "lot": "K-1", "carriers": "2"}
        assert client.post("/station/start", data=data).status_code == 303
        base = _lot_form(client, "K-1")
        before = database(station)
        data = {**base, "step": "SUBSTRATE_PREP", "value.substrate_material": "glass\x00"}
        refused = client.post("/station/lots/K-1/track-in", data=data)
        assert refused.status_code == 400
        form = form_of(refused.text, "track-in-SUBSTRATE_PREP")
        assert value_of(form, "track-in-SUBSTRATE_PREP-substrate_material") == "glass"
        assert database(station) == before
        base = _lot_form(client, "K-1")
        done = client.post("/station/lots/K-1/track-in", data={**base, "step": "SUBSTRATE_PREP"})
        assert done.status_code == 303, done.text
        base = _lot_form(client, "K-1")
        before = database(station)
        rejects = "K-1-01:1:2:VOID, K-1-02:3:3:CRACK, K-1-02:4"
        refused = client.post(
            "/station/lots/K-1/track-out",
            data={**base, "step": "SUBSTRATE_PREP", "rejects": rejects},
        )
        assert refused.status_code == 422
        assert "expected CARRIER:ROW:COL:CODE" in html.unescape(message(refused.text))
        form = form_of(refused.text, "track-out-SUBSTRATE_PREP")
        assert value_of(form, "track-out-rejects") == rejects
        assert database(station) == before


def test_a_start_refused_for_a_nul_character_keeps_every_field(station: Station) -> None:
    with logged_in(station, "olga") as client:
        page = client.get("/station/start", params={"flow": "fo-organic"}).text
        before = database(station)
        data = {
            "csrf": csrf(page),
            "flow": "fo-organic",
            "lot": "N-1",
            "carriers": "3",
            "rows": "6",
            "priority": "2",
            "param.layers": "4\x00",
        }
        refused = client.post("/station/start", data=data)
        assert refused.status_code == 400
        assert "NUL character" in html.unescape(message(refused.text))
        form = form_of(refused.text, "start-form")
        for name, value in (("lot", "N-1"), ("carriers", "3"), ("rows", "6"), ("priority", "2")):
            assert value_of(form, f"f-{name}") == value
        assert value_of(form, "f-param.layers") == "4"
        assert database(station) == before


def test_a_load_or_unload_refused_keeps_its_field_in_its_own_form(station: Station) -> None:
    """A too-long reason for unloading WIRE-7 comes back beside WIRE-7 (not in the load
    field); a NUL in a scanned id comes back in the load field without it."""
    with logged_in(station, "tom") as client:
        page = client.get("/station/tools/WB-1").text
        before = database(station)
        refused = client.post(
            "/station/tools/WB-1/unload",
            data={"csrf": csrf(page), "material": "WIRE-7", "reason": "spool empty " + LONG},
        )
        assert refused.status_code == 400, refused.text
        unload = form_of(refused.text, "unload-WIRE-7")
        assert re.search(r'name="reason"[^>]* value="spool empty x{1025}"', unload), unload
        assert value_of(form_of(refused.text, "load-form"), "material") == ""
        scanned = client.post(
            "/station/tools/WB-1/load", data={"csrf": csrf(page), "material": "WIRE-8\x00"}
        )
        assert scanned.status_code == 400
        assert value_of(form_of(scanned.text, "load-form"), "material") == "WIRE-8"
        assert database(station) == before


def test_a_release_refused_from_the_holds_page_opens_its_dialog_again_with_its_fields(
    station: Station,
) -> None:
    with logged_in(station, "olga") as client:
        page = client.get("/station/holds").text
        version = re.findall(r'data-lot="S-3" data-version="(\d+)"', page)[0]
        before = database(station)
        refused = client.post(
            "/station/lots/S-3/release",
            data={
                "csrf": csrf(page),
                "back": "holds",
                "lot_version": version,
                "reason": "re-inspected" + LONG,
                "meaning": "approved release (re-inspected)",
                "password": PASSWORDS["olga"],
            },
        )
        assert refused.status_code == 400
        assert 'data-reopen="S-3"' in refused.text  # holds.js opens the dialog for S-3 again
        form = form_of(refused.text, "release-dialog-form")
        assert value_of(form, "dialog-reason") == "re-inspected" + LONG
        assert value_of(form, "dialog-meaning") == "approved release (re-inspected)"
        never_a_password(refused.text)
        assert database(station) == before


def test_a_password_change_refused_never_shows_a_password_again(station: Station) -> None:
    with logged_in(station, "tom") as client:
        page = client.get("/station/password").text
        before = database(station)
        for data in (
            {"current": PASSWORDS["tom"], "new": "tom-New-Secret-1", "again": "tom-New-Secret-2"},
            {"current": PASSWORDS["tom"], "new": "tom-New-Secret-1\x00", "again": "x"},
            {"current": PASSWORDS["tom"], "new": LONG, "again": LONG},
        ):
            refused = client.post("/station/password", data={"csrf": csrf(page), **data})
            assert refused.status_code in (400, 422), refused.text
            assert "nothing was changed" in html.unescape(message(refused.text))
            never_a_password(refused.text)
            assert "tom-New-Secret" not in refused.text and LONG not in refused.text
        assert database(station) == before


def test_a_refused_login_keeps_the_username_not_the_password(station: Station) -> None:
    with httpx.Client(base_url=station.url, timeout=10) as client:
        form = client.get("/station/login")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert token is not None
        data = {"csrf": token[1], "username": "olga", "password": "olga-wrong-password"}
        refused = client.post("/station/login", data=data)
    assert refused.status_code == 401
    assert value_of(refused.text, "username") == "olga"
    assert "olga-wrong-password" not in refused.text
