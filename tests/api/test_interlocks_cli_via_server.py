"""``pkgline durable|material|reason|spc`` and ``lot genealogy`` as clients of a running
server (on a Unix socket in tmp_path): every command prints what it prints in direct mode
and exits with the same code, and says on standard error which way it went.

The changes run twice, through the server on its database and directly on a twin made the
same way, and their outputs are compared; the reads then run both ways on the server's own
database, as JSON and as text."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from mes.domain.authority import Role
from tests.api.conftest import ACCOUNT, Ran, RunningApi, cli
from tests.api.interlock_line import BLT, make_line

Args = tuple[str, ...]

DURABLE_CHANGES: list[Args] = [
    ("durable", "add", "CAP-1", "--kind", "capillary", "--life", "500", "--warn-at", "0.5"),
    ("durable", "add", "CH-1", "--kind", "mold_chase", "--life", "1000", "--description", "4x"),
    # refused: the warning fraction (a life of 0 is a usage error: test_bounds_via_server.py)
    ("durable", "add", "CAP-2", "--kind", "capillary", "--life", "5", "--warn-at", "2"),
    ("durable", "mount", "CAP-1", "--tool", "WB-1"),
    ("durable", "mount", "CH-1", "--tool", "MOLD-1"),
    ("durable", "renew", "CH-1", "--reason", "cleaned"),
    ("durable", "unmount", "CH-1", "--reason", "to the shelf"),
    ("durable", "renew", "CAP-1", "--reason", "cleaned"),  # refused: replaced, not renewed
]
DURABLE_READS: list[Args] = [
    ("durable", "show", "CH-1"),
    ("durable", "list", "--tool", "WB-1"),
    ("durable", "list", "--mounted"),
]

MATERIAL_CHANGES: list[Args] = [
    ("material", "add", "W-1", "--kind", "wire", "--expires", "2099-12-31", "--part", "AU-25"),
    (
        "material",
        "add",
        "EMC-1",
        "--kind",
        "mold_compound",
        "--expires",
        "2099-06-30T12:00+00:00",
        "--thaw-hours",
        "4",
    ),
    ("material", "load", "W-1", "--tool", "WB-1"),
    ("material", "load", "EMC-1", "--tool", "WB-1"),  # refused: a molder's
    ("lot", "track-in", "M1", "--step", "WIRE_BOND", "--tool", "WB-1"),
    ("material", "unload", "W-1", "--reason", "spool empty"),
]
MATERIAL_READS: list[Args] = [
    ("material", "show", "W-1"),
    ("material", "list"),
    ("material", "list", "--loaded"),
    ("material", "where-used", "W-1"),
    ("lot", "genealogy", "M1"),
]

REASON_SPC_CHANGES: list[Args] = [
    ("reason", "add", "VOID", "--kind", "hold", "--text", "voids", "--release-by", "quality"),
    ("reason", "add", "OLD", "--kind", "scrap", "--text", "old code"),
    ("reason", "retire", "OLD", "--reason", "replaced"),
    ("reason", "retire", "NOPE", "--reason", "gone"),  # refused: unknown
    (
        "spc",
        "chart",
        "DIE_ATTACH",
        BLT,
        "--tool",
        "DB-1",
        "--center",
        "25",
        "--sigma",
        "1",
        "--inhibit",
    ),
    ("spc", "clear", "DIE_ATTACH", "--tool", "DB-1", "--reason", "checked"),
    ("spc", "list", "--tool", "NOPE"),  # refused: unknown
    ("spc", "list", "--step", "NO_STEP"),  # refused: not a step
]
REASON_SPC_READS: list[Args] = [
    ("reason", "list", "--retired"),
    ("spc", "show", "DIE_ATTACH", BLT),
    ("spc", "list"),
    ("spc", "list", "--tool", "DB-1", "--step", "DIE_ATTACH"),
]
"""Changes (and refusals) whose text names no time of this run, run on twin databases; reads
run on the same one."""

AT_ONCE = 4
"""Commands run at once (each is a process that spends most of its time starting)."""


def _without_mode(stderr: str) -> str:
    """Standard error without the line saying which way the command went."""
    lines = stderr.splitlines(keepends=True)
    assert lines, "the command did not say which way it went"
    assert lines[0].startswith(("via server ", "direct database ")), lines[0]
    return "".join(lines[1:])


def _same(via: Ran, direct: Ran, args: Args) -> None:
    assert via.returncode == direct.returncode, (args, via, direct)
    assert via.stdout == direct.stdout, args
    assert _without_mode(via.stderr) == _without_mode(direct.stderr), args


async def _pairs(server: str, db: str, commands: list[Args], *extra: str) -> list[tuple[Ran, Ran]]:
    """Each command through the server and directly on ``db``, the two at once."""
    done = []
    for args in commands:
        done.append(
            await asyncio.gather(
                cli(*args, *extra, "--server", server), cli(*args, *extra, "--db", db)
            )
        )
    return done


async def _reads(server: str, db: str, commands: list[Args]) -> None:
    """Each read through the server and directly on the server's own ``db``, as JSON and as
    text: the same either way."""
    gate = asyncio.Semaphore(AT_ONCE)

    async def one(*args: str) -> Ran:
        async with gate:
            return await cli(*args)

    runs = [
        (args, extra, one(*args, *extra, "--server", server), one(*args, *extra, "--db", db))
        for args in commands
        for extra in (("--json",), ())
    ]
    done = await asyncio.gather(*(asyncio.gather(via, direct) for _, _, via, direct in runs))
    for (args, extra, _, _), (via, direct) in zip(runs, done, strict=True):
        if extra:
            assert via.returncode == direct.returncode == 0, (args, via, direct)
            assert json.loads(via.stdout) == json.loads(direct.stdout), args
        else:
            _same(via, direct, args)


async def _both_ways(
    api: RunningApi, tmp_path: Path, changes: list[Args], reads: list[Args]
) -> str:
    """``changes`` through the server and on a twin database, then ``reads``; the server's
    URL."""
    await api.roles(Role.OPERATOR, Role.TECHNICIAN, Role.ENGINEER, Role.QUALITY)
    twin = f"sqlite:///{tmp_path / 'twin.db'}"
    for db in (api.db, twin):  # one after the other: alembic's context is the process's
        await make_line(db)
    server = f"unix://{api.socket}"
    for args, (via, direct) in zip(changes, await _pairs(server, twin, changes), strict=True):
        _same(via, direct, args)
        assert via.stderr.startswith(f"via server {server} as {ACCOUNT} (os_account)\n"), args
        assert direct.stderr.startswith("direct database sqlite:///"), args
    await _reads(server, api.db, reads)
    return server


async def _json(*args: str) -> Any:
    ran = await cli(*args, "--json")
    assert ran.returncode == 0, ran
    return json.loads(ran.stdout)


@pytest.mark.slow
@pytest.mark.timeout(300)  # a process per command, on a shared machine
async def test_the_durable_commands_through_the_server_match_direct_mode(
    api: RunningApi, tmp_path: Path
) -> None:
    server = await _both_ways(api, tmp_path, DURABLE_CHANGES, DURABLE_READS)
    shown = await _json("durable", "show", "CAP-1", "--server", server)
    assert (shown["tool"], shown["added_by"], shown["warn_at"]) == ("WB-1", ACCOUNT, 250)
    assert [e["event"] for e in shown["history"]] == ["added", "mounted"]
    mounted = await _json("durable", "list", "--mounted", "--server", server)
    assert [d["id"] for d in mounted] == ["CAP-1"]  # CH-1 went to the shelf, CAP-2 was refused


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_the_material_commands_and_genealogy_through_the_server_match_direct_mode(
    api: RunningApi, tmp_path: Path
) -> None:
    server = await _both_ways(api, tmp_path, MATERIAL_CHANGES, MATERIAL_READS)
    thawed = await asyncio.gather(
        cli("material", "thaw", "EMC-1", "--server", server),
        cli("material", "thaw", "EMC-1", "--db", f"sqlite:///{tmp_path / 'twin.db'}"),
    )
    for ran in thawed:  # the time it is usable from is this run's
        assert ran.returncode == 0, ran
        assert ran.stdout.startswith("✔ mold_compound EMC-1 thawing, usable from ")
    loaded = await _json("material", "list", "--loaded", "--server", server)
    assert loaded == []  # W-1 unloaded (spool empty), EMC-1 refused on the wire bonder
    assert {m["id"] for m in await _json("material", "list", "--server", server)} == {
        "W-1",
        "EMC-1",
    }
    genealogy = await _json("lot", "genealogy", "M1", "--server", server)
    assert [(m["material"], m["step"]) for m in genealogy["materials"]] == [("W-1", "WIRE_BOND")]


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_the_reason_and_spc_commands_through_the_server_match_direct_mode(
    api: RunningApi, tmp_path: Path
) -> None:
    server = await _both_ways(api, tmp_path, REASON_SPC_CHANGES, REASON_SPC_READS)
    codes = await _json("reason", "list", "--retired", "--server", server)
    assert [(r["code"], r["active"], r["added_by"]) for r in codes] == [
        ("OLD", False, ACCOUNT),
        ("VOID", True, ACCOUNT),
    ]
    [chart] = await _json("spc", "show", "DIE_ATTACH", BLT, "--server", server)
    assert (chart["tool"], chart["ucl"], chart["inhibit"]) == ("DB-1", 28.0, True)
    [listed] = await _json("spc", "list", "--server", server)
    assert {k: v for k, v in chart.items() if k in listed} == listed


@pytest.mark.slow
async def test_a_role_lacking_the_authority_is_refused_through_the_cli_as_the_server_says(
    api: RunningApi,
) -> None:
    """An operator's ``durable add`` through the server: exit 1, the refusal the server
    answered (not_authorized, the roles that may), nothing added."""
    await make_line(api.db)
    server = f"unix://{api.socket}"
    refused, text = await asyncio.gather(
        cli(
            "durable",
            "add",
            "CAP-1",
            "--kind",
            "capillary",
            "--life",
            "9",
            "--json",
            "--server",
            server,
        ),
        cli("spc", "clear", "DIE_ATTACH", "--tool", "DB-1", "--reason", "x", "--server", server),
    )
    assert refused.returncode == 1, refused
    said = json.loads(refused.stdout)
    assert said["error"] == "not_authorized" and said["allowed"] == ["engineer", "technician"]
    assert text.returncode == 1 and "that needs the role engineer" in text.stderr
    listed = await cli("durable", "list", "--json", "--server", server)
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
