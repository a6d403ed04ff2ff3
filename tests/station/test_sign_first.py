"""A person whose password an admin set (a new account, a reset) logs in with it but signs
nothing until they choose their own: the lot page and the holds page say so where they
offer a signed form, before it is filled in, and stop saying it once the password is
theirs."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest

from pkgline.api.auth import ApiState
from tests.station.client import csrf, logged_in
from tests.station.conftest import Station, running_station
from tests.station.seed import OWNER, PASSWORDS


async def _reset_by_an_admin(state: ApiState) -> None:
    await state.identity.set_password(OWNER, "quinn", PASSWORDS["quinn"])


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    with running_station(tmp_path_factory.mktemp("station"), prepare=_reset_by_an_admin) as s:
        yield s


def _note(page: str) -> str | None:
    found = re.search(r'id="sign-first">(.*?)</p>', page, re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", found[1])) if found else None


def test_the_pages_of_a_signed_form_say_an_admins_password_signs_nothing(
    station: Station,
) -> None:
    """Quinn (quality), her password reset by an admin, opens S-3 (held) and the holds page:
    both offer the release, and say first that her password, set by test-owner, signs
    nothing until she chooses her own on her Password page (she had learnt it from the
    refusal, after typing the release's reason). Olga, whose password is her own, is told
    nothing; once Quinn has changed hers, neither is she."""
    with logged_in(station, "quinn") as client:
        lot = client.get("/station/lots/S-3").text
        assert 'id="release-form"' in lot
        assert _note(lot) == (
            "Your password was set by test-owner: it logs you in, but signs nothing (a release, "
            "a scrap, a rework) until you choose your own on your Password page."
        )
        assert 'href="/station/password"' in lot
        holds = client.get("/station/holds").text
        assert 'id="release-S-3"' in holds
        assert _note(holds) == (
            "Your password was set by test-owner: it logs you in, but signs nothing (a release) "
            "until you choose your own on your Password page."
        )
        form = client.get("/station/password").text
        new = "quinn-Own-Pa55word"
        changed = client.post(
            "/station/password",
            data={"csrf": csrf(form), "current": PASSWORDS["quinn"], "new": new, "again": new},
        )
        assert changed.status_code == 303, changed.text
        assert _note(client.get("/station/lots/S-3").text) is None
        assert _note(client.get("/station/holds").text) is None
    with logged_in(station, "olga") as client:
        lot = client.get("/station/lots/S-3").text
        assert 'id="release-form"' in lot and _note(lot) is None
