"""Tool states are written in batches, in order, and never dropped: while the database is
unavailable they wait in the spool on disk (bounded), and are written with their observed
times, before anything newer, when it is back; the log says so on the edges only."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest
from structlog.testing import capture_logs

from mes.adapters.database import create_engine
from mes.adapters.driver import DatabaseUnavailable
from mes.adapters.migrate import upgrade
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain.equipment import ToolRegistration, ToolSnapshot
from mes.equipment import EquipmentService
from pkgline.controller.outage import DatabaseOutage
from pkgline.controller.reporter import EquipmentReporter
from pkgline.controller.spool import Report, Spool, encode
from tests.controller.conftest import wait_until

T0 = datetime(2026, 12, 2, 7, 0, tzinfo=UTC)


class Recorder:
    """Stands in for equipment tracking: keeps every batch written; ``available`` False makes
    it answer as a database that is down does."""

    def __init__(self) -> None:
        self.batches: list[list[Report]] = []
        self.replays: list[bool] = []
        self.available = True
        self.refused = 0

    async def report_many(self, batch: Sequence[Report], *, only_newer: bool = False) -> list[str]:
        await asyncio.sleep(0.001)
        if not self.available:
            self.refused += 1
            raise DatabaseUnavailable("connection refused")
        self.batches.append(list(batch))
        self.replays.append(only_newer)
        return []

    def written(self) -> list[Report]:
        return [r for batch in self.batches for r in batch]


def snap(e10: str, sites: int = 0) -> ToolSnapshot:
    return ToolSnapshot(connected=True, e10=e10, sites_done=sites)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool" / "line-1.jsonl", 1_000_000)


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pkgline.controller.reporter.RETRY_S", 0.01)


@pytest.fixture
async def recorder() -> Recorder:
    return Recorder()


@contextlib.asynccontextmanager
async def started(
    recorder: Recorder,
    spool: Spool,
    *,
    batch_s: float,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[tuple[EquipmentReporter, DatabaseOutage]]:
    """A reporter writing to ``recorder`` until the block ends, and the outage log it tells
    (showing the reporter's backlog, as the line controller's does)."""
    reporters: list[EquipmentReporter] = []
    outage = DatabaseOutage(lambda: reporters[0].details(), clock=clock)
    reporter = EquipmentReporter(
        cast(EquipmentService, recorder), spool, batch_s=batch_s, outage=outage
    )
    reporters.append(reporter)
    await reporter.open()
    task = asyncio.create_task(reporter.run())
    await asyncio.sleep(0)
    try:
        yield reporter, outage
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await reporter.close()


async def test_changes_within_the_window_go_in_one_transaction_in_order(
    recorder: Recorder, spool: Spool
) -> None:
    async with started(recorder, spool, batch_s=0.05) as (reporter, _):
        now = datetime.now(UTC)
        for i, e10 in enumerate(["productive", "standby", "productive", "standby"]):
            reporter.submit("DB-1", snap(e10, i), now + timedelta(milliseconds=i))
            await asyncio.sleep(0.005)
        assert recorder.batches == []  # still gathering
        await asyncio.sleep(0.1)
        assert len(recorder.batches) == 1
        assert [s.sites_done for _, s, _ in recorder.batches[0]] == [0, 1, 2, 3]
        assert spool.size_bytes == 0, "nothing touches the disk while the database answers"


async def test_flush_writes_at_once_without_waiting_for_the_window(
    recorder: Recorder, spool: Spool
) -> None:
    async with started(recorder, spool, batch_s=30.0) as (reporter, _):
        reporter.submit("MOLD-1", snap("standby"), datetime.now(UTC))
        async with asyncio.timeout(2):
            await reporter.flush()
        assert [t for t, _, _ in recorder.written()] == ["MOLD-1"]
        await reporter.flush()  # nothing pending: returns at once


async def test_states_observed_at_the_same_time_get_strictly_increasing_times(
    recorder: Recorder, spool: Spool
) -> None:
    """So that a spool written twice can tell what a tool's record already has."""
    async with started(recorder, spool, batch_s=0.01) as (reporter, _):
        reporter.submit("DB-1", snap("standby"), at(1))
        reporter.submit("DB-1", snap("productive"), at(1))
        reporter.submit("DB-2", snap("standby"), at(1))
        reporter.submit("DB-1", snap("standby"), at(0.5))
        await reporter.flush()
        assert [(t, when) for t, _, when in recorder.written()] == [
            ("DB-1", at(1)),
            ("DB-1", at(1) + timedelta(microseconds=1)),
            ("DB-2", at(1)),
            ("DB-1", at(1) + timedelta(microseconds=2)),
        ]


async def test_while_the_database_is_down_states_go_to_the_spool_and_then_in_order_to_it(
    recorder: Recorder, spool: Spool
) -> None:
    async with started(recorder, spool, batch_s=0.01) as (reporter, _):
        reporter.submit("DB-1", snap("productive"), at(1))
        await reporter.flush()
        recorder.available = False
        reporter.submit("DB-1", snap("standby"), at(2))
        reporter.submit("DB-2", snap("productive"), at(3))
        await reporter.flush()  # written to the spool, durably
        assert spool.records == 2 and reporter.backlog == 2
        assert spool.read(0, 10)[0] == [
            ("DB-1", snap("standby"), at(2)),
            ("DB-2", snap("productive"), at(3)),
        ]
        await wait_until(
            lambda: recorder.refused >= 3, timeout_s=5, every_s=0.005, what="a few tries"
        )
        reporter.submit("DB-1", snap("productive", 4), at(4))
        await reporter.flush()
        assert spool.records == 3, "behind the spool, not around it"
        recorder.available = True
        await wait_until(
            lambda: reporter.backlog == 0, timeout_s=5, every_s=0.005, what="the spool written"
        )
        reporter.submit("DB-1", snap("standby", 5), at(5))
        await reporter.flush()
        assert [(t, s.e10, when) for t, s, when in recorder.written()] == [
            ("DB-1", "productive", at(1)),
            ("DB-1", "standby", at(2)),
            ("DB-2", "productive", at(3)),
            ("DB-1", "productive", at(4)),
            ("DB-1", "standby", at(5)),
        ]
        assert recorder.replays == [False, True, False], "the spool is written with only_newer"
        assert spool.size_bytes == 0 and spool.path.stat().st_size == 0


async def test_an_outage_is_logged_on_its_edges_not_at_every_try(
    recorder: Recorder, spool: Spool
) -> None:
    """One line when it begins, one a minute while it lasts (with counts), one when it ends;
    the time is the test's (a clock it moves), not the machine's."""
    minutes = [0.0]
    async with started(recorder, spool, batch_s=0.005, clock=lambda: minutes[0] * 60) as (
        reporter,
        outage,
    ):
        recorder.available = False
        with capture_logs() as logs:
            for i in range(10):
                reporter.submit("DB-1", snap("productive" if i % 2 else "standby"), at(i))
                await reporter.flush()
            await wait_until(lambda: recorder.refused >= 20, timeout_s=5, what="many tries")
            minutes[0] = 1.0
            await wait_until(lambda: recorder.refused >= 40, timeout_s=5, what="more tries")
            assert outage.down
            recorder.available = True
            await wait_until(lambda: not outage.down, timeout_s=5, what="the spool written")
        events = [e["event"] for e in logs]
        assert events == [
            "database unavailable: tool states are spooled, nothing new is dispatched",
            "database still unavailable",
            "spooled tool states written",
            "database available again",
        ]
        still = next(e for e in logs if e["event"] == "database still unavailable")
        assert still["down_s"] == 60 and still["failed_calls"]["tool states"] >= 20
        assert still["spooled"] == 10 and still["log_level"] == "warning"


async def test_past_the_spools_bound_each_tools_latest_state_is_kept_and_written_after_it(
    recorder: Recorder, tmp_path: Path
) -> None:
    one = len(encode(("DB-1", snap("productive"), at(1))))
    spool = Spool(tmp_path / "line-1.jsonl", 2 * one + 10)
    async with started(recorder, spool, batch_s=0.005) as (reporter, _):
        recorder.available = False
        with capture_logs() as logs:
            for i, e10 in enumerate(["productive", "standby", "productive", "standby", "idle"]):
                reporter.submit("DB-1", snap(e10, i), at(i))
                reporter.submit("DB-2", snap(e10, i), at(i) + timedelta(milliseconds=1))
                await reporter.flush()
        assert spool.records == 2 and spool.full
        assert reporter.backlog == 4, "two spooled, each tool's latest in memory"
        assert "spool full" in reporter.describe() and "6 changes lost" in reporter.describe()
        full = [e for e in logs if e["event"].startswith("spool full")]
        assert len(full) == 1 and full[0]["log_level"] == "warning"
        recorder.available = True
        await wait_until(
            lambda: reporter.backlog == 0, timeout_s=5, every_s=0.005, what="the backlog written"
        )
        await reporter.flush()
        assert [(t, s.sites_done) for t, s, _ in recorder.written()] == [
            ("DB-1", 0),
            ("DB-2", 0),
            ("DB-1", 4),
            ("DB-2", 4),
        ]
        assert not spool.full


async def test_what_the_last_run_spooled_is_written_first_and_once_on_a_real_database(
    database: str, tmp_path: Path
) -> None:
    """The spool a killed controller left is written before anything else; a crash after
    the commit but before the truncation writes it again at the next start, and nothing is
    recorded twice."""
    engine = create_engine(database)
    try:
        await upgrade(engine)
        equipment = EquipmentService(SqlUnitOfWorkFactory(engine))
        await equipment.register("line-1", [ToolRegistration("DB-1", "die_bonder", "opcua", ())])
        start = datetime.now(UTC)
        left = [
            ("DB-1", snap("productive", 1), start + timedelta(seconds=1)),
            ("DB-1", snap("standby", 8), start + timedelta(seconds=2)),
            ("DB-1", snap("productive", 0), start + timedelta(seconds=3)),
        ]
        path = tmp_path / "line-1.jsonl"
        content = b"".join(encode(r) for r in left)
        for _ in range(2):  # the second time: as if killed between the commit and the truncation
            path.write_bytes(content)
            reporter = EquipmentReporter(equipment, Spool(path, 1_000_000))
            await reporter.open()
            try:
                assert reporter.backlog == 3
                assert await reporter.write_spooled() == 3
                assert reporter.backlog == 0 and path.stat().st_size == 0
                assert reporter.last_spooled_at == start + timedelta(seconds=3)
            finally:
                await reporter.close()
        changes = await equipment.changes("DB-1", start, start + timedelta(seconds=10))
        assert [(c.e10, c.at) for c in changes if c.at > start] == [
            (s.e10, when) for _, s, when in left
        ]
        tool = await equipment.tool("DB-1")
        assert tool.snapshot.e10 == "productive" and tool.updated_at == left[-1][2]
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite_url", pytest.param("postgres_url", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(request.param))


class FullDisk(Spool):
    """A spool on a disk that is full: every append fails as the file system says."""

    def append(self, reports: Sequence[Report]) -> list[Report]:
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("spool_kind", ["smaller than one record", "disk full"])
async def test_with_no_room_on_disk_each_tools_latest_state_waits_in_memory(
    recorder: Recorder, tmp_path: Path, spool_kind: str
) -> None:
    path = tmp_path / "line-1.jsonl"
    spool = Spool(path, 10) if spool_kind != "disk full" else FullDisk(path, 1_000_000)
    async with started(recorder, spool, batch_s=0.005) as (reporter, _):
        recorder.available = False
        with capture_logs() as logs:
            for i in range(6):
                reporter.submit("DB-1", snap("productive" if i % 2 else "standby", i), at(i))
                await reporter.flush()
            await wait_until(lambda: recorder.refused >= 5, timeout_s=5, what="a few tries")
        assert reporter.backlog == 1 and "5 changes lost" in reporter.describe()
        told = [e for e in logs if e["event"].startswith(("spool full", "cannot write the spool"))]
        assert len(told) == 1, "said once, not at every try"
        recorder.available = True
        await wait_until(lambda: reporter.backlog == 0, timeout_s=5, what="the state written")
        await reporter.flush()
        assert [(t, s.sites_done) for t, s, _ in recorder.written()] == [("DB-1", 5)]
