"""Two writers moving the same lot at once: exactly one succeeds, the other gets a clear
refusal and changes nothing. On PostgreSQL with real concurrent connections and the worst
interleaving forced (both read the lot before either writes); on SQLite, where writers take
the lock up front, the second waits and then sees the lot already moved."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from types import TracebackType
from typing import TypeVar

import pytest

from flows import FlowLibrary
from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.sql import SqlUnitOfWork, SqlUnitOfWorkFactory
from mes.domain import commands as cmd
from mes.domain.errors import ConcurrentUpdate, OperationNotAllowed
from mes.domain.model import LotState, Operation
from mes.ports import EquipmentRepository, GetLot, LotRepository, UnitOfWork, Work, get_lot
from mes.service import LotService
from tests.mes.racing import resumed

T = TypeVar("T")


class _BarrierUnitOfWork:
    def __init__(self, inner: SqlUnitOfWork, barrier: asyncio.Barrier):
        self._inner = inner
        self._barrier = barrier

    @property
    def lots(self) -> LotRepository:
        return self._inner.lots

    @property
    def equipment(self) -> EquipmentRepository:
        return self._inner.equipment

    async def __aenter__(self) -> UnitOfWork:
        await self._inner.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._inner.__aexit__(et, e, tb)

    async def commit(self) -> None:
        await self._inner.commit()

    async def run(self, work: Work[T], *, commit: bool = False) -> T:
        """The work's first read (the lot) is done alone; then it waits until every writer
        has read, and goes on."""
        first = next(work)
        assert isinstance(first, GetLot), first
        lot = await self._inner.run(get_lot(first.lot_id))
        await asyncio.wait_for(self._barrier.wait(), timeout=10)
        return await self._inner.run(resumed(work, lot), commit=commit)


class _BarrierFactory:
    def __init__(self, inner: SqlUnitOfWorkFactory, barrier: asyncio.Barrier):
        self._inner = inner
        self._barrier = barrier

    def __call__(self, *, readonly: bool = False) -> UnitOfWork:
        return _BarrierUnitOfWork(self._inner(readonly=readonly), self._barrier)

    async def write(self, work: Work[T]) -> T:
        async with self() as uow:
            return await uow.run(work, commit=True)


@pytest.mark.postgres
async def test_two_connections_moving_one_lot_at_once_one_wins_one_gets_a_conflict(
    postgres_url: str, library: FlowLibrary
) -> None:
    engines = [create_engine(postgres_url), create_engine(postgres_url)]
    try:
        await upgrade(engines[0])
        plain = LotService(SqlUnitOfWorkFactory(engines[0]), library)
        await plain.start(cmd.StartLot("L1", "stiffener-bga", "op"))
        barrier = asyncio.Barrier(2)

        def racing(engine_index: int) -> LotService:
            return LotService(
                _BarrierFactory(SqlUnitOfWorkFactory(engines[engine_index]), barrier), library
            )

        results = await asyncio.gather(
            racing(0).track_in(cmd.TrackIn("L1", "SUBSTRATE_LOAD", "alice")),
            racing(1).track_in(cmd.TrackIn("L1", "SUBSTRATE_LOAD", "bob")),
            return_exceptions=True,
        )
        wins = [r for r in results if not isinstance(r, BaseException)]
        losses = [r for r in results if isinstance(r, BaseException)]
        assert len(wins) == 1 and len(losses) == 1
        assert isinstance(losses[0], ConcurrentUpdate)
        assert "changed by someone else" in losses[0].message
        report = await plain.report("L1")
        assert [e.operation for e in report.history] == [Operation.START, Operation.TRACK_IN]
        assert report.lot.running is not None
        assert report.lot.running.user == wins[0].lot.running.user  # type: ignore[union-attr]
    finally:
        for engine in engines:
            await engine.dispose()


async def test_on_sqlite_the_second_writer_waits_and_then_sees_the_lot_moved(
    sqlite_url: str, library: FlowLibrary
) -> None:
    engines = [create_engine(sqlite_url), create_engine(sqlite_url)]
    try:
        await upgrade(engines[0])
        services = [LotService(SqlUnitOfWorkFactory(e), library) for e in engines]
        await services[0].start(cmd.StartLot("L1", "stiffener-bga", "op"))
        results = await asyncio.gather(
            services[0].track_in(cmd.TrackIn("L1", "SUBSTRATE_LOAD", "alice")),
            services[1].track_in(cmd.TrackIn("L1", "SUBSTRATE_LOAD", "bob")),
            return_exceptions=True,
        )
        losses = [r for r in results if isinstance(r, BaseException)]
        assert len(losses) == 1 and isinstance(losses[0], OperationNotAllowed), losses
        history = (await services[1].report("L1")).history
        assert [e.operation for e in history] == [Operation.START, Operation.TRACK_IN]
    finally:
        for engine in engines:
            await engine.dispose()


def _cli(db: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pkgline", *args],
        env={**os.environ, "PKGLINE_DB": db},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize(
    "database", ["sqlite_url", pytest.param("postgres_url", marks=pytest.mark.postgres)]
)
async def test_two_processes_tracking_in_the_same_lot_exactly_one_succeeds(
    request: pytest.FixtureRequest, database: str, library: FlowLibrary
) -> None:
    url = request.getfixturevalue(database)
    engine = create_engine(url)
    try:
        await upgrade(engine)
        service = LotService(SqlUnitOfWorkFactory(engine), library)
        await service.start(cmd.StartLot("L1", "stiffener-bga", "op"))
        procs = [
            _cli(url, "lot", "track-in", "L1", "--step", "SUBSTRATE_LOAD", "--user", who)
            for who in ("alice", "bob")
        ]
        codes = []
        for proc in procs:
            _, _err = await asyncio.to_thread(proc.communicate, timeout=60)
            codes.append(proc.returncode)
        assert sorted(codes) in ([0, 1], [0, 3]), codes
        lot = await service.get("L1")
        assert lot.state is LotState.RUNNING
        history = (await service.report("L1")).history
        assert [e.operation for e in history].count(Operation.TRACK_IN) == 1
    finally:
        await engine.dispose()
