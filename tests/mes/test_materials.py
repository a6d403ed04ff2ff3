"""Material lots and their clocks, with a fake clock: a track-in on a tool with a material
lot loaded that is still frozen, still thawing, past its floor life or expired is refused
saying what was expected, and accepted inside its clocks; an accepted track-in records the
material lots on the tool as gone into the product lot; genealogy ("what went into this
lot") and where-used ("which lots got this material", a recall) follow splits and merges,
each only from its time on; the list a page at a time. Pure rules first, then the service on
every store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain import commands as cmd
from mes.domain import material_reach as reach
from mes.domain import materials as rules
from mes.domain.authority import Action, AuthMethod, NotAuthorized, Principal, Role
from mes.domain.equipment import ToolRegistration, ToolSnapshot
from mes.domain.errors import (
    ConcurrentUpdate,
    InterlockRefused,
    InvalidInput,
    OperationNotAllowed,
    UnknownMaterial,
    UnknownTool,
)
from mes.domain.model import LotState
from mes.equipment import EquipmentService
from mes.materials import MaterialService
from mes.ports import UnitOfWorkFactory
from mes.ports_materials import MaterialQuery
from mes.service import LotService
from tests.mes.conftest import Clock
from tests.mes.racing import BothReadFirst

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
CTRL = "controller"
OP = "op1"
TOOLS = [
    ToolRegistration("DB-1", "die_bonder", "modbus 127.0.0.1:5020", ("DIE_ATTACH",)),
    ToolRegistration("WB-1", "wire_bonder", "modbus 127.0.0.1:5021", ("WIRE_BOND",)),
    ToolRegistration("MOLD-1", "molder", "modbus 127.0.0.1:5022", ("MOLD",)),
    ToolRegistration("SA-1", "die_bonder", "modbus 127.0.0.1:5023", ("STIFFENER_ATTACH",)),
]
UP = ToolSnapshot(connected=True, e10="standby", process_state="IDLE", mode="PRODUCTION")


def _compound(**given: int) -> rules.Material:
    return rules.add("EMC-1", "mold_compound", T0 + timedelta(days=30), "eng", T0, **given)[0]


# -- the pure rules ----------------------------------------------------------------------------


def test_a_mold_compound_is_frozen_then_thawing_then_usable_then_past_its_floor_life() -> None:
    emc = _compound(thaw_minutes=240, floor_life_minutes=72 * 60)
    assert emc.problem(T0) is not None and emc.problem(T0)[0] == "material_not_thawed"
    thawed = rules.thaw(emc, "op", T0)[0]
    found = thawed.problem(T0 + timedelta(hours=3, minutes=59))
    assert found is not None and found[0] == "material_not_thawed"
    assert "usable from 2026-12-01 12:00 UTC" in found[1]
    assert thawed.problem(T0 + timedelta(hours=4)) is None
    assert thawed.problem(T0 + timedelta(hours=71, minutes=59)) is None
    past = thawed.problem(T0 + timedelta(hours=72))
    assert past is not None and past[0] == "material_floor_life"
    assert "past its floor life of 72 h after thaw" in past[1]


def test_a_material_lot_past_its_expiry_is_refused_whatever_its_thaw() -> None:
    wire = rules.add("W-1", "wire", T0 + timedelta(days=1), "eng", T0)[0]
    assert wire.problem(T0 + timedelta(hours=23)) is None
    with pytest.raises(InterlockRefused) as refused:
        rules.check_materials("L1", "WIRE_BOND", "WB-1", [wire], T0 + timedelta(days=1))
    assert refused.value.interlock == "material_expired"
    assert "wire W-1 expired at 2026-12-02 08:00 UTC" in refused.value.message


def test_an_expired_compound_is_not_thawed() -> None:
    emc = _compound()
    with pytest.raises(
        OperationNotAllowed, match=r"EMC-1 expired at .* UTC: an expired lot is not"
    ):
        rules.thaw(emc, "op", emc.expires_at)
    slow = _compound(thaw_minutes=240)
    with pytest.raises(OperationNotAllowed, match=r"before its thaw time \(4 h\) would end"):
        rules.thaw(slow, "op", slow.expires_at - timedelta(hours=4))  # expires as it is thawed
    assert rules.thaw(slow, "op", slow.expires_at - timedelta(hours=5))[0].thawed_at is not None


@pytest.mark.parametrize(
    ("kind", "expires", "given", "says"),
    [
        ("glue", 1, {}, "expected one of mold_compound, die_attach_film"),
        ("wire", -1, {}, "expected an expiry after now"),
        ("wire", 1, {"floor_life_minutes": 60}, "wire is not kept frozen"),
        ("adhesive", 1, {"floor_life_minutes": 0}, "floor life of X-1 must be at least 1 min"),
        ("adhesive", 1, {"thaw_minutes": -5}, "thaw time of X-1 must be 0 to 1,000,000 min"),
        ("adhesive", 1, {"thaw_minutes": 10**19}, "thaw time of X-1 must be 0 to 1,000,000 min"),
        ("adhesive", 1, {"floor_life_minutes": 6 * 10**18}, "at most 1,000,000 min, not 6"),
        # found by the probe: never usable, taken
        (
            "mold_compound",
            9,
            {"thaw_minutes": 6000, "floor_life_minutes": 600},
            r"X-1 would never be usable: its floor life \(10 h after thaw\) ends before its "
            r"thaw time \(100 h\) does",
        ),
    ],
)
def test_a_material_lot_with_a_bad_kind_expiry_or_clock_is_refused(
    kind: str, expires: int, given: dict[str, int], says: str
) -> None:
    with pytest.raises(InvalidInput, match=says):
        rules.add("X-1", kind, T0 + timedelta(days=expires), "eng", T0, **given)


def test_loading_is_refused_on_the_wrong_class_beside_one_of_its_kind_or_when_expired() -> None:
    emc = _compound()
    with pytest.raises(InvalidInput, match="is mold_compound, loaded on a molder; DB-1 is a"):
        rules.load(emc, "DB-1", "die_bonder", [], "op", T0)
    loaded = rules.load(emc, "MOLD-1", "molder", [], "op", T0)[0]  # frozen: may be loaded
    other = rules.add("EMC-2", "mold_compound", T0 + timedelta(days=9), "eng", T0)[0]
    with pytest.raises(OperationNotAllowed, match="MOLD-1 has mold_compound EMC-1 loaded"):
        rules.load(other, "MOLD-1", "molder", [loaded], "op", T0)
    with pytest.raises(OperationNotAllowed, match="expired at"):
        rules.load(other, "MOLD-2", "molder", [], "op", T0 + timedelta(days=9))


# -- the service, on every store ------------------------------------------------------------------


@pytest.fixture
def materials(store: UnitOfWorkFactory, clock: Clock) -> MaterialService:
    return MaterialService(store, clock)


@pytest.fixture
async def line(equipment: EquipmentService) -> None:
    await equipment.register("line-a", TOOLS)
    for tool in TOOLS:
        await equipment.report(tool.id, UP)


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


@pytest.mark.usefixtures("line")
async def test_a_track_in_waits_for_the_compound_to_thaw_and_stops_after_its_floor_life(
    service: LotService, materials: MaterialService, clock: Clock
) -> None:
    expires = clock.now + timedelta(days=180)
    await materials.add("EMC-1", "mold_compound", expires, "eng", thaw_minutes=240)
    await materials.load("EMC-1", "MOLD-1", OP)
    await _at_mold(service, "L1")
    mold = cmd.TrackIn("L1", "MOLD", CTRL, tool="MOLD-1", dispatched=True)

    async def refused() -> InterlockRefused:
        before = await service.get("L1")
        with pytest.raises(InterlockRefused) as caught:
            await service.track_in(mold)
        assert await service.get("L1") == before
        return caught.value

    frozen = await refused()
    assert frozen.interlock == "material_not_thawed"
    assert "mold_compound EMC-1 is still frozen" in frozen.message
    assert "EMC-1 out of the freezer at least 4 h before use" in frozen.expected
    thawed = await materials.thaw("EMC-1", OP)
    clock.now += timedelta(hours=3)
    thawing = await refused()
    assert thawing.interlock == "material_not_thawed" and "is thawing since" in thawing.message
    clock.now = thawed.thawed_at + timedelta(hours=4)  # type: ignore[operator]
    tracked = await service.track_in(mold)
    assert tracked.lot.state is LotState.RUNNING
    assert tracked.entries[0].data["materials"] == ["EMC-1"]
    await service.track_out(cmd.TrackOut("L1", CTRL, dispatched=True))
    view = await materials.show("EMC-1")
    assert [(u.lot_id, u.step, u.tool_id) for u in view.uses] == [("L1", "MOLD", "MOLD-1")]
    assert [e.event.value for e in view.events] == ["added", "loaded", "thawed"]

    await _at_mold(service, "L2")
    clock.now = thawed.thawed_at + timedelta(hours=72)  # type: ignore[operator]
    with pytest.raises(InterlockRefused) as floor:
        await service.track_in(cmd.TrackIn("L2", "MOLD", CTRL, tool="MOLD-1", dispatched=True))
    assert floor.value.interlock == "material_floor_life"
    assert floor.value.expected == "mold_compound EMC-1 replaced by a lot within its floor life"
    await materials.unload("EMC-1", OP, "floor life over")
    await service.track_in(cmd.TrackIn("L2", "MOLD", CTRL, tool="MOLD-1", dispatched=True))
    assert [u.lot_id for u in (await materials.show("EMC-1")).uses] == ["L1"]


@pytest.mark.usefixtures("line")
async def test_genealogy_and_where_used_follow_splits_and_merges_from_their_time_on(
    service: LotService, materials: MaterialService, clock: Clock
) -> None:
    later = clock.now + timedelta(days=90)
    await materials.add("DAF-1", "die_attach_film", later, "eng", thaw_minutes=0)
    await materials.add("WIRE-1", "wire", later, "eng")
    await materials.add("WIRE-2", "wire", later, "eng")
    await materials.thaw("DAF-1", OP)
    await materials.load("DAF-1", "DB-1", OP)
    await materials.load("WIRE-1", "WB-1", OP)

    await service.start(cmd.StartLot("A", "stiffener-bga", OP))
    await _run(service, "A", "SUBSTRATE_LOAD")
    await _run(service, "A", "DIE_ATTACH", "DB-1")  # A gets DAF-1
    await service.split(cmd.SplitLot("A", "A2", ("2",), OP))  # A2 takes DAF-1 with it
    await _run(service, "A", "WIRE_BOND", "WB-1")  # WIRE-1: A only, split off before
    await materials.unload("WIRE-1", OP)
    await materials.load("WIRE-2", "WB-1", OP)
    await _run(service, "A2", "WIRE_BOND", "WB-1")  # WIRE-2: A2, then A once merged
    await service.merge(cmd.MergeLots("A2", "A", OP))

    def names(found: list[reach.Source]) -> list[tuple[str, str, tuple[str, ...]]]:
        return [(s.use.material_id, s.use.lot_id, s.via) for s in found]

    assert names(await materials.genealogy("A")) == [
        ("DAF-1", "A", ("A",)),
        ("WIRE-1", "A", ("A",)),
        ("WIRE-2", "A2", ("A2", "A")),
    ]
    assert names(await materials.genealogy("A2")) == [
        ("DAF-1", "A", ("A", "A2")),
        ("WIRE-2", "A2", ("A2",)),
    ]

    def lots(found: list[reach.Reached]) -> list[tuple[str, tuple[str, ...]]]:
        return [(r.lot_id, r.via) for r in found]

    assert lots(await materials.where_used("DAF-1")) == [("A", ("A",)), ("A2", ("A", "A2"))]
    assert lots(await materials.where_used("WIRE-1")) == [("A", ("A",))]
    assert lots(await materials.where_used("WIRE-2")) == [("A2", ("A2",)), ("A", ("A2", "A"))]
    # a recall says where each lot is now: A waits after wire bond, A2 went into it
    now = {r.lot_id: (r.state, r.step) for r in await materials.where_used("WIRE-2")}
    assert now == {
        "A": (LotState.WAITING, "WIRE_BOND"),
        "A2": (LotState.MERGED, "WIRE_BOND"),
    }
    with pytest.raises(UnknownMaterial, match="there is no material lot NOPE"):
        await materials.where_used("NOPE")


@pytest.mark.usefixtures("line")
async def test_a_spool_loaded_while_a_lot_runs_goes_into_it_and_must_be_usable_now(
    service: LotService, materials: MaterialService, clock: Clock
) -> None:
    """A wire spool runs out mid-lot and the operator loads the next: the lot running on the
    tool gets it from then on (genealogy, recall); one not usable now is refused, since no
    track-in will check it for that lot."""
    later = clock.now + timedelta(days=90)
    await materials.add("WIRE-1", "wire", later, "eng")
    await materials.add("WIRE-2", "wire", later, "eng")
    await materials.add("EMC-1", "mold_compound", later, "eng", thaw_minutes=240)
    await materials.load("WIRE-1", "WB-1", OP)
    await service.start(cmd.StartLot("A", "stiffener-bga", OP))
    await _run(service, "A", "SUBSTRATE_LOAD")
    await _run(service, "A", "DIE_ATTACH", "DB-1")
    await service.track_in(cmd.TrackIn("A", "WIRE_BOND", CTRL, tool="WB-1", dispatched=True))
    await materials.unload("WIRE-1", OP, "spool empty")
    clock.now += timedelta(minutes=5)
    await materials.load("WIRE-2", "WB-1", OP)
    await service.track_out(cmd.TrackOut("A", CTRL, dispatched=True))
    found = [(s.use.material_id, s.use.step, s.use.tool_id) for s in await materials.genealogy("A")]
    assert found == [("WIRE-1", "WIRE_BOND", "WB-1"), ("WIRE-2", "WIRE_BOND", "WB-1")]
    assert [r.lot_id for r in await materials.where_used("WIRE-2")] == ["A"]
    # a compound still frozen, loaded on the molder while B molds: refused, nothing changed
    await service.start(cmd.StartLot("B", "stiffener-bga", OP))
    for step, tool in [("SUBSTRATE_LOAD", None), ("DIE_ATTACH", "DB-1"), ("WIRE_BOND", "WB-1")]:
        await _run(service, "B", step, tool)
    await _run(service, "B", "STIFFENER_ATTACH", "SA-1")
    await service.track_in(cmd.TrackIn("B", "MOLD", CTRL, tool="MOLD-1", dispatched=True))
    with pytest.raises(OperationNotAllowed) as refused:
        await materials.load("EMC-1", "MOLD-1", OP)
    assert "lot B is running on MOLD-1" in str(refused.value)
    assert "mold_compound EMC-1 is still frozen" in str(refused.value)
    view = await materials.show("EMC-1")
    assert view.material.tool_id is None and view.uses == []
    assert [e.event.value for e in view.events] == ["added"]
    # the same compound loaded on an idle molder waits for its thaw, as before
    await service.track_out(cmd.TrackOut("B", CTRL, dispatched=True))
    assert (await materials.load("EMC-1", "MOLD-1", OP)).tool_id == "MOLD-1"
    assert (await materials.show("EMC-1")).uses == []


async def test_a_part_number_longer_than_the_store_keeps_is_refused_on_every_store(
    materials: MaterialService,
) -> None:
    """The store keeps 64 characters of a part number (the API's body too): a longer one
    failed on PostgreSQL with a traceback (StringDataRightTruncationError) and was kept
    whole on SQLite."""
    expires = T0 + timedelta(days=400)
    with pytest.raises(InvalidInput, match=r"part number is at most 64 characters \(got 65\)"):
        await materials.add("W-1", "wire", expires, "eng", part_number="P" * 65)
    assert await materials.find() == []
    added = await materials.add("W-1", "wire", expires, "eng", part_number="P" * 64)
    assert added.part_number == "P" * 64


async def test_an_operator_may_load_but_not_add_a_material_lot(
    store: UnitOfWorkFactory, clock: Clock
) -> None:
    operator = Principal("op1", frozenset({Role.OPERATOR}), AuthMethod.PASSWORD)
    service = MaterialService(store, clock, principal=operator)
    with pytest.raises(NotAuthorized) as refused:
        await service.add("W-1", "wire", clock.now + timedelta(days=1), "op1")
    assert refused.value.action is Action.MATERIALS
    assert set(refused.value.allowed) == {"engineer", "quality"}
    quality = Principal("q1", frozenset({Role.QUALITY}), AuthMethod.PASSWORD)
    await service.acting_as(quality).add("W-1", "wire", clock.now + timedelta(days=1), "q1")
    with pytest.raises(OperationNotAllowed, match="not loaded on any tool"):
        await service.unload("W-1", "op1")  # allowed to the operator, refused by the rule


async def test_material_lots_are_listed_a_page_at_a_time_alike_on_every_store(
    store: UnitOfWorkFactory,
) -> None:
    """The memory store and the SQL ones answer a page the same; the service refuses a
    cursor or a tool that names nothing, and an empty page."""
    clock = lambda: T0  # noqa: E731
    await EquipmentService(store, clock).register(
        "line-a", [ToolRegistration("WB-1", "wire_bonder", "modbus 127.0.0.1", ())]
    )
    service = MaterialService(store, clock)
    for i in range(7):
        await service.add(f"W-{i}", "wire", T0 + timedelta(days=30), "quality")
    await service.load("W-3", "WB-1", "op")  # one wire lot per bonder
    page = await service.page(MaterialQuery(limit=3, after="W-1"))
    assert [m.id for m in page.materials] == ["W-2", "W-3", "W-4"]
    assert (page.total, page.more) == (7, True)
    page = await service.page(MaterialQuery(tool_id="WB-1"))
    assert [m.id for m in page.materials] == ["W-3"] and (page.total, page.more) == (1, False)
    page = await service.page(MaterialQuery(loaded=True, after="W-3"))
    assert (page.materials, page.total, page.more) == ([], 1, False)
    assert (await service.page(MaterialQuery(loaded=True, limit=3))).more is False
    with pytest.raises(UnknownMaterial):
        await service.page(MaterialQuery(after="NOPE"))
    with pytest.raises(UnknownTool):
        await service.page(MaterialQuery(tool_id="NOPE"))
    with pytest.raises(InvalidInput):
        await service.page(MaterialQuery(limit=0))


# -- two commands on one material lot at once --------------------------------------------------


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_two_thaws_or_loads_of_one_material_lot_at_once_are_done_once(
    request: pytest.FixtureRequest, database: str, clock: Clock
) -> None:
    """Both commands read the lot as it was, then both wrote: a lot thawed twice (two
    'thawed' events, the second clock start kept), or loaded on two tools (history on both,
    the lot on whichever wrote last)."""
    url = request.getfixturevalue(f"{database}_url")
    engines = [create_engine(url), create_engine(url)]
    try:
        await upgrade(engines[0])
        plain = SqlUnitOfWorkFactory(engines[0])
        await EquipmentService(plain, clock).register("line-a", TOOLS)
        materials = MaterialService(plain, clock)
        await materials.add("DAF-1", "die_attach_film", T0 + timedelta(days=90), "eng")

        def racing() -> list[MaterialService]:
            barrier = asyncio.Barrier(2)
            return [
                MaterialService(BothReadFirst(SqlUnitOfWorkFactory(e), barrier), clock)
                for e in engines
            ]

        first, second = racing()
        thaws = await asyncio.gather(
            first.thaw("DAF-1", "op1"), second.thaw("DAF-1", "op2"), return_exceptions=True
        )
        first, second = racing()
        loads = await asyncio.gather(
            first.load("DAF-1", "DB-1", "op1"),
            second.load("DAF-1", "SA-1", "op2"),
            return_exceptions=True,
        )
        for results in (thaws, loads):
            losses = [r for r in results if isinstance(r, BaseException)]
            assert len(losses) == 1, results
            assert isinstance(losses[0], ConcurrentUpdate), losses[0]
            assert "material lot DAF-1 changed while this command ran" in losses[0].message
        shown = await materials.show("DAF-1")
        events = [(e.event.value, e.tool_id) for e in shown.events]
        assert [e for e, _ in events].count("thawed") == 1
        [loaded] = [tool for e, tool in events if e == "loaded"]
        assert shown.material.tool_id == loaded
    finally:
        for engine in engines:
            await engine.dispose()


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_the_database_keeps_one_material_lot_of_a_kind_on_a_tool(
    request: pytest.FixtureRequest, database: str, clock: Clock
) -> None:
    """Two die attach films loaded on DB-1 at once (on PostgreSQL each load read a tool with
    none, and both wrote): the index of revision 0024 refuses the second write, said as a
    change by another command, and nothing of it is written."""
    from mes.ports_materials import save_materials

    engine = create_engine(request.getfixturevalue(f"{database}_url"))
    try:
        await upgrade(engine)
        store = SqlUnitOfWorkFactory(engine)
        await EquipmentService(store, clock).register("line-a", TOOLS)
        materials = MaterialService(store, clock)
        for name in ("DAF-1", "DAF-2"):
            await materials.add(name, "die_attach_film", T0 + timedelta(days=90), "eng")
            await materials.thaw(name, "op1")
        clock.now += timedelta(hours=2)
        await materials.load("DAF-1", "DB-1", "op1")
        second = (await materials.show("DAF-2")).material
        raced = rules.load(second, "DB-1", "die_bonder", [], "op2", clock())
        with pytest.raises(
            ConcurrentUpdate, match="a die_attach_film was loaded on DB-1 by another"
        ):
            await store.write(save_materials([raced]))
        shown = await materials.show("DAF-2")
        assert shown.material.tool_id is None
        assert [e.event.value for e in shown.events] == ["added", "thawed"]
    finally:
        await engine.dispose()
