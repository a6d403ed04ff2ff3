"""``pkgline audit verify`` end to end: the count of entries on an intact history, exit 5 and
the first entry that does not match on a tampered one."""

from __future__ import annotations

import json
import sqlite3

from tests.cli.test_lot_cli import pkgline


def test_verify_counts_the_entries_of_an_intact_history_and_names_an_edited_one(
    sqlite_url: str,
) -> None:
    assert pkgline(sqlite_url, "db", "upgrade").returncode == 0
    for args in (
        ("lot", "start", "L1", "--flow", "fo-organic"),
        ("lot", "start", "L2", "--flow", "fo-organic"),
        ("lot", "hold", "L1", "--reason", "voids"),
    ):
        assert pkgline(sqlite_url, *args).returncode == 0
    intact = pkgline(sqlite_url, "audit", "verify")
    assert intact.returncode == 0, intact.stderr
    assert "history verified: 3 entries of 2 lots" in intact.stdout
    assert "0 security events" in intact.stdout and "of the security log 0000" in intact.stdout
    verified = json.loads(pkgline(sqlite_url, "audit", "verify", "--json").stdout)
    assert verified["entries"] == 3
    assert verified["security_head"] == "0" * 64  # the file's owner acting: nothing refused
    anchored = pkgline(sqlite_url, "audit", "verify", "--anchor", verified["lots_head"])
    assert anchored.returncode == 0, anchored.stderr
    assert pkgline(sqlite_url, "audit", "verify", "--anchor", "nothex").returncode == 2

    path = sqlite_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:  # the attacker holding the file
        conn.execute("DROP TRIGGER lot_history_no_update")
        conn.execute("UPDATE lot_history SET reason = 'nothing' WHERE seq = 3")
    conn.close()
    tampered = pkgline(sqlite_url, "audit", "verify", "--json")
    assert tampered.returncode == 6
    found = json.loads(tampered.stdout)
    assert found["ok"] is False and found["entries"] == 2
    assert found["problem"]["seq"] == 3 and found["problem"]["finding"] == "content_changed"
    text = pkgline(sqlite_url, "audit", "verify")
    assert text.returncode == 6 and "history entry 3 (lot L1, hold)" in text.stderr
