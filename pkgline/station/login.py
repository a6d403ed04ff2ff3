"""Who is looking at a page: the server's own stored sessions (:mod:`mes.sessions`, the same
``POST /session`` login and lockout) carried in a cookie, and the CSRF token of every form.

- The cookie holds the session token: ``HttpOnly`` (no script reads it), ``SameSite=Strict``
  (no other site's page sends it), ``Secure`` when the page came over HTTPS, ``Path=/station``.
  Logging out ends the stored session, so a copied cookie is dead too.
- A form's CSRF token is an HMAC of a fixed label keyed by the session token: a page of
  another origin cannot know it, it needs no storage, and it dies with the session. The login
  form, before any session, uses a random token in a cookie of its own, matched with the
  form's field (double submit).
- A page without a live session redirects to the login; a refused session cookie (ended,
  expired, disabled account) is recorded as a security event, as the API records a refused
  token. So is a form refused for its CSRF token (:func:`csrf_refused`,
  :func:`login_csrf_refused`): who, which form and why, never the token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from urllib.parse import quote, unquote, urlencode

from fastapi import Request, Response
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from mes.domain.authority import AuthMethod, Principal
from mes.domain.text import printable
from mes.domain.tokens import claimed
from mes.sessions import SessionRefused, split_token
from pkgline.api.auth import state_of
from pkgline.station.holds_paging import PAGING, kept_paging

COOKIE = "pkgline_station"
LOGIN_CSRF_COOKIE = "pkgline_station_login"
PREFIX = "/station"
CSRF_FIELD = "csrf"
_CSRF_LABEL = b"pkgline station form"


class NeedLogin(Exception):
    """No live session: the page answers with a redirect to the login."""

    def __init__(self, next_path: str):
        super().__init__(next_path)
        self.next_path = next_path


class BadForm(Exception):
    """A form without the right CSRF token: refused, nothing changed."""


def csrf_for(token: str) -> str:
    return hmac.new(token.encode(), _CSRF_LABEL, hashlib.sha256).hexdigest()


def csrf_ok(request: Request, given: object) -> bool:
    token = request.cookies.get(COOKIE)
    if not token or not isinstance(given, str):
        return False
    return hmac.compare_digest(csrf_for(token), given)


MAX_FORM_NAME = 200
"""The most characters of a refused form's name (its method and path) the security log keeps
(longer is cut and its length said, as a claimed name is: :func:`mes.domain.tokens.claimed`):
the path is the client's to choose (a lot id of any length), the log's line is bounded."""

NO_TOKEN = "the form carries no CSRF token"
NOT_THIS_SESSIONS = (
    "the form's CSRF token is not this session's (another site's form, or a page of an "
    "ended session)"
)
NOT_THIS_LOGIN_FORMS = (
    "the login form's CSRF token does not match its cookie (another site's form, or a login "
    "page over an hour old)"
)


def form_name(request: Request) -> str:
    """The form a refusal names: ``POST /station/lots/S-1/hold``."""
    name = f"{request.method} {request.url.path}"
    if len(name) <= MAX_FORM_NAME:
        return printable(name)
    return f"{printable(name[: MAX_FORM_NAME - 20])}... ({len(name)} chars)"


async def csrf_refused(request: Request, who: Principal, given: object) -> bool:
    """Whether a form posted in ``who``'s session is refused for its CSRF token (``given``):
    then the refusal is recorded in the security log as a refusal of authority (who the
    session is, which form, why; never the token given), one event per refused request as
    for a role refused. Nothing else of the form is recorded: it may be another site's."""
    if csrf_ok(request, given):
        return False
    why = NO_TOKEN if given is None or given == "" else NOT_THIS_SESSIONS
    await state_of(request).identity.refused_form(who, form_name(request), why)
    return True


async def login_csrf_refused(request: Request, given: object, username: object) -> bool:
    """Whether the login form is refused for its CSRF token (``given``): then, when it names a
    user, recorded as a failed login of that name (as a refusal records a claimed name: one
    line, cut past 64 characters, :func:`mes.domain.tokens.claimed`), the
    form and why, as a wrong password is (not counted towards the lockout: no password was
    tried). One that names nobody claims no one's identity and is not recorded, as the API
    does not record a request without credentials: else any scanner posting to the login
    would fill the log."""
    if login_csrf_ok(request, given):
        return False
    name = username.strip() if isinstance(username, str) else ""
    if name:
        why = NO_TOKEN if given is None or given == "" else NOT_THIS_LOGIN_FORMS
        await state_of(request).identity.refused_credentials(
            claimed(name), AuthMethod.PASSWORD, why, form=form_name(request)
        )
    return True


def login_url(next_path: str) -> str:
    return f"{PREFIX}/login?next={quote(next_path, safe='/')}"


def safe_next(value: object) -> str:
    """Where to go after the login: only a path of the station (never another site, nor a
    path that leaves the station by dot segments, ``/station/../x``, as the browser reads
    them: ``%2e%2e`` too)."""
    if not isinstance(value, str):
        return PREFIX + "/"
    path = unquote(value.partition("?")[0].partition("#")[0])
    if (
        value.startswith(PREFIX + "/")
        and "\\" not in value + path
        and "//" not in value + path
        and not any(segment in (".", "..") for segment in path.split("/"))
        and value.isprintable()
    ):
        return value
    return PREFIX + "/"


EXPIRED_FLAG = "expired"
"""The query a page is given when the login went back to it for a form sent after the session
ended: the page says that nothing was done (:func:`page_of`)."""


def page_of(method: str, path: str, query: str, sent: Mapping[str, str] | None = None) -> str:
    """Where the login goes on to for a request that found no session: the page itself for a
    GET; for a form's POST (which a browser cannot repeat by a redirect, and which is never
    kept to be done after the login) the page the form is on (:func:`form_page`), flagged
    :data:`EXPIRED_FLAG` so that it says nothing was done; else the line. ``sent``: the
    form's fields that say which page (``back``, ``flow``; the holds page's ``after`` and
    ``limit``), nothing else of it."""
    if method in ("GET", "HEAD"):
        return path + (f"?{query}" if query else "")
    found = form_page(path, sent)
    if found is None:
        return PREFIX + "/"
    page, where = found
    return f"{page}?{urlencode({**where, EXPIRED_FLAG: '1'})}"


FORM_OWNERS = ("lots", "tools", "materials")
"""The pages whose forms post to ``/station/KIND/ID/ACTION``."""


def form_page(
    path: str, sent: Mapping[str, str] | None = None
) -> tuple[str, dict[str, str]] | None:
    """The page a form that posts to ``path`` is on, and its query: a lot's, a tool's or a
    material lot's page for their actions (``/station/lots/S-1/hold``; the holds page, its
    dialog opened again for the lot, for a release sent from there: the page it was sent
    from, its well-formed cursor and size), the start page for a
    start (the flow the form was for), the password page; None for another path."""
    sent = sent or {}
    parts = path.split("/")  # "", "station", "lots", ID, ACTION
    where: dict[str, str] = {}
    if len(parts) == 5 and parts[2] == "lots" and sent.get("back") == "holds":
        page, where = f"{PREFIX}/holds", kept_paging(sent)  # its page, as the release's
        where["lot"] = unquote(parts[3])
    elif len(parts) == 5 and parts[2] in FORM_OWNERS:
        page = "/".join(parts[:4])
    elif path == f"{PREFIX}/start":
        page, flow = path, sent.get("flow", "")
        if flow and len(flow) <= 64 and flow.isprintable():
            where["flow"] = flow
    elif path == f"{PREFIX}/password":
        page = path
    else:
        return None
    return page, where


async def _sent(request: Request) -> dict[str, str]:
    """The fields of a form sent without a live session that say which page it is on."""
    try:
        form = await request.form()
    except (HTTPException, MultiPartException):  # not a form a page sends: the line, then
        return {}
    said = ("back", "flow", *PAGING)
    return {k: v for k, v in form.items() if k in said and isinstance(v, str)}


async def viewer(request: Request) -> Principal:
    """The principal of the page's session (a FastAPI dependency), or NeedLogin."""
    token = request.cookies.get(COOKIE)
    if not token:
        raise NeedLogin(await _here(request))
    state = state_of(request)
    try:
        return await state.sessions.authenticate(token)
    except SessionRefused as refused:
        parts = split_token(token)
        name = f"session {parts[0]}" if parts else "-"
        await state.identity.refused_credentials(name, AuthMethod.SESSION, refused.why)
        raise NeedLogin(await _here(request)) from None


async def _here(request: Request) -> str:
    """:func:`page_of` the request (which reads a form's ``back`` and ``flow``)."""
    sent = await _sent(request) if request.method == "POST" else None
    return page_of(request.method, request.url.path, request.url.query, sent)


def secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session_cookie(request: Request, response: Response, token: str, max_age_s: int) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=max_age_s,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=secure(request),
    )


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        COOKIE, path=PREFIX, httponly=True, samesite="strict", secure=secure(request)
    )


def login_csrf_value() -> str:
    return secrets.token_urlsafe(24)


def set_login_csrf(request: Request, response: Response, value: str) -> None:
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        value,
        max_age=3600,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=secure(request),
    )


def login_csrf_ok(request: Request, given: object) -> bool:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not expected or not isinstance(given, str):
        return False
    return hmac.compare_digest(expected, given)
