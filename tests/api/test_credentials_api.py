"""Credentials at the server's edge: a system's API key, a reporting system that only
reads, tokens put in a URL's query or path, two Authorization headers. Each refusal is a 401
or 403 that names what was expected, is recorded in the security log (never with the
secret), and changes nothing."""

from __future__ import annotations

import json

import httpx

from mes.domain.authority import Role
from mes.domain.identity import EventKind, UserKind
from tests.api.conftest import ADMIN, START, RunningApi, lot_history


async def test_a_system_acts_with_its_api_key_and_a_wrong_key_is_refused(api: RunningApi) -> None:
    identity = api.state.identity
    await identity.add_user(
        ADMIN, "mes-bridge", "MES bridge", [Role.OPERATOR], kind=UserKind.SYSTEM
    )
    key, token = await identity.issue_api_key(ADMIN, "mes-bridge", "test")
    async with api.client(authorization=f"Bearer {token}") as client:
        started = await client.post("/lots", json=START)
        assert started.status_code == 201, started.text
        assert started.json()["recorded"][0]["by"] == "mes-bridge"
        assert started.json()["recorded"][0]["auth"] == "api_key"
    await identity.revoke_api_key(ADMIN, key.key_id)
    for header in (f"Bearer {token}", "Bearer pkl_nope_nope", "Bearer something", "Basic abc"):
        async with api.client(authorization=header) as client:
            answer = await client.post("/lots/A1/hold", json={"reason": "x"})
        assert answer.status_code == 401, header
        assert answer.headers["www-authenticate"] == "Bearer"
    events = await identity.events(ADMIN)
    failed = [e for e in events if e.kind is EventKind.LOGIN_FAILED]
    assert len(failed) == 4
    assert all(token.split("_", 2)[2] not in json.dumps(e.to_dict()) for e in events)
    assert len(await lot_history(api, "A1")) == 1


async def test_a_reporting_system_with_the_viewer_role_reads_and_changes_nothing(
    api: RunningApi,
) -> None:
    """A system that only reads (reporting, an ERP that reconciles) had to be given a role
    that writes: every role but admin moves, holds or scraps lots, and admin manages users.
    ``viewer`` reads everything a role may read and nothing else; its refusals are recorded."""
    identity = api.state.identity
    async with api.client() as client:
        assert (await client.post("/lots", json=START)).status_code == 201
    await identity.add_user(ADMIN, "report", "Reporting", [Role.VIEWER], kind=UserKind.SYSTEM)
    _, token = await identity.issue_api_key(ADMIN, "report", "test")
    async with api.client(authorization=f"Bearer {token}") as client:
        for path in ("/lots", "/lots/A1", "/history", "/tools", "/events", "/line/status"):
            read = await client.get(path)
            assert read.status_code == 200, (path, read.text)
        for path, body in (
            ("/lots", {**START, "lot": "A2"}),
            ("/lots/A1/hold", {"reason": "x"}),
            ("/lots/A1/track-in", {"step": "SUBSTRATE_PREP"}),
        ):
            refused = await client.post(path, json=body)
            assert refused.status_code == 403, (path, refused.text)
            assert refused.json()["error"] == "not_authorized"
        assert (await client.get("/security/events")).status_code == 403
    assert len(await lot_history(api, "A1")) == 1
    events = await identity.events(ADMIN)
    refused_events = [e for e in events if e.kind is EventKind.REFUSED and e.actor == "report"]
    assert len(refused_events) == 4


async def test_a_token_in_the_url_is_refused_and_recorded_even_with_a_valid_header(
    api: RunningApi,
) -> None:
    """A key in the query (``?api_key=pkl_...``, as some clients do) was taken for no
    credentials at all (401, not recorded) and, beside a valid Authorization header, ignored:
    the request was served and the exposed key kept working. It is refused, and the security
    log names the key (never its secret) for an admin to revoke."""
    identity = api.state.identity
    await identity.add_user(ADMIN, "erp", "ERP", [Role.OPERATOR], kind=UserKind.SYSTEM)
    key, token = await identity.issue_api_key(ADMIN, "erp", "test")
    async with api.client() as client:
        assert (await client.post("/lots", json=START)).status_code == 201
    for params in ({"api_key": token}, {"token": f"Bearer {token}"}, {"x": token + "&y=1"}):
        for headers in ({}, {"authorization": f"Bearer {token}"}):
            async with api.client(**headers) as client:
                answer = await client.post("/lots/A1/hold", params=params, json={"reason": "x"})
                listed = await client.get("/lots", params=params)
            for refused in (answer, listed):
                assert refused.status_code == 401, (params, headers, refused.text)
                assert refused.json()["error"] == "login_refused"
                assert "credentials in the URL are refused" in refused.json()["message"]
                assert f"pkgline user revoke-key {key.key_id}" in refused.json()["message"]
    assert len(await lot_history(api, "A1")) == 1
    events = await identity.events(ADMIN)
    failed = [e for e in events if e.kind is EventKind.LOGIN_FAILED]
    assert len(failed) == 12 and {e.actor for e in failed} == {f"key {key.key_id}"}
    assert all(token.split("_", 2)[2] not in json.dumps(e.to_dict()) for e in events)


async def test_a_token_in_the_url_of_a_route_that_asks_no_credentials_is_refused_too(
    api: RunningApi,
) -> None:
    """The routes that take no principal (the login and logout, /health, /openapi.json, the
    station's pages) served a request whose URL held a key or a session token, and nothing
    was recorded: the exposed key kept working, unknown to an admin. They refuse it (401; the
    station with its page), and the security log names the key, as every other route does."""
    identity = api.state.identity
    await identity.add_user(ADMIN, "erp", "ERP", [Role.OPERATOR], kind=UserKind.SYSTEM)
    key, token = await identity.issue_api_key(ADMIN, "erp", "test")
    login = {"username": "nobody", "password": "x"}
    async with api.client() as client:
        for method, path, body in (
            ("POST", "/session", login),
            ("DELETE", "/session", None),
            ("GET", "/health", None),
            ("GET", "/openapi.json", None),
            ("GET", "/station/", None),
        ):
            said = await client.request(method, path, params={"api_key": token}, json=body)
            assert said.status_code == 401, (method, path, said.text)
            if not path.startswith("/station"):
                assert said.json()["error"] == "login_refused", said.text
                assert f"pkgline user revoke-key {key.key_id}" in said.json()["message"]
        assert (await client.get("/health")).status_code == 200
    events = await identity.events(ADMIN)
    failed = [e for e in events if e.kind is EventKind.LOGIN_FAILED]
    assert len(failed) == 5 and {e.actor for e in failed} == {f"key {key.key_id}"}


async def test_a_token_in_the_urls_path_is_refused_and_recorded_too(api: RunningApi) -> None:
    """Found by probing the running server: a key put in the path (``GET /lots/pkl_...``, a
    client that joins its token to the URL, or a session token under ``/session/``) was
    answered 404 ``unknown_lot`` (the key echoed in the body), the station's path a redirect
    to its login, and nothing was recorded: the exposed key kept working, unknown to an
    admin. It is refused as one in the query is (401, the security log names the key), and
    an id that merely starts like a token is still an id."""
    identity = api.state.identity
    await identity.add_user(ADMIN, "erp", "ERP", [Role.OPERATOR], kind=UserKind.SYSTEM)
    key, token = await identity.issue_api_key(ADMIN, "erp", "test")
    async with api.client() as client:
        assert (await client.post("/lots", json=START)).status_code == 201
        for method, path in (
            ("GET", f"/lots/{token}"),
            ("POST", f"/lots/{token}/hold"),
            ("DELETE", f"/session/{token}"),
            ("GET", f"/station/lots/{token}"),
            ("GET", f"/lots/A1%2F{token}"),
        ):
            body = {"reason": "x"} if method == "POST" else None
            said = await client.request(method, path, json=body)
            assert said.status_code == 401, (path, said.text)
            assert token not in said.text
            if not path.startswith("/station"):
                assert said.json()["error"] == "login_refused", said.text
                assert f"pkgline user revoke-key {key.key_id}" in said.json()["message"]
        lookalike = await client.get("/lots/pkl_0123456789ab_X")
        assert lookalike.status_code == 404 and lookalike.json()["error"] == "unknown_lot"
    assert len(await lot_history(api, "A1")) == 1
    events = await identity.events(ADMIN)
    failed = [e for e in events if e.kind is EventKind.LOGIN_FAILED]
    assert len(failed) == 5 and {e.actor for e in failed} == {f"key {key.key_id}"}
    assert all(token.split("_", 2)[2] not in json.dumps(e.to_dict()) for e in events)


async def test_two_authorization_headers_are_refused_and_recorded(api: RunningApi) -> None:
    """Found by probing the running server: a request with two ``Authorization`` headers (a
    viewer's session, then an admin's) was served as the first and the second ignored, so a
    proxy or a log that reads the other one names someone who did not act. HTTP allows one:
    two are refused (401), on the lot operations' short way too, recorded, and nothing
    changes."""
    identity = api.state.identity
    await identity.add_user(ADMIN, "erp", "ERP", [Role.OPERATOR], kind=UserKind.SYSTEM)
    await identity.add_user(ADMIN, "report", "Reporting", [Role.VIEWER], kind=UserKind.SYSTEM)
    _, operator = await identity.issue_api_key(ADMIN, "erp", "test")
    _, viewer = await identity.issue_api_key(ADMIN, "report", "test")
    async with api.client() as client:
        assert (await client.post("/lots", json=START)).status_code == 201
    transport = httpx.AsyncHTTPTransport(uds=str(api.socket))
    async with httpx.AsyncClient(transport=transport, base_url="http://pkgline") as client:
        for first, second in ((operator, viewer), (viewer, operator), (operator, operator)):
            headers = [("authorization", f"Bearer {first}"), ("authorization", f"Bearer {second}")]
            held = await client.post("/lots/A1/hold", json={"reason": "x"}, headers=headers)
            read = await client.get("/lots", headers=headers)
            for refused in (held, read):
                assert refused.status_code == 401, refused.text
                assert refused.json()["error"] == "login_refused"
                assert "2 Authorization headers" in refused.json()["message"]
    assert len(await lot_history(api, "A1")) == 1
    events = await identity.events(ADMIN)
    failed = [e for e in events if e.kind is EventKind.LOGIN_FAILED]
    assert len(failed) == 6
    assert {e.detail["why"] for e in failed} == {"2 Authorization headers in one request"}


async def test_credentials_are_checked_before_a_body_that_does_not_parse(api: RunningApi) -> None:
    """FastAPI parses a body before it solves the route's dependencies: a revoked key (or no
    credentials) sent with a body that is not JSON was answered 400, the key neither refused
    nor recorded. The credentials come first, as for every other refusal of a body."""
    identity = api.state.identity
    await identity.add_user(ADMIN, "erp", "ERP", [Role.OPERATOR], kind=UserKind.SYSTEM)
    key, token = await identity.issue_api_key(ADMIN, "erp", "test")
    await identity.revoke_api_key(ADMIN, key.key_id)
    bodies = ('{"lot": "A1"', '{"reason": "a", "reason": "b"}')
    for path in ("/lots", "/lots/A1/hold", "/durables"):
        for body in bodies:
            async with api.client(authorization=f"Bearer {token}") as client:
                answer = await client.post(
                    path, content=body, headers={"content-type": "application/json"}
                )
            assert answer.status_code == 401, (path, body, answer.text)
            assert answer.json()["error"] == "login_refused"
            assert answer.headers["www-authenticate"] == "Bearer"
    failed = [e for e in await identity.events(ADMIN) if e.kind is EventKind.LOGIN_FAILED]
    assert len(failed) == 6
    async with api.client() as client:  # the socket's OS account: the body's own refusal
        answer = await client.post(
            "/lots/A1/hold", content=bodies[0], headers={"content-type": "application/json"}
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "invalid_request"


async def test_a_refused_keys_security_event_says_why_it_was_refused(api: RunningApi) -> None:
    """Every refused API key was recorded "unknown or revoked key, or system disabled": an
    admin could not tell a script still sending a key revoked long ago from someone sending
    a live key's id with a secret of their own (a forgery, or a token cut short). The answer
    says no more than before (the caller learns nothing of which); the event says which."""
    identity = api.state.identity
    await identity.add_user(ADMIN, "erp", "ERP", [Role.VIEWER], kind=UserKind.SYSTEM)
    await identity.add_user(ADMIN, "old", "Old", [Role.VIEWER], kind=UserKind.SYSTEM)
    live, live_token = await identity.issue_api_key(ADMIN, "erp", "live")
    gone, gone_token = await identity.issue_api_key(ADMIN, "erp", "gone")
    _, old_token = await identity.issue_api_key(ADMIN, "old", "old")
    await identity.revoke_api_key(ADMIN, gone.key_id)
    await identity.set_disabled(ADMIN, "old", True, "retired")
    sent = {
        live_token[
            :-4
        ]: f"key {live.key_id}: wrong secret for the key (forged, or the token cut short)",
        gone_token: f"key {gone.key_id}: revoked key",
        old_token: f"key {old_token.split('_')[1]}: its system disabled",
        "pkl_0123456789ab_" + "x" * 43: "key 0123456789ab: unknown key",
    }
    answers = set()
    for token in sent:
        async with api.client(authorization=f"Bearer {token}") as client:
            refused = await client.get("/lots")
        assert refused.status_code == 401, refused.text
        answers.add(refused.json()["message"])
    assert len(answers) == 1, answers  # the caller is told the same whatever the cause
    failed = [e for e in await identity.events(ADMIN) if e.kind is EventKind.LOGIN_FAILED]
    assert sorted(f"{e.actor}: {e.detail['why']}" for e in failed) == sorted(sent.values())


async def test_a_bearer_that_is_no_pkgline_token_is_told_what_one_looks_like(
    api: RunningApi,
) -> None:
    """A Bearer that is neither an API key nor a session token (a key pasted without its
    pkl_ prefix, another system's JWT) was told "the token is not valid (unknown or
    expired): log in again", which a system, that has no login, cannot follow."""
    for sent in ("582b3b52e694_lSnnIQy6AgGEbWGHuMWx2qd7JwmT2BDB6sPWw1zgTME", "eyJhbGciOi.x.y"):
        async with api.client(authorization=f"Bearer {sent}") as client:
            refused = await client.get("/lots")
        assert refused.status_code == 401
        message = refused.json()["message"]
        assert "not a pkgline token" in message and "pkl_" in message and "pks_" in message
        assert "log in again" not in message
    failed = [e for e in await api.state.identity.events(ADMIN) if e.kind is EventKind.LOGIN_FAILED]
    assert [e.detail["why"] for e in failed] == ["not a pkgline token"] * 2
