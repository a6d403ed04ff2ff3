"""Alarm resets operators ask for (``pkgline tool reset``), carried out by the line controller.

The controller owns the connections to its tools, so an operator's reset reaches a tool
through it: the CLI records the request in equipment tracking (who, why, until when), and
this desk, one task of the controller, reads the open requests of its line every
``RESET_POLL_S`` (one indexed read; no write while there is nothing to do), takes each one
(so it is carried out once, and not after it expired), asks the tool through its driver and
records what came of it::

    done         the tool reset its alarm (its process state after: READY or IDLE)
    refused      the tool did not allow it: the tool's own reason (not in ALARM, the
                 alarm's cause is still there, ...)
    unreachable  the tool does not answer, or this controller does not run it: nothing reset

What the alarm did to the lot that was on the tool stays as it was (the runner held it).
Once the tool is out of alarm its runner sees it and wakes a dispatch pass, which starts a
waiting lot on it if it is in auto.

Why a poll of its own and not the dispatch passes, which is where an operator's switch to
manual or auto is read: a pass reads the tools' dispatch modes only when some tool is idle,
and a tool in alarm never is; and an operator waits at the command for the answer, so it
must come within a second, not within a dispatch interval. Between controller and CLI there
is only the database (SQLite has no notifications), so the desk reads; 0.5 s keeps the wait
short for one cheap read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import structlog

from drivers.errors import CommandRefused, DriverError
from drivers.interface import ToolDriver
from mes.adapters.driver import DatabaseUnavailable
from mes.domain.equipment import ResetRequest, ResetStatus
from mes.domain.errors import LotTrackerError
from mes.equipment import EquipmentService
from pkgline.controller.outage import DatabaseOutage
from pkgline.controller.runner import ToolRunner

log = structlog.get_logger("pkgline.controller")

RESET_POLL_S = 0.5
"""How often the controller looks for alarm resets operators asked for."""


class ResetDesk:
    """Carries out the alarm resets asked for the tools of one line controller."""

    def __init__(
        self,
        line: str,
        equipment: EquipmentService,
        runners: Mapping[str, ToolRunner],
        drivers: Mapping[str, ToolDriver],
        *,
        outage: DatabaseOutage | None = None,
        poll_s: float = RESET_POLL_S,
    ):
        self._line = line
        self._equipment = equipment
        self._runners = runners
        self._drivers = drivers
        self._outage = outage or DatabaseOutage()
        self._poll_s = poll_s

    async def run(self) -> None:
        """Carry out the open requests, oldest first, until cancelled."""
        while True:
            taken = False
            try:
                for request in await self._equipment.open_resets(self._line):
                    if request.status is ResetStatus.PENDING:
                        await self.carry_out(request)
                        taken = True
            except DatabaseUnavailable as exc:  # logged on the outage's edges, with the rest
                self._outage.failed("alarm resets", exc)
            else:
                if taken:  # written; a poll that only read ends no outage (outage.py)
                    self._outage.answered()
            await asyncio.sleep(self._poll_s)

    async def carry_out(self, request: ResetRequest) -> ResetRequest | None:
        """Take ``request`` and ask its tool: the request as recorded after, or None when it
        was not ours to carry out any more (taken, withdrawn or expired meanwhile)."""
        taken = await self._equipment.take_reset(request)
        if taken is None:
            return None
        with structlog.contextvars.bound_contextvars(tool_id=taken.tool_id):
            status, outcome, state_after = await self._ask_tool(taken)
            try:
                done = await self._equipment.finish_reset(taken, status, outcome, state_after)
            except LotTrackerError as exc:  # withdrawn as stale meanwhile: nothing to record
                log.warning("alarm reset outcome not recorded", reason=exc.message)
                return None
            log.info(
                "alarm reset",
                result=status.value,
                by=taken.requested_by,
                reason=taken.reason,
                outcome=outcome,
            )
            return done

    async def _ask_tool(self, request: ResetRequest) -> tuple[ResetStatus, str, str | None]:
        tool_id = request.tool_id
        runner = self._runners.get(tool_id)
        driver = self._drivers.get(tool_id)
        if runner is None or driver is None:
            return (
                ResetStatus.UNREACHABLE,
                f"line controller {self._line} does not run tool {tool_id}: nothing was reset",
                None,
            )
        if not runner.connected:
            last = runner.status
            return (
                ResetStatus.UNREACHABLE,
                f"tool {tool_id} does not answer: nothing was reset",
                last.state.name if last is not None else None,
            )
        try:
            await driver.reset_alarm()
        except CommandRefused as exc:
            return ResetStatus.REFUSED, exc.message, await self._state_of(driver)
        except DriverError as exc:
            return (
                ResetStatus.UNREACHABLE,
                f"tool {tool_id} did not take the reset ({exc.message}): see its state "
                "before asking again",
                None,
            )
        state = await self._state_of(driver)
        return ResetStatus.DONE, f"alarm reset: the tool is {state or 'back'}", state

    @staticmethod
    async def _state_of(driver: ToolDriver) -> str | None:
        """The tool's process state now, None when it cannot be read."""
        try:
            return (await driver.status()).state.name
        except DriverError:
            return None
