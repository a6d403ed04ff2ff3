"""What the daemon does once its tools have answered and before it says READY: the objects
made while starting are frozen out of the garbage collector's full collections (a pause of
the event loop that grows with them)."""

from __future__ import annotations

import gc
import weakref

import pytest

from drivers.model import ProcessState
from pkgline.controller.line import LineController, freeze_startup_objects
from tests.controller.conftest import Stack, line_config, running_controller, simulated


class _Node:
    def __init__(self) -> None:
        self.me = self


def test_freezing_keeps_no_garbage_and_leaves_later_objects_to_the_collector() -> None:
    garbage = _Node()  # a reference cycle: only the cyclic collector frees it
    gone = weakref.ref(garbage)
    del garbage
    try:
        freeze_startup_objects()
        assert gone() is None, "garbage made before the freeze was kept for good"
        assert gc.get_freeze_count() > 0
        later = _Node()
        freed = weakref.ref(later)
        del later
        gc.collect()
        assert freed() is None, "an object made after the freeze is still collected"
    finally:
        gc.unfreeze()


@pytest.mark.slow
async def test_the_hook_before_ready_runs_once_every_tool_has_answered(stack: Stack) -> None:
    config = line_config(tools=["DB-1", "MOLD-1"])
    seen: list[tuple[bool, list[ProcessState | None]]] = []

    def before_ready(controller: LineController) -> None:
        states = [r.status.state if r.status else None for r in controller.runners.values()]
        seen.append((controller.ready.is_set(), states))

    async with (
        simulated(config),
        running_controller(config, stack, before_ready=before_ready) as controller,
    ):
        assert controller.ready.is_set()
    assert len(seen) == 1
    ready, states = seen[0]
    assert not ready and None not in states, "called before READY, every tool heard"
