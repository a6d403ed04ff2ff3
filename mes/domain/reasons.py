"""Reason-code catalogues for holds and scraps, kept by quality: a code, its text, and who
may release a hold given with it. Pure rules, no I/O.

A hold or a scrap may name a code (``--code``) beside its free text (``--reason``, which
alone keeps working); the code must be in the catalogue, of the right kind, and not
retired. A hold whose code names the roles that may release it is released only by one of
them (:func:`check_release`), whatever the hold's source.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from flows.errors import suggest
from mes.domain.authority import (
    PERMISSIONS,
    Action,
    Context,
    NotAuthorized,
    Principal,
    Role,
    authorize,
    effective_action,
    may,
    narrowed,
)
from mes.domain.errors import InvalidInput, OperationNotAllowed, RecordExists
from mes.domain.text import blank, one_line, optional_line


class ReasonKind(StrEnum):
    HOLD = "hold"
    SCRAP = "scrap"


_CODE = re.compile(r"^[A-Z0-9][A-Z0-9_-]{0,15}$")


@dataclass(frozen=True, slots=True)
class ReasonCode:
    code: str
    kind: ReasonKind
    text: str
    added_by: str
    added_at: datetime
    release_roles: frozenset[Role] = frozenset()
    """Holds with this code are released only by these roles (empty: as the table says)."""
    retired_by: str | None = None
    retired_at: datetime | None = None
    retired_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.retired_at is None


def add(
    code: str,
    kind: str,
    text: str,
    release_roles: Iterable[str],
    by: str,
    now: datetime,
    existing: ReasonCode | None = None,
) -> ReasonCode:
    """A new code. Refused, saying what is expected, for a malformed or taken code, an
    unknown kind or role, an empty text, or release roles on a scrap code."""
    if not _CODE.fullmatch(code):
        raise InvalidInput(
            f"reason code {code!r} is not valid: expected 1 to 16 capitals, digits, '_' or '-'"
        )
    if existing is not None:
        state = "" if existing.active else ", retired"
        raise RecordExists(f"reason code {code} exists already ({existing.kind.value}{state})")
    try:
        known = ReasonKind(kind)
    except ValueError:
        raise InvalidInput(
            f"{kind!r} is not a kind of reason code; expected hold or scrap",
            allowed=[k.value for k in ReasonKind],
        ) from None
    if blank(text):
        raise InvalidInput(f"reason code {code} needs a text saying what it means")
    roles: set[Role] = set()
    for name in release_roles:
        try:
            roles.add(Role(name))
        except ValueError:
            raise InvalidInput(
                f"{name!r} is not a role; expected one of {', '.join(r.value for r in Role)}",
                allowed=[r.value for r in Role],
            ) from None
    if roles and known is ReasonKind.SCRAP:
        raise InvalidInput("a scrap is not released: --release-by is for hold codes")
    # A role that may release no lot at all would leave every hold with this code for good.
    may_release = PERMISSIONS[Action.RELEASE] | PERMISSIONS[Action.RELEASE_RULED]
    never = sorted(r.value for r in roles - may_release)
    if never:
        allowed = sorted(r.value for r in may_release)
        raise InvalidInput(
            f"--release-by {', '.join(never)}: "
            f"{'that role releases' if len(never) == 1 else 'those roles release'} no lot, so "
            f"no one could release a hold with code {code}; expected roles that release lots "
            f"({', '.join(allowed)})",
            allowed=allowed,
        )
    return ReasonCode(
        code, known, one_line(text, "a reason code's text"), by, now, frozenset(roles)
    )


def retire(found: ReasonCode, by: str, now: datetime, reason: str) -> ReasonCode:
    if not found.active:
        raise OperationNotAllowed(f"reason code {found.code} was retired already")
    return replace(
        found, retired_by=by, retired_at=now, retired_reason=one_line(reason, "the reason")
    )


def resolve(
    code: str,
    kind: ReasonKind,
    found: ReasonCode | None,
    free: str | None,
    catalogue: Iterable[ReasonCode] = (),
) -> str:
    """The reason a hold or scrap records for ``code`` (and the free text beside it);
    refused unless the code is an active one of ``kind``. ``catalogue``: the codes there are,
    for a code not found, so that the refusal names the active one of ``kind`` closest to
    it (a misspelt ``VIOD``: did you mean VOID?)."""
    if found is None:
        known = sorted(c.code for c in catalogue if c.kind is kind and c.active)
        raise InvalidInput(
            f"there is no {kind.value} reason code {code}{suggest(code.upper(), known)}; "
            f"expected one of the catalogue (pkgline reason list --kind {kind.value})",
            allowed=known,
        )
    if found.kind is not kind:
        raise InvalidInput(
            f"reason code {code} is a {found.kind.value} code; expected a {kind.value} code"
        )
    if not found.active:
        raise InvalidInput(f"reason code {code} was retired; expected an active {kind.value} code")
    text = f"{code} {found.text}"
    free = optional_line(free, "the reason")
    return f"{text}: {free}" if free else text


def releases(who: Principal, found: ReasonCode | None) -> bool:
    """Whether the code ``found`` a hold was placed with lets ``who`` release it (no code, or
    a code naming no roles: as the table says): :func:`check_release`'s answer without the
    refusal, for what a page offers."""
    return found is None or not found.release_roles or bool(who.roles & found.release_roles)


def check_release(who: Principal, lot_id: str, found: ReasonCode | None) -> None:
    """Refuse (NotAuthorized) the release of a hold placed with ``found`` by someone who
    holds none of the roles its code names."""
    if found is None or releases(who, found):
        return
    needed = sorted(r.value for r in found.release_roles)
    held = ", ".join(sorted(r.value for r in who.roles)) or "no role"
    raise NotAuthorized(
        f"{who.name} ({held}) may not release lot {lot_id}: its hold, code {found.code}, is "
        f"released by {' or '.join(needed)}",
        needed=found.release_roles,
        lot_id=lot_id,
        action=Action.RELEASE,
    )


def release_roles(context: Context, found: ReasonCode | None) -> frozenset[Role]:
    """The roles that may release the hold of ``context`` placed with ``found``: the table's
    row for the hold's source, narrowed by the roles the code names (those the code names,
    where none of them is in the row)."""
    row = PERMISSIONS[effective_action(Action.RELEASE, context)]
    return row if found is None else narrowed(row, found.release_roles)


def check_release_by(who: Principal, context: Context, found: ReasonCode | None) -> None:
    """Refuse (NotAuthorized) the release of the hold of ``context`` (placed with ``found``)
    by someone the table or the code does not let release it, naming who may: the whole
    check, which the service makes before a signature's password is looked at."""
    if found is None or not found.release_roles:
        authorize(who, Action.RELEASE, context)
        return
    if may(who, Action.RELEASE, context) and releases(who, found):
        return
    needed = release_roles(context, found)
    held = ", ".join(sorted(r.value for r in who.roles)) or "no role"
    raise NotAuthorized(
        f"{who.name} ({held}) may not release lot {context.lot_id}: its hold, code "
        f"{found.code}, is released by {' or '.join(sorted(r.value for r in needed))}",
        needed=needed,
        lot_id=context.lot_id,
        action=effective_action(Action.RELEASE, context),
    )
