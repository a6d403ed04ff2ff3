"""Who may do what: every (action, role) pair allowed or refused as docs/security.md's table
says, a refusal names the role needed, and direct mode's file owner holds every role."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from mes.domain.authority import (
    PERMISSIONS,
    Action,
    AuthMethod,
    Context,
    NotAuthorized,
    Principal,
    Role,
    authorize,
    doing,
    effective_action,
    may,
)
from mes.domain.errors import LotTrackerError
from mes.domain.model import HoldSource

# The specification, written out as docs/security.md has it (O T E Q A C V).
SPEC = {
    Action.READ: "OTEQACV",
    Action.START: "O.E....",
    Action.TRACK_IN: "OTE..C.",
    Action.TRACK_OUT: "OTE..C.",
    Action.COMPLETE: "O.E..C.",
    Action.ABORT: "OTE..C.",
    Action.HOLD: "OTEQ.C.",
    Action.RELEASE: "O.EQ...",
    Action.RELEASE_RULED: "..EQ...",
    Action.REWORK: "..E....",
    Action.SCRAP: "...Q...",
    Action.SCRAP_SITES: "...Q...",
    Action.SPLIT: "O.E....",
    Action.MERGE: "O.E....",
    Action.JOB: ".....C.",
    Action.TOOL_MODE: ".TE..C.",
    Action.TOOL_DOWN: ".TE....",
    Action.TOOL_RESET: "OTE....",
    Action.QUALIFY: ".TE....",
    Action.TOOL_REPORT: ".....C.",
    Action.USERS: "....A..",
    Action.CHANGES: ".TEQA..",
    Action.DURABLES: ".TE....",
    Action.MATERIALS: "..EQ...",
    Action.MATERIAL_HANDLING: "OTEQ...",
    Action.QUARANTINE: "...Q...",
    Action.MATERIAL_RELEASE: "...Q...",
    Action.REASONS: "...Q...",
    Action.SPC: "..E....",
    Action.FLOW_PUBLISH: "..E....",
    Action.FLOW_APPROVE: "..EQ...",
    Action.FLOW_RETIRE: "..E....",
    Action.MIGRATE: "..E....",
}
COLUMNS = (
    Role.OPERATOR,
    Role.TECHNICIAN,
    Role.ENGINEER,
    Role.QUALITY,
    Role.ADMIN,
    Role.CONTROLLER,
    Role.VIEWER,
)
PAIRS = [(a, r, SPEC[a][i] != ".") for a in Action for i, r in enumerate(COLUMNS)]


DOC_ROWS = {
    "read (lots, tools, users)": (Action.READ,),
    "start a lot": (Action.START,),
    "track-in, track-out": (Action.TRACK_IN, Action.TRACK_OUT),
    "complete": (Action.COMPLETE,),
    "abort a step": (Action.ABORT,),
    "hold": (Action.HOLD,),
    "release a hold an operator placed": (Action.RELEASE,),
    "release a hold a claimed limit": (Action.RELEASE_RULED,),
    "rework": (Action.REWORK,),
    "scrap a lot, scrap sites": (Action.SCRAP, Action.SCRAP_SITES),
    "split, merge": (Action.SPLIT, Action.MERGE),
    "start and record a tool's job": (Action.JOB,),
    "tool manual / auto": (Action.TOOL_MODE,),
    "declare a tool down": (Action.TOOL_DOWN,),
    "ask for a tool's alarm reset": (Action.TOOL_RESET,),
    "qualify, disqualify a tool": (Action.QUALIFY,),
    "register tools": (Action.TOOL_REPORT,),
    "users, roles, passwords": (Action.USERS,),
    "read the engineering changes": (Action.CHANGES,),
    "durables:": (Action.DURABLES,),
    "material lots: add": (Action.MATERIALS,),
    "material lots: thaw": (Action.MATERIAL_HANDLING,),
    "material lots: quarantine": (Action.QUARANTINE,),
    "material lots: sign a release from quarantine": (Action.MATERIAL_RELEASE,),
    "hold and scrap reason codes": (Action.REASONS,),
    "SPC charts and limits": (Action.SPC,),
    "publish and retire flow versions": (
        Action.FLOW_PUBLISH,
        Action.FLOW_RETIRE,
        Action.MIGRATE,
    ),
    "approve a flow version": (Action.FLOW_APPROVE,),
}
"""Each row of docs/security.md's table (by how its first cell starts: the longest that
fits) and the actions it stands for."""


def test_the_table_in_docs_security_md_is_the_code_s() -> None:
    """docs/security.md's table is "the one table of which role may do what": it had no row
    for a tool's alarm reset (operators, technicians and engineers may ask for one), and gave
    a flow version's approval to engineers alone (quality signs second). Every action has a
    row, and its marks are PERMISSIONS'."""
    text = (Path(__file__).parents[2] / "docs" / "security.md").read_text(encoding="utf-8")
    header = "| action | operator | technician | engineer | quality | admin | controller | viewer |"
    lines = text[text.index(header) :].splitlines()[2:]
    rows = list(itertools.takewhile(lambda line: line.startswith("|"), lines))
    shown: dict[Action, frozenset[Role]] = {}
    for row in rows:
        label, *marks = (cell.strip() for cell in row.strip("|").split("|"))
        starts = [start for start in DOC_ROWS if label.startswith(start)]
        assert starts, f"a row of docs/security.md's table this test does not know: {label!r}"
        actions = DOC_ROWS[max(starts, key=len)]  # "hold", and "hold and scrap reason codes"
        roles = frozenset(r for r, mark in zip(COLUMNS, marks, strict=True) if mark == "✔")
        for action in actions:
            assert action not in shown, label
            shown[action] = roles
    assert shown == dict(PERMISSIONS)


def _who(role: Role) -> Principal:
    return Principal(f"{role.value}1", frozenset({role}), AuthMethod.PASSWORD)


def test_the_table_has_a_row_for_every_action_and_the_spec_every_role() -> None:
    assert set(PERMISSIONS) == set(Action) == set(SPEC)
    assert set(COLUMNS) == set(Role)


@pytest.mark.parametrize(("action", "role", "allowed"), PAIRS, ids=lambda v: str(v))
def test_every_action_is_allowed_or_refused_to_every_role_as_specified(
    action: Action, role: Role, allowed: bool
) -> None:
    context = Context("L1", HoldSource.LIMIT if action is Action.RELEASE_RULED else None)
    if allowed:
        assert authorize(_who(role), action, context) is action
        return
    with pytest.raises(NotAuthorized) as refused:
        authorize(_who(role), action, context)
    needed = sorted(r.value for r in PERMISSIONS[action])
    assert list(refused.value.allowed) == needed
    assert " or ".join(needed) in refused.value.message
    assert refused.value.to_dict()["error"] == "not_authorized"


@pytest.mark.parametrize(
    "source",
    [
        HoldSource.LIMIT,
        HoldSource.ALARM,
        HoldSource.CONTROLLER,
        HoldSource.SPC,
        HoldSource.QUEUE_TIME,
    ],
)
def test_a_hold_the_rules_placed_is_released_only_by_quality_or_engineering(
    source: HoldSource,
) -> None:
    """A queue-time hold too (found by a quality engineer's walkthrough): the flow's limit
    placed it, and docs/flow-files.md has an engineer decide rework or release, yet the
    operator who tracked the lot in late could release it with their own signature."""
    with pytest.raises(NotAuthorized, match=f"release a hold placed by {source.value}"):
        authorize(_who(Role.OPERATOR), Action.RELEASE, Context("L1", source))
    for role in (Role.QUALITY, Role.ENGINEER):
        assert authorize(_who(role), Action.RELEASE, Context("L1", source)) is Action.RELEASE_RULED


def test_an_operator_releases_a_hold_an_operator_placed() -> None:
    context = Context("L1", HoldSource.OPERATOR)
    assert authorize(_who(Role.OPERATOR), Action.RELEASE, context) is Action.RELEASE


def test_a_refusal_is_a_lot_tracker_refusal_naming_who_and_the_lot() -> None:
    nobody = Principal("eve", frozenset(), AuthMethod.API_KEY)
    with pytest.raises(LotTrackerError) as refused:
        authorize(nobody, Action.SCRAP, Context("L7"))
    assert (
        refused.value.message == "eve (no role) may not scrap lot L7: that needs the role quality"
    )
    assert refused.value.lot_id == "L7"


def test_the_file_owner_in_direct_mode_holds_every_role() -> None:
    owner = Principal.file_owner("alice")
    assert owner.method is AuthMethod.FILE_OWNER and owner.roles == frozenset(Role)
    for action in Action:
        authorize(owner, action, Context(hold_source=HoldSource.ALARM))


@pytest.mark.parametrize("action", list(Action))
def test_every_refusal_says_what_was_asked_in_words(action: Action) -> None:
    nobody = Principal("eve", frozenset(), AuthMethod.API_KEY)
    for context in (Context(), Context("L7", HoldSource.SPC)):
        with pytest.raises(NotAuthorized) as refused:
            authorize(nobody, action, context)
        said = refused.value.message
        row = effective_action(action, context)
        assert said.startswith(f"eve (no role) may not {doing(row, context)}: that needs")
        assert "_" not in said.split(":")[0] and "{" not in said


@pytest.mark.parametrize("action", list(Action))
def test_may_answers_as_authorize_for_every_role_action_and_hold_source(action: Action) -> None:
    """What a page offers (``may``) is what the server allows (``authorize``), for each role
    alone and for the roles together, on no hold and on a hold of each source."""
    people = [_who(role) for role in Role] + [
        Principal("olga", frozenset({Role.OPERATOR, Role.QUALITY}), AuthMethod.PASSWORD),
        Principal("eve", frozenset(), AuthMethod.API_KEY),
    ]
    for who in people:
        for source in (None, *HoldSource):
            context = Context("L1", source)
            try:
                authorize(who, action, context)
                allowed = True
            except NotAuthorized:
                allowed = False
            assert may(who, action, context) is allowed, (who.roles, action, source)


def test_may_follows_the_source_of_the_hold_a_release_lifts() -> None:
    operator, quality = _who(Role.OPERATOR), _who(Role.QUALITY)
    assert may(operator, Action.RELEASE, Context("L1", HoldSource.OPERATOR))
    assert not may(operator, Action.RELEASE, Context("L1", HoldSource.SPC))
    assert may(quality, Action.RELEASE, Context("L1", HoldSource.SPC))
