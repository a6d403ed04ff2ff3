"""Versioned flows on SQLite and PostgreSQL: a lot keeps the version it started on whatever
is published after; drafts start no lot; approval needs the engineering role and is recorded
as a signature-like row on the version's content; a lot moves to another version only where
its path so far is valid there."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from re import sub
from typing import Any, ClassVar

import pytest
from sqlalchemy import select

from flows.loader import flow_sources, load_sources
from mes.adapters.audit import verify_history
from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.adapters.sql_flows import SqlFlowVersionStore
from mes.adapters.sql_identity import SqlSecurityLog
from mes.adapters.tables import security_events
from mes.domain import commands as cmd
from mes.domain.authority import Action, AuthMethod, NotAuthorized, Principal, Role
from mes.domain.errors import (
    InvalidInput,
    LimitViolated,
    OperationNotAllowed,
    SplitMergeNotAllowed,
    StepNotAllowed,
)
from mes.domain.flowversions import APPROVAL_MEANING, SYSTEM_AUTHOR, FlowVersion, VersionState
from mes.domain.identity import EventKind
from mes.domain.model import LotState, Operation
from mes.domain.signatures import (
    SignatureGiven,
    SignatureMethod,
    SignaturePolicy,
    SignatureRefused,
    SignatureRequired,
    Signer,
)
from mes.flowversions import FlowVersionService, UnknownVersion, VersionedFlows
from mes.service import LotService
from pkgline.bootstrap import flow_library, seed_flow_versions
from tests.mes.conftest import Clock

FLOW = "fc-heatsink-muf"
TO_MOLD = ["SUBSTRATE_LOAD", "FLIP_CHIP_BOND", "HEAT_SINK_ATTACH", "MOLD"]
ENGINEER = Principal("eng1", frozenset({Role.ENGINEER}), AuthMethod.FILE_OWNER, "Erin Engineer")
"""Direct mode's engineer: signs with the OS account (method os)."""
OPERATOR = Principal("op1", frozenset({Role.OPERATOR}), AuthMethod.PASSWORD, "Oscar Operator")

BALLS_REQUIRED = {
    f"{FLOW}.yaml": (
        "MOLD [BALL_MOUNT] [DICE]",
        "MOLD BALL_MOUNT [DICE]",
    )
}
MOVE_SIGNED = (SignatureGiven("eng1", "approved move to version 2"),)
NO_PASSIVES = {f"{FLOW}.yaml": ("[PASSIVE_ATTACH] ", "")}


def edited(changes: dict[str, tuple[str, str]]) -> dict[str, dict[str, str]]:
    files = flow_sources(FLOW)
    for name, (old, new) in changes.items():
        assert old in files[name]
        files[name] = files[name].replace(old, new)
    return {FLOW: files}


class SignedVersions:
    """The flow version service, its approvals signed by the engineer's OS account (direct
    mode) unless the test gives other signatures."""

    def __init__(self, service: FlowVersionService):
        self.service = service

    def __getattr__(self, name: str) -> Any:
        return getattr(self.service, name)

    async def approve(
        self,
        flow: str,
        number: int,
        *,
        by: Principal | None = None,
        signatures: Sequence[SignatureGiven] | None = None,
    ) -> FlowVersion:
        if signatures is None:
            signatures = (SignatureGiven((by or ENGINEER).name, APPROVAL_MEANING),)
        return await self.service.approve(flow, number, by=by, signatures=signatures)


@dataclass
class Line:
    lots: LotService
    versions: Any


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def line(request: pytest.FixtureRequest) -> AsyncIterator[Line]:
    """A lot service and a flow version service on a database ``db upgrade`` made (the
    packaged flows published and approved as version 1)."""
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    engine = create_engine(url)
    try:
        await upgrade(engine)
        await seed_flow_versions(engine)
        store = SqlFlowVersionStore(engine)
        clock = Clock()
        log = SqlSecurityLog(engine)
        lots = LotService(
            SqlUnitOfWorkFactory(engine),
            flow_library(),
            clock,
            principal=ENGINEER,
            security=log,
            versions=VersionedFlows(store),
        )
        yield Line(
            lots,
            SignedVersions(FlowVersionService(store, clock, principal=ENGINEER, security=log)),
        )
    finally:
        await engine.dispose()


async def _run(lots: LotService, lot: str, steps: Sequence[str]) -> None:
    for step in steps:
        await lots.track_in(cmd.TrackIn(lot, step, "op1"))
        await lots.track_out(cmd.TrackOut(lot, "op1"))


async def _start(lots: LotService, lot: str) -> int:
    started = await lots.start(cmd.StartLot(lot, FLOW, "op1", carriers=1))
    return started.lot.flow_version


async def test_db_upgrade_publishes_and_approves_the_packaged_files_as_version_1(
    line: Line,
) -> None:
    (v1,) = await line.versions.versions(FLOW)
    assert (v1.version, v1.state, v1.author) == (1, VersionState.APPROVED, SYSTEM_AUTHOR)
    assert v1.approvals[0].content_hash == v1.content_hash
    assert await line.versions.drift(flow_library()) == []


async def test_a_lot_started_before_a_change_completes_on_its_old_rules_and_a_new_lot_follows_the_new(
    line: Line,
) -> None:
    assert await _start(line.lots, "OLD") == 1
    (published,) = await line.versions.publish(edited(BALLS_REQUIRED), "balls always")
    assert published.new and published.version.state is VersionState.DRAFT
    assert await _start(line.lots, "STILL-OLD") == 1  # a draft starts no lot
    await line.versions.approve(FLOW, 2)
    assert await _start(line.lots, "NEW") == 2

    for lot in ("OLD", "NEW"):
        await _run(line.lots, lot, TO_MOLD)
    old = await line.lots.complete(cmd.CompleteLot("OLD", "op1"))  # BALL_MOUNT optional in v1
    assert old.lot.state is LotState.COMPLETED
    with pytest.raises(StepNotAllowed, match="required next: BALL_MOUNT"):
        await line.lots.complete(cmd.CompleteLot("NEW", "op1"))  # v2 requires BALL_MOUNT
    assert line.lots.next_steps(await line.lots.get("NEW")) == {"BALL_MOUNT"}
    drift = await line.versions.drift(flow_library())
    assert len(drift) == 1 and "differ from the active version 2" in drift[0]


async def test_drafts_and_retired_versions_start_no_lot(line: Line) -> None:
    await line.versions.publish(edited(BALLS_REQUIRED), "balls always")
    await line.versions.retire(FLOW, 1, "balls always from now on")
    with pytest.raises(OperationNotAllowed, match="no approved version"):
        await _start(line.lots, "L1")
    with pytest.raises(OperationNotAllowed, match="retired already"):
        await line.versions.retire(FLOW, 1, "again")
    await line.versions.approve(FLOW, 2)
    assert await _start(line.lots, "L1") == 2
    with pytest.raises(OperationNotAllowed, match="only a draft can be approved"):
        await line.versions.approve(FLOW, 2)


async def _changes(line: Line) -> list[Any]:
    store = line.versions.service._store
    async with store._engine.connect() as conn:
        query = (
            select(security_events)
            .where(security_events.c.kind == "engineering_change")
            .order_by(security_events.c.seq)
        )
        return list((await conn.execute(query)).mappings().all())


async def test_a_retirement_is_an_engineering_change_in_the_security_log_with_its_reason(
    line: Line,
) -> None:
    store = line.versions.service._store
    await line.versions.retire(FLOW, 1, "  voids at MOLD: back to the bench  ")
    with pytest.raises(OperationNotAllowed, match="retired already"):
        await line.versions.retire(FLOW, 1, "again")
    [row] = await _changes(line)  # the refused second retirement recorded none
    assert (row["actor"], row["method"], row["action"]) == ("eng1", "file_owner", "flow_retire")
    detail = row["detail"]
    assert (detail["flow"], detail["version"]) == (FLOW, 1)
    assert detail["reason"] == "voids at MOLD: back to the bench"
    assert detail["before"]["state"] == "approved" and detail["before"]["retired_by"] is None
    assert detail["after"]["state"] == "retired" and detail["after"]["retired_by"] == "eng1"
    assert detail["after"]["content_hash"] == detail["before"]["content_hash"]
    found = await verify_history(store._engine)
    assert found.ok and found.security_events >= 1, found.problem


@pytest.mark.parametrize("reason", ["", "   ", "\u200b"])
async def test_a_retirement_without_a_reason_is_refused_changing_nothing(
    line: Line, reason: str
) -> None:
    with pytest.raises(InvalidInput, match="reason"):
        await line.versions.retire(FLOW, 1, reason)
    assert (await line.versions.version(FLOW, 1)).state is VersionState.APPROVED
    assert await _changes(line) == []


async def test_a_publication_and_each_approval_are_engineering_changes_in_the_security_log(
    line: Line,
) -> None:
    """A flow version's publication and approvals were kept only in its own rows; the
    security log, where the other engineering changes are read (user events, the station's
    security page), now has them too, in the same transaction."""
    (published,) = await line.versions.publish(edited(BALLS_REQUIRED), "balls always")
    (again,) = await line.versions.publish(edited(BALLS_REQUIRED), "the same files")
    assert published.new and not again.new
    [publish] = await _changes(line)  # the same content again: no new version, no change
    assert (publish["actor"], publish["method"], publish["action"]) == (
        "eng1",
        "file_owner",
        "flow_publish",
    )
    detail = publish["detail"]
    assert (detail["flow"], detail["version"], detail["before"]) == (FLOW, 2, None)
    after = detail["after"]
    assert (after["state"], after["author"], after["note"], after["approvals"]) == (
        "draft",
        "eng1",
        "balls always",
        [],
    )
    assert after["content_hash"] == published.version.content_hash

    with pytest.raises(NotAuthorized):
        await line.versions.approve(FLOW, 2, by=OPERATOR)
    approved = await line.versions.approve(FLOW, 2)
    with pytest.raises(OperationNotAllowed, match="only a draft can be approved"):
        await line.versions.approve(FLOW, 2)
    [_, approve] = await _changes(line)  # neither refusal recorded a change
    assert (approve["actor"], approve["action"]) == ("eng1", "flow_approve")
    detail = approve["detail"]
    assert (detail["flow"], detail["version"]) == (FLOW, 2)
    assert (detail["before"]["state"], detail["before"]["approvals"]) == ("draft", [])
    (signed,) = detail["after"]["approvals"]
    assert detail["after"]["state"] == "approved"
    assert (signed["signer"], signed["printed_name"], signed["meaning"], signed["method"]) == (
        "eng1",
        "Erin Engineer",
        APPROVAL_MEANING,
        "os",
    )
    assert signed["at"] == approved.approvals[0].at.isoformat()
    found = await verify_history(line.versions.service._store._engine)
    assert found.ok, found.problem


async def test_approval_needs_the_engineering_role_and_is_a_signed_record_of_the_content(
    line: Line,
) -> None:
    (published,) = await line.versions.publish(edited(BALLS_REQUIRED), "balls always")
    with pytest.raises(NotAuthorized, match="needs the role engineer"):
        await line.versions.approve(FLOW, 2, by=OPERATOR)
    assert (await line.versions.version(FLOW, 2)).state is VersionState.DRAFT
    approved = await line.versions.approve(FLOW, 2)
    (approval,) = approved.approvals
    assert (approval.signer, approval.printed_name, approval.meaning, approval.method) == (
        "eng1",
        "Erin Engineer",
        APPROVAL_MEANING,
        "os",
    )
    assert approval.content_hash == published.version.content_hash
    again = await line.versions.version(FLOW, 2)
    assert again.state is VersionState.APPROVED and again.approvals == (approval,)
    with pytest.raises(NotAuthorized):
        await line.versions.publish(edited(NO_PASSIVES), "no passives", by=OPERATOR)


async def test_the_same_content_is_one_version_and_a_flow_that_does_not_load_is_not_published(
    line: Line,
) -> None:
    (same,) = await line.versions.publish({FLOW: flow_sources(FLOW)}, "again")
    assert not same.new and same.version.version == 1
    broken = edited({f"{FLOW}.yaml": ("MOLD [BALL_MOUNT]", "MOLD [BALL_MOUNTT]")})
    with pytest.raises(Exception, match="BALL_MOUNTT"):
        await line.versions.publish(broken, "typo")
    assert [v.version for v in await line.versions.versions(FLOW)] == [1]


@pytest.mark.parametrize(
    ("file", "old", "new", "says"),
    [
        (
            "steps.yaml",
            "bond_temperature_c: {default: 260.0}",
            "bond_temperature_c: {default: -300.0}",
            "FLIP_CHIP_BOND recipe: bond_temperature_c: default -300.0 degC is below absolute zero",
        ),
        (
            "steps.yaml",
            "bond_force_n: {default: 30.0}",
            "bond_force_n: {default: -30.0}",
            "FLIP_CHIP_BOND recipe: bond_force_n: default -30.0 N is negative",
        ),
        (
            "steps.yaml",
            "bond_force_n: {default: 30.0}",
            "bond_force_n: {default: .nan}",
            "FLIP_CHIP_BOND recipe: bond_force_n: default nan N is not a finite number",
        ),
        (
            f"{FLOW}.yaml",
            "greater_than: 0\n",
            "greater_than: -.inf\n",
            "lot parameters: die_area_mm2: the limit greater than -inf is not of finite numbers",
        ),
    ],
)
async def test_a_version_with_a_value_that_cannot_be_physical_is_not_published(
    line: Line, file: str, old: str, new: str, says: str
) -> None:
    """A default goes to the tool as it is; an operator's -300 degC, -30 N or NaN is refused
    as bad data (mes/domain/physical.py), but a version whose steps.yaml made it the default
    was published and approved (with .nan, every track-in of the step then failed writing
    its history: malformed JSON), and YAML's .inf was taken as a limit. A version published
    before this check still builds, so that its lots stay readable and can be moved."""
    bad = edited({file: (old, new)})
    with pytest.raises(InvalidInput, match="cannot be physical") as refused:
        await line.versions.publish(bad, "typo")
    assert says in refused.value.message
    assert [v.version for v in await line.versions.versions(FLOW)] == [1]
    assert load_sources(bad[FLOW], FLOW).get(FLOW).steps["FLIP_CHIP_BOND"].recipe


async def test_a_lot_migrates_only_where_its_path_so_far_is_valid_in_the_new_version(
    line: Line,
) -> None:
    await line.versions.publish(edited(NO_PASSIVES), "no passives")
    await _start(line.lots, "P")
    await _start(line.lots, "Q")
    await _run(line.lots, "P", ["SUBSTRATE_LOAD", "FLIP_CHIP_BOND", "PASSIVE_ATTACH"])
    await _run(line.lots, "Q", ["SUBSTRATE_LOAD", "FLIP_CHIP_BOND"])
    with pytest.raises(OperationNotAllowed, match="version 2 is draft"):
        await line.lots.migrate(cmd.MigrateLot("Q", 2, "eng1", "new rules"), signatures=MOVE_SIGNED)
    with pytest.raises(UnknownVersion, match=f"flow {FLOW} has no version 9; expected one of"):
        await line.lots.migrate(cmd.MigrateLot("Q", 9, "eng1", "new rules"), signatures=MOVE_SIGNED)
    await line.versions.approve(FLOW, 2)
    with pytest.raises(OperationNotAllowed, match="path so far is not valid there"):
        await line.lots.migrate(cmd.MigrateLot("P", 2, "eng1", "new rules"), signatures=MOVE_SIGNED)
    with pytest.raises(NotAuthorized):
        await line.lots.migrate(cmd.MigrateLot("Q", 2, "op1", "new rules"), by=OPERATOR)
    with pytest.raises(SignatureRequired, match="must be signed by one person"):
        await line.lots.migrate(cmd.MigrateLot("Q", 2, "eng1", "new rules"))
    moved = await line.lots.migrate(
        cmd.MigrateLot("Q", 2, "eng1", "new rules"), signatures=MOVE_SIGNED
    )
    assert moved.lot.flow_version == 2
    (entry,) = moved.entries
    assert entry.operation is Operation.MIGRATE
    (signature,) = entry.data["signatures"]
    assert (signature["signer"], signature["method"], signature["meaning"]) == (
        "eng1",
        "os",
        "approved move to version 2",
    )
    assert (entry.data["from_version"], entry.data["to_version"]) == (1, 2)
    assert "PASSIVE_ATTACH" not in line.lots.next_steps(moved.lot)
    with pytest.raises(OperationNotAllowed, match="already"):
        await line.lots.migrate(cmd.MigrateLot("Q", 2, "eng1", "again"), signatures=MOVE_SIGNED)
    assert (await line.lots.get("P")).flow_version == 1


async def test_a_lot_migrates_only_where_its_parameters_are_within_the_new_versions_limits(
    line: Line,
) -> None:
    """A lot's parameters were checked at its start, against its version then: a lot with a
    300 mm2 die moved onto a version that allows dies under 200 mm2 only, and ran on it
    outside its limits."""
    smaller = edited(
        {f"{FLOW}.yaml": ("    greater_than: 0\n", "    greater_than: 0\n    less_than: 200\n")}
    )
    big = await line.lots.start(cmd.StartLot("BIG", FLOW, "op1", params={"die_area_mm2": "300"}))
    await line.lots.start(cmd.StartLot("FIT", FLOW, "op1", params={"die_area_mm2": "150"}))
    await line.versions.publish(smaller, "dies under 200 mm2")
    await line.versions.approve(FLOW, 2)
    with pytest.raises(LimitViolated) as refused:
        await line.lots.migrate(
            cmd.MigrateLot("BIG", 2, "eng1", "new rules"), signatures=MOVE_SIGNED
        )
    assert refused.value.message.startswith(
        f"lot BIG cannot move to version 2 of flow {FLOW}: its lot parameters break that "
        "version's limits: At lot start, die_area_mm2 is 300"
    )
    assert (await line.lots.get("BIG")).version == big.lot.version  # nothing changed
    moved = await line.lots.migrate(
        cmd.MigrateLot("FIT", 2, "eng1", "new rules"), signatures=MOVE_SIGNED
    )
    assert moved.lot.flow_version == 2


async def test_split_children_keep_the_version_and_a_merge_needs_the_same(line: Line) -> None:
    await line.lots.start(cmd.StartLot("A", FLOW, "op1", carriers=2))
    await line.versions.publish(edited(BALLS_REQUIRED), "balls always")
    await line.versions.approve(FLOW, 2)
    child = await line.lots.split(cmd.SplitLot("A", "A1", ("2",), "op1"))
    assert child.lot.flow_version == 1
    assert await _start(line.lots, "B") == 2
    with pytest.raises(SplitMergeNotAllowed, match=r"v1 vs .* v2"):
        await line.lots.merge(cmd.MergeLots("A1", "B", "op1"))


QUALITY = Principal("qa1", frozenset({Role.QUALITY}), AuthMethod.PASSWORD, "Quinn Quality")


class Passwords:
    """The identity service's part a signature needs, for two known people (the identity
    service itself is tested in tests/mes/test_identity*.py)."""

    people: ClassVar[dict[str, tuple[str, str, frozenset[Role]]]] = {
        "eng1": ("eng-secret", "Erin Engineer", frozenset({Role.ENGINEER})),
        "eng2": ("eng2-secret", "Evan Engineer", frozenset({Role.ENGINEER})),
        "qa1": ("qa-secret", "Quinn Quality", frozenset({Role.QUALITY})),
    }

    async def verify_signer(
        self, username: str, password: str, *, action: Action, lot_id: str | None = None
    ) -> Signer:
        secret, name, roles = self.people[username]
        if password != secret:
            raise SignatureRefused(f"wrong password for {username}", signer=username)
        return Signer(username, name, roles, SignatureMethod.PASSWORD)


async def test_two_person_approval_needs_a_second_different_signer_with_the_quality_role(
    line: Line,
) -> None:
    """[signatures] two_signers = ["approve_flow"]: the engineer's approval leaves the version
    a draft, approved by 1 of 2; the same person again, an engineer, or a wrong password
    are refused (and recorded); the quality signer's approval makes it approved."""
    base = line.versions.service
    two = FlowVersionService(
        base._store,
        Clock(),
        principal=ENGINEER,
        security=base._guard._log,
        signatures=SignaturePolicy.from_names(["approve_flow"]),
        verifier=Passwords(),
    )
    (published,) = await two.publish(edited(BALLS_REQUIRED), "balls always")
    with pytest.raises(SignatureRequired, match="must be signed"):
        await two.approve(FLOW, 2)
    first = await two.approve(FLOW, 2, signatures=(SignatureGiven("eng1", "approved: balls"),))
    assert first.state is VersionState.DRAFT and len(first.approvals) == 1
    assert await _start(line.lots, "STILL-OLD") == 1  # approved by 1 of 2: still a draft
    with pytest.raises(SignatureRefused, match=r"approved .* already"):
        await two.approve(FLOW, 2, signatures=(SignatureGiven("eng1", "again"),))
    eng2 = Principal("eng2", frozenset({Role.ENGINEER}), AuthMethod.PASSWORD, "Evan Engineer")
    with pytest.raises(SignatureRefused, match="needs the role quality"):
        await two.approve(
            FLOW, 2, by=eng2, signatures=(SignatureGiven("eng2", "ok", "eng2-secret", 1),)
        )
    with pytest.raises(SignatureRefused, match="wrong password"):
        await two.approve(FLOW, 2, by=QUALITY, signatures=(SignatureGiven("qa1", "ok", "nope", 1),))
    with pytest.raises(NotAuthorized):
        await two.approve(FLOW, 2, by=OPERATOR, signatures=(SignatureGiven("op1", "ok", "x", 1),))
    assert (await two.version(FLOW, 2)).state is VersionState.DRAFT
    async with base._store._engine.connect() as conn:
        rows = (await conn.execute(select(security_events))).mappings().all()
    refused = [r for r in rows if r["kind"] == EventKind.SIGNATURE_REFUSED.value]
    assert {r["subject"] for r in refused} >= {"eng1", "eng2", "qa1"}
    # the approval asked for unsigned is a refusal recorded too
    unsigned = [r for r in refused if r["subject"] is None]
    assert [(r["actor"], r["action"]) for r in unsigned] == [("eng1", "flow_approve")]
    assert "signature_required" in str(unsigned[0]["detail"])
    approved = await two.approve(
        FLOW, 2, by=QUALITY, signatures=(SignatureGiven("qa1", "quality approved", "qa-secret", 1),)
    )
    assert approved.state is VersionState.APPROVED
    assert [(a.signer, a.printed_name, a.method, a.meaning) for a in approved.approvals] == [
        ("eng1", "Erin Engineer", "os", "approved: balls"),
        ("qa1", "Quinn Quality", "password", "quality approved"),
    ]
    assert {a.content_hash for a in approved.approvals} == {published.version.content_hash}
    assert await _start(line.lots, "NEW") == 2


async def test_a_quality_signer_cannot_give_the_first_approval(line: Line) -> None:
    await line.versions.publish(edited(BALLS_REQUIRED), "balls always")
    with pytest.raises(SignatureRefused, match=r"first approval .* needs the role engineer"):
        await line.versions.approve(FLOW, 2, by=QUALITY, signatures=(SignatureGiven("qa1", "ok"),))
    with pytest.raises(SignatureRefused, match="nobody signs for anybody else"):
        await line.versions.approve(FLOW, 2, signatures=(SignatureGiven("someone", "ok"),))
    assert (await line.versions.version(FLOW, 2)).state is VersionState.DRAFT


MOLD_WINDOW = "window: {lower: 165.0, upper: 185.0, target: 175.0, origin: "
MOLD_ORIGIN = "(line practice: epoxy molding compound transfer molding)"


async def test_a_lot_keeps_the_set_point_windows_of_the_version_it_started_on(
    line: Line,
) -> None:
    """Windows are part of a version's files: a database seeded before they existed keeps
    its versions (and their lots) without them until a version with them is published and
    approved. Version 1 here (db upgrade) has MOLD's window 165 to 185 degC; version 2
    widens it, version 3 has none (the files as they were before windows). A lot is held to
    the window of the version it started on, whatever is approved after, and flow diff names
    the change."""
    await _start(line.lots, "A")
    wider = MOLD_WINDOW.replace("185.0", "195.0")
    await line.versions.publish(edited({"steps.yaml": (MOLD_WINDOW, wider)}), "wider window")
    await line.versions.approve(FLOW, 2)
    assert await _start(line.lots, "B") == 2
    before = sub(r"window: \{[^}]*\}", "", flow_sources(FLOW)["steps.yaml"])
    await line.versions.publish(
        edited({"steps.yaml": (flow_sources(FLOW)["steps.yaml"], before)}), "none"
    )
    await line.versions.approve(FLOW, 3)
    assert await _start(line.lots, "C") == 3
    for lot in "ABC":
        await _run(line.lots, lot, TO_MOLD[:-1])
    at_190 = {"mold_temperature_c": "190"}
    with pytest.raises(InvalidInput, match="set-point window 165 to 185 degC") as refused:
        await line.lots.track_in(cmd.TrackIn("A", "MOLD", "op1", values=at_190))
    assert refused.value.field == "values.mold_temperature_c"
    assert (await line.lots.get("A")).state is LotState.WAITING
    assert (await line.lots.track_in(cmd.TrackIn("B", "MOLD", "op1", values=at_190))).lot.running
    at_900 = {"mold_temperature_c": "900"}
    assert (await line.lots.track_in(cmd.TrackIn("C", "MOLD", "op1", values=at_900))).lot.running
    assert await line.versions.diff(FLOW, 1, 2) == [
        f"MOLD recipe: mold_temperature_c window [165.0, 185.0] target 175.0 {MOLD_ORIGIN} -> "
        f"[165.0, 195.0] target 175.0 {MOLD_ORIGIN}"
    ]
    removed = await line.versions.diff(FLOW, 1, 3)
    assert (
        f"MOLD recipe: mold_temperature_c window [165.0, 185.0] target 175.0 {MOLD_ORIGIN} -> none"
        in removed
    )


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_a_lot_started_before_any_version_is_published_is_on_the_first_whatever_the_file_says(
    request: pytest.FixtureRequest, db: str
) -> None:
    """A schema made without db upgrade's flow versions (the files rule): the lot is on
    version 1, the number db upgrade then publishes the files as, not the file's own
    ``version:`` (7 here), which would name a version that never exists: the lot would no
    longer move once the versions are published."""
    engine = create_engine(request.getfixturevalue(f"{db}_url"))
    try:
        await upgrade(engine)
        files = edited({f"{FLOW}.yaml": ("\nversion: 1\n", "\nversion: 7\n")})[FLOW]
        library = load_sources(files)
        assert library.get(FLOW).version == 7
        lots = LotService(
            SqlUnitOfWorkFactory(engine),
            library,
            Clock(),
            principal=ENGINEER,
            versions=VersionedFlows(SqlFlowVersionStore(engine)),
        )
        assert await _start(lots, "EARLY") == 1
        await _run(lots, "EARLY", TO_MOLD[:2])
        assert await seed_flow_versions(engine)  # db upgrade, later: the files as version 1
        await _run(lots, "EARLY", TO_MOLD[2:])
        assert (await lots.get("EARLY")).flow_version == 1
        assert await _start(lots, "LATER") == 1
    finally:
        await engine.dispose()
