"""The lot routes: each turns a request into one call of the lot service, acting for the
request's principal, and answers the JSON the CLI's ``--json`` prints."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from mes.domain import commands as cmd
from mes.domain.authority import Principal
from mes.domain.errors import InvalidInput
from mes.domain.model import PRIORITY_RANGE, LotState
from mes.domain.report import outcome_dict, report_dict, summary_dict
from mes.domain.signatures import SignatureGiven
from mes.domain.text import printable
from mes.ports import LotQuery
from mes.service import LotService, Outcome
from pkgline.api import bodies as b
from pkgline.api.auth import answer, created, principal, state_of
from pkgline.api.json_bodies import JsonRoute
from pkgline.list_views import parse_instant
from pkgline.page_sizes import LOT_PAGE, MAX_LOT_PAGE, page_answer

router = APIRouter(prefix="/lots", tags=["lots"], responses=b.REFUSALS, route_class=JsonRoute)

Who = Annotated[Principal, Depends(principal)]


def _lots(request: Request) -> LotService:
    return state_of(request).services.lots


async def _act(
    request: Request,
    action: Callable[[LotService], Awaitable[Outcome]],
    *,
    lot_id: str | None = None,
    started: bool = False,
) -> JSONResponse:
    """``action`` on the service, for the lot ``lot_id`` as the request last saw it when it
    says (If-Match: :func:`as_seen`); the answer carries the lot's new version (ETag), and
    for a lot ``started`` is 201 with its URL path (Location)."""
    service = _lots(request) if lot_id is None else as_seen(request, _lots(request), lot_id)
    outcome = await action(service)
    flow = service.flow_of(outcome.lot)
    shown = outcome_dict(outcome.lot, outcome.entries, flow)
    response = (
        created(request, shown, "lots", outcome.lot.id) if started else answer(request, shown)
    )
    response.headers["ETag"] = etag(outcome.lot.version)
    return response


def etag(version: int) -> str:
    return f'"{version}"'


ETAG_HEADER: dict[str, Any] = {
    "description": "The lot's version, for If-Match on its next operation.",
    "schema": {"type": "string", "pattern": '^"[0-9]+"$'},
}


def etag_answer(
    status: int = 200, description: str = "The lot as it is now."
) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI of an answer that carries the lot's version as its ``ETag``."""
    return {status: {"description": description, "headers": {"ETag": ETAG_HEADER}}}


IF_MATCH: dict[str, Any] = {
    "parameters": [
        {
            "name": "If-Match",
            "in": "header",
            "required": False,
            "description": (
                'The lot\'s version as the ETag gave it, in its quotes ("7"): done only if the '
                "lot is still at that version, else conflict (409) and nothing changed. Not "
                "unquoted (7), a list, * or W/."
            ),
            "schema": {"type": "string", "pattern": '^[ \\t]*"[0-9]{1,19}"[ \\t]*$'},
        }
    ]
}
"""The OpenAPI of the ``If-Match`` header an operation on a lot takes (:func:`as_seen`)."""


def lot_operation(
    on: APIRouter, path: str, summary: str, answers: str = "The lot as it is now."
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``on.post(path)`` for an operation on a lot: it takes :data:`IF_MATCH` and answers
    the lot's version as its ``ETag`` (``answers``: what the answer is, in the document)."""
    return on.post(
        path, summary=summary, responses=etag_answer(200, answers), openapi_extra=IF_MATCH
    )


def as_seen(request: Request, service: LotService, lot_id: str) -> LotService:
    """The service for an operation on the lot of the route's path as the client last saw it,
    when the request says which version (``If-Match: "7"``, the ETag of the lot's GET or of
    the answer to its last operation): refused with 409, nothing changed, when the lot moved
    since; checked in the operation's transaction (:meth:`LotService.as_seen`).

    Any other If-Match is refused (422), nothing changed: ``*``, a weak tag (``W/"7"``, which
    RFC 9110 never lets If-Match match), a list, a tag that is no version, and a version
    without its quotes (``7``), which is no entity-tag (RFC 9110 §8.8.3: ``opaque-tag =
    DQUOTE *etagc DQUOTE``; a server evaluates an If-Match that is no list of tags as false,
    §13.1.1): the client that sent it meant a precondition, and is told the form it takes
    rather than served as if it had sent one, or acted for unconditionally."""
    given = request.headers.get("if-match")
    if given is None:
        return service
    text = given.strip(" \t")  # optional white space (RFC 9110), as the document says
    version = text[1:-1] if len(text) > 2 and text[0] == text[-1] == '"' else ""
    if not (version.isascii() and version.isdigit()) or len(version) > 19:
        raise InvalidInput(
            "If-Match: expected one entity-tag, the lot's version in double quotes as its ETag "
            f'gives it (If-Match: "7"; not 7 without quotes, *, W/"7" or a list); got '
            f"{printable(repr(given[:40]))}; nothing was changed"
        )
    return service.as_seen(lot_id, int(version))


def _signed(given: list[b.SignatureBody]) -> tuple[SignatureGiven, ...]:
    return tuple(SignatureGiven(g.username, g.meaning, g.password, g.lot_version) for g in given)


def _sites(items: list[b.Reject] | list[b.Site], code: str = "") -> tuple[cmd.SiteRejectGiven, ...]:
    return tuple(
        cmd.SiteRejectGiven(s.carrier, s.row, s.col, getattr(s, "code", code)) for s in items
    )


@router.get(
    "",
    summary="Lots, most urgent first, a page at a time (lot list)",
    responses=b.page_answer_schema("lots", "string", "A page of lots, each as lot list shows it."),
)
async def list_lots(
    request: Request,
    who: Who,
    state: Annotated[list[LotState] | None, Query(description="Only lots in these states.")] = None,
    flow: Annotated[str | None, Query(max_length=64)] = None,
    step: Annotated[str | None, Query(max_length=64)] = None,
    tool: Annotated[str | None, Query(max_length=64)] = None,
    priority: Annotated[
        int | None, Query(ge=PRIORITY_RANGE.start, le=PRIORITY_RANGE.stop - 1)
    ] = None,
    since: Annotated[str | None, b.time_filter("Last moved at or after")] = None,
    until: Annotated[str | None, b.time_filter("Last moved before")] = None,
    after: Annotated[str | None, Query(max_length=64, description="The page's cursor.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LOT_PAGE)] = LOT_PAGE,
) -> JSONResponse:
    query = LotQuery(
        states=tuple(state or ()),
        flow=flow,
        step=step,
        tool=tool,
        priority=priority,
        moved_since=parse_instant(since, "since"),
        moved_before=parse_instant(until, "until"),
        after=after,
        limit=limit,
    )
    service = _lots(request)
    page = await service.page(query, by=who)
    rows = [summary_dict(lot, service.flow_of(lot)) for lot in page.lots]
    return answer(
        request,
        page_answer(rows, "lots", "id", page.total, page.more, page.total_exact),
    )


@router.get(
    "/{lot_id}",
    summary="A lot with its site maps, yields, path and history (lot show)",
    responses=etag_answer(),
)
async def show(request: Request, who: Who, lot_id: str) -> JSONResponse:
    found = report_dict(await _lots(request).report(lot_id, by=who))
    response = answer(request, found)
    response.headers["ETag"] = etag(found["version"])  # for If-Match on its next operation
    return response


@router.post(
    "",
    status_code=201,
    summary="Start a lot (lot start)",
    responses=b.created_answer("The lot as it is now.", ETag=ETAG_HEADER),
)
async def start(request: Request, who: Who, body: b.StartBody) -> JSONResponse:
    command = cmd.StartLot(
        lot_id=body.lot,
        flow=body.flow,
        user=who.name,
        carriers=body.carriers,
        site_rows=body.rows,
        site_cols=body.cols,
        params=dict(body.params),
        priority=body.priority,
    )
    return await _act(request, lambda s: s.start(command, by=who), started=True)


@lot_operation(router, "/{lot_id}/track-in", "Start a step (lot track-in)")
async def track_in(request: Request, who: Who, lot_id: str, body: b.TrackInBody) -> JSONResponse:
    command = cmd.TrackIn(lot_id, body.step, who.name, body.tool, dict(body.params))
    return await _act(request, lambda s: s.track_in(command, by=who), lot_id=lot_id)


@lot_operation(router, "/{lot_id}/track-out", "Finish the running step (lot track-out)")
async def track_out(request: Request, who: Who, lot_id: str, body: b.TrackOutBody) -> JSONResponse:
    command = cmd.TrackOut(lot_id, who.name, dict(body.data), _sites(body.rejects), step=body.step)
    return await _act(request, lambda s: s.track_out(command, by=who), lot_id=lot_id)


@lot_operation(router, "/{lot_id}/abort", "Abandon the running step (lot abort)")
async def abort(request: Request, who: Who, lot_id: str, body: b.ReasonBody) -> JSONResponse:
    command = cmd.AbortStep(lot_id, who.name, body.reason)
    return await _act(request, lambda s: s.abort(command, by=who), lot_id=lot_id)


@lot_operation(router, "/{lot_id}/hold", "Hold a lot (lot hold; a reason is required)")
async def hold(request: Request, who: Who, lot_id: str, body: b.HoldBody) -> JSONResponse:
    command = cmd.HoldLot(lot_id, who.name, body.reason or "", code=body.code)
    return await _act(request, lambda s: s.hold(command, by=who), lot_id=lot_id)


@lot_operation(router, "/{lot_id}/release", "Release a held lot (lot release)")
async def release(request: Request, who: Who, lot_id: str, body: b.ReleaseBody) -> JSONResponse:
    command = cmd.ReleaseLot(lot_id, who.name, body.reason)
    signed = _signed(body.signatures)
    return await _act(
        request, lambda s: s.release(command, by=who, signatures=signed), lot_id=lot_id
    )


@lot_operation(router, "/{lot_id}/scrap", "Scrap a whole lot (lot scrap)")
async def scrap(request: Request, who: Who, lot_id: str, body: b.ScrapBody) -> JSONResponse:
    command = cmd.ScrapLot(lot_id, who.name, body.reason or "", code=body.code)
    signed = _signed(body.signatures)
    return await _act(request, lambda s: s.scrap(command, by=who, signatures=signed), lot_id=lot_id)


@lot_operation(router, "/{lot_id}/scrap-sites", "Scrap some sites of a lot (lot scrap --site)")
async def scrap_sites(
    request: Request, who: Who, lot_id: str, body: b.ScrapSitesBody
) -> JSONResponse:
    command = cmd.ScrapSites(lot_id, who.name, body.reason or "", _sites(body.sites, body.code))
    signed = _signed(body.signatures)
    return await _act(
        request, lambda s: s.scrap_sites(command, by=who, signatures=signed), lot_id=lot_id
    )


@lot_operation(router, "/{lot_id}/rework", "Send a held lot back to a reworkable step")
async def rework(request: Request, who: Who, lot_id: str, body: b.ReworkBody) -> JSONResponse:
    command = cmd.ReworkLot(lot_id, body.step, who.name, body.reason or "")
    signed = _signed(body.signatures)
    return await _act(
        request, lambda s: s.rework(command, by=who, signatures=signed), lot_id=lot_id
    )


@lot_operation(router, "/{lot_id}/split", "Split carriers off into a child lot (lot split)")
async def split(request: Request, who: Who, lot_id: str, body: b.SplitBody) -> JSONResponse:
    command = cmd.SplitLot(lot_id, body.into, tuple(body.carriers), who.name, body.reason)
    return await _act(request, lambda s: s.split(command, by=who), lot_id=lot_id)


@lot_operation(router, "/{lot_id}/merge", "Merge this lot into another (lot merge)")
async def merge(request: Request, who: Who, lot_id: str, body: b.MergeBody) -> JSONResponse:
    command = cmd.MergeLots(lot_id, body.into, who.name, body.reason)
    return await _act(request, lambda s: s.merge(command, by=who), lot_id=lot_id)


@lot_operation(router, "/{lot_id}/complete", "End a lot whose flow may end here")
async def complete(request: Request, who: Who, lot_id: str, body: b.ReasonBody) -> JSONResponse:
    command = cmd.CompleteLot(lot_id, who.name, body.reason)
    return await _act(request, lambda s: s.complete(command, by=who), lot_id=lot_id)


@lot_operation(router, "/{lot_id}/migrate", "Move a lot to another approved flow version")
async def migrate(request: Request, who: Who, lot_id: str, body: b.MigrateBody) -> JSONResponse:
    command = cmd.MigrateLot(lot_id, body.version, who.name, body.reason or "")
    signed = _signed(body.signatures)
    return await _act(
        request, lambda s: s.migrate(command, by=who, signatures=signed), lot_id=lot_id
    )
