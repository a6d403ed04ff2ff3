"""Your own password at the station (``/station/password``): the current one proven, the new
one given twice, as ``pkgline user passwd --own`` does through the server. A password an admin
set (a new account, a reset) cannot sign (docs/security.md), and a person who works only at
the station has no other way to choose their own."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from mes.domain.authority import Principal
from mes.domain.errors import LotTrackerError
from mes.sessions import split_token
from pkgline.api.auth import state_of
from pkgline.api.errors import status_of
from pkgline.station import login as auth
from pkgline.station.render import Viewer, page, read_form

router = APIRouter(prefix=auth.PREFIX, include_in_schema=False)


@router.get("/password")
async def password_page(request: Request, who: Viewer, done: str = "") -> HTMLResponse:
    notice = "Your password was changed: it signs from now on." if done == "1" else None
    return await _answer(request, who, notice=notice)


@router.post("/password")
async def change_password(request: Request, who: Viewer) -> Response:
    form, refused = await read_form(request, who)
    if refused is not None:
        return await _answer(request, who, status=400, message=refused)
    current, new, again = form.get("current"), form.get("new"), form.get("again")
    if not current or not new:
        message = "give your current password and the new one; nothing was changed"
        return await _answer(request, who, status=422, message=message)
    if new != again:
        message = "the new password and its repetition differ; nothing was changed"
        return await _answer(request, who, status=422, message=message)
    parts = split_token(request.cookies.get(auth.COOKIE, ""))
    try:  # this session goes on; the person's others end
        await state_of(request).identity.change_own_password(
            who.name, current, new, by=who, keep_session=parts[0] if parts else None
        )
    except LotTrackerError as exc:  # a wrong current password (counted), a weak new one
        return await _answer(request, who, status=status_of(exc), message=str(exc))
    return RedirectResponse(f"{auth.PREFIX}/password?done=1", status_code=303)


async def _answer(
    request: Request,
    who: Principal,
    *,
    status: int = 200,
    message: str | None = None,
    notice: str | None = None,
) -> HTMLResponse:
    try:
        user = await state_of(request).identity.user(who, who.name)
        may_sign = user.password_set_by == user.username
    except LotTrackerError:  # no role that may read users: the form alone
        may_sign = True
    return page(
        request, "password.html", who, status, message=message, notice=notice, may_sign=may_sign
    )


async def password_set_by_another(request: Request, who: Principal) -> str | None:
    """Who set ``who``'s password, when it was someone else (an admin, for a new account or a
    reset): it logs in, but signs nothing until its person chooses their own. None when it is
    their own, or when there is none or it cannot be read (the signature then says why)."""
    try:
        user = await state_of(request).identity.user(who, who.name)
    except LotTrackerError:
        return None
    if user.password_set_by is None or user.password_set_by == user.username:
        return None
    return user.password_set_by
