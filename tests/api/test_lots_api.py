"""The lot routes over the server's Unix socket: the caller is the OS account the kernel
names (never a name it sends), every operation is the service layer's with its rules, and
every refusal is a clear 4xx with the CLI's JSON body that changes nothing."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from mes.domain.authority import AuthMethod, Role
from mes.domain.identity import EventKind, UserKind
from mes.ports import LotQuery
from pkgline.api.lots import IF_MATCH
from tests.api.conftest import ACCOUNT, ADMIN, START, RunningApi, cli, lot_history, start_api


async def test_the_os_account_of_the_peer_is_who_acts(api: RunningApi) -> None:
    """The history records the OS account the socket's peer credentials name, as
    ``os_account``; a user name in the body is an unknown field, refused."""
    async with api.client() as client:
        started = await client.post("/lots", json=START)
        assert started.status_code == 201, started.text
        assert started.headers["pkgline-principal"] == f"{ACCOUNT} (os_account)"
        body = started.json()
        assert body["id"] == "A1" and body["state"] == "WAITING"
        [entry] = body["recorded"]
        assert entry["user"] == ACCOUNT and entry["by"] == ACCOUNT
        assert entry["auth"] == AuthMethod.OS_ACCOUNT.value
        spoof = await client.post("/lots/A1/hold", json={"reason": "x", "user": "mallory"})
        assert spoof.status_code == 422 and spoof.json()["error"] == "invalid_request"
    assert len(await lot_history(api, "A1")) == 1


async def test_an_unknown_os_account_is_refused_and_recorded(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with start_api(sqlite_url, tmp_path / "api.sock", user=False) as api:
        async with api.client() as client:
            refused = await client.post("/lots", json=START)
            listed = await client.get("/lots")
        assert refused.status_code == 401 and listed.status_code == 401
        assert refused.json()["error"] == "login_refused"
        assert ACCOUNT in refused.json()["message"]
        events = await api.state.identity.events(ADMIN)
        failed = [e for e in events if e.kind is EventKind.LOGIN_FAILED]
        assert failed and failed[-1].actor == ACCOUNT
        assert failed[-1].method is AuthMethod.OS_ACCOUNT
        page = await api.state.services.lots.page(_all(), by=ADMIN)
        assert page.total == 0


def _all() -> LotQuery:
    return LotQuery(limit=10)


async def test_every_refusal_is_a_clear_4xx_with_the_cli_body_and_changes_nothing(
    api: RunningApi,
) -> None:
    async with api.client() as client:
        assert (await client.post("/lots", json=START)).status_code == 201
        cases: list[tuple[str, str, object, int, str]] = [
            (
                "POST",
                "/lots/A1/rework",
                {"step": "SUBSTRATE_PREP", "reason": "x"},
                403,
                "not_authorized",
            ),
            ("POST", "/lots/A1/scrap", {"reason": "voids"}, 403, "not_authorized"),
            ("POST", "/lots/NOPE/hold", {"reason": "x"}, 404, "unknown_lot"),
            ("GET", "/lots/NOPE", None, 404, "unknown_lot"),
            ("POST", "/lots", START, 409, "lot_exists"),
            ("POST", "/lots/A1/track-in", {"step": "MOLD"}, 409, "step_not_allowed"),
            ("POST", "/lots/A1/abort", {}, 409, "operation_not_allowed"),
            ("POST", "/lots/A1/release", {}, 409, "operation_not_allowed"),  # not held
            ("POST", "/lots/A1/hold", {}, 422, "invalid_input"),
            ("POST", "/lots/A1/hold", {"reason": "x\x1b[2J"}, 422, "invalid_input"),
            ("POST", "/lots/A1/hold", {"reason": "two\nlines"}, 422, "invalid_input"),
            ("POST", "/lots/A1/hold", {"reason": 5}, 422, "invalid_request"),
            ("POST", "/lots/A1/hold", {"reason": "x", "why": "y"}, 422, "invalid_request"),
            (
                "POST",
                "/lots/A1/track-in",
                {"step": "SUBSTRATE_PREP", "params": {"a": [1]}},
                422,
                "invalid_request",
            ),
            (
                "POST",
                "/lots/A1/release",
                {"signatures": [{"username": "x", "meaning": "approved"}]},
                422,
                "invalid_request",
            ),
            ("GET", "/lots?state=BOGUS", None, 422, "invalid_request"),
            ("GET", "/lots?priority=0", None, 422, "invalid_request"),
        ]
        for method, path, body, status, kind in cases:
            answer = await client.request(method, path, json=body)
            assert (answer.status_code, answer.json()["error"]) == (status, kind), (
                path,
                answer.text,
            )
            assert answer.json()["message"]
        denied = await client.post(
            "/lots/A1/rework", json={"step": "SUBSTRATE_PREP", "reason": "x"}
        )
        assert denied.json()["allowed"] == ["engineer"]
        claimed = await client.post("/lots/A1/track-in", json={"step": "MOLD"})
        assert claimed.json()["claim"] and claimed.json()["allowed"] == ["SUBSTRATE_PREP"]
        broken = await client.post(
            "/lots/A1/hold", content=b'{"reason": ', headers={"content-type": "application/json"}
        )
        assert broken.status_code == 400 and broken.json()["error"] == "invalid_request"
        for sent_as in ("text/plain", "application/x-www-form-urlencoded"):  # curl -d's own
            typed = await client.post(
                "/lots/A1/hold", content=b'{"reason": "x"}', headers={"content-type": sent_as}
            )
            assert typed.status_code == 422 and typed.json()["error"] == "invalid_request"
            assert typed.json()["problems"] == [
                {
                    "where": "body",
                    "problem": f"sent as Content-Type {sent_as}: expected application/json",
                }
            ], typed.json()
        huge = await client.post("/lots/A1/hold", json={"reason": "x" * 300_000})
        assert huge.status_code == 413 and huge.json()["error"] == "too_large"
        # a lot id with '/' in it (quoted, but the route sees it decoded): no route, said so
        slashed = await client.get("/lots/A%2Fb")
        assert (slashed.status_code, slashed.json()["error"]) == (404, "not_found")
        assert slashed.json()["message"].startswith("no route GET /lots/A/b on this server")
        wrong = await client.delete("/lots/A1")
        assert (wrong.status_code, wrong.json()["error"]) == (405, "method_not_allowed")
        # what it takes is said, in the body and in Allow (RFC 9110 asks for it with a 405)
        assert wrong.json()["message"] == (
            "DELETE /lots/A1: the route does not take DELETE; it takes GET (docs/api.md)"
        )
        assert wrong.headers["allow"] == "GET"
        posted = await client.put("/lots")
        assert posted.status_code == 405 and posted.headers["allow"] == "GET, POST"
        assert posted.json()["message"].endswith("it takes GET, POST (docs/api.md)")
    assert len(await lot_history(api, "A1")) == 1
    events = await api.state.identity.events(ADMIN)
    refused = [e for e in events if e.kind is EventKind.REFUSED]
    assert {e.action for e in refused} >= {"rework", "scrap"}


async def test_a_body_sent_in_chunks_past_the_limit_is_refused(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with start_api(sqlite_url, tmp_path / "api.sock", max_body_kb=1) as api:

        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"reason": "'
            for _ in range(10):
                yield b"x" * 500
            yield b'"}'

        async with api.client() as client:
            assert (await client.post("/lots", json=START)).status_code == 201
            answer = await client.post(
                "/lots/A1/hold", content=chunks(), headers={"content-type": "application/json"}
            )
        assert answer.status_code == 413
        assert len(await lot_history(api, "A1")) == 1


async def test_a_lot_moves_through_the_api_as_through_the_cli(api: RunningApi) -> None:
    """start, track-in, track-out, split, merge, hold: each answers the lot as it now is and
    what was recorded (a release needs a signature: tests/api/test_cli_via_server.py signs
    one); ``lot show --json`` in direct mode prints the same JSON as GET /lots/{id}."""
    async with api.client() as client:
        await api.roles(Role.OPERATOR, Role.ENGINEER)
        assert (await client.post("/lots", json=START)).status_code == 201
        moved = await client.post("/lots/A1/track-in", json={"step": "SUBSTRATE_PREP"})
        assert moved.status_code == 200 and moved.json()["state"] == "RUNNING", moved.text
        other = await client.post("/lots/A1/track-out", json={"step": "DIE_ATTACH"})
        assert other.status_code == 409 and other.json()["allowed"] == ["SUBSTRATE_PREP"]
        out = await client.post(
            "/lots/A1/track-out",
            json={
                "step": "SUBSTRATE_PREP",
                "rejects": [{"carrier": "1", "row": 1, "col": 2, "code": "VOID"}],
            },
        )
        assert out.status_code == 200, out.text
        assert out.json()["good_sites"] == 63
        split = await client.post("/lots/A1/split", json={"carriers": ["2"], "into": "A1.1"})
        assert split.status_code == 200, split.text
        merged = await client.post("/lots/A1.1/merge", json={"into": "A1"})
        assert merged.status_code == 200 and merged.json()["id"] == "A1", merged.text
        listed = await client.get("/lots", params={"state": ["WAITING"], "limit": 1})
        assert [lot["id"] for lot in listed.json()["lots"]] == ["A1"]
        held = await client.post("/lots/A1/hold", json={"reason": "check the strip"})
        assert held.json()["state"] == "HOLD" and held.json()["hold_reason"] == "check the strip"
        unsigned = await client.post("/lots/A1/release", json={"reason": "looked fine"})
        assert unsigned.status_code == 422 and unsigned.json()["error"] == "signature_required"
        shown = (await client.get("/lots/A1")).json()
    assert shown["state"] == "HOLD"
    operations = [e["operation"] for e in shown["history"] if e["lot"] == "A1"]
    assert operations[:3] == ["start", "track_in", "track_out"]
    assert operations[-1] == "hold"
    assert all(e["auth"] == "os_account" for e in shown["history"])
    direct = await cli("lot", "show", "A1", "--json", "--db", api.db)
    assert direct.returncode == 0, direct.stderr
    assert json.loads(direct.stdout) == shown


async def test_a_held_lot_answers_where_it_goes_once_released(api: RunningApi) -> None:
    """GET /lots/{id}, GET /lots and every operation's answer keep ``next_steps`` for what
    the lot may take now (nothing, held) and say in ``next_after_release`` what it would take
    once released; ``lot show`` and ``lot list`` through the server print it, marked."""
    async with api.client() as client:
        await api.roles(Role.OPERATOR)
        assert (await client.post("/lots", json=START)).status_code == 201
        await client.post("/lots/A1/track-in", json={"step": "SUBSTRATE_PREP"})
        out = await client.post("/lots/A1/track-out", json={})
        assert out.status_code == 200, out.text
        assert out.json()["next_steps"] == ["DIE_ATTACH"]
        assert out.json()["next_after_release"] == []
        held = await client.post("/lots/A1/hold", json={"reason": "check the strip"})
        assert held.status_code == 200, held.text
        assert held.json()["next_steps"] == [] and held.json()["next_after_release"] == [
            "DIE_ATTACH"
        ]
        shown = (await client.get("/lots/A1")).json()
        listed = (await client.get("/lots")).json()["lots"]
    assert shown["next_steps"] == [] and shown["next_after_release"] == ["DIE_ATTACH"]
    [row] = listed
    assert row["next_steps"] == [] and row["next_after_release"] == ["DIE_ATTACH"]
    via = ("--server", f"unix://{api.socket}")
    text = await cli("lot", "show", "A1", *via, env={"COLUMNS": "200"})
    assert text.returncode == 0, text.stderr
    assert "next steps DIE_ATTACH (once released)" in " ".join(text.stdout.split())
    table = await cli("lot", "list", *via, env={"COLUMNS": "200"})
    assert table.returncode == 0, table.stderr
    [line] = [line for line in table.stdout.splitlines() if line.startswith("│ A1 ")]
    assert [cell.strip() for cell in line.split("│")][5] == "DIE_ATTACH (on release)", line


async def test_an_operation_with_if_match_is_refused_once_the_lot_moved(api: RunningApi) -> None:
    """Optimistic concurrency for systems and scripts, as HTTP has it: GET /lots/{id} and
    every operation's answer carry the lot's version as an ETag; an operation sent with
    ``If-Match`` is refused (409, nothing changed) when the lot has moved since, and a
    malformed one is a 422 that says what is expected."""
    async with api.client() as client:
        await api.roles(Role.OPERATOR)
        assert (await client.post("/lots", json=START)).status_code == 201
        seen = await client.get("/lots/A1")
        etag = seen.headers["etag"]
        assert etag == f'"{seen.json()["version"]}"'
        moved = await client.post(
            "/lots/A1/track-in", json={"step": "SUBSTRATE_PREP"}, headers={"If-Match": etag}
        )
        assert moved.status_code == 200, moved.text
        assert moved.headers["etag"] == f'"{moved.json()["version"]}"' != etag
        stale = await client.post(
            "/lots/A1/abort", json={"reason": "x"}, headers={"If-Match": etag}
        )
        assert stale.status_code == 409 and stale.json()["error"] == "conflict", stale.text
        assert "changed since its version" in stale.json()["message"]
        for bad in ("*", '"seven"', 'W/"3"', '""'):
            refused = await client.post(
                "/lots/A1/abort", json={"reason": "x"}, headers={"If-Match": bad}
            )
            assert refused.status_code == 422 and "If-Match" in refused.json()["message"], bad
        assert (await client.get("/lots/A1")).json()["state"] == "RUNNING"  # nothing changed
        current = moved.headers["etag"]
        aborted = await client.post(
            "/lots/A1/abort", json={"reason": "wrong carrier"}, headers={"If-Match": current}
        )
        assert aborted.status_code == 200 and aborted.json()["state"] == "WAITING", aborted.text


async def test_an_if_match_without_its_quotes_is_refused_saying_the_form_and_changes_nothing(
    api: RunningApi,
) -> None:
    """``If-Match: 7`` is no entity-tag (RFC 9110 §8.8.3: a tag is quoted, ``"7"``), even when
    7 is the lot's version: it is refused (422, nothing changed) with the form the header
    takes, rather than taken as if quoted, so that a client that sends it learns so before
    it meets a server or proxy that holds it false. The document's pattern refuses it too."""
    async with api.client() as client:
        await api.roles(Role.OPERATOR)
        assert (await client.post("/lots", json=START)).status_code == 201
        version = (await client.get("/lots/A1")).json()["version"]
        for unquoted in (str(version), f'"{version}', f'{version}"', f"'{version}'"):
            refused = await client.post(
                "/lots/A1/hold", json={"reason": "x"}, headers={"If-Match": unquoted}
            )
            assert refused.status_code == 422, (unquoted, refused.text)
            said = refused.json()
            assert said["error"] == "invalid_input"
            assert 'If-Match: "7"' in said["message"] and "quotes" in said["message"]
            assert "nothing was changed" in said["message"]
        shown = (await client.get("/lots/A1")).json()
        assert (shown["state"], shown["version"]) == ("WAITING", version)
        quoted = await client.post(
            "/lots/A1/hold", json={"reason": "x"}, headers={"If-Match": f'"{version}"'}
        )
        assert quoted.status_code == 200 and quoted.json()["state"] == "HOLD", quoted.text
    pattern = IF_MATCH["parameters"][0]["schema"]["pattern"]
    assert re.fullmatch(pattern, f'"{version}"') and re.fullmatch(pattern, f' "{version}" ')
    assert not re.fullmatch(pattern, str(version))


async def test_a_body_that_is_not_json_is_refused_saying_where_and_what_was_expected(
    api: RunningApi,
) -> None:
    """A body that does not parse is 400 ``invalid_request`` naming the character where it
    broke, the parser's reason and what the server expects, on a lot operation (the
    short way hands it to FastAPI) and on any other route alike; the message was "the body
    is not JSON: 1: JSON decode error", the offset read as a field's name."""
    headers = {"content-type": "application/json"}
    async with api.client() as client:
        await api.roles(Role.OPERATOR, Role.TECHNICIAN)
        assert (await client.post("/lots", json=START)).status_code == 201
        for path in ("/lots/A1/hold", "/durables"):
            broken = await client.post(path, content=b"{nope: 1}", headers=headers)
            assert broken.status_code == 400, broken.text
            said = broken.json()
            assert said["error"] == "invalid_request"
            assert said["message"].startswith("the body is not JSON (at character 1: "), said
            assert "double quotes" in said["message"]
            assert "expected one JSON object" in said["message"]
            [problem] = said["problems"]
            assert problem["where"] == "body" and problem["problem"] in said["message"]
        assert (await client.get("/lots/A1")).json()["state"] == "WAITING"


async def test_lists_page_with_a_cursor(api: RunningApi) -> None:
    async with api.client() as client:
        for n in range(3):
            body = {**START, "lot": f"L{n}", "priority": n + 1}
            assert (await client.post("/lots", json=body)).status_code == 201
        first = (await client.get("/lots", params={"limit": 2})).json()
        assert [x["id"] for x in first["lots"]] == ["L0", "L1"]
        assert (first["total"], first["more"], first["next_after"]) == (3, True, "L1")
        rest = (await client.get("/lots", params={"limit": 2, "after": "L1"})).json()
        assert [x["id"] for x in rest["lots"]] == ["L2"] and rest["more"] is False
        for number in ("0.5", "1893456000"):  # no seconds since 1970: ISO 8601 text only
            said = await client.get("/lots", params={"until": number})
            assert said.status_code == 422, said.text
            assert said.json()["error"] == "invalid_input"
            assert "ISO 8601" in said.json()["message"], said.json()
        for edge in ("9999-12-31T23:59-12:00", "0001-01-01T00:00+14:00"):  # no UTC time
            said = await client.get("/lots", params={"until": edge})
            assert said.status_code == 422, said.text
            assert "0001-01-01 to 9999-12-31 in UTC" in said.json()["message"], said.json()


async def test_an_unknown_query_parameter_is_refused_and_changes_nothing(api: RunningApi) -> None:
    """A query parameter the route does not take was ignored: ``/lots?sate=HOLD`` (a typo of
    ``state``) answered every lot, as if filtered, and ``POST /lots/A1/hold?x=1`` was done.
    It is ``invalid_request`` (422) naming the parameter and the ones the route takes."""
    async with api.client() as client:
        assert (await client.post("/lots", json=START)).status_code == 201
        for path, params in (
            ("/lots", {"sate": "HOLD"}),
            ("/lots", {"state": "HOLD", "limt": "5"}),
            ("/history", {"lots": "A1"}),
            ("/lots/A1", {"verbose": "1"}),
        ):
            said = await client.get(path, params=params)
            assert said.status_code == 422, (path, params, said.text)
            body = said.json()
            assert body["error"] == "invalid_request", body
            [problem] = body["problems"]
            assert problem["where"].startswith("query.") and problem["where"] != "query.state"
            assert "unknown query parameter" in problem["problem"], body
        said = (await client.get("/lots", params={"sate": "HOLD"})).json()
        assert "state" in said["problems"][0]["problem"] and "limit" in said["message"]
        held = await client.post("/lots/A1/hold", params={"x": "1"}, json={"reason": "x"})
        assert held.status_code == 422, held.text
        assert held.json()["problems"] == [
            {"where": "query.x", "problem": "an unknown query parameter: this route takes none"}
        ]
        listed = await client.get("/lots", params=[("state", "WAITING"), ("state", "HOLD")])
        assert listed.status_code == 200 and listed.json()["total"] == 1
    assert len(await lot_history(api, "A1")) == 1


async def test_a_plus_of_an_offset_sent_unencoded_is_said_to_be_read_as_a_space(
    api: RunningApi,
) -> None:
    """``?since=2026-12-02T14:30+01:00`` typed as it is: a ``+`` in a query is a space, so the
    server read ``2026-12-02T14:30 01:00``, and the refusal said an ISO 8601 time was expected,
    which is what the client believed it sent. It says to send the ``+`` as ``%2B`` (or Z)."""
    async with api.client() as client:
        assert (await client.post("/lots", json=START)).status_code == 201
        for path in ("/lots", "/history"):
            said = await client.get(f"{path}?since=2026-12-02T14:30+01:00")
            assert said.status_code == 422, (path, said.text)
            message = said.json()["message"]
            assert "'+' in a URL's query is read as a space" in message, (path, message)
            assert "%2B" in message, message
            encoded = await client.get(f"{path}?since=2026-12-02T14:30%2B01:00")
            assert encoded.status_code == 200, (path, encoded.text)


async def test_the_other_lists_refuse_a_time_no_store_can_hold(api: RunningApi) -> None:
    """``/history`` and ``/security/events`` read their times as ``lot history`` and ``user
    events`` do (an offset, or UTC): one that is no UTC time at all was a 500 (OverflowError
    binding it), it is a 422 naming the parameter."""
    await api.roles(Role.OPERATOR, Role.ADMIN)
    async with api.client() as client:
        assert (await client.post("/lots", json=START)).status_code == 201
        for path in ("/history", "/security/events"):
            for name, edge in (
                ("since", "0001-01-01T00:00+01:00"),
                ("until", "9999-12-31T23:59-01:00"),
            ):
                said = await client.get(path, params={name: edge})
                assert said.status_code == 422, (path, said.text)
                assert said.json()["error"] == "invalid_input"
                assert said.json()["message"].startswith(f"{name} '{edge}'"), said.json()
                assert "0001-01-01 to 9999-12-31 in UTC" in said.json()["message"]
            inside = await client.get(path, params={"since": "0001-01-01T00:00-01:00"})
            assert inside.status_code == 200, inside.text


@pytest.fixture
def far_east(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process (the server under test runs in it) in a zone 9 hours east of UTC
    (``JST-9``: no time zone database needed), so that a time read in the server's local
    zone would not be the time read as UTC."""
    monkeypatch.setenv("TZ", "JST-9")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _naive(at: datetime) -> str:
    """``at`` in UTC as ISO 8601 without an offset: ``2026-12-07T10:00:01.250000``."""
    return at.astimezone(UTC).replace(tzinfo=None).isoformat()


@pytest.mark.usefixtures("far_east")
async def test_every_lists_time_filter_reads_a_time_without_an_offset_as_utc(
    api: RunningApi,
) -> None:
    """``GET /lots?since=2026-12-07T10:00:00`` was refused (422, "expected a time with its
    zone"), where ``/history``, ``/tools/{tool}/jobs`` and ``/security/events`` read the same
    text as UTC, as docs/api.md says. Every list reads its ``since`` and ``until`` so now, by
    the one parser (``pkgline.list_views.parse_instant``): a lot moved, an entry or an event
    recorded at T is selected by ``since`` a second before T in UTC without an offset, not by
    ``since`` a second after, whatever the server's own zone; the same time with ``Z``
    answers the same; text that is no time is refused alike on every list (422
    ``invalid_input``), naming the parameter and what is expected."""
    from mes.domain.authority import CONTROLLER
    from mes.domain.equipment import ToolRegistration

    await api.roles(Role.OPERATOR, Role.ADMIN)
    tool = ToolRegistration("DB-1", "die_bonder", "modbus 127.0.0.1", ("DIE_ATTACH",))
    await api.state.services.equipment.register("line-1", [tool], by=CONTROLLER)
    async with api.client() as client:
        started = await client.post("/lots", json=START)
        assert started.status_code == 201, started.text
        moved = datetime.fromisoformat(started.json()["updated_at"])
        [recorded] = started.json()["recorded"]
        [event, *_] = (await client.get("/security/events")).json()["events"]  # roles given
        second = timedelta(seconds=1)
        for path, items, key, item, at in (
            ("/lots", "lots", "id", "A1", moved),
            ("/history", "entries", "seq", recorded["seq"], recorded["at"]),
            ("/security/events", "events", "seq", event["seq"], event["at"]),
        ):
            at = datetime.fromisoformat(at) if isinstance(at, str) else at
            for name, when, selected in (
                ("since", at - second, True),
                ("since", at + second, False),
                ("until", at + second, True),
                ("until", at - second, False),
            ):
                said = await client.get(path, params={name: _naive(when)})
                assert said.status_code == 200, (path, name, said.text)
                found = [x[key] for x in said.json()[items]]
                assert (item in found) is selected, (path, name, when, found)
                zoned = await client.get(path, params={name: f"{_naive(when)}Z"})
                assert zoned.json()[items] == said.json()[items], (path, name)
        for path in ("/lots", "/history", "/tools/DB-1/jobs", "/security/events"):
            for name in ("since", "until"):
                day = await client.get(path, params={name: _naive(moved)[:10]})
                assert day.status_code == 200, (path, name, day.text)
                said = await client.get(path, params={name: "yesterday"})
                assert said.status_code == 422, (path, said.text)
                assert said.json()["error"] == "invalid_input", (path, said.json())
                assert said.json()["message"] == (
                    f"{name} 'yesterday': expected an ISO 8601 date or time, e.g. 2026-12-02 "
                    "or 2026-12-02T14:30 (UTC unless an offset is given)"
                ), (path, said.json())


async def test_the_socket_is_0660_and_gone_after_the_stop(sqlite_url: str, tmp_path: Path) -> None:
    sock = tmp_path / "run" / "api.sock"
    async with start_api(sqlite_url, sock) as api:
        assert sock.stat().st_mode & 0o777 == 0o660
        async with api.client() as client:
            assert (await client.get("/health")).json() == {"ok": True}
    assert not sock.exists()
    with pytest.raises(httpx.TransportError):
        async with httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(sock)), base_url="http://x"
        ) as client:
            await client.get("/health")


@pytest.mark.postgres
async def test_the_api_on_postgresql(pg_api: RunningApi) -> None:
    async with pg_api.client() as client:
        assert (await client.post("/lots", json=START)).status_code == 201
        denied = await client.post("/lots/A1/scrap", json={"reason": "voids"})
        assert denied.status_code == 403
        moved = await client.post("/lots/A1/track-in", json={"step": "SUBSTRATE_PREP"})
        assert moved.status_code == 200, moved.text
    assert len(await lot_history(pg_api, "A1")) == 2


@pytest.mark.postgres
async def test_a_nul_character_in_an_id_or_a_text_is_a_422_on_postgresql(
    pg_api: RunningApi,
) -> None:
    """PostgreSQL refuses U+0000 in any statement: an id or text with one, looked up or
    written, was a 500 with a traceback in the log (a login's user name too, anonymous)."""
    async with pg_api.client() as client:
        assert (await client.post("/lots", json=START)).status_code == 201
        cases: list[tuple[str, str, object]] = [
            ("GET", "/lots/%00", None),
            ("GET", "/users/a%00", None),
            ("GET", "/history?lot=%00", None),
            ("GET", "/tools?line=x%00", None),
            ("POST", "/lots/A%00/hold", {"reason": "x"}),  # the lot operations' short way
            ("POST", "/lots/A1/track-in", {"step": "SUBSTRATE_PREP", "tool": "\x00"}),
            ("POST", "/lots/A1/track-in", {"step": "SUBSTRATE_PREP", "params": {"a\x00": 1}}),
            ("POST", "/lots/A1/merge", {"into": "B\x00"}),
            ("POST", "/session", {"username": "a\x00", "password": "x"}),
        ]
        for method, path, body in cases:
            answer = await client.request(method, path, json=body)
            assert answer.status_code == 422, (path, body, answer.text)
            assert answer.json()["error"] == "invalid_request", answer.json()
            assert "NUL character" in answer.json()["message"], answer.json()
        # the station's login form too: its page says so
        form = await client.get("/station/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None, form.text
        login = {"csrf": csrf[1], "username": "a\x00", "password": "x", "next": "/station/"}
        page = await client.post("/station/login", data=login)
        assert page.status_code == 422 and "NUL character" in page.text, page.text
    assert len(await lot_history(pg_api, "A1")) == 1


def _signed(version: int, password: str, meaning: str = "approved") -> dict[str, object]:
    signature = {"username": ACCOUNT, "password": password, "meaning": meaning}
    return {"signatures": [{**signature, "lot_version": version}]}


async def test_a_signed_request_is_told_its_role_before_its_password_is_checked(
    api: RunningApi,
) -> None:
    """An operator, who may never rework, is refused for the role (403), whatever the
    signature: the password is not checked, so no failed attempt counts towards a lockout;
    a blank meaning is not looked at either (found by the API probe: 401 and a count)."""
    identity = api.state.identity
    await api.own_password()
    await api.roles(Role.OPERATOR)
    async with api.client() as client:
        assert (await client.post("/lots", json=START)).status_code == 201
        held = await client.post("/lots/A1/hold", json={"reason": "voids"})
        version = held.json()["version"]
        for password, meaning in (("not-it", "approved"), ("own-Secret-22", " ")):
            body = {"step": "DIE_ATTACH", "reason": "x", **_signed(version, password, meaning)}
            refused = await client.post("/lots/A1/rework", json=body)
            assert refused.status_code == 403, refused.text
            assert refused.json()["error"] == "not_authorized", refused.json()
    assert (await identity.user(ADMIN, ACCOUNT)).failed_attempts == 0
    kinds = [e.kind for e in await identity.events(ADMIN)]
    assert EventKind.SIGNATURE_FAILED not in kinds and kinds.count(EventKind.REFUSED) == 2


async def test_a_signers_wrong_password_is_403_and_the_requests_credentials_hold(
    api: RunningApi,
) -> None:
    """A signature's wrong password refuses the operation (403, ``login_refused``, counted),
    not the request's credentials: no ``WWW-Authenticate``, and the next request goes on."""
    identity = api.state.identity
    await api.own_password()
    await api.roles(Role.OPERATOR, Role.QUALITY)
    async with api.client() as client:
        assert (await client.post("/lots", json=START)).status_code == 201
        held = await client.post("/lots/A1/hold", json={"reason": "voids"})
        version = held.json()["version"]
        body = {"reason": "ok", **_signed(version, "not-it")}
        wrong = await client.post("/lots/A1/release", json=body)
        assert wrong.status_code == 403 and wrong.json()["error"] == "login_refused", wrong.text
        assert "www-authenticate" not in wrong.headers
        assert (await client.get("/lots/A1")).json()["state"] == "HOLD"
    assert (await identity.user(ADMIN, ACCOUNT)).failed_attempts == 1


@pytest.fixture(params=["sqlite", "postgres"])
async def any_api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunningApi]:
    """The server on SQLite, and on PostgreSQL."""
    url = request.getfixturevalue(f"{request.param}_url")
    async with start_api(url, tmp_path / "api.sock") as running:
        yield running


async def test_a_release_a_hold_code_refuses_is_refused_before_the_password_is_checked(
    any_api: RunningApi,
) -> None:
    """qa2 (quality) releasing a lot held with code VOID (released by engineer only), with a
    wrong password: 403 not_authorized, naming engineer, recorded; no signature_failed event
    and no failed attempt counted (one who may not cannot lock their own account by trying);
    with the right password or none, the same."""
    api = any_api
    identity = api.state.identity
    await api.own_password()
    await api.roles(Role.OPERATOR, Role.QUALITY)
    async with api.client() as client:
        added = await client.post(
            "/reasons",
            json={"code": "VOID", "kind": "hold", "text": "voids", "release_by": ["engineer"]},
        )
        assert added.status_code == 201, added.text
        assert (await client.post("/lots", json=START)).status_code == 201
        held = await client.post("/lots/A1/hold", json={"reason": "x", "code": "VOID"})
        version = held.json()["version"]
        await api.roles(Role.QUALITY)
        before = len(await identity.events(ADMIN))
        for body in ({"reason": "ok", **_signed(version, "not-it")}, {"reason": "ok"}):
            refused = await client.post("/lots/A1/release", json=body)
            assert refused.status_code == 403, refused.text
            assert refused.json()["error"] == "not_authorized", refused.text
            assert refused.json()["allowed"] == ["engineer"], refused.text
        assert (await client.get("/lots/A1")).json()["state"] == "HOLD"
    assert (await identity.user(ADMIN, ACCOUNT)).failed_attempts == 0
    events = (await identity.events(ADMIN))[before:]
    assert [e.kind for e in events] == [EventKind.REFUSED, EventKind.REFUSED]
    assert all(e.action == "release" and e.lot_id == "A1" for e in events)


async def test_a_system_asking_for_a_signed_operation_is_told_a_system_signs_nothing(
    api: RunningApi,
) -> None:
    """A system (an API key) with a role that may release asked for a release: unsigned, it
    was told to have each signer give their password again (signature_required, 422); signed
    with its own name, "wrong user name or password" (403): neither says that a system, having
    no password, can never sign. It is ``signature_refused`` (403, recorded) saying so, before
    any password is looked at, and the lot stays held."""
    identity = api.state.identity
    await identity.add_user(ADMIN, "mes-bridge", "MES", [Role.OPERATOR], kind=UserKind.SYSTEM)
    _, token = await identity.issue_api_key(ADMIN, "mes-bridge", "test")
    async with api.client(authorization=f"Bearer {token}") as client:
        assert (await client.post("/lots", json=START)).status_code == 201
        held = await client.post("/lots/A1/hold", json={"reason": "voids"})
        version = held.json()["version"]
        mine = {"username": "mes-bridge", "password": "x" * 12, "meaning": "approved"}
        for body in (
            {"reason": "ok"},
            {"reason": "ok", "signatures": [{**mine, "lot_version": version}]},
        ):
            said = await client.post("/lots/A1/release", json=body)
            assert said.status_code == 403, said.text
            assert said.json()["error"] == "signature_refused", said.text
            assert "mes-bridge is a system" in said.json()["message"], said.text
            assert "a system signs nothing" in said.json()["message"], said.text
        assert (await client.get("/lots/A1")).json()["state"] == "HOLD"
    events = await identity.events(ADMIN)
    kinds = [e.kind for e in events if e.actor == "mes-bridge"]
    assert kinds.count(EventKind.SIGNATURE_REFUSED) == 2, kinds
    assert EventKind.SIGNATURE_FAILED not in kinds


async def test_a_refusals_allowed_operations_are_those_the_callers_roles_allow(
    api: RunningApi,
) -> None:
    """A refusal of an operation the lot's state does not allow lists what is allowed
    instead: to a system (an API key) with the operator role it listed job_record, which only
    the line controller does, and the scrap and rework that are quality's and engineering's.
    It lists the operations the state allows that the caller may do, in the message too."""
    identity = api.state.identity
    await identity.add_user(ADMIN, "mes-bridge", "MES", [Role.OPERATOR], kind=UserKind.SYSTEM)
    _, token = await identity.issue_api_key(ADMIN, "mes-bridge", "test")
    async with api.client(authorization=f"Bearer {token}") as client:
        assert (await client.post("/lots", json=START)).status_code == 201
        waiting = await client.post("/lots/A1/abort", json={"reason": "x"})
        assert waiting.status_code == 409, waiting.text
        said = waiting.json()
        assert said["error"] == "operation_not_allowed"
        mine = ["track_in", "hold", "split", "merge", "merge_into", "complete"]
        assert said["allowed"] == mine, said
        assert said["message"].endswith(f"allowed: {', '.join(mine)}"), said
        assert (await client.post("/lots/A1/hold", json={"reason": "voids"})).status_code == 200
        held = (await client.post("/lots/A1/abort", json={"reason": "x"})).json()
        assert held["allowed"] == ["release", "split"], held
        assert "job_record" not in held["message"], held


async def test_a_system_changing_its_own_password_is_told_it_has_none(api: RunningApi) -> None:
    """``POST /users/NAME/own-password`` by a system (its API key) was "login refused: wrong
    user name or password, or the account is disabled or locked" (403): a system has no
    password, and the answer had it look for a wrong one. It is ``invalid_input`` saying so."""
    identity = api.state.identity
    await identity.add_user(ADMIN, "mes-bridge", "MES", [Role.OPERATOR], kind=UserKind.SYSTEM)
    _, token = await identity.issue_api_key(ADMIN, "mes-bridge", "test")
    async with api.client(authorization=f"Bearer {token}") as client:
        body = {"current": "x" * 12, "new": "y" * 14}
        said = await client.post("/users/mes-bridge/own-password", json=body)
    assert said.status_code == 422, said.text
    assert said.json()["error"] == "invalid_input"
    assert "mes-bridge is a system" in said.json()["message"], said.text
    assert "no password" in said.json()["message"], said.text


async def test_an_unsigned_operation_the_lot_refuses_anyway_says_so_first(api: RunningApi) -> None:
    """A release of a lot that is not held is refused for that (409), signed or not; asking
    for a signature first would have the person sign for nothing (found by the probe)."""
    await api.roles(Role.OPERATOR, Role.QUALITY)
    async with api.client() as client:
        assert (await client.post("/lots", json=START)).status_code == 201
        unsigned = await client.post("/lots/A1/release", json={"reason": "ok"})
        assert unsigned.status_code == 409, unsigned.text
        assert unsigned.json()["error"] == "operation_not_allowed"
        assert (await client.post("/lots/A1/hold", json={"reason": "voids"})).status_code == 200
        held = await client.post("/lots/A1/release", json={"reason": "ok"})
        assert held.status_code == 422 and held.json()["error"] == "signature_required"
    assert len(await lot_history(api, "A1")) == 2


async def test_a_reason_or_meaning_of_zero_width_characters_alone_is_refused(
    api: RunningApi,
) -> None:
    """Found by probing the running server: a hold with the reason U+200B (zero-width space),
    its release signed with the meaning U+200B, and a user whose printed name was U+200B were
    all accepted, recorded as given while the reader sees nothing. Each is refused (422
    ``invalid_input``) as an empty one is, and nothing changes."""
    await api.own_password()
    await api.roles(Role.OPERATOR, Role.ADMIN)
    async with api.client() as client:
        assert (await client.post("/lots", json=START)).status_code == 201
        for reason in ("\u200b", "\ufeff", " \u2060\u00ad "):
            refused = await client.post("/lots/A1/hold", json={"reason": reason})
            assert refused.status_code == 422, refused.text
            assert "needs a reason" in refused.json()["message"]
        empty = await client.post("/lots/A1/hold", json={})  # a code alone would do: said
        assert empty.status_code == 422, empty.text
        assert "a hold reason code of the catalogue or a text" in empty.json()["message"]
        held = await client.post("/lots/A1/hold", json={"reason": "voids"})
        version = held.json()["version"]
        body = {"reason": "ok", **_signed(version, "own-Secret-22", "\u200b")}
        unsigned = await client.post("/lots/A1/release", json=body)
        assert unsigned.status_code == 422, unsigned.text
        assert "needs its meaning" in unsigned.json()["message"]
        assert (await client.get("/lots/A1")).json()["state"] == "HOLD"
        nameless = {"username": "ghost", "name": "\u200b", "roles": ["operator"]}
        added = await client.post("/users", json=nameless)
        assert added.status_code == 422 and "printed (full) name" in added.text, added.text
        assert (await client.get("/users/ghost")).status_code == 404
    assert len(await lot_history(api, "A1")) == 2
