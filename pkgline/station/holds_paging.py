"""Which page of the holds page (``/station/holds?after=LOT&limit=N``): the lot list's cursor
(the id of the last lot of the page before, :class:`mes.ports.LotQuery`) and page size, read
from the URL or kept in a form sent from the page, so that a release from a later page comes
back to it. Imports nothing of the station: the login reads it to go back to the page a form
was sent from (:func:`pkgline.station.login.form_page`)."""

from __future__ import annotations

from collections.abc import Mapping

from mes.domain.errors import InvalidInput
from mes.domain.model import LOT_ID_PATTERN, LOT_ID_RULE
from pkgline.page_sizes import LOT_PAGE, MAX_LOT_PAGE

HOLDS_PAGE = LOT_PAGE
"""Held lots per page, as the lot list's (``lot list``, ``GET /lots``)."""

PAGING = ("after", "limit")
"""The holds page's paging parameters, kept in its release form (hidden fields)."""

_LONGEST = {"after": 32, "limit": 4}
"""The longest well-formed value of each: a lot id, a page size up to MAX_LOT_PAGE."""


def paging_of(given: Mapping[str, str]) -> tuple[str | None, int]:
    """The cursor and the page size ``given`` (the URL's query): none and
    :data:`HOLDS_PAGE` where they are not; InvalidInput saying what was expected of a
    malformed one (nothing is read then)."""
    after = given.get("after", "").strip()
    limit = given.get("limit", "").strip()
    if len(after) > _LONGEST["after"] or (after and not LOT_ID_PATTERN.fullmatch(after)):
        shown = f"{len(after)} characters" if len(after) > _LONGEST["after"] else repr(after)
        raise InvalidInput(
            f"after: expected the id of the last lot of the page before ({LOT_ID_RULE}), "
            f"got {shown}"
        )
    if limit and not (
        len(limit) <= _LONGEST["limit"]
        and limit.isascii()
        and limit.isdigit()
        and 1 <= int(limit) <= MAX_LOT_PAGE
    ):
        shown = f"{len(limit)} characters" if len(limit) > 20 else repr(limit)
        raise InvalidInput(
            f"limit: expected held lots per page, a whole number from 1 to {MAX_LOT_PAGE}, "
            f"got {shown}"
        )
    return after or None, int(limit) if limit else HOLDS_PAGE


def kept_paging(given: Mapping[str, str]) -> dict[str, str]:
    """Of ``given`` (a form sent from the holds page), the paging parameters to go back to
    its page with, well-formed ones only: a malformed one (a forged form) is left out, and
    the page answered is the first rather than a refusal after the action was done."""
    kept = {name: given.get(name, "").strip() for name in PAGING}
    kept = {name: value for name, value in kept.items() if value}
    try:
        paging_of(kept)
    except InvalidInput:
        return {}
    return kept
