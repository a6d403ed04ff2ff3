"""The standard-library reader of SQLite (mes.adapters.sqlite_reads, pkgline.direct_reads)
gives ``lot show`` the report the lot service gives, to the byte, on lots of every kind: new,
running, with rejects and measured values, held, released and scrapped with signatures,
reworked, split (a history inherited over two generations) and merged, on the packaged
flows and on a published flow version; and leaves every other case to the full path."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from mes.adapters.sqlite_reads import NotAnswered, SqliteReader
from mes.domain import commands as cmd
from mes.domain.authority import Action
from mes.domain.model import Lot
from mes.domain.report import report_dict
from mes.domain.signatures import SignatureGiven
from mes.ports_lots import GetLot
from mes.service import LotService
from pkgline.accounts import os_account
from pkgline.bootstrap import Services, open_services
from pkgline.direct_reads import lot_report
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
    return ["NEW", "RUN", "HELD", "REL", "SCR", "RWK", "P", "PA", "PAB"]


@pytest.fixture
async def line(sqlite_url: str) -> tuple[str, list[str]]:
    from mes.adapters.database import create_engine
    from mes.adapters.migrate import upgrade

    engine = create_engine(sqlite_url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    async with open_services(sqlite_url) as services:
        lots = await _line(services)
    return sqlite_url, lots


async def _full(url: str, lot_id: str) -> dict[str, object]:
    async with open_services(url) as services:
        return report_dict(await services.lots.report(lot_id))


def _same(a: object, b: object) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


async def test_every_kind_of_lot_reads_as_the_lot_service_reports_it(
    line: tuple[str, list[str]],
) -> None:
    url, lots = line
    for lot_id in lots:
        quick = lot_report(url, lot_id)
        assert quick is not None, lot_id
        full = await _full(url, lot_id)
        assert _same(quick, full), lot_id
    signed = lot_report(url, "SCR")
    assert signed is not None and signed["signatures"], "the scrap's signature is read"
    inherited = lot_report(url, "PAB")
    assert inherited is not None
    assert {e["lot"] for e in inherited["history"]} == {"P", "PA", "PAB"}


async def test_a_lot_on_a_published_flow_version_reads_its_version(sqlite_url: str) -> None:
    from mes.adapters.database import create_engine
    from mes.adapters.migrate import upgrade
    from pkgline.bootstrap import seed_flow_versions

    engine = create_engine(sqlite_url)
    try:
        await upgrade(engine)
        assert await seed_flow_versions(engine)
    finally:
        await engine.dispose()
    async with open_services(sqlite_url) as services:
        await _start(services.lots, "V1", "fo-metal")
        await _run(services.lots, "V1", ["SUBSTRATE_PREP"])
    full = await _full(sqlite_url, "V1")  # builds the version (and keeps it built)
    quick = lot_report(sqlite_url, "V1")
    assert quick is not None and quick["flow_version"] == 1
    assert _same(quick, full)


async def test_what_the_reader_does_not_answer_is_left_to_the_full_path(
    line: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, _ = line
    path = Path(url.removeprefix("sqlite:///"))
    assert lot_report(url, "NO-SUCH-LOT") is None  # the full path says it is unknown
    assert lot_report("postgresql://127.0.0.1/test", "NEW") is None
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
