"""Every ``pkgline`` call is a new process that pays for what it imports. These tests keep the
CLI's start-up from growing back: the top-level group imports a command's module only when
the command runs (pkgline.cli.lazy), and a command imports only what it uses
(bench/cli.py measures the time; here only which modules are loaded, which cannot be noisy).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade

HEAVY = (
    "sqlalchemy",
    "alembic",
    "asyncpg",
    "aiosqlite",
    "asyncua",
    "pymodbus",
    "aiomqtt",
    "cryptography",
    "argon2",
    "google.protobuf",
    "structlog",
    "yaml",
    "flows",
    "mes",
    "drivers",
    "simulators",
    "pkgline.controller",
    "pkgline.events",
    "pkgline.sparkplug",
)
"""Packages that no command which does not use them may import (a package's submodules
included)."""

NOT_FOR_LOT_SHOW = (
    "alembic",
    "asyncpg",
    "asyncua",
    "pymodbus",
    "aiomqtt",
    "cryptography",
    "argon2",
    "google.protobuf",
    "structlog",
    "drivers",
    "simulators",
    "pkgline.controller",
    "pkgline.events",
    "pkgline.sparkplug",
    "pkgline.cli.tool",
    "pkgline.cli.demo",
    "rich",
)
"""What ``pkgline lot show X --json`` on SQLite needs none of (it needs SQLAlchemy, aiosqlite,
the flows and the lot tracker; JSON needs no styling)."""

NOT_FOR_THE_VIEWS = (
    *(p for p in NOT_FOR_LOT_SHOW if p not in ("rich", "pkgline.cli.tool", "pkgline.controller")),
    "pkgline.controller.line",
    "pkgline.controller.runner",
    "pkgline.config",
)
"""What ``line status`` and ``tool list`` need none of (pkgline.controller's package module
holds the heartbeat period they read)."""


def _imported(
    *args: str, db: str | None = None
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``python -X importtime -m pkgline ARGS``; its result and the modules it imported."""
    env = {**os.environ, "COLUMNS": "80"}
    env.pop("PKGLINE_DB", None)
    if db is not None:
        env["PKGLINE_DB"] = db
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pkgline", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    modules.discard("imported package")  # the header line
    return done, modules


def _found(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in packages))


def test_importing_the_cli_loads_no_command_and_no_heavy_package() -> None:
    """``import pkgline.cli.app`` (what every call starts with) loads typer and nothing of
    pkgline's commands, nor pydantic (typer loads it to coerce parameters, once parsing)."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, pkgline.cli.app; print('\\n'.join(sorted(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    modules = set(done.stdout.split())
    assert "pkgline.cli.app" in modules
    assert _found(modules, (*HEAVY, "pydantic", "rich")) == []
    commands = {m for m in modules if m.startswith("pkgline.cli.")}
    assert commands == {"pkgline.cli.app", "pkgline.cli.lazy"}


@pytest.mark.parametrize("args", [("version",), ("--help",), ("no-such-command",)])
def test_version_help_and_a_usage_error_import_no_command(args: tuple[str, ...]) -> None:
    done, modules = _imported(*args)
    assert done.returncode == (2 if args == ("no-such-command",) else 0), done.stderr[-2000:]
    assert _found(modules, HEAVY) == []
    assert {m for m in modules if m.startswith("pkgline.cli.")} == {
        "pkgline.cli.app",
        "pkgline.cli.lazy",
    }
    if args == ("version",):
        assert _found(modules, ("rich",)) == []  # printing a version needs no styling


async def _database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'line.db'}"
    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    return url


async def test_lot_show_json_imports_what_it_uses_only(tmp_path: Path) -> None:
    url = await _database(tmp_path)
    done, modules = _imported("lot", "show", "NO-SUCH-LOT", "--json", db=url)
    assert done.returncode == 1, done.stderr[-2000:]
    assert json.loads(done.stdout)["error"] == "unknown_lot"
    assert {"sqlalchemy", "aiosqlite", "flows", "mes.service"} <= modules  # it did read
    assert _found(modules, NOT_FOR_LOT_SHOW) == []


@pytest.mark.parametrize("args", [("line", "status"), ("tool", "list")])
async def test_the_operators_views_of_the_line_do_not_import_the_controller(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    """``line status`` and ``tool list`` read what controllers wrote; they need neither the
    controller, nor the drivers, nor the MQTT client."""
    url = await _database(tmp_path)
    done, modules = _imported(*args, db=url)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "sqlalchemy" in modules
    assert _found(modules, NOT_FOR_THE_VIEWS) == []


def test_the_help_lines_of_the_lazy_commands_are_the_commands_own() -> None:
    """``pkgline --help`` lists each command with a line kept in pkgline.cli.app's table:
    it is the first paragraph of the help the command itself gives."""
    from typer.main import get_group

    from pkgline.cli.app import Commands, app

    group = get_group(app)
    assert [entry.name for entry in Commands.commands_table] == group.list_commands(None)  # type: ignore[arg-type]
    for entry in Commands.commands_table:
        command = group.commands[entry.name]
        assert command.name == entry.name
        own = (command.short_help or command.help or "").split("\n\n")[0].strip()
        assert entry.summary == own, entry.name
