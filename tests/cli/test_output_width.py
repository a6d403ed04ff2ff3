"""Tables print whole: into a pipe or a file (``| less``, ``> shift.txt``, a script) at the
width they need, and on a terminal narrower than a table folded, never cut short with an
ellipsis: a lot id, a step, an alarm or a measured value cut to "LOT-2026-12-0…" is
information lost. Subprocesses on the recorded line's database, where WB-1 is in alarm and
L-2 is held."""

from __future__ import annotations

import json
import os

import pytest

from tests.cli.recorded_line import HOLD_REASON
from tests.pkgline_cli import pkgline as run_pkgline

COMMANDS = [
    ("line", "status"),
    ("tool", "list"),
    ("tool", "show", "WB-1"),
    ("lot", "list"),
    ("lot", "show", "L-1"),
    ("lot", "history"),
    ("tool", "qualifications"),
]


def pkgline(db: str, *args: str, columns: int | None) -> str:
    # an env of its own: GNU readline, once loaded in the test process, or xdist puts
    # COLUMNS=80 in the environment a child inherits
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["PKGLINE_DB"] = db
    if columns is not None:
        env["COLUMNS"] = str(columns)
    result = run_pkgline(*args, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize("columns", [None, 60], ids=["pipe", "60 columns"])
def test_no_table_is_cut_short(line_db: str, command: tuple[str, ...], columns: int | None) -> None:
    text = pkgline(line_db, *command, columns=columns)
    assert "…" not in text, text


def test_into_a_pipe_a_table_row_is_one_line_with_every_cell_whole(line_db: str) -> None:
    status = json.loads(pkgline(line_db, "line", "status", "--json", columns=None))
    (wb,) = [t for t in status["tools"] if t["id"] == "WB-1"]
    alarm = wb["alarm"]["text"]
    assert len(alarm) > 10
    rows = pkgline(line_db, "tool", "list", columns=None).splitlines()
    assert any("WB-1" in row and alarm in row and wb["address"] in row for row in rows)
    rows = pkgline(line_db, "line", "status", columns=None).splitlines()
    assert any("L-2" in row and HOLD_REASON in row for row in rows)
