"""What a page offers the person looking: the forms and links their roles may use, read from
the one table of who may do what (:func:`mes.domain.authority.may`, with the hold a release
would lift, and the roles its reason code names: :func:`mes.domain.reasons.releases`), and
where none of a lot's actions is theirs, a sentence that says so, naming their roles. Pure:
no I/O.

Hiding a form is for the person, not the security: the service layer checks every request
again and refuses (and records) what a forged one asks, as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mes.domain.authority import (
    PERMISSIONS,
    Action,
    Context,
    Principal,
    Role,
    doing,
    effective_action,
    may,
    may_ever,
)
from mes.domain.material_quarantine import QuarantinedInput, may_lift
from mes.domain.model import HoldSource, LotState
from mes.domain.reasons import ReasonCode, release_roles, releases

if TYPE_CHECKING:
    from pkgline.station.views import LotView

_W, _R, _H = LotState.WAITING, LotState.RUNNING, LotState.HOLD

LOT_FORMS: Mapping[str, tuple[Action, frozenset[LotState], str]] = {
    "track-in": (Action.TRACK_IN, frozenset({_W}), "track in"),
    "track-out": (Action.TRACK_OUT, frozenset({_R}), "track out"),
    "hold": (Action.HOLD, frozenset({_W, _R}), "hold"),
    "release": (Action.RELEASE, frozenset({_H}), "release"),
    "rework": (Action.REWORK, frozenset({_H}), "rework"),
    "abort": (Action.ABORT, frozenset({_R}), "abort the step"),
    "split": (Action.SPLIT, frozenset({_W, _H}), "split"),
    "merge": (Action.MERGE, frozenset({_W}), "merge"),
    "complete": (Action.COMPLETE, frozenset({_W}), "complete"),
    "migrate": (Action.MIGRATE, frozenset({_W, _H}), "move to another version"),
    "scrap": (Action.SCRAP, frozenset({_W, _H}), "scrap the lot"),
    "scrap-sites": (Action.SCRAP_SITES, frozenset({_W, _H}), "scrap sites"),
}
"""Each form of the lot page (named as the address it posts to): the action it asks, the
states of the lot in which the page has it, and what it does in words."""

STATE_WORDS = {_W: "waiting", _R: "running", _H: "held"}

LOT_ACTIONS = frozenset(action for action, _, _ in LOT_FORMS.values())
"""Every action on a lot a person may take at the station (a release: of any hold)."""


def roles_of(who: Principal) -> str:
    """``Your role (viewer)``, ``Your roles (operator, quality)``, ``Your account (no
    role)``."""
    names = sorted(r.value for r in who.roles)
    if not names:
        return "Your account (no role)"
    return f"Your role{'s' if len(names) > 1 else ''} ({', '.join(names)})"


def needs(
    action: Action,
    context: Context | None = None,
    hold_code: ReasonCode | None = None,
    quarantined: Sequence[QuarantinedInput] = (),
) -> str:
    """The roles that may do ``action`` (on the hold of ``context``, placed with
    ``hold_code``, of a lot that got the ``quarantined`` material lots), in words:
    ``engineer or quality``."""
    return either(r.value for r in _needed(action, context or Context(), hold_code, quarantined))


_LIFTED = frozenset({Action.RELEASE, Action.REWORK})
"""The actions a quarantined material lot the lot got narrows, as the service."""


def _needed(
    action: Action,
    context: Context,
    hold_code: ReasonCode | None,
    quarantined: Sequence[QuarantinedInput] = (),
) -> frozenset[Role]:
    if action is Action.RELEASE:
        roles = release_roles(context, hold_code)  # the code narrows the table, as the service
    else:
        roles = PERMISSIONS[effective_action(action, context)]
    if action in _LIFTED:
        for q in quarantined:
            roles = q.narrow(roles)
    return roles


def _may(
    who: Principal,
    action: Action,
    context: Context,
    hold_code: ReasonCode | None,
    quarantined: Sequence[QuarantinedInput] = (),
) -> bool:
    """:func:`may`, and for a release the hold's reason code, for a release or a rework the
    quarantines of the material lots the lot got (all are checked by the service)."""
    if action is Action.RELEASE and not releases(who, hold_code):
        return False
    if action in _LIFTED and not may_lift(who, quarantined):
        return False
    return may(who, action, context)


def either(names: Iterable[str]) -> str:
    """``engineer``, ``engineer or quality``, ``engineer, operator or quality`` (sorted)."""
    *first, last = sorted(names)
    return f"{', '.join(first)} or {last}" if first else last


def not_yours(who: Principal, action: Action, context: Context | None = None) -> str | None:
    """Nothing when ``who`` may do ``action``; else the sentence a page shows where its form
    would be: ``Your role (technician) may not start lots: that needs the role engineer or
    operator.``"""
    if may(who, action, context):
        return None
    ctx = context or Context()
    what = doing(effective_action(action, ctx), ctx)
    return f"{roles_of(who)} may not {what}: that needs the role {needs(action, ctx)}."


@dataclass(frozen=True, slots=True)
class LotOffers:
    """The forms of a lot's page the person may send (``'hold' in offers``), or why none."""

    forms: frozenset[str]
    none: str | None = None
    """When the lot could be acted upon but no action is the person's: the sentence saying
    so (their roles; the roles the lot's actions need)."""

    release_by: str | None = None
    """A held lot the person may not release: the roles that may (``engineer``: those its
    reason code names, or the table's), as the holds page says them."""

    def __contains__(self, form: object) -> bool:
        return form in self.forms


def lot_offers(
    who: Principal,
    lot_id: str,
    state: LotState,
    hold_source: HoldSource | None,
    present: Mapping[str, bool] | None = None,
    hold_code: ReasonCode | None = None,
    quarantined: Sequence[QuarantinedInput] = (),
) -> LotOffers:
    """The forms of lot ``lot_id``'s page ``who`` may send: those the lot's ``state`` has, of
    an action :func:`may` lets ``who`` do on it (a release: of a hold of ``hold_source``,
    placed with the reason code ``hold_code``, which may name the roles that release it; a
    release or a rework of a lot that got the ``quarantined`` material lots: the roles their
    quarantines' codes name).
    ``present``: forms that also need something of the lot (steps run by hand, a step to
    rework to, another approved version, only optional steps left), ``False`` when it has
    none: those are not offered to anyone."""
    context = Context(lot_id, hold_source if state is LotState.HOLD else None)
    there = [
        name
        for name, (_, states, _) in LOT_FORMS.items()
        if state in states and (present or {}).get(name, True)
    ]
    code = hold_code if state is LotState.HOLD else None
    stopped = quarantined if state is LotState.HOLD else ()
    forms = frozenset(
        name for name in there if _may(who, LOT_FORMS[name][0], context, code, stopped)
    )
    release_by = None
    if state is LotState.HOLD and "release" not in forms:
        release_by = needs(Action.RELEASE, context, code, stopped)
    if forms or not there:
        return LotOffers(forms, release_by=release_by)
    if not any(may_ever(who, action) for action in LOT_ACTIONS):
        reads = "reads only" if who.roles <= {Role.VIEWER} else "takes no action on lots"
        return LotOffers(forms, f"{roles_of(who)} {reads}; no action on this lot is yours.")
    roles = {r.value for name in there for r in _needed(LOT_FORMS[name][0], context, code, stopped)}
    words = ", ".join(LOT_FORMS[name][2] for name in there)
    return LotOffers(
        forms,
        f"{roles_of(who)} may do none of what this {STATE_WORDS[state]} lot offers ({words}: "
        f"the role {either(roles)}); no action on this lot is yours.",
        release_by,
    )


def may_release(
    who: Principal,
    lot_id: str,
    hold_source: HoldSource,
    hold_code: ReasonCode | None = None,
    quarantined: Sequence[QuarantinedInput] = (),
) -> bool:
    """Whether ``who`` may release lot ``lot_id``'s hold, placed by ``hold_source`` (a hold
    the rules placed: engineering or quality) with the reason code ``hold_code``, the lot
    having got the ``quarantined`` material lots."""
    return _may(who, Action.RELEASE, Context(lot_id, hold_source), hold_code, quarantined)


@dataclass(frozen=True, slots=True)
class NavOffers:
    """The navigation's links to pages whose whole purpose is an action or a read some roles
    lack (the line, holds, SPC charts and a lot are read by every role)."""

    start: bool
    """The start-lot page (operator, engineer)."""
    security: bool
    """The security log (the whole of it, or its engineering changes)."""


def nav_offers(who: Principal) -> NavOffers:
    return NavOffers(start=may(who, Action.START), security=may(who, Action.CHANGES))


def lot_page_offers(who: Principal, view: LotView) -> LotOffers:
    """:func:`lot_offers` for the lot ``view`` shows (its steps run by hand, the steps it may
    be reworked to, the versions it may move to, whether it may complete)."""
    lot = view.report.lot
    by_hand = {h.action for h in view.by_hand}
    present = {
        "track-in": "track-in" in by_hand,
        "track-out": "track-out" in by_hand,
        "rework": bool(view.rework_steps),
        "migrate": bool(view.migrate_to),
        "complete": view.report.may_complete,
    }
    source = lot.hold.source if lot.hold else None
    return lot_offers(
        who, lot.id, lot.state, source, present, view.hold_code, view.report.quarantined
    )
