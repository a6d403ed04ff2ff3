"""A lot moved to another approved version of its flow from its page (engineering, signed),
against a real server over HTTP: offered only where another approved version exists, refused
on the page for a role that may not and a wrong password, and done with the engineer's
signature."""

from __future__ import annotations

import asyncio
import html
import re

from flows.loader import flow_sources
from mes.adapters.database import create_engine
from mes.domain.authority import AuthMethod, Principal, Role
from mes.domain.flowversions import APPROVAL_MEANING
from mes.domain.signatures import SignatureGiven
from pkgline.api.server import open_state
from pkgline.bootstrap import seed_flow_versions
from tests.station.client import csrf, logged_in, lot_state, lot_version, message
from tests.station.conftest import Station
from tests.station.seed import PASSWORDS, fast_passwords

FLOW = "fo-organic"
ERIN = Principal("erin", frozenset({Role.ENGINEER}), AuthMethod.PASSWORD, "Erin Engineer")


async def _version_2(db: str) -> None:
    """The packaged flows as version 1 (as ``db upgrade`` publishes them), and fo-organic
    version 2 (a comment added), published and approved by Erin."""
    files = flow_sources(FLOW)
    name = f"{FLOW}.yaml"
    files[name] = files[name].replace("title:", "# version 2\ntitle:", 1)
    engine = create_engine(db)
    try:
        await seed_flow_versions(engine)
    finally:
        await engine.dispose()
    async with open_state(db, passwords=fast_passwords()) as state:
        versions = state.services.flow_versions
        (published,) = await versions.publish({FLOW: files}, "version 2", by=ERIN)
        number = published.version.version
        signed = (SignatureGiven("erin", APPROVAL_MEANING, PASSWORDS["erin"]),)
        await versions.approve(FLOW, number, by=ERIN, signatures=signed)


def test_a_lot_moves_to_another_approved_version_signed_by_an_engineer(
    station: Station,
) -> None:
    with logged_in(station, "erin") as client:
        assert 'id="migrate-form"' not in client.get("/station/lots/S-1").text  # none yet
    asyncio.run(_version_2(station.db))
    with logged_in(station, "erin") as client:  # the version she may move it to
        form = re.search(
            r'id="migrate-form">(.*?)</form>', client.get("/station/lots/S-1").text, re.S
        )
        assert form is not None and re.findall(r'<option value="(\d+)"', form[1]) == ["2"]
    with logged_in(station, "olga") as client:  # an operator may not: no form; one forged
        page = client.get("/station/lots/S-1").text
        assert 'id="migrate-form"' not in page
        data = {
            "csrf": csrf(page),
            "lot_version": lot_version(page),
            "version": "2",
            "reason": "new recipe",
            "meaning": "approved migration",
        }
        refused = client.post(
            "/station/lots/S-1/migrate", data={**data, "password": PASSWORDS["olga"]}
        )
        assert refused.status_code == 403
        assert "may not" in html.unescape(message(refused.text))
    with logged_in(station, "erin") as client:
        page = client.get("/station/lots/S-1").text
        data = {**data, "csrf": csrf(page), "lot_version": lot_version(page)}
        wrong = client.post("/station/lots/S-1/migrate", data={**data, "password": "nope"})
        assert wrong.status_code == 403  # the signature, not the session
        bad = client.post(
            "/station/lots/S-1/migrate", data={**data, "version": "two", "password": "x"}
        )
        assert bad.status_code == 422 and "version: expected" in html.unescape(message(bad.text))
        done = client.post(
            "/station/lots/S-1/migrate", data={**data, "password": PASSWORDS["erin"]}
        )
        assert done.status_code == 303, done.text
        after = client.get(done.headers["location"]).text
        assert "moved to another version" in after and f"{FLOW} v2" in after
        assert lot_state(client, "S-1") == "WAITING"
