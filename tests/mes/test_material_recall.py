"""A material recall: quality quarantines a material lot (a bad lot of mold compound) with a
hold reason code and says why; it is then not loaded, a track-in on a tool where it is
loaded is refused saying what, by whom, why and how to clear it, and quality releases it;
its history records both. The recall's holds reach the product lots ``where-used`` reaches
(splits and merges): those still on the line are held in one transaction, each a normal
hold with the code and a text naming the material lot; those on hold already or off the
line are reported, not touched; run twice, nothing is held twice. Pure rules first, then
the service on every store, then two commands at once on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from flows import FlowLibrary
from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain import commands as cmd
from mes.domain import material_quarantine as rules
from mes.domain import materials as materials_rules
from mes.domain.authority import Action, AuthMethod, NotAuthorized, Principal, Role
from mes.domain.errors import (
    ConcurrentUpdate,
    InterlockRefused,
    InvalidInput,
    OperationNotAllowed,
    UnknownMaterial,
)
from mes.domain.identity import EventKind
from mes.domain.material_reach import Reached
from mes.domain.model import LotState, Operation
from mes.domain.signatures import SignatureGiven
from mes.equipment import EquipmentService
from mes.materials import MaterialService
from mes.ports import UnitOfWorkFactory
from mes.ports_materials import save_materials
from mes.reasons import ReasonService
from mes.service import LotService
from tests.mes.conftest import Clock
from tests.mes.racing import BothReadFirst, ReadFirstThen
from tests.mes.signers import Signers, signed
from tests.mes.test_materials import CTRL, OP, T0, TOOLS, UP
from tests.mes.test_service_authority import Log

QA = "qa1"
QUALITY = Principal(QA, frozenset({Role.QUALITY}), AuthMethod.PASSWORD)
OPERATOR = Principal(OP, frozenset({Role.OPERATOR}), AuthMethod.PASSWORD)
ENGINEER = Principal("pe1", frozenset({Role.ENGINEER}), AuthMethod.PASSWORD)


def _emc() -> materials_rules.Material:
    return materials_rules.add(
        "EMC-1", "mold_compound", T0 + timedelta(days=30), "eng", T0, thaw_minutes=0
    )[0]


# -- the pure rules ----------------------------------------------------------------------------


def test_a_quarantined_compound_is_refused_saying_by_whom_why_and_how_to_clear_it() -> None:
    emc = materials_rules.thaw(_emc(), "op", T0)[0]
    stopped, event = rules.quarantine(emc, "RECALL", "RECALL Material recall: voids", QA, T0)
    assert (event.event, event.by, event.reason) == (
        materials_rules.MaterialEventKind.QUARANTINED,
        QA,
        "RECALL Material recall: voids",
    )
    found = stopped.problem(T0 + timedelta(hours=1))
    assert found is not None and found[0] == "material_quarantined"
    assert found[1] == (
        "mold_compound EMC-1 is quarantined by qa1 since 2026-12-01 08:00 UTC: "
        "RECALL Material recall: voids"
    )
    assert "pkgline material release EMC-1" in found[2]
    assert "pkgline material unload EMC-1" in found[2]
    with pytest.raises(InterlockRefused) as refused:
        materials_rules.check_materials("L1", "MOLD", "MOLD-1", [stopped], T0)
    assert refused.value.interlock == "material_quarantined"
    with pytest.raises(OperationNotAllowed, match="EMC-1 is quarantined by qa1"):
        materials_rules.load(stopped, "MOLD-1", "molder", [], "op", T0)
    with pytest.raises(OperationNotAllowed, match="quarantined already, by qa1 since"):
        rules.quarantine(stopped, "RECALL", "again", QA, T0)
    with pytest.raises(InvalidInput, match="needs a reason"):
        rules.release(stopped, QA, T0, "  ")
    released, back = rules.release(stopped, QA, T0, "supplier cleared it")
    assert released.quarantine is None and released.problem(T0) is None
    assert (back.event.value, back.reason) == ("released", "supplier cleared it")
    with pytest.raises(OperationNotAllowed, match="EMC-1 is not quarantined"):
        rules.release(released, QA, T0, "twice")


def test_a_recall_holds_the_lots_waiting_or_running_and_reports_the_others() -> None:
    def r(lot: str, state: LotState | None) -> Reached:
        return Reached(lot, T0, (lot,), state)

    plan = rules.recall_plan(
        [
            r("A", LotState.WAITING),
            r("B", LotState.RUNNING),
            r("C", LotState.HOLD),
            r("D", LotState.COMPLETED),
            r("E", LotState.MERGED),
            r("F", LotState.SCRAPPED),
        ]
    )
    assert [x.lot_id for x in plan.to_hold] == ["A", "B"]
    assert [x.lot_id for x in plan.on_hold] == ["C"]
    assert [x.lot_id for x in plan.off_line] == ["D", "E", "F"]
    assert rules.recall_text("EMC-1", None) == "recall of material lot EMC-1"
    assert rules.recall_text("EMC-1", "voids") == "recall of material lot EMC-1: voids"


# -- the service, on every store ------------------------------------------------------------------


@pytest.fixture
def log() -> Log:
    return Log()


@pytest.fixture
def materials(store: UnitOfWorkFactory, clock: Clock, log: Log) -> MaterialService:
    return MaterialService(
        store, clock, principal=QUALITY, security=log, verifier=Signers([QUALITY])
    )


@pytest.fixture
async def line(equipment: EquipmentService, store: UnitOfWorkFactory, clock: Clock) -> None:
    await equipment.register("line-a", TOOLS)
    for tool in TOOLS:
        await equipment.report(tool.id, UP)
    reasons = ReasonService(store, clock)
    await reasons.add("RECALL", "hold", "Material recall", QA, release_roles=["quality"])
    await reasons.add("BROKEN", "scrap", "Broken package", QA)


async def _run(service: LotService, lot_id: str, step: str, tool: str | None = None) -> None:
    await service.track_in(cmd.TrackIn(lot_id, step, CTRL, tool=tool, dispatched=tool is not None))
    await service.track_out(cmd.TrackOut(lot_id, CTRL, dispatched=tool is not None))


async def _at_mold(service: LotService, lot_id: str) -> None:
    await service.start(cmd.StartLot(lot_id, "stiffener-bga", OP))
    for step, tool in [
        ("SUBSTRATE_LOAD", None),
        ("DIE_ATTACH", "DB-1"),
        ("WIRE_BOND", "WB-1"),
        ("STIFFENER_ATTACH", "SA-1"),
    ]:
        await _run(service, lot_id, step, tool)


def _mold(lot_id: str) -> cmd.TrackIn:
    return cmd.TrackIn(lot_id, "MOLD", CTRL, tool="MOLD-1", dispatched=True)


async def _loaded_emc(materials: MaterialService, clock: Clock) -> None:
    await materials.add(
        "EMC-1", "mold_compound", clock.now + timedelta(days=90), "eng", thaw_minutes=0
    )
    await materials.thaw("EMC-1", OP)
    await materials.load("EMC-1", "MOLD-1", OP)


@pytest.mark.usefixtures("line")
async def test_a_quarantined_compound_stops_the_molder_until_quality_releases_it(
    service: LotService, materials: MaterialService, clock: Clock
) -> None:
    await _loaded_emc(materials, clock)
    await _at_mold(service, "L1")
    stopped = await materials.quarantine("EMC-1", "RECALL", "voids in X-ray", QA)
    assert stopped.recall is None
    q = stopped.material.quarantine
    assert q is not None and (q.code, q.by) == ("RECALL", QA)
    assert q.reason == "RECALL Material recall: voids in X-ray"
    before = await service.get("L1")
    with pytest.raises(InterlockRefused) as refused:
        await service.track_in(_mold("L1"))
    assert refused.value.interlock == "material_quarantined"
    assert (
        "track-in of lot L1 at MOLD on MOLD-1 refused: mold_compound EMC-1 is quarantined by "
        "qa1 since"
    ) in refused.value.message
    assert "RECALL Material recall: voids in X-ray" in refused.value.message
    assert "pkgline material release EMC-1" in refused.value.expected
    assert await service.get("L1") == before

    await materials.unload("EMC-1", OP, "quarantined")  # taken off: allowed
    with pytest.raises(OperationNotAllowed, match="EMC-1 is quarantined by qa1"):
        await materials.load("EMC-1", "MOLD-1", OP)
    with pytest.raises(OperationNotAllowed, match="quarantined already, by qa1"):
        await materials.quarantine("EMC-1", "RECALL", "again", QA)
    seen = (await materials.show("EMC-1")).material
    released = await materials.release(
        "EMC-1", "supplier's analysis: not affected", QA, signatures=signed(QUALITY, seen)
    )
    assert released.quarantine is None
    await materials.load("EMC-1", "MOLD-1", OP)
    assert (await service.track_in(_mold("L1"))).lot.state is LotState.RUNNING
    events = [(e.event.value, e.by, e.reason) for e in (await materials.show("EMC-1")).events]
    assert events[3:6] == [
        ("quarantined", QA, "RECALL Material recall: voids in X-ray"),
        ("unloaded", OP, "quarantined"),
        ("released", QA, "supplier's analysis: not affected"),
    ]
    shown = (await materials.show("EMC-1")).material
    assert shown.quarantine is None and shown.tool_id == "MOLD-1"


@pytest.mark.usefixtures("line")
async def test_a_recall_holds_the_lots_on_the_line_that_got_it_once(
    service: LotService, materials: MaterialService, clock: Clock
) -> None:
    await _loaded_emc(materials, clock)
    for lot in ("A", "B", "C", "D", "E"):
        await _at_mold(service, lot)
    for lot in ("A", "B", "D"):
        await _run(service, lot, "MOLD", "MOLD-1")
    await service.track_in(_mold("C"))  # running on the molder: it got EMC-1 at the track-in
    await service.split(cmd.SplitLot("B", "B2", ("2",), OP))  # after the use: B2 got it
    await service.merge(cmd.MergeLots("B2", "B", OP))  # B2 off the line, into B
    await service.hold(cmd.HoldLot("D", OP, "wrong label"))
    await materials.unload("EMC-1", OP)  # E never got it

    recall = await materials.hold_lots("EMC-1", "RECALL", "voids in X-ray", QA)
    assert [r.lot_id for r in recall.held] == ["A", "B", "C"]
    assert {r.state for r in recall.held} == {LotState.HOLD}
    assert [r.lot_id for r in recall.on_hold] == ["D"]
    assert [(r.lot_id, r.state) for r in recall.off_line] == [("B2", LotState.MERGED)]
    for lot_id in ("A", "B", "C"):
        lot = await service.get(lot_id)
        assert lot.state is LotState.HOLD and lot.hold is not None
        assert lot.hold.code == "RECALL"
        assert lot.hold.reason == (
            "RECALL Material recall: recall of material lot EMC-1: voids in X-ray"
        )
        entry = (await service.report(lot_id)).history[-1]
        assert (entry.operation, entry.by, entry.data["code"]) == (Operation.HOLD, QA, "RECALL")
    assert (await service.get("C")).running is None  # its step abandoned, as a hold does
    assert (await service.get("D")).hold.reason == "wrong label"  # type: ignore[union-attr]
    assert (await service.get("E")).state is LotState.WAITING

    before = [len((await service.report(x)).history) for x in "ABCD"]
    again = await materials.hold_lots("EMC-1", "RECALL", "voids in X-ray", QA)
    assert again.held == []
    assert [r.lot_id for r in again.on_hold] == ["A", "B", "D", "C"]  # first reached first
    assert [len((await service.report(x)).history) for x in "ABCD"] == before
    holds = [e for e in (await service.report("A")).history if e.operation is Operation.HOLD]
    assert len(holds) == 1
    # the code names who releases: an operator may not release a recall's hold
    with pytest.raises(NotAuthorized, match="its hold, code RECALL, is released by quality"):
        await service.release(cmd.ReleaseLot("A", OP), by=OPERATOR)


@pytest.mark.usefixtures("line")
async def test_a_quarantine_with_its_holds_is_one_command(
    service: LotService, materials: MaterialService, clock: Clock
) -> None:
    await _loaded_emc(materials, clock)
    await _at_mold(service, "A")
    await _run(service, "A", "MOLD", "MOLD-1")
    done = await materials.quarantine("EMC-1", "RECALL", "voids", QA, hold_lots=True)
    assert done.material.quarantine is not None
    assert done.recall is not None and [r.lot_id for r in done.recall.held] == ["A"]
    assert (await service.get("A")).state is LotState.HOLD


@pytest.mark.usefixtures("line")
async def test_a_lot_held_for_another_reason_that_got_a_recalled_material_stays_quality_s(
    service: LotService,
    materials: MaterialService,
    store: UnitOfWorkFactory,
    library: FlowLibrary,
    clock: Clock,
    log: Log,
) -> None:
    """An operator held lot D with a code of their own (CUSTOMER) before the recall, which
    reported D on hold and did not touch it; B2 split off B after B got the compound, and
    was held likewise. Until quality lifts the quarantine, their release and rework are
    RECALL's roles' (quality): the operator is refused before the signature's password is
    looked at (a wrong one: not_authorized, not counted), naming the material lot and its
    quarantine; the engineer's rework too; quality releases; and once the quarantine is
    lifted the operator releases their own hold again."""
    await ReasonService(store, clock).add("CUSTOMER", "hold", "Customer request", QA)
    signers = Signers([OPERATOR, QUALITY, ENGINEER])
    lots = LotService(store, library, clock, principal=OPERATOR, security=log, verifier=signers)
    await _loaded_emc(materials, clock)
    for lot_id in ("B", "D", "E"):
        await _at_mold(service, lot_id)
        await _run(service, lot_id, "MOLD", "MOLD-1")
    await service.split(cmd.SplitLot("B", "B2", ("2",), OP))  # B2 got it through B
    for lot_id in ("D", "B2"):
        await lots.hold(cmd.HoldLot(lot_id, OP, "hold for the customer", code="CUSTOMER"))
    await lots.hold(cmd.HoldLot("E", OP, "hold for the customer", code="CUSTOMER"))
    await materials.unload("EMC-1", OP)
    q = await materials.quarantine("EMC-1", "RECALL", "voids in X-ray", QA, hold_lots=True)
    assert q.recall is not None and {r.lot_id for r in q.recall.on_hold} == {"D", "B2", "E"}
    # E got it too; only D and B2 are tried below

    for lot_id in ("D", "B2"):
        held = await lots.get(lot_id)
        wrong = (SignatureGiven(OP, "approved", password="not-it", lot_version=held.version),)
        for signatures in (wrong, signed(OPERATOR, held), ()):
            with pytest.raises(NotAuthorized) as refused:
                await lots.release(cmd.ReleaseLot(lot_id, OP), signatures=signatures)
            said = refused.value.message
            assert (
                f"op1 (operator) may not release lot {lot_id}: it got material lot EMC-1, " in said
            )
            assert "quarantined with code RECALL by qa1 since " in said
            assert "RECALL Material recall: voids in X-ray" in said and "for quality" in said
            assert refused.value.allowed == ("quality",)
            assert (log.events[-1].kind, log.events[-1].lot_id) == (EventKind.REFUSED, lot_id)
            assert log.events[-1].action == "release"
        with pytest.raises(NotAuthorized, match="may not rework lot") as refused:
            await lots.rework(
                cmd.ReworkLot(lot_id, "MOLD", "pe1", "x"),
                by=ENGINEER,
                signatures=signed(ENGINEER, held),
            )
        assert refused.value.allowed == ("quality",)
        assert (await lots.get(lot_id)).state is LotState.HOLD
    assert not [e for e in log.events if e.kind is not EventKind.REFUSED]

    released = await lots.release(
        cmd.ReleaseLot("D", QA), by=QUALITY, signatures=signed(QUALITY, await lots.get("D"))
    )
    assert released.lot.state is LotState.WAITING
    seen = (await materials.show("EMC-1")).material
    await materials.release("EMC-1", "not affected", QA, signatures=signed(QUALITY, seen))
    back = await lots.release(cmd.ReleaseLot("B2", OP), signatures=signed(OPERATOR, held))
    assert back.lot.state is LotState.WAITING


@pytest.mark.usefixtures("line")
async def test_a_recall_refused_changes_nothing_and_a_refusal_of_authority_is_recorded(
    service: LotService, materials: MaterialService, clock: Clock, log: Log
) -> None:
    await _loaded_emc(materials, clock)
    await _at_mold(service, "A")
    await _run(service, "A", "MOLD", "MOLD-1")

    with pytest.raises(UnknownMaterial, match="there is no material lot NOPE"):
        await materials.quarantine("NOPE", "RECALL", "voids", QA, hold_lots=True)
    with pytest.raises(UnknownMaterial):
        await materials.hold_lots("NOPE", "RECALL", None, QA)
    with pytest.raises(UnknownMaterial):
        await materials.release("NOPE", "why", QA)
    with pytest.raises(
        InvalidInput, match=r"there is no hold reason code RECAL \(did you mean RECALL\?\)"
    ):
        await materials.quarantine("EMC-1", "RECAL", "voids", QA, hold_lots=True)
    with pytest.raises(InvalidInput, match="BROKEN is a scrap code; expected a hold code"):
        await materials.hold_lots("EMC-1", "BROKEN", None, QA)
    with pytest.raises(InvalidInput, match="needs a reason"):
        await materials.quarantine("EMC-1", "RECALL", " ", QA)
    with pytest.raises(OperationNotAllowed, match="EMC-1 is not quarantined"):
        await materials.release("EMC-1", "why", QA)
    for who in (OPERATOR, ENGINEER):
        with pytest.raises(NotAuthorized) as refused:
            await materials.quarantine("EMC-1", "RECALL", "voids", who.name, by=who)
        assert refused.value.action is Action.QUARANTINE
        assert set(refused.value.allowed) == {"quality"}
    with pytest.raises(NotAuthorized):
        await materials.hold_lots("EMC-1", "RECALL", None, OP, by=OPERATOR)
    with pytest.raises(NotAuthorized):
        await materials.release("EMC-1", "why", OP, by=OPERATOR)
    refusals = [e for e in log.events if e.kind is EventKind.REFUSED]
    assert [(e.actor, e.action) for e in refusals] == [
        ("op1", "quarantine"),
        ("pe1", "quarantine"),
        ("op1", "quarantine"),
        ("op1", "quarantine"),
    ]
    assert (await materials.show("EMC-1")).material.quarantine is None
    assert (await service.get("A")).state is LotState.WAITING
    assert [e.event.value for e in (await materials.show("EMC-1")).events] == [
        "added",
        "thawed",
        "loaded",
    ]


# -- two commands on one material lot at once --------------------------------------------------


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_a_load_at_the_time_of_a_quarantine_does_not_write_over_it(
    request: pytest.FixtureRequest, database: str, clock: Clock
) -> None:
    """A load that read the compound before a quarantine and wrote after it would put a
    quarantined compound on the molder, as if quality had not stopped it: refused, nothing
    written. Two quarantines at once: one wins, the other changes nothing."""
    url = request.getfixturevalue(f"{database}_url")
    engines = [create_engine(url), create_engine(url)]
    try:
        await upgrade(engines[0])
        plain = SqlUnitOfWorkFactory(engines[0])
        await EquipmentService(plain, clock).register("line-a", TOOLS)
        await ReasonService(plain, clock).add("RECALL", "hold", "Material recall", QA)
        materials = MaterialService(plain, clock)
        await materials.add("EMC-1", "mold_compound", T0 + timedelta(days=90), "eng")

        def racing() -> list[MaterialService]:
            barrier = asyncio.Barrier(2)
            return [
                MaterialService(BothReadFirst(SqlUnitOfWorkFactory(e), barrier), clock)
                for e in engines
            ]

        # a load that read the compound before the quarantine, written after it
        seen = (await materials.show("EMC-1")).material
        await materials.quarantine("EMC-1", "RECALL", "voids", QA)
        raced = materials_rules.load(seen, "MOLD-1", "molder", [], OP, clock())
        with pytest.raises(ConcurrentUpdate, match="material lot EMC-1 changed while this"):
            await plain.write(save_materials([raced]))
        shown = await materials.show("EMC-1")
        assert shown.material.tool_id is None and shown.material.quarantine is not None
        assert [e.event.value for e in shown.events] == ["added", "quarantined"]
        await materials.release("EMC-1", "cleared", QA)
        first, second = racing()
        twice = await asyncio.gather(
            first.quarantine("EMC-1", "RECALL", "voids", QA),
            second.quarantine("EMC-1", "RECALL", "cracks", QA),
            return_exceptions=True,
        )
        losses = [r for r in twice if isinstance(r, BaseException)]
        assert len(losses) == 1 and isinstance(losses[0], ConcurrentUpdate), twice
        events = [e.event.value for e in (await materials.show("EMC-1")).events]
        assert events.count("quarantined") == 2  # the one before, and one of these two
    finally:
        for engine in engines:
            await engine.dispose()


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_a_track_in_that_read_the_compound_before_a_quarantine_is_refused(
    request: pytest.FixtureRequest, database: str, library: FlowLibrary, clock: Clock
) -> None:
    """A track-in on the molder read EMC-1 loaded and not quarantined; quality quarantined it
    before the track-in wrote: on PostgreSQL it went through, the lot ran on the quarantined
    compound and its use was recorded. Refused now as a conflict, nothing written; tried
    again, it is refused by the interlock."""
    url = request.getfixturevalue(f"{database}_url")
    engines = [create_engine(url), create_engine(url)]
    try:
        await upgrade(engines[0])
        plain = SqlUnitOfWorkFactory(engines[0])
        equipment = EquipmentService(plain, clock)
        await equipment.register("line-a", TOOLS)
        for tool in TOOLS:
            await equipment.report(tool.id, UP)
        await ReasonService(plain, clock).add("RECALL", "hold", "Material recall", QA)
        materials = MaterialService(plain, clock)
        await _loaded_emc(materials, clock)
        service = LotService(plain, library, clock)
        await _at_mold(service, "L1")
        before = await service.get("L1")
        quality = MaterialService(SqlUnitOfWorkFactory(engines[1]), clock)
        racing = LotService(
            ReadFirstThen(
                SqlUnitOfWorkFactory(engines[0]),
                lambda: quality.quarantine("EMC-1", "RECALL", "voids", QA),
            ),
            library,
            clock,
        )
        with pytest.raises(ConcurrentUpdate, match="EMC-1 was quarantined while this command"):
            await racing.track_in(_mold("L1"))
        assert await service.get("L1") == before
        assert (await materials.show("EMC-1")).uses == []
        assert await materials.where_used("EMC-1") == []
        with pytest.raises(InterlockRefused) as refused:
            await service.track_in(_mold("L1"))
        assert refused.value.interlock == "material_quarantined"
    finally:
        for engine in engines:
            await engine.dispose()
