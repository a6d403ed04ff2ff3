"""Every ``pkgline`` call is a new process that pays for what it imports. These tests keep the
CLI's start-up from growing back: the top-level group imports a command's module only when
the command runs (pkgline.cli.lazy), and a command imports only what it uses
(bench/cli.py measures the time; here only which modules are loaded, which cannot be noisy).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from tests.api.conftest import RunningApi, cli, start_api

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
    "pkgline.controller.runner_base",
    "pkgline.controller.runner_results",
    "pkgline.controller.runner_steps",
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
    pkgline's commands, nor pydantic."""
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
    assert {"sqlalchemy", "aiosqlite", "flows", "mes.service"} <= modules  # the full path
    assert _found(modules, NOT_FOR_LOT_SHOW) == []


NOT_FOR_A_REPORT = ("mes.domain.equipment", "mes.domain.signatures", "mes.domain.authority")
"""What a lot's report read directly needs none of: the tools' records, the rules of signing
and the authority table (what a report shows of a tool and of a signature is in
mes.domain.tool_state and mes.domain.signature_records)."""

NOT_FOR_A_DIRECT_READ = (
    *NOT_FOR_LOT_SHOW,
    *NOT_FOR_A_REPORT,
    "sqlalchemy",
    "aiosqlite",
    "asyncio",
    "mes.service",
)
"""What ``pkgline lot show X --json`` of a lot on a SQLite file the user owns needs none of:
the standard library's sqlite3 reads it (pkgline.direct_reads), with the flows and the
report's rules."""


async def test_lot_show_json_of_a_lot_reads_it_without_sqlalchemy(tmp_path: Path) -> None:
    from pkgline.bootstrap import open_services
    from tests.mes.test_service import _start

    url = await _database(tmp_path)
    async with open_services(url) as services:
        await _start(services.lots, "L1", "fo-metal")
    done, modules = _imported("lot", "show", "L1", "--json", db=url)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["id"] == "L1"
    assert "direct database" in done.stderr
    assert {"sqlite3", "flows", "mes.adapters.sqlite_reads"} <= modules
    assert _found(modules, NOT_FOR_A_DIRECT_READ) == []


NOT_FOR_A_POSTGRESQL_READ = (
    *(m for m in NOT_FOR_LOT_SHOW if m != "asyncpg"),
    *NOT_FOR_A_REPORT,
    "sqlalchemy",
    "aiosqlite",
    "mes.service",
)
"""What ``pkgline lot show X --json`` of a lot on PostgreSQL needs none of: asyncpg alone
reads it (pkgline.direct_reads), with the flows and the report's rules."""


async def test_lot_show_json_of_a_lot_on_postgresql_reads_it_without_sqlalchemy(
    postgres_url: str,
) -> None:
    from pkgline.bootstrap import open_services
    from tests.mes.test_service import _start

    engine = create_engine(postgres_url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    async with open_services(postgres_url) as services:
        await _start(services.lots, "L1", "fo-metal")
    done, modules = await asyncio.to_thread(
        _imported, "lot", "show", "L1", "--json", db=postgres_url
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["id"] == "L1"
    assert f"direct database {postgres_url} as" in done.stderr
    assert {"asyncpg", "flows", "mes.adapters.postgres_reads"} <= modules
    assert _found(modules, NOT_FOR_A_POSTGRESQL_READ) == []


NOT_THROUGH_THE_SERVER = (
    *HEAVY,
    "pydantic",
    "rich",
    "asyncio",
    "pkgline.bootstrap",
    "pkgline.config",
    "pkgline.api.server",
    "pkgline.api.app",
    "pkgline.interlock_views",
    "pkgline.map_views",
)
"""What ``pkgline lot show X --json --server URL`` needs none of: the server answers, the
client sends one request with the standard library (pkgline.cli.remote) and prints its JSON.
Not the lot tracker (mes), nor the flows, SQLAlchemy, the bootstrap, structlog or rich; nor
asyncio (the client is synchronous); nor pydantic (typer < 0.29 parses without it). typer
remains: it parses the command line (bench/cli.py measures that floor)."""


async def _imported_via(api: RunningApi, *args: str) -> tuple[int, str, str, set[str]]:
    """``python -X importtime -m pkgline ARGS --server unix://SOCKET`` awaited (the server
    runs in this event loop); its exit code, output, what it said on stderr and the modules
    it imported."""
    env = {k: v for k, v in os.environ.items() if k not in ("PKGLINE_SERVER", "PKGLINE_DB")}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-X",
        "importtime",
        "-m",
        "pkgline",
        *args,
        "--server",
        f"unix://{api.socket}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**env, "COLUMNS": "80"},
    )
    out, err = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode is not None
    lines = err.decode().splitlines()
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in lines
        if line.startswith("import time:") and "|" in line
    }
    modules.discard("imported package")
    said = "\n".join(line for line in lines if not line.startswith("import time:"))
    return child.returncode, out.decode(), said, modules


async def test_lot_show_json_through_the_server_imports_no_lot_tracker(
    sqlite_url: str, tmp_path: Path
) -> None:
    """The client path of ``lot show --json`` imports neither the lot tracker nor the
    database code, and prints what direct mode prints (a lot, and a refusal)."""
    async with start_api(sqlite_url, tmp_path / "api.sock") as api:
        via = ("--server", f"unix://{api.socket}")
        started = await cli("lot", "start", "L1", "--flow", "fc-heatsink-muf", *via)
        assert started.returncode == 0, started.stderr[-2000:]
        code, out, said, modules = await _imported_via(api, "lot", "show", "L1", "--json")
        assert code == 0, said[-2000:]
        assert json.loads(out)["id"] == "L1"
        assert said.startswith(f"via server unix://{api.socket}")
        assert "pkgline.cli.remote" in modules and "http.client" in modules  # it did ask
        assert _found(modules, NOT_THROUGH_THE_SERVER) == []
        code, out, said, modules = await _imported_via(api, "lot", "show", "NOPE", "--json")
        assert code == 1, said[-2000:]
        assert json.loads(out)["error"] == "unknown_lot"
        assert _found(modules, NOT_THROUGH_THE_SERVER) == []


@pytest.mark.parametrize(
    ("args", "exit_code"),
    [
        (("lot", "genealogy", "NOPE", "--json"), 1),  # loaded with ``pkgline lot``
        (("material", "list", "--json"), 0),
        (("durable", "list", "--json"), 0),
        (("durable", "show", "NOPE", "--json"), 1),
    ],
)
async def test_material_and_durable_reads_through_the_server_import_no_lot_tracker(
    sqlite_url: str, tmp_path: Path, args: tuple[str, ...], exit_code: int
) -> None:
    async with start_api(sqlite_url, tmp_path / "api.sock") as api:
        code, out, said, modules = await _imported_via(api, *args)
        assert code == exit_code, said[-2000:]
        assert isinstance(json.loads(out), dict if exit_code else list)
        assert _found(modules, NOT_THROUGH_THE_SERVER) == []


NOT_FOR_A_SERVER_CALL = (
    "sqlalchemy",
    "alembic",
    "asyncpg",
    "aiosqlite",
    "asyncua",
    "pymodbus",
    "aiomqtt",
    "argon2",
    "structlog",
    "drivers",
    "simulators",
    "pkgline.bootstrap",
    "pkgline.api.app",
    "pkgline.api.server",
    "pkgline.config",
    "mes.adapters",
    "mes.service",
    "mes.equipment",
    "mes.identity",
    "mes.flowversions",
)
"""What a command through the server needs none of, whatever it prints: the database's code
and the services answer on the server (a table may still use the lot tracker's constants)."""


async def test_the_operators_lists_through_the_server_import_no_database_code(
    sqlite_url: str, tmp_path: Path
) -> None:
    """``lot list``, ``line status``, the tools, the feed, the accounts and the flow versions
    through the server import none of the database's code, the services or the server's;
    ``lot list`` not the lot tracker either (it sends the query string it was given)."""
    async with start_api(sqlite_url, tmp_path / "api.sock") as api:
        via = ("--server", f"unix://{api.socket}")
        started = await cli("lot", "start", "L1", "--flow", "fc-heatsink-muf", *via)
        assert started.returncode == 0, started.stderr[-2000:]
        for args, exit_code in (
            (("lot", "list"), 0),
            (("lot", "list", "--state", "waiting", "--limit", "5"), 0),
            (("line", "status"), 0),
            (("tool", "list"), 0),
            (("tool", "show", "NOPE"), 1),
            (("tool", "qualifications"), 0),
            (("events", "list"), 0),
            (("events", "status"), 0),
            (("user", "list"), 0),
            (("flow", "versions", "fc-heatsink-muf"), 1),  # none published on this database
        ):
            code, out, said, modules = await _imported_via(api, *args)
            assert code == exit_code, (args, said[-2000:])
            assert _found(modules, NOT_FOR_A_SERVER_CALL) == [], args
            if args[:2] == ("lot", "list"):
                assert "L1" in out
                assert _found(modules, ("mes", "flows")) == [], args
        code, out, said, modules = await _imported_via(api, "lot", "list", "--json")
        assert code == 0, said[-2000:]
        assert [lot["id"] for lot in json.loads(out)] == ["L1"]
        assert _found(modules, (*NOT_FOR_A_SERVER_CALL, "mes", "flows")) == []


def test_the_material_kinds_in_the_help_are_the_lot_trackers() -> None:
    """``pkgline material add --kind``'s help names the kinds from a constant of its own (the
    CLI module imports no lot tracker): it is the lot tracker's list."""
    from mes.domain.materials import KINDS
    from pkgline.cli.material import KIND_NAMES

    assert tuple(kind.value for kind in KINDS) == KIND_NAMES


def test_the_durable_kinds_and_warning_in_the_help_are_the_lot_trackers() -> None:
    """``pkgline durable add``'s ``--kind`` help and ``--warn-at`` default are constants of
    its own (the CLI module imports no lot tracker): they are the lot tracker's."""
    from mes.domain import durables
    from pkgline.cli import durable

    assert tuple(kind.value for kind in durables.KINDS) == durable.KIND_NAMES
    assert durables.DEFAULT_WARN_FRACTION == durable.DEFAULT_WARN_FRACTION


def test_every_lot_state_has_its_style() -> None:
    """pkgline.cli.lot_view keys its styles by a state's value (it imports no lot tracker)."""
    from mes.domain.model import LotState
    from pkgline.cli.lot_view import STATE_STYLE

    assert {state.value for state in LotState} == set(STATE_STYLE)


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


def test_a_group_builds_the_command_it_runs_only_and_lists_them_all_as_typer_would() -> None:
    """``pkgline lot show`` builds the click command of ``show`` alone (building all of
    ``lot``'s cost about 180 ms of a 380 ms call); ``pkgline lot --help`` lists every command
    of the group, in Typer's order, each with the parameters Typer gives it."""
    from typer.core import TyperGroup
    from typer.main import get_group

    from pkgline.cli.app import app
    from pkgline.cli.lazy import LazyCommands, plain_help

    lot = get_group(app).commands["lot"]
    assert isinstance(lot.commands, LazyCommands)
    ctx = lot.make_context("lot", [], resilient_parsing=True)
    assert lot.get_command(ctx, "show").name == "show"
    built_now = [name for name in lot.commands if lot.commands.loaded(name)]
    # ``lot map`` is a group of its own, built with ``lot`` as Typer builds it
    assert [n for n in built_now if not isinstance(lot.commands[n], TyperGroup)] == ["show"]
    assert lot.get_command(ctx, "no-such-command") is None

    from pkgline.cli.app import _lot_app

    typer_built = get_group(_lot_app())
    assert lot.list_commands(ctx) == typer_built.list_commands(ctx)
    for name in typer_built.list_commands(ctx):
        built, ours = typer_built.commands[name], lot.commands[name]
        assert [p.name for p in ours.params] == [p.name for p in built.params], name
        assert ours.help == plain_help(built).help, name


async def test_lot_show_on_published_versions_builds_nothing_the_cache_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a database ``db upgrade`` made (every flow a published version), ``lot show``
    builds the lot's version once (the full path: the reader of pkgline.direct_reads finds it
    not built); the next call reads it back, and imports no flow loader (no version, nor the
    packaged library, is built from YAML again)."""
    from mes.domain.commands import StartLot
    from pkgline.bootstrap import open_lot_service, seed_flow_versions

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # cold, of this test's own
    url = f"sqlite:///{tmp_path / 'line.db'}"
    engine = create_engine(url)
    try:
        await upgrade(engine)
        assert await seed_flow_versions(engine)
    finally:
        await engine.dispose()
    async with open_lot_service(url) as service:
        await service.start(StartLot("L1", "fc-heatsink-muf", "op1", carriers=1))
    versions = tmp_path / "cache" / "pkgline"
    for version in versions.glob("version-*.pickle"):
        version.unlink()  # this process built it: the first call below builds it again
    done, modules = _imported("lot", "show", "L1", "--json", db=url)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(list(versions.glob("version-*.pickle"))) == 1  # the lot's version only
    done, modules = _imported("lot", "show", "L1", "--json", db=url)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["flow_version"] == 1
    assert "pkgline.flowcache" in modules  # the version read back from the cache
    assert "sqlalchemy" not in modules  # by the standard library's reader (direct_reads)
    assert _found(modules, ("flows.loader", "flows.schema", "flows.resolve", "yaml")) == []
