"""Track-in interlocks on the tool: a track-in that names a tool is refused unless the tool
exists, its class runs the step, it is qualified for the step, and (an operator's track-in) it
is switched to manual, up and free; each refusal says which interlock and what was expected,
and changes nothing. The issue's two reproductions come first. Every store in turn."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from flows import FlowLibrary
from mes.adapters.database import create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain import commands as cmd
from mes.domain.equipment import DispatchMode, ToolRegistration, ToolSnapshot
from mes.domain.errors import (
    InterlockRefused,
    InvalidInput,
    LotTrackerError,
    OperationNotAllowed,
    UnknownTool,
)
from mes.domain.model import LotState, Operation
from mes.equipment import EquipmentService
from mes.interlocks import QualificationService
from mes.ports import UnitOfWorkFactory
from mes.service import LotService, TrackedIn
from tests.mes.conftest import Clock
from tests.mes.racing import BothReadFirst

LINE = "line-a"
OP = "op1"
BONDER = ToolRegistration("DB-1", "die_bonder", "modbus 127.0.0.1:5020", ("DIE_ATTACH",))
BONDER_2 = ToolRegistration("DB-2", "die_bonder", "modbus 127.0.0.1:5021", ("DIE_ATTACH",))
DICER = ToolRegistration("DICE-1", "dicer", "modbus 127.0.0.1:5022", ("DICE",))
UP = ToolSnapshot(connected=True, e10="standby", process_state="IDLE", mode="PRODUCTION")


@pytest.fixture
def qualifications(
    store: UnitOfWorkFactory, library: FlowLibrary, clock: Clock
) -> QualificationService:
    return QualificationService(store, library, clock)


async def _line(equipment: EquipmentService, *manual: str) -> None:
    """DB-1, DB-2 and DICE-1 registered (qualified for their configured steps) and up; the
    tools in ``manual`` switched to manual."""
    await equipment.register(LINE, [BONDER, BONDER_2, DICER])
    for tool in (BONDER, BONDER_2, DICER):
        await equipment.report(tool.id, UP)
    for tool_id in manual:
        await equipment.set_dispatch(tool_id, DispatchMode.MANUAL, "eng", "manual runs")


async def _at_die_attach(service: LotService, lot_id: str) -> None:
    """A fo-organic lot waiting for DIE_ATTACH."""
    await service.start(cmd.StartLot(lot_id, "fo-organic", OP))
    await service.track_in(cmd.TrackIn(lot_id, "SUBSTRATE_PREP", OP))
    await service.track_out(cmd.TrackOut(lot_id, OP))


async def _refused(service: LotService, command: cmd.TrackIn) -> InterlockRefused:
    before = await service.get(command.lot_id)
    with pytest.raises(InterlockRefused) as refused:
        await service.track_in(command)
    after = await service.get(command.lot_id)
    assert after == before  # nothing changed
    return refused.value


# -- the reproductions ---------------------------------------------------------------


async def test_a_track_in_on_a_tool_that_does_not_exist_is_refused_naming_the_qualified_tools(
    service: LotService, equipment: EquipmentService
) -> None:
    await _line(equipment)
    await _at_die_attach(service, "R6")
    refusal = await _refused(service, cmd.TrackIn("R6", "DIE_ATTACH", OP, tool="NOSUCHTOOL"))
    assert refusal.interlock == "unknown_tool"
    assert refusal.allowed == ("DB-1", "DB-2")
    assert "there is no tool NOSUCHTOOL" in refusal.message
    assert "expected a tool qualified for DIE_ATTACH (DB-1, DB-2)" in refusal.message
    shown = refusal.to_dict()
    assert shown["error"] == "interlock" and shown["interlock"] == "unknown_tool"
    assert shown["allowed"] == ["DB-1", "DB-2"] and shown["lot"] == "R6"
    assert shown["expected"] == "a tool qualified for DIE_ATTACH (DB-1, DB-2)"


async def test_die_attach_on_the_dicer_is_refused_even_with_both_tools_in_manual(
    service: LotService, equipment: EquipmentService
) -> None:
    await _line(equipment, "DB-1", "DICE-1")
    await _at_die_attach(service, "R5")
    refusal = await _refused(service, cmd.TrackIn("R5", "DIE_ATTACH", OP, tool="DICE-1"))
    assert refusal.interlock == "tool_class"
    assert "DICE-1 is a dicer, DIE_ATTACH (class die_bonder) runs on a die_bonder" in (
        refusal.message
    )
    # ... and accepted on the bonder in manual.
    outcome = await service.track_in(cmd.TrackIn("R5", "DIE_ATTACH", OP, tool="DB-1"))
    assert outcome.lot.state is LotState.RUNNING and outcome.lot.running is not None
    assert outcome.lot.running.tool == "DB-1"


# -- each interlock, refused at its edge and accepted inside it -------------------------------


async def test_a_tool_disqualified_for_the_step_is_refused_until_qualified_again(
    service: LotService, equipment: EquipmentService, qualifications: QualificationService
) -> None:
    await _line(equipment, "DB-1")
    await _at_die_attach(service, "L1")
    await qualifications.set("DB-1", "DIE_ATTACH", False, "eng", "bond line drift")
    refusal = await _refused(service, cmd.TrackIn("L1", "DIE_ATTACH", OP, tool="DB-1"))
    assert refusal.interlock == "tool_qualification"
    assert "DB-1 was disqualified for DIE_ATTACH by eng" in refusal.message
    assert "(bond line drift)" in refusal.message
    assert refusal.allowed == ("DB-2",)
    await qualifications.set("DB-1", "DIE_ATTACH", True, "eng", "requalified")
    await service.track_in(cmd.TrackIn("L1", "DIE_ATTACH", OP, tool="DB-1"))


async def test_a_tool_never_qualified_for_the_step_is_refused(
    service: LotService, equipment: EquipmentService, library: FlowLibrary
) -> None:
    await equipment.register(
        LINE, [ToolRegistration("FC-1", "die_bonder", "modbus 127.0.0.1:5023", ("FLIP_CHIP_BOND",))]
    )
    await equipment.report("FC-1", UP)
    await equipment.set_dispatch("FC-1", DispatchMode.MANUAL, "eng")
    await _at_die_attach(service, "L1")
    refusal = await _refused(service, cmd.TrackIn("L1", "DIE_ATTACH", OP, tool="FC-1"))
    assert refusal.interlock == "tool_qualification"
    assert "FC-1 is not qualified for DIE_ATTACH" in refusal.message
    assert "none is: pkgline tool qualify TOOL --step DIE_ATTACH" in refusal.expected


async def test_an_operators_track_in_on_a_tool_the_controller_dispatches_needs_it_in_manual(
    service: LotService, equipment: EquipmentService
) -> None:
    await _line(equipment)
    await _at_die_attach(service, "L1")
    refusal = await _refused(service, cmd.TrackIn("L1", "DIE_ATTACH", OP, tool="DB-1"))
    assert refusal.interlock == "tool_dispatch"
    assert refusal.expected == "DB-1 switched to manual first (pkgline tool manual DB-1)"
    assert refusal.allowed == ("DB-2",)  # where the lot may go instead
    await equipment.set_dispatch("DB-1", DispatchMode.MANUAL, OP, "engineering lot")
    await service.track_in(cmd.TrackIn("L1", "DIE_ATTACH", OP, tool="DB-1"))


@pytest.mark.parametrize(
    ("snapshot", "shown"),
    [
        (
            ToolSnapshot(connected=False, e10="unscheduled_down", reason="connection refused"),
            "DB-1 is unscheduled_down: connection refused",
        ),
        (
            ToolSnapshot(connected=True, e10="scheduled_down", mode="MAINTENANCE"),
            "DB-1 is scheduled_down, mode MAINTENANCE",
        ),
        (
            ToolSnapshot(connected=False, e10="unmonitored", reason="controller stopped"),
            "DB-1 is unmonitored: controller stopped",
        ),
    ],
)
async def test_a_tool_down_or_in_maintenance_is_refused(
    service: LotService, equipment: EquipmentService, snapshot: ToolSnapshot, shown: str
) -> None:
    await _line(equipment, "DB-1")
    await _at_die_attach(service, "L1")
    await equipment.report("DB-1", snapshot)
    refusal = await _refused(service, cmd.TrackIn("L1", "DIE_ATTACH", OP, tool="DB-1"))
    assert refusal.interlock == "tool_state"
    assert shown in refusal.message
    assert refusal.expected == "DB-1 up (standby, productive or engineering)"
    assert refusal.allowed == ("DB-2",)
    await equipment.report("DB-1", replace(UP, e10="engineering", mode="ENGINEERING"))
    await service.track_in(cmd.TrackIn("L1", "DIE_ATTACH", OP, tool="DB-1"))


async def test_a_tool_running_another_lot_is_refused_until_that_lot_leaves_it(
    service: LotService, equipment: EquipmentService
) -> None:
    await _line(equipment, "DB-1")
    await _at_die_attach(service, "L1")
    await _at_die_attach(service, "L2")
    await service.track_in(cmd.TrackIn("L1", "DIE_ATTACH", OP, tool="DB-1"))
    refusal = await _refused(service, cmd.TrackIn("L2", "DIE_ATTACH", OP, tool="DB-1"))
    assert refusal.interlock == "tool_busy"
    assert "DB-1 is running lot L1" in refusal.message
    assert refusal.allowed == ("DB-2",)
    await service.abort(cmd.AbortStep("L1", OP, "wrong lot first"))
    await service.track_in(cmd.TrackIn("L2", "DIE_ATTACH", OP, tool="DB-1"))


async def test_the_tools_offered_instead_are_the_qualified_ones_that_can_take_the_lot(
    service: LotService, equipment: EquipmentService
) -> None:
    """A refusal of a tool that may run the step but not now names where the lot could go
    instead: not a tool down, nor one in manual running another lot; one the controller
    dispatches is a place to go (it takes the lot in its turn), busy or not."""
    db3 = ToolRegistration("DB-3", "die_bonder", "modbus 127.0.0.1:5024", ("DIE_ATTACH",))
    db4 = ToolRegistration("DB-4", "die_bonder", "modbus 127.0.0.1:5025", ("DIE_ATTACH",))
    await _line(equipment, "DB-1")
    await equipment.register(LINE, [BONDER, BONDER_2, DICER, db3, db4])
    for tool in (db3, db4):
        await equipment.report(tool.id, UP)
        await equipment.set_dispatch(tool.id, DispatchMode.MANUAL, "eng")
    for lot_id in ("L1", "L2", "L3"):
        await _at_die_attach(service, lot_id)
    await service.track_in(cmd.TrackIn("L1", "DIE_ATTACH", OP, tool="DB-1"))
    busy = await _refused(service, cmd.TrackIn("L2", "DIE_ATTACH", OP, tool="DB-1"))
    assert busy.interlock == "tool_busy"
    assert busy.allowed == ("DB-2", "DB-3", "DB-4")  # DB-2 dispatched, DB-3 and DB-4 free
    await service.track_in(cmd.TrackIn("L2", "DIE_ATTACH", OP, tool="DB-3"))  # DB-3 busy now
    await equipment.report("DB-2", ToolSnapshot(connected=False, e10="unscheduled_down"))
    refusal = await _refused(service, cmd.TrackIn("L3", "DIE_ATTACH", OP, tool="DB-1"))
    assert refusal.allowed == ("DB-4",)
    assert refusal.to_dict()["allowed"] == ["DB-4"]
    await equipment.report("DB-4", ToolSnapshot(connected=True, e10="scheduled_down"))
    nowhere = await _refused(service, cmd.TrackIn("L3", "DIE_ATTACH", OP, tool="DB-1"))
    assert nowhere.allowed == () and "DB-1 is running lot L1" in nowhere.message
    # a refusal of the tool itself (not qualified, wrong class) still names every qualified
    # tool: the operator asked for the wrong kind, not the wrong moment
    wrong = await _refused(service, cmd.TrackIn("L3", "DIE_ATTACH", OP, tool="DICE-1"))
    assert wrong.allowed == ("DB-1", "DB-2", "DB-3", "DB-4")


async def test_the_controllers_own_track_ins_are_checked_for_class_and_qualification_only(
    service: LotService, equipment: EquipmentService, qualifications: QualificationService
) -> None:
    """The controller follows its tools live: the database's state of a tool it finds idle
    may lag, and it tracks the next lot in while the last one is recorded."""
    await _line(equipment)
    for lot_id in ("L1", "L2", "L3", "L4"):
        await _at_die_attach(service, lot_id)
    await service.track_in(cmd.TrackIn("L1", "DIE_ATTACH", "ctl", tool="DB-1", dispatched=True))
    await equipment.report("DB-2", ToolSnapshot(connected=False, e10="unscheduled_down"))
    await qualifications.set("DB-2", "DIE_ATTACH", False, "eng", "capillary trial")
    results = await service.track_in_all(
        [
            cmd.TrackIn("L2", "DIE_ATTACH", "ctl", tool="DB-1", dispatched=True),  # finishing L1
            cmd.TrackIn("L3", "DIE_ATTACH", "ctl", tool="DB-2", dispatched=True),
            cmd.TrackIn("L4", "DIE_ATTACH", "ctl", tool="DICE-1", dispatched=True),
        ]
    )
    accepted, disqualified, wrong_class = results
    assert isinstance(accepted, TrackedIn) and accepted.lot.state is LotState.RUNNING
    assert isinstance(disqualified, InterlockRefused)
    assert disqualified.interlock == "tool_qualification"
    assert isinstance(wrong_class, InterlockRefused) and wrong_class.interlock == "tool_class"
    assert (await service.get("L3")).state is LotState.WAITING
    assert (await service.get("L4")).state is LotState.WAITING


async def test_a_step_on_a_tool_is_tracked_out_by_whoever_tracked_it_in(
    service: LotService, equipment: EquipmentService
) -> None:
    """The controller's step (its jobs on the tool) is the controller's to track out, with
    the tool's results, even with the tool switched to manual since; a step tracked in by
    hand is the operator's, whom the controller leaves it to. Each refusal changes nothing."""
    await _line(equipment)
    for lot_id in ("L1", "L2"):
        await _at_die_attach(service, lot_id)
    await service.track_in(cmd.TrackIn("L1", "DIE_ATTACH", "ctl", tool="DB-1", dispatched=True))
    await equipment.set_dispatch("DB-1", DispatchMode.MANUAL, OP, "L1 to finish by hand")
    await equipment.set_dispatch("DB-2", DispatchMode.MANUAL, OP, "engineering lot")
    await service.track_in(cmd.TrackIn("L2", "DIE_ATTACH", OP, tool="DB-2"))
    before = {lot_id: await service.report(lot_id) for lot_id in ("L1", "L2")}

    with pytest.raises(OperationNotAllowed) as refused:
        await service.track_out(cmd.TrackOut("L1", OP, measured={"bond_force_n": "4.9"}))
    assert refused.value.message.startswith(
        "track-out of lot L1 refused: DIE_ATTACH runs on DB-1, tracked in by its line "
        "controller (ctl) at "
    )
    assert "pkgline lot abort L1 --reason" in refused.value.message
    assert "pkgline tool manual DB-1" in refused.value.message
    with pytest.raises(OperationNotAllowed) as refused:
        await service.track_out(cmd.TrackOut("L2", "ctl", dispatched=True))
    assert "was tracked in by hand by op1" in refused.value.message
    assert {lot_id: await service.report(lot_id) for lot_id in ("L1", "L2")} == before

    await service.track_out(cmd.TrackOut("L1", "ctl", dispatched=True))
    await service.track_out(cmd.TrackOut("L2", OP, measured={"bond_force_n": "4.9"}))
    for lot_id, who in (("L1", "ctl"), ("L2", OP)):
        out = (await service.report(lot_id)).history[-1]
        assert (out.operation, out.user, out.state_after) == (
            Operation.TRACK_OUT,
            who,
            LotState.WAITING,
        )


async def test_a_track_in_without_a_tool_is_accepted_and_recorded_as_off_the_tools(
    service: LotService, equipment: EquipmentService
) -> None:
    await _line(equipment)
    await _at_die_attach(service, "L1")
    outcome = await service.track_in(cmd.TrackIn("L1", "DIE_ATTACH", OP))
    (entry,) = outcome.entries
    assert entry.operation is Operation.TRACK_IN and entry.tool is None
    assert entry.data["off_tools"] is True
    report = await service.report("L1")
    prep = next(e for e in report.history if e.step == "SUBSTRATE_PREP")
    assert "off_tools" not in prep.data  # a manual step runs on no tool anyway


async def test_a_manual_step_names_no_tool(
    service: LotService, equipment: EquipmentService
) -> None:
    await _line(equipment, "DB-1")
    await service.start(cmd.StartLot("L1", "fo-organic", OP))
    refusal = await _refused(service, cmd.TrackIn("L1", "SUBSTRATE_PREP", OP, tool="DB-1"))
    assert refusal.interlock == "manual_step"
    assert refusal.expected == "no --tool for a manual step"


async def test_the_step_order_is_refused_before_any_tool_is_looked_at(
    service: LotService, equipment: EquipmentService
) -> None:
    await _line(equipment)
    await service.start(cmd.StartLot("L1", "fo-organic", OP))
    with pytest.raises(LotTrackerError) as refused:
        await service.track_in(cmd.TrackIn("L1", "DIE_ATTACH", OP, tool="NOSUCHTOOL"))
    assert not isinstance(refused.value, InterlockRefused)
    assert refused.value.allowed == ("SUBSTRATE_PREP",)


# -- the qualification table -------------------------------------------------------------------


async def test_registration_qualifies_a_new_tool_for_its_configured_steps_once(
    equipment: EquipmentService, qualifications: QualificationService
) -> None:
    await equipment.register(LINE, [BONDER])
    (first,) = await qualifications.list(tool_id="DB-1")
    assert (first.step, first.qualified, first.by) == ("DIE_ATTACH", True, f"line {LINE}")
    await qualifications.set("DB-1", "DIE_ATTACH", False, "eng", "trial")
    await equipment.register(LINE, [BONDER])  # the controller restarts
    (after,) = await qualifications.list(tool_id="DB-1")
    assert (after.qualified, after.by, after.reason) == (False, "eng", "trial")


async def test_qualifying_a_tool_for_a_step_its_class_does_not_run_is_refused(
    equipment: EquipmentService, qualifications: QualificationService
) -> None:
    await equipment.register(LINE, [DICER])
    with pytest.raises(InvalidInput) as refused:
        await qualifications.set("DICE-1", "DIE_ATTACH", True, "eng")
    assert "DIE_ATTACH runs on a die_bonder, and DICE-1 is a dicer" in refused.value.message
    assert "DICE" in refused.value.allowed
    with pytest.raises(InvalidInput, match="NOPE is not a step code"):
        await qualifications.set("DICE-1", "NOPE", True, "eng")
    with pytest.raises(UnknownTool):
        await qualifications.set("NOSUCHTOOL", "DICE", True, "eng")
    # a disqualification says so, and an operator step is not "run on a manual"
    with pytest.raises(InvalidInput, match=r"^cannot disqualify DICE-1 for DIE_ATTACH: DIE_ATT"):
        await qualifications.set("DICE-1", "DIE_ATTACH", False, "eng", "drift")
    with pytest.raises(InvalidInput, match="SUBSTRATE_LOAD is an operator step, run on no tool"):
        await qualifications.set("DICE-1", "SUBSTRATE_LOAD", True, "eng")
    assert [q.step for q in await qualifications.list(tool_id="DICE-1")] == ["DICE"]


# -- two track-ins on one tool at once ---------------------------------------------------------


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_two_lots_tracked_in_on_one_free_tool_at_once_run_one_at_a_time(
    request: pytest.FixtureRequest, database: str, library: FlowLibrary, clock: Clock
) -> None:
    """Two operators track two lots in on DB-1 (in manual, free) at the same instant: each
    track-in read the tool free, and on PostgreSQL both wrote, so two lots ran on one tool.
    The second is now refused as a conflict and changes nothing."""
    url = request.getfixturevalue(f"{database}_url")
    engines = [create_engine(url), create_engine(url)]
    try:
        await upgrade(engines[0])
        plain = SqlUnitOfWorkFactory(engines[0])
        await _line(EquipmentService(plain, clock), "DB-1")
        service = LotService(plain, library, clock)
        for lot_id in ("L1", "L2"):
            await _at_die_attach(service, lot_id)
        before = {lot_id: await service.get(lot_id) for lot_id in ("L1", "L2")}
        barrier = asyncio.Barrier(2)
        racing = [
            LotService(BothReadFirst(SqlUnitOfWorkFactory(e), barrier), library, clock)
            for e in engines
        ]
        results = await asyncio.gather(
            *(
                racer.track_in(cmd.TrackIn(lot_id, "DIE_ATTACH", OP, tool="DB-1"))
                for racer, lot_id in zip(racing, ("L1", "L2"), strict=True)
            ),
            return_exceptions=True,
        )
        wins = [r for r in results if not isinstance(r, BaseException)]
        losses = [r for r in results if isinstance(r, BaseException)]
        assert len(wins) == 1 and len(losses) == 1, results
        assert isinstance(losses[0], LotTrackerError), losses[0]
        assert "DB-1" in losses[0].message, losses[0].message
        lots = [await service.get(lot_id) for lot_id in ("L1", "L2")]
        assert [lot.id for lot in lots if lot.state is LotState.RUNNING] == [wins[0].lot.id]
        assert [lot for lot in lots if lot.id != wins[0].lot.id] == [
            before[lot_id] for lot_id in before if lot_id != wins[0].lot.id
        ]
    finally:
        for engine in engines:
            await engine.dispose()
