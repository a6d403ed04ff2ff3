"""A form refused for its CSRF token changes nothing and is recorded in the security log, as
every refusal of authority is: who the session is (or, at the login, whom the form named),
which form and why, never the token; what the log keeps of a form the client chose (its path,
a user name) is cut to a bounded length. Over HTTP against a real server."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from tests.station.client import csrf, logged_in, lot_state
from tests.station.conftest import Station
from tests.station.seed import PASSWORDS


def _events(station: Station, **params: str) -> list[dict[str, Any]]:
    """The security log's events (newest first) as the API answers them to an admin."""
    with logged_in(station, "ada") as admin:
        bearer = {"authorization": f"Bearer {admin.cookies['pkgline_station']}"}
        answer = admin.get("/security/events", params=params, headers=bearer)
        assert answer.status_code == 200, answer.text
        events: list[dict[str, Any]] = answer.json()["events"]
        return events


def _newest_seq(station: Station) -> int:
    return max((e["seq"] for e in _events(station)), default=0)


def _since(station: Station, seq: int, **params: str) -> list[dict[str, Any]]:
    """The events after ``seq``, oldest first."""
    return [e for e in reversed(_events(station, **params)) if e["seq"] > seq]


def test_a_form_refused_for_its_csrf_token_is_recorded_with_who_which_form_and_why(
    station: Station,
) -> None:
    """A hold with another session's token, a material load with none and a logout with a
    made-up one: each 400, nothing changed (olga still logged in, S-1 still waiting), and
    each a ``refused`` event of olga's session naming the form and why, never the token."""
    with logged_in(station, "olga") as client:
        page = client.get("/station/lots/S-1").text
        with logged_in(station, "olga") as other:
            others = csrf(other.get("/station/lots/S-1").text)
        assert others != csrf(page)
        before = _newest_seq(station)
        sent = [
            ("/station/lots/S-1/hold", {"csrf": others, "reason": "forged"}),
            ("/station/tools/DA-1/load", {"material": "WIRE-9"}),
            ("/station/logout", {"csrf": "0" * 64}),
        ]
        for path, data in sent:
            answer = client.post(path, data=data)
            assert answer.status_code == 400, (path, answer.text)
        assert lot_state(client, "S-1") == "WAITING"  # still logged in: the logout was refused
        session = client.cookies["pkgline_station"]
    recorded = _since(station, before, user="olga")
    assert [(e["kind"], e["actor"], e["method"]) for e in recorded] == [
        ("refused", "olga", "session")
    ] * 3, recorded
    assert [(e["detail"]["form"], e["detail"]["why"]) for e in recorded] == [
        (
            "POST /station/lots/S-1/hold",
            "the form's CSRF token is not this session's (another site's form, or a page of "
            "an ended session)",
        ),
        ("POST /station/tools/DA-1/load", "the form carries no CSRF token"),
        (
            "POST /station/logout",
            "the form's CSRF token is not this session's (another site's form, or a page of "
            "an ended session)",
        ),
    ]
    text = json.dumps(recorded)
    for secret in (others, "0" * 64, session, PASSWORDS["olga"]):
        assert secret not in text


def test_a_forged_form_with_a_long_path_is_recorded_cut_to_a_bounded_length(
    station: Station,
) -> None:
    """The path is the client's to choose: a hold posted to a lot id of 5,000 characters is
    refused (422: no lot has such an id) and recorded with the form's name cut to
    200 characters, its length said."""
    with logged_in(station, "olga") as client:
        before = _newest_seq(station)
        answer = client.post(f"/station/lots/{'L' * 5000}/hold", data={"reason": "x"})
        assert answer.status_code == 422 and "is not a lot id: expected 1-32" in answer.text
    [event] = _since(station, before, user="olga")
    assert event["kind"] == "refused"
    assert event["detail"]["form"] == "POST /station/lots/" + "L" * 161 + "... (5024 chars)"
    assert len(event["detail"]["form"]) == 196


def test_a_login_form_refused_for_its_token_is_recorded_as_a_failed_login(
    station: Station,
) -> None:
    """A login posted without its form's token (another site's login form) is refused, logs
    nobody in and is recorded as a failed login of the name it gave (cut past 64 characters,
    its length said, as the API records a claimed name),
    the form and why, never the password nor the token; one that names nobody claims no
    one's identity and is not recorded (a scanner's post would fill the log)."""
    before = _newest_seq(station)
    with httpx.Client(base_url=station.url, timeout=10) as client:
        form = client.get("/station/login")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert token is not None
        for data in (
            {"csrf": "forged", "username": "olga", "password": PASSWORDS["olga"]},
            {"username": "u" * 300, "password": "x"},
            {"csrf": "forged", "username": "", "password": "x"},
            {},
        ):
            answer = client.post("/station/login", data=data)
            assert answer.status_code == 400, answer.text
            assert "pkgline_station=" not in answer.headers.get("set-cookie", "")
    recorded = _since(station, before, kind="login_failed")
    assert all(e["detail"].pop("from").startswith("127.0.0.1:") for e in recorded), recorded
    assert [(e["kind"], e["actor"], e["method"], e["detail"]) for e in recorded] == [
        (
            "login_failed",
            "olga",
            "password",
            {
                "form": "POST /station/login",
                "why": "the login form's CSRF token does not match its cookie (another "
                "site's form, or a login page over an hour old)",
            },
        ),
        (
            "login_failed",
            "u" * 44 + "... (300 chars)",
            "password",
            {"form": "POST /station/login", "why": "the form carries no CSRF token"},
        ),
    ], recorded
    assert PASSWORDS["olga"] not in json.dumps(recorded) and token[1] not in json.dumps(recorded)
