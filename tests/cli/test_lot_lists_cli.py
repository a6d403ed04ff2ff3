"""``lot list`` and ``lot show`` at plant size, as scripts and people see them: a page says
how many lots match and how to see the next one, ``--json`` without ``--limit`` is every lot
(a script is never handed part of the list as if it were all), ``--json --limit`` a page
whose notice goes to stderr, and ``lot show`` the last history entries unless asked for
more."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from mes.domain import commands as cmd
from mes.domain.paging import COUNTED_UP_TO
from mes.domain.signatures import SignatureGiven
from pkgline.bootstrap import open_lot_service, os_account
from tests.cli.test_lot_cli import ok_json, pkgline


@pytest.fixture
def lots_db(sqlite_url: str) -> str:
    assert pkgline(sqlite_url, "db", "upgrade").returncode == 0
    for i in range(7):
        started = pkgline(
            sqlite_url, "lot", "start", f"L{i}", "--flow", "stiffener-bga", "--priority", "5"
        )
        assert started.returncode == 0, started.stderr
    return sqlite_url


def test_a_table_page_says_how_many_match_and_the_cursor_of_the_next(lots_db: str) -> None:
    first = pkgline(lots_db, "lot", "list", "--limit", "3")
    assert first.returncode == 0, first.stderr
    assert "3 of 7 lots; more follow" in first.stdout and "--after L2" in first.stdout
    last = pkgline(lots_db, "lot", "list", "--limit", "5", "--after", "L2")
    assert "4 of 7 lots" in last.stdout and "more follow" not in last.stdout
    assert "L3" in last.stdout and "L2 " not in last.stdout


def test_json_without_a_limit_is_every_lot_and_with_one_a_page_noticed_on_stderr(
    lots_db: str,
) -> None:
    every = ok_json(lots_db, "lot", "list")
    assert [lot["id"] for lot in every] == [f"L{i}" for i in range(7)]
    page = pkgline(lots_db, "lot", "list", "--json", "--limit", "2", "--after", "L0")
    assert page.returncode == 0
    assert [lot["id"] for lot in json.loads(page.stdout)] == ["L1", "L2"]
    notice = json.loads(page.stderr)
    assert notice.pop("mode").startswith("direct database sqlite:///")
    assert notice == {"total": 7, "total_exact": True, "shown": 2, "more": True, "next_after": "L2"}
    empty = ok_json(lots_db, "lot", "list", "--state", "hold")
    assert empty == []


def test_filters_and_bad_paging_options_are_usage_errors_that_say_what_was_expected(
    lots_db: str,
) -> None:
    assert ok_json(lots_db, "lot", "list", "--priority", "4") == []
    assert len(ok_json(lots_db, "lot", "list", "--since", "1h", "--flow", "stiffener-bga")) == 7
    assert ok_json(lots_db, "lot", "list", "--until", "2000-01-01") == []
    bad_time = pkgline(lots_db, "lot", "list", "--since", "yesterday")
    assert bad_time.returncode == 2 and "30m, 8h, 2d" in bad_time.stderr
    ages = pkgline(lots_db, "lot", "list", "--since", "99999999d")  # past any date
    assert ages.returncode == 2 and "at most 36500d" in ages.stderr, ages.stderr
    for command, edge in (  # no time in UTC: a traceback (OverflowError) before (probe)
        (("lot", "history", "--since"), "0001-01-01T00:00+14:00"),
        (("lot", "list", "--until"), "9999-12-31T23:59-12:00"),
        (("user", "events", "--since"), "0001-01-01T00:00+01:00"),
        (("material", "add", "F", "--kind", "wire", "--expires"), "9999-12-31T23:59-12:00"),
    ):
        edged = pkgline(lots_db, *command, edge)
        assert edged.returncode == 2 and "Traceback" not in edged.stderr, edged.stderr
        assert "0001-01-01 to 9999-12-31 in UTC" in edged.stderr, edged.stderr
    assert pkgline(lots_db, "lot", "list", "--limit", "0").returncode == 2
    too_many = pkgline(lots_db, "lot", "list", "--limit", "99999999999999999999")
    assert too_many.returncode == 2 and "1<=x<=1000" in too_many.stderr, too_many.stderr
    for command in (("lot", "history"), ("user", "events")):  # a cursor past 64 bits
        refused = pkgline(lots_db, *command, "--after", "32589158477190044729")
        assert refused.returncode == 2, refused.stderr
        assert "32589158477190044729 is not in the range" in refused.stderr, refused.stderr
    assert pkgline(lots_db, "lot", "list", "--priority", "12").returncode == 2
    unknown = pkgline(lots_db, "lot", "list", "--after", "NOPE", "--json")
    assert unknown.returncode == 1 and json.loads(unknown.stdout)["error"] == "unknown_lot"
    # a filter naming no step or tool is refused, not answered "0 of 0 lots"
    for command, kind in (
        (("lot", "list", "--step", "NOPE"), "invalid_input"),
        (("lot", "list", "--tool", "NOPE"), "unknown_tool"),
        (("lot", "history", "--step", "NOPE"), "invalid_input"),
    ):
        refused = pkgline(lots_db, *command, "--json")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert json.loads(refused.stdout)["error"] == kind, command


@pytest.mark.timeout(300)  # a process per command, on a shared machine
async def test_lot_show_prints_the_last_history_entries_and_all_on_request(lots_db: str) -> None:
    async with open_lot_service(lots_db) as service:  # 24 moves in one process, not 24
        for n in range(12):
            await service.hold(cmd.HoldLot("L0", "op1", f"check {n}"))
            signed = (SignatureGiven(os_account(), "approved release"),)  # direct mode
            await service.release(cmd.ReleaseLot("L0", "op1"), signatures=signed)
    short = pkgline(lots_db, "lot", "show", "L0")
    assert "the last 20 of 25 entries" in short.stdout
    assert (
        "check 1 " not in short.stdout and "check 2" in short.stdout and "check 11" in short.stdout
    )
    full = pkgline(lots_db, "lot", "show", "L0", "--history", "all")
    assert "History (25 entries)" in full.stdout and "check 0" in full.stdout
    assert len(ok_json(lots_db, "lot", "show", "L0")["history"]) == 25
    assert pkgline(lots_db, "lot", "show", "L0", "--history", "lots").returncode == 2


def test_a_database_that_does_not_exist_is_said_so_and_not_made(tmp_path: Path) -> None:
    """A mistyped --db made an empty database there and said it had no schema."""
    missing = tmp_path / "typo" / "line.db"
    for command in (("lot", "list"), ("db", "status"), ("audit", "verify"), ("user", "list")):
        refused = pkgline(f"sqlite:///{missing}", *command)
        assert refused.returncode != 0, refused.stdout
        assert f"there is no database at {missing}" in refused.stderr, refused.stderr
    assert not missing.parent.exists()


def test_a_count_past_its_bound_says_more_than_and_stops_there(lots_db: str) -> None:
    """A list counts what its filters select up to COUNTED_UP_TO and says "more than" past
    it (a plant's months of history counted in full took seconds: issue 20); the rows are
    paged as ever, and a filter that selects fewer is counted exactly."""
    path = lots_db.removeprefix("sqlite:///")
    columns = (
        'lot_id, at, "user", operation, state_before, state_after, step, tool, reason, data,'
        " prev_hash, hash"
    )
    with sqlite3.connect(path) as db:  # entries of another lot, as a long history leaves them
        db.executemany(
            f"INSERT INTO lot_history ({columns}) SELECT {columns.replace('lot_id', '?')}"
            " FROM lot_history WHERE lot_id = 'L1'",
            [("L0",)] * (COUNTED_UP_TO + 5),
        )
    table = pkgline(lots_db, "lot", "history", "--limit", "2")
    assert table.returncode == 0, table.stderr
    assert "2 of more than 10,000 entries; more follow" in table.stdout
    page = pkgline(lots_db, "lot", "history", "--json", "--limit", "2")
    notice = json.loads(page.stderr.strip().splitlines()[-1])
    assert notice["total"] == COUNTED_UP_TO and notice["total_exact"] is False
    assert notice["more"] and len(json.loads(page.stdout)) == 2
    one_lot = pkgline(lots_db, "lot", "history", "--json", "--lot", "L1", "--limit", "5")
    exact = json.loads(one_lot.stderr.strip().splitlines()[-1])
    assert (exact["total"], exact["total_exact"]) == (1, True)
