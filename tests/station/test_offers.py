"""What a page offers each person (pkgline/station/offers.py), without a server: the lot
page's forms per role, state and hold (its source, its reason code), the sentence when none
is the person's, the navigation's links, and agreement with what the service refuses
(``authorize`` and the reason code's ``check_release``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mes.domain.authority import (
    Action,
    AuthMethod,
    Context,
    NotAuthorized,
    Principal,
    Role,
    authorize,
)
from mes.domain.material_quarantine import QuarantinedInput, check_quarantined
from mes.domain.materials import Quarantine
from mes.domain.model import HoldSource, LotState
from mes.domain.reasons import ReasonCode, ReasonKind, check_release, check_release_by
from pkgline.station.offers import (
    LOT_FORMS,
    NavOffers,
    either,
    lot_offers,
    may_release,
    nav_offers,
    needs,
    not_yours,
)

BY_HAND = {"track-in": True, "track-out": True, "rework": True, "migrate": True, "complete": True}
"""A lot that has everything a form may need (steps by hand, a step to rework to, ...)."""

VOID = ReasonCode(
    "VOID", ReasonKind.HOLD, "voids", "quinn", datetime(2026, 12, 1, tzinfo=UTC),
    release_roles=frozenset({Role.ENGINEER}),
)  # fmt: skip


def _who(*roles: Role) -> Principal:
    return Principal("p", frozenset(roles), AuthMethod.SESSION)


def test_a_viewer_is_offered_nothing_on_a_waiting_lot_and_told_so() -> None:
    offers = lot_offers(_who(Role.VIEWER), "S-1", LotState.WAITING, None, BY_HAND)
    assert offers.forms == frozenset()
    assert offers.none == "Your role (viewer) reads only; no action on this lot is yours."


def test_an_admin_is_offered_no_lot_action_separation_of_duties() -> None:
    for state in (LotState.WAITING, LotState.RUNNING, LotState.HOLD):
        offers = lot_offers(_who(Role.ADMIN), "S-1", state, HoldSource.OPERATOR, BY_HAND)
        assert offers.forms == frozenset()
        assert offers.none == "Your role (admin) takes no action on lots; no action on this lot is yours."  # fmt: skip


def test_an_operator_tracks_in_and_holds_but_scraps_nothing() -> None:
    offers = lot_offers(_who(Role.OPERATOR), "S-1", LotState.WAITING, None, BY_HAND)
    assert offers.forms == {"track-in", "hold", "split", "merge", "complete"}
    assert offers.none is None


def test_quality_scraps_and_releases_what_the_rules_held_an_operator_does_not() -> None:
    operator, quality = _who(Role.OPERATOR), _who(Role.QUALITY)
    ruled = lot_offers(operator, "S-1", LotState.HOLD, HoldSource.SPC, BY_HAND)
    assert "release" not in ruled and "scrap" not in ruled and "split" in ruled
    offers = lot_offers(quality, "S-1", LotState.HOLD, HoldSource.SPC, BY_HAND)
    assert offers.forms == {"release", "scrap", "scrap-sites"}
    own = lot_offers(operator, "S-1", LotState.HOLD, HoldSource.OPERATOR, BY_HAND)
    assert "release" in own


def test_a_hold_whose_reason_code_names_its_releasers_is_offered_to_them_only() -> None:
    for role, offered in ((Role.OPERATOR, False), (Role.QUALITY, False), (Role.ENGINEER, True)):
        offers = lot_offers(_who(role), "S-1", LotState.HOLD, HoldSource.OPERATOR, BY_HAND, VOID)
        assert ("release" in offers) is offered, role
        assert may_release(_who(role), "S-1", HoldSource.OPERATOR, VOID) is offered
        # the lot page says whose the release is, to the person it is not offered to
        assert offers.release_by == (None if offered else "engineer"), role


def test_a_technician_on_a_held_lot_is_told_which_roles_its_actions_need() -> None:
    offers = lot_offers(_who(Role.TECHNICIAN), "S-3", LotState.HOLD, HoldSource.OPERATOR)
    assert offers.forms == frozenset()
    assert offers.none == (
        "Your role (technician) may do none of what this held lot offers (release, rework, "
        "split, move to another version, scrap the lot, scrap sites: the role engineer, "
        "operator or quality); no action on this lot is yours."
    )


def test_a_finished_lot_offers_nothing_and_needs_no_sentence() -> None:
    for state in (LotState.COMPLETED, LotState.SCRAPPED, LotState.MERGED):
        assert lot_offers(_who(Role.VIEWER), "S-1", state, None, BY_HAND).none is None


def test_forms_a_lot_has_no_use_for_are_offered_to_nobody() -> None:
    everything = _who(*Role)
    offers = lot_offers(everything, "S-1", LotState.WAITING, None, {"track-in": False})
    assert "track-in" not in offers and "complete" in offers


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("state", [LotState.WAITING, LotState.RUNNING, LotState.HOLD])
def test_a_form_is_offered_exactly_when_the_service_would_allow_it(
    role: Role, state: LotState
) -> None:
    """The one table decides both: each form shown in a state is offered to a role exactly
    when ``authorize`` (and a coded hold's ``check_release``) lets the role do it."""
    who = _who(role)
    for source in HoldSource:
        for code in (None, VOID):
            offers = lot_offers(who, "S-1", state, source, BY_HAND, code)
            for name, (action, states, _) in LOT_FORMS.items():
                if state not in states:
                    assert name not in offers
                    continue
                context = Context("S-1", source if state is LotState.HOLD else None)
                try:
                    authorize(who, action, context)
                    if action is Action.RELEASE and state is LotState.HOLD:
                        check_release(who, "S-1", code)
                    allowed = True
                except NotAuthorized:
                    allowed = False
                assert (name in offers) is allowed, (name, source, code)


def _refused_needs(check: object) -> str:
    """The roles a refusal names (``NotAuthorized.needed``), as a page says them."""
    try:
        check()  # type: ignore[operator]
    except NotAuthorized as refused:
        return either(r.value for r in refused.needed)
    raise AssertionError("not refused")


@pytest.mark.parametrize("source", list(HoldSource))
@pytest.mark.parametrize("named", [frozenset(), *(frozenset({r}) for r in Role)])
def test_the_roles_a_page_names_for_a_release_are_those_the_service_names(
    source: HoldSource, named: frozenset[Role]
) -> None:
    """Whatever the hold's source and the roles its code names, the page's "that needs"
    and the service's refusal name the same roles (one domain rule narrows both)."""
    code = ReasonCode("X", ReasonKind.HOLD, "x", "quinn", datetime(2026, 12, 1, tzinfo=UTC),
                      release_roles=named)  # fmt: skip
    context = Context("S-1", source)
    nobody = _who()
    assert needs(Action.RELEASE, context, code) == _refused_needs(
        lambda: check_release_by(nobody, context, code)
    )


@pytest.mark.parametrize("action", [Action.RELEASE, Action.REWORK])
@pytest.mark.parametrize("named", [frozenset(), *(frozenset({r}) for r in Role)])
def test_the_roles_a_page_names_for_a_quarantined_lot_are_those_the_service_names(
    action: Action, named: frozenset[Role]
) -> None:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    q = QuarantinedInput("EMC-1", Quarantine("RECALL", "voids", "quinn", at), ("S-1",), named)
    nobody = _who()
    if not named:  # the quarantine's code names nobody: the table decides
        check_quarantined(nobody, "S-1", action, [q])
        return
    assert needs(action, Context("S-1", HoldSource.OPERATOR), None, [q]) == _refused_needs(
        lambda: check_quarantined(nobody, "S-1", action, [q])
    )


def test_the_navigation_links_the_start_page_and_the_log_to_whom_they_serve() -> None:
    assert nav_offers(_who(Role.OPERATOR)) == NavOffers(start=True, security=False)
    assert nav_offers(_who(Role.ADMIN)) == NavOffers(start=False, security=True)
    assert nav_offers(_who(Role.VIEWER)) == NavOffers(start=False, security=False)
    assert nav_offers(_who(Role.ENGINEER)) == NavOffers(start=True, security=True)


def test_a_page_says_why_a_form_is_not_the_persons() -> None:
    assert not_yours(_who(Role.OPERATOR), Action.START) is None
    assert not_yours(_who(Role.VIEWER), Action.MATERIAL_HANDLING) == (
        "Your role (viewer) may not thaw, load or unload material lots: that needs the role "
        "engineer, operator, quality or technician."
    )
    assert not_yours(_who(), Action.START) == (
        "Your account (no role) may not start lots: that needs the role engineer or operator."
    )
