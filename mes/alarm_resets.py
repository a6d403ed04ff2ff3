"""Alarm resets, through the database, because the tool's line controller owns the
connection to it: an operator asks (:meth:`AlarmResets.request_reset`: who, why, until
when), the controller takes the request (:meth:`~AlarmResets.take_reset`), asks the tool and
records what came of it (:meth:`~AlarmResets.finish_reset`); a request nobody took before it
expires is recorded as expired, never carried out later.

The equipment service's calls (:class:`mes.equipment.EquipmentService` has them), kept apart
from its tools' states and dispatch. Each call is one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from mes.domain.authority import Action, Principal
from mes.domain.equipment import (
    MAX_RESET_WAIT_S,
    ControllerRecord,
    ResetRequest,
    ResetStatus,
    reset_refusal,
)
from mes.domain.errors import InvalidInput, ResetNotPossible, UnknownTool
from mes.domain.text import one_line
from mes.guard import Guarded
from mes.ports import UnitOfWorkFactory

RESET_STUCK_S = 60.0
"""A reset its controller took but never answered (it died meanwhile) stops blocking new
ones this long after it expired."""


class AlarmResets(Guarded):
    """The alarm resets' calls of the equipment service (its store and clock)."""

    _uow: UnitOfWorkFactory
    _clock: Callable[[], datetime]

    async def request_reset(
        self,
        tool_id: str,
        user: str,
        reason: str,
        *,
        wait_s: float,
        controller_running: Callable[[ControllerRecord], bool],
        by: Principal | None = None,
    ) -> ResetRequest:
        """Ask the tool's line controller to reset its alarm, within ``wait_s`` (after that
        the request expires, not carried out). Refused, writing nothing, when the tool is
        unknown, its controller is not running (``controller_running`` says from its record),
        it is not in alarm as last recorded, or a reset of it is under way."""
        await self._guard.allow(by, Action.TOOL_RESET)
        reason = one_line(reason, "the reason")
        if not reason:
            raise InvalidInput("a reset needs a reason: say why the alarm may be cleared")
        if not 0 < wait_s <= MAX_RESET_WAIT_S:
            raise InvalidInput(
                f"the wait must be longer than 0 s and at most {MAX_RESET_WAIT_S:,.0f} s, "
                f"not {wait_s:g}"
            )
        now = self._clock()
        async with self._uow() as uow:
            repo = uow.equipment
            tool = await repo.tool(tool_id)
            if tool is None:
                raise UnknownTool(f"there is no tool {tool_id}", tool_id=tool_id)
            controller = await repo.controller(tool.line)
            running = (
                controller is not None
                and tool_id in controller.tools
                and controller_running(controller)
            )
            under_way = None
            for other in await repo.open_resets(tool.line):
                if other.tool_id != tool_id:
                    continue
                if _stale(other, now):
                    await repo.update_reset(
                        _expired(other, now, "not carried out before it expired"), other.status
                    )
                else:
                    under_way = other
            refusal = reset_refusal(tool, running, under_way)
            if refusal is not None:
                raise ResetNotPossible(refusal)
            request = ResetRequest(
                id=uuid.uuid4().hex,
                tool_id=tool_id,
                line=tool.line,
                requested_by=user,
                reason=reason,
                requested_at=now,
                expires_at=now + timedelta(seconds=wait_s),
            )
            await repo.add_reset(request)
            await uow.commit()
        return request

    async def reset_request(self, reset_id: str, *, by: Principal | None = None) -> ResetRequest:
        await self._guard.allow(by, Action.READ)
        async with self._uow(readonly=True) as uow:
            found = await uow.equipment.reset(reset_id)
        if found is None:
            raise InvalidInput(f"there is no reset request {reset_id}")
        return found

    async def resets(
        self, tool_id: str, limit: int = 10, *, by: Principal | None = None
    ) -> list[ResetRequest]:
        """The tool's alarm resets, the newest first."""
        await self._guard.allow(by, Action.READ)
        async with self._uow(readonly=True) as uow:
            return await uow.equipment.resets(tool_id, limit)

    async def open_resets(self, line: str, *, by: Principal | None = None) -> list[ResetRequest]:
        """The resets of the line's tools not carried out yet, oldest first (one read, for
        the line controller to poll)."""
        await self._guard.allow(by, Action.READ)
        async with self._uow(readonly=True) as uow:
            return await uow.equipment.open_resets(line)

    async def take_reset(
        self, request: ResetRequest, *, by: Principal | None = None
    ) -> ResetRequest | None:
        """The line controller takes a pending reset to carry it out: the request, now
        RESETTING; None when it is not pending any more or has expired (then recorded so)."""
        await self._guard.allow(by, Action.TOOL_REPORT)
        now = self._clock()
        if now >= request.expires_at:
            taken = _expired(request, now, "no line controller took it before it expired")
        else:
            taken = replace(request, status=ResetStatus.RESETTING)
        async with self._uow() as uow:
            if not await uow.equipment.update_reset(taken, ResetStatus.PENDING):
                return None
            await uow.commit()
        return taken if taken.status is ResetStatus.RESETTING else None

    async def finish_reset(
        self,
        request: ResetRequest,
        status: ResetStatus,
        outcome: str,
        state_after: str | None,
        *,
        by: Principal | None = None,
    ) -> ResetRequest:
        """Record what came of a reset the controller took (:meth:`take_reset`)."""
        await self._guard.allow(by, Action.TOOL_REPORT)
        if status.open:
            raise ValueError(
                f"a reset finishes done, refused, unreachable or expired, not {status}"
            )
        done = replace(
            request,
            status=status,
            outcome=outcome,
            answered_at=self._clock(),
            state_after=state_after,
        )
        async with self._uow() as uow:
            if not await uow.equipment.update_reset(done, ResetStatus.RESETTING):
                raise InvalidInput(f"reset {request.id} is not being carried out: not recorded")
            await uow.commit()
        return done

    async def withdraw_reset(
        self, reset_id: str, outcome: str, *, by: Principal | None = None
    ) -> ResetRequest:
        """The operator stops waiting: a reset still pending expires (never carried out
        later). The request as it stands (its controller may have taken it meanwhile)."""
        await self._guard.allow(by, Action.TOOL_RESET)
        async with self._uow() as uow:
            found = await uow.equipment.reset(reset_id)
            if found is None:
                raise InvalidInput(f"there is no reset request {reset_id}")
            if found.status is ResetStatus.PENDING:
                found = _expired(found, self._clock(), outcome)
                await uow.equipment.update_reset(found, ResetStatus.PENDING)
                await uow.commit()
        return found


def _stale(request: ResetRequest, now: datetime) -> bool:
    """Expired before anyone took it, or taken and never answered (its controller died)."""
    if request.status is ResetStatus.PENDING:
        return now >= request.expires_at
    return now >= request.expires_at + timedelta(seconds=RESET_STUCK_S)


def _expired(request: ResetRequest, now: datetime, outcome: str) -> ResetRequest:
    return replace(request, status=ResetStatus.EXPIRED, outcome=outcome, answered_at=now)
