"""What people type is printed as they typed it. rich reads "[red]" or "[/b]" in a string as
markup: a hold reason "[red] marks near [/b] fiducial" lost its brackets, or ended ``line
status`` for everyone with a MarkupError, and ``lot show 'A[/b]'`` answered with a traceback.
The CLI prints with markup off and gives its own styles as Text; help texts escape the
configuration tables they name ([api], [events], [signatures]) and read a paragraph as one
line, where Typer kept a docstring's line breaks in a group's list of commands."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from tests.pkgline_cli import pkgline as run_pkgline

REASON = "[red] marks near [/b] fiducial, see [SPC]"


def pkgline(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PKGLINE_DB": db, "PKGLINE_USER": "op1", "COLUMNS": "250"}
    return run_pkgline(*args, env=env)


def test_a_reason_with_brackets_prints_as_typed_everywhere(line_db: str) -> None:
    held = pkgline(line_db, "lot", "hold", "L-1", "--reason", REASON)
    assert held.returncode == 0, held.stdout + held.stderr
    assert REASON in held.stdout
    for command in (
        ("lot", "show", "L-1"),
        ("lot", "list"),
        ("line", "status"),
        ("lot", "history", "--lot", "L-1"),
    ):
        shown = pkgline(line_db, *command)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert REASON in shown.stdout, command
        assert "Traceback" not in shown.stderr


def test_an_id_with_markup_in_it_is_refused_naming_it_as_typed(line_db: str) -> None:
    for lot in ("A[/b]", "A[red]B"):
        result = pkgline(line_db, "lot", "show", lot)
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"{lot!r} is not a lot id: expected 1-32 ASCII letters" in result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("command", "table"),
    [
        (("api",), "The line configuration (line.toml): [api], database."),
        (("events", "tail"), "with [events]."),
        (("lot", "release"), "The line configuration (line.toml) whose [signatures] apply"),
        (("flow", "approve"), "where [signatures] two_signers names approve_flow"),
        # a docstring's line breaks are not the list's: one line a paragraph
        (("lot", "map"), "as SEMI E142 XML: layout, origin and axes, every site's bin"),
    ],
)
def test_help_reads_as_written(command: tuple[str, ...], table: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pkgline", *command, "--help"],
        env={**os.environ, "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert table in result.stdout


@pytest.mark.parametrize(
    ("reason", "named"),
    [
        ("clear\x1b[2Jscreen", "U+001B (escape)"),
        ("one\nfake row", "U+000A (line feed)"),
        ("over\rwritten", "U+000D (carriage return)"),
        ("left \u202eright", "U+202E (right-to-left override)"),
    ],
)
def test_a_reason_with_a_control_character_is_refused_and_changes_nothing(
    line_db: str, reason: str, named: str
) -> None:
    before = pkgline(line_db, "lot", "show", "L-1", "--json").stdout
    held = pkgline(line_db, "lot", "hold", "L-1", "--reason", reason)
    assert held.returncode == 1, held.stdout + held.stderr
    assert f"is {named}" in held.stderr
    assert "one line of printable text" in held.stderr
    assert pkgline(line_db, "lot", "show", "L-1", "--json").stdout == before


def test_control_characters_already_in_the_database_print_as_pictures(line_db: str) -> None:
    """A row written before the check, or by hand, reaches no terminal as its commands."""
    switched = pkgline(line_db, "tool", "manual", "WB-1", "--reason", "placeholder")
    assert switched.returncode == 0, switched.stdout + switched.stderr
    path = line_db.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE tools SET dispatch_reason = ? WHERE id = 'WB-1'",
            ("red\x1b[31m alert\x9b2J\u202eevil\rback",),
        )
    shown = pkgline(line_db, "tool", "show", "WB-1")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    # rich drops the carriage return itself
    assert "red\u241b[31m alert\ufffd2J\ufffdevilback" in shown.stdout
    assert not set("\x1b\x9b\u202e\r") & set(shown.stdout)


@pytest.mark.parametrize(
    ("command", "listing"),
    [
        (("lot", "start", "L1\n", "--flow", "fo-organic"), ("lot", "list")),
        (("durable", "add", "D1\n", "--kind", "capillary", "--life", "100"), ("durable", "list")),
        (("material", "add", "M1\n", "--kind", "wire", "--expires", "2099-01-01"), None),
        (("reason", "add", "VOID2\n", "--kind", "hold", "--text", "voids"), ("reason", "list")),
        (
            ("user", "add", "bob\n", "--name", "Bob", "--no-password", "--role", "operator"),
            ("user", "list"),
        ),
    ],
)
def test_an_id_with_a_trailing_newline_is_refused(
    sqlite_url: str, command: tuple[str, ...], listing: tuple[str, ...] | None
) -> None:
    """Python's ``$`` matches before a final newline: ``re.match`` took 'L1\\n' as a lot id
    (its carriers 'L1\\n-01', a topic with a line break in it)."""
    assert pkgline(sqlite_url, "db", "upgrade").returncode == 0
    listing = listing or (command[0], "list")
    before = pkgline(sqlite_url, *listing, "--json").stdout
    refused = pkgline(sqlite_url, *command, "--json")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "is not valid: expected" in refused.stdout, refused.stdout
    assert pkgline(sqlite_url, *listing, "--json").stdout == before
