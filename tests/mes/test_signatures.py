"""The rules of electronic signatures, pure (mes.domain.signatures): which operations are
signed and by how many, what a missing or wrong signature says, the two-person rule, and the
binding of a signature to one version of one lot."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flows import load_library
from mes.domain import commands as cmd
from mes.domain import operations as ops
from mes.domain.audit import Finding
from mes.domain.authority import Action, AuthMethod, Principal, Role
from mes.domain.errors import InvalidInput
from mes.domain.flowapproval import ApprovalStale, check_approval
from mes.domain.flowversions import FlowVersion, VersionState
from mes.domain.model import Lot
from mes.domain.signature_audit import SignedEntry, check_signature_rows
from mes.domain.signatures import (
    SIGNED,
    Signature,
    SignatureGiven,
    SignatureMethod,
    SignaturePolicy,
    SignatureRefused,
    SignatureRequired,
    SignatureStale,
    Signer,
    check_signatures,
    default_meaning,
    sign_entry,
    signatures_from_json,
)

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
QA1 = Principal("qa1", frozenset({Role.QUALITY}), AuthMethod.SESSION, "Q. A. One")
QA2 = Principal("qa2", frozenset({Role.QUALITY}), AuthMethod.SESSION, "Q. A. Two")
OP1 = Principal("op1", frozenset({Role.OPERATOR}), AuthMethod.SESSION, "O. P. One")
TWO_FOR_SCRAP = SignaturePolicy(frozenset({Action.SCRAP}))


def _lot() -> Lot:
    flow = load_library().get("fo-organic")
    return ops.start_lot(cmd.StartLot("L1", "fo-organic", "op1"), flow, NOW).lot


def _signed(
    who: Principal, version: int | None = 1, meaning: str = "approved scrap"
) -> tuple[SignatureGiven, Signer]:
    given = SignatureGiven(who.name, meaning, password="secret", lot_version=version)
    return given, Signer(
        who.name, who.printed_name or who.name, who.roles, SignatureMethod.PASSWORD
    )


def test_release_scrap_rework_migrate_the_override_and_approval_are_signed_and_nothing_else() -> (
    None
):
    policy = SignaturePolicy()
    assert {a for a in Action if policy.signers(a)} == {
        Action.RELEASE,
        Action.RELEASE_RULED,
        Action.SCRAP,
        Action.SCRAP_SITES,
        Action.REWORK,
        Action.MIGRATE,
        Action.FLOW_APPROVE,
        Action.MATERIAL_RELEASE,
    }
    assert SignaturePolicy.from_names(["approve_flow"]).signers(Action.FLOW_APPROVE) == 2
    assert TWO_FOR_SCRAP.signers(Action.SCRAP) == 2
    assert TWO_FOR_SCRAP.signers(Action.SCRAP_SITES) == 1
    assert SignaturePolicy.from_names(["scrap", "release_ruled"]).two_signers == {
        Action.SCRAP,
        Action.RELEASE_RULED,
    }
    with pytest.raises(InvalidInput, match="'hold' is not an operation that is signed") as bad:
        SignaturePolicy.from_names(["hold"])
    assert set(bad.value.allowed) == {a.value for a in SIGNED} - {"flow_approve"} | {"approve_flow"}


def test_a_missing_signature_names_the_action_the_meaning_and_how_many_sign() -> None:
    with pytest.raises(SignatureRequired) as missing:
        check_signatures(Action.SCRAP, _lot(), QA1, [], TWO_FOR_SCRAP, NOW)
    assert missing.value.to_dict() == {
        "error": "signature_required",
        "message": missing.value.message,
        "lot": "L1",
        "action": "scrap",
        "signers_needed": 2,
        "signers_given": 0,
        "meaning": "approved scrap",
    }
    assert "must be signed by two different people" in missing.value.message
    with pytest.raises(SignatureRequired, match="a second signer"):
        check_signatures(Action.SCRAP, _lot(), QA1, [_signed(QA1)], TWO_FOR_SCRAP, NOW)


def test_two_signers_are_two_different_people_each_with_the_role() -> None:
    lot = _lot()
    with pytest.raises(SignatureRefused, match="qa1 signed twice"):
        check_signatures(Action.SCRAP, lot, QA1, [_signed(QA1), _signed(QA1)], TWO_FOR_SCRAP, NOW)
    with pytest.raises(SignatureRefused, match="op1 may not sign the scrap of lot L1") as role:
        check_signatures(Action.SCRAP, lot, QA1, [_signed(QA1), _signed(OP1)], TWO_FOR_SCRAP, NOW)
    assert role.value.allowed == ("quality",) and role.value.signer == "op1"
    signed = check_signatures(
        Action.SCRAP, lot, QA1, [_signed(QA1), _signed(QA2, meaning=" second ")], TWO_FOR_SCRAP, NOW
    )
    assert [(s.signer, s.printed_name, s.meaning) for s in signed] == [
        ("qa1", "Q. A. One", "approved scrap"),
        ("qa2", "Q. A. Two", "second"),
    ]


def test_nobody_signs_for_anybody_else() -> None:
    with pytest.raises(SignatureRefused, match="must be that of op1") as refused:
        check_signatures(Action.RELEASE, _lot(), OP1, [_signed(QA1)], SignaturePolicy(), NOW)
    assert refused.value.signer == "qa1"


def test_a_signature_is_bound_to_the_lot_version_it_was_given_for() -> None:
    lot = _lot()
    with pytest.raises(SignatureStale, match="carried out already") as stale:
        check_signatures(Action.SCRAP, lot, QA1, [_signed(QA1, version=0)], SignaturePolicy(), NOW)
    assert stale.value.to_dict()["signed_version"] == 0
    assert stale.value.to_dict()["lot_version"] == lot.version
    with pytest.raises(InvalidInput, match="names the version of lot L1"):
        check_signatures(Action.SCRAP, lot, QA1, [_signed(QA1, None)], SignaturePolicy(), NOW)


def test_a_meaning_is_required_and_an_os_signature_only_in_direct_mode() -> None:
    lot = _lot()
    with pytest.raises(InvalidInput, match="needs its meaning"):
        check_signatures(
            Action.SCRAP, lot, QA1, [_signed(QA1, meaning="  ")], SignaturePolicy(), NOW
        )
    os_given = SignatureGiven("qa1", "approved scrap")
    os_signer = Signer("qa1", "qa1", QA1.roles, SignatureMethod.OS)
    with pytest.raises(SignatureRefused, match="only in direct database mode"):
        check_signatures(Action.SCRAP, lot, QA1, [(os_given, os_signer)], SignaturePolicy(), NOW)
    owner = Principal.file_owner("alice", "Alice Liddell")
    mine = Signer("alice", "Alice Liddell", owner.roles, SignatureMethod.OS)
    [signature] = check_signatures(
        Action.SCRAP,
        lot,
        owner,
        [(SignatureGiven("alice", "scrap: voids"), mine)],
        SignaturePolicy(),
        NOW,
    )
    assert (signature.method, signature.printed_name) == (SignatureMethod.OS, "Alice Liddell")
    assert default_meaning(Action.RELEASE, " checked ") == "approved release: checked"
    assert default_meaning(Action.REWORK, None) == "approved rework"


def test_a_password_never_shows_in_a_signature_given() -> None:
    assert "secret" not in repr(SignatureGiven("qa1", "m", password="secret", lot_version=1))


def test_the_signed_entry_records_its_signatures_inside_what_its_hash_covers() -> None:
    lot = _lot()
    change = ops.hold(lot, cmd.HoldLot("L1", "op1", "check"), NOW)
    [signature] = check_signatures(
        Action.SCRAP, lot, QA1, [_signed(QA1)], SignaturePolicy(), datetime(2030, 1, 1, tzinfo=UTC)
    )
    signed, timed = sign_entry(change, [signature])
    entry = signed.entries[0]
    assert timed[0].at == entry.at  # one moment for the operation and its signatures
    assert entry.data["signatures"] == [timed[0].manifest()]
    assert set(entry.data["signatures"][0]) == {"signer", "printed_name", "meaning", "at", "method"}


def _row(seq: int, digest: str, meaning: str = "approved release", lot: str = "L1") -> Signature:
    return Signature(lot, "qa1", "Q. A. One", meaning, NOW, SignatureMethod.PASSWORD, digest, seq)


def test_verification_finds_a_signature_without_its_entry_changed_or_missing() -> None:
    recorded = _row(1, "h1").manifest()
    signed = {"h1": SignedEntry(7, "L1", (recorded,))}
    seqs = {"h1": 7, "h0": 6}.get
    assert check_signature_rows(signed, [_row(1, "h1")], seqs) == (None, 1)
    unlinked, _ = check_signature_rows(signed, [_row(1, "gone")], seqs)
    assert unlinked is not None and unlinked.finding is Finding.SIGNATURE_UNLINKED
    assert "no entry of the history has that hash" in unlinked.message
    moved, _ = check_signature_rows(signed, [_row(1, "h0")], seqs)
    assert moved is not None and "entry 6 records no signature" in moved.message
    changed, _ = check_signature_rows(signed, [_row(1, "h1", meaning="other")], seqs)
    assert changed is not None and changed.finding is Finding.SIGNATURE_CHANGED
    other_lot, _ = check_signature_rows(signed, [_row(1, "h1", lot="L2")], seqs)
    assert other_lot is not None and other_lot.finding is Finding.SIGNATURE_UNLINKED
    missing, _ = check_signature_rows(signed, [], seqs)
    assert missing is not None and missing.finding is Finding.SIGNATURE_MISSING
    assert (missing.seq, missing.lot_id) == (7, "L1")


def test_signatures_from_a_request_body_are_checked_field_by_field() -> None:
    body = [{"username": "qa1", "password": "pw", "meaning": "approved", "lot_version": 3}]
    [given] = signatures_from_json(body)
    assert (given.username, given.meaning, given.password, given.lot_version) == (
        "qa1",
        "approved",
        "pw",
        3,
    )
    assert signatures_from_json(None) == ()
    for bad, expected in (
        ({"username": "qa1"}, "expected a list"),
        (["qa1"], "signatures\\[0\\]: expected an object"),
        ([{**body[0], "role": "quality"}], "unknown field role"),
        ([{**body[0], "password": None}], "signatures\\[0\\].password: expected a string"),
        ([{**body[0], "lot_version": "3"}], "lot_version: expected the lot's version"),
        ([{**body[0], "lot_version": True}], "lot_version"),
        ([{**body[0], "lot_version": 0}], "lot_version"),
    ):
        with pytest.raises(InvalidInput, match=expected):
            signatures_from_json(bad)


def test_a_flow_approval_is_bound_to_the_approvals_its_signer_saw() -> None:
    """A signature naming ``approvals_seen`` counts only while the version has that many
    approvals: a replay (the approval it made is there now) is stale; one without it (direct
    mode, the OS account) is not checked for it."""
    engineer = Principal("eng1", frozenset({Role.ENGINEER}), AuthMethod.SESSION)
    draft = FlowVersion("f", 2, "ab" * 32, "eng1", NOW, "note", VersionState.DRAFT)
    signer = Signer("eng1", "Erin Engineer", frozenset({Role.ENGINEER}), SignatureMethod.PASSWORD)
    given = SignatureGiven("eng1", "approved", "pw", approvals_seen=0)
    two = SignaturePolicy.from_names(["approve_flow"])
    made, state = check_approval(draft, engineer, [(given, signer)], two, NOW)
    assert state is VersionState.DRAFT and [a.signer for a in made] == ["eng1"]
    with pytest.raises(ApprovalStale) as stale:
        check_approval(
            FlowVersion("f", 2, "ab" * 32, "eng1", NOW, "note", VersionState.DRAFT, approvals=made),
            engineer,
            [(given, signer)],
            two,
            NOW,
        )
    assert stale.value.to_dict() == {
        "error": "signature_stale",
        "message": stale.value.message,
        "approvals_seen": 0,
        "approvals": 1,
    }
