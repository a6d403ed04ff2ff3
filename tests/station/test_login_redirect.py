"""Where the login goes on to (pure, no server): only a page of the station, never another
site (an absolute URL, ``//host``, a backslash, a scheme, dot segments, a control
character); and, for a form sent after the session ended, the page the form was on, flagged
so that it says nothing was done, with nothing of the form but which page it was on."""

from __future__ import annotations

import pytest

from pkgline.station.login import login_url, page_of, safe_next


@pytest.mark.parametrize(
    "given",
    [
        "/station/",
        "/station/lots/S-1",
        "/station/lots/S-1?expired=1",
        "/station/holds?lot=S-3&expired=1",
        "/station/start?flow=fo-organic&expired=1",
        "/station/lots/S-1?map=at%3A1",
    ],
)
def test_a_page_of_the_station_is_where_the_login_goes_on_to(given: str) -> None:
    assert safe_next(given) == given


@pytest.mark.parametrize(
    "given",
    [
        "https://evil.example/station/",
        "http:/station/lots/S-1",
        "javascript:alert(1)//station/",
        "//evil.example/station/",
        "///evil.example",
        "/\\\\evil.example",
        "\\\\evil.example\\station\\",
        "/station/\\evil",
        "/station/%5cevil",
        "/station/%5c%5cevil.example",
        "/station/%2f%2fevil.example",
        "/station//evil.example",
        "/station/../x",
        "/station/%2e%2e/x",
        "/station/%2E%2E/x",
        "/station/./lots",
        "/station/lots/S-1?next=//evil.example",
        "/station/lots/S-1\n",
        "/station/lots/S-1\t",
        " /station/lots/S-1",
        "/stationx/",
        "/station",
        "",
        None,
        ["/station/"],
    ],
)
def test_anything_else_goes_to_the_line(given: object) -> None:
    assert safe_next(given) == "/station/"


@pytest.mark.parametrize(
    ("method", "path", "query", "sent", "goes_to"),
    [
        ("GET", "/station/lots/S-1", "map=all", None, "/station/lots/S-1?map=all"),
        ("POST", "/station/lots/S-1/scrap-sites", "", {}, "/station/lots/S-1?expired=1"),
        ("POST", "/station/lots/S%2F1/hold", "", {}, "/station/lots/S%2F1?expired=1"),
        ("POST", "/station/tools/WB-1/load", "", {}, "/station/tools/WB-1?expired=1"),
        (
            "POST",
            "/station/materials/DAF-7/quarantine",
            "",
            {},
            "/station/materials/DAF-7?expired=1",
        ),
        (
            "POST",
            "/station/lots/S-3/release",
            "",
            {"back": "holds"},
            "/station/holds?lot=S-3&expired=1",
        ),
        (  # sent from a later page of the holds: back to it
            "POST",
            "/station/lots/S-3/release",
            "",
            {"back": "holds", "after": "S-2", "limit": "5"},
            "/station/holds?after=S-2&limit=5&lot=S-3&expired=1",
        ),
        (  # a malformed cursor (a forged form): the first page
            "POST",
            "/station/lots/S-3/release",
            "",
            {"back": "holds", "after": "../x?lot=Z", "limit": "5"},
            "/station/holds?lot=S-3&expired=1",
        ),
        (
            "POST",
            "/station/start",
            "",
            {"flow": "fo-organic"},
            "/station/start?flow=fo-organic&expired=1",
        ),
        (
            "POST",
            "/station/start",
            "",
            {"flow": "a/../../x&expired=0//evil"},
            "/station/start?flow=a%2F..%2F..%2Fx%26expired%3D0%2F%2Fevil&expired=1",
        ),
        ("POST", "/station/start", "", {"flow": "x\n"}, "/station/start?expired=1"),
        ("POST", "/station/password", "", {}, "/station/password?expired=1"),
        ("POST", "/station/logout", "", {}, "/station/"),
    ],
)
def test_a_form_sent_without_a_session_leads_back_to_its_page_saying_so(
    method: str, path: str, query: str, sent: dict[str, str] | None, goes_to: str
) -> None:
    here = page_of(method, path, query, sent)
    assert here == goes_to
    assert safe_next(here) in (here, "/station/")
    assert login_url(here).startswith("/station/login?next=/station/")
