"""The API as a contract: the OpenAPI document served is the one in docs/; schemathesis
generates requests from it (a bounded number per operation, and sequences of them) and the
server answers none with a 5xx, answers each as documented (status, content type, body), and
refuses what the document refuses; 50 clients moving lots at once leave every lot where it should be and the history
verifying."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import jsonschema
import pytest

from mes.adapters.audit import verify_history
from mes.adapters.database import create_engine
from mes.domain.authority import Role
from mes.domain.identity import UserKind
from pkgline.config import HttpsConfig
from simulators.ports import free_loopback_ports
from tests.api.conftest import ADMIN, RunningApi, start_api
from tests.events.test_relay_faults import _pki as tls_files

DOCUMENT = Path(__file__).parents[2] / "docs" / "openapi.json"
EXAMPLES_PER_OPERATION = 15
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",  # every status answered is documented
    "content_type_conformance",
    "response_schema_conformance",  # every answer is as documented
    "negative_data_rejection",  # what the document refuses, the server refuses
    "use_after_free",
    "ensure_resource_availability",
)


async def test_the_served_openapi_document_is_the_one_in_docs(api: RunningApi) -> None:
    async with api.client() as client:
        served = (await client.get("/openapi.json")).json()
    assert served["openapi"].startswith("3.1")
    assert served == json.loads(DOCUMENT.read_text(encoding="utf-8")), (
        "docs/openapi.json is not the API's document: regenerate it with "
        "'.venv/bin/pkgline api --print-openapi > docs/openapi.json'"
    )


async def test_every_refusals_fields_are_in_the_documents_refusal_schema(api: RunningApi) -> None:
    """The document's Refusal named error, message, lot, allowed and claim only: a client made
    from it knew nothing of ``problems`` (where an invalid request is wrong), nor of a limit's
    ``violations``, an interlock's ``interlock`` and ``expected``, nor of what a signature's
    refusal says (``signers_needed``, ``lot_version`` ...), all of which the server answers."""
    schema = json.loads(DOCUMENT.read_text(encoding="utf-8"))["components"]["schemas"]
    documented = set(schema["Refusal"]["properties"])
    answered = {"problems", "violations", "interlock", "expected", "action", "signers_needed"}
    answered |= {"signers_given", "meaning", "signer", "signed_version", "lot_version"}
    assert answered <= documented, answered - documented
    async with api.client() as client:
        wrong = await client.get("/lots", params={"limit": "many"})
    assert wrong.status_code == 422
    assert set(wrong.json()) <= documented, wrong.json()
    problem = schema["Problem"]
    assert set(problem["required"]) == {"where", "problem"}
    assert set(wrong.json()["problems"][0]) == set(problem["properties"])


def test_the_document_says_which_routes_answer_an_etag_and_take_if_match() -> None:
    """docs/api.md's optimistic concurrency is in the document a client is made from: every
    operation on a lot (``POST /lots/{lot_id}/...``, the E142 map import too) takes an
    ``If-Match`` header, and its answer, a lot's (``GET /lots/{lot_id}``) and a start's carry
    an ``ETag``. The document named neither, so a generated client could not send one nor
    read the other (found by probing the demo as an integrator)."""
    document = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    operations = [
        path for path, ops in document["paths"].items()
        if path.startswith("/lots/{lot_id}/") and "post" in ops
    ]  # fmt: skip
    assert len(operations) == 13, operations
    answered = [("/lots", "post", "201"), ("/lots/{lot_id}", "get", "200")]
    answered += [(path, "post", "200") for path in operations]
    for path, method, status in answered:
        headers = document["paths"][path][method]["responses"][status].get("headers", {})
        assert "ETag" in headers, (method, path)
    for path in operations:
        parameters = document["paths"][path]["post"]["parameters"]
        [if_match] = [p for p in parameters if p["in"] == "header" and p["name"] == "If-Match"]
        assert if_match["required"] is False, path


def _free_port() -> int:
    return free_loopback_ports(1)[0]


@pytest.mark.slow
@pytest.mark.timeout(420)  # a hang guard: the run takes 60-125 s on a loaded 2-core machine
async def test_schemathesis_finds_no_server_error(sqlite_url: str, tmp_path: Path) -> None:
    ca, cert, key = tls_files(tmp_path / "tls")
    port = _free_port()
    https = HttpsConfig(host="127.0.0.1", port=port, certificate=cert, key=key)
    async with start_api(sqlite_url, tmp_path / "api.sock", https=https) as api:
        identity = api.state.identity
        roles = [Role.OPERATOR, Role.TECHNICIAN, Role.ENGINEER, Role.QUALITY]
        await identity.add_user(ADMIN, "fuzzer", "Fuzzer", roles, kind=UserKind.SYSTEM)
        _, token = await identity.issue_api_key(ADMIN, "fuzzer", "schemathesis")
        async with api.client() as client:  # a lot to aim at, besides the generated ids
            started = await client.post("/lots", json={"lot": "A1", "flow": "fo-organic"})
            assert started.status_code in (201, 422), started.text
        config = tmp_path / "schemathesis.toml"
        config.write_text('headers = { Authorization = "Bearer ${PKGLINE_FUZZ_KEY}" }\n')
        child = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).with_name("st")),
            "--config-file", str(config), "--no-color",
            "run", f"https://127.0.0.1:{port}/openapi.json",
            "--tls-verify", str(ca),
            "--checks", ",".join(CHECKS),
            "--max-examples", str(EXAMPLES_PER_OPERATION),
            "--phases", "examples,coverage,fuzzing,stateful",
            "--seed", "14",
            "--generation-deterministic",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PKGLINE_FUZZ_KEY": token},
            cwd=tmp_path,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(child.communicate(), 360)
        text = output.decode(errors="replace")
        assert child.returncode == 0, text[-4000:]
        assert "No issues found" in text or "passed" in text, text[-2000:]


async def test_fifty_clients_moving_lots_at_once(api: RunningApi) -> None:
    """Each client starts its lot, tracks it in, aborts the step, tracks it in and out again
    (a release would need a signature, which the server does not take yet); the server
    answers every one, every lot ends where its client left it, and the history verifies."""
    clients = 50

    async def one(n: int) -> None:
        lot = f"C{n:02d}"
        async with api.client() as client:
            steps = [
                ("/lots", {"lot": lot, "flow": "fo-organic", "params": {"layers": "3"}}),
                (f"/lots/{lot}/track-in", {"step": "SUBSTRATE_PREP"}),
                (f"/lots/{lot}/abort", {"reason": f"client {n}"}),
                (f"/lots/{lot}/track-in", {"step": "SUBSTRATE_PREP"}),
                (f"/lots/{lot}/track-out", {}),
            ]
            for path, body in steps:
                for _ in range(20):  # a database that says retry: the client retries
                    answer = await client.post(path, json=body, timeout=60)
                    if answer.status_code != 409 or answer.json()["error"] != "retry":
                        break
                assert answer.status_code in (200, 201), (path, answer.text)

    await asyncio.gather(*(one(n) for n in range(clients)))
    async with api.client() as client:
        listed = (await client.get("/lots", params={"limit": 100})).json()
        assert listed["total"] == clients
        assert {lot["state"] for lot in listed["lots"]} == {"WAITING"}
        assert {lot["step"] for lot in listed["lots"]} == {"SUBSTRATE_PREP"}
        shown = (await client.get("/lots/C07")).json()
    assert [e["operation"] for e in shown["history"]] == [
        "start", "track_in", "abort", "track_in", "track_out",
    ]  # fmt: skip
    engine = create_engine(api.db)
    try:
        verified = await verify_history(engine)
    finally:
        await engine.dispose()
    assert verified.problem is None and verified.entries == clients * 5


def test_the_document_declares_the_bearer_credentials_each_operation_asks_for() -> None:
    """The routes read ``Authorization`` themselves, so the document named no credentials:
    a client generated from it (an ERP's, a report's) sent no API key and met 401 on every
    route, and nothing said the 401 carries ``WWW-Authenticate`` nor a 429 or 503
    ``Retry-After`` (found by walking the API as a plant's integrator)."""
    document = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    scheme = document["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    open_to_all = {("/session", "post"), ("/health", "get")}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            declared = operation.get("security")
            if (path, method) in open_to_all:
                assert declared is None, (method, path)
            else:
                assert declared == [{"bearer": []}], (method, path)
            responses = operation["responses"]
            for status, header in (("401", "WWW-Authenticate"), ("429", "Retry-After")):
                if status in responses:
                    assert header in responses[status]["headers"], (method, path, status)
            if "503" in responses:
                assert "Retry-After" in responses["503"]["headers"], (method, path)


async def test_the_pages_an_integrator_walks_are_described_and_answered_as_described(
    api: RunningApi,
) -> None:
    """``GET /lots``, ``/history`` and ``/events`` answered a page whose shape the document
    left empty (``{}``, or an object of anything): a client made from it knew of no
    ``next_after`` to page with. Each declares its page, and what the server answers (a
    page with more to follow, and the last) is valid against it."""
    document = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    async with api.client() as client:
        for lot in ("A1", "A2", "A3"):
            started = await client.post("/lots", json={"lot": lot, "flow": "fo-organic"})
            assert started.status_code == 201, started.text
        for path, items in (("/lots", "lots"), ("/history", "entries"), ("/events", "events")):
            answer = document["paths"][path]["get"]["responses"]["200"]
            schema = answer["content"]["application/json"]["schema"]
            assert schema["properties"][items]["type"] == "array", path
            assert {"next_after", "more", "total"} <= set(schema["required"]), path
            first = (await client.get(path, params={"limit": 2})).json()
            assert first["more"] is True, (path, first)
            jsonschema.validate(first, schema)
            last = (await client.get(path, params={"after": first["next_after"]})).json()
            jsonschema.validate(last, schema)
