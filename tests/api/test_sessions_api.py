"""Remote identity: a password login gives an expiring session token (stored hashed,
revocable); wrong passwords count to the lockout; a wrong, expired or ended token is 401 and
recorded; ``pkgline login`` over HTTPS keeps the token in a 0600 file and the lot commands use
it."""

from __future__ import annotations

import json
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mes.domain.authority import Role
from mes.domain.identity import MAX_FAILED_ATTEMPTS, EventKind
from mes.domain.tokens import CLAIMED_MAX, claimed
from pkgline.config import HttpsConfig
from simulators.ports import free_loopback_ports
from tests.api.conftest import ADMIN, RunningApi, cli, start_api
from tests.events.test_relay_faults import _pki as tls_files

PASSWORD = "correct horse battery"
START = {"lot": "A1", "flow": "fo-organic", "params": {"layers": "3"}}


async def _alice(api: RunningApi) -> None:
    await api.state.identity.add_user(
        ADMIN, "alice", "Alice Martin", [Role.OPERATOR], password=PASSWORD
    )


async def test_a_login_gives_a_token_that_acts_until_logout(api: RunningApi) -> None:
    await _alice(api)
    async with api.client() as client:
        login = await client.post("/session", json={"username": "alice", "password": PASSWORD})
        assert login.status_code == 200, login.text
        token = login.json()["token"]
        assert token.startswith("pks_") and login.json()["user"]["name"] == "alice"
        bearer = {"authorization": f"Bearer {token}"}
        started = await client.post("/lots", json=START, headers=bearer)
        assert started.status_code == 201, started.text
        entry = started.json()["recorded"][0]
        assert (entry["by"], entry["auth"]) == ("alice", "session")
        assert (await client.delete("/session", headers=bearer)).status_code == 204
        after = await client.post("/lots/A1/hold", json={"reason": "x"}, headers=bearer)
        assert after.status_code == 401 and "a logout" in after.json()["message"]
        forged = await client.get("/lots", headers={"authorization": f"Bearer {token[:-2]}xx"})
        assert forged.status_code == 401
    events = await api.state.identity.events(ADMIN)
    failed = [e for e in events if e.kind is EventKind.LOGIN_FAILED]
    assert [e.detail["why"] for e in failed] == [
        "session ended (a logout, its account disabled or its password set)",
        "unknown session",
    ]
    assert all(token.split("_", 2)[2] not in json.dumps(e.to_dict()) for e in events)


async def test_a_refused_token_is_recorded_by_its_id_as_issued_never_at_length(
    api: RunningApi,
) -> None:
    """Anyone may send a token, and the security log is append-only: what a refusal records of
    the claim is a token's id of the shape issued, or that it was malformed, never 60,000
    characters of whatever was sent (found by the API probe)."""
    long = "a" * 60_000
    sent = {
        f"pks_{long}_x": ("-", "malformed session token"),
        f"pkl_{long}_x": ("-", "malformed API key"),
        "pks_0123456789ab_x": ("session 0123456789ab", "unknown session"),
        "pkl_0123456789ab_x": ("key 0123456789ab", "unknown key"),
        f"pks_{'A' * 12}_x": ("-", "malformed session token"),
    }
    async with api.client() as client:
        for token in sent:
            refused = await client.get("/lots", headers={"authorization": f"Bearer {token}"})
            assert refused.status_code == 401, token[:20]
    failed = [e for e in await api.state.identity.events(ADMIN) if e.kind is EventKind.LOGIN_FAILED]
    assert sorted((e.actor, e.detail["why"]) for e in failed) == sorted(sent.values())


async def test_a_logout_with_a_token_that_is_no_session_is_refused_and_recorded(
    api: RunningApi,
) -> None:
    """``DELETE /session`` with a token that names no live session (a made-up one, or a real
    session's id with a wrong secret) was 401 and recorded nothing, where any other route
    records it: the logout route let anyone try tokens unseen. It records them as every
    route does; an API key is told it is no session (and recorded: no key logs out); a
    logout repeated after a lost answer still ends well (204)."""
    await _alice(api)
    identity = api.state.identity
    async with api.client() as client:
        login = await client.post("/session", json={"username": "alice", "password": PASSWORD})
        token = login.json()["token"]
        session = token.split("_")[1]
        for sent in ("pks_0123456789ab_x", f"pks_{session}_wrong", "pks_nonsense"):
            refused = await client.delete("/session", headers={"authorization": f"Bearer {sent}"})
            assert refused.status_code == 401, sent
            assert refused.json()["error"] == "login_refused"
        keyed = await client.delete("/session", headers={"authorization": "Bearer pkl_x_y"})
        assert keyed.status_code == 401
        assert "an API key is no session" in keyed.json()["message"], keyed.text
        bearer = {"authorization": f"Bearer {token}"}
        assert (await client.get("/lots", headers=bearer)).status_code == 200  # still live
        assert (await client.delete("/session", headers=bearer)).status_code == 204
        assert (await client.delete("/session", headers=bearer)).status_code == 204  # retried
        assert (await client.delete("/session")).status_code == 401  # none: not recorded
    failed = [e for e in await identity.events(ADMIN) if e.kind is EventKind.LOGIN_FAILED]
    assert sorted(e.actor for e in failed) == sorted(
        ["session 0123456789ab", f"session {session}", "-", "-"]
    ), [(e.actor, e.detail) for e in failed]


def test_a_claimed_name_is_recorded_on_one_line_and_cut_with_its_length() -> None:
    assert claimed("alice") == "alice"
    assert claimed("a\nb") == "a\ufffdb"
    cut = claimed("x" * 5_000)
    assert len(cut) <= CLAIMED_MAX and cut.endswith("... (5000 chars)")


async def test_wrong_passwords_lock_the_account_and_a_disabled_account_ends_its_sessions(
    api: RunningApi,
) -> None:
    await _alice(api)
    async with api.client() as client:
        good = await client.post("/session", json={"username": "alice", "password": PASSWORD})
        bearer = {"authorization": f"Bearer {good.json()['token']}"}
        for _ in range(MAX_FAILED_ATTEMPTS):
            wrong = await client.post("/session", json={"username": "alice", "password": "nope"})
            assert wrong.status_code == 401 and wrong.json()["error"] == "login_refused"
        locked = await client.post("/session", json={"username": "alice", "password": PASSWORD})
        assert locked.status_code == 401
        assert (await client.get("/lots", headers=bearer)).status_code == 200
        await api.state.identity.set_disabled(ADMIN, "alice", True)
        disabled = await client.get("/lots", headers=bearer)
        assert disabled.status_code == 401 and "disabled" in disabled.json()["message"]
        await api.state.identity.set_disabled(ADMIN, "alice", False)
        enabled = await client.get("/lots", headers=bearer)  # ended, not suspended
        assert enabled.status_code == 401 and "session ended" in enabled.json()["message"]
        extra = await client.post("/session", json={"username": "alice", "password": "x", "a": 1})
        assert extra.status_code == 422
    events = await api.state.identity.events(ADMIN)
    assert EventKind.LOCKED_OUT in [e.kind for e in events]
    # each says where the request came from: this process, on the server's socket
    failed = [e for e in events if e.kind is EventKind.LOGIN_FAILED]
    assert failed and {e.detail["from"] for e in failed} == {f"local socket, pid {os.getpid()}"}


async def test_a_password_set_ends_the_sessions_that_knew_the_old_one(api: RunningApi) -> None:
    """An admin's reset ends every session of the person; their own change ends all but the
    session they changed it from (found by the API probe: both left the sessions live)."""
    await _alice(api)
    new, newer = "another long passphrase 1", "and a third long passphrase"

    async def login(client: Any, password: str) -> dict[str, str]:
        answer = await client.post("/session", json={"username": "alice", "password": password})
        assert answer.status_code == 200, answer.text
        return {"authorization": f"Bearer {answer.json()['token']}"}

    async with api.client() as client:
        first, second = await login(client, PASSWORD), await login(client, PASSWORD)
        await api.state.identity.set_password(ADMIN, "alice", new)
        for ended in (first, second):
            refused = await client.get("/lots", headers=ended)
            assert refused.status_code == 401 and "session ended" in refused.json()["message"]
        third, fourth = await login(client, new), await login(client, new)
        wrong = await client.post(
            "/users/alice/own-password",
            json={"current": "not it at all", "new": newer},
            headers=third,
        )  # the password in the body is refused, not the session: 403, no WWW-Authenticate
        assert wrong.status_code == 403 and wrong.json()["error"] == "login_refused", wrong.text
        assert "www-authenticate" not in wrong.headers
        assert (await client.get("/lots", headers=third)).status_code == 200
        changed = await client.post(
            "/users/alice/own-password", json={"current": new, "new": newer}, headers=third
        )
        assert changed.status_code == 200, changed.text
        assert (await client.get("/lots", headers=third)).status_code == 200
        assert (await client.get("/lots", headers=fourth)).status_code == 401
    events = await api.state.identity.events(ADMIN)
    said = [(e.kind, e.detail.get("sessions_ended")) for e in events]
    assert (EventKind.PASSWORD_SET, 2) in said and (EventKind.PASSWORD_CHANGED, 1) in said


async def test_an_expired_session_is_refused(sqlite_url: str, tmp_path: Path) -> None:
    async with start_api(sqlite_url, tmp_path / "api.sock", session_lifetime=timedelta(0)) as api:
        await _alice(api)
        async with api.client() as client:
            login = await client.post("/session", json={"username": "alice", "password": PASSWORD})
            bearer = {"authorization": f"Bearer {login.json()['token']}"}
            expired = await client.get("/lots", headers=bearer)
        assert expired.status_code == 401 and "expired" in expired.json()["message"]


def _free_port() -> int:
    return free_loopback_ports(1)[0]


@pytest.mark.slow
async def test_pkgline_login_over_https_keeps_the_token_for_the_lot_commands(
    sqlite_url: str, tmp_path: Path
) -> None:
    ca, cert, key = tls_files(tmp_path / "tls")
    port = _free_port()
    https = HttpsConfig(host="127.0.0.1", port=port, certificate=cert, key=key)
    async with start_api(sqlite_url, tmp_path / "api.sock", https=https) as api:
        await _alice(api)
        server = f"https://127.0.0.1:{port}"
        env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "PKGLINE_SERVER_CA": str(ca)}
        refused = await cli("lot", "list", "--json", "--server", server, env=env)
        assert refused.returncode == 1 and json.loads(refused.stdout)["error"] == "login_refused"
        login = await cli(
            "login", "--server", server, "--user", "alice", "--password-stdin", env=env,
            stdin=PASSWORD + "\n",
        )  # fmt: skip
        assert login.returncode == 0, login.stderr
        assert "as alice (operator)" in login.stdout and PASSWORD not in login.stdout
        wrong = await cli(
            "login", "--server", server, "--user", "alice", "--password-stdin", env=env,
            stdin="not it\n",
        )  # fmt: skip
        assert wrong.returncode == 1, wrong.stderr
        [failed] = [
            e for e in await api.state.identity.events(ADMIN) if e.kind is EventKind.LOGIN_FAILED
        ]
        assert re.fullmatch(r"127\.0\.0\.1:\d+ \(https\)", failed.detail["from"]), failed
        [kept] = (tmp_path / "config" / "pkgline" / "sessions").iterdir()
        assert kept.stat().st_mode & 0o777 == 0o600
        started = await cli(
            "lot", "start", "A1", "--flow", "fo-organic", "--param", "layers=3", "--json",
            "--server", server, env=env,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        assert f"via server {server} as alice (session)" in started.stderr
        assert json.loads(started.stdout)["recorded"][0]["by"] == "alice"
        kept.write_text("not json\n")  # a kept session spoiled: said, and no token sent
        spoiled = await cli("lot", "show", "A1", "--server", server, env=env)
        assert spoiled.returncode == 1, spoiled.stderr
        assert f"the session kept in {kept} cannot be used (not a kept session)" in spoiled.stderr
        login = await cli(
            "login", "--server", server, "--user", "alice", "--password-stdin", env=env,
            stdin=PASSWORD + "\n",
        )  # fmt: skip
        assert login.returncode == 0, login.stderr
        out = await cli("logout", "--server", server, env=env)
        assert out.returncode == 0, out.stderr
        again = await cli("lot", "show", "A1", "--server", server, env=env)
        assert again.returncode == 1
        untrusted = await cli(
            "lot", "list", "--server", server, env={"XDG_CONFIG_HOME": str(tmp_path / "c2")}
        )
        assert untrusted.returncode == 4, untrusted.stderr
        assert "its certificate was not accepted" in untrusted.stderr
        assert "PKGLINE_SERVER_CA names the PEM file of the CA" in untrusted.stderr
        for wrong, why in ((key, "no certificate"), (tmp_path / "none.pem", "No such file")):
            env = {"XDG_CONFIG_HOME": str(tmp_path / "c2"), "PKGLINE_SERVER_CA": str(wrong)}
            unusable = await cli("lot", "list", "--server", server, env=env)
            assert unusable.returncode == 2, unusable.stderr
            assert f"PKGLINE_SERVER_CA '{wrong}': {why}" in unusable.stderr
            assert "Traceback" not in unusable.stderr
