"""Tool states are written in batches, in order, and never dropped."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import cast

import pytest

from mes.adapters.driver import DatabaseUnavailable
from mes.domain.equipment import ToolSnapshot
from mes.equipment import EquipmentService
from pkgline.controller.reporter import EquipmentReporter

Report = tuple[str, ToolSnapshot, datetime]


class Recorder:
    """Stands in for equipment tracking: keeps every batch written."""

    def __init__(self, failures: int = 0) -> None:
        self.batches: list[list[Report]] = []
        self.failures = failures

    async def report_many(self, batch: Sequence[Report]) -> list[str]:
        await asyncio.sleep(0.001)
        if self.failures:
            self.failures -= 1
            raise DatabaseUnavailable("database is locked")
        self.batches.append(list(batch))
        return []


def snap(e10: str, sites: int = 0) -> ToolSnapshot:
    return ToolSnapshot(connected=True, e10=e10, sites_done=sites)


async def running(reporter: EquipmentReporter) -> asyncio.Task[None]:
    task = asyncio.create_task(reporter.run())
    await asyncio.sleep(0)
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_changes_within_the_window_go_in_one_transaction_in_order() -> None:
    recorder = Recorder()
    reporter = EquipmentReporter(cast(EquipmentService, recorder), batch_s=0.05)
    task = await running(reporter)
    try:
        now = datetime.now(UTC)
        for i, e10 in enumerate(["productive", "standby", "productive", "standby"]):
            reporter.submit("DB-1", snap(e10, i), now)
            await asyncio.sleep(0.005)
        assert recorder.batches == []  # still gathering
        await asyncio.sleep(0.1)
        assert len(recorder.batches) == 1
        assert [s.sites_done for _, s, _ in recorder.batches[0]] == [0, 1, 2, 3]
    finally:
        await stop(task)


async def test_flush_writes_at_once_without_waiting_for_the_window() -> None:
    recorder = Recorder()
    reporter = EquipmentReporter(cast(EquipmentService, recorder), batch_s=30.0)
    task = await running(reporter)
    try:
        reporter.submit("MOLD-1", snap("standby"), datetime.now(UTC))
        async with asyncio.timeout(2):
            await reporter.flush()
        assert [t for batch in recorder.batches for t, _, _ in batch] == ["MOLD-1"]
        await reporter.flush()  # nothing pending: returns at once
    finally:
        await stop(task)


async def test_a_database_that_does_not_answer_loses_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("pkgline.controller.reporter.RETRY_S", 0.01)
    recorder = Recorder(failures=2)
    reporter = EquipmentReporter(cast(EquipmentService, recorder), batch_s=0.01)
    task = await running(reporter)
    try:
        now = datetime.now(UTC)
        reporter.submit("DB-1", snap("productive"), now)
        reporter.submit("DB-2", snap("standby"), now)
        async with asyncio.timeout(2):
            await reporter.flush()
        written = [t for batch in recorder.batches for t, _, _ in batch]
        assert written == ["DB-1", "DB-2"]
    finally:
        await stop(task)
