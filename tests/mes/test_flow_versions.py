"""Versioned flows on SQLite and PostgreSQL: a lot keeps the version it started on whatever
is published after; drafts start no lot; approval needs the engineering role and is recorded
as a signature-like row on the version's content; a lot moves to another version only where
its path so far is valid there."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import pytest

from flows.loader import flow_sources
from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.adapters.sql_flows import SqlFlowVersionStore
from mes.adapters.sql_identity import SqlSecurityLog
from mes.domain import commands as cmd
from mes.domain.authority import AuthMethod, NotAuthorized, Principal, Role
from mes.domain.errors import OperationNotAllowed, SplitMergeNotAllowed, StepNotAllowed
from mes.domain.flowversions import APPROVAL_MEANING, SYSTEM_AUTHOR, VersionState
from mes.domain.model import LotState, Operation
from mes.flowversions import FlowVersionService, VersionedFlows
from mes.service import LotService
from pkgline.bootstrap import flow_library, seed_flow_versions
from tests.mes.conftest import Clock

FLOW = "fc-heatsink-muf"
TO_MOLD = ["SUBSTRATE_LOAD", "FLIP_CHIP_BOND", "HEAT_SINK_ATTACH", "MOLD"]
ENGINEER = Principal("eng1", frozenset({Role.ENGINEER}), AuthMethod.PASSWORD, "Erin Engineer")
OPERATOR = Principal("op1", frozenset({Role.OPERATOR}), AuthMethod.PASSWORD, "Oscar Operator")

BALLS_REQUIRED = {
    f"{FLOW}.yaml": (
        "MOLD [BALL_MOUNT] [DICE]",
        "MOLD BALL_MOUNT [DICE]",
    )
}
NO_PASSIVES = {f"{FLOW}.yaml": ("[PASSIVE_ATTACH] ", "")}


def edited(changes: dict[str, tuple[str, str]]) -> dict[str, dict[str, str]]:
    files = flow_sources(FLOW)
    for name, (old, new) in changes.items():
        assert old in files[name]
        files[name] = files[name].replace(old, new)
    return {FLOW: files}


@dataclass
class Line:
    lots: LotService
    versions: FlowVersionService


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
        yield Line(lots, FlowVersionService(store, clock, principal=ENGINEER, security=log))
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
    await line.versions.retire(FLOW, 1)
    with pytest.raises(OperationNotAllowed, match="no approved version"):
        await _start(line.lots, "L1")
    with pytest.raises(OperationNotAllowed, match="retired already"):
        await line.versions.retire(FLOW, 1)
    await line.versions.approve(FLOW, 2)
    assert await _start(line.lots, "L1") == 2
    with pytest.raises(OperationNotAllowed, match="only a draft can be approved"):
        await line.versions.approve(FLOW, 2)


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
        "password",
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


async def test_a_lot_migrates_only_where_its_path_so_far_is_valid_in_the_new_version(
    line: Line,
) -> None:
    await line.versions.publish(edited(NO_PASSIVES), "no passives")
    await _start(line.lots, "P")
    await _start(line.lots, "Q")
    await _run(line.lots, "P", ["SUBSTRATE_LOAD", "FLIP_CHIP_BOND", "PASSIVE_ATTACH"])
    await _run(line.lots, "Q", ["SUBSTRATE_LOAD", "FLIP_CHIP_BOND"])
    with pytest.raises(OperationNotAllowed, match="version 2 is draft"):
        await line.lots.migrate(cmd.MigrateLot("Q", 2, "eng1", "new rules"))
    await line.versions.approve(FLOW, 2)
    with pytest.raises(OperationNotAllowed, match="path so far is not valid there"):
        await line.lots.migrate(cmd.MigrateLot("P", 2, "eng1", "new rules"))
    with pytest.raises(NotAuthorized):
        await line.lots.migrate(cmd.MigrateLot("Q", 2, "op1", "new rules"), by=OPERATOR)
    moved = await line.lots.migrate(cmd.MigrateLot("Q", 2, "eng1", "new rules"))
    assert moved.lot.flow_version == 2
    (entry,) = moved.entries
    assert entry.operation is Operation.MIGRATE
    assert (entry.data["from_version"], entry.data["to_version"]) == (1, 2)
    assert "PASSIVE_ATTACH" not in line.lots.next_steps(moved.lot)
    with pytest.raises(OperationNotAllowed, match="already"):
        await line.lots.migrate(cmd.MigrateLot("Q", 2, "eng1", "again"))
    assert (await line.lots.get("P")).flow_version == 1


async def test_split_children_keep_the_version_and_a_merge_needs_the_same(line: Line) -> None:
    await line.lots.start(cmd.StartLot("A", FLOW, "op1", carriers=2))
    await line.versions.publish(edited(BALLS_REQUIRED), "balls always")
    await line.versions.approve(FLOW, 2)
    child = await line.lots.split(cmd.SplitLot("A", "A1", ("2",), "op1"))
    assert child.lot.flow_version == 1
    assert await _start(line.lots, "B") == 2
    with pytest.raises(SplitMergeNotAllowed, match=r"v1 vs .* v2"):
        await line.lots.merge(cmd.MergeLots("A1", "B", "op1"))
