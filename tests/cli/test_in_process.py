"""The tests' way of running ``pkgline`` in their own process (tests/pkgline_cli.py) gives
what a child process gives: the same stdout, stderr and exit code, for a command that
succeeds, one that is refused, a malformed command line, a table at a width, and an
exception; and it leaves the process's environment and streams as they were."""

from __future__ import annotations

import os
import sys

import pytest

from tests.pkgline_cli import child, in_process

COMMANDS = [
    ("lot", "list"),
    ("lot", "show", "P-1"),
    ("lot", "show", "NOSUCH"),
    ("lot", "show", "NOSUCH", "--json"),
    ("lot", "track-in", "P-1", "--step", "MOLD"),
    ("lot", "list", "--limit", "zero"),
    ("lot", "list", "--limit", "zero", "--json"),
    ("tool", "list", "--json"),
    ("flow", "show", "fo-organic"),
    ("no-such-command",),
]


@pytest.mark.parametrize("columns", ["200", None])
def test_a_command_in_this_process_prints_and_exits_as_a_child_process_does(
    migrated_sqlite_url: str, columns: str | None
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "PKGLINE_SERVER")}
    env.update(PKGLINE_DB=migrated_sqlite_url, PKGLINE_USER="op1")
    if columns is not None:
        env["COLUMNS"] = columns
    start = ("lot", "start", "{}", "--flow", "fo-organic", "--param", "layers=2", "--json")
    made = [
        child([a.format("P-1") for a in start], env=env),
        in_process([a.format("P-2") for a in start], env),
    ]
    assert [m.returncode for m in made] == [0, 0], [m.stderr for m in made]
    for args in COMMANDS:  # none changes the lots: each way finds them as the other did
        theirs = child(args, env=env)
        # click names the program as it was started: `python -m pkgline` in a child
        theirs.stderr = theirs.stderr.replace("python -m pkgline", "pkgline")
        ours = in_process(args, env)
        assert (ours.returncode, ours.stdout, ours.stderr) == (
            theirs.returncode,
            theirs.stdout,
            theirs.stderr,
        ), args


def test_the_environment_and_streams_are_the_processs_again_after_a_command(
    migrated_sqlite_url: str,
) -> None:
    before = dict(os.environ), sys.stdin, sys.stdout, sys.stderr, sys.argv
    ran = in_process(["lot", "list", "--json"], {"PKGLINE_DB": migrated_sqlite_url})
    assert ran.returncode == 0, ran.stderr
    assert (dict(os.environ), sys.stdin, sys.stdout, sys.stderr, sys.argv) == before


def test_an_exception_the_command_lets_out_is_a_traceback_and_exit_code_1(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pkgline.cli import app

    def broken() -> None:
        raise ZeroDivisionError("as a bug would")

    monkeypatch.setattr(app, "main", broken)
    ran = in_process(["version"])
    assert ran.returncode == 1
    assert "Traceback" in ran.stderr and "ZeroDivisionError: as a bug would" in ran.stderr
