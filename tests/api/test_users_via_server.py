"""``pkgline user ...`` as a client of a running server (on a Unix socket in tmp_path): the
same JSON and output as direct mode; changes to users are the admin's (anyone else: 403,
recorded, nothing changed); a person changes their own password through the server, and
nobody else's; an unknown user is 404, a malformed value 422. Passwords go in request
bodies only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mes.domain.authority import Role
from mes.domain.identity import EventKind, SecurityEventQuery, UserKind
from tests.api.conftest import ACCOUNT, ADMIN, RunningApi, cli

pytestmark = pytest.mark.slow


async def _refusals(api: RunningApi) -> list[Any]:
    return [
        e
        for e in await api.state.identity.events(ADMIN, 1000)
        if e.kind is EventKind.REFUSED and e.actor == ACCOUNT
    ]


async def _names(api: RunningApi) -> list[str]:
    return [u.username for u in await api.state.identity.users(ADMIN)]


async def test_user_commands_through_the_server_are_the_admins(api: RunningApi) -> None:
    via = ("--server", f"unix://{api.socket}")
    refused = await cli(
        "user", "add", "bob", "--name", "Bob Stone", "--role", "operator", "--password-stdin",
        "--json", *via, stdin="bob-Secret-123\n",
    )  # fmt: skip
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert json.loads(refused.stdout)["error"] == "not_authorized"
    assert json.loads(refused.stdout)["allowed"] == ["admin"]
    assert f"via server unix://{api.socket} as {ACCOUNT} (os_account)" in refused.stderr
    assert len(await _refusals(api)) == 1
    assert "bob" not in await _names(api)

    await api.roles(Role.ADMIN, Role.OPERATOR)
    added = await cli(
        "user", "add", "bob", "--name", "Bob Stone", "--role", "operator", "--password-stdin",
        *via, stdin="bob-Secret-123\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "✔ user bob added" in added.stdout and "Bob Stone (person): operator" in added.stdout
    bob = await api.state.identity.user(ADMIN, "bob")
    assert bob.password_hash is not None and bob.password_set_by == ACCOUNT

    shown = await cli("user", "show", "bob", "--json", *via)
    shown_direct = await cli("user", "show", "bob", "--json", "--db", api.db)
    assert shown.returncode == shown_direct.returncode == 0
    assert json.loads(shown.stdout) == json.loads(shown_direct.stdout)
    human = await cli("user", "show", "bob", *via)
    human_direct = await cli("user", "show", "bob", "--db", api.db)
    assert human.stdout == human_direct.stdout and "may not sign" in human.stdout
    listed = await cli("user", "list", "--json", *via)
    listed_direct = await cli("user", "list", "--json", "--db", api.db)
    assert json.loads(listed.stdout) == json.loads(listed_direct.stdout)

    roles = await cli("user", "role", "bob", "--add", "quality", "--json", *via)
    assert roles.returncode == 0 and json.loads(roles.stdout)["roles"] == ["operator", "quality"]
    disabled = await cli("user", "disable", "bob", "--reason", "left", *via)
    assert disabled.returncode == 0 and "✔ user bob disabled" in disabled.stdout
    again = await cli("user", "disable", "bob", *via)
    assert again.returncode == 0 and "user bob was disabled already" in again.stdout
    assert (await api.state.identity.user(ADMIN, "bob")).disabled
    enabled = await cli("user", "enable", "bob", "--json", *via)
    assert enabled.returncode == 0 and json.loads(enabled.stdout)["disabled"] is False
    reset = await cli("user", "passwd", "bob", "--password-stdin", *via, stdin="bob-Other-456\n")
    assert reset.returncode == 0 and "✔ user bob has a new password" in reset.stdout

    system = await cli(
        "user", "add", "mes1", "--name", "MES", "--role", "operator", "--system", *via
    )
    assert system.returncode == 0, system.stderr
    issued = await cli("user", "key", "mes1", "--label", "ERP link", "--json", *via)
    assert issued.returncode == 0, issued.stderr
    key = json.loads(issued.stdout)
    assert key["token"].startswith("pkl_") and key["user"] == "mes1"
    twice = await cli("user", "key", "mes1", "--label", "ERP link", "--json", *via)  # a retry
    assert twice.returncode == 1, twice.stdout
    assert json.loads(twice.stdout)["error"] == "record_exists"
    assert json.loads(twice.stdout)["allowed"] == [key["key_id"]]
    revoked = await cli("user", "revoke-key", key["key_id"], *via)
    assert revoked.returncode == 0
    assert f"✔ API key {key['key_id']} of mes1 revoked" in revoked.stdout
    listed = await cli("user", "keys", "mes1", "--json", *via)
    listed_direct = await cli("user", "keys", "mes1", "--json", "--db", api.db)
    assert listed.returncode == listed_direct.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == json.loads(listed_direct.stdout)
    assert [
        (k["key_id"], k["label"], k["revoked_by"] is not None) for k in json.loads(listed.stdout)
    ] == [(key["key_id"], "ERP link", True)]
    assert "token" not in listed.stdout and key["token"] not in listed.stdout
    again = await cli("user", "revoke-key", "000000000000", "--json", *via)
    assert again.returncode == 1 and json.loads(again.stdout)["error"] == "unknown_api_key"

    events = await cli("user", "events", "--limit", "5", "--json", *via)
    events_direct = await cli("user", "events", "--limit", "5", "--json", "--db", api.db)
    assert events.returncode == events_direct.returncode == 0
    assert json.loads(events.stdout) == json.loads(events_direct.stdout)
    assert len(json.loads(events.stdout)) == 5
    for sent in ("bob-Secret-123", "bob-Other-456"):
        assert sent not in events.stdout
    # newest first, a page at a time: the next page after the last seq, either way alike
    newest = json.loads(events.stdout)
    assert [e["seq"] for e in newest] == sorted((e["seq"] for e in newest), reverse=True)
    notice = json.loads(events.stderr.strip().splitlines()[-1])
    assert notice["shown"] == 5 and notice["more"] and notice["next_after"] == newest[-1]["seq"]
    older = await cli("user", "events", "--after", str(newest[-1]["seq"]), "--json", *via)
    older_direct = await cli(
        "user", "events", "--after", str(newest[-1]["seq"]), "--json", "--db", api.db
    )
    assert json.loads(older.stdout) == json.loads(older_direct.stdout)
    assert all(e["seq"] < newest[-1]["seq"] for e in json.loads(older.stdout))
    refusals = await cli("user", "events", "--kind", "refused", "--user", ACCOUNT, "--json", *via)
    assert refusals.returncode == 0, refusals.stderr
    assert {(e["kind"], e["actor"]) for e in json.loads(refusals.stdout)} == {("refused", ACCOUNT)}
    bad_kind = await cli("user", "events", "--kind", "sideways", *via)
    assert bad_kind.returncode == 2 and "expected one of login," in bad_kind.stderr

    unknown = await cli("user", "show", "nobody-here", "--json", *via)
    assert unknown.returncode == 1 and json.loads(unknown.stdout)["error"] == "unknown_user"
    not_a_role = await cli("user", "role", "bob", "--add", "wizard", *via)
    assert not_a_role.returncode == 2 and "roles:" in not_a_role.stderr  # said before any request
    async with api.client() as client:
        wizard = await client.post("/users/bob/roles", json={"add": ["wizard"]})
        assert wizard.status_code == 422 and wizard.json()["error"] == "invalid_input"
        assert "admin" in wizard.json()["allowed"]
        none = await client.post("/users", json={"username": "eve", "name": "Eve", "roles": []})
        assert none.status_code == 422
        short = await client.post("/users/bob/password", json={"password": "Zq9"})
        assert short.status_code == 422 and "Zq9" not in short.text  # never echoed
        for params in ({"limit": 0}, {"kind": "sideways"}, {"since": "soon"}, {"after": 999999}):
            refused_query = await client.get("/security/events", params=params)
            assert refused_query.status_code == 422, (params, refused_query.text)
        page = (await client.get("/security/events", params={"limit": 2})).json()
        assert set(page) == {"events", "total", "total_exact", "shown", "more", "next_after"}
        assert page["shown"] == 2 and page["total"] >= 5 and page["more"]
        assert (await client.post("/users/nobody-here/enable")).status_code == 404
    assert (await api.state.identity.user(ADMIN, "bob")).roles == {Role.OPERATOR, Role.QUALITY}
    assert "eve" not in await _names(api)


async def test_a_person_changes_their_own_password_through_the_server_and_nobody_elses(
    api: RunningApi,
) -> None:
    via = ("--server", f"unix://{api.socket}")
    await api.state.identity.set_password(ADMIN, ACCOUNT, "first-Secret-1")
    await api.state.identity.add_user(ADMIN, "bob", "Bob", [Role.OPERATOR], password="bob-Pass-99")

    others = await cli(
        "user", "passwd", "bob", "--own", "--password-stdin", "--json", *via,
        stdin="bob-Pass-99\nmine-Now-777\n",
    )  # fmt: skip
    assert others.returncode == 1, others.stdout + others.stderr
    assert json.loads(others.stdout)["error"] == "not_authorized"
    assert len(await _refusals(api)) == 1
    assert (await api.state.identity.user(ADMIN, "bob")).password_set_by == ADMIN.name

    wrong = await cli(
        "user", "passwd", ACCOUNT, "--own", "--password-stdin", "--json", *via,
        stdin="not-it-at-all\nown-Secret-22\n",
    )  # fmt: skip
    assert wrong.returncode == 1 and json.loads(wrong.stdout)["error"] == "login_refused"
    assert not (await api.state.identity.user(ADMIN, ACCOUNT)).may_sign

    own = await cli(
        "user", "passwd", ACCOUNT, "--own", "--password-stdin", *via,
        stdin="first-Secret-1\nown-Secret-22\n",
    )  # fmt: skip
    assert own.returncode == 0, own.stdout + own.stderr
    assert f"✔ user {ACCOUNT} has a new password, set by them" in own.stdout
    assert "may sign (their own password)" in own.stdout
    me = await api.state.identity.user(ADMIN, ACCOUNT)
    assert me.may_sign and me.password_set_by == ACCOUNT


async def test_a_systems_script_calls_the_cli_with_its_api_key_from_a_file_only_its_owner_reads(
    api: RunningApi, tmp_path: Path
) -> None:
    """A plant script runs the CLI as its system account: the key, as ``user key`` printed
    it, in a file of mode 0600 that $PKGLINE_API_KEY_FILE names (never on the command line);
    the server takes the script for that system, with its roles. A file others may read, or
    one that holds no key, is a usage error that names the fix, and nothing is sent."""
    via = ("--server", f"unix://{api.socket}")
    identity = api.state.identity
    await identity.add_user(ADMIN, "mes1", "MES", {Role.VIEWER}, kind=UserKind.SYSTEM)
    issued, token = await identity.issue_api_key(ADMIN, "mes1", "ERP link")
    key = {"token": token, "key_id": issued.key_id}
    key_file = tmp_path / "mes1.key"
    key_file.write_text(key["token"] + "\n", encoding="utf-8")
    key_file.chmod(0o600)
    as_system = {"PKGLINE_API_KEY_FILE": str(key_file)}

    listed = await cli("lot", "list", "--json", *via, env=as_system)
    assert listed.returncode == 0, listed.stderr
    assert "as mes1 (api_key)" in listed.stderr, listed.stderr
    refused = await cli("lot", "start", "S1", "--flow", "stiffener-bga", *via, env=as_system)
    assert refused.returncode == 1 and "viewer" in refused.stderr, refused.stderr  # its roles

    key_file.chmod(0o644)
    open_file = await cli("lot", "list", *via, env=as_system)
    assert open_file.returncode == 2, open_file.stderr
    assert "others may read it (mode 0644)" in open_file.stderr
    assert f"chmod 600 {key_file}" in open_file.stderr
    key_file.write_text("my secret\n", encoding="utf-8")
    key_file.chmod(0o600)
    no_key = await cli("lot", "list", "--json", *via, env=as_system)
    assert no_key.returncode == 2 and "expected an API key (pkl_...)" in no_key.stdout
    missing = await cli("lot", "list", *via, env={"PKGLINE_API_KEY_FILE": str(tmp_path / "x")})
    assert missing.returncode == 2 and "cannot read it" in missing.stderr, missing.stderr

    await identity.revoke_api_key(ADMIN, key["key_id"])
    key_file.write_text(key["token"] + "\n", encoding="utf-8")
    revoked = await cli("lot", "list", *via, env=as_system)
    assert revoked.returncode != 0 and "as mes1" not in revoked.stderr, revoked.stderr
    failed = await api.state.identity.event_page(
        ADMIN, SecurityEventQuery(kind=EventKind.LOGIN_FAILED, limit=5)
    )
    assert f"key {key['key_id']}" in [e.actor for e in failed.events]  # recorded, never the secret
    assert all(token not in str(e.detail) for e in failed.events)
