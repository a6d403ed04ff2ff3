"""The readers without SQLAlchemy (pkgline.direct_reads: the standard library's sqlite3,
mes.adapters.sqlite_reads; asyncpg alone, mes.adapters.postgres_reads) give ``lot show`` the
report the lot service gives, to the byte, on lots of every kind: new, running, with rejects
and measured values, held, released and scrapped with signatures, reworked, split (a history
inherited over two generations) and merged, on the packaged flows and on a published flow
version, on SQLite and on PostgreSQL; and leave every other case to the full path."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mes.adapters.sqlite_reads import NotAnswered, SqliteReader
from mes.domain import commands as cmd
from mes.domain.authority import Action
from mes.domain.equipment import (
    ControllerRecord,
    DispatchMode,
    ToolRegistration,
    ToolSnapshot,
    TrackInRefusal,
)
from mes.domain.model import Lot
from mes.domain.report import report_dict
from mes.domain.signatures import SignatureGiven
from mes.ports_lots import GetLot
from mes.service import LotService
from pkgline.accounts import os_account
from pkgline.bootstrap import Services, open_services
from pkgline.direct_reads import lot_report
from tests.cli.test_lot_cli import pkgline
from tests.mes.test_service import _run, _start

USER = "op1"


async def _signature(service: LotService, lot_id: str, meaning: str) -> SignatureGiven:
    del service, lot_id  # direct mode: the OS account signs, no password
    return SignatureGiven(os_account(), meaning)


async def _line(services: Services) -> list[str]:
    """Lots of every kind on the database; their ids."""
    lots = services.lots
    await _start(lots, "NEW", "fo-metal")
    await _start(lots, "RUN", "stiffener-bga", carriers=3)
    await _run(lots, "RUN", ["SUBSTRATE_LOAD"])
    first = (await lots.get("RUN")).carriers[0]
    await lots.track_in(cmd.TrackIn("RUN", "DIE_ATTACH", USER))
    await lots.track_out(
        cmd.TrackOut(
            "RUN",
            USER,
            rejects=(cmd.SiteRejectGiven(first, 1, 1, "PICK_FAIL"),),
        )
    )
    await lots.track_in(cmd.TrackIn("RUN", "WIRE_BOND", USER))

    await _start(lots, "HELD", "fc-heatsink-muf")
    await lots.hold(cmd.HoldLot("HELD", "eng1", "voids seen at X-ray"))

    await _start(lots, "REL", "fc-heatsink-muf")
    await lots.hold(cmd.HoldLot("REL", "eng1", "check"))
    await lots.release(
        cmd.ReleaseLot("REL", USER, "checked"),
        signatures=(await _signature(lots, "REL", "approved release"),),
    )

    await _start(lots, "SCR", "fo-organic")
    await lots.scrap(
        cmd.ScrapLot("SCR", USER, "dropped"),
        signatures=(await _signature(lots, "SCR", "scrap: dropped"),),
    )

    await _start(lots, "RWK", "fo-organic")
    await _run(lots, "RWK", ["SUBSTRATE_PREP", "DIE_ATTACH", "DIELECTRIC_COAT", "VIA_PATTERN"])
    await lots.hold(cmd.HoldLot("RWK", "eng1", "via opening undersized"))
    await lots.rework(
        cmd.ReworkLot("RWK", "DIELECTRIC_COAT", "eng1", "strip and re-coat"),
        signatures=(await _signature(lots, "RWK", "rework approved"),),
    )

    await _start(lots, "P", "stiffener-bga", carriers=3)
    await _run(lots, "P", ["SUBSTRATE_LOAD", "DIE_ATTACH"])
    parent = await lots.get("P")
    await lots.split(cmd.SplitLot("P", "PA", (parent.carriers[1], parent.carriers[2]), USER))
    await lots.split(cmd.SplitLot("PA", "PAB", (parent.carriers[2],), USER))
    await _run(lots, "PAB", ["WIRE_BOND"])
    await _run(lots, "PA", ["WIRE_BOND"])
    await lots.merge(cmd.MergeLots("PAB", "PA", USER))

    # running on a tool whose controller has lost it (lot show says so)
    bonder = ToolRegistration("WB-1", "wire_bonder", "modbus 127.0.0.1:5020", ("WIRE_BOND",))
    await services.equipment.register("line-a", [bonder])
    await services.equipment.report("WB-1", ToolSnapshot(connected=True, e10="standby"))
    await services.equipment.set_dispatch("WB-1", DispatchMode.MANUAL, "eng1")
    await _start(lots, "TOOL", "stiffener-bga")
    await _run(lots, "TOOL", ["SUBSTRATE_LOAD", "DIE_ATTACH"])
    await lots.track_in(cmd.TrackIn("TOOL", "WIRE_BOND", USER, tool="WB-1"))
    lost = ToolSnapshot(False, "unscheduled_down", "BONDING", reason="connection reset")
    await services.equipment.report("WB-1", lost)

    # waiting for WIRE_BOND, refused by the line controller (lot show says why it waits); a
    # refusal at a step it has left since is not shown
    await _start(lots, "WAIT", "stiffener-bga")
    await _run(lots, "WAIT", ["SUBSTRATE_LOAD", "DIE_ATTACH"])
    await services.equipment.heartbeat(
        ControllerRecord("line-a", "host", 1, REFUSED_AT, REFUSED_AT, "running", ("WB-1",), (
            WAIT_REFUSED,
            replace(WAIT_REFUSED, step="DIE_ATTACH", interlock="tool_busy"),
            replace(WAIT_REFUSED, lot="NEW"),
        ))
    )  # fmt: skip
    return ["NEW", "RUN", "HELD", "REL", "SCR", "RWK", "P", "PA", "PAB", "TOOL", "WAIT"]


REFUSED_AT = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
WAIT_REFUSED = TrackInRefusal(
    "WB-1",
    "WAIT",
    "WIRE_BOND",
    "durable",
    "track-in of lot WAIT at WIRE_BOND on WB-1 refused: capillary CAP-1 is spent; expected a "
    "capillary mounted with life left",
    REFUSED_AT,
)


@pytest.fixture
async def line(sqlite_url: str) -> tuple[str, list[str]]:
    return sqlite_url, await _made(sqlite_url)


async def _made(url: str) -> list[str]:
    from mes.adapters.database import create_engine
    from mes.adapters.migrate import upgrade

    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    async with open_services(url) as services:
        return await _line(services)


async def _quick(url: str, lot_id: str) -> dict[str, Any] | None:
    """:func:`lot_report` as the CLI calls it: outside any event loop (its own on PostgreSQL)."""
    return await asyncio.to_thread(lot_report, url, lot_id)


async def _full(url: str, lot_id: str) -> dict[str, object]:
    async with open_services(url) as services:
        return report_dict(await services.lots.report(lot_id))


def _same(a: object, b: object) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@pytest.mark.parametrize("database", ["sqlite_url", "postgres_url"])
async def test_every_kind_of_lot_reads_as_the_lot_service_reports_it(
    database: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(database)
    for lot_id in await _made(url):
        quick = await _quick(url, lot_id)
        assert quick is not None, lot_id
        full = await _full(url, lot_id)
        assert _same(quick, full), lot_id
    signed = await _quick(url, "SCR")
    assert signed is not None and signed["signatures"], "the scrap's signature is read"
    on_tool = await _quick(url, "TOOL")
    assert on_tool is not None and on_tool["running"]["tool_state"] == {
        "connected": False,
        "e10": "unscheduled_down",
        "process_state": "BONDING",
        "reason": "connection reset",
    }
    running = await _quick(url, "RUN")  # on no tool
    assert running is not None and running["running"]["tool_state"] is None
    inherited = await _quick(url, "PAB")
    assert inherited is not None
    assert {e["lot"] for e in inherited["history"]} == {"P", "PA", "PAB"}
    waiting = await _quick(url, "WAIT")
    assert waiting is not None and waiting["refused"] == [WAIT_REFUSED.to_dict()]
    new = await _quick(url, "NEW")  # refused at a step it is not offered now
    assert new is not None and new["refused"] == []


@pytest.mark.parametrize("database", ["sqlite_url", "postgres_url"])
async def test_a_lot_on_a_published_flow_version_reads_its_version(
    database: str, request: pytest.FixtureRequest
) -> None:
    from mes.adapters.database import create_engine
    from mes.adapters.migrate import upgrade
    from pkgline.bootstrap import seed_flow_versions

    url = request.getfixturevalue(database)
    engine = create_engine(url)
    try:
        await upgrade(engine)
        assert await seed_flow_versions(engine)
    finally:
        await engine.dispose()
    async with open_services(url) as services:
        await _start(services.lots, "V1", "fo-metal")
        await _run(services.lots, "V1", ["SUBSTRATE_PREP"])
    full = await _full(url, "V1")  # builds the version (and keeps it built)
    quick = await _quick(url, "V1")
    assert quick is not None and quick["flow_version"] == 1
    assert _same(quick, full)


async def test_what_the_reader_does_not_answer_is_left_to_the_full_path(
    line: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, _ = line
    path = Path(url.removeprefix("sqlite:///"))
    assert lot_report(url, "NO-SUCH-LOT") is None  # the full path says it is unknown
    assert lot_report(f"sqlite:///{tmp_path / 'none.db'}", "NEW") is None
    assert lot_report(url + "?mode=ro", "NEW") is None  # only SQLAlchemy parses queries

    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    assert lot_report(f"sqlite:///{empty}", "NEW") is None  # no pkgline schema

    other = tmp_path / "other.db"
    source, copy = sqlite3.connect(path), sqlite3.connect(other)
    source.backup(copy)
    with copy:
        copy.execute("UPDATE alembic_version SET version_num = '0001'")
    source.close()
    copy.close()
    assert lot_report(f"sqlite:///{other}", "NEW") is None  # another revision


async def test_a_file_of_another_account_is_left_to_the_full_path(
    line: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = line
    owner = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: owner + 1)
    assert lot_report(url, "NEW") is None  # direct mode refuses it, saying whose it is


async def test_the_reader_only_reads(line: tuple[str, list[str]]) -> None:
    url, _ = line
    path = Path(url.removeprefix("sqlite:///"))
    with SqliteReader(path) as reader:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader._conn.execute("DELETE FROM carriers")

        def work():  # type: ignore[no-untyped-def]
            yield Action.READ  # not a request of a lot's report

        with pytest.raises(NotAnswered):
            reader.run(work())
        lot = reader.run(_get("NEW"))
        assert isinstance(lot, Lot) and lot.id == "NEW"


def _get(lot_id: str):  # type: ignore[no-untyped-def]
    return (yield GetLot(lot_id))


@pytest.fixture
async def pg_line(postgres_url: str) -> str:
    """A PostgreSQL database with one lot, NEW."""
    from mes.adapters.database import create_engine
    from mes.adapters.migrate import upgrade

    engine = create_engine(postgres_url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    async with open_services(postgres_url) as services:
        await _start(services.lots, "NEW", "fo-metal")
    return postgres_url


async def test_what_the_postgresql_reader_does_not_answer_is_left_to_the_full_path(
    pg_line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = pg_line
    assert await _quick(url, "NEW") is not None
    assert await _quick(url, "NO-SUCH-LOT") is None  # the full path says it is unknown
    assert await _quick(url + "?ssl=disable", "NEW") is None  # options: SQLAlchemy's to read
    user, _, rest = url.removeprefix("postgresql://").partition("@")
    assert await _quick(f"postgresql://{rest}", "NEW") is None  # no user: libpq's defaults
    assert await _quick(f"postgresql://nobody_{user}@{rest}", "NEW") is None  # refused login
    host_port, _, _ = rest.partition("/")
    assert await _quick(f"postgresql://{user}@{host_port}/no_such_db", "NEW") is None
    assert await _quick(f"postgresql://{user}@127.0.0.1:1/test", "NEW") is None  # refused

    readable = tmp_path / "pgpass"  # a password file others may read: the full path refuses
    readable.write_text("*:*:*:*:secret\n")
    readable.chmod(0o644)
    monkeypatch.setenv("PGPASSFILE", str(readable))
    assert await _quick(url, "NEW") is None
    monkeypatch.delenv("PGPASSFILE")

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("UPDATE alembic_version SET version_num = '0001'")
    finally:
        await conn.close()
    assert await _quick(url, "NEW") is None  # another revision


async def test_the_postgresql_reader_answers_only_a_reports_requests(pg_line: str) -> None:
    from mes.adapters.location import postgres_dsn
    from mes.adapters.postgres_reads import PostgresReader

    dsn = postgres_dsn(pg_line)
    assert dsn is not None
    async with PostgresReader(dsn) as reader:
        lot = await reader.run(_get("NEW"))
        assert isinstance(lot, Lot) and lot.id == "NEW"

        def work():  # type: ignore[no-untyped-def]
            yield Action.READ  # not a request of a lot's report

        with pytest.raises(NotAnswered):
            await reader.run(work())


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://pkg@db1/line",
        "postgresql://pkg:s3cret@db1.plant.example:6432/line_1",
        "postgres://pkg:p%40ss@10.0.0.7/line",
        "postgresql+asyncpg://pkg@DB1:5432/Line",
    ],
)
def test_a_plain_postgresql_url_is_read_and_shown_as_sqlalchemy_reads_and_shows_it(
    url: str,
) -> None:
    from sqlalchemy import make_url

    from mes.adapters.database import async_url, display_url
    from mes.adapters.location import postgres_dsn, shown_postgres_url

    dsn = postgres_dsn(url)
    assert dsn is not None
    ours, theirs = make_url(dsn), async_url(url)
    assert (ours.username, ours.password, ours.host, ours.port, ours.database) == (
        theirs.username,
        theirs.password,
        theirs.host,
        theirs.port,
        theirs.database,
    )
    assert shown_postgres_url(dsn) == display_url(url)
    assert "s3cret" not in shown_postgres_url(dsn)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://db1/line",  # no user: the environment's, as libpq reads it
        "postgresql://pkg@/line",  # no host: a socket
        "postgresql://pkg@db1/",  # no database
        "postgresql://pkg@db1/line?sslmode=require",
        "postgresql://pkg@[::1]/line",
        "postgresql://pkg:a@b@db1/line",  # two @: parsers disagree on the host
        "postgresql://pk%67@db1/line",  # an escape in the user
        "postgresql://pkg@db1:99999/line",  # no such port
        "postgresql+psycopg://pkg@db1/line",
        "mysql://pkg@db1/line",
        "sqlite:///tmp/x.db",
    ],
)
def test_any_other_url_is_left_to_sqlalchemy(url: str) -> None:
    from mes.adapters.location import postgres_dsn

    assert postgres_dsn(url) is None


def test_a_postgresql_server_that_never_answers_is_waited_for_once(tmp_path: Path) -> None:
    """A server that takes the connection and says nothing: ``lot show`` says it did not
    answer in time, as the full path says it, after one wait (one connection), not two."""
    import socket
    import subprocess
    import sys
    import threading

    silent = socket.create_server(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    taken: list[socket.socket] = []
    stop = threading.Event()

    def take() -> None:
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                taken.append(silent.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=take)
    thread.start()
    env = {k: v for k, v in os.environ.items() if k != "PKGLINE_DB"}
    env["HOME"] = str(tmp_path)  # no password file
    url = f"postgresql://pkg@127.0.0.1:{port}/line"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pkgline", "lot", "show", "L1", "--json", "--db", url],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        stop.set()
        thread.join()
        for conn in taken:
            conn.close()
        silent.close()
    assert done.returncode == 4, done.stderr
    answer = json.loads(done.stdout)
    assert answer == {
        "error": "database",
        "message": f"cannot use the database {url}: the database did not answer in time",
    }
    assert len(taken) == 1


async def test_lot_show_says_the_running_lots_tool_is_not_connected(
    line: tuple[str, list[str]],
) -> None:
    url, _ = line
    shown = await asyncio.to_thread(pkgline, url, "lot", "show", "TOOL")
    assert shown.returncode == 0, shown.stderr
    said = " ".join(shown.stdout.split())
    assert "running WIRE_BOND on WB-1 (by hand) since" in said  # tracked in by hand: theirs
    assert "tool WB-1 not connected (last BONDING): connection reset" in said
    running = await asyncio.to_thread(pkgline, url, "lot", "show", "RUN")  # on no tool
    assert "not connected" not in running.stdout


async def test_lot_show_says_why_a_waiting_lot_is_not_started(
    line: tuple[str, list[str]],
) -> None:
    """The line controller's refused track-ins of a waiting lot at its next steps, as the
    line status shows them under the queue, in ``lot show`` (direct mode's reader)."""
    url, _ = line
    shown = await asyncio.to_thread(pkgline, url, "lot", "show", "WAIT")
    assert shown.returncode == 0, shown.stderr
    said = " ".join(shown.stdout.split())
    assert "not started on WB-1 (WIRE_BOND) since 2026-12-02" in said
    assert "capillary CAP-1 is spent; expected a capillary mounted with life left" in said
    assert "tool_busy" not in said and "DIE_ATTACH) since" not in said
    new = await asyncio.to_thread(pkgline, url, "lot", "show", "NEW")
    assert "not started" not in new.stdout
