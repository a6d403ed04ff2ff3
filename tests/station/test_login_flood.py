"""A host that keeps failing logins is throttled by the real server: past twenty failed
password checks in ten minutes (at any names, none of them locked), its next login, through
the station's form or ``POST /session``, is answered 429 with when to try again, before any
password is checked, and recorded with the host it came from. Over HTTP against a real
``pkgline api``, with a server of this module's own (the throttle holds its host)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx

from mes.domain.identity import EventKind
from mes.domain.throttle import DEFAULT_LIMIT
from pkgline.api.server import open_state
from tests.station.client import message
from tests.station.conftest import Station
from tests.station.seed import OWNER, PASSWORDS, fast_passwords


def _login(client: httpx.Client, user: str, password: str) -> httpx.Response:
    form = client.get("/station/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None, form.text
    return client.post(
        "/station/login", data={"csrf": token[1], "username": user, "password": password}
    )


async def _refusals(db: str) -> list[Any]:
    async with open_state(db, passwords=fast_passwords()) as state:
        events = await state.identity.events(OWNER)
    return [e for e in events if e.kind is EventKind.LOGIN_FAILED]


def test_a_host_past_twenty_failed_logins_is_answered_429_until_they_age(
    station: Station,
) -> None:
    names = ("olga", "tom", "ada", "nobody", "no-one")  # four guesses each: no account locked
    with httpx.Client(base_url=station.url, timeout=10) as client:
        for i in range(DEFAULT_LIMIT):
            refused = _login(client, names[i % len(names)], f"guess {i}")
            assert refused.status_code == 401, refused.text
        throttled = _login(client, "olga", PASSWORDS["olga"])  # the right password, unchecked
        assert throttled.status_code == 429, throttled.text
        said = message(throttled.text)
        assert "too many failed password checks from host 127.0.0.1" in said, said
        assert "pkgline_station" not in client.cookies  # no session
        api = client.post("/session", json={"username": "olga", "password": PASSWORDS["olga"]})
    assert api.status_code == 429, api.text
    body = api.json()
    assert body["error"] == "too_many_failures"
    assert api.headers["retry-after"] == str(body["retry_after_seconds"])
    assert 0 < body["retry_after_seconds"] <= 600

    refusals = asyncio.run(_refusals(station.db))
    assert len(refusals) == DEFAULT_LIMIT + 2
    unchecked = refusals[-2:]
    assert all(e.actor == "olga" and e.detail["failures"] == DEFAULT_LIMIT for e in unchecked)
    assert all(e.detail["from"].startswith("127.0.0.1:") for e in unchecked)
    assert all("not checked" in e.detail["why"] for e in unchecked)
    assert all("not checked" not in e.detail["why"] for e in refusals[:-2])
