"""Flow versions through the server (issue 14, issue 19): ``pkgline flow publish | versions |
diff | show --version | approve | retire`` as clients of a running server give what direct
mode gives; an engineer publishes and approves, and a quality engineer gives the second
approval, each signing with their own password; refusals (403 recorded, 422 with nothing
published, 409 for a replayed signature, 404) change nothing."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from flows import DEFS
from mes.domain.authority import Role
from mes.domain.identity import EventKind
from mes.domain.signatures import SignaturePolicy
from pkgline.bootstrap import seed_flow_versions
from pkgline.config import HttpsConfig
from simulators.ports import free_loopback_ports
from tests.api.conftest import ACCOUNT, ADMIN, RunningApi, cli, start_api
from tests.events.test_relay_faults import _pki as tls_files

FLOW = "fc-heatsink-muf"
OWN = "own-Secret-22"
"""The engineer's password, set by themselves (an admin's cannot sign)."""


def _edited(tmp_path: Path) -> Path:
    """A copy of the flow files where the flow requires BALL_MOUNT (one change of sequence)."""
    defs = tmp_path / "defs"
    shutil.copytree(DEFS, defs)
    flow_file = defs / f"{FLOW}.yaml"
    flow_file.write_text(flow_file.read_text().replace("MOLD [BALL_MOUNT]", "MOLD BALL_MOUNT"))
    return flow_file


async def _engineer(api: RunningApi) -> None:
    """The test's OS account: an engineer with a password of their own."""
    await api.roles(Role.ENGINEER)
    await api.state.identity.set_password(ADMIN, ACCOUNT, "set-by-the-admin")
    await api.state.identity.change_own_password(ACCOUNT, "set-by-the-admin", OWN)


def _files(flow_file: Path) -> dict[str, dict[str, dict[str, str]]]:
    directory = flow_file.parent
    names = ("steps.yaml", "fragments.yaml", flow_file.name)
    return {FLOW: {n: (directory / n).read_text() for n in names}}


@pytest.mark.slow
async def test_flow_commands_through_the_server_match_direct_mode(
    api: RunningApi, tmp_path: Path
) -> None:
    await seed_flow_versions(api.state.engine)
    await _engineer(api)
    server = f"unix://{api.socket}"
    via, direct = ("--server", server), ("--db", api.db)
    flow_file = _edited(tmp_path)

    published = await cli(
        "flow", "publish", str(flow_file), "--note", "balls always", "--json", *via
    )
    assert published.returncode == 0, published.stderr
    assert f"via server {server} as {ACCOUNT} (os_account)" in published.stderr
    [v2] = json.loads(published.stdout)
    assert (v2["version"], v2["state"], v2["new"], v2["author"]) == (2, "draft", True, ACCOUNT)
    again = await cli("flow", "publish", str(flow_file), "--note", "again", "--json", *direct)
    assert again.returncode == 0, again.stderr
    assert again.stderr.startswith("direct database sqlite:///")
    assert json.loads(again.stdout) == [{**v2, "new": False}]

    for args in (("versions", FLOW), ("diff", FLOW, "1", "2"), ("show", FLOW, "--version", "2")):
        for shape in ((), ("--json",)):
            through = await cli("flow", *args, *shape, *via)
            local = await cli("flow", *args, *shape, *direct)
            assert through.returncode == local.returncode == 0, through.stderr + local.stderr
            assert through.stdout == local.stdout, args
            assert "via server" in through.stderr and "direct database" in local.stderr
    changes = json.loads((await cli("flow", "diff", FLOW, "1", "2", "--json", *via)).stdout)
    assert len(changes["changes"]) == 1 and changes["changes"][0].startswith("sequence:")

    signed = await cli(
        "flow", "approve", FLOW, "2", "--meaning", "approved: balls always", "--json", *via,
        stdin=OWN + "\n",
    )  # fmt: skip
    assert signed.returncode == 0, signed.stdout + signed.stderr
    approved = json.loads(signed.stdout)
    assert (approved["state"], approved["approvals_needed"]) == ("approved", 1)
    [approval] = approved["approvals"]
    assert (approval["signer"], approval["method"], approval["meaning"]) == (
        ACCOUNT,
        "password",
        "approved: balls always",
    )
    assert approval["content_hash"] == v2["content_hash"]

    retired = await cli("flow", "retire", FLOW, "1", "--reason", "balls always now", *via)
    assert retired.returncode == 0, retired.stderr
    assert f"flow {FLOW} version 1 retired" in retired.stdout
    # published, approved and retired: each an engineering change in the security log, the
    # retirement with its reason
    events = await cli(
        "user", "events", "--kind", "engineering_change", "--json", "--limit", "10", *via
    )
    assert events.returncode == 0, events.stderr
    changes = [e for e in json.loads(events.stdout) if e["detail"].get("flow") == FLOW]
    assert sorted(e["action"] for e in changes) == ["flow_approve", "flow_publish", "flow_retire"]
    (retire,) = (e for e in changes if e["action"] == "flow_retire")
    assert retire["detail"]["reason"] == "balls always now" and retire["actor"] == ACCOUNT
    through = await cli("flow", "versions", FLOW, "--json", *via)
    local = await cli("flow", "versions", FLOW, "--json", *direct)
    assert json.loads(through.stdout) == json.loads(local.stdout)
    assert [v["state"] for v in json.loads(through.stdout)] == ["retired", "approved"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def served(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunningApi]:
    """A server on a database that ``db upgrade`` seeded with version 1 of every flow."""
    db: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    async with start_api(db, tmp_path / "api.sock") as running:
        await seed_flow_versions(running.state.engine)
        yield running


async def _states(api: RunningApi) -> list[tuple[int, str, int]]:
    async with api.client() as client:
        found = await client.get(f"/flows/{FLOW}/versions")
    assert found.status_code == 200, found.text
    return [(v["version"], v["state"], len(v["approvals"])) for v in found.json()]


async def test_refusals_of_the_flow_routes_change_nothing(
    served: RunningApi, tmp_path: Path
) -> None:
    """An operator cannot publish (403, recorded); a flow file that does not load, or not the
    three files of a flow, or one that loosens a claimed limit, is 422 and publishes nothing; an unknown flow is 404; a replayed
    signed approval is 409 and recorded."""
    api = served
    files = _files(_edited(tmp_path))
    async with api.client() as client:
        refused = await client.post("/flows/versions", json={"note": "x", "flows": files})
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"] == "not_authorized"
        assert refused.json()["allowed"] == ["engineer"]
        events = await api.state.identity.events(ADMIN)
        assert [(e.actor, e.action) for e in events if e.kind is EventKind.REFUSED][-1] == (
            ACCOUNT,
            "flow_publish",
        )

        await _engineer(api)
        broken = {FLOW: {**files[FLOW], f"{FLOW}.yaml": "sequence: [MOLD\n"}}
        malformed = await client.post("/flows/versions", json={"note": "x", "flows": broken})
        assert malformed.status_code == 422, malformed.text
        assert malformed.json()["error"] == "invalid_input"
        assert f"flow {FLOW} is not published" in malformed.json()["message"]
        partial = {FLOW: {f"{FLOW}.yaml": files[FLOW][f"{FLOW}.yaml"]}}
        missing = await client.post("/flows/versions", json={"note": "x", "flows": partial})
        assert missing.status_code == 422 and "steps.yaml" in missing.json()["message"]
        traversal = {FLOW: {**files[FLOW], "../x.yaml": "x"}}
        named = await client.post("/flows/versions", json={"note": "x", "flows": traversal})
        assert named.status_code == 422 and named.json()["error"] == "invalid_request"
        text = files[FLOW][f"{FLOW}.yaml"]
        looser = text.replace("one_of: [face_down]", "one_of: [face_down, face_up]")
        assert looser != text
        unclaimed = {FLOW: {**files[FLOW], f"{FLOW}.yaml": looser}}
        loose = await client.post("/flows/versions", json={"note": "x", "flows": unclaimed})
        assert loose.status_code == 422, loose.text
        assert loose.json()["error"] == "claimed_limit_loosened"
        assert "die_orientation: claim 001: 1 fixes one of face_down;" in loose.json()["message"]
        swapped = text.replace("HEAT_SINK_ATTACH MOLD", "MOLD HEAT_SINK_ATTACH")
        assert swapped != text
        order = {FLOW: {**files[FLOW], f"{FLOW}.yaml": swapped}}
        reordered = await client.post("/flows/versions", json={"note": "x", "flows": order})
        assert reordered.status_code == 422, reordered.text
        assert reordered.json()["error"] == "claimed_limit_loosened"
        assert "this version allows MOLD after" in reordered.json()["message"]
        assert await _states(api) == [(1, "approved", 1)]

        unknown = await client.get("/flows/no-such-flow/versions")
        assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_version"

        done = await client.post("/flows/versions", json={"note": "balls", "flows": files})
        assert done.status_code == 200, done.text
        unsigned = await client.post(f"/flows/{FLOW}/versions/2/approve", json={})
        assert unsigned.status_code == 422 and unsigned.json()["error"] == "signature_required"
        signature = {"username": ACCOUNT, "password": OWN, "meaning": "ok", "approvals_seen": 0}
        body = {"signatures": [signature]}
        approved = await client.post(f"/flows/{FLOW}/versions/2/approve", json=body)
        assert approved.status_code == 200, approved.text
        replayed = await client.post(f"/flows/{FLOW}/versions/2/approve", json=body)
        assert replayed.status_code == 409, replayed.text
        assert replayed.json()["error"] == "signature_stale"
        assert (replayed.json()["approvals_seen"], replayed.json()["approvals"]) == (0, 1)
    assert await _states(api) == [(1, "approved", 1), (2, "approved", 1)]
    events = await api.state.identity.events(ADMIN)
    stale = [e for e in events if e.kind is EventKind.SIGNATURE_REFUSED]
    assert stale and stale[-1].detail["error"] == "signature_stale"
    assert stale[-1].action == "flow_approve"


def _free_port() -> int:
    return free_loopback_ports(1)[0]


@pytest.mark.slow
async def test_an_engineer_and_a_quality_engineer_approve_through_the_server_each_signing(
    sqlite_url: str, tmp_path: Path
) -> None:
    """[signatures] two_signers = ["approve_flow"] on the server: the engineer (on the socket)
    publishes and gives the first approval; the version stays a draft until the quality
    engineer (logged in over HTTPS) signs with a password of her own: one an admin set
    cannot sign."""
    ca, cert, key = tls_files(tmp_path / "tls")
    port = _free_port()
    https = HttpsConfig(host="127.0.0.1", port=port, certificate=cert, key=key)
    two = SignaturePolicy.from_names(["approve_flow"])
    async with start_api(sqlite_url, tmp_path / "api.sock", https=https, signatures=two) as api:
        await seed_flow_versions(api.state.engine)
        await _engineer(api)
        await api.state.identity.add_user(
            ADMIN, "qa1", "Quinn Quality", [Role.QUALITY], password="set by the admin"
        )
        socket_via = ("--server", f"unix://{api.socket}")
        flow_file = _edited(tmp_path)
        published = await cli("flow", "publish", str(flow_file), "--note", "balls", *socket_via)
        assert published.returncode == 0, published.stderr
        first = await cli("flow", "approve", FLOW, "2", *socket_via, stdin=OWN + "\n")
        assert first.returncode == 0, first.stderr
        said = " ".join(first.stdout.split())
        assert "still a draft, approved by 1 of 2" in said
        assert "through the server as themselves" in said

        remote = f"https://127.0.0.1:{port}"
        env = {"XDG_CONFIG_HOME": str(tmp_path / "qa1"), "PKGLINE_SERVER_CA": str(ca)}
        login = await cli(
            "login", "--server", remote, "--user", "qa1", "--password-stdin", env=env,
            stdin="set by the admin\n",
        )  # fmt: skip
        assert login.returncode == 0, login.stderr
        approve: tuple[str, ...] = ("flow", "approve", FLOW, "2", "--json", "--server", remote)
        admins = await cli(*approve, env=env, stdin="set by the admin\n")
        assert admins.returncode == 1, admins.stdout
        assert json.loads(admins.stdout)["error"] == "signature_refused"
        assert "passwd --own" in json.loads(admins.stdout)["message"]

        own = await cli(  # through the server, from the session it goes on with
            "user", "passwd", "qa1", "--own", "--password-stdin", "--server", remote, env=env,
            stdin="set by the admin\nquinn's-own-9\n",
        )  # fmt: skip
        assert own.returncode == 0, own.stdout + own.stderr
        second = await cli(*approve, env=env, stdin="quinn's-own-9\n")
        assert second.returncode == 0, second.stdout + second.stderr
        assert f"via server {remote} as qa1 (session)" in second.stderr
        done: dict[str, Any] = json.loads(second.stdout)
        assert (done["state"], done["approvals_needed"]) == ("approved", 2)
        assert [(a["signer"], a["method"]) for a in done["approvals"]] == [
            (ACCOUNT, "password"),
            ("qa1", "password"),
        ]
        assert done["approvals"][1]["printed_name"] == "Quinn Quality"


async def test_a_flow_file_of_repeating_aliases_or_deep_brackets_is_refused(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Found by probing the running server: an engineer's publish of a flow file with seven
    lines of anchors repeating each other (a million values; ten lines, ten billion) held
    the server's event loop, every station and client waiting, ten times longer each line;
    brackets nested 5,000 deep answered 500 with the connection reset. Both are 422
    ``invalid_input`` saying why, nothing published, and the server answers the next
    request."""
    async with start_api(sqlite_url, tmp_path / "api.sock") as api:
        await seed_flow_versions(api.state.engine)
        await _engineer(api)
        files = _files(DEFS / f"{FLOW}.yaml")
        text = files[FLOW][f"{FLOW}.yaml"]
        repeated = ['zz0: &a0 ["x"]'] + [
            f"zz{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 7)
        ]
        deep = "zz: " + "[" * 5000 + "]" * 5000
        async with api.client() as client:
            for extra, says in ((repeated, "more than 100,000 values"), ([deep], "too deeply")):
                flow = {**files[FLOW], f"{FLOW}.yaml": text + "\n".join(extra) + "\n"}
                body = {"note": "x", "flows": {FLOW: flow}}
                refused = await client.post("/flows/versions", json=body)
                assert refused.status_code == 422, refused.text
                assert refused.json()["error"] == "invalid_input"
                assert says in refused.json()["message"], refused.json()
            assert (await client.get("/health")).status_code == 200
        assert await _states(api) == [(1, "approved", 1)]
