"""The line routes: ``line status``, ``events status``, ``events list`` and ``lot history``
through the server, the
same JSON as the CLI prints in direct mode (:mod:`pkgline.line_views` and
:mod:`pkgline.list_views` build it for both)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from mes.adapters.database import display_url
from mes.adapters.outbox import OutboxReader
from mes.domain.authority import Action, Principal
from pkgline.api import bodies as b
from pkgline.api.auth import principal, state_of
from pkgline.api.json_bodies import JsonRoute
from pkgline.line_views import backlog_dict, line_answer, read_status
from pkgline.list_views import (
    HISTORY_PAGE,
    MAX_HISTORY_PAGE,
    feed_answer,
    history_answer,
    history_query,
)
from pkgline.page_sizes import FEED_PAGE, MAX_CURSOR, MAX_FEED_PAGE

router = APIRouter(tags=["line"], responses=b.REFUSALS, route_class=JsonRoute)
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
        durables=state.services.durables.acting_as(who),
        materials=state.services.materials.acting_as(who),
        qualifications=state.services.qualifications.acting_as(who),
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


@router.get(
    "/events",
    summary="The event feed's events kept in the outbox, oldest first, by id (events list)",
    responses=b.page_answer_schema(
        "events", "integer", "A page of events, each as the feed published it.", feed=True
    ),
)
async def feed_events(
    request: Request,
    who: Who,
    after: Annotated[
        int | None,
        Query(ge=0, le=MAX_CURSOR, description="The page's cursor: the last event id seen."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_FEED_PAGE)] = FEED_PAGE,
) -> dict[str, Any]:
    """Answers ``{"events": [...], "total", "total_after", "shown", "more", "next_after"}``
    (``total``: every event kept; ``total_after``: those after ``after``), each event
    the JSON document the feed published (docs/events.md: lot-event, durable-event,
    material-event, or its dead letter); the next page is the same request with ``after`` =
    ``next_after``. A subscriber that lost its MQTT session asks from the last id it
    processed (events are kept ``retention_days`` after they were published)."""
    state = state_of(request)
    await state.identity.authorize(who, Action.READ)
    return await feed_answer(OutboxReader(state.engine), after, limit)


Filter = Annotated[str | None, Query(max_length=64)]


@router.get(
    "/history",
    summary="The line's lot history, newest first, a page at a time (lot history)",
    responses=b.page_answer_schema("entries", "integer", "A page of history entries."),
)
async def history(
    request: Request,
    who: Who,
    lot: Filter = None,
    tool: Filter = None,
    user: Filter = None,
    operation: Annotated[
        str | None, Query(max_length=32, description="track_in, track_out, hold, ...")
    ] = None,
    step: Filter = None,
    since: Annotated[str | None, b.time_filter("Recorded at or after")] = None,
    until: Annotated[str | None, b.time_filter("Recorded before")] = None,
    after: Annotated[
        int | None, Query(ge=1, le=MAX_CURSOR, description="The page's cursor (an entry's seq).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_HISTORY_PAGE)] = HISTORY_PAGE,
) -> dict[str, Any]:
    """Answers ``{"entries": [...], "total", "shown", "more", "next_after"}``, each entry as
    in ``lot show``; the next page (older entries) is the same request with ``after`` =
    ``next_after``. ``since`` (included) and ``until`` (excluded) are ISO 8601, UTC without
    an offset."""
    services = state_of(request).services
    given = {
        "lot": lot,
        "tool": tool,
        "user": user,
        "operation": operation,
        "step": step,
        "since": since,
        "until": until,
        "after": after,
        "limit": limit,
    }
    query = history_query(given)
    return await history_answer(
        services.lots.acting_as(who), services.equipment.acting_as(who), query
    )
