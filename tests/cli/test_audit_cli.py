"""``pkgline audit verify`` end to end: the count of entries on an intact history, exit 5 and
the first entry that does not match on a tampered one."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

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
    assert "anchor" not in intact.stdout
    anchored = pkgline(sqlite_url, "audit", "verify", "--anchor", verified["lots_head"])
    assert anchored.returncode == 0, anchored.stderr
    # found by a quality engineer's walkthrough: the answer said nothing of the anchor given,
    # the same line as without one, so it did not show that the anchor was checked
    assert "1 anchor given, each found in the history or the security log" in anchored.stdout
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


def test_verify_takes_its_anchors_from_a_file_of_hashes_or_of_the_feeds_saved_messages(
    sqlite_url: str, tmp_path: Path
) -> None:
    """A subscriber keeps every lot event's hash: thousands of anchors, which no command line
    holds. ``--anchors-from`` reads them as saved (hashes, JSON lines, ``mosquitto_sub -v``
    lines); a lot's newest entry rewritten with its head set to match, which verifies without
    them, does not with them."""
    assert pkgline(sqlite_url, "db", "upgrade").returncode == 0
    for args in (
        ("lot", "start", "F1", "--flow", "fo-organic"),
        ("lot", "hold", "F1", "--reason", "voids"),
    ):
        assert pkgline(sqlite_url, *args).returncode == 0
    shown = json.loads(pkgline(sqlite_url, "lot", "show", "F1", "--json").stdout)
    newest = shown["history"][-1]["hash"]
    verified = json.loads(pkgline(sqlite_url, "audit", "verify", "--json").stdout)
    saved = tmp_path / "anchors.txt"
    saved.write_text(
        "# kept by the historian\n\n"
        f"{newest.upper()}\n"
        f'pkgline/site/packaging/line-1/lots/F1 {{"kind": "lot-event", "hash": "{newest}"}}\n'
        f'{{"lots_head": "{verified["lots_head"]}", "security_head": "{"0" * 64}"}}\n'
        '{"kind": "tool-state", "tool": "DB-1"}\n'
        # a finished lot's state cleared at the retention's end, as mosquitto_sub -v prints it
        "pkgline/site/packaging/line-1/lots/F0/state (null)\n"
    )
    anchored = pkgline(sqlite_url, "audit", "verify", "--anchors-from", str(saved))
    assert anchored.returncode == 0, anchored.stderr
    assert "3 anchors given, each found" in anchored.stdout  # the hash twice counts once

    path = sqlite_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:  # the newest entry gone, the lot's head set back
        conn.execute("DROP TRIGGER lot_history_no_delete")
        conn.execute("DELETE FROM lot_history WHERE hash = ?", (newest,))
        previous = shown["history"][-2]["hash"]
        conn.execute(
            "UPDATE lots SET history_head = ?, state = 'WAITING' WHERE id = 'F1'", (previous,)
        )
        conn.execute(
            "CREATE TRIGGER lot_history_no_delete BEFORE DELETE ON lot_history "
            "BEGIN SELECT RAISE(ABORT, 'lot_history is append-only'); END"
        )
    conn.close()
    without = json.loads(pkgline(sqlite_url, "audit", "verify", "--json").stdout)
    assert without["ok"] is True, without  # what the database alone says
    found = pkgline(sqlite_url, "audit", "verify", "--json", "--anchors-from", str(saved))
    assert found.returncode == 6
    assert json.loads(found.stdout)["problem"]["finding"] == "anchor_missing"

    bad = tmp_path / "bad.txt"
    bad.write_text(f"{newest}\nnot a hash\n")
    refused = pkgline(sqlite_url, "audit", "verify", "--anchors-from", str(bad))
    assert refused.returncode == 2 and "line 2" in refused.stderr, refused.stderr
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing kept yet\n")
    assert (
        "no anchor in it"
        in pkgline(sqlite_url, "audit", "verify", "--anchors-from", str(empty)).stderr
    )
