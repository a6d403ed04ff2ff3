"""Durables with life counters: each job a tool records adds to the count of the durables
mounted on it by the written rule (capillary: two touchdowns per site processed; saw blade:
the streets of the grid; mold chase, stencil, nozzle: one per carrier); a track-in on a tool
with a durable at or past its life is refused saying which durable, its count and its life,
one past its warning fraction is accepted with the warning recorded; the durable's history
names the lots it served; the list a page at a time. Pure rules first, then the service on
every store."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from typing import TypeVar

import pytest

from flows import FlowLibrary
from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain import commands as cmd
from mes.domain import durables as rules
from mes.domain.authority import Action, AuthMethod, NotAuthorized, Principal, Role
from mes.domain.durables import DurableEventKind, DurableKind
from mes.domain.equipment import DispatchMode, ToolRegistration, ToolSnapshot
from mes.domain.errors import (
    ConcurrentUpdate,
    InterlockRefused,
    InvalidInput,
    OperationNotAllowed,
    RecordExists,
    UnknownDurable,
    UnknownTool,
)
from mes.domain.model import HoldSource, JobStatus, LotState
from mes.durables import DurableService
from mes.equipment import EquipmentService
from mes.ports import UnitOfWorkFactory
from mes.ports_durables import DurableQuery
from mes.service import LotService
from tests.mes.conftest import Clock
from tests.mes.racing import BothReadFirst

T = TypeVar("T")
NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
CTRL = "controller"
OP = "op1"
TOOLS = [
    ToolRegistration("DB-1", "die_bonder", "modbus 127.0.0.1:5020", ("DIE_ATTACH",)),
    ToolRegistration("WB-1", "wire_bonder", "modbus 127.0.0.1:5021", ("WIRE_BOND",)),
    ToolRegistration("WB-2", "wire_bonder", "modbus 127.0.0.1:5022", ("WIRE_BOND",)),
    ToolRegistration("DICE-1", "dicer", "modbus 127.0.0.1:5023", ("DICE",)),
]
UP = ToolSnapshot(connected=True, e10="standby", process_state="IDLE", mode="PRODUCTION")


def _new(kind: str = "capillary", life: int = 1000, warn: float = 0.9) -> rules.Durable:
    return rules.add("CAP-1", kind, life, warn, "eng", NOW)[0]


# -- the pure rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (DurableKind.CAPILLARY, 2 * 30),  # two touchdowns per site processed
        (DurableKind.SAW_BLADE, 4 + 1 + 8 + 1),  # every street of the 4 x 8 grid, edges too
        (DurableKind.MOLD_CHASE, 1),
        (DurableKind.STENCIL, 1),
        (DurableKind.NOZZLE, 1),
    ],
)
def test_a_job_counts_on_each_kind_by_its_written_rule(kind: DurableKind, expected: int) -> None:
    assert rules.job_count(kind, rows=4, cols=8, processed_sites=30) == expected


def test_a_durable_warns_from_its_fraction_of_life_and_is_spent_at_its_life() -> None:
    d = _new(life=1000, warn=0.9)
    assert rules.check_durables("L1", "WIRE_BOND", "WB-1", [d]) == []
    worn = rules.use(
        [d],
        lot_id="L1",
        step="WIRE_BOND",
        job_id="J1",
        rows=4,
        cols=8,
        processed_sites=450,
        by=CTRL,
        now=NOW,
    )[0][0]
    assert (worn.count, worn.warned, worn.spent) == (900, True, False)
    warnings = rules.check_durables("L1", "WIRE_BOND", "WB-1", [worn])
    assert warnings == [
        "capillary CAP-1 at 900 of 1,000 touchdowns (90 %): past its warning at 90% of life"
    ]
    spent = rules.use(
        [worn],
        lot_id="L1",
        step="WIRE_BOND",
        job_id="J2",
        rows=4,
        cols=8,
        processed_sites=50,
        by=CTRL,
        now=NOW,
    )[0][0]
    assert spent.count == 1000 and spent.spent
    with pytest.raises(InterlockRefused) as refused:
        rules.check_durables("L2", "WIRE_BOND", "WB-1", [spent])
    assert refused.value.interlock == "durable_life"
    assert refused.value.lot_id == "L2"
    assert "capillary CAP-1 at 1,000 of 1,000 touchdowns (100 %), at or past its life" in (
        refused.value.message
    )
    assert refused.value.expected.startswith("capillary CAP-1 under its life of 1,000 touchdowns")


@pytest.mark.parametrize(
    ("life", "warn", "warn_at"),
    [(10_000, 0.81, 8_100), (100, 0.55, 55), (5_000, 0.68, 3_400), (1_000, 0.9, 900), (7, 0.5, 4)],
)
def test_a_durable_warns_at_its_fraction_of_life_exactly(
    life: int, warn: float, warn_at: int
) -> None:
    """The warning count is the life times the fraction, rounded up only when it is not a
    whole count: in floats 10,000 x 0.81 is 8,100.000000000001, and a capillary set to warn at
    81 % of 10,000 touchdowns warned at 8,101."""
    d = _new(life=life, warn=warn)
    assert d.warn_at == warn_at
    assert replace(d, count=warn_at).warned and not replace(d, count=warn_at - 1).warned


@pytest.mark.parametrize(
    ("durable_id", "kind", "life", "warn", "says"),
    [
        ("CAP 1", "capillary", 10, 0.9, "is not valid"),
        ("CAP-1", "sponge", 10, 0.9, "expected one of capillary, saw_blade"),
        ("CAP-1", "capillary", 0, 0.9, "1 to 1,000,000,000,000 touchdowns, not 0"),
        ("CAP-1", "capillary", 10**20, 0.9, "touchdowns, not 100000000000000000000"),
        ("CAP-1", "capillary", 10, 0.0, "from 0.001 to 1"),
        ("CAP-1", "capillary", 10, 1.5, "from 0.001 to 1"),
        ("CAP-1", "capillary", 10, float("nan"), "from 0.001 to 1"),
    ],
)
def test_a_durable_with_a_bad_id_kind_life_or_warning_is_refused_saying_what_is_expected(
    durable_id: str, kind: str, life: int, warn: float, says: str
) -> None:
    with pytest.raises(InvalidInput, match=says):
        rules.add(durable_id, kind, life, warn, "eng", NOW)


def test_mounting_is_refused_on_the_wrong_class_beside_one_of_its_kind_or_when_spent() -> None:
    cap = _new()
    with pytest.raises(InvalidInput, match="a capillary is mounted on a wire_bonder; DB-1 is"):
        rules.mount(cap, "DB-1", "die_bonder", [], "tech", NOW)
    other = rules.mount(
        rules.add("CAP-2", "capillary", 10, 0.9, "eng", NOW)[0],
        "WB-1",
        "wire_bonder",
        [],
        "tech",
        NOW,
    )[0]
    with pytest.raises(OperationNotAllowed, match="WB-1 has capillary CAP-2 mounted"):
        rules.mount(cap, "WB-1", "wire_bonder", [other], "tech", NOW)
    with pytest.raises(OperationNotAllowed, match="mounted on WB-1 already"):
        rules.mount(other, "WB-2", "wire_bonder", [], "tech", NOW)
    spent = rules.add("CAP-3", "capillary", 10, 0.9, "eng", NOW)[0]
    spent = rules.use(
        [spent],
        lot_id="L",
        step="S",
        job_id=None,
        rows=1,
        cols=1,
        processed_sites=5,
        by=CTRL,
        now=NOW,
    )[0][0]
    with pytest.raises(OperationNotAllowed, match="CAP-3 is spent"):
        rules.mount(spent, "WB-2", "wire_bonder", [], "tech", NOW)


def test_only_a_mold_chase_is_renewed_by_a_cleaning() -> None:
    chase = rules.add("CH-1", "mold_chase", 500, 0.9, "eng", NOW)[0]
    used = rules.use(
        [chase],
        lot_id="L",
        step="MOLD",
        job_id=None,
        rows=4,
        cols=8,
        processed_sites=32,
        by=CTRL,
        now=NOW,
    )[0][0]
    renewed, event = rules.renew(used, "tech", NOW, "chase cleaned, 4 h")
    assert (renewed.count, event.event, event.amount) == (0, DurableEventKind.RENEWED, -1)
    with pytest.raises(OperationNotAllowed, match="a capillary is replaced, not renewed"):
        rules.renew(_new(), "tech", NOW, "cleaned")


# -- the service, on every store ------------------------------------------------------------------


@pytest.fixture
def durables(store: UnitOfWorkFactory, clock: Clock) -> DurableService:
    return DurableService(store, clock)


@pytest.fixture
async def line(equipment: EquipmentService) -> None:
    await equipment.register("line-a", TOOLS)
    for tool in TOOLS:
        await equipment.report(tool.id, UP)


async def _at_wire_bond(
    service: LotService, lot_id: str, carriers: int = 2, *, reject: bool = True
) -> None:
    """A stiffener-bga lot waiting for WIRE_BOND, with carrier 1 site (1, 1) rejected at
    die attach (so it comes in bad to wire bond) unless not ``reject``."""
    await service.start(cmd.StartLot(lot_id, "stiffener-bga", OP, carriers=carriers))
    await service.track_in(cmd.TrackIn(lot_id, "SUBSTRATE_LOAD", OP))
    await service.track_out(cmd.TrackOut(lot_id, OP))
    await service.track_in(cmd.TrackIn(lot_id, "DIE_ATTACH", OP))
    rejects = (cmd.SiteRejectGiven("1", 1, 1, "PICK_FAIL"),) if reject else ()
    await service.track_out(cmd.TrackOut(lot_id, OP, rejects=rejects))


async def _wire_bond_jobs(service: LotService, lot_id: str, tool: str) -> None:
    """The line controller runs WIRE_BOND on ``tool``, one job per carrier."""
    await service.track_in(cmd.TrackIn(lot_id, "WIRE_BOND", CTRL, tool=tool, dispatched=True))
    for n, carrier in enumerate((await service.get(lot_id)).carriers):
        job = f"{lot_id}-J{n}"
        await service.start_job(cmd.StartJob(lot_id, job, tool, carrier, CTRL))
        await service.record_job(cmd.RecordJob(job, CTRL))


@pytest.mark.usefixtures("line")
async def test_each_recorded_job_counts_on_the_durables_of_its_tool_and_names_its_lot(
    service: LotService, durables: DurableService
) -> None:
    await durables.add("CAP-1", "capillary", 10_000, "eng")
    await durables.add("CAP-9", "capillary", 10_000, "eng")  # mounted elsewhere: not counted
    await durables.mount("CAP-1", "WB-1", "tech")
    await durables.mount("CAP-9", "WB-2", "tech")
    await _at_wire_bond(service, "L1")
    await _wire_bond_jobs(service, "L1", "WB-1")
    assert (await service.get("L1")).state is LotState.WAITING

    view = await durables.show("CAP-1")
    # carrier 1: 31 sites processed (one came in bad), carrier 2: 32; two touchdowns each
    assert view.durable.count == 2 * 31 + 2 * 32
    used = [e for e in view.events if e.event is DurableEventKind.USED]
    assert [(e.lot_id, e.step, e.amount, e.count_after) for e in used] == [
        ("L1", "WIRE_BOND", 62, 62),
        ("L1", "WIRE_BOND", 64, 126),
    ]
    assert [e.job_id for e in used] == ["L1-J0", "L1-J1"]
    assert view.lots == ["L1"]
    assert [e.event for e in view.events][:2] == [DurableEventKind.ADDED, DurableEventKind.MOUNTED]
    assert (await durables.show("CAP-9")).durable.count == 0
    assert [d.id for d in await durables.list(tool_id="WB-1")] == ["CAP-1"]


@pytest.mark.usefixtures("line")
async def test_a_track_in_on_a_tool_with_a_spent_durable_is_refused_the_controllers_too(
    service: LotService, durables: DurableService
) -> None:
    await durables.add("CAP-1", "capillary", 128, "eng", warn_fraction=0.5)
    await durables.mount("CAP-1", "WB-1", "tech")
    await _at_wire_bond(service, "L1", reject=False)
    await _wire_bond_jobs(service, "L1", "WB-1")  # exactly its life: 128 touchdowns
    await _at_wire_bond(service, "L2")
    before = await service.get("L2")
    with pytest.raises(InterlockRefused) as refused:
        await service.track_in(cmd.TrackIn("L2", "WIRE_BOND", CTRL, tool="WB-1", dispatched=True))
    assert refused.value.interlock == "durable_life"
    assert "capillary CAP-1 at 128 of 128 touchdowns" in refused.value.message
    assert await service.get("L2") == before  # nothing changed
    [batch] = await service.track_in_all(
        [cmd.TrackIn("L2", "WIRE_BOND", CTRL, tool="WB-1", dispatched=True)]
    )
    assert isinstance(batch, InterlockRefused) and batch.interlock == "durable_life"

    await durables.unmount("CAP-1", "tech", "end of life")
    await durables.add("CAP-2", "capillary", 200, "eng", warn_fraction=0.5)
    await durables.mount("CAP-2", "WB-1", "tech")
    await service.track_in(cmd.TrackIn("L2", "WIRE_BOND", CTRL, tool="WB-1", dispatched=True))
    assert (await durables.show("CAP-1")).durable.tool_id is None


async def _second_job_on_wb1(service: LotService, durables: DurableService) -> None:
    """CAP-1 (life 128 touchdowns: lot L1's two carriers) on WB-1; L1's first carrier
    recorded there (64), its second on the tool as job J1, results not yet recorded; L2
    waits for WIRE_BOND."""
    await durables.add("CAP-1", "capillary", 128, "eng")
    await durables.mount("CAP-1", "WB-1", "tech")
    await _at_wire_bond(service, "L1", reject=False)
    await _at_wire_bond(service, "L2")
    await service.track_in(cmd.TrackIn("L1", "WIRE_BOND", CTRL, tool="WB-1", dispatched=True))
    first, second = (await service.get("L1")).carriers
    await service.start_job(cmd.StartJob("L1", "J0", "WB-1", first, CTRL))
    await service.record_job(cmd.RecordJob("J0", CTRL))  # 64
    await service.start_job(cmd.StartJob("L1", "J1", "WB-1", second, CTRL))


@pytest.mark.usefixtures("line")
async def test_a_track_in_counts_the_jobs_of_the_tool_not_yet_recorded(
    service: LotService, durables: DurableService
) -> None:
    await _second_job_on_wb1(service, durables)
    # J1 is on the tool, its results not yet recorded: counted as 64 more, 128 of 128
    with pytest.raises(InterlockRefused) as refused:
        await service.track_in(cmd.TrackIn("L2", "WIRE_BOND", CTRL, tool="WB-1", dispatched=True))
    assert "capillary CAP-1 at 128 of 128 touchdowns" in refused.value.message
    assert "1 job of WB-1 not yet recorded: J1" in refused.value.message
    assert (await durables.show("CAP-1")).durable.count == 64


@pytest.mark.parametrize("leave", ["hold", "abort"])
@pytest.mark.usefixtures("line")
async def test_a_job_a_hold_or_an_abort_abandons_counts_whole_and_refuses_past_life(
    service: LotService, durables: DurableService, leave: str
) -> None:
    await _second_job_on_wb1(service, durables)
    if leave == "hold":  # the tool faulted mid-job: the controller holds the lot
        await service.hold(cmd.HoldLot("L1", CTRL, "tool alarm", HoldSource.ALARM))
    else:
        await service.abort(cmd.AbortStep("L1", OP, "wrong program"))

    view = await durables.show("CAP-1")
    assert view.durable.count == 64 + 64  # the job the tool took counts whole: it may have run
    abandoned = view.events[-1]
    assert (abandoned.lot_id, abandoned.job_id, abandoned.amount) == ("L1", "J1", 64)
    assert abandoned.reason is not None and "abandoned" in abandoned.reason
    with pytest.raises(InterlockRefused) as refused:  # counted once: not pending any more
        await service.track_in(cmd.TrackIn("L2", "WIRE_BOND", CTRL, tool="WB-1", dispatched=True))
    assert "capillary CAP-1 at 128 of 128 touchdowns" in refused.value.message
    assert "not yet recorded" not in refused.value.message
    # the tool completed the job all the same: its results are recorded, its wear not again
    late = await service.record_job(cmd.RecordJob("J1", CTRL))
    assert late.job.status is JobStatus.RECORDED
    assert (await durables.show("CAP-1")).durable.count == 64 + 64


@pytest.mark.usefixtures("line")
async def test_a_hold_of_a_lot_with_no_open_job_counts_nothing(
    service: LotService, durables: DurableService
) -> None:
    await durables.add("CAP-1", "capillary", 1000, "eng")
    await durables.mount("CAP-1", "WB-1", "tech")
    await _at_wire_bond(service, "L1")
    await service.track_in(cmd.TrackIn("L1", "WIRE_BOND", CTRL, tool="WB-1", dispatched=True))
    first, _ = (await service.get("L1")).carriers
    await service.start_job(cmd.StartJob("L1", "J0", "WB-1", first, CTRL))
    await service.record_job(cmd.RecordJob("J0", CTRL))
    await service.hold(cmd.HoldLot("L1", OP, "check the bonds"))
    assert (await durables.show("CAP-1")).durable.count == 62  # the recorded job only


@pytest.mark.usefixtures("line")
async def test_an_operators_track_out_on_a_tool_counts_every_carrier_and_warnings_are_recorded(
    service: LotService, durables: DurableService, equipment: EquipmentService
) -> None:
    await equipment.set_dispatch("WB-1", DispatchMode.MANUAL, "tech", "engineering lot")
    await durables.add("CAP-1", "capillary", 300, "eng", warn_fraction=0.4)
    await durables.mount("CAP-1", "WB-1", "tech")
    await _at_wire_bond(service, "L1")
    await service.track_in(cmd.TrackIn("L1", "WIRE_BOND", OP, tool="WB-1"))
    await service.track_out(cmd.TrackOut("L1", OP))
    assert (await durables.show("CAP-1")).durable.count == 126
    await _at_wire_bond(service, "L2")
    tracked = await service.track_in(cmd.TrackIn("L2", "WIRE_BOND", OP, tool="WB-1"))
    assert tracked.entries[0].data["durable_warnings"] == [
        "capillary CAP-1 at 126 of 300 touchdowns (42 %): past its warning at 40% of life"
    ]
    events = (await durables.show("CAP-1")).events
    assert [(e.lot_id, e.amount, e.job_id) for e in events if e.lot_id] == [("L1", 126, None)]


@pytest.mark.usefixtures("line")
async def test_a_durable_is_not_swapped_while_a_lot_runs_on_its_tool(
    service: LotService, durables: DurableService
) -> None:
    """A step's use of a tool's durables is counted when it ends, on those mounted then: a
    capillary swapped mid-step (CAP-1 off, CAP-2 on) left CAP-1, which bonded the lot, with
    no trace of it, and credited CAP-2 with all of its touchdowns (a recall by capillary
    missed the lot)."""
    await durables.add("CAP-1", "capillary", 10_000, "eng")
    await durables.add("CAP-2", "capillary", 10_000, "eng")
    await durables.mount("CAP-1", "WB-1", "tech")
    await _at_wire_bond(service, "L1")
    await service.track_in(cmd.TrackIn("L1", "WIRE_BOND", CTRL, tool="WB-1", dispatched=True))
    with pytest.raises(
        OperationNotAllowed, match="CAP-1 cannot be unmounted from WB-1 while lot L1"
    ):
        await durables.unmount("CAP-1", "tech", "swap")
    await durables.add("BLADE-1", "saw_blade", 10_000, "eng")
    await durables.mount("BLADE-1", "DICE-1", "tech")  # another tool: free
    for n, carrier in enumerate((await service.get("L1")).carriers):
        await service.start_job(cmd.StartJob("L1", f"J{n}", "WB-1", carrier, CTRL))
        await service.record_job(cmd.RecordJob(f"J{n}", CTRL))
    assert (await durables.show("CAP-1")).lots == ["L1"]
    await durables.unmount("CAP-1", "tech", "swap")  # the step is over
    await _at_wire_bond(service, "L2")
    await service.track_in(cmd.TrackIn("L2", "WIRE_BOND", CTRL, tool="WB-1", dispatched=True))
    with pytest.raises(OperationNotAllowed, match="CAP-2 cannot be mounted on WB-1 while lot L2"):
        await durables.mount("CAP-2", "WB-1", "tech")
    assert (await durables.show("CAP-2")).durable.tool_id is None


@pytest.mark.usefixtures("line")
async def test_a_mold_chase_is_not_cleaned_while_a_lot_molds_on_its_tool(
    service: LotService, durables: DurableService, equipment: EquipmentService
) -> None:
    """A cleaning renews the chase's count; the molding lot's shots are counted when its
    step ends, so a cleaning in between would leave them on the cleaned chase."""
    molder = ToolRegistration("MOLD-1", "molder", "modbus 127.0.0.1:5024", ("MOLD",))
    await equipment.register("line-a", [*TOOLS, molder])
    await equipment.report("MOLD-1", UP)
    await durables.add("CH-1", "mold_chase", 500, "eng")
    await durables.mount("CH-1", "MOLD-1", "tech")
    await _at_wire_bond(service, "L1")
    for step in ("WIRE_BOND", "STIFFENER_ATTACH"):
        await service.track_in(cmd.TrackIn("L1", step, OP))
        await service.track_out(cmd.TrackOut("L1", OP))
    await service.track_in(cmd.TrackIn("L1", "MOLD", CTRL, tool="MOLD-1", dispatched=True))
    with pytest.raises(OperationNotAllowed, match="CH-1 cannot be renewed on MOLD-1 while lot L1"):
        await durables.renew("CH-1", "tech", "chase cleaned")
    await service.track_out(cmd.TrackOut("L1", CTRL, dispatched=True))
    shots = (await durables.show("CH-1")).durable.count
    assert shots == 2  # one per carrier, on the chase as it was
    renewed = await durables.renew("CH-1", "tech", "chase cleaned")
    assert renewed.count == 0


@pytest.mark.usefixtures("line")
async def test_durable_commands_refuse_unknown_durables_and_tools_changing_nothing(
    durables: DurableService,
) -> None:
    with pytest.raises(UnknownDurable, match="there is no durable NOPE"):
        await durables.mount("NOPE", "WB-1", "tech")
    await durables.add("BLADE-1", "saw_blade", 5000, "eng")
    with pytest.raises(RecordExists, match="exists already"):
        await durables.add("BLADE-1", "saw_blade", 5000, "eng")
    with pytest.raises(UnknownTool, match="there is no tool NOPE"):
        await durables.mount("BLADE-1", "NOPE", "tech")
    with pytest.raises(InvalidInput, match="a saw_blade is mounted on a dicer; WB-1 is a"):
        await durables.mount("BLADE-1", "WB-1", "tech")
    with pytest.raises(OperationNotAllowed, match="not mounted on any tool"):
        await durables.unmount("BLADE-1", "tech")
    view = await durables.show("BLADE-1")
    assert view.durable.tool_id is None and len(view.events) == 1
    mounted = await durables.mount("BLADE-1", "DICE-1", "tech")
    assert mounted.tool_id == "DICE-1"


async def test_an_operator_may_not_add_or_mount_a_durable(
    store: UnitOfWorkFactory, clock: Clock
) -> None:
    operator = Principal("op1", frozenset({Role.OPERATOR}), AuthMethod.PASSWORD)
    service = DurableService(store, clock, principal=operator)
    with pytest.raises(NotAuthorized) as refused:
        await service.add("CAP-1", "capillary", 100, "op1")
    assert refused.value.action is Action.DURABLES
    assert set(refused.value.allowed) == {"technician", "engineer"}
    assert await service.list() == []
    technician = Principal("tech1", frozenset({Role.TECHNICIAN}), AuthMethod.PASSWORD)
    added = await service.acting_as(technician).add("CAP-1", "capillary", 100, "tech1")
    assert added.count == 0


@pytest.mark.usefixtures("line")
async def test_durables_are_listed_a_page_at_a_time_alike_on_every_store(
    durables: DurableService,
) -> None:
    """The memory store and the SQL ones answer a page the same; the service refuses a
    cursor or a tool that names nothing, and an empty page."""
    for i in range(7):
        await durables.add(f"CAP-{i}", "capillary", 1000, "eng")
    await durables.mount("CAP-3", "WB-1", "tech")  # one capillary per bonder
    await durables.mount("CAP-5", "WB-2", "tech")
    page = await durables.page(DurableQuery(limit=3, after="CAP-1"))
    assert [d.id for d in page.durables] == ["CAP-2", "CAP-3", "CAP-4"]
    assert (page.total, page.more) == (7, True)
    page = await durables.page(DurableQuery(after="CAP-4"))
    assert [d.id for d in page.durables] == ["CAP-5", "CAP-6"]
    assert (page.total, page.more) == (7, False)
    page = await durables.page(DurableQuery(tool_id="WB-1"))
    assert [d.id for d in page.durables] == ["CAP-3"] and (page.total, page.more) == (1, False)
    page = await durables.page(DurableQuery(mounted=True, limit=1))
    assert [d.id for d in page.durables] == ["CAP-3"] and (page.total, page.more) == (2, True)
    page = await durables.page(DurableQuery(mounted=True, after="CAP-3"))
    assert [d.id for d in page.durables] == ["CAP-5"] and (page.total, page.more) == (2, False)
    page = await durables.page(DurableQuery(tool_id="WB-2", after="CAP-5"))
    assert (page.durables, page.total, page.more) == ([], 1, False)
    assert (await durables.page(DurableQuery(tool_id="DB-1"))).total == 0  # a tool, none on it
    with pytest.raises(UnknownDurable, match="there is no durable NOPE"):
        await durables.page(DurableQuery(after="NOPE"))
    with pytest.raises(UnknownTool, match="there is no tool NOPE"):
        await durables.page(DurableQuery(tool_id="NOPE"))
    with pytest.raises(InvalidInput):
        await durables.page(DurableQuery(limit=0))


def test_every_durable_kind_mounts_on_a_class_of_the_catalogue(library: FlowLibrary) -> None:
    classes = {info.equipment_class for info in library.step_codes.values()}
    assert {spec.equipment_class for spec in rules.KINDS.values()} <= classes


# -- two commands on one durable at once -------------------------------------------------------


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_one_durable_mounted_on_two_tools_at_once_is_mounted_once(
    request: pytest.FixtureRequest, database: str, clock: Clock
) -> None:
    """Both mounts read CAP-1 off the tools, then both wrote: each said 'mounted', the
    history had it mounted on WB-1 and on WB-2, and it was on whichever wrote last."""
    url = request.getfixturevalue(f"{database}_url")
    engines = [create_engine(url), create_engine(url)]
    try:
        await upgrade(engines[0])
        plain = SqlUnitOfWorkFactory(engines[0])
        await EquipmentService(plain, clock).register("line-a", TOOLS)
        durables = DurableService(plain, clock)
        await durables.add("CAP-1", "capillary", 1000, "eng")
        barrier = asyncio.Barrier(2)
        racing = [
            DurableService(BothReadFirst(SqlUnitOfWorkFactory(e), barrier), clock) for e in engines
        ]
        results = await asyncio.gather(
            racing[0].mount("CAP-1", "WB-1", "tech"),
            racing[1].mount("CAP-1", "WB-2", "tech"),
            return_exceptions=True,
        )
        wins = [r for r in results if not isinstance(r, BaseException)]
        losses = [r for r in results if isinstance(r, BaseException)]
        assert len(wins) == 1 and len(losses) == 1, results
        assert isinstance(losses[0], ConcurrentUpdate), losses[0]
        assert "durable CAP-1 changed while this command ran" in losses[0].message
        shown = await durables.show("CAP-1")
        assert shown.durable.tool_id == wins[0].tool_id
        mounted = [e.tool_id for e in shown.events if e.event is DurableEventKind.MOUNTED]
        assert mounted == [wins[0].tool_id]
    finally:
        for engine in engines:
            await engine.dispose()


def test_a_warning_names_the_fraction_it_was_given_to_the_thousandth() -> None:
    """--warn-at 0.905 warned 'past its warning at 90% of life' (rounded to a percent) while
    it warns from 90.5 %: at 905 of 1,000, not at 900."""
    d = rules.add("CAP-1", "capillary", 1000, 0.905, "eng", NOW)[0]
    worn = replace(d, count=905)
    [warning] = rules.check_durables("L1", "WIRE_BOND", "WB-1", [worn])
    assert warning.endswith("(90 %): past its warning at 90.5% of life")
    assert rules.check_durables("L1", "WIRE_BOND", "WB-1", [replace(d, count=904)]) == []
    [usual] = rules.check_durables("L1", "WIRE_BOND", "WB-1", [replace(_new(), count=900)])
    assert usual.endswith("(90 %): past its warning at 90% of life")


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_the_database_keeps_one_durable_of_a_kind_on_a_tool(
    request: pytest.FixtureRequest, database: str, clock: Clock
) -> None:
    """Two mounts of two capillaries on WB-1 at once (on PostgreSQL each read a tool with
    none, and both wrote) end as the second write of the race would: the index of revision
    0024 refuses it, said as a change by another command, and nothing of it is written."""
    from mes.ports_durables import save_durables

    url = request.getfixturevalue(f"{database}_url")
    engine = create_engine(url)
    try:
        await upgrade(engine)
        store = SqlUnitOfWorkFactory(engine)
        await EquipmentService(store, clock).register("line-a", TOOLS)
        durables = DurableService(store, clock)
        for name in ("CAP-1", "CAP-2"):
            await durables.add(name, "capillary", 1000, "eng")
        await durables.mount("CAP-1", "WB-1", "tech")
        second = (await durables.show("CAP-2")).durable
        # what the race's loser wrote: its check had seen WB-1 with no capillary
        raced = rules.mount(second, "WB-1", "wire_bonder", [], "tech2", NOW)
        with pytest.raises(ConcurrentUpdate, match="a capillary was mounted on WB-1 by another"):
            await store.write(save_durables([raced]))
        shown = await durables.show("CAP-2")
        assert shown.durable.tool_id is None
        assert [e.event for e in shown.events] == [DurableEventKind.ADDED]
        assert [d.id for d in (await durables.page(DurableQuery(tool_id="WB-1"))).durables] == [
            "CAP-1"
        ]
    finally:
        await engine.dispose()
