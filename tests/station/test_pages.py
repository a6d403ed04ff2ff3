"""The station's pages over HTTP without a browser: no anonymous access, the session
cookie's attributes, CSRF on every form, refusals shown on the page changing nothing, the
live stream. (tests/station/test_browser.py drives a real browser through the same.)"""

from __future__ import annotations

import html
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.station.client import csrf, logged_in, lot_state, lot_version, message
from tests.station.conftest import Station, running_station
from tests.station.seed import PASSWORDS


@contextmanager
def _login(station: Station, user: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=station.url, timeout=10) as client:
        _log_in(client, user)
        yield client


def _log_in(client: httpx.Client, user: str) -> None:
    form = client.get("/station/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None, form.text
    answer = client.post(
        "/station/login",
        data={
            "csrf": csrf[1],
            "username": user,
            "password": PASSWORDS[user],
            "next": "/station/",
        },
    )
    assert answer.status_code == 303, answer.text


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert found is not None, page
    return found[1]


def _state(station: Station, client: httpx.Client, lot: str) -> str:
    page = client.get(f"/station/lots/{lot}")
    found = re.search(r'id="lot-state"[^>]*>([A-Z]+)<', page.text)
    assert found is not None, page.text
    return found[1]


@pytest.mark.parametrize("path", ["/station/", "/station/lots/S-1", "/station/line/events", "/"])
def test_every_page_redirects_to_the_login_without_a_session(station: Station, path: str) -> None:
    answer = httpx.get(station.url + path, follow_redirects=True, timeout=10)
    assert answer.status_code == 200
    assert answer.url.path == "/station/login"
    assert 'name="password"' in answer.text


def test_the_session_cookie_is_httponly_samesite_strict_and_logout_ends_the_session(
    station: Station,
) -> None:
    with httpx.Client(base_url=station.url, timeout=10) as client:
        _session_then_logout(station, client)


def _session_then_logout(station: Station, client: httpx.Client) -> None:
    form = client.get("/station/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    answer = client.post(
        "/station/login",
        data={"csrf": csrf[1], "username": "olga", "password": PASSWORDS["olga"]},
    )
    cookie = next(
        v for k, v in answer.headers.multi_items() if k == "set-cookie" and "pkgline_station=" in v
    )
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/station" in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback; HTTPS pages set Secure
    token = client.cookies["pkgline_station"]
    page = client.get("/station/")
    assert page.status_code == 200 and 'data-tool="PREP-1"' in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    assert token not in page.text  # the token is never in a page
    client.post("/station/logout", data={"csrf": _csrf(page.text)})
    # the stored session is ended: the old cookie, sent again, is refused
    again = httpx.get(station.url + "/station/", cookies={"pkgline_station": token}, timeout=10)
    assert again.status_code == 303 and again.headers["location"].startswith("/station/login")


def test_a_wrong_password_is_shown_on_the_login_page(station: Station) -> None:
    with httpx.Client(base_url=station.url, timeout=10) as client:
        form = client.get("/station/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        answer = client.post(
            "/station/login", data={"csrf": csrf[1], "username": "olga", "password": "wrong"}
        )
    assert answer.status_code == 401
    assert 'id="message"' in answer.text and "pkgline_station=" not in answer.headers.get(
        "set-cookie", ""
    )


def test_a_login_without_its_form_token_is_refused(station: Station) -> None:
    answer = httpx.post(
        station.url + "/station/login",
        data={"csrf": "forged", "username": "olga", "password": PASSWORDS["olga"]},
        timeout=10,
    )
    assert answer.status_code == 400 and "pkgline_station=" not in answer.headers.get(
        "set-cookie", ""
    )


def test_a_form_without_the_sessions_csrf_token_changes_nothing(station: Station) -> None:
    with _login(station, "olga") as client:
        before = _state(station, client, "S-1")
        answer = client.post("/station/lots/S-1/hold", data={"reason": "x", "csrf": "0" * 64})
        assert answer.status_code == 400 and "nothing was changed" in answer.text
        assert _state(station, client, "S-1") == before == "WAITING"


def test_a_form_sent_after_the_session_ended_logs_in_again_to_the_page_it_came_from(
    station: Station,
) -> None:
    """The session ends (a logout elsewhere) while a lot's page is open; its hold is sent:
    nothing is held, the login says the session had ended, then goes back to the lot's page
    (not the form's own address, which a browser cannot send again), which says nothing was
    done and to send the form again; the hold is not done by the login."""
    with _login(station, "olga") as client:
        page = client.get("/station/lots/S-1")
        elsewhere = {"pkgline_station": client.cookies["pkgline_station"]}
        ended = httpx.post(
            station.url + "/station/logout",
            data={"csrf": _csrf(page.text)},
            cookies=elsewhere,
            timeout=10,
        )
        assert ended.status_code == 303
        sent = client.post("/station/lots/S-1/hold", data={"reason": "x", "csrf": _csrf(page.text)})
        assert sent.status_code == 303
        assert sent.headers["location"] == "/station/login?next=/station/lots/S-1%3Fexpired%3D1"
        landed = _log_in_again(client, sent.headers["location"])
        assert landed.url.path == "/station/lots/S-1"
        assert "nothing was done" in _expired_note(landed.text)
        assert _state(station, client, "S-1") == "WAITING"
        assert 'id="expired"' not in client.get("/station/lots/S-1").text  # only that once


def _log_in_again(client: httpx.Client, login: str) -> httpx.Response:
    """Olga logs in on the login page the station sent her to; where it goes on to."""
    form = client.get(login)
    assert form.status_code == 200 and 'id="ended"' in form.text, form.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    next_field = re.search(r'name="next" value="([^"]*)"', form.text)
    assert csrf is not None and next_field is not None, form.text
    data = {
        "csrf": csrf[1],
        "username": "olga",
        "password": PASSWORDS["olga"],
        "next": html.unescape(next_field[1]),
    }
    answer = client.post("/station/login", data=data, follow_redirects=True)
    assert answer.status_code == 200, answer.text
    return answer


def _expired_note(page: str) -> str:
    found = re.search(r'id="expired">([^<]*)<', page)
    assert found is not None, page
    return html.unescape(found[1])


def _expire(station: Station, client: httpx.Client) -> None:
    """Olga's session expires now (its end moved to the past in the database), and the
    server has seen it (it keeps a session's person for about a second)."""
    token = client.cookies["pkgline_station"]
    with sqlite3.connect(station.db.removeprefix("sqlite:///")) as db:
        db.execute("UPDATE api_sessions SET expires_at = '2000-01-01 00:00:00.000000'")
    deadline = time.monotonic() + 10
    while True:
        probe = httpx.get(station.url + "/station/", cookies={"pkgline_station": token}, timeout=10)
        if probe.status_code == 303:
            return
        assert time.monotonic() < deadline, "the expired session still answers"
        time.sleep(0.2)


def test_a_form_sent_after_the_session_expired_changes_nothing_and_comes_back_to_its_page(
    station: Station,
) -> None:
    """The session expires while Olga fills in a scrap of sites, a release on the holds page
    and a start: each sent form changes nothing, the login goes back to the page it was on
    (the holds page with the lot's release dialog to open again, the start page of the flow
    chosen), which says so. What the form said is never in the address: the lot's sites and
    reason, the passwords (only which page: the lot, the flow)."""
    secret = PASSWORDS["olga"]
    for path, data, goes_to in (
        (
            "/station/lots/S-1/scrap-sites",
            {"sites": "S-1-01:1:1", "reason": "chipped edge", "password": secret},
            "/station/lots/S-1?expired=1",
        ),
        (
            "/station/lots/S-3/release",
            {"back": "holds", "reason": "re-inspected", "password": secret},
            "/station/holds?lot=S-3&expired=1",
        ),
        (
            "/station/start",
            {"flow": "fo-organic", "lot": "E-1", "carriers": "2"},
            "/station/start?flow=fo-organic&expired=1",
        ),
    ):
        with _login(station, "olga") as client:
            page = client.get("/station/lots/S-1").text
            before = {lot: _state(station, client, lot) for lot in ("S-1", "S-3")}
            _expire(station, client)
            sent = client.post(
                path, data={"csrf": _csrf(page), "lot_version": lot_version(page), **data}
            )
            assert sent.status_code == 303, sent.text
            login = sent.headers["location"]
            assert login.startswith("/station/login?next=")
            for word in ("chipped", "re-inspected", secret, "E-1"):
                assert word not in login
            landed = _log_in_again(client, login)
            assert str(landed.url).removeprefix(station.url) == goes_to
            assert "nothing was done" in _expired_note(landed.text)
            if "holds" in goes_to:
                assert 'data-reopen="S-3"' in landed.text
            if "start" in goes_to:
                assert 'id="start-form"' in landed.text
            assert {lot: _state(station, client, lot) for lot in before} == before
            assert "E-1" not in client.get("/station/").text
            assert client.get("/station/lots/E-1").status_code == 404


def test_a_new_person_chooses_their_own_password_at_the_station_to_sign(
    station: Station,
) -> None:
    """An admin adds nina with a first password: it logs her in, but one someone else set
    cannot sign, and a person who works only at the station had no way to choose her own.
    The password page says so and changes it (the current one proven, the new one twice; a
    wrong current one or a repetition that differs changes nothing); her session goes on."""
    with _login(station, "ada") as admin:
        token = admin.cookies["pkgline_station"]
        added = admin.post(
            "/users",
            json={"username": "nina", "name": "Nina New", "roles": ["operator"],
                  "password": "nina-Initial-0"},
            headers={"authorization": f"Bearer {token}"},
        )  # fmt: skip
        assert added.status_code == 201, added.text
    with httpx.Client(base_url=station.url, timeout=10) as client:
        form = client.get("/station/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        data = {"csrf": csrf[1], "username": "nina", "password": "nina-Initial-0"}
        assert client.post("/station/login", data=data).status_code == 303
        page = client.get("/station/password")
        assert page.status_code == 200 and 'id="may-not-sign"' in page.text
        assert 'href="/station/password"' in client.get("/station/").text
        # signing first is refused, and says where to change it (it named only the CLI's
        # command, which a person at the station cannot run: found probing the station)
        lot = client.get("/station/lots/S-3").text
        signed = {"lot_version": lot_version(lot), "reason": "checked", "meaning": "ok"}
        refused = client.post(
            "/station/lots/S-3/release",
            data={"csrf": _csrf(lot), **signed, "password": "nina-Initial-0"},
        )
        assert refused.status_code == 403
        said = html.unescape(message(refused.text))
        assert "someone else set (ada): change it first (the operator station's Password" in said
        assert lot_state(client, "S-3") == "HOLD"
        base = {"csrf": _csrf(page.text), "current": "nina-Initial-0", "new": "nina-Own-Secret-1"}
        differs = client.post("/station/password", data={**base, "again": "nina-Own-Secret-2"})
        assert differs.status_code == 422 and "differ" in message(differs.text)
        wrong = client.post(
            "/station/password",
            data={**base, "current": "not-it-at-all", "again": "nina-Own-Secret-1"},
        )
        assert wrong.status_code in (401, 403) and "wrong" in message(wrong.text)
        done = client.post("/station/password", data={**base, "again": "nina-Own-Secret-1"})
        assert done.status_code == 303, done.text
        after = client.get(done.headers["location"])
        assert after.status_code == 200 and 'id="notice"' in after.text
        assert 'id="may-not-sign"' not in after.text  # the same session goes on
        # the same form sent again (a double click; back, then the form again): done already,
        # not "wrong password" counted towards her lockout (the probe's)
        again = client.post("/station/password", data={**base, "again": "nina-Own-Secret-1"})
        assert again.status_code == 303, message(again.text)
    with _login(station, "ada") as admin:
        shown = admin.get(
            "/users/nina", headers={"authorization": f"Bearer {admin.cookies['pkgline_station']}"}
        ).json()
    assert (shown["password_set_by"], shown["may_sign"]) == ("nina", True)
    assert shown["failed_attempts"] == 0


def test_a_role_that_may_not_release_is_refused_on_the_page_and_nothing_changes(
    station: Station,
) -> None:
    with _login(station, "tom") as client:
        page = client.get("/station/lots/S-3")
        answer = client.post(
            "/station/lots/S-3/release",
            data={
                "reason": "fine",
                "csrf": _csrf(page.text),
                "lot_version": lot_version(page.text),
            },
        )
        assert answer.status_code == 403
        assert "may not release" in answer.text and 'id="message"' in answer.text
        assert _state(station, client, "S-3") == "HOLD"


def test_an_unknown_lot_and_a_hold_without_reason_are_messages(station: Station) -> None:
    with _login(station, "olga") as client:
        found = client.get("/station/lot", params={"id": " NOPE-9 "}, follow_redirects=True)
        assert found.status_code == 404 and "NOPE-9" in found.text
        page = client.get("/station/lots/S-2")
        answer = client.post(
            "/station/lots/S-2/hold", data={"reason": "", "csrf": _csrf(page.text)}
        )
        assert answer.status_code == 422 and 'id="message"' in answer.text
        assert "Traceback" not in answer.text
        assert _state(station, client, "S-2") == "RUNNING"


def test_the_line_stream_sends_the_line_and_ends_with_the_session(station: Station) -> None:
    """The stream's first event is the rendered line; a logout (from another tab) ends it
    with a ``logout`` event at the next poll."""
    with _login(station, "olga") as client, client.stream("GET", "/station/line/events") as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        lines = events.iter_lines()
        seen = []
        for line in lines:
            seen.append(line)
            if line.startswith("data:") and "PREP-1" in line:
                break
        assert "event: line" in seen
        page = client.get("/station/")
        client.post("/station/logout", data={"csrf": _csrf(page.text)})
        rest = []
        for line in lines:
            rest.append(line)
            if line == "event: logout":
                break
        assert rest[-1] == "event: logout", rest


def test_what_no_station_route_answers_is_a_page_and_the_api_keeps_its_json(
    station: Station,
) -> None:
    """A link mistyped or gone, a method no page takes and a form over the body limit get a
    page that says so in a browser's words (they got the API's JSON); the API's routes keep
    their JSON refusals."""
    with _login(station, "olga") as client:
        gone = client.get("/station/nosuch")
        wrong = client.delete("/station/")
        large = client.post("/station/login", content=b"x" * 300_000)  # over 256 KB
        api = client.get("/nosuch")
    for answer, status, said in (
        (gone, 404, "There is no page /station/nosuch at the station."),
        (wrong, 405, "/station/ is not for DELETE"),
        (large, 413, "larger than the station reads; nothing was changed"),
    ):
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"].startswith("text/html"), answer.headers
        assert said in html.unescape(message(answer.text)), answer.text
    assert api.status_code == 404 and api.json()["error"] == "not_found"


@pytest.mark.parametrize(
    ("address", "page"),
    [
        ("/station/lots/S-1/track-in", "/station/lots/S-1"),
        ("/station/lots/S-3/release", "/station/lots/S-3"),
        ("/station/tools/WB-1/load", "/station/tools/WB-1"),
        ("/station/materials/DAF-7/quarantine", "/station/materials/DAF-7"),
    ],
)
def test_a_forms_address_asked_for_as_a_page_leads_to_the_page_the_form_is_on(
    station: Station, address: str, page: str
) -> None:
    """A refused form is shown at its own address; asked for again as a page (reloaded, its
    tab restored, the address given again) it leads to the page of the form as it is now,
    where it was a dead end ("not for GET"). Nothing is sent, nothing changed."""
    with _login(station, "olga") as client:
        before = _state(station, client, "S-1")
        answer = client.get(address)
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == page
        assert client.get(page).status_code == 200
        assert _state(station, client, "S-1") == before
        still = client.get("/station/logout")  # no page has a form there: still refused
        assert still.status_code == 405 and "is not for GET" in html.unescape(still.text)


@pytest.mark.parametrize(
    ("given", "goes_to"),
    [
        ("/station/lots/S-1?map=at%3A1", "/station/lots/S-1?map=at%3A1"),
        ("/station/../../x", "/station/"),  # the probe's: dot segments leave the station
        ("/station/%2e%2e/x", "/station/"),  # as the browser reads them
        ("/station/./lots", "/station/"),
        ("//evil.example/station/", "/station/"),
        ("/station/%2f%2fevil.example", "/station/"),
        ("https://evil.example/station/", "/station/"),
        ("/station/\\evil", "/station/"),
    ],
)
def test_the_login_goes_on_only_to_a_page_of_the_station(
    station: Station, given: str, goes_to: str
) -> None:
    with httpx.Client(base_url=station.url, timeout=10) as client:
        form = client.get("/station/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None, form.text
        data = {"csrf": csrf[1], "username": "olga", "password": PASSWORDS["olga"], "next": given}
        answer = client.post("/station/login", data=data)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == goes_to


def test_a_nul_character_in_a_form_is_refused_on_the_page_on_postgresql(
    tmp_path: Path, postgres_url: str
) -> None:
    """The probe's: on PostgreSQL a form's field holding a NUL character (U+0000, which no
    id or text of pkgline holds) reached the database, which refuses one in any statement: a
    merge into ``S-4%00`` and a material lot ``WIRE-8%00`` scanned onto a tool were a bare
    "Internal Server Error" (500) with a traceback in the server's log. The API refuses one
    in a body (422); the station now refuses it on the page the form came from, naming the
    field, and nothing is changed."""
    with (
        running_station(tmp_path, db=postgres_url) as station,
        logged_in(station, "olga") as client,
    ):
        page = client.get("/station/lots/S-1").text
        for path, data in (
            ("/station/lots/S-1/merge", {"into": "S-4\x00", "lot_version": lot_version(page)}),
            ("/station/tools/WB-1/load", {"material": "WIRE-8\x00"}),
        ):
            answer = client.post(path, data={"csrf": csrf(page), **data})
            assert answer.status_code == 400, answer.text
            said = html.unescape(message(answer.text))
            assert "NUL character" in said and "nothing was changed" in said, said
        assert lot_state(client, "S-1") == lot_state(client, "S-4") == "WAITING"
        tool = client.get("/station/tools/WB-1").text
        assert 'data-on-tool="WIRE-7"' in tool and 'data-on-tool="WIRE-8"' not in tool


def test_a_role_that_may_never_do_an_action_is_refused_first_and_recorded(
    station: Station,
) -> None:
    """The probe's: a technician (who may hold, track in and out, abort) sent the forms of
    what his role may never do, each with a field left empty or a stale page, as a careless
    or curious user does. The station looked at the form first and answered with a hint to
    fix it ("reason: say why the lot is scrapped", "pick the carriers", a stale page's 409,
    a start's red fields), so the refusal of authority came only once the form was right,
    and none of these attempts was in the security log. The API refuses a role that may
    never first (403), recorded; so does the station now, on the page the form came from,
    with nothing changed."""
    with _login(station, "tom") as client:
        page = client.get("/station/lots/S-3").text
        base = {"csrf": _csrf(page), "lot_version": lot_version(page)}
        stale = str(int(lot_version(page)) - 1)
        sign = {"password": PASSWORDS["tom"], "meaning": ""}
        sent = [
            ("S-3", "scrap", {**base, "reason": "", **sign}),
            ("S-3", "scrap-sites", {**base, "sites": "", "reason": "x", **sign}),
            ("S-3", "rework", {**base, "step": "", "reason": "x", **sign}),
            ("S-3", "release", {**base, "reason": "x", **sign}),
            ("S-3", "split", {**base, "into": "", "reason": ""}),
            ("S-3", "merge", {**base, "into": ""}),
            ("S-3", "migrate", {**base, "version": "x"}),
            ("S-3", "scrap", {**base, "lot_version": stale, "reason": "x", "code": ""}),
            ("S-1", "complete", {**base, "lot_version": ""}),
        ]
        for lot, action, data in sent:
            answer = client.post(f"/station/lots/{lot}/{action}", data=data)
            said = html.unescape(message(answer.text))
            assert answer.status_code == 403, (action, said)
            assert said.startswith("tom (technician) may not ") and f"lot {lot}" in said, said
        start = client.get("/station/start?flow=fo-organic").text
        answer = client.post(
            "/station/start",
            data={"csrf": _csrf(start), "flow": "fo-organic", "lot": "", "carriers": "-1"},
        )
        assert answer.status_code == 403, answer.text
        assert "tom (technician) may not start" in html.unescape(message(answer.text))
        assert 'aria-invalid="true"' not in answer.text  # the refusal, not the fields
        assert (_state(station, client, "S-3"), _state(station, client, "S-1")) == (
            "HOLD",
            "WAITING",
        )
    with _login(station, "ada") as admin:
        token = admin.cookies["pkgline_station"]
        events = admin.get(
            "/security/events",
            params={"user": "tom", "kind": "refused", "limit": 100},
            headers={"authorization": f"Bearer {token}"},
        ).json()["events"]
    refused = [(e["lot"], e["action"]) for e in events]
    for lot, action in [
        ("S-3", "scrap"),
        ("S-3", "scrap_sites"),
        ("S-3", "rework"),
        ("S-3", "release"),
        ("S-3", "split"),
        ("S-3", "merge"),
        ("S-3", "migrate"),
        ("S-1", "complete"),
        (None, "start"),
    ]:
        assert (lot, action) in refused, (lot, action, refused)
    assert refused.count(("S-3", "scrap")) >= 2, refused  # the stale page's too


def test_a_carrier_of_sites_picked_on_the_map_is_scrapped_and_rejects_tracked_out(
    station: Station,
) -> None:
    """The probe's: on a strip of 8x32 sites, the 96th site clicked on the map made the scrap
    form's list (``S-1-01:1:1, S-1-01:1:2, ...``, written by static/lot.js) longer than the
    1,024 characters every field was held to, and the scrap was refused ("sites: longer
    than 1024 characters"), the sites picked lost, although a form may name 2,000 sites
    (``MAX_SITES``); a track-out's rejects likewise past about 60. The lists of sites are
    read up to their own limit now: a whole carrier is scrapped, 100 rejects tracked out."""
    with _login(station, "olga") as client:
        start = client.get("/station/start?flow=fo-organic").text
        fields = {"csrf": _csrf(start), "flow": "fo-organic", "lot": "BIG-1"}
        size = {"carriers": "2", "rows": "8", "cols": "32", "priority": "3"}
        started = client.post("/station/start", data={**fields, **size})
        assert started.status_code == 303, message(started.text)
        page = client.get("/station/lots/BIG-1").text
        form = {"csrf": _csrf(page), "lot_version": lot_version(page)}
        assert (
            client.post(
                "/station/lots/BIG-1/track-in", data={**form, "step": "SUBSTRATE_PREP"}
            ).status_code
            == 303
        )
        page = client.get("/station/lots/BIG-1").text
        rejects = ", ".join(f"BIG-1-02:{1 + n // 32}:{1 + n % 32}:VOID" for n in range(100))
        assert len(rejects) > 1024
        out = client.post(
            "/station/lots/BIG-1/track-out",
            data={"csrf": _csrf(page), "lot_version": lot_version(page), "rejects": rejects},
        )
        assert out.status_code == 303, message(out.text)
        page = client.get("/station/lots/BIG-1").text
        sites = ", ".join(f"BIG-1-01:{r}:{c}" for r in range(1, 9) for c in range(1, 33))
        assert len(sites) > 3000  # 256 sites, as the map's clicks write them
        scrapped = client.post(
            "/station/lots/BIG-1/scrap-sites",
            data={
                "csrf": _csrf(page),
                "lot_version": lot_version(page),
                "sites": sites,
                "code": "SCRAP",
                "reason": "the whole strip warped",
                "meaning": "approved scrap of sites",
                "password": PASSWORDS["olga"],
            },
        )
        assert scrapped.status_code == 303, message(scrapped.text)
        shown = client.get(scrapped.headers["location"]).text
    assert "156/512 sites" in shown, shown  # 512 - 100 rejected - 256 scrapped
