"""Electronic signatures in the service layer: the passwords of a signed request checked
through the identity service (before the transaction: argon2id takes its time), then the
pure rules (:func:`mes.domain.signatures.check_signatures`) inside the transaction that
reads the lot, the signatures recorded in the entry they sign and written in the same
transaction, linked by its hash; refusals recorded as security events, too few signatures
(:class:`~mes.domain.signatures.SignatureRequired`) among them.

A service acting for nobody (code embedding the lot tracker: tests, benchmarks) asks for no
signature, as it checks no authority (:mod:`mes.guard`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from mes.domain.authority import Action, Principal
from mes.domain.errors import InvalidInput
from mes.domain.identity import EventKind, SecurityEvent, SignerRefused
from mes.domain.model import Change
from mes.domain.signatures import (
    SIGNED,
    Signable,
    Signature,
    SignatureGiven,
    SignatureMethod,
    SignaturePolicy,
    SignatureRefused,
    SignatureRequired,
    SignatureStale,
    Signer,
    check_meaning,
    check_not_a_system,
    check_signatures,
    sign_entry,
)
from mes.guard import SecurityLog

SIGNED_REQUESTS = frozenset(
    {Action.RELEASE, Action.SCRAP, Action.SCRAP_SITES, Action.REWORK, Action.MIGRATE}
)
"""The service calls that take signatures (a release's row, ruled or not, is decided on the
lot read in the transaction)."""


class SignatureVerifier(Protocol):
    async def verify_signer(
        self, username: str, password: str, *, action: Action, lot_id: str | None = None
    ) -> Signer:
        """The signer a user name and password prove, or a refusal (recorded; a wrong
        password counts towards the lockout): :meth:`mes.identity.IdentityService.verify_signer`."""
        ...


Signed = list[tuple[SignatureGiven, Signer]]


class Signing:
    """What the lot service needs for signatures: the policy (how many signers), the
    verifier of passwords, and the security log for refusals."""

    def __init__(
        self,
        policy: SignaturePolicy,
        verifier: SignatureVerifier | None,
        log: SecurityLog | None,
        clock: Callable[[], datetime],
    ):
        self.policy = policy
        self._verifier = verifier
        self._log = log
        self._clock = clock

    async def verify(
        self,
        who: Principal | None,
        action: Action,
        lot_id: str | None,
        given: Sequence[SignatureGiven],
        *,
        requests: frozenset[Action] = SIGNED_REQUESTS,
    ) -> Signed:
        """Each signature given, with the signer its credentials prove (passwords checked
        here, one by one; the rules that depend on the lot come later, in the transaction)."""
        if not given:
            return []
        if who is None:
            raise InvalidInput("this service acts for nobody: it takes no signature")
        if action not in requests:
            raise SignatureRefused(
                f"{action.value.replace('_', ' ')} is not a signed operation: give no signature",
                action=action,
                lot_id=lot_id,
                allowed=sorted(a.value for a in SIGNED),
            )
        if action in SIGNED and self.policy.signers(action) > 0:
            try:  # before any password is checked; recorded, as in the transaction
                check_not_a_system(action, lot_id, who)
            except SignatureRefused as refused:
                await self.refused(who, refused)
                raise
        for g in given:  # bad input first, before any password is checked
            check_meaning(g.meaning)
        signed: Signed = []
        for g in given:
            if g.password is None:  # the OS account's, in direct mode (checked in the rules)
                mine = g.username == who.name
                signer = Signer(
                    g.username,
                    (who.printed_name or who.name) if mine else g.username,
                    who.roles if mine else frozenset(),
                    SignatureMethod.OS,
                )
            elif self._verifier is None:
                raise SignatureRefused(
                    "passwords cannot be checked here (no identity service): sign where the "
                    "server runs",
                    signer=g.username,
                    action=action,
                    lot_id=lot_id,
                )
            else:
                try:
                    signer = await self._verifier.verify_signer(
                        g.username, g.password, action=action, lot_id=lot_id
                    )
                except SignerRefused as refused:
                    if len(given) < 2:
                        raise
                    # two signers at one screen: say whose password to give again (the name
                    # is the one typed; why stays the same for every cause, as for a login)
                    which = "first" if not signed else "second"
                    raise SignerRefused(
                        f"the {which} signer's ({g.username}) {refused.message}", lot_id=lot_id
                    ) from None
            signed.append((g, signer))
        return signed

    def check(
        self, row: Action, lot: Signable, who: Principal | None, signed: Signed
    ) -> tuple[Signature, ...]:
        """The signatures the operation needs, from those given, or a refusal (pure: runs
        inside the transaction that read ``lot``, before the operation's rule, so that a
        replayed request is told it is one). ``row``: the row of the authority table that
        decided (a release of a ruled hold is RELEASE_RULED)."""
        if who is None:
            return ()
        return check_signatures(row, lot, who, signed, self.policy, self._clock())

    @staticmethod
    def sign(
        change: Change, signatures: Sequence[Signature]
    ) -> tuple[Change, tuple[Signature, ...]]:
        """The change with the signatures recorded in its entry (:func:`sign_entry`)."""
        return sign_entry(change, signatures)

    async def refused(
        self, who: Principal | None, refusal: SignatureRefused | SignatureStale | SignatureRequired
    ) -> None:
        """Record a signature that could not count, or an operation asked for with too few
        signatures (after its transaction was rolled back): a refusal of authority, as
        every one is."""
        if self._log is None or who is None:
            return
        action = getattr(refusal, "action", None)
        detail: dict[str, object] = {"message": refusal.message, "error": refusal.kind}
        if isinstance(refusal, SignatureRequired):
            detail["signers_needed"] = refusal.needed
            detail["signers_given"] = refusal.given
        signer = getattr(refusal, "signer", None)
        if signer:
            detail["signer"] = signer
        await self._log.record(
            SecurityEvent(
                self._clock(),
                EventKind.SIGNATURE_REFUSED,
                who.name,
                who.method,
                subject=signer,
                action=action.value if isinstance(action, Action) else None,
                lot_id=refusal.lot_id,
                detail=detail,
            )
        )
