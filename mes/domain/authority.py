"""Who may do what: the typed principal every entry point makes from verified credentials,
and the ONE table of which role may do which action (docs/security.md shows it).

Pure: no I/O. The service layer calls :func:`authorize` before it changes anything; a refusal
raises :class:`NotAuthorized`, which names the roles the action needs, and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from mes.domain.errors import LotTrackerError
from mes.domain.model import HoldSource, Operation


class Role(StrEnum):
    OPERATOR = "operator"
    """Runs lots on the line: start, move, hold, split, merge."""
    TECHNICIAN = "technician"
    """Looks after tools: manual/automatic dispatch, moves lots through a tool's steps."""
    ENGINEER = "engineer"
    """Process engineer: owns the flow; rework, releases of holds the rules placed."""
    QUALITY = "quality"
    """Scrap, and releases of holds the rules placed."""
    ADMIN = "admin"
    """Users and their roles; no lot or tool operations (separation of duties)."""
    CONTROLLER = "controller"
    """The line controller, a system: dispatch, jobs, tool states, holds on alarms."""
    VIEWER = "viewer"
    """Reads only: lots, history, tools, the line, the event feed's outbox (a reporting
    system, an ERP or MES above that only reads); no operation on a lot, tool or user."""


class AuthMethod(StrEnum):
    """How a principal's identity was established (recorded with what it does)."""

    FILE_OWNER = "file_owner"
    """Direct database mode: the OS account that owns the database file holds every role."""
    OS_ACCOUNT = "os_account"
    """A local client, by its peer credentials on the server's Unix socket."""
    PASSWORD = "password"
    SESSION = "session"
    """A session token from a password login."""
    API_KEY = "api_key"
    SYSTEM = "system"
    """A system identity inside the server process (the line controller)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is acting: a name the history records, the roles held, and how it was known."""

    name: str
    roles: frozenset[Role]
    method: AuthMethod
    printed_name: str | None = None
    """The person's full name, as a signature shows it."""

    @classmethod
    def file_owner(cls, os_account: str, printed_name: str | None = None) -> Principal:
        """Direct mode: the owner of the database file, holding every role (``printed_name``:
        the account's full name, for its signatures; default its name)."""
        return cls(os_account, frozenset(Role), AuthMethod.FILE_OWNER, printed_name or os_account)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "roles": sorted(r.value for r in self.roles),
            "method": self.method.value,
        }


class Action(StrEnum):
    """What a principal asks to do (the rows of :data:`PERMISSIONS`)."""

    READ = "read"
    START = "start"
    TRACK_IN = "track_in"
    TRACK_OUT = "track_out"
    COMPLETE = "complete"
    ABORT = "abort"
    HOLD = "hold"
    RELEASE = "release"
    """Release of a hold an operator placed."""
    RELEASE_RULED = "release_ruled"
    """Release of a hold a claimed limit, a tool alarm or the controller placed (a
    measurement or a machine said no: quality or engineering must look)."""
    REWORK = "rework"
    SCRAP = "scrap"
    SCRAP_SITES = "scrap_sites"
    SPLIT = "split"
    MERGE = "merge"
    JOB = "job"
    """Start and record a tool's job on a lot (the line controller)."""
    TOOL_MODE = "tool_mode"
    """Switch a tool between automatic dispatch and manual (the controller too: a tool whose
    recipe does not verify is taken out of dispatch)."""
    TOOL_DOWN = "tool_down"
    """Declare a tool out of production (planned maintenance, not scheduled) and bring it
    back: people's word, not the controller's (it reports what the tool does)."""
    TOOL_RESET = "tool_reset"
    """Ask a tool's line controller to reset its alarm (``pkgline tool reset``), or withdraw
    the request."""
    QUALIFY = "qualify"
    """Qualify or disqualify a tool for a step (``pkgline tool qualify|disqualify``): the
    people who look after the tools and the process, as for a tool's dispatch."""
    TOOL_REPORT = "tool_report"
    """Register tools, report their states, heartbeat (the line controller)."""
    USERS = "users"
    """Add users, change roles, disable, reset passwords, issue and revoke API keys; read the
    whole security log."""
    CHANGES = "changes"
    """Read the engineering changes of the security log (``user events --kind
    engineering_change``): those who make them and quality, who reviews them."""
    DURABLES = "durables"
    """Add durables (capillaries, saw blades, mold chases, stencils, nozzles), mount and
    unmount them, renew them after cleaning (``pkgline durable``)."""
    MATERIALS = "materials"
    """Add consumable material lots with their expiry and clocks (``pkgline material add``)."""
    MATERIAL_HANDLING = "material_handling"
    """Thaw material lots, load them on tools and unload them (the floor's handling)."""
    QUARANTINE = "quarantine"
    """Quarantine a material lot, release it, and hold the product lots that got it (a
    recall: ``pkgline material quarantine|release|hold-lots``)."""
    MATERIAL_RELEASE = "material_release"
    """The signature of a material lot's release from quarantine (the row of the signed
    operation: who may sign it; asking for it is QUARANTINE's)."""
    REASONS = "reasons"
    """Keep the hold and scrap reason-code catalogues (``pkgline reason``)."""
    SPC = "spc"
    """Set SPC charts and their limits, clear a tool an SPC violation inhibited."""
    FLOW_PUBLISH = "flow_publish"
    """Publish a flow version (a draft: no lot starts on it)."""
    FLOW_APPROVE = "flow_approve"
    """Approve a draft flow version, signed: new lots start on it."""
    FLOW_RETIRE = "flow_retire"
    """Retire a flow version: no new lot starts on it."""
    MIGRATE = "migrate"
    """Move a lot to another version of its flow (its path so far valid there)."""


_ALL = frozenset(Role)
_O, _T, _E, _Q, _A, _C = (
    Role.OPERATOR,
    Role.TECHNICIAN,
    Role.ENGINEER,
    Role.QUALITY,
    Role.ADMIN,
    Role.CONTROLLER,
)

PERMISSIONS: Mapping[Action, frozenset[Role]] = {
    Action.READ: _ALL,
    Action.START: frozenset({_O, _E}),
    Action.TRACK_IN: frozenset({_O, _T, _E, _C}),
    Action.TRACK_OUT: frozenset({_O, _T, _E, _C}),
    Action.COMPLETE: frozenset({_O, _E, _C}),
    Action.ABORT: frozenset({_O, _T, _E, _C}),
    Action.HOLD: frozenset({_O, _T, _E, _Q, _C}),
    Action.RELEASE: frozenset({_O, _E, _Q}),
    Action.RELEASE_RULED: frozenset({_E, _Q}),
    Action.REWORK: frozenset({_E}),
    Action.SCRAP: frozenset({_Q}),
    Action.SCRAP_SITES: frozenset({_Q}),
    Action.SPLIT: frozenset({_O, _E}),
    Action.MERGE: frozenset({_O, _E}),
    Action.JOB: frozenset({_C}),
    Action.TOOL_MODE: frozenset({_T, _E, _C}),
    Action.TOOL_DOWN: frozenset({_T, _E}),
    Action.TOOL_RESET: frozenset({_O, _T, _E}),
    Action.QUALIFY: frozenset({_T, _E}),
    Action.TOOL_REPORT: frozenset({_C}),
    Action.USERS: frozenset({_A}),
    Action.CHANGES: frozenset({_T, _E, _Q, _A}),
    Action.DURABLES: frozenset({_T, _E}),
    Action.MATERIALS: frozenset({_E, _Q}),
    Action.MATERIAL_HANDLING: frozenset({_O, _T, _E, _Q}),
    Action.QUARANTINE: frozenset({_Q}),
    Action.MATERIAL_RELEASE: frozenset({_Q}),
    Action.REASONS: frozenset({_Q}),
    Action.SPC: frozenset({_E}),
    Action.FLOW_PUBLISH: frozenset({_E}),
    Action.FLOW_APPROVE: frozenset({_E, _Q}),  # quality: the second signer (approve_flow)
    Action.FLOW_RETIRE: frozenset({_E}),
    Action.MIGRATE: frozenset({_E}),
}
"""The one table of who may do what."""

OPERATION_ACTIONS: Mapping[Operation, Action] = {
    Operation.START: Action.START,
    Operation.TRACK_IN: Action.TRACK_IN,
    Operation.TRACK_OUT: Action.TRACK_OUT,
    Operation.ABORT: Action.ABORT,
    Operation.HOLD: Action.HOLD,
    Operation.RELEASE: Action.RELEASE,
    Operation.SCRAP: Action.SCRAP,
    Operation.SCRAP_SITES: Action.SCRAP_SITES,
    Operation.SPLIT: Action.SPLIT,
    Operation.SPLIT_FROM: Action.SPLIT,
    Operation.MERGE: Action.MERGE,
    Operation.MERGE_INTO: Action.MERGE,
    Operation.REWORK: Action.REWORK,
    Operation.COMPLETE: Action.COMPLETE,
    Operation.JOB_START: Action.JOB,
    Operation.JOB_RECORD: Action.JOB,
    Operation.MIGRATE: Action.MIGRATE,
}
"""The row of :data:`PERMISSIONS` each lot operation is asked by."""


def narrowed(row: frozenset[Role], named: frozenset[Role]) -> frozenset[Role]:
    """The roles of ``row`` (who may, by the table) that a reason code naming ``named`` leaves:
    those of ``row`` it names; where it names none of them, those it names (a code's word
    stands over the table's); where it names no role, ``row`` as it is. How a hold's code
    (:func:`mes.domain.reasons.release_roles`) and a material lot's quarantine
    (:meth:`mes.domain.material_quarantine.QuarantinedInput.narrow`) narrow a release."""
    if not named:
        return row
    return (row & named) or named


CONTROLLER_ONLY = frozenset(a for a, roles in PERMISSIONS.items() if roles == {Role.CONTROLLER})
"""What only the line controller does (a tool's jobs, its states)."""


def may_operate(principal: Principal, operation: Operation) -> bool:
    """Whether ``principal`` could do ``operation`` on some lot (a release: of some hold),
    for what a refusal offers instead: what only the line controller does is the controller's
    alone, not the file owner's, who holds every role but runs no tool."""
    action = OPERATION_ACTIONS[operation]
    if action in CONTROLLER_ONLY and principal.method is AuthMethod.FILE_OWNER:
        return False
    return may_ever(principal, action)


RULED_HOLDS = frozenset(
    {
        HoldSource.LIMIT,
        HoldSource.ALARM,
        HoldSource.CONTROLLER,
        HoldSource.SPC,
        HoldSource.QUEUE_TIME,
    }
)


@dataclass(frozen=True, slots=True)
class Context:
    """What the decision depends on besides the action: the hold a release would lift."""

    lot_id: str | None = None
    hold_source: HoldSource | None = None


DOING: dict[Action, str] = {
    Action.READ: "read {lot}",
    Action.START: "start {lot}",
    Action.TRACK_IN: "track in {lot}",
    Action.TRACK_OUT: "track out {lot}",
    Action.COMPLETE: "complete {lot}",
    Action.ABORT: "abort the step of {lot}",
    Action.HOLD: "hold {lot}",
    Action.RELEASE: "release {lot}",
    Action.REWORK: "rework {lot}",
    Action.SCRAP: "scrap {lot}",
    Action.SCRAP_SITES: "scrap sites of {lot}",
    Action.SPLIT: "split {lot}",
    Action.MERGE: "merge {lot}",
    Action.JOB: "run tools' jobs on {lot}",
    Action.TOOL_MODE: "switch a tool between automatic and manual dispatch",
    Action.TOOL_DOWN: "declare a tool down for planned maintenance or not scheduled, and up",
    Action.TOOL_RESET: "ask for a tool's alarm reset",
    Action.QUALIFY: "qualify or disqualify tools for steps",
    Action.TOOL_REPORT: "report tools' states as a line controller",
    Action.USERS: "manage users and API keys",
    Action.CHANGES: "read the engineering changes",
    Action.DURABLES: "add, mount, unmount or renew durables",
    Action.MATERIALS: "add material lots",
    Action.MATERIAL_HANDLING: "thaw, load or unload material lots",
    Action.QUARANTINE: "quarantine or release material lots, or hold the lots that got them",
    Action.MATERIAL_RELEASE: "sign the release of material lots from quarantine",
    Action.REASONS: "keep the reason codes",
    Action.SPC: "set SPC charts or clear an inhibited tool",
    Action.FLOW_PUBLISH: "publish flow versions",
    Action.FLOW_APPROVE: "approve flow versions",
    Action.FLOW_RETIRE: "retire flow versions",
    Action.MIGRATE: "move {lot} to another flow version",
    Action.RELEASE_RULED: "release a hold placed by {source} on {lot}",
}
"""What each action is, in the words of a refusal ("NAME (ROLES) may not ..."): ``{lot}``
is "lot ID" when the refusal names one, else "lots"; ``{source}`` the source of the hold a
release would lift."""


def doing(action: Action, context: Context) -> str:
    """``action`` in words, on the lot and hold of ``context``."""
    lot = f"lot {context.lot_id}" if context.lot_id else "lots"
    source = context.hold_source.value if context.hold_source else "the rules"
    return DOING[action].format(lot=lot, source=source)


class NotAuthorized(LotTrackerError):
    """The principal holds none of the roles the action needs. ``allowed`` lists them."""

    kind = "not_authorized"

    def __init__(
        self,
        message: str,
        *,
        needed: Iterable[Role],
        lot_id: str | None = None,
        action: Action | None = None,
    ):
        self.needed = tuple(sorted(needed))
        self.action = action
        super().__init__(message, lot_id=lot_id, allowed=[r.value for r in self.needed])


def effective_action(action: Action, context: Context) -> Action:
    """The row of the table that decides: a release of a hold the rules placed is its own."""
    if action is Action.RELEASE and context.hold_source in RULED_HOLDS:
        return Action.RELEASE_RULED
    return action


def may_ever(principal: Principal, action: Action) -> bool:
    """Whether some lot could let ``principal`` do ``action`` (a release: of a hold the rules
    placed or of another): checked before anything costly (a signature's password), the
    lot's own row after it is read."""
    rows = (Action.RELEASE, Action.RELEASE_RULED) if action is Action.RELEASE else (action,)
    return any(principal.roles & PERMISSIONS[row] for row in rows)


def may(principal: Principal, action: Action, context: Context | None = None) -> bool:
    """Whether ``principal`` may do ``action`` on the lot and hold of ``context``: the answer
    :func:`authorize` gives, without the refusal. What a page offers a person is read from
    here (a form they may not send is not shown); the service layer still decides."""
    return bool(principal.roles & PERMISSIONS[effective_action(action, context or Context())])


def authorize(principal: Principal, action: Action, context: Context | None = None) -> Action:
    """Return the row that allowed ``action``, or raise NotAuthorized naming the roles needed."""
    ctx = context or Context()
    row = effective_action(action, ctx)
    if may(principal, action, ctx):
        return row
    needed = PERMISSIONS[row]
    held = ", ".join(sorted(r.value for r in principal.roles)) or "no role"
    raise NotAuthorized(
        f"{principal.name} ({held}) may not {doing(row, ctx)}: that needs the role "
        f"{' or '.join(sorted(r.value for r in needed))}",
        needed=needed,
        lot_id=ctx.lot_id,
        action=row,
    )


CONTROLLER = Principal("controller", frozenset({Role.CONTROLLER}), AuthMethod.SYSTEM)
"""The line controller inside its own process (its system identity, revision 0005)."""
