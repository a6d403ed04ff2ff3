"""The line routes: ``line status`` and ``events status`` through the server, the same JSON as ``pkgline line status
--json`` (:mod:`pkgline.line_views` builds it for both)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from mes.adapters.database import display_url
from mes.adapters.outbox import OutboxReader
from mes.domain.authority import Action, Principal
from pkgline.api import bodies as b
from pkgline.api.auth import principal, state_of
from pkgline.line_views import backlog_dict, line_answer, read_status

router = APIRouter(tags=["line"], responses=b.REFUSALS)
Who = Annotated[Principal, Depends(principal)]


@router.get(
    "/line/status",
    summary="Controllers, tools, lots running, the queue per step, held lots (line status)",
)
async def line_status(request: Request, who: Who) -> dict[str, Any]:
    state = state_of(request)
    await state.identity.authorize(who, Action.READ)  # one refusal recorded, before any read
    services = replace(
        state.services,
        lots=state.services.lots.acting_as(who),
        equipment=state.services.equipment.acting_as(who),
    )
    current = await read_status(services, datetime.now().astimezone())
    backlog = await OutboxReader(state.engine).backlog()
    return line_answer(current, backlog, display_url(state.engine.url))


@router.get(
    "/events/backlog",
    summary="The event feed's outbox: events waiting, the oldest, the last published (events status)",
)
async def events_backlog(request: Request, who: Who) -> dict[str, Any]:
    state = state_of(request)
    await state.identity.authorize(who, Action.READ)
    backlog = await OutboxReader(state.engine).backlog()
    return backlog_dict(backlog, datetime.now().astimezone())
