"""A stop cancels the controller's tasks and waits for them; a task that goes on after its
cancellation (lost in Python 3.11 by ``asyncio.wait_for`` when what it waits for ends at that
moment, as pymodbus's connect does when a tool refuses the connection) is cancelled again,
so the stop does not wait for its whole timeout."""

from __future__ import annotations

import asyncio

from pkgline.controller.line import _cancelled

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
