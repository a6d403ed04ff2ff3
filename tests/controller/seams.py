"""Faults injected at the seams of a line controller: its tools' real drivers and its real lot
service, wrapped so that one method of one tool fails or answers wrong."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog

from drivers.factory import DriverFactory
from drivers.interface import ToolDriver
from mes.service import LotService
from pkgline.config import LineConfig
from pkgline.controller.line import LineController
from tests.controller.conftest import Stack


class InjectedFault(Exception):
    """A failure the runner does not foresee."""


class FailingOnce:
    """``target`` with its method ``name`` failing once, on its first call made for ``tool_id`` (the
    runner works under its tool's logging context). ``events``: the subscription fails after
    its second event."""

    def __init__(self, target: Any, name: str, tool_id: str):
        self._target = target
        self._tool_id = tool_id
        self._name = name
        self.fired = False

    def _armed(self) -> bool:
        return (
            not self.fired
            and structlog.contextvars.get_contextvars().get("tool_id") == self._tool_id
        )

    def __getattr__(self, attr: str) -> Any:
        real = getattr(self._target, attr)
        if attr != self._name:
            return real
        if attr == "events":
            return lambda: self._events(real())
        if asyncio.iscoroutinefunction(real):

            async def failing_async(*args: Any, **kwargs: Any) -> Any:
                if self._armed():
                    self.fired = True
                    raise InjectedFault(f"injected fault in {attr}")
                return await real(*args, **kwargs)

            return failing_async

        def failing(*args: Any, **kwargs: Any) -> Any:
            if self._armed():
                self.fired = True
                raise InjectedFault(f"injected fault in {attr}")
            return real(*args, **kwargs)

        return failing

    async def _events(self, events: AsyncIterator[Any]) -> AsyncIterator[Any]:
        seen = 0
        async for event in events:
            yield event
            seen += 1
            if seen == 2 and not self.fired:
                self.fired = True
                raise InjectedFault("injected fault in events")


class ResultsCorruptedOnce:
    """A tool's driver whose first reading of results gives ``corrupt(results)``: a reading
    corrupted in transit (the tool itself holds the true results)."""

    def __init__(self, driver: ToolDriver, corrupt: Callable[[Any], Any]):
        self._driver = driver
        self._corrupt = corrupt
        self.fired = False

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._driver, attr)

    async def results(self) -> Any:
        results = await self._driver.results()
        if results is not None and not self.fired:
            self.fired = True
            return self._corrupt(results)
        return results


Wrap = Callable[[Any], Any]


@contextlib.asynccontextmanager
async def controller_with(
    config: LineConfig,
    stack: Stack,
    tool_id: str,
    fault: tuple[str, str] | None = None,
    *,
    driver: Wrap | None = None,
) -> AsyncIterator[Any]:
    """A line controller whose ``tool_id``'s driver or lot service fails once where ``fault``
    says (``("driver" | "lots", method)``: :class:`FailingOnce`), or whose driver of that
    tool is wrapped by ``driver``. Yields the wrapper (None without one); fails if the
    controller ends before the block does."""
    factory = DriverFactory()
    drivers: list[ToolDriver] = list(factory.create_all(config.tools))
    lots: LotService = stack.lots
    index = next(i for i, d in enumerate(drivers) if d.tool_id == tool_id)
    wrapper: Any = None
    if fault is not None:
        where, method = fault
        if where == "driver":
            wrapper = drivers[index] = FailingOnce(drivers[index], method, tool_id)  # type: ignore[assignment]
        else:
            wrapper = lots = FailingOnce(stack.lots, method, tool_id)  # type: ignore[assignment]
    elif driver is not None:
        wrapper = drivers[index] = driver(drivers[index])
    controller = LineController(config, lots, stack.equipment, drivers)
    task = asyncio.create_task(controller.run(), name="controller")
    try:
        ready = asyncio.create_task(controller.ready.wait())
        done, _ = await asyncio.wait([ready, task], timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            ready.cancel()
            task.result()
        assert ready in done, "the controller did not get ready"
        yield wrapper
        assert not task.done(), "the controller ended"
    finally:
        controller.request_stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
        await factory.aclose()
