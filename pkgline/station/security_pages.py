"""The security log at the station (``/station/security``): one page of it, newest first,
with the filters of ``GET /security/events`` (kind, user, since, until) as a GET form and a
"more" link to the next (older) page by the same cursor (``after``, an event's seq). Thin over
the identity service's page (:func:`pkgline.list_views.security_events_answer`), each event's
detail in the words of ``pkgline user events`` (:mod:`pkgline.security_words`).

The whole log is the admins'; technicians, engineers and quality read its engineering changes
alone (:attr:`Action.CHANGES`): for them the kind is fixed to ``engineering_change``, and the
page says so. Anyone else is refused before a filter is read, and the refusal is recorded in
the log as every refusal of authority is. A malformed filter (a time, a kind, a cursor that
names no event) is answered with the page and a 422 saying what was expected; reading the
log changes nothing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from mes.domain.authority import Action, may_ever
from mes.domain.errors import InvalidInput, LotTrackerError
from mes.domain.identity import EventKind, SecurityEventQuery
from pkgline.api.auth import state_of
from pkgline.api.errors import status_of
from pkgline.list_views import (
    EVENT_KINDS,
    EVENTS_PAGE,
    MAX_EVENTS_PAGE,
    parse_instant,
    parse_kind,
    security_events_answer,
)
from pkgline.page_sizes import MAX_CURSOR
from pkgline.security_words import event_detail, event_name
from pkgline.station import login as auth
from pkgline.station.render import Viewer, page

router = APIRouter(prefix=auth.PREFIX, include_in_schema=False)

FILTERS = ("kind", "user", "since", "until")
"""The form's filters, as ``GET /security/events`` names them."""

LONGEST = {"kind": 32, "user": 64, "since": 40, "until": 40, "after": 20, "limit": 20}
"""The longest value read of each parameter (the API's bounds)."""

CHANGES_ONLY = EventKind.ENGINEERING_CHANGE.value


@dataclass(frozen=True, slots=True)
class EventRow:
    """One event of the page, as the table shows it."""

    seq: int
    at: str
    kind: str
    actor: str
    method: str
    subject: str
    lot: str | None
    detail: str


@router.get("/security")
async def security_page(request: Request, who: Viewer) -> HTMLResponse:
    identity = state_of(request).identity
    whole = may_ever(who, Action.USERS)
    given = {k: v.strip() for k, v in request.query_params.items() if k in LONGEST}
    if not whole and not given.get("kind"):
        given["kind"] = CHANGES_ONLY  # what their roles read: said on the page
    shown: dict[str, Any] | None = None
    message: str | None = None
    status = 200
    try:
        if not may_ever(who, Action.CHANGES):  # refused (and recorded) before the filters
            await identity.authorize(who, Action.CHANGES)
        query = _query(given)
        shown = await security_events_answer(identity, who, query)
    except InvalidInput as bad:
        status, message = 422, f"{bad.message.replace('--after', 'after')}; nothing was read"
    except LotTrackerError as refused:  # a role that may not read it (or not this kind)
        return page(request, "message.html", who, status_of(refused), message=str(refused))
    rows = [_row(e) for e in shown["events"]] if shown else []
    more = None
    if shown and shown["more"]:
        kept = {k: given[k] for k in (*FILTERS, "limit") if given.get(k)}
        more = f"{auth.PREFIX}/security?{urlencode({**kept, 'after': shown['next_after']})}"
    return page(
        request,
        "security.html",
        who,
        status,
        given=given,
        whole=whole,
        kinds=EVENT_KINDS if whole else (CHANGES_ONLY,),
        rows=rows,
        shown=shown,
        more=more,
        message=message,
    )


def _query(given: Mapping[str, str]) -> SecurityEventQuery:
    """The service's query from the page's parameters (an empty field: no filter);
    InvalidInput saying what was expected of a malformed one."""
    for name, value in given.items():  # a NUL character: refused with the URL (400)
        if len(value) > LONGEST[name]:
            raise InvalidInput(f"{name}: expected at most {LONGEST[name]} characters")
    return SecurityEventQuery(
        user=given.get("user") or None,
        kind=parse_kind(given.get("kind") or None),
        since=parse_instant(given.get("since") or None, "since"),
        until=parse_instant(given.get("until") or None, "until"),
        after=_whole(given.get("after"), "after", MAX_CURSOR, "the seq of an event of the log"),
        limit=_whole(given.get("limit"), "limit", MAX_EVENTS_PAGE, "events per page")
        or EVENTS_PAGE,
    )


def _whole(text: str | None, name: str, most: int, what: str) -> int | None:
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= most:
        raise InvalidInput(f"{name} {text!r}: expected {what}, a whole number from 1 to {most}")
    return int(text)


def _row(e: dict[str, Any]) -> EventRow:
    at = datetime.fromisoformat(e["at"]).astimezone(UTC)
    return EventRow(
        seq=e["seq"],
        at=at.strftime("%Y-%m-%d %H:%M:%S"),
        kind=event_name(e),
        actor=e["actor"],
        method=e["method"] or "",
        subject=e["subject"] or "",
        lot=e["lot"],
        detail=event_detail(dict(e["detail"])),
    )
