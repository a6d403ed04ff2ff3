"""The header ``pkgline-principal`` (docs/api.md, "Who is asking"): every answer to a request
whose credentials were taken names the principal, a refusal of any kind too (a value, a
query, an unknown lot, the database); one refusing the credentials (401) names none."""

from __future__ import annotations

import pytest
from fastapi import Request

from mes.adapters.errors import DatabaseRetryable, DatabaseUnavailable
from pkgline.api import errors
from pkgline.api.defaults import PRINCIPAL_HEADER
from tests.api.conftest import ACCOUNT, START, RunningApi

SAID = f"{ACCOUNT} (os_account)"


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/lots/A1", None, 200),
        ("GET", "/lots/NOPE", None, 404),  # unknown lot
        ("POST", "/lots", START, 409),  # exists already
        ("GET", "/lots?sate=HOLD", None, 422),  # a query parameter the route does not take
        ("GET", "/lots?limit=many", None, 422),  # a query value of the wrong type
        ("POST", "/lots/A1/hold", {"reason": "x", "user": "mallory"}, 422),  # unknown field
        ("POST", "/lots/A1/hold", {"reason": 3}, 422),  # a field of the wrong type
        ("POST", "/lots/A1/hold", [], 422),  # not an object
        ("POST", "/lots/A1/hold", None, 422),  # no body
    ],
)
async def test_every_answer_to_a_request_whose_credentials_were_taken_names_the_principal(
    api: RunningApi, method: str, path: str, body: object, status: int
) -> None:
    async with api.client() as client:
        assert (await client.post("/lots", json=START)).status_code == 201
        kwargs = {"json": body} if body is not None else {}
        answered = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
    assert answered.status_code == status, answered.text
    assert answered.headers.get_list(PRINCIPAL_HEADER) == [SAID]


async def test_an_answer_refusing_the_credentials_names_no_principal(api: RunningApi) -> None:
    token = "pkl_000000000000_" + "x" * 43
    async with api.client(authorization=f"Bearer {token}") as client:
        for path in ("/lots/A1", "/lots?sate=HOLD"):
            refused = await client.get(path)
            assert refused.status_code == 401, refused.text
            assert PRINCIPAL_HEADER not in refused.headers


def _request_of(principal: str | None) -> Request:
    state = {} if principal is None else {"principal": principal}
    return Request(
        {"type": "http", "method": "GET", "path": "/lots", "headers": [], "state": state}
    )


@pytest.mark.parametrize(
    ("exc", "status"),
    [(DatabaseUnavailable("the server is gone"), 503), (DatabaseRetryable("deadlock"), 409)],
)
async def test_the_databases_refusals_name_the_principal_that_was_taken(
    exc: Exception, status: int
) -> None:
    answered = await errors.database(_request_of(SAID), exc)
    assert answered.status_code == status
    assert answered.headers.get(PRINCIPAL_HEADER) == SAID
    anonymous = await errors.database(_request_of(None), exc)
    assert PRINCIPAL_HEADER not in anonymous.headers


def test_a_401_never_names_a_principal() -> None:
    refusal = errors.error_response(401, {"error": "login_refused", "message": "no"})
    assert PRINCIPAL_HEADER not in errors.says_principal(_request_of(SAID), refusal).headers
