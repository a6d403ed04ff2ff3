"""The line controller through a database outage (PostgreSQL behind a relay the test cuts):
the job running on a tool is followed to its end and its results stay on the tool, tool
state changes are spooled on disk, nothing new starts; when the database is back, they are
written with their observed times, in order, before new work, the job is recorded once and
the lot moves on, without a hold.
The spool outlives a SIGKILL of ``pkgline serve``: the next start writes it first."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from mes.adapters.database import create_engine
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain import commands as cmd
from mes.domain.model import JobStatus, LotState, Operation
from mes.equipment import EquipmentService
from mes.service import LotService
from pkgline.bootstrap import flow_library
from pkgline.config import LineConfig
from simulators.line import SimulatedLine
from tests.controller.conftest import Stack, line_config, running_controller, simulated, wait_until
from tests.controller.test_daemon import _spawn, _stop, _wait_exit

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

LOT = "S1"
NEW_LOT = "S2"
TOOL = "DB-1"
SLOW_DIE_BONDER = {TOOL: 0.3}  # DIE_ATTACH: about 1.4 s per 4x8 carrier
PG_PORT = 5432


class DatabaseRelay:
    """A TCP relay on 127.0.0.1 in front of PostgreSQL. :meth:`cut` drops every connection
    and refuses new ones (the database is unreachable); :meth:`restore` listens again on
    the same port."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def url(self, database_url: str) -> str:
        return database_url.replace(f"127.0.0.1:{PG_PORT}/", f"127.0.0.1:{self.port}/")

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(client_w)
        try:
            try:
                server_r, server_w = await asyncio.open_connection("127.0.0.1", PG_PORT)
            except OSError:
                return
            self._writers.add(server_w)
            try:
                await asyncio.gather(_pipe(client_r, server_w), _pipe(server_r, client_w))
            finally:
                server_w.transport.abort()
                self._writers.discard(server_w)
        finally:
            client_w.transport.abort()
            self._writers.discard(client_w)
            self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.transport.abort()


@contextlib.asynccontextmanager
async def relay() -> AsyncIterator[DatabaseRelay]:
    found = DatabaseRelay()
    await found.restore()
    try:
        yield found
    finally:
        await found.cut()


@pytest.fixture
async def stack(postgres_url: str) -> AsyncIterator[Stack]:
    """The test's own view of the database: straight to PostgreSQL, never through the relay."""
    from mes.adapters.migrate import upgrade

    engine = create_engine(postgres_url, pool_size=5)
    try:
        await upgrade(engine)
        factory = SqlUnitOfWorkFactory(engine)
        yield Stack(LotService(factory, flow_library()), EquipmentService(factory), postgres_url)
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def through(stack: Stack, url: str) -> AsyncIterator[Stack]:
    """The controller's view: the same database at ``url`` (the relay)."""
    engine = create_engine(url, pool_size=10)
    try:
        factory = SqlUnitOfWorkFactory(engine)
        yield Stack(LotService(factory, flow_library()), EquipmentService(factory), url)
    finally:
        await engine.dispose()


async def _job_executing(line: SimulatedLine, stack: Stack) -> str:
    """A job of the lot executes on the tool and the controller has written it down."""
    found: list[str] = []

    async def executing() -> bool:
        status = line.tool(TOOL).status
        if status.state.name != "EXECUTING" or status.job_id is None:
            return False
        if await stack.lots.job(status.job_id) is None:
            return False
        found.append(status.job_id)
        return True

    await wait_until(executing, timeout_s=60, every_s=0.05, what=f"a job executing on {TOOL}")
    return found[-1]


def _completed_with_results(line: SimulatedLine, job_id: str) -> bool:
    status = line.tool(TOOL).status
    return status.results_waiting and status.job_id == job_id


def _spooled(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def _e10_changes(records: list[dict[str, object]]) -> list[tuple[str, datetime]]:
    """The E10 changes a tool's spooled records make (each after the first that differs from
    the one before it)."""
    out: list[tuple[str, datetime]] = []
    last: str | None = None
    for record in records:
        state = record["state"]
        assert isinstance(state, dict)
        if last is not None and state["e10"] != last:
            out.append((state["e10"], datetime.fromisoformat(str(record["at"]))))
        last = state["e10"]
    return out


async def _check_afterwards(
    stack: Stack, job_id: str, spooled: list[dict[str, object]], outage_start: datetime
) -> None:
    """The spooled changes are on record with their observed times, in order, once each; the
    job was recorded once; the lot went on without a hold, one track-in and -out per step."""
    tool_records = [r for r in spooled if r["tool"] == TOOL]
    expected = _e10_changes(tool_records)
    assert expected, "the tool changed state during the outage"
    last_at = datetime.fromisoformat(str(tool_records[-1]["at"]))
    changes = await stack.equipment.changes(TOOL, outage_start, last_at)
    recorded = [(c.e10, c.at) for c in changes]
    for change in expected:
        assert recorded.count(change) == 1, (change, recorded)
    assert [at for _, at in recorded] == sorted({at for _, at in recorded}), "in order, once"
    job = await stack.lots.job(job_id)
    assert job is not None and job.status is JobStatus.RECORDED
    report = await stack.lots.report(LOT)
    assert report.lot.state is LotState.COMPLETED, report.lot.hold
    operations = Counter(e.operation for e in report.history)
    assert operations[Operation.HOLD] == 0
    assert operations[Operation.TRACK_OUT] == operations[Operation.TRACK_IN] == len(report.lot.path)
    jobs = [e.data["job"] for e in report.history if e.operation is Operation.JOB_RECORD]
    assert len(jobs) == len(set(jobs)) and job_id in jobs


async def _lot_completed(stack: Stack, lot_id: str = LOT) -> bool:
    return (await stack.lots.get(lot_id)).state is LotState.COMPLETED


def _config(tmp_path: Path) -> LineConfig:
    config = line_config(slow=SLOW_DIE_BONDER)
    controller = config.controller.model_copy(update={"spool_dir": tmp_path / "spool"})
    return config.model_copy(update={"controller": controller})


@pytest.mark.timeout(240)
async def test_a_job_running_when_the_database_goes_away_is_followed_and_recorded_when_it_is_back(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the runner checks that the lot still runs here several times while the job runs
    monkeypatch.setattr("pkgline.controller.runner_steps.LOT_CHECK_S", 0.2)
    config = _config(tmp_path)
    spool = tmp_path / "spool" / f"{config.name}.jsonl"
    async with (
        relay() as db,
        through(stack, db.url(stack.url)) as controllers_view,
        simulated(config) as line,
        running_controller(config, controllers_view) as ctl,
    ):
        await stack.lots.start(cmd.StartLot(LOT, "stiffener-bga", "planner", carriers=2))
        job_id = await _job_executing(line, stack)
        outage_start = (await stack.equipment.tool(TOOL)).updated_at
        with capture_logs() as during:
            await db.cut()
            await wait_until(
                lambda: _completed_with_results(line, job_id),
                timeout_s=30,
                what="the job completed on the tool",
            )
            await wait_until(
                lambda: any(
                    r["tool"] == TOOL and r["state"]["process_state"] == "COMPLETE"  # type: ignore[index]
                    for r in _spooled(spool)
                ),
                timeout_s=10,
                what="the completion spooled",
            )
            assert "spooled" in ctl.status_line() and "database unavailable" in ctl.status_line()
            assert (await stack.lots.job(job_id)).status is JobStatus.STARTED  # type: ignore[union-attr]
            assert _completed_with_results(line, job_id), "not acknowledged: not recorded"
            assert (await stack.lots.get(LOT)).hold is None
        warned = [e["event"] for e in during if e["log_level"] in ("warning", "error")]
        assert warned == [  # the outage on its edge, not one line per retry of every part
            "database unavailable: tool states are spooled, nothing new is dispatched"
        ]
        # new work, which must wait for the database and then for what waited in the spool
        await stack.lots.start(cmd.StartLot(NEW_LOT, "stiffener-bga", "planner", carriers=1))
        spooled = _spooled(spool)
        with capture_logs() as logs:
            await db.restore()
            await wait_until(lambda: _lot_completed(stack), timeout_s=120, what="the lot done")
            await wait_until(
                lambda: _lot_completed(stack, NEW_LOT), timeout_s=120, what="the new lot done"
            )
        assert spool.stat().st_size == 0 and "spooled" not in ctl.status_line()
    await _check_afterwards(stack, job_id, spooled, outage_start)
    events = [(e["event"], e.get("lot")) for e in logs]
    written = events.index(("spooled tool states written", None))
    new_work = min(i for i, (_, lot) in enumerate(events) if lot == NEW_LOT)
    assert written < new_work, events[: new_work + 1]


@pytest.mark.timeout(300)
async def test_the_spool_outlives_a_sigkill_of_serve_and_is_written_first_at_the_next_start(
    stack: Stack, tmp_path: Path
) -> None:
    config = line_config(slow=SLOW_DIE_BONDER)
    state = tmp_path / "var-lib-pkgline"  # what systemd's StateDirectory= gives
    spool = state / "spool" / f"{config.name}.jsonl"
    async with relay() as db, simulated(config) as line:
        url = db.url(stack.url)
        await stack.lots.start(cmd.StartLot(LOT, "stiffener-bga", "planner", carriers=2))
        proc = _spawn(config, tmp_path, url, STATE_DIRECTORY=str(state))
        try:
            job_id = await _job_executing(line, stack)
            outage_start = (await stack.equipment.tool(TOOL)).updated_at
            await db.cut()
            await wait_until(
                lambda: any(
                    r["tool"] == TOOL and r["state"]["process_state"] == "COMPLETE"  # type: ignore[index]
                    for r in _spooled(spool)
                ),
                timeout_s=40,
                what="the job's completion spooled",
            )
        finally:
            proc.kill()  # SIGKILL: the spool is all that is left of the outage
            await _wait_exit(proc, 10)
        spooled = _spooled(spool)
        assert _completed_with_results(line, job_id), "not acknowledged: not recorded"
        assert (await stack.lots.job(job_id)).status is JobStatus.STARTED  # type: ignore[union-attr]
        await db.restore()
        proc = _spawn(config, tmp_path, url, STATE_DIRECTORY=str(state))
        try:
            await wait_until(lambda: _lot_completed(stack), timeout_s=120, what="the lot done")
        finally:
            assert await _stop(proc) == 0
        assert spool.stat().st_size == 0
        assert (state / "spool").stat().st_mode & 0o777 == 0o700
    log = (tmp_path / f"{config.name}.log").read_text()
    assert "spool: tool states left by the last run" in log and "Traceback" not in log
    await _check_afterwards(stack, job_id, spooled, outage_start)
