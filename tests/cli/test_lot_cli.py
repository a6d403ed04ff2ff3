"""The operator CLI end to end, in a subprocess against a real database: what scripts see
(JSON, exit codes) and what a refusal leaves behind (nothing)."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest

from tests.pkgline_cli import pkgline as run_pkgline


def pkgline(db: str, *args: str, user: str = "op1") -> subprocess.CompletedProcess[str]:
    """``pkgline ARGS`` on the database at ``db`` as OS account ``user`` (tests/pkgline_cli.py)."""
    env = {**os.environ, "PKGLINE_DB": db, "PKGLINE_USER": user, "COLUMNS": "200"}
    return run_pkgline(*args, env=env)


def ok_json(db: str, *args: str) -> Any:
    result = pkgline(db, *args, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def db(sqlite_url: str) -> str:
    result = pkgline(sqlite_url, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    return sqlite_url


def test_db_upgrade_says_where_the_database_is_and_is_safe_to_repeat(sqlite_url: str) -> None:
    first = pkgline(sqlite_url, "db", "upgrade")
    assert first.returncode == 0
    assert sqlite_url in first.stdout and "up to date" in first.stdout
    again = ok_json(sqlite_url, "db", "upgrade")
    assert again["up_to_date"] is True and again["database"] == sqlite_url


def test_a_database_without_the_schema_is_refused_with_the_command_to_run(sqlite_url: str) -> None:
    result = pkgline(sqlite_url, "lot", "list")
    assert result.returncode == 4
    assert "pkgline db upgrade" in result.stderr


def test_an_unreachable_database_is_a_clear_error() -> None:
    result = pkgline("postgresql://postgres@127.0.0.1:1/nothing", "lot", "list", "--json")
    assert result.returncode == 4
    assert json.loads(result.stdout)["error"] == "database"


def test_flows_are_listed_and_shown(db: str) -> None:
    flows = ok_json(db, "flow", "list")
    assert len(flows) == 9
    shown = ok_json(db, "flow", "show", "stiffener-bga")
    assert (
        shown["steps"]["SUBSTRATE_LOAD"]["recipe"]["substrate_thickness_mm"]["limits"][0]["claim"]
        == "000: 14"
    )
    missing = pkgline(db, "flow", "show", "nope", "--json")
    assert missing.returncode == 1 and "stiffener-bga" in json.loads(missing.stdout)["allowed"]


def test_flow_show_gives_the_spec_limits_and_queue_times_an_engineer_set(db: str) -> None:
    """A process engineer reads back what the flow holds them to beside the claims: the spec
    limits of measured values (out of spec holds the lot) and the queue times."""
    shown = ok_json(db, "flow", "show", "fo-organic")
    measured = shown["steps"]["DIE_ATTACH"]["measured"]
    assert measured["bond_line_thickness_um"]["spec"] == {
        "lower": 10.0,
        "upper": 40.0,
        "target": 25.0,
        "origin": "line practice: die attach film",
    }
    assert measured["bond_force_n"]["spec"] is None
    assert shown["queue_times"] == [
        {
            "from": "DIELECTRIC_COAT",
            "to": "VIA_PATTERN",
            "max_minutes": 240.0,
            "warn_minutes": 180.0,
            "origin": "line practice: dielectric moisture uptake before exposure",
        }
    ]
    table = pkgline(db, "flow", "show", "fo-organic")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    [spec] = [line for line in lines if "bond_line_thickness_um" in line and "40" in line]
    assert spec.split("│")[3:7] == [" 10    ", " 25     ", " 40    ", " um   "]
    [queue] = [line for line in lines if "DIELECTRIC_COAT" in line and "min" in line]
    assert "180 min" in queue and "240 min" in queue and "moisture uptake" in queue


def test_a_lot_is_started_moved_and_shown(db: str) -> None:
    started = ok_json(
        db, "lot", "start", "L1", "--flow", "stiffener-bga", "--carriers", "1", "--priority", "2"
    )
    assert started["state"] == "WAITING" and started["next_steps"] == ["SUBSTRATE_LOAD"]
    moved = ok_json(
        db,
        "lot",
        "track-in",
        "L1",
        "--step",
        "SUBSTRATE_LOAD",
        "--param",
        "substrate_thickness_mm=0.2",
    )
    assert (
        moved["state"] == "RUNNING"
        and moved["recorded"][0]["data"]["values"]["substrate_thickness_mm"] == 0.2
    )
    wrong = pkgline(db, "lot", "track-out", "L1", "--step", "DIE_ATTACH", "--json")
    assert wrong.returncode == 1 and json.loads(wrong.stdout)["error"] == "step_not_allowed"
    assert json.loads(wrong.stdout)["allowed"] == ["SUBSTRATE_LOAD"]
    out = ok_json(
        db, "lot", "track-out", "L1", "--step", "SUBSTRATE_LOAD", "--reject", "1:2:3:SCRATCH"
    )
    assert out["state"] == "WAITING" and out["step"] == "SUBSTRATE_LOAD"
    shown = ok_json(db, "lot", "show", "L1")
    for key in ("id", "flow", "state", "step", "next_steps", "units", "history"):
        assert key in shown
    assert shown["next_steps"] == ["DIE_ATTACH"]
    assert shown["carriers"][0]["rejects"] == [
        {"row": 2, "col": 3, "code": "SCRATCH", "step": "SUBSTRATE_LOAD"}
    ]
    assert [h["operation"] for h in shown["history"]] == ["start", "track_in", "track_out"]
    assert {h["user"] for h in shown["history"]} == {"op1"}
    human = pkgline(db, "lot", "show", "L1")
    assert human.returncode == 0 and "DIE_ATTACH" in human.stdout and "SCRATCH" in human.stdout
    listed = ok_json(db, "lot", "list", "--state", "waiting")
    assert [row["id"] for row in listed] == ["L1"]


def test_a_refused_move_exits_1_says_why_and_changes_nothing(db: str) -> None:
    ok_json(db, "lot", "start", "L1", "--flow", "stiffener-bga")
    before = ok_json(db, "lot", "show", "L1")
    result = pkgline(db, "lot", "track-in", "L1", "--step", "MOLD", "--json")
    assert result.returncode == 1
    refusal = json.loads(result.stdout)
    assert refusal["error"] == "step_not_allowed"
    assert refusal["allowed"] == ["SUBSTRATE_LOAD"] and "000" in refusal["claim"]
    limit = pkgline(
        db,
        "lot",
        "track-in",
        "L1",
        "--step",
        "SUBSTRATE_LOAD",
        "--param",
        "substrate_thickness_mm=0.7",
    )
    assert limit.returncode == 1 and "000: 14" in limit.stderr
    assert ok_json(db, "lot", "show", "L1") == before


def test_a_malformed_command_line_exits_2(db: str) -> None:
    ok_json(db, "lot", "start", "L1", "--flow", "stiffener-bga")
    assert (
        pkgline(
            db, "lot", "track-in", "L1", "--step", "SUBSTRATE_LOAD", "--param", "novalue"
        ).returncode
        == 2
    )
    assert pkgline(db, "lot", "track-out", "L1", "--reject", "1:x:2:VOID").returncode == 2
    superscript = pkgline(db, "lot", "track-out", "L1", "--reject", "1:\u00b2:2:VOID")
    assert superscript.returncode == 2 and "ROW and COL are whole numbers" in superscript.stderr
    assert pkgline(db, "lot", "list", "--state", "sleeping").returncode == 2
    for command in (("lot", "start", "L9", "--flow", "stiffener-bga"), ("lot", "list")):
        urgent = pkgline(db, *command, "--priority", "0")  # alike: a usage error (probe)
        assert urgent.returncode == 2 and "--priority" in urgent.stderr, urgent.stderr
    assert pkgline("mysql://nobody/db", "lot", "list").returncode == 2
    # --db "$DB" with DB unset: refused, never $PKGLINE_DB's database instead (probe)
    empty = pkgline(db, "lot", "hold", "L1", "--reason", "x", "--db", "")
    assert empty.returncode == 2 and "it is empty" in empty.stderr, empty.stderr
    assert ok_json(db, "lot", "show", "L1")["state"] == "WAITING"
    for user in ("ev\x1bil", "x" * 65, " "):  # into the append-only history as given (probe)
        named = pkgline(db, "lot", "hold", "L1", "--reason", "x", "--user", user)
        assert named.returncode == 2 and "expected a user name" in named.stderr, named.stderr
    assert ok_json(db, "lot", "show", "L1")["state"] == "WAITING"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("lot", "hold", "L1", "--bogus"), "No such option: --bogus"),
        (("lot", "list", "--limit", "abc"), "Invalid value for '--limit'"),
        (("lot", "show"), "Missing argument 'lot'"),
    ],
)
def test_with_json_a_malformed_command_line_is_a_json_usage_error(
    db: str, args: tuple[str, ...], says: str
) -> None:
    result = pkgline(db, *args, "--json")
    assert result.returncode == 2, result.stdout + result.stderr
    answer = json.loads(result.stdout)
    assert answer["error"] == "usage" and says in answer["message"]
    assert "Traceback" not in result.stderr


def test_hold_release_split_and_merge_from_the_command_line(db: str) -> None:
    ok_json(db, "lot", "start", "L1", "--flow", "stiffener-bga", "--carriers", "3")
    assert pkgline(db, "lot", "hold", "L1").returncode == 1, "a hold needs a reason"
    held = ok_json(db, "lot", "hold", "L1", "--reason", "incoming inspection")
    assert held["state"] == "HOLD" and held["hold_reason"] == "incoming inspection"
    assert ok_json(db, "lot", "release", "L1")["state"] == "WAITING"
    child = ok_json(db, "lot", "split", "L1", "--carriers", "2,3", "--into", "L1A")
    assert child["id"] == "L1A" and child["parent"] == "L1"
    merged = ok_json(db, "lot", "merge", "L1A", "--into", "L1")
    assert merged["id"] == "L1" and merged["total_sites"] == 3 * 32
    # the text says both ways what was merged (it named the children alone: found by the probe)
    target = " ".join(pkgline(db, "lot", "show", "L1").stdout.split())
    assert "genealogy parent -; children L1A; merged in L1A" in target, target
    absorbed = " ".join(pkgline(db, "lot", "show", "L1A").stdout.split())
    assert "genealogy parent L1; children -; merged into L1" in absorbed, absorbed


def test_a_split_and_a_merge_say_which_carriers_moved(db: str) -> None:
    """Found by a process engineer's walkthrough: `lot split L --carriers 2` (as docs/cli.md
    shows it) moves the carrier at position 2, not two carriers, and the answer said only
    "split off from L": one who meant a count had one carrier moved with nothing saying so.
    The answer names the carriers, how many and the sites the lot now has."""
    ok_json(db, "lot", "start", "L1", "--flow", "stiffener-bga", "--carriers", "4")
    split = pkgline(db, "lot", "split", "L1", "--carriers", "2", "--into", "L1A")
    assert split.returncode == 0, split.stderr
    text = " ".join(split.stdout.split())
    assert "lot L1A split off from L1" in text, text
    assert "carriers from L1: L1-02 (1 carrier; 32 good of 32 sites)" in text, text
    merged = pkgline(db, "lot", "merge", "L1A", "--into", "L1")
    assert merged.returncode == 0, merged.stderr
    text = " ".join(merged.stdout.split())
    assert "carriers from L1A: L1-02 (1 carrier); the lot now has 128 good of 128 sites" in text


def test_a_held_lot_shows_where_it_goes_once_released(db: str) -> None:
    """A held lot may take no step now (``next_steps`` stays empty, as scripts expect); what
    it would take once released is said beside it: ``lot hold``, ``lot show`` and the next
    column of ``lot list``, text and JSON."""
    ok_json(db, "lot", "start", "L1", "--flow", "stiffener-bga")
    ok_json(db, "lot", "start", "L2", "--flow", "stiffener-bga")
    waiting = ok_json(db, "lot", "show", "L2")
    assert waiting["next_steps"] == ["SUBSTRATE_LOAD"] and waiting["next_after_release"] == []
    held = pkgline(db, "lot", "hold", "L1", "--reason", "customer asks")
    assert held.returncode == 0, held.stderr
    assert "next once released: SUBSTRATE_LOAD" in held.stdout
    shown = ok_json(db, "lot", "show", "L1")
    assert shown["next_steps"] == [] and shown["next_after_release"] == ["SUBSTRATE_LOAD"]
    text = " ".join(pkgline(db, "lot", "show", "L1").stdout.split())
    assert "next steps SUBSTRATE_LOAD (once released)" in text, text
    listed = {r["id"]: r for r in ok_json(db, "lot", "list")}
    assert listed["L1"]["next_steps"] == [] and listed["L1"]["next_after_release"] == [
        "SUBSTRATE_LOAD"
    ]
    assert listed["L2"]["next_after_release"] == []
    rows = {
        line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[1:-1]]
        for line in pkgline(db, "lot", "list").stdout.splitlines()
        if line.startswith("│")
    }
    assert rows["L1"][4] == "SUBSTRATE_LOAD (on release)", rows
    assert rows["L2"][4] == "SUBSTRATE_LOAD", rows
    released = ok_json(db, "lot", "release", "L1")
    assert released["next_steps"] == ["SUBSTRATE_LOAD"] and released["next_after_release"] == []


def test_a_hold_of_a_running_lot_says_which_step_it_stopped(db: str) -> None:
    ok_json(db, "lot", "start", "L1", "--flow", "stiffener-bga", "--carriers", "1")
    ok_json(db, "lot", "track-in", "L1", "--step", "SUBSTRATE_LOAD")
    held = pkgline(db, "lot", "hold", "L1", "--reason", "wrong substrate lot")
    assert held.returncode == 0, held.stderr
    assert "done at step: SUBSTRATE_LOAD: no carrier done" in held.stdout, held.stdout


@pytest.mark.postgres
def test_the_same_commands_work_on_postgresql(postgres_url: str) -> None:
    assert pkgline(postgres_url, "db", "upgrade").returncode == 0
    ok_json(postgres_url, "lot", "start", "P1", "--flow", "fo-organic", "--param", "layers=3")
    ok_json(postgres_url, "lot", "track-in", "P1", "--step", "SUBSTRATE_PREP")
    shown = ok_json(postgres_url, "lot", "show", "P1")
    assert shown["state"] == "RUNNING" and shown["layers"] == 3


@pytest.mark.parametrize(
    "command",
    [
        ("durable", "add", "CAP-1", "--kind", "capillary", "--life", "100", "--description"),
        ("material", "add", "W-1", "--kind", "wire", "--expires", "2099-01-01", "--part"),
        ("user", "key", "controller", "--label"),
        ("lot", "hold", "L1", "--reason"),
    ],
)
@pytest.mark.parametrize("text", ["a\x1b[2Jb", "a\nb", "x" * 2001])
def test_free_text_is_one_line_of_at_most_2000_characters(
    db: str, command: tuple[str, ...], text: str
) -> None:
    """An escape sequence, a newline or 20,000 characters were taken as a durable's
    description, a material's part number, a key's label, a hold's reason (the CLI probe)."""
    ok_json(db, "lot", "start", "L1", "--flow", "stiffener-bga")
    done = pkgline(db, *command, text, "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    refused = json.loads(done.stdout)
    assert refused["error"] == "invalid_input", refused
    assert "one line" in refused["message"] or "at most 2000" in refused["message"]
    assert ok_json(db, "lot", "show", "L1")["state"] == "WAITING"
