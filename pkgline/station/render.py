"""What every page of the station shares: the templates, the page answer with its headers,
the viewer dependency, reading a posted form (its CSRF token, text only, a length limit),
and a signature from a form's fields."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote as _url_quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, select_autoescape

from mes.domain.authority import Principal
from mes.domain.signatures import MAX_MEANING_LENGTH, SignatureGiven
from mes.domain.spc import SPC_USER
from pkgline.station import login as auth
from pkgline.station.offers import nav_offers

MAX_FIELD = 1024
"""The longest form value read (a reason, a password); longer is refused with a message."""

MAX_SITES = 2000
"""The most sites one form names (a scrap of sites picked on the map, a track-out's
rejects)."""

MAX_SITES_FIELD = 64 * MAX_SITES
"""The longest list of sites read (``sites``, ``rejects``: ``CARRIER:ROW:COL[:CODE]`` each,
as the map's clicks write them, ``BIG-1-01:8:32, ...``): :data:`MAX_SITES` of them with a
carrier id of the longest, not :data:`MAX_FIELD`, which the map's clicks passed at about 90
sites."""

SITE_LISTS = frozenset({"sites", "rejects"})
"""The fields that hold a list of sites."""

MAX_FIELDS = 4096
"""The most fields a form may have (a scrap of many sites picked on the map)."""

PAGE_HEADERS = {
    "cache-control": "no-store",
    # only the station's own script, styles and stream; no framing (clickjacking), forms
    # post only here; inline style attributes for the legend's colours
    "content-security-policy": "default-src 'self'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}

Viewer = Annotated[Principal, Depends(auth.viewer)]

env = Environment(
    loader=PackageLoader("pkgline.station", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
env.globals["max_meaning"] = MAX_MEANING_LENGTH  # a signature's meaning, as the domain takes it
env.globals["spc_user"] = SPC_USER  # who disqualified a tool an SPC violation inhibited
templates = Jinja2Templates(env=env)

STALE = (
    "The page had expired (its form token is not this session's): nothing was changed; try again."
)


def quote(text: str) -> str:
    """A path segment of a URL (a lot or tool id)."""
    return _url_quote(text, safe="")


def page(
    request: Request,
    name: str,
    who: Principal | None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    token = request.cookies.get(auth.COOKIE)
    context.update(
        # the login came back here for a form sent after the session ended (nothing done)
        expired=who is not None and request.query_params.get(auth.EXPIRED_FLAG) == "1",
        who=who,
        csrf=auth.csrf_for(token) if token and who else "",
        prefix=auth.PREFIX,
        # the navigation's links to the pages of an action or a read the person's roles have
        nav=nav_offers(who) if who is not None else None,
        # the answer to a form (a refusal shown on its page): draft.js makes its history
        # entry a GET of its address, which leads to the page as it is then
        posted=request.method == "POST",
    )
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers.update(PAGE_HEADERS)
    return response


class Form:
    """A posted form's text fields (the same name may come several times: ``all``)."""

    def __init__(self, items: list[tuple[str, str]]):
        self.items = items

    def get(self, name: str, default: str = "") -> str:
        return next((v for k, v in self.items if k == name), default)

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.items if k == name]


NO_FORM = Form([])
"""What a page shows in a form nobody sent: its defaults."""


def kept_for(request: Request, form: Form | None) -> Callable[[str], Form]:
    """``kept(action)``: the fields a refused form gave, for the form of the page that posts
    to ``action`` (the last segment of the form's address: ``hold``, ``scrap-sites``); no
    fields for the page's other forms, which show their defaults."""
    posted = request.url.path.rsplit("/", 1)[-1] if form is not None else ""

    def kept(action: str) -> Form:
        return form if form is not None and action == posted else NO_FORM

    return kept


NUL_TEXT = "the text holds a NUL character (U+0000): no id or text of pkgline holds one"


async def read_form(request: Request, who: Principal) -> tuple[Form, str | None]:
    """The form ``who`` posted, or a message saying why it is refused (a wrong CSRF token,
    recorded in the security log (:func:`pkgline.station.login.csrf_refused`), a
    field that is not text, is too long (:data:`MAX_FIELD`; a list of sites
    :data:`MAX_SITES_FIELD`) or holds a NUL character, too many fields); nothing is changed
    then. A refused form's text fields are still given, for its page to show them again (the
    operator corrects one field, not all of them): a NUL character left out of its field, a
    field that is not text (a file) left out. Not those of a form without this session's
    CSRF token: it may be another site's, and what it says is not shown as the person's."""
    form = await request.form(max_fields=MAX_FIELDS)
    if await auth.csrf_refused(request, who, form.get(auth.CSRF_FIELD)):
        return Form([]), STALE
    items: list[tuple[str, str]] = []
    problem: str | None = None
    for key, value in form.multi_items():
        if not isinstance(value, str):
            problem = problem or f"{key}: expected text; nothing was changed"
            continue
        longest = MAX_SITES_FIELD if key in SITE_LISTS else MAX_FIELD
        if len(value) > longest:
            problem = problem or f"{key}: longer than {longest} characters; nothing was changed"
        if "\x00" in key + value:  # as the API's bodies (PostgreSQL refuses one: a 500)
            problem = problem or (
                f"{key}: {NUL_TEXT} (shown again without it: check the field); nothing was changed"
            )
            key, value = key.replace("\x00", ""), value.replace("\x00", "")
        items.append((key, value))
    return Form(items), problem


def signatures(who: Principal, form: Form) -> tuple[SignatureGiven, ...] | str:
    """The electronic signatures of a form (21 CFR 11.200: the password given again, the
    meaning, and the lot's version the page showed, so that a stale page or a replay is
    refused): the signer's own, and a second signer's (``second_username``,
    ``second_password``) where the operation asks for two; none without a password (the
    service says what it needs); a problem with the form as a message."""
    password = form.get("password")
    if not password:
        return ()
    meaning = form.get("meaning").strip()
    version = form.get("lot_version")
    if not meaning:
        return (
            "the signature needs its meaning (for example 'approved release'); nothing was changed"
        )
    if not (version.isascii() and version.isdigit()) or int(version) < 1:
        return "the page did not say the lot's version: reload it; nothing was changed"
    given = [SignatureGiven(who.name, meaning, password, int(version))]
    second, second_password = form.get("second_username").strip(), form.get("second_password")
    if second or second_password:
        if not second or not second_password:
            return "the second signer gives their username and their password; nothing was changed"
        given.append(SignatureGiven(second, meaning, second_password, int(version)))
    return tuple(given)
