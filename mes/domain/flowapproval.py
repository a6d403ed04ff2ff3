"""Signed approval of a flow version (21 CFR Part 11 §11.50, §11.70): who may sign, how many
signers, when the version becomes approved. Pure: the service (:mod:`mes.flowversions`)
verifies passwords through the identity service first and runs :func:`check_approval` on the
version as the database holds it, inside the transaction that records the approvals.

Rules: the first approval of a version is an engineer's; where ``[signatures] two_signers``
names ``approve_flow`` a second, different person holding the quality role signs too before
the version is approved (until then it stays a draft, "approved by 1 of 2"). The first
signature given is the principal's own (nobody signs for anybody else); an ``os`` signature
only in direct mode, by the owner of the database file. Every approval is linked to the
version's content hash. A signature given with ``approvals_seen`` (the server requires it)
counts only while the version has that many approvals: a replayed request, or one signed
before somebody else approved, is refused (:class:`ApprovalStale`) and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from mes.domain.authority import Action, AuthMethod, Principal, Role
from mes.domain.flowversions import Approval, FlowVersion, VersionState, check_approvable
from mes.domain.signatures import (
    SIGNED,
    SignatureGiven,
    SignatureMethod,
    SignaturePolicy,
    SignatureRefused,
    SignatureRequired,
    SignatureStale,
    Signer,
    check_meaning,
)
from mes.domain.text import counted

APPROVER_ROLES: Sequence[Role] = (Role.ENGINEER, Role.QUALITY)
"""The role the first and the second approval of a version needs."""


def approvals_needed(policy: SignaturePolicy) -> int:
    return policy.signers(Action.FLOW_APPROVE)


def progress(version: FlowVersion, needed: int) -> str:
    """How far a version's approval is: 'approved by 1 of 2'."""
    return f"approved by {len(version.approvals)} of {needed}"


class ApprovalStale(SignatureStale):
    """Signed for a version with another number of approvals than it has now: this signed
    approval was carried out already (a replay), or somebody approved since."""

    def __init__(self, message: str, *, signed: int, current: int):
        super().__init__(message, lot_id=None, signed=signed, current=current)
        self.action = Action.FLOW_APPROVE

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": self.kind,
            "message": self.message,
            "approvals_seen": self.signed,
            "approvals": self.current,
        }


def check_fresh(version: FlowVersion, given: Sequence[SignatureGiven]) -> None:
    """Each signature that names the approvals its signer saw was given for the version as
    it is now; else :class:`ApprovalStale`."""
    have = len(version.approvals)
    for g in given:
        if g.approvals_seen is not None and g.approvals_seen != have:
            raise ApprovalStale(
                f"the signature of {g.username} was given for flow {version.flow} version "
                f"{version.version} with {counted(g.approvals_seen, 'approval')}; it has {have} now: this "
                "signed approval was carried out already, or somebody approved since. Nothing "
                "was changed: look at the version again (pkgline flow versions) and sign what "
                "it is now",
                signed=g.approvals_seen,
                current=have,
            )


def check_approval(
    version: FlowVersion,
    principal: Principal,
    signed: Sequence[tuple[SignatureGiven, Signer]],
    policy: SignaturePolicy,
    now: datetime,
) -> tuple[tuple[Approval, ...], VersionState]:
    """The approval records the signatures given make for ``version`` (as it is now, with
    the approvals it has), and the state it is in after them; or a refusal."""
    check_fresh(version, [given for given, _ in signed])
    check_approvable(version)
    needed = approvals_needed(policy)
    have = len(version.approvals)
    name = f"flow {version.flow} version {version.version}"
    if not signed:
        raise SignatureRequired(
            f"the approval of {name} must be signed: give your signature with its meaning "
            f"(e.g. {SIGNED[Action.FLOW_APPROVE]!r})",
            action=Action.FLOW_APPROVE,
            needed=needed - have,
            given=0,
            meaning=SIGNED[Action.FLOW_APPROVE],
        )
    room = min(max(needed - have, 1), len(APPROVER_ROLES) - have)
    # a draft has room for one more even where the policy now asks for fewer than it has
    if len(signed) > room:
        raise SignatureRefused(
            f"{name} needs {counted(needed, 'approval')} and has {have}: {len(signed)} more "
            "were given",
            action=Action.FLOW_APPROVE,
        )
    seen = {a.signer for a in version.approvals}
    out: list[Approval] = []
    for index, (given, signer) in enumerate(signed):
        meaning = check_meaning(given.meaning)
        if index == 0 and signer.username != principal.name:
            raise SignatureRefused(
                f"the first signature must be that of {principal.name}, who approves {name}: "
                f"nobody signs for anybody else ({signer.username} signed)",
                signer=signer.username,
                action=Action.FLOW_APPROVE,
            )
        if signer.username in seen:
            raise SignatureRefused(
                f"{signer.username} approved {name} already: the second approval must be a "
                "different person's",
                signer=signer.username,
                action=Action.FLOW_APPROVE,
            )
        seen.add(signer.username)
        role = APPROVER_ROLES[have + index]
        if role not in signer.roles:
            which = "first" if have + index == 0 else "second"
            raise SignatureRefused(
                f"{signer.username} may not give the {which} approval of {name}: it needs the "
                f"role {role.value}",
                signer=signer.username,
                action=Action.FLOW_APPROVE,
                allowed=[role.value],
            )
        if signer.method is SignatureMethod.OS and (
            principal.method is not AuthMethod.FILE_OWNER or signer.username != principal.name
        ):
            raise SignatureRefused(
                "an OS account signs only in direct database mode, as the owner of the "
                "database file: give the password with the signature",
                signer=signer.username,
                action=Action.FLOW_APPROVE,
            )
        out.append(
            Approval(
                flow=version.flow,
                version=version.version,
                content_hash=version.content_hash,
                signer=signer.username,
                printed_name=signer.printed_name,
                meaning=meaning,
                at=now,
                method=signer.method.value,
            )
        )
    state = VersionState.APPROVED if have + len(out) >= needed else VersionState.DRAFT
    return tuple(out), state
