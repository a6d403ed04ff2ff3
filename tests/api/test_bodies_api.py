"""Request bodies as the server reads them, over the real socket: an object that gives a key
twice is refused (400) naming the key and where, on every route that takes a body (the lot
operations' short way and FastAPI's alike); nothing is changed."""

from __future__ import annotations

from fastapi.routing import APIRoute

from mes.domain.authority import Role
from pkgline.api.app import build_app
from pkgline.api.errors import NO_BODY
from pkgline.api.json_bodies import JsonRoute
from tests.api.conftest import START, RunningApi, lot_history

JSON = {"content-type": "application/json"}


async def test_a_key_given_twice_is_refused_naming_the_key_and_where(api: RunningApi) -> None:
    """``{"reason": "a", "reason": "b"}`` was a hold for "b" (the parser kept the last value);
    now it is 400 ``invalid_request`` saying which key, how many times and where, as the
    answer to a body that is not JSON is worded: on a lot operation (the short way), a key
    twice in a signature of a list (its path), a lot start and the login (FastAPI's way)."""
    async with api.client() as client:
        await api.roles(Role.OPERATOR, Role.QUALITY)
        assert (await client.post("/lots", json=START)).status_code == 201
        before = await lot_history(api, "A1")
        signature = (
            '{"username": "x", "password": "p", "meaning": "a", "meaning": "b", "lot_version": 1}'
        )
        sent = [
            ("/lots/A1/hold", '{"reason": "a", "reason": "b"}', "reason", "reason", 2),
            ("/lots/A1/scrap", f'{{"signatures": [{signature}]}}', "signatures.0.meaning",
             "meaning", 2),
            ("/lots", '{"lot": "A2", "flow": "fo-organic", "lot": "A3", "lot": "A4"}', "lot",
             "lot", 3),
            ("/session", '{"username": "a", "password": "x", "username": "b"}', "username",
             "username", 2),
        ]  # fmt: skip
        for path, body, where, key, count in sent:
            refused = await client.post(path, content=body.encode(), headers=JSON)
            assert refused.status_code == 400, (path, refused.text)
            said = refused.json()
            problem = (
                f"the key '{key}' is given {count} times in one object: give each key once "
                "(which value was meant is not clear)"
            )
            assert said == {
                "error": "invalid_request",
                "message": f"the body is not JSON the server takes ({where}: {problem}): "
                "expected one JSON object, as docs/api.md shows; nothing was changed",
                "problems": [{"where": where, "problem": problem}],
            }, path
        assert await lot_history(api, "A1") == before
        assert (await client.get("/lots/A1")).json()["state"] == "WAITING"
        assert (await client.get("/lots/A2")).status_code == 404
        assert (await client.get("/lots/A4")).status_code == 404
        held = await client.post("/lots/A1/hold", json={"reason": "b"})  # once: taken
        assert held.status_code == 200 and held.json()["state"] == "HOLD", held.text


def test_every_route_that_takes_a_json_body_reads_it_refusing_a_key_given_twice() -> None:
    """Each router's routes are :class:`JsonRoute`s (a router added without ``route_class``
    would take a key given twice again); the station's pages read forms, not JSON."""
    app = build_app(None, 1024)
    taking: list[str] = []
    for included in app.routes:
        router = getattr(included, "original_router", None)
        for route in [included] if router is None else router.routes:
            if isinstance(route, APIRoute) and route.body_field is not None:
                assert isinstance(route, JsonRoute), route.path
                taking.append(route.path)
    assert "/lots/{lot_id}/hold" in taking and "/session" in taking and len(taking) > 30


async def test_numbers_and_booleans_given_as_text_are_refused_saying_what_was_expected(
    api: RunningApi,
) -> None:
    """``"priority": "3"`` was taken as 3: a body's number, whole number or boolean given as
    text (or a whole number as 3.0) is 422 ``invalid_request`` saying what was expected and
    what was given, nothing changed, on a lot start, a lot operation (the short way hands it
    to FastAPI) and an SPC chart; JSON's own types are taken, and the flows' values
    (``params``) still take text, parsed with the flow's type as the CLI's."""
    whole = "expected a whole number (a JSON number, without quotes)"
    boolean = "expected true or false (a JSON boolean, without quotes)"
    async with api.client() as client:
        await api.roles(Role.OPERATOR, Role.ENGINEER)
        assert (await client.post("/lots", json=START)).status_code == 201  # "layers": "3"
        before = await lot_history(api, "A1")
        sent = [
            ("/lots", {**START, "lot": "A2", "priority": "3"},
             [("priority", f"{whole}, got the text '3'")]),
            ("/lots", {**START, "lot": "A2", "carriers": 2.0},
             [("carriers", f"{whole}, got 2.0")]),
            ("/lots/A1/migrate", {"version": "1"}, [("version", f"{whole}, got the text '1'")]),
            ("/spc/charts",
             {"step": "DIE_ATTACH", "value": "bond_line_um", "tool": "DA-1", "baseline": "20",
              "nelson": "true", "inhibit": 1},
             [("baseline", f"{whole}, got the text '20'"),
              ("nelson", f"{boolean}, got the text 'true'"),
              ("inhibit", f"{boolean}, got 1")]),
        ]  # fmt: skip
        for path, body, problems in sent:
            refused = await client.post(path, json=body)
            assert refused.status_code == 422, (path, refused.text)
            said = refused.json()
            assert said["error"] == "invalid_request"
            assert [(p["where"], p["problem"]) for p in said["problems"]] == problems, path
            assert said["message"].endswith("; nothing was changed")
            assert all(problem in said["message"] for _, problem in problems)
        assert (await client.get("/lots/A2")).status_code == 404
        assert await lot_history(api, "A1") == before
        assert (await client.get("/spc/charts")).json() == []
        started = await client.post("/lots", json={**START, "lot": "A2", "priority": 3})
        assert started.status_code == 201 and started.json()["priority"] == 3, started.text


async def test_a_request_sent_without_its_body_is_told_so(api: RunningApi) -> None:
    """A POST sent with no body at all (curl -X POST without -d) was refused "body: Field
    required", as if a field named body were missing (found by walking the API as an
    integrator). It says no body was sent and what to send, on the lot operations' short way
    and FastAPI's alike."""
    async with api.client() as client:
        assert (await client.post("/lots", json=START)).status_code == 201
        for path in ("/lots", "/lots/A1/hold", "/durables", "/lots/A1/track-in"):
            for headers in ({}, JSON):
                refused = await client.post(path, headers=headers)
                assert refused.status_code == 422, (path, refused.text)
                answer = refused.json()
                assert answer["error"] == "invalid_request"
                assert answer["problems"] == [{"where": "body", "problem": NO_BODY}], (
                    path,
                    headers,
                    answer,
                )
                assert "no body was sent" in answer["message"]
    assert len(await lot_history(api, "A1")) == 1


async def test_a_body_that_is_no_object_or_names_an_unknown_field_is_told_what_it_takes(
    api: RunningApi,
) -> None:
    """A body that is an array was "Input should be a valid dictionary or object to extract
    fields from"; a misspelt field ("resaon") "Extra inputs are not permitted", naming none
    of the fields the body takes. Both say what was expected; nothing is changed."""
    async with api.client() as client:
        assert (await client.post("/lots", json=START)).status_code == 201
        for path, body, problem in (
            ("/lots/A1/hold", [], "expected one JSON object, as docs/api.md shows; got an array"),
            ("/lots", "A1", "expected one JSON object, as docs/api.md shows; got a text"),
            (
                "/lots/A1/hold",
                {"resaon": "voids"},
                "an unknown field: this body takes reason, code",
            ),
            (
                "/lots",
                {"lot": "A2", "flow": "fo-organic", "priorty": 2},
                "an unknown field: this body takes lot, flow, carriers, rows, cols, params, "
                "priority",
            ),
        ):
            refused = await client.post(path, json=body)
            assert refused.status_code == 422, (path, refused.text)
            assert refused.json()["error"] == "invalid_request"
            assert [p["problem"] for p in refused.json()["problems"]] == [problem], refused.text
    assert len(await lot_history(api, "A1")) == 1
