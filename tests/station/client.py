"""A person at the station over plain HTTP (no browser): log in with the login form's CSRF
token, read a page's form token, read a lot's state from its page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.station.conftest import Station
from tests.station.seed import PASSWORDS


@contextmanager
def logged_in(station: Station, user: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=station.url, timeout=10) as client:
        form = client.get("/station/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None, form.text
        answer = client.post(
            "/station/login",
            data={"csrf": csrf[1], "username": user, "password": PASSWORDS[user]},
        )
        assert answer.status_code == 303, answer.text
        yield client


def csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert found is not None, page
    return found[1]


def lot_version(page: str) -> str:
    """The version of the lot its page showed (every role's page says it, whether or not it
    has a form that sends it)."""
    found = re.search(r'data-lot-version="(\d+)"', page)
    assert found is not None, page
    return found[1]


def lot_state(client: httpx.Client, lot: str) -> str:
    page = client.get(f"/station/lots/{lot}")
    found = re.search(r'id="lot-state"[^>]*>([A-Z]+)<', page.text)
    assert found is not None, page.text
    return found[1]


def message(page: str) -> str:
    found = re.search(r'id="message">([^<]*)<', page)
    assert found is not None, page
    return found[1]
