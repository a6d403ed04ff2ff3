"""The lot page and its actions: hold, release (signed), abort the running step, scrap
sites picked on the strip map (signed), split carriers off into a new lot. Each action is
one service call for the person logged in; a refusal (role, state, bad input, a stale page)
is shown on the page it came from and changes nothing (a track-in's or a track-out's on
the field it is about, too). After an action succeeds the browser is sent back to the page
(POST, redirect, GET), so a reload does not repeat it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from mes.domain import commands as cmd
from mes.domain.authority import Action, NotAuthorized, Principal
from mes.domain.errors import InvalidInput, LimitViolated, LotTrackerError, UnknownLot
from mes.domain.model import LOT_ID_PATTERN, LOT_ID_RULE, LotState
from mes.domain.signatures import SignatureGiven
from mes.service import LotService
from pkgline.api.auth import state_of
from pkgline.api.errors import status_of
from pkgline.api.fields import named
from pkgline.station import login as auth
from pkgline.station.account_pages import password_set_by_another
from pkgline.station.holds_paging import PAGING, kept_paging
from pkgline.station.offers import lot_page_offers
from pkgline.station.render import (
    MAX_SITES,
    MAX_SITES_FIELD,
    Form,
    Viewer,
    kept_for,
    page,
    quote,
    read_form,
    signatures,
)
from pkgline.station.views import lot_view, map_filter

router = APIRouter(prefix=auth.PREFIX, include_in_schema=False)

HISTORY_SHOWN = 50
"""History entries the lot page shows, the newest first (``?history=all``: every one). A lot
that went round a rework loop or was held and released for months has thousands: the page
rendered every one (4,206 rows, 0.8 MB, 0.6 s for a lot of 4,000 entries)."""

NOTICES = {
    "hold": "The lot is on hold.",
    "release": "The lot was released.",
    "abort": "The running step was aborted: the lot waits.",
    "scrap": "The sites were scrapped.",
    "scrap-lot": "The lot was scrapped.",
    "rework": "The lot was sent back for rework: it waits for the step again.",
    "track-in": "The step was tracked in: the lot runs it.",
    "track-out": "The step was tracked out.",
    "track-in-held": (
        "The step was not tracked in: the lot was put on hold instead (its hold says why)."
    ),
    "track-out-held": "The step was tracked out, and the lot was put on hold (its hold says why).",
    "merge": "The lot was merged into",
    "complete": "The lot was completed.",
    "migrate": "The lot was moved to another version of its flow.",
    "split": "The carriers were split off into a new lot.",
    "start": "The lot was started.",
}


SIGNED = ("release", "rework", "migrate", "scrap", "scrap-sites")
"""The lot page's forms that are signed (each asks for the password again)."""


@router.get("/lots/{lot_id}")
async def lot_page(
    request: Request,
    who: Viewer,
    lot_id: str,
    done: str = "",
    child: str = "",
    map: str = "",
    history: str = "",
) -> HTMLResponse:
    return await lot_answer(
        request, who, lot_id, done=done, child=child, map_text=map, history_all=history == "all"
    )


async def lot_answer(
    request: Request,
    who: Principal,
    lot_id: str,
    *,
    status: int = 200,
    message: str | None = None,
    done: str = "",
    child: str = "",
    form: Form | None = None,
    map_text: str = "",
    history_all: bool = False,
    errors: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """The lot page (with a refusal's ``message``, and the refused ``form``'s values kept in
    the form it came from, the action the request posted to: ``kept(action)`` in the
    template; ``errors``: the message of each of its fields the refusal is about (by the
    field's name, ``value.xy_offset_um``, ``rejects``), shown beside it in that form;
    ``map_text``: which rejects its maps show, :func:`map_filter`; ``history_all``: every
    history entry, not the newest :data:`HISTORY_SHOWN`)."""
    services = state_of(request).services
    try:
        lot = await services.lots.get(lot_id, by=who)
        shown = map_filter(map_text, len(lot.path))
        if isinstance(shown, str):
            status, message, shown = 422, f"{shown}; the maps show every step", ("all", None)
        view = await lot_view(services, who, lot_id, shown)
    except UnknownLot as unknown:
        return page(request, "message.html", who, 404, message=str(unknown), lot_id=lot_id)
    except LotTrackerError as refused:
        return page(request, "message.html", who, status_of(refused), message=str(refused))
    offers = lot_page_offers(who, view)
    signs = any(action in offers for action in SIGNED)
    return page(
        request,
        "lot.html",
        who,
        status,
        view=view,
        lot=view.report.lot,
        offers=offers,
        # a signed form offered to a person whose password an admin set: say so before they
        # fill it in (the signature would be refused)
        sign_first=await password_set_by_another(request, who) if signs else None,
        states=LotState,
        message=message,
        notice=NOTICES.get(done),
        child=child if done in ("split", "merge") else "",
        kept=kept_for(request, form),
        field_errors=errors or {},
        max_sites_field=MAX_SITES_FIELD,
        history_shown=None if history_all else HISTORY_SHOWN,
    )


async def _refused_on(
    request: Request,
    who: Principal,
    lot_id: str,
    status: int,
    message: str,
    form: Form,
    errors: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """A refusal shown where the form came from: the holds page or the lot page (``errors``:
    on the fields it is about, :func:`lot_answer`)."""
    if form.get("back") == "holds":
        from pkgline.station.work_pages import holds_answer

        return await holds_answer(
            request, who, status=status, message=message, form=form, reopen=lot_id
        )
    return await lot_answer(
        request, who, lot_id, status=status, message=message, form=form, errors=errors
    )


def refused_fields(refused: LotTrackerError, inputs: Mapping[str, str]) -> dict[str, str]:
    """The form's fields a refusal is about, with their messages: the command's input an
    InvalidInput names (:attr:`InvalidInput.field`, ``measured.xy_offset_um``, ``rejects``),
    with its message, or those a LimitViolated's violations are about
    (:attr:`LimitViolated.fields`, ``values.bond_force_n``), each with its violations'
    messages, as the form's fields (``inputs``: the command's input -> the form's,
    ``measured`` -> ``value``: ``value.xy_offset_um``); none for a refusal that names no
    input of the form."""
    said: dict[str, str] = {}
    if isinstance(refused, InvalidInput) and refused.field is not None:
        said[refused.field] = refused.message
    elif isinstance(refused, LimitViolated):
        for about, violations in refused.about().items():
            said[about] = " ".join(v.message for v in violations)
    out: dict[str, str] = {}
    for about, message in said.items():
        field = named(about, inputs)
        if field is not None:
            out[field] = message
    return out


def _done_url(lot_id: str, done: str, form: Form, **more: str) -> str:
    if form.get("back") == "holds":  # the page it was sent from (its cursor, its size)
        paging = kept_paging({k: form.get(k) for k in PAGING})
        return f"{auth.PREFIX}/holds?{urlencode({**paging, 'done': done, 'lot': lot_id})}"
    return f"{auth.PREFIX}/lots/{quote(lot_id)}?{urlencode({'done': done, **more})}"


async def _stale(
    request: Request, who: Principal, lot_id: str, form: Form
) -> tuple[int, str] | None:
    """The status and message when the form does not say which version of the lot its page
    showed (422), or came from a page showing an older one (409: another person moved it
    since): nothing is done then. Signed forms are checked by the service too (the
    signature signs the version)."""
    given = form.get("lot_version")
    if not (given.isascii() and given.isdigit()):
        return 422, (
            f"lot_version: expected the version of lot {lot_id} the page showed, a whole "
            "number (reload the page); nothing was changed"
        )
    lots = state_of(request).services.lots
    try:
        lot = await lots.get(lot_id, by=who)
    except LotTrackerError:
        return None  # the service says it again, with its status
    if lot.version != int(given):
        return 409, (
            f"lot {lot_id} changed since this page was loaded (it is now {lot.state.value}, "
            f"step {lot.step or '-'}): look at it again; nothing was changed"
        )
    return None


async def _act(
    request: Request,
    who: Principal,
    lot_id: str,
    form: Form,
    done: str,
    action: Callable[[LotService], Awaitable[Any]],
    versioned: bool = True,
    inputs: Mapping[str, str] | None = None,
    **more: str,
) -> Response:
    """Do ``action`` for the form, on the version of the lot its page showed (unless not
    ``versioned``: a hold stops the lot whatever moved it since); a refusal about one of the
    command's ``inputs`` is shown on its field too (:func:`refused_fields`)."""
    stale = await _stale(request, who, lot_id, form) if versioned else None
    if stale is not None:
        return await _refused_on(request, who, lot_id, *stale, form)
    lots = state_of(request).services.lots.acting_as(who)
    if versioned:  # checked again in the operation's transaction: nobody moved it meanwhile
        lots = lots.as_seen(lot_id, int(form.get("lot_version")))
    try:
        outcome = await action(lots)
    except LotTrackerError as refused:
        errors = refused_fields(refused, inputs or {})
        return await _refused_on(
            request, who, lot_id, status_of(refused), str(refused), form, errors
        )
    if f"{done}-held" in NOTICES:
        done = done_as(done, outcome.lot.state)
    return RedirectResponse(_done_url(lot_id, done, form, **more), status_code=303)


def done_as(done: str, state: LotState) -> str:
    """The notice of a track-in or track-out (``done``) that left the lot in ``state``: a
    lot the lot tracker put on hold instead of tracking it in (past a queue time) or as it
    tracked it out (a measured value past its spec limits) is not said to run or wait."""
    held = f"{done}-held"
    return held if state is LotState.HOLD and held in NOTICES else done


Signed = Callable[[LotService, tuple[SignatureGiven, ...]], Awaitable[Any]]


async def _act_signed(
    request: Request,
    who: Principal,
    lot_id: str,
    form: Form,
    done: str,
    problem: str | None,
    action: Signed,
) -> Response:
    """:func:`_act` for a signed operation: the form's ``problem`` (a field missing or not as
    expected), else its signatures' (:func:`pkgline.station.render.signatures`), is refused
    on the page with status 422 and nothing done; else ``action`` with the signatures."""
    signed = signatures(who, form)
    if problem is None and isinstance(signed, str):
        problem = signed
    if problem is not None or isinstance(signed, str):
        return await _refused_on(request, who, lot_id, 422, str(problem), form)
    return await _act(request, who, lot_id, form, done, lambda s: action(s, signed))


async def _form(
    request: Request, who: Principal, lot_id: str, action: Action
) -> tuple[Form, Response | None]:
    """The posted form, or the answer refusing it: a wrong CSRF token or a field not as
    :func:`read_form` takes it (400); then a role that may do ``action`` on no lot (403,
    recorded as a security event), before the form's own fields, its page's version or its
    signatures are looked at, as the API refuses it first."""
    form, problem = await read_form(request, who)
    if problem is not None:
        return form, await _refused_on(request, who, lot_id, 400, problem, form)
    try:
        await state_of(request).services.lots.authorize_some(action, lot_id, by=who)
    except NotAuthorized as refused:
        message = str(refused)
        return form, await _refused_on(request, who, lot_id, status_of(refused), message, form)
    return form, None


@router.post("/lots/{lot_id}/hold")
async def hold(request: Request, who: Viewer, lot_id: str) -> Response:
    form, refused = await _form(request, who, lot_id, Action.HOLD)
    if refused is not None:
        return refused
    reason = form.get("reason").strip()
    code = form.get("code").strip() or None
    if not reason and code is None:
        message = "reason: say why the lot is held, or give a hold reason code; nothing was changed"
        return await lot_answer(request, who, lot_id, status=422, message=message, form=form)
    command = cmd.HoldLot(lot_id, who.name, reason, code=code)
    return await _act(
        request, who, lot_id, form, "hold", lambda s: s.hold(command), versioned=False
    )


@router.post("/lots/{lot_id}/release")
async def release(request: Request, who: Viewer, lot_id: str) -> Response:
    form, refused = await _form(request, who, lot_id, Action.RELEASE)
    if refused is not None:
        return refused
    command = cmd.ReleaseLot(lot_id, who.name, form.get("reason").strip() or None)
    return await _act_signed(
        request,
        who,
        lot_id,
        form,
        "release",
        None,
        lambda s, sig: s.release(command, signatures=sig),
    )


def given_values(form: Form) -> dict[str, str]:
    """The values a form gives (fields ``value.NAME``, those filled in): the lot tracker
    reads them as the flow says, refusing with the value and what was expected."""
    return {
        name.removeprefix("value."): text.strip()
        for name, text in form.items
        if name.startswith("value.") and text.strip()
    }


TRACK_IN_FIELDS = {"values": "value"}
"""A track-in's inputs (:class:`mes.domain.commands.TrackIn`) -> its form's fields."""


@router.post("/lots/{lot_id}/track-in")
async def track_in(request: Request, who: Viewer, lot_id: str) -> Response:
    """Track a step in by hand, on no tool or on the tool picked (one switched to manual: the
    interlocks check it), with the recipe values given (the flow's defaults for the
    others). A refusal of one (a value not of its type, that cannot be physical, or outside
    a claimed limit) is shown on its field too."""
    form, refused = await _form(request, who, lot_id, Action.TRACK_IN)
    if refused is not None:
        return refused
    step = form.get("step").strip()
    if not step:
        message = "step: say which step to track in; nothing was changed"
        return await lot_answer(request, who, lot_id, status=422, message=message, form=form)
    tool = form.get("tool").strip() or None
    command = cmd.TrackIn(lot_id, step, who.name, tool, given_values(form))
    return await _act(
        request,
        who,
        lot_id,
        form,
        "track-in",
        lambda s: s.track_in(command),
        inputs=TRACK_IN_FIELDS,
    )


TRACK_OUT_FIELDS = {"measured": "value", "rejects": "rejects"}
"""A track-out's inputs (:class:`mes.domain.commands.TrackOut`) -> its form's fields."""


@router.post("/lots/{lot_id}/track-out")
async def track_out(request: Request, who: Viewer, lot_id: str) -> Response:
    """Track the step the lot runs by hand out (on no tool, or on a tool in manual), with its
    measured values and rejects. A refusal of one (a value not a number or that cannot be
    physical, a reject malformed or not on the lot's carriers) is shown on its field too."""
    form, refused = await _form(request, who, lot_id, Action.TRACK_OUT)
    if refused is not None:
        return refused
    rejects = parse_sites(form.get("rejects"))
    if isinstance(rejects, str):
        return await lot_answer(
            request,
            who,
            lot_id,
            status=422,
            message=rejects,
            form=form,
            errors={"rejects": rejects},
        )
    command = cmd.TrackOut(lot_id, who.name, given_values(form), rejects)
    return await _act(
        request,
        who,
        lot_id,
        form,
        "track-out",
        lambda s: s.track_out(command),
        inputs=TRACK_OUT_FIELDS,
    )


@router.post("/lots/{lot_id}/merge")
async def merge(request: Request, who: Viewer, lot_id: str) -> Response:
    """Merge the lot into another of the same flow at the same position (it ends, MERGED)."""
    form, refused = await _form(request, who, lot_id, Action.MERGE)
    if refused is not None:
        return refused
    into = form.get("into").strip()
    if not into:
        message = "into: name the lot that takes this one's carriers; nothing was changed"
        return await lot_answer(request, who, lot_id, status=422, message=message, form=form)
    command = cmd.MergeLots(lot_id, into, who.name, form.get("reason").strip() or None)
    return await _act(request, who, lot_id, form, "merge", lambda s: s.merge(command), child=into)


@router.post("/lots/{lot_id}/complete")
async def complete(request: Request, who: Viewer, lot_id: str) -> Response:
    """End a lot whose flow may end where it is (only optional steps remain)."""
    form, refused = await _form(request, who, lot_id, Action.COMPLETE)
    if refused is not None:
        return refused
    command = cmd.CompleteLot(lot_id, who.name, form.get("reason").strip() or None)
    return await _act(request, who, lot_id, form, "complete", lambda s: s.complete(command))


@router.post("/lots/{lot_id}/migrate")
async def migrate(request: Request, who: Viewer, lot_id: str) -> Response:
    """Move a waiting or held lot to another approved version of its flow (signed)."""
    form, refused = await _form(request, who, lot_id, Action.MIGRATE)
    if refused is not None:
        return refused
    version = form.get("version").strip()
    if not (version.isascii() and version.isdigit()):
        message = (
            f"version: expected the number of an approved version, got {version!r}; "
            "nothing was changed"
        )
        return await lot_answer(request, who, lot_id, status=422, message=message, form=form)
    command = cmd.MigrateLot(lot_id, int(version), who.name, form.get("reason").strip())
    return await _act_signed(
        request,
        who,
        lot_id,
        form,
        "migrate",
        None,
        lambda s, sig: s.migrate(command, signatures=sig),
    )


@router.post("/lots/{lot_id}/rework")
async def rework(request: Request, who: Viewer, lot_id: str) -> Response:
    form, refused = await _form(request, who, lot_id, Action.REWORK)
    if refused is not None:
        return refused
    step = form.get("step").strip()
    reason = form.get("reason").strip()
    problem = (
        "step: pick the step to send the lot back to; nothing was changed"
        if not step
        else "reason: say why the lot is reworked; nothing was changed"
        if not reason
        else None
    )
    command = cmd.ReworkLot(lot_id, step, who.name, reason)
    return await _act_signed(
        request,
        who,
        lot_id,
        form,
        "rework",
        problem,
        lambda s, sig: s.rework(command, signatures=sig),
    )


@router.post("/lots/{lot_id}/scrap")
async def scrap(request: Request, who: Viewer, lot_id: str) -> Response:
    form, refused = await _form(request, who, lot_id, Action.SCRAP)
    if refused is not None:
        return refused
    reason = form.get("reason").strip()
    code = form.get("code").strip() or None
    problem = (
        "reason: say why the lot is scrapped, or give a scrap reason code; nothing was changed"
        if not reason and code is None
        else None
    )
    command = cmd.ScrapLot(lot_id, who.name, reason, code)
    return await _act_signed(
        request,
        who,
        lot_id,
        form,
        "scrap-lot",
        problem,
        lambda s, sig: s.scrap(command, signatures=sig),
    )


@router.post("/lots/{lot_id}/abort")
async def abort(request: Request, who: Viewer, lot_id: str) -> Response:
    form, refused = await _form(request, who, lot_id, Action.ABORT)
    if refused is not None:
        return refused
    reason = form.get("reason").strip()
    if not reason:
        message = "reason: say why the step is aborted; nothing was changed"
        return await lot_answer(request, who, lot_id, status=422, message=message, form=form)
    command = cmd.AbortStep(lot_id, who.name, reason)
    return await _act(request, who, lot_id, form, "abort", lambda s: s.abort(command))


def parse_sites(text: str, code: str | None = None) -> tuple[cmd.SiteRejectGiven, ...] | str:
    """Sites separated by commas or spaces, or a message saying what was expected: each
    ``CARRIER:ROW:COL`` with ``code`` (what the map's clicks write for a scrap), or with no
    ``code`` each ``CARRIER:ROW:COL:CODE`` (a track-out's rejects). The service checks that
    each is on the lot's carriers."""
    fields, what, form, example = (
        (3, "site", "CARRIER:ROW:COL", "S-1-01:2:3")
        if code
        else (4, "reject", "CARRIER:ROW:COL:CODE", "S-1-01:2:3:VOID")
    )
    sites: list[cmd.SiteRejectGiven] = []
    for item in text.replace(",", " ").split():
        parts = item.rsplit(":", fields - 1)
        whole = len(parts) == fields and parts[0] and parts[-1]
        if not (
            whole
            and parts[1].isascii()
            and parts[1].isdigit()
            and parts[2].isascii()
            and parts[2].isdigit()
        ):
            return (
                f"{what} {item!r}: expected {form} with whole numbers "
                f"(for example {example}); nothing was changed"
            )
        sites.append(cmd.SiteRejectGiven(parts[0], int(parts[1]), int(parts[2]), code or parts[3]))
    if len(sites) > MAX_SITES:
        return f"at most {MAX_SITES} {what}s at once; nothing was changed"
    return tuple(sites)


@router.post("/lots/{lot_id}/scrap-sites")
async def scrap_sites(request: Request, who: Viewer, lot_id: str) -> Response:
    form, refused = await _form(request, who, lot_id, Action.SCRAP_SITES)
    if refused is not None:
        return refused
    code = form.get("code").strip() or "SCRAP"
    reason = form.get("reason").strip()
    sites = parse_sites(form.get("sites"), code)
    if not sites:
        sites = "pick the sites to scrap on the map (or type them); nothing was changed"
    if isinstance(sites, str):
        return await _refused_on(request, who, lot_id, 422, sites, form)
    problem = None if reason else "reason: say why the sites are scrapped; nothing was changed"
    command = cmd.ScrapSites(lot_id, who.name, reason, sites)
    return await _act_signed(
        request,
        who,
        lot_id,
        form,
        "scrap",
        problem,
        lambda s, sig: s.scrap_sites(command, signatures=sig),
    )


@router.post("/lots/{lot_id}/split")
async def split(request: Request, who: Viewer, lot_id: str) -> Response:
    form, refused = await _form(request, who, lot_id, Action.SPLIT)
    if refused is not None:
        return refused
    into = form.get("into").strip()
    carriers = tuple(form.all("carrier"))
    problem = None
    if not into:
        problem = "into: name the new lot the carriers go to; nothing was changed"
    elif not LOT_ID_PATTERN.fullmatch(into):
        problem = f"into: expected {LOT_ID_RULE}, got {into!r}; nothing was changed"
    elif not carriers:
        problem = "pick the carriers to split off; nothing was changed"
    if problem is not None:
        return await lot_answer(request, who, lot_id, status=422, message=problem, form=form)
    command = cmd.SplitLot(lot_id, into, carriers, who.name, form.get("reason").strip() or None)
    return await _act(request, who, lot_id, form, "split", lambda s: s.split(command), child=into)
