"""A resource made is answered 201 with its URL path as ``Location``, over the real socket: a
lot, a durable, a material lot, a user; the path's GET answers it. The OpenAPI document
declares it on every 201 answer whose resource has a URL."""

from __future__ import annotations

from mes.domain.authority import Role
from pkgline.api.app import openapi_document
from tests.api.conftest import START, RunningApi

NO_URL_OF_THEIR_OWN = {("post", "/reasons"), ("post", "/users/{username}/keys")}
"""201 answers with no Location: a reason code and an API key have no GET of their own (the
list of codes; a key is revoked by its id and never shown again)."""


async def test_a_resource_made_is_answered_with_its_url_path_as_location(
    api: RunningApi,
) -> None:
    """Each 201 names the resource's path; that path's GET answers the same resource (a
    client joins it to the server's address); a lot's start carries its ETag besides."""
    async with api.client() as client:
        await api.roles(Role.OPERATOR, Role.ENGINEER, Role.TECHNICIAN, Role.ADMIN)
        made = [
            ("/lots", START, "/lots/A1", "id"),
            ("/durables", {"durable": "CAP-7", "kind": "capillary", "life": 1000},
             "/durables/CAP-7", "id"),
            ("/materials",
             {"material": "EPX-1", "kind": "adhesive", "expires_at": "2099-01-01T00:00Z"},
             "/materials/EPX-1", "id"),
            ("/users", {"username": "ana.maria", "name": "Ana Maria", "roles": ["viewer"]},
             "/users/ana.maria", "username"),
        ]  # fmt: skip
        for path, body, where, key in made:
            answer = await client.post(path, json=body)
            assert answer.status_code == 201, (path, answer.text)
            assert answer.headers["location"] == where, path
            shown = await client.get(answer.headers["location"])
            assert shown.status_code == 200, (where, shown.text)
            found = shown.json()
            found = found.get("durable", found.get("material", found))  # their views nest it
            assert found[key] == where.rsplit("/", 1)[1], (where, found)
        started = await client.post("/lots", json={**START, "lot": "A2"})
        assert started.headers["etag"] == '"1"' and started.headers["location"] == "/lots/A2"


def test_the_openapi_document_declares_location_on_every_201_answer_with_a_url() -> None:
    answers = {
        (method, path): operation["responses"]["201"]
        for path, methods in openapi_document()["paths"].items()
        for method, operation in methods.items()
        if "201" in operation["responses"]
    }
    with_location = {at for at, said in answers.items() if "Location" in said.get("headers", {})}
    assert with_location == set(answers) - NO_URL_OF_THEIR_OWN
    assert with_location == {
        ("post", "/lots"),
        ("post", "/durables"),
        ("post", "/materials"),
        ("post", "/users"),
    }
    assert set(answers[("post", "/lots")]["headers"]) == {"Location", "ETag"}
