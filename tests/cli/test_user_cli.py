"""``pkgline user`` end to end in direct mode: users added and changed by the database's
owner (recorded as the OS account), passwords only from a prompt or standard input and
stored only as argon2id hashes, bad input refused with nothing changed."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_lot_cli import pkgline
from tests.pkgline_cli import pkgline as run_pkgline

PASSWORD = "a long enough secret"


def _run(db: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PKGLINE_DB": db, "COLUMNS": "200"}
    return run_pkgline(*args, env=env, input=stdin or None)  # nothing given: an empty stdin


def _ok(db: str, *args: str, stdin: str = "") -> Any:
    result = _run(db, *args, "--json", stdin=stdin)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def db(sqlite_url: str) -> str:
    assert pkgline(sqlite_url, "db", "upgrade").returncode == 0
    return sqlite_url


def test_users_are_added_changed_and_disabled_and_each_change_is_a_security_event(
    db: str,
) -> None:
    added = _ok(
        db, "user", "add", "alice", "--name", "Alice Martin", "--role", "operator",
        "--password-stdin", stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert added["roles"] == ["operator"] and added["password"] == "set"
    assert added["created_by"] == getpass.getuser()
    changed = _ok(db, "user", "role", "alice", "--add", "quality", "--remove", "operator")
    assert changed["roles"] == ["quality"]
    assert _ok(db, "user", "disable", "alice", "--reason", "left")["disabled"] is True
    listed = _ok(db, "user", "list")
    assert [(u["username"], u["disabled"]) for u in listed] == [
        ("alice", True),
        ("controller", False),
    ]
    events = _ok(db, "user", "events")
    assert [e["kind"] for e in events] == ["user_disabled", "roles_changed", "user_added"]
    assert {(e["actor"], e["method"]) for e in events} == {(getpass.getuser(), "file_owner")}
    text = _run(db, "user", "show", "alice")
    assert text.returncode == 0 and "Alice Martin (person): quality" in text.stdout
    table = " ".join(_run(db, "user", "events").stdout.split())
    assert "before: operator; after: quality" in table, table  # words, not ['operator']
    assert "['" not in table


def test_a_change_that_was_made_already_says_so_and_records_nothing(db: str) -> None:
    _ok(db, "user", "add", "dave", "--name", "Dave", "--role", "operator", "--no-password")
    first = _ok(db, "user", "disable", "dave", "--reason", "left")
    assert first["disabled"] is True and first["changed"] is True
    again = _ok(db, "user", "disable", "dave", "--reason", "left")
    assert again["disabled"] is True and again["changed"] is False
    text = _run(db, "user", "disable", "dave")
    assert text.returncode == 0
    assert "user dave was disabled already: nothing changed" in text.stdout
    roles = _run(db, "user", "role", "dave", "--add", "operator")
    assert roles.returncode == 0
    assert "user dave had these roles already: nothing changed" in roles.stdout
    enabled = _run(db, "user", "enable", "dave")
    assert "user dave enabled" in enabled.stdout and "already" not in enabled.stdout
    kinds = [e["kind"] for e in _ok(db, "user", "events")]
    assert kinds == ["user_enabled", "user_disabled", "user_added"]  # once each


def test_the_password_is_kept_only_as_an_argon2id_hash(db: str) -> None:
    _ok(db, "user", "add", "bob", "--name", "Bob", "--role", "engineer", "--password-stdin",
        stdin=PASSWORD + "\n")  # fmt: skip
    _ok(db, "user", "passwd", "bob", "--password-stdin", stdin="another long secret\n")
    path = Path(db.removeprefix("sqlite:///"))
    stored = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    assert PASSWORD.encode() not in stored and b"another long secret" not in stored
    assert b"$argon2id$" in stored


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("add", "carol", "--name", "Carol", "--role", "wizard", "--no-password"), "", "no role"),
        (("add", "carol", "--name", "Carol", "--no-password"), "", "at least one --role"),
        (("add", "carol", "--name", "Carol", "--role", "operator"), "", "--password-stdin"),
        (("add", "carol", "--name", "Carol", "--role", "operator", "--password-stdin"), "", "no password"),
    ],
)  # fmt: skip
def test_bad_input_is_a_usage_error_and_adds_nobody(
    db: str, args: tuple[str, ...], stdin: str, message: str
) -> None:
    result = _run(db, "user", *args, "--json", stdin=stdin)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in json.loads(result.stdout)["message"]
    assert [u["username"] for u in _ok(db, "user", "list")] == ["controller"]


def test_a_refused_change_exits_1_and_says_why(db: str) -> None:
    result = _run(db, "user", "add", "dave", "--name", "Dave", "--role", "operator",
                  "--password-stdin", "--json", stdin="short\n")  # fmt: skip
    assert result.returncode == 1
    assert "at least 10 characters" in json.loads(result.stdout)["message"]
    missing = _run(db, "user", "role", "nobody", "--add", "quality", "--json")
    assert missing.returncode == 1 and json.loads(missing.stdout)["error"] == "unknown_user"


def test_an_api_key_is_printed_once_and_can_be_revoked(db: str) -> None:
    issued = _ok(db, "user", "key", "controller", "--label", "line 1")
    assert issued["token"].startswith(f"pkl_{issued['key_id']}_")
    path = Path(db.removeprefix("sqlite:///"))
    secret = issued["token"].removeprefix(f"pkl_{issued['key_id']}_").encode()  # may hold "_"
    assert secret not in b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    revoked = _ok(db, "user", "revoke-key", issued["key_id"])
    assert revoked["revoked_by"] == getpass.getuser()


def test_a_systems_keys_are_listed_for_review_and_a_label_is_issued_once_while_live(
    db: str,
) -> None:
    assert "controller has no API key" in _run(db, "user", "keys", "controller").stdout
    first = _ok(db, "user", "key", "controller", "--label", "line 1")
    again = _run(db, "user", "key", "controller", "--label", "line 1")
    assert again.returncode == 1
    assert f"labelled 'line 1' already: {first['key_id']}" in again.stdout + again.stderr
    second = _ok(db, "user", "key", "controller", "--label", "line 2")
    _ok(db, "user", "revoke-key", first["key_id"])
    table = _run(db, "user", "keys", "controller")
    assert table.returncode == 0, table.stderr
    rows = [line for line in table.stdout.splitlines() if "line " in line]
    assert len(rows) == 2
    assert second["key_id"] in rows[0] and "live" in rows[0]
    assert first["key_id"] in rows[1] and f"by {getpass.getuser()}" in rows[1]
    assert "revoked" in rows[1]
    assert first["token"] not in table.stdout and second["token"] not in table.stdout
    missing = _run(db, "user", "keys", "nobody", "--json")
    assert missing.returncode == 1 and json.loads(missing.stdout)["error"] == "unknown_user"


async def _a_refused_signature(db: str) -> None:
    from datetime import UTC, datetime

    from mes.adapters.database import create_engine
    from mes.adapters.sql_identity import SqlSecurityLog
    from mes.domain.authority import AuthMethod
    from mes.domain.identity import EventKind, SecurityEvent

    engine = create_engine(db)
    try:
        await SqlSecurityLog(engine).record(
            SecurityEvent(
                datetime.now(UTC),
                EventKind.SIGNATURE_REFUSED,
                "qa1",
                AuthMethod.SESSION,
                subject="op1",
                action="scrap",
                lot_id="L-77",
                detail={"error": "signature_refused", "signer": "op1"},
            )
        )
    finally:
        await engine.dispose()


def test_the_security_log_table_names_each_events_lot_and_operation(db: str) -> None:
    """Found by a quality engineer's walkthrough: `user events` showed a refused signature
    without the lot it was given for nor the operation (the JSON and the station's page
    have both): a reviewer could not tell which scrap or release was refused."""
    import asyncio

    asyncio.run(_a_refused_signature(db))
    [event] = _ok(db, "user", "events", "--kind", "signature_refused")
    assert (event["lot"], event["action"]) == ("L-77", "scrap")
    table = _run(db, "user", "events", "--kind", "signature_refused").stdout
    [row] = [line for line in table.splitlines() if "L-77" in line]
    assert "signature_refused scrap" in row and "op1" in row
    [header] = [line for line in table.splitlines() if "detail" in line]
    assert header.split()[1::2][:7] == ["seq", "at", "event", "by", "user", "lot", "detail"]
