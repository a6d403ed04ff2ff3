"""One tool's quarantine: what the line controller does when a tool sends something that does
not fit (results of another job, lot or step, a value of the wrong type or out of the class's
physical range, a site map of the wrong shape), or when its own work on the tool fails in a
way it did not foresee.

The tool is taken out of dispatch with the reason (as an operator switches a tool to manual,
so the reason shows where theirs does), the lot that can be named is held with what was
received and what was expected, and the tool's runner does nothing more with the tool until
an operator brings it back into dispatch (``pkgline tool auto TOOL``). Results that
were refused stay on the tool, not acknowledged. Every other tool goes on.

A controller that starts with a tool left quarantined (out of dispatch with a reason that
starts with :data:`PREFIX`) keeps it so until it is brought back: a restart does not read the
same results again and fail again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import structlog

from mes.domain import commands as cmd
from mes.domain.equipment import DispatchMode
from mes.domain.errors import LotTrackerError
from mes.domain.model import HoldSource
from mes.domain.text import printable
from mes.equipment import EquipmentService
from mes.service import LotService

log = structlog.get_logger("pkgline.controller")

PREFIX = "quarantined: "
"""How the dispatch reason of a quarantined tool begins."""
CHECK_S = 2.0
"""While quarantined: how often the tool's dispatch mode is read (brought back yet?)."""


class Quarantined(Exception):
    """The tool is quarantined; the runner stops what it was doing with it."""


class Quarantine:
    """The quarantine of one tool: entered by its runner, left when an operator puts the tool
    back into automatic dispatch."""

    def __init__(self, tool_id: str, lots: LotService, equipment: EquipmentService, *, user: str):
        self.tool_id = tool_id
        self._lots = lots
        self._equipment = equipment
        self._user = user
        self.reason: str | None = None
        """Why the tool is quarantined; None when it is not."""
        self._recorded = False
        """The tool's dispatch mode says so (not yet while the database was unavailable)."""
        self.released = False
        """The operator brought the tool back: results it still holds that do not fit were
        seen by the operator, and are acknowledged without being recorded
        (:meth:`ToolRunner._settle`); cleared by the next results that do fit."""

    @property
    def active(self) -> bool:
        return self.reason is not None

    async def resume(self) -> None:
        """At start: a tool a previous controller quarantined stays quarantined."""
        while True:
            try:
                record = await self._equipment.tool(self.tool_id)
            except Exception as exc:  # whatever the database says, it says it again later
                log.warning("cannot read the tool's dispatch mode yet", error=str(exc))
                await asyncio.sleep(CHECK_S)
                continue
            break
        reason = record.dispatch_reason or ""
        if record.dispatch is DispatchMode.MANUAL and reason.startswith(PREFIX):
            self.reason, self._recorded = reason[len(PREFIX) :], True
            log.warning("tool still quarantined", reason=self.reason)

    async def enter(
        self, reason: str, *, lot_id: str | None = None, data: Mapping[str, Any] | None = None
    ) -> Quarantined:
        """Take the tool out of dispatch with ``reason`` (first, or the lot held would be
        sent straight back to it), then hold ``lot_id`` with ``data`` (what was received and
        expected). Returns the exception for the runner to raise."""
        reason = printable(reason)  # it may carry what the tool sent
        log.error("tool quarantined", reason=reason, lot=lot_id)
        self.reason, self._recorded, self.released = reason, False, False
        await self._record()
        if lot_id is not None:
            try:
                await self._lots.hold(
                    cmd.HoldLot(lot_id, self._user, reason, HoldSource.CONTROLLER, data)
                )
            except LotTrackerError as exc:
                log.info("lot not held: it moved meanwhile", lot=lot_id, reason=exc.message)
            except Exception as exc:  # a quarantine must not fail; the reason is on the tool
                log.warning("cannot hold the lot", lot=lot_id, error=str(exc), exc_info=exc)
        return Quarantined(reason)

    async def _record(self) -> bool:
        if self._recorded:
            return True
        try:
            await self._equipment.set_dispatch(
                self.tool_id, DispatchMode.MANUAL, self._user, PREFIX + (self.reason or "")
            )
        except Exception as exc:  # tried again until it is written (wait_release)
            log.warning("cannot take the tool out of dispatch yet", error=str(exc))
            return False
        self._recorded = True
        return True

    async def wait_release(self) -> None:
        """Until an operator puts the tool back into automatic dispatch."""
        while True:
            if await self._record():
                try:
                    record = await self._equipment.tool(self.tool_id)
                except Exception as exc:
                    log.warning("cannot read the tool's dispatch mode", error=str(exc))
                else:
                    if record.dispatch is DispatchMode.AUTO:
                        log.warning(
                            "tool back in dispatch after quarantine",
                            reason=self.reason,
                            by=record.dispatch_by,
                        )
                        self.reason, self._recorded, self.released = None, False, True
                        return
            await asyncio.sleep(CHECK_S)
