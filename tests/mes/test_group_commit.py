"""Group commit on SQLite: works written while a group is being written go together as the
next group, one transaction with a savepoint each. Each is still all or nothing, each caller
gets its own answer, and nobody hears "written" before the group's COMMIT."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from typing import Any

import pytest

from flows import FlowLibrary
from mes.adapters import driver
from mes.adapters.driver import AiosqliteSession, DatabaseUnavailable, Outcome, Plan, _drive
from mes.domain import commands as cmd
from mes.domain.errors import LotExists, OperationNotAllowed, StepNotAllowed
from mes.domain.model import LotState, Operation
from mes.ports import UnitOfWorkFactory
from mes.service import LotService

pytestmark = pytest.mark.parametrize("store", ["sqlite"], indirect=True)


@pytest.fixture
def groups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every group written."""
    sizes: list[int] = []
    run_each = AiosqliteSession.run_each

    async def counted(self: AiosqliteSession, plans: Sequence[Plan[Any]]) -> list[Outcome]:
        sizes.append(len(plans))
        return await run_each(self, plans)

    monkeypatch.setattr(AiosqliteSession, "run_each", counted)
    return sizes


async def test_writes_made_together_go_in_one_group_and_a_refusal_writes_nothing_of_its_own(
    store: UnitOfWorkFactory, library: FlowLibrary, groups: list[int]
) -> None:
    lots = LotService(store, library)
    await lots.start(cmd.StartLot("L0", "stiffener-bga", "op"))
    groups.clear()
    results = await asyncio.gather(
        lots.start(cmd.StartLot("L1", "stiffener-bga", "op")),
        lots.start(cmd.StartLot("L0", "stiffener-bga", "op")),  # exists: refused
        lots.track_in(cmd.TrackIn("L0", "WIRE_BOND", "op")),  # not its next step: refused
        lots.start(cmd.StartLot("L2", "stiffener-bga", "op")),
        return_exceptions=True,
    )
    assert isinstance(results[1], LotExists)
    assert isinstance(results[2], StepNotAllowed)
    assert groups == [4]  # all four were waiting when the writer's turn came
    for lot_id in ("L1", "L2"):
        report = await lots.report(lot_id)
        assert [e.operation for e in report.history] == [Operation.START]
    assert [e.operation for e in (await lots.report("L0")).history] == [Operation.START]


async def test_works_on_one_lot_in_one_group_see_each_other(
    store: UnitOfWorkFactory, library: FlowLibrary, groups: list[int]
) -> None:
    lots = LotService(store, library)
    await lots.start(cmd.StartLot("L1", "stiffener-bga", "op"))
    results = await asyncio.gather(
        lots.hold(cmd.HoldLot("L1", "op", "first")),
        lots.track_in(cmd.TrackIn("L1", "SUBSTRATE_LOAD", "op")),  # held: refused
        lots.release(cmd.ReleaseLot("L1", "op", "checked")),
        lots.track_in(cmd.TrackIn("L1", "SUBSTRATE_LOAD", "op")),
        return_exceptions=True,
    )
    assert isinstance(results[1], OperationNotAllowed), results
    assert not any(isinstance(r, BaseException) for r in (results[0], results[2], results[3]))
    assert groups == [1, 4]
    report = await lots.report("L1")
    assert [e.operation for e in report.history] == [
        Operation.START,
        Operation.HOLD,
        Operation.RELEASE,
        Operation.TRACK_IN,
    ]
    assert report.lot.state is LotState.RUNNING


async def test_a_caller_cancelled_before_its_group_is_written_writes_nothing(
    store: UnitOfWorkFactory, library: FlowLibrary
) -> None:
    lots = LotService(store, library)
    first = asyncio.create_task(lots.start(cmd.StartLot("L1", "stiffener-bga", "op")))
    await asyncio.sleep(0)  # its group is being written
    second = asyncio.create_task(lots.start(cmd.StartLot("L2", "stiffener-bga", "op")))
    await asyncio.sleep(0)  # waiting for the next group
    second.cancel()
    await first
    with pytest.raises(asyncio.CancelledError):
        await second
    assert [lot.id for lot in await lots.find()] == ["L1"]


async def test_a_database_failure_fails_every_work_of_the_group_and_writes_none(
    store: UnitOfWorkFactory,
    library: FlowLibrary,
    groups: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lots = LotService(store, library)
    await lots.start(cmd.StartLot("L0", "stiffener-bga", "op"))
    groups.clear()
    real_drive = _drive

    def disk_full_after_the_first(db: sqlite3.Connection, plan: Plan[Any]) -> Any:
        if db.execute("SELECT count(*) FROM lots").fetchone()[0] > 1:
            full = sqlite3.OperationalError("database or disk is full")
            full.sqlite_errorcode = sqlite3.SQLITE_FULL  # as SQLite's own error carries it
            raise full
        return real_drive(db, plan)

    monkeypatch.setattr(driver, "_drive", disk_full_after_the_first)
    failures = await asyncio.gather(
        lots.start(cmd.StartLot("L1", "stiffener-bga", "op")),  # written, then rolled back
        lots.track_in(cmd.TrackIn("L0", "SUBSTRATE_LOAD", "op")),
        lots.start(cmd.StartLot("L2", "stiffener-bga", "op")),
        return_exceptions=True,
    )
    assert groups == [3]
    assert all(isinstance(f, DatabaseUnavailable) for f in failures), failures
    assert len({id(f) for f in failures}) == 3  # each caller its own exception
    assert "disk is full" in str(failures[0])
    monkeypatch.undo()
    assert [lot.id for lot in await lots.find()] == ["L0"]
    assert (await lots.get("L0")).state is LotState.WAITING
    # the connection went back without a transaction left open: the next write goes through
    await lots.start(cmd.StartLot("L3", "stiffener-bga", "op"))
    assert sorted(lot.id for lot in await lots.find()) == ["L0", "L3"]
