"""Electronic signatures (21 CFR Part 11 §11.50, §11.70, §11.200): which operations need
one, how many signers, and the pure checks a signed request must pass. No I/O: the service
(:mod:`mes.signing`) verifies passwords through the identity service, then calls
:func:`check_signatures` inside the transaction that reads the lot, and
:func:`sign_entry` before the entry is written.

What a signature is bound to (docs/security.md, "Electronic signatures"):

- one operation on one lot: it is given with that call, and the history entry it signs
  records it (``data["signatures"]``, inside the entry's hash);
- one version of the lot: a password signature names the lot version it was given for
  (``lot_version``, as ``lot show`` and the API report it). The operation bumps the version,
  so the same signed request sent again is refused (:class:`SignatureStale`) and changes
  nothing; a request signed before someone else moved the lot is refused the same way.

Errors::

    LotTrackerError
    ├── SignatureRequired   the operation needs (more) signatures: which, what meaning, how many
    ├── SignatureRefused    a signature given cannot count (wrong signer, role, same person
    │                       twice, empty meaning, os signature outside direct mode, ...)
    └── SignatureStale      given for another version of the lot (a replay, or the lot moved)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from mes.domain.authority import PERMISSIONS, Action, AuthMethod, Principal, Role
from mes.domain.errors import InvalidInput, LotTrackerError
from mes.domain.model import Change

# re-exported: what a signature is, kept in a module of its own for lot reports
from mes.domain.signature_records import Signature as Signature
from mes.domain.signature_records import SignatureMethod as SignatureMethod
from mes.domain.text import counted, one_line, optional_line

MAX_MEANING_LENGTH = 500


SIGNED: Mapping[Action, str] = {
    Action.RELEASE: "approved release",
    Action.RELEASE_RULED: "approved release of a hold the rules placed",
    Action.SCRAP: "approved scrap",
    Action.SCRAP_SITES: "approved scrap of sites",
    Action.REWORK: "approved rework",
    Action.MIGRATE: "approved move to another flow version",
    Action.FLOW_APPROVE: "approved for production: new lots of this flow start on this version",
    Action.MATERIAL_RELEASE: "approved release from quarantine",
}
"""The operations that need a signature (the rows of the authority table, so a release of a
hold a claimed limit, an alarm or the controller placed, the override, is its own row), each
with the words a meaning built from a command starts with."""

_POLICY_NAMES: Mapping[Action, str] = {Action.FLOW_APPROVE: "approve_flow"}

SIGNABLE_NAMES: Mapping[str, Action] = {_POLICY_NAMES.get(a, a.value): a for a in SIGNED}
"""The names ``[signatures] two_signers`` in line.toml may list (``approve_flow``: a flow
version needs a second signer, with the quality role, before it is approved)."""


@dataclass(frozen=True, slots=True)
class SignaturePolicy:
    """How many signers each signed operation needs: one, or two where the configuration
    asks (``[signatures] two_signers``)."""

    two_signers: frozenset[Action] = frozenset()

    @classmethod
    def from_names(cls, names: Iterable[str]) -> SignaturePolicy:
        actions = set()
        for name in names:
            action = SIGNABLE_NAMES.get(name.strip().lower())
            if action is None:
                raise InvalidInput(
                    f"{name!r} is not an operation that is signed", allowed=sorted(SIGNABLE_NAMES)
                )
            actions.add(action)
        return cls(frozenset(actions))

    def signers(self, action: Action) -> int:
        """How many people must sign ``action`` (0: it is not signed)."""
        if action not in SIGNED:
            return 0
        return 2 if action in self.two_signers else 1


@dataclass(frozen=True, slots=True)
class SignatureGiven:
    """A signature as a request gives it (the API passes it through; the CLI makes one).

    ``password``: the signer's password, given again for this signature (method
    ``password``); None for the OS account's signature in direct mode (method ``os``).
    ``lot_version``: the version of the lot the signer saw and signs (required with a
    password: that is what makes a replay fail). ``approvals_seen``: for a flow version's
    approval, how many approvals the version had when the signer saw it (the server
    requires it: a replay, or a version someone approved since, is refused)."""

    username: str
    meaning: str
    password: str | None = field(default=None, repr=False)
    lot_version: int | None = None
    approvals_seen: int | None = None

    @property
    def method(self) -> SignatureMethod:
        return SignatureMethod.OS if self.password is None else SignatureMethod.PASSWORD


SIGNATURE_FIELDS = ("username", "password", "meaning", "lot_version")
"""What a signature given over the wire holds (the API's JSON)."""


def signatures_from_json(value: Any) -> tuple[SignatureGiven, ...]:
    """The signatures of a request body's ``signatures`` (a list of objects with
    ``username``, ``password``, ``meaning`` and ``lot_version``), or InvalidInput saying what
    was expected. A password signature needs all four; nothing else is accepted."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidInput(
            "signatures: expected a list of {username, password, meaning, lot_version}"
        )
    given = []
    for i, item in enumerate(value):
        where = f"signatures[{i}]"
        if not isinstance(item, dict):
            raise InvalidInput(f"{where}: expected an object with {', '.join(SIGNATURE_FIELDS)}")
        unknown = sorted(set(item) - set(SIGNATURE_FIELDS))
        if unknown:
            raise InvalidInput(
                f"{where}: unknown {'field' if len(unknown) == 1 else 'fields'} "
                f"{', '.join(unknown)}",
                allowed=SIGNATURE_FIELDS,
            )
        for name in ("username", "password", "meaning"):
            if not isinstance(item.get(name), str):
                raise InvalidInput(f"{where}.{name}: expected a string")
        version = item.get("lot_version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidInput(
                f"{where}.lot_version: expected the lot's version the signer signs (a whole "
                "number from 1, as the lot's 'version' says)"
            )
        given.append(SignatureGiven(item["username"], item["meaning"], item["password"], version))
    return tuple(given)


@dataclass(frozen=True, slots=True)
class Signer:
    """Who a signature's credentials proved: from the user record (or the OS account)."""

    username: str
    printed_name: str
    roles: frozenset[Role]
    method: SignatureMethod


class SignatureRequired(LotTrackerError):
    """The operation needs signatures that were not given: ``action``, the meaning expected
    and how many signers (``needed``; ``given`` so far)."""

    kind = "signature_required"

    def __init__(
        self,
        message: str,
        *,
        action: Action,
        needed: int,
        given: int,
        meaning: str,
        lot_id: str | None = None,
    ):
        super().__init__(message, lot_id=lot_id)
        self.action = action
        self.needed = needed
        self.given = given
        self.meaning = meaning

    def to_dict(self) -> dict[str, Any]:
        return {
            **super().to_dict(),
            "action": self.action.value,
            "signers_needed": self.needed,
            "signers_given": self.given,
            "meaning": self.meaning,
        }


class SignatureRefused(LotTrackerError):
    """A signature given cannot count; ``signer`` names whose (a refusal of authority: the
    service records it as a security event)."""

    kind = "signature_refused"

    def __init__(
        self,
        message: str,
        *,
        signer: str | None = None,
        action: Action | None = None,
        lot_id: str | None = None,
        allowed: Iterable[str] = (),
    ):
        super().__init__(message, lot_id=lot_id, allowed=allowed)
        self.signer = signer
        self.action = action

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.signer is not None:
            out["signer"] = self.signer
        return out


class SignatureStale(LotTrackerError):
    """Given for another version of the lot: this signed request was carried out already
    (a replay), or the lot changed after it was signed. Sign again what the lot is now."""

    kind = "signature_stale"

    def __init__(
        self,
        message: str,
        *,
        lot_id: str | None,
        signed: int,
        current: int,
        signer: str | None = None,
        action: Action | None = None,
    ):
        super().__init__(message, lot_id=lot_id)
        self.signed = signed
        self.current = current
        self.signer = signer
        """Whose signature was given for another version (the security event's subject)."""
        self.action = action
        """The operation it was given for (the security event's action)."""

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "signed_version": self.signed, "lot_version": self.current}


def check_meaning(meaning: str) -> str:
    """The meaning, stripped; InvalidInput when empty or too long."""
    text = one_line(meaning, "a signature's meaning")
    if not text:
        raise InvalidInput(
            "a signature needs its meaning (what the signer approves, e.g. 'approved release' "
            "or 'scrap: voids in mold'): it is empty"
        )
    if len(text) > MAX_MEANING_LENGTH:
        raise InvalidInput(f"a signature's meaning has at most {MAX_MEANING_LENGTH} characters")
    return text


def default_meaning(action: Action, reason: str | None) -> str:
    """The meaning direct mode builds from the command and its ``--reason``."""
    base = SIGNED.get(action, action.value.replace("_", " "))
    reason = optional_line(reason, "the reason")
    return f"{base}: {reason}" if reason else base


_NOUNS: Mapping[Action, str] = {
    Action.RELEASE: "the release of lot {}",
    Action.RELEASE_RULED: "the release of lot {} from a hold the rules placed",
    Action.SCRAP: "the scrap of lot {}",
    Action.SCRAP_SITES: "the scrap of sites of lot {}",
    Action.REWORK: "the rework of lot {}",
    Action.MIGRATE: "the move of lot {} to another flow version",
    Action.MATERIAL_RELEASE: "the release of material lot {} from quarantine",
}

_SUBJECTS: Mapping[Action, str] = {Action.MATERIAL_RELEASE: "material lot"}
"""What a signature's subject is called where it is not a product lot."""


class Signable(Protocol):
    """What a signature is bound to: a lot, or a material lot (its id, and its version,
    which every change of it bumps)."""

    @property
    def id(self) -> str: ...

    @property
    def version(self) -> int: ...


def _what(action: Action, lot_id: str) -> str:
    return _NOUNS.get(action, action.value.replace("_", " ") + " of lot {}").format(lot_id)


def _sentence(action: Action, lot_id: str) -> str:
    text = _what(action, lot_id)
    return text[:1].upper() + text[1:]


def check_not_a_system(action: Action, lot_id: str | None, principal: Principal) -> None:
    """A system (known by its API key) asking for a signed operation is refused, saying why:
    it has no password, so it can never sign, and the first signature must be the one who
    asks (it was told to give a password again, or that its password was wrong)."""
    if principal.method is not AuthMethod.API_KEY:
        return
    what = _what(action, lot_id or "?")
    raise SignatureRefused(
        f"{principal.name} is a system (an API key), and a system signs nothing: {what} "
        "must be asked for and signed by a person holding the role, with their password",
        signer=principal.name,
        action=action,
        lot_id=lot_id,
        allowed=sorted(r.value for r in PERMISSIONS[action]),
    )


def check_signatures(
    action: Action,
    lot: Signable,
    principal: Principal,
    signed: Sequence[tuple[SignatureGiven, Signer]],
    policy: SignaturePolicy,
    now: datetime,
) -> tuple[Signature, ...]:
    """The signatures ``action`` on ``lot`` by ``principal`` needs, from those given (each
    with the signer its credentials proved), or a refusal. ``action`` is the row of the
    authority table that decides (a release of a ruled hold is RELEASE_RULED).

    Rules: as many signers as the policy asks; the first is the principal acting (nobody
    signs for anybody else); every signer a different person holding a role the action
    needs; a meaning; a password signature names the lot's current version; an ``os``
    signature only in direct mode, by the file owner."""
    subject = _SUBJECTS.get(action, "lot")
    needed = policy.signers(action)
    if needed == 0:
        if signed:
            raise SignatureRefused(
                f"{action.value.replace('_', ' ')} is not a signed operation: give no signature",
                action=action,
                lot_id=lot.id,
                allowed=sorted(a.value for a in SIGNED),
            )
        return ()
    check_not_a_system(action, lot.id, principal)
    expected = SIGNED[action]
    if len(signed) < needed:
        who = "two different people" if needed == 2 else "one person"
        more = (
            " (a second signer, a different person with the role, must sign too)"
            if needed == 2 and signed
            else ""
        )
        raise SignatureRequired(
            f"{_sentence(action, lot.id)} must be signed by {who}: "
            f"{counted(len(signed), 'signature')} given{more}; each signer gives their password again and the meaning "
            f"(e.g. {expected!r})",
            action=action,
            needed=needed,
            given=len(signed),
            meaning=expected,
            lot_id=lot.id,
        )
    if len(signed) > needed:
        raise SignatureRefused(
            f"{_sentence(action, lot.id)} takes {counted(needed, 'signature')}; "
            f"{len(signed)} were given",
            action=action,
            lot_id=lot.id,
        )
    roles = PERMISSIONS[action]
    seen: set[str] = set()
    out: list[Signature] = []
    for index, (given, signer) in enumerate(signed):
        meaning = check_meaning(given.meaning)
        if index == 0 and signer.username != principal.name:
            raise SignatureRefused(
                f"the first signature must be that of {principal.name}, who asks for "
                f"{_what(action, lot.id)}: nobody signs for anybody else ({signer.username} "
                "signed)",
                signer=signer.username,
                action=action,
                lot_id=lot.id,
            )
        if signer.username in seen:
            raise SignatureRefused(
                f"{signer.username} signed twice: the second signature of "
                f"{_what(action, lot.id)} must be a different person's",
                signer=signer.username,
                action=action,
                lot_id=lot.id,
            )
        seen.add(signer.username)
        if not signer.roles & roles:
            raise SignatureRefused(
                f"{signer.username} may not sign {_what(action, lot.id)}: a signer needs the "
                f"role {' or '.join(sorted(r.value for r in roles))}",
                signer=signer.username,
                action=action,
                lot_id=lot.id,
                allowed=sorted(r.value for r in roles),
            )
        if signer.method is SignatureMethod.OS:
            if principal.method is not AuthMethod.FILE_OWNER or signer.username != principal.name:
                raise SignatureRefused(
                    "an OS account signs only in direct database mode, as the owner of the "
                    "database file: give the password with the signature",
                    signer=signer.username,
                    action=action,
                    lot_id=lot.id,
                )
        elif given.lot_version is None:
            raise InvalidInput(
                f"a signature with a password names the version of {subject} {lot.id} it "
                f"signs (lot_version; the {subject} is at version {lot.version} now)",
                lot_id=lot.id,
            )
        if given.lot_version is not None and given.lot_version != lot.version:
            raise SignatureStale(
                f"the signature of {signer.username} was given for {subject} {lot.id} at "
                f"version {given.lot_version}; the {subject} is at version {lot.version} now: "
                f"this signed request was carried out already, or the {subject} changed after "
                f"it was signed. Nothing was changed: look at the {subject} again and sign "
                "what it is now",
                lot_id=lot.id,
                signed=given.lot_version,
                current=lot.version,
                signer=signer.username,
                action=action,
            )
        out.append(
            Signature(lot.id, signer.username, signer.printed_name, meaning, now, signer.method)
        )
    return tuple(out)


def sign_entry(
    change: Change, signatures: Sequence[Signature]
) -> tuple[Change, tuple[Signature, ...]]:
    """The change with its first history entry (the operation's, on the lot asked) recording
    the signatures, so that the entry's hash covers them; and the signatures, timed as the
    entry is (one moment for the operation and its signatures)."""
    if not signatures:
        return change, ()
    entry = change.entries[0]
    if any(s.lot_id != entry.lot_id for s in signatures):
        raise ValueError("signatures for another lot than the entry they sign")
    timed = tuple(replace(s, at=entry.at) for s in signatures)
    data = {**entry.data, "signatures": [s.manifest() for s in timed]}
    return replace(change, entries=(replace(entry, data=data), *change.entries[1:])), timed


def linked(signatures: Sequence[Signature], entry_hash: str | None) -> tuple[Signature, ...]:
    """The signatures with the hash of the entry they sign (once it is chained)."""
    if entry_hash is None:
        raise ValueError("the signed entry has no hash: was it written?")
    return tuple(replace(s, entry_hash=entry_hash) for s in signatures)
