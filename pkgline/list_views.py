"""The answers of the lists added at plant size (issue 20) that the CLI and the API share:
the security log, a tool's jobs, the line's lot history, the event feed's events kept in
the outbox, the material lots and the durables, a page at a time, each as
``{"<items>": [...], "total", "total_exact", "shown", "more", "next_after"}`` (the next page is the same
request with ``after`` = ``next_after``), built here in both modes so that they answer alike;
and the reading of the instants their filters take."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mes.domain.errors import InvalidInput
from mes.domain.identity import EventKind, SecurityEventQuery
from mes.domain.model import Operation
from mes.domain.report import history_dict
from pkgline.page_sizes import HISTORY_PAGE as HISTORY_PAGE
from pkgline.page_sizes import MAX_HISTORY_PAGE as MAX_HISTORY_PAGE
from pkgline.page_sizes import page_answer
from pkgline.tool_views import job_dict

if TYPE_CHECKING:
    from mes.adapters.outbox import OutboxReader
    from mes.domain.authority import Principal
    from mes.durables import DurableService
    from mes.equipment import EquipmentService
    from mes.identity import IdentityService
    from mes.materials import MaterialService
    from mes.ports import HistoryQuery, ToolJobQuery
    from mes.ports_durables import DurableQuery
    from mes.ports_materials import MaterialQuery
    from mes.service import LotService

EVENTS_PAGE = 50
"""Security events per page (``user events``, ``GET /security/events``)."""
MAX_EVENTS_PAGE = 10000
JOBS_PAGE = 20
"""A tool's jobs per page (``tool jobs``, ``GET /tools/{tool}/jobs``)."""
MAX_JOBS_PAGE = 1000
EVENT_KINDS = tuple(k.value for k in EventKind)
OPERATIONS = tuple(o.value for o in Operation)


_OFFSET_AS_SPACE = re.compile(r"\d \d{2}(:?\d{2})?$")


def plus_read_as_space(text: str) -> str | None:
    """What to say of a time whose offset's ``+`` came as a space (``2026-12-02T14:30
    01:00``): typed unencoded in a URL's query, where ``+`` is a space; None otherwise."""
    if not _OFFSET_AS_SPACE.search(text.strip()):
        return None
    return (
        "a '+' in a URL's query is read as a space: send the offset's '+' as %2B "
        "(2026-12-02T14:30%2B01:00), or the time in UTC with Z"
    )


LIST_TIME = (
    "an ISO 8601 date or time, e.g. 2026-12-02 or 2026-12-02T14:30 (UTC unless an offset is given)"
)
"""What a list's time filter takes (:func:`parse_instant`), as its refusals say."""


def read_iso_time(text: str, expected: str) -> datetime:
    """``text`` as an ISO 8601 date or time, naive when it gives no offset: the one reading
    of a time the API, the station's filters and direct mode share (:func:`parse_instant`
    for the lists' filters, :func:`pkgline.api.bodies.iso_text` for a body's time).
    ValueError saying what is wrong, and ``expected`` where the text is no such time: also
    for one outside the years 1 to 9999 in UTC (``0001-01-01T00:00+01:00``), which no store
    can hold."""
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(plus_read_as_space(text) or f"expected {expected}") from None
    if at.tzinfo is not None:
        try:  # the stores keep UTC, years 1 to 9999 there
            at.astimezone(UTC)
        except OverflowError:
            raise ValueError("expected a time from 0001-01-01 to 9999-12-31 in UTC") from None
    return at


def parse_instant(text: str | None, name: str) -> datetime | None:
    """A list's time filter (``since``, ``until`` of every list, in the API, the station and
    direct mode): an ISO 8601 date or time (``2026-12-02``, ``2026-12-02T14:30``, with an
    offset or without one: UTC), or None; InvalidInput naming ``name`` and saying what was
    expected otherwise (:func:`read_iso_time`)."""
    if text is None:
        return None
    try:
        at = read_iso_time(text, LIST_TIME)
    except ValueError as exc:
        raise InvalidInput(f"{name} {text!r}: {exc}") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def parse_kind(text: str | None) -> EventKind | None:
    if text is None:
        return None
    try:
        return EventKind(text)
    except ValueError:
        raise InvalidInput(
            f"kind {text!r}: expected one of {', '.join(EVENT_KINDS)}", allowed=EVENT_KINDS
        ) from None


def parse_operation(text: str | None, name: str) -> str | None:
    """An operation of the lot history (``track_in``, ``hold``, ...), or None."""
    if text is None or text in OPERATIONS:
        return text
    raise InvalidInput(
        f"{name} {text!r}: expected one of {', '.join(OPERATIONS)}", allowed=OPERATIONS
    )


async def security_events_answer(
    identity: IdentityService, by: Principal, query: SecurityEventQuery
) -> dict[str, Any]:
    """``user events``, ``GET /security/events``: one page of the security log, newest
    first; the cursor is an event's ``seq``."""
    page = await identity.event_page(by, query)
    rows = [e.to_dict() for e in page.events]
    return page_answer(rows, "events", "seq", page.total, page.more, page.total_exact)


async def tool_jobs_answer(lots: LotService, query: ToolJobQuery) -> dict[str, Any]:
    """``tool jobs``, ``GET /tools/{tool}/jobs``: one page of a tool's jobs, newest first,
    each as in ``tool show``; the cursor is a job id. The caller has checked the tool."""
    page = await lots.tool_job_page(query)
    rows = [job_dict(j) for j in page.jobs]
    return page_answer(rows, "jobs", "job_id", page.total, page.more, page.total_exact)


def history_query(given: Mapping[str, Any], option: str = "") -> HistoryQuery:
    """The query of ``lot history`` / ``GET /history`` from its parameters as given (their
    names: ``lot``, ``tool``, ``user``, ``operation``, ``step``, ``since``, ``until``,
    ``after``, ``limit``); InvalidInput naming the parameter (with ``option`` before it:
    ``--`` in the CLI) for a malformed operation or time."""
    from mes.ports import HistoryQuery

    return HistoryQuery(
        lot_id=given.get("lot"),
        tool=given.get("tool"),
        user=given.get("user"),
        operation=parse_operation(given.get("operation"), f"{option}operation"),
        step=given.get("step"),
        since=parse_instant(given.get("since"), f"{option}since"),
        until=parse_instant(given.get("until"), f"{option}until"),
        after=given.get("after"),
        limit=given["limit"],
    )


async def history_answer(
    lots: LotService, equipment: EquipmentService, query: HistoryQuery
) -> dict[str, Any]:
    """``lot history``, ``GET /history``: one page of the line's lot history, newest first,
    each entry as in ``lot show --json``; the cursor is an entry's ``seq``. A lot or tool
    filter that names no lot or tool is refused (UnknownLot, UnknownTool), not answered
    with an empty page."""
    from pkgline.tool_views import known_tool

    if query.lot_id is not None:
        await lots.get(query.lot_id)
    if query.tool is not None:
        await known_tool(equipment, query.tool)
    page = await lots.history_page(query)
    rows = [history_dict(e) for e in page.entries]
    return page_answer(rows, "entries", "seq", page.total, page.more, page.total_exact)


async def feed_answer(reader: OutboxReader, after: int | None, limit: int) -> dict[str, Any]:
    """``events list``, ``GET /events``: one page of the events the outbox keeps (published
    or not, until the retention), oldest first, each as the feed published it (or the dead
    letter it went out as: :func:`pkgline.events.payloads.replayed`); the cursor is an
    event's ``id``. For a subscriber that lost its session: the events after the last id
    it processed, refused (InvalidInput) past the newest id, and told (``gap``) when events
    after it are no longer kept. ``total`` is how many the outbox keeps in all,
    ``total_after`` how many of them come after ``after``."""
    from pkgline.events.payloads import replayed

    page = await reader.page(after, limit)
    newest = page.newest or 0
    if after is not None and after > newest:
        issued = f"the newest is {newest}" if page.newest else "it holds no event yet"
        raise InvalidInput(
            f"there is no event {after} to list the events after: {issued}; expected the id "
            "of the last event you processed from this database"
        )
    rows = [replayed(e) for e in page.events]
    answer: dict[str, Any] = page_answer(
        rows, "events", "id", page.total, page.more, page.total_exact
    )
    # The outbox grows: the newest page has a next one too, later. So ``next_after`` is
    # always the cursor to ask with next: the last id shown, or ``after`` itself when the
    # page is empty (none newer yet, or on PostgreSQL an id still held right after it).
    # A null one, taken as the cursor, would ask from the oldest event kept.
    answer["next_after"] = rows[-1]["id"] if rows else (after or 0)
    # ``total`` counts every event kept, whatever ``after``: how many come after it (this
    # page's and those that follow) is ``total_after`` (``events list`` says both).
    following, exact = page.after if page.after is not None else (page.total, page.total_exact)
    answer.update(total_after=following, total_after_exact=exact)
    answer.update(oldest=page.oldest, newest=page.newest, gap=None)
    if after is not None and page.oldest is not None and after < page.oldest - 1:
        answer["gap"] = (
            f"the oldest event kept is {page.oldest}: the events after {after} and before it, "
            "if there were any, are past the retention and no longer kept"
        )
    return answer


async def materials_answer(
    materials: MaterialService, query: MaterialQuery, by: Principal | None = None
) -> dict[str, Any]:
    """``material list``, ``GET /materials``: one page of material lots by id (all, a tool's,
    or those loaded on a tool); the cursor is a material lot's ``id``."""
    from pkgline.interlock_views import material_dict

    page = await materials.page(query, by=by)
    rows = [material_dict(m) for m in page.materials]
    return page_answer(rows, "materials", "id", page.total, page.more, exact=True)


async def durables_answer(
    durables: DurableService, query: DurableQuery, by: Principal | None = None
) -> dict[str, Any]:
    """``durable list``, ``GET /durables``: one page of durables by id (all, a tool's, or
    those mounted on a tool); the cursor is a durable's ``id``."""
    from pkgline.interlock_views import durable_dict

    page = await durables.page(query, by=by)
    rows = [durable_dict(d) for d in page.durables]
    return page_answer(rows, "durables", "id", page.total, page.more, exact=True)
