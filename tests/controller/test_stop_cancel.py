"""A stop cancels the controller's tasks and waits for them; a task that goes on after its
cancellation (lost in Python 3.11 by ``asyncio.wait_for`` when what it waits for ends at that
moment, as pymodbus's connect does when a tool refuses the connection) is cancelled again,
so the stop does not wait for its whole timeout. A stop that fails after a part of the
controller failed does not hide what ended it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from structlog.testing import capture_logs

from drivers.factory import DriverFactory
from mes.domain.equipment import ControllerRecord
from mes.equipment import EquipmentService
from pkgline.controller.line import LineController, _cancelled
from tests.controller.conftest import Stack, line_config, simulated, wait_until

GUARD_S = 30.0


async def test_a_task_that_loses_its_cancellation_is_cancelled_again() -> None:
    lost = 0

    async def swallows_the_first() -> None:
        nonlocal lost
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            lost += 1  # as wait_for's race does: the cancellation is gone, the task goes on
        await asyncio.sleep(3600)

    task = asyncio.ensure_future(swallows_the_first())
    plain = asyncio.ensure_future(asyncio.sleep(3600))
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await _cancelled([task, plain], loop.time() + GUARD_S)
    assert task.cancelled() and plain.cancelled() and lost == 1
    assert loop.time() - started < GUARD_S / 2  # not the whole deadline


async def test_what_does_not_end_by_the_deadline_is_reported_and_an_error_is_retrieved() -> None:
    give_up = False

    async def ignores_every_cancellation() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if give_up:
                    raise

    async def fails() -> None:
        raise RuntimeError("a part failed")

    stubborn = asyncio.ensure_future(ignores_every_cancellation())
    failed = asyncio.ensure_future(fails())
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    assert not await _cancelled([stubborn, failed], loop.time() + 0.3)
    assert isinstance(failed.exception(), RuntimeError)
    give_up = True  # the test's own end: nothing left behind
    stubborn.cancel()
    await asyncio.gather(stubborn, return_exceptions=True)
    assert stubborn.cancelled()


class _BreakingEquipment:
    """The equipment service, its heartbeat failing once ``broken`` (a part of the controller
    fails) and the stop's record failing after it."""

    def __init__(self, real: EquipmentService):
        self._real = real
        self.broken = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    async def heartbeat(self, record: ControllerRecord, **kwargs: Any) -> Any:
        if self.broken:
            raise RuntimeError("the heartbeat failed")
        return await self._real.heartbeat(record, **kwargs)

    async def mark_unmonitored(self, *args: Any, **kwargs: Any) -> Any:
        if self.broken:
            raise RuntimeError("recording the stop failed")
        return await self._real.mark_unmonitored(*args, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("database", ["migrated_sqlite_url"], indirect=True)
async def test_a_stop_that_fails_after_a_part_failed_does_not_hide_what_ended_the_controller(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the probe: the error that ended the controller was replaced by the one its
    stop met recording itself (the same database error, raised again), and the log said
    nothing of the first."""
    monkeypatch.setattr("pkgline.controller.line.HEARTBEAT_S", 0.1)
    config = line_config(tools=["DB-1"])
    equipment = _BreakingEquipment(stack.equipment)
    drivers = DriverFactory()
    try:
        async with simulated(config):
            controller = LineController(
                config,
                stack.lots,
                equipment,  # type: ignore[arg-type]
                drivers.create_all(config.tools),
            )
            task = asyncio.create_task(controller.run(), name="controller")
            await wait_until(
                lambda: controller.ready.is_set() or task.done(), timeout_s=60, what="ready"
            )
            assert controller.ready.is_set(), task
            with capture_logs() as logs:
                equipment.broken = True
                with pytest.raises(RuntimeError, match="the heartbeat failed"):
                    await asyncio.wait_for(task, GUARD_S)
    finally:
        await drivers.aclose()
    failed_too = [e for e in logs if e["event"] == "the stop failed too"]
    assert [e["error"] for e in failed_too] == ["recording the stop failed"]
