"""The lot page's rework and whole-lot scrap over HTTP against a real server. A held lot is
offered the reworkable steps it has run and a scrap of the whole lot, each signed with the
asker's password; a refusal (no reason, a role that may not, a wrong password, a step the
rework may not go back to) is shown on the page and changes nothing."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Iterator

import httpx
import pytest

from mes.domain import commands as cmd
from pkgline.api.server import open_state
from tests.station.client import csrf, logged_in, lot_state, lot_version, message
from tests.station.conftest import Station, running_station
from tests.station.seed import OWNER, PASSWORDS, fast_passwords


async def _held_after_ball_mount(db: str) -> None:
    """R-1, a stiffener-bga lot, held after BALL_MOUNT (reworkable, through nothing after it);
    R-2, the same flow, held before any step; R-3 waiting; R-4 running its first step; R-5
    held before any step, left as it is (its page's forms are read); a hold and a scrap
    reason code."""
    async with open_state(db, passwords=fast_passwords()) as state:
        lots = state.services.lots.acting_as(OWNER)
        for lot_id in ("R-1", "R-2", "R-5"):
            await lots.start(cmd.StartLot(lot_id, "stiffener-bga", "olga", carriers=1))
        while "BALL_MOUNT" not in (await lots.get("R-1")).path:
            step = lots.next_in_order(await lots.get("R-1"))[0]
            await lots.track_in(cmd.TrackIn("R-1", step, "olga", None, {}))
            await lots.track_out(cmd.TrackOut("R-1", "olga", {}, ()))
        for lot_id in ("R-1", "R-2", "R-5"):
            await lots.hold(cmd.HoldLot(lot_id, "olga", "bridged balls at inspection"))
        await lots.start(cmd.StartLot("R-3", "stiffener-bga", "olga", carriers=1))  # waits
        await lots.start(cmd.StartLot("R-4", "stiffener-bga", "olga", carriers=1))
        await lots.track_in(cmd.TrackIn("R-4", "SUBSTRATE_LOAD", "olga", None, {}))  # runs
        reasons = state.services.reasons
        await reasons.add(
            "VOID", "hold", "voids at X-ray", "quinn", release_roles=["engineer"], by=OWNER
        )
        await reasons.add("DROP", "scrap", "dropped carrier", "quinn", by=OWNER)


LINE_TOML = 'name = "line-1"\n\n[signatures]\ntwo_signers = ["scrap"]\n'
"""A scrap of a whole lot signed by two people, as in the example line.toml."""


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    with running_station(tmp_path_factory.mktemp("station"), LINE_TOML) as running:
        asyncio.run(_held_after_ball_mount(running.db))
        yield running


def _signed(client: httpx.Client, lot: str, user: str, **fields: str) -> dict[str, str]:
    """A form of the lot's page as ``user`` signs it: the page's token and lot version, the
    password given again and the meaning the page proposes."""
    page = client.get(f"/station/lots/{lot}").text
    return {
        "csrf": csrf(page),
        "lot_version": lot_version(page),
        "password": PASSWORDS[user],
        "meaning": "approved rework" if "step" in fields else "approved scrap",
        **fields,
    }


def test_a_held_lot_is_offered_the_reworkable_steps_it_has_run(station: Station) -> None:
    with logged_in(station, "erin") as client:
        page = client.get("/station/lots/R-1").text
        steps = re.findall(r'<select id="rework-step" name="step">(.*?)</select>', page, re.S)
        assert steps and re.findall(r'<option value="([A-Z_]+)"', steps[0]) == ["BALL_MOUNT"]
        assert 'id="rework-meaning"' in page and 'value="approved rework"' in page
        # R-2 has run nothing: no rework offered, a split is (a scrap is quality's)
        fresh = client.get("/station/lots/R-2").text
        assert 'id="rework-form"' not in fresh and 'id="split-form"' in fresh


def test_a_rework_is_signed_and_refused_on_the_page_without_a_reason_or_role(
    station: Station,
) -> None:
    with logged_in(station, "olga") as client:  # an operator and quality: no engineer
        data = _signed(client, "R-1", "olga", step="BALL_MOUNT", reason="bridged balls")
        refused = client.post("/station/lots/R-1/rework", data=data)
        assert refused.status_code == 403
        assert "may not rework" in html.unescape(message(refused.text))
        assert lot_state(client, "R-1") == "HOLD"
    with logged_in(station, "erin") as client:
        data = _signed(client, "R-1", "erin", step="BALL_MOUNT", reason=" ")
        empty = client.post("/station/lots/R-1/rework", data=data)
        assert empty.status_code == 422 and "reason" in message(empty.text)
        wrong = client.post(
            "/station/lots/R-1/rework", data={**data, "reason": "bridged", "password": "nope"}
        )
        assert wrong.status_code == 403  # the signature, not the session
        assert lot_state(client, "R-1") == "HOLD"
        other = client.post(
            "/station/lots/R-1/rework", data={**data, "step": "MOLD", "reason": "bridged"}
        )
        assert other.status_code == 409
        assert "MOLD is not a reworkable step" in html.unescape(message(other.text))
        done = client.post("/station/lots/R-1/rework", data={**data, "reason": "bridged balls"})
        assert done.status_code == 303, done.text
        after = client.get(done.headers["location"]).text
        assert "sent back for rework" in after
        assert lot_state(client, "R-1") == "WAITING"
        assert "approved rework" in after  # the signature's meaning in the history


def test_a_whole_lot_is_scrapped_signed_by_two_of_quality(station: Station) -> None:
    with logged_in(station, "erin") as client:  # an engineer: scrap is quality's
        data = _signed(client, "R-2", "erin", reason="bridged balls everywhere")
        refused = client.post("/station/lots/R-2/scrap", data=data)
        assert refused.status_code == 403
        assert lot_state(client, "R-2") == "HOLD"
    with logged_in(station, "quinn") as client:
        page = client.get("/station/lots/R-2").text
        form = re.search(r'id="scrap-lot-form">(.*?)</form>', page, re.S)
        assert form is not None and 'data-signers="2"' in form[1]  # a second signer's fields
        data = _signed(client, "R-2", "quinn")
        empty = client.post("/station/lots/R-2/scrap", data={**data, "reason": ""})
        assert empty.status_code == 422 and "reason" in message(empty.text)
        assert "or give a scrap reason code" in html.unescape(message(empty.text))
        alone = client.post("/station/lots/R-2/scrap", data={**data, "reason": "bridged balls"})
        assert alone.status_code == 422 and "signed by two" in html.unescape(message(alone.text))
        assert lot_state(client, "R-2") == "HOLD"
        second = {"second_username": "olga", "second_password": PASSWORDS["olga"]}
        done = client.post(
            "/station/lots/R-2/scrap", data={**data, **second, "reason": "bridged balls"}
        )
        assert done.status_code == 303, done.text
        assert "The lot was scrapped." in client.get(done.headers["location"]).text
        assert lot_state(client, "R-2") == "SCRAPPED"


def test_a_lot_is_held_with_a_reason_code_of_the_catalogue(station: Station) -> None:
    """The hold form takes a hold reason code, as `lot hold --code` does (found probing the
    station: it had no code field, and an empty reason was answered with the CLI's
    "(--reason TEXT)"); the codes of the catalogue are offered beside the hold's and the
    scrap's code fields; a code's release roles then apply."""
    with logged_in(station, "olga") as client:
        page = client.get("/station/lots/R-3").text
        offered = re.search(r'<datalist id="hold-codes">(.*?)</datalist>', page, re.S)
        assert offered is not None and '<option value="VOID">voids at X-ray' in offered[1]
        assert "DROP" not in offered[1]  # a scrap code
        data = {"csrf": csrf(page), "reason": " ", "code": ""}
        empty = client.post("/station/lots/R-3/hold", data=data)
        assert empty.status_code == 422
        assert "say why the lot is held, or give a hold reason code" in html.unescape(
            message(empty.text)
        )
        assert "--reason" not in empty.text
        assert lot_state(client, "R-3") == "WAITING"
        done = client.post("/station/lots/R-3/hold", data={**data, "code": "VOID"})
        assert done.status_code == 303, done.text
        held = client.get("/station/lots/R-3").text
        assert re.search(r'id="lot-hold">VOID voids at X-ray', held), held
        # no release form for her, and the hold says whose it is (as the holds page does)
        assert 'id="release-form"' not in held
        assert '<span class="note not-yours" id="release-by">release: engineer</span>' in held
        holds = html.unescape(client.get("/station/holds").text)
        row = re.search(r'<a href="/station/lots/R-3">R-3</a></td>(.*?)</tr>', holds, re.S)
        assert row is not None, holds
        assert "VOID voids at X-ray" in row[1] and "(VOID)" not in row[1]  # the code once
        page = client.get("/station/lots/R-3").text
        refused = client.post(
            "/station/lots/R-3/release",
            data={
                "csrf": csrf(page),
                "lot_version": lot_version(page),
                "reason": "looked again",
                "meaning": "approved release",
                "password": PASSWORDS["olga"],
            },
        )
        assert refused.status_code == 403
        assert "released by engineer" in html.unescape(message(refused.text))
        assert lot_state(client, "R-3") == "HOLD"
    with logged_in(station, "quinn") as client:
        page = client.get("/station/lots/R-1").text
        scrap_codes = re.search(r'<datalist id="scrap-codes">(.*?)</datalist>', page, re.S)
        assert scrap_codes is not None and '<option value="DROP">dropped carrier' in scrap_codes[1]


def test_each_signature_field_takes_the_meaning_the_lot_tracker_takes(station: Station) -> None:
    """A signature's meaning has at most 500 characters (mes.domain.signatures); the forms'
    fields let 1,024 be typed, then the server refused them (found probing the station)."""
    from mes.domain.signatures import MAX_MEANING_LENGTH

    with logged_in(station, "quinn") as client:
        pages = client.get("/station/lots/R-5").text + client.get("/station/holds").text
    fields = re.findall(r'<input id="([^"]+)" name="meaning" maxlength="(\d+)"', pages)
    assert {"release-meaning", "scrap-lot-meaning", "dialog-meaning"} <= {f for f, _ in fields}
    assert {int(n) for _, n in fields} == {MAX_MEANING_LENGTH}


def test_a_lot_held_while_it_ran_says_what_was_done_at_the_step(station: Station) -> None:
    """A hold stops the running step; its record says which step and which carriers were
    done, as lot show prints under the hold (the station's page did not: found comparing
    the two)."""
    with logged_in(station, "olga") as client:
        page = client.get("/station/lots/R-4").text
        held = client.post(
            "/station/lots/R-4/hold", data={"csrf": csrf(page), "reason": "substrate cracked"}
        )
        assert held.status_code == 303, held.text
        page = client.get("/station/lots/R-4").text
    shown = re.search(r'<dt>done at step</dt><dd class="hold-record">([^<]*)</dd>', page)
    assert shown is not None, page
    assert shown[1] == "SUBSTRATE_LOAD: no carrier done"
