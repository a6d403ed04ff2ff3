"""A person declares a tool out of production in SEMI E10 terms (``tool down --planned``:
scheduled down for planned maintenance; ``--not-scheduled``: non-scheduled) and brings it
back (``tool up``): while declared, the tool's E10 state is the declared one whatever it
reports, time in state and availability count it so, every track-in on it is refused (the
line controller's too) saying who declared it and what is expected; a tool running a lot is
refused; the declaration and its end are engineering changes in the security log; up, the
tool is in the state it last reported. Every store in turn."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from mes.domain import commands as cmd
from mes.domain.authority import AuthMethod, NotAuthorized, Principal, Role
from mes.domain.equipment import DispatchMode, ToolRecord, ToolRegistration
from mes.domain.errors import InterlockRefused, InvalidInput, OperationNotAllowed
from mes.domain.tool_down import InForce, brought_up, declared_down, down_refusal
from mes.equipment import EquipmentService
from mes.ports import UnitOfWorkFactory
from mes.service import LotService
from tests.mes.conftest import Clock
from tests.mes.test_engineering_changes import _changes, _log
from tests.mes.test_interlocks import LINE, OP, UP, _at_die_attach, _line, _refused

TECH = Principal("tech1", frozenset({Role.TECHNICIAN}), AuthMethod.PASSWORD)
OPERATOR = Principal("op1", frozenset({Role.OPERATOR}), AuthMethod.PASSWORD)
T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def _tool(**snapshot: object) -> ToolRecord:
    return ToolRecord(
        id="DB-1",
        line="line-a",
        equipment_class="die_bonder",
        address="modbus",
        steps=("DIE_ATTACH",),
        dispatch=DispatchMode.AUTO,
        snapshot=replace(UP, **snapshot),  # type: ignore[arg-type]
        e10_since=T0,
        updated_at=T0,
    )


# -- the rules -------------------------------------------------------------------------------


def test_a_declared_state_overrides_what_the_tool_reports_and_up_gives_it_back() -> None:
    at = T0 + timedelta(minutes=5)
    down, change = declared_down(_tool(), "scheduled_down", "tech1", "PM 500 h", at)
    assert (down.down, down.down_by, down.down_reason, down.down_at) == (
        "scheduled_down",
        "tech1",
        "PM 500 h",
        at,
    )
    assert down.snapshot.e10 == "scheduled_down" and down.reported_e10 == "standby"
    assert change is not None and change.e10 == "scheduled_down" and change.at == at
    assert change.reason == "declared scheduled_down by tech1: PM 500 h"
    # changed to non-scheduled while down: the reported state is kept, not the declared one
    again, _ = declared_down(down, "non_scheduled", "eng1", "no orders", at)
    assert again.reported_e10 == "standby" and again.snapshot.e10 == "non_scheduled"
    up, back = brought_up(replace(again, reported_e10="engineering"), "tech1", at)
    assert up.down is None and up.down_by is None and up.reported_e10 is None
    assert up.snapshot.e10 == "engineering"
    assert back is not None and back.e10 == "engineering"


def test_a_tool_running_a_lot_or_an_undeclarable_state_is_refused() -> None:
    assert down_refusal(_tool(), "scheduled_down", []) is None
    busy = down_refusal(_tool(lot_id="L7"), "scheduled_down", ["L8"])
    assert busy is not None and "running lot L7, L8" in busy and "aborted" in busy
    wrong = down_refusal(_tool(), "standby", [])
    assert wrong is not None and "scheduled_down, non_scheduled" in wrong


# -- the service -----------------------------------------------------------------------------


async def test_planned_maintenance_is_scheduled_down_time_whatever_the_tool_reports(
    equipment: EquipmentService, clock: Clock
) -> None:
    await _line(equipment)
    start = clock.now
    record, changed = await equipment.declare_down("DB-1", "scheduled_down", "tech1", "PM")
    assert changed and record.snapshot.e10 == "scheduled_down"
    stored = await equipment.tool("DB-1")
    assert (stored.down, stored.down_by, stored.down_reason) == ("scheduled_down", "tech1", "PM")
    assert stored.down_at == record.down_at and stored.reported_e10 == "standby"
    # the controller's observations are kept, the declared state stays
    await equipment.report("DB-1", replace(UP, e10="engineering", mode="ENGINEERING"))
    await equipment.mark_unmonitored(["DB-1"], clock.now, "controller stopped")
    await equipment.report("DB-1", replace(UP, e10="engineering", mode="ENGINEERING"))
    stored = await equipment.tool("DB-1")
    assert stored.snapshot.e10 == "scheduled_down" and stored.snapshot.mode == "ENGINEERING"
    assert stored.reported_e10 == "engineering"
    again, changed = await equipment.declare_down("DB-1", "scheduled_down", "eng1", "again")
    assert not changed and again.down_by == "tech1"
    for _ in range(6):
        clock()
    mid = clock.now
    up, changed = await equipment.bring_up("DB-1", "tech1")
    assert changed and up.down is None and up.snapshot.e10 == "engineering"
    assert (await equipment.tool("DB-1")).snapshot.e10 == "engineering"
    times = await equipment.state_times("DB-1", start, mid)
    assert times.seconds["scheduled_down"] == pytest.approx((mid - record.e10_since).seconds)
    assert times.seconds["engineering"] == 0 and times.seconds["standby"] > 0
    assert times.availability is not None and times.availability < 0.5
    _, changed = await equipment.bring_up("DB-1", "tech1")
    assert not changed


async def test_the_tool_says_who_last_declared_it_down_or_up_how_known_and_why(
    equipment: EquipmentService,
) -> None:
    """The tool's record keeps its last declaration (down or up) with the principal that
    acted and how it was known, as a lot history entry does (the event feed's tool-state
    says it), and keeps it once the tool is up: the declaration in force does not."""
    await _line(equipment)
    tech = equipment.acting_as(TECH)
    down, _ = await tech.declare_down("DB-1", "scheduled_down", "tom", "PM 500 h")
    stored = await equipment.tool("DB-1")
    said = (stored.declared_user, stored.declared_by, stored.declared_auth)
    assert said == ("tom", "tech1", "password")  # the name given, who acted, how known
    assert (stored.declared_reason, stored.declared_at) == ("PM 500 h", down.down_at)
    await tech.bring_up("DB-1", "tech1", "PM done")
    stored = await equipment.tool("DB-1")
    assert stored.down is None and stored.down_by is None
    said = (stored.declared_user, stored.declared_by, stored.declared_auth)
    assert said == ("tech1", "tech1", "password") and stored.declared_reason == "PM done"
    assert down.down_at is not None and stored.declared_at is not None
    assert stored.declared_at >= down.down_at
    await equipment.declare_down("DB-1", "non_scheduled", "eng1", "no orders")  # no principal
    stored = await equipment.tool("DB-1")
    assert (stored.declared_user, stored.declared_by, stored.declared_auth) == ("eng1", None, None)


async def test_the_declarations_in_force_on_a_line_are_read_for_its_controller(
    equipment: EquipmentService,
) -> None:
    """What the line controller's live feed polls (Sparkplug's E10/Declared): the tools of
    its line declared down now, with who, why and since when; not another line's, not a tool
    brought up."""
    await _line(equipment)
    other = ToolRegistration("MOLD-9", "molder", "modbus 127.0.0.1:5029", ("MOLD",))
    await equipment.register("line-b", [other])
    await equipment.report("MOLD-9", UP)
    assert await equipment.declarations_in_force(LINE) == {}
    down, _ = await equipment.declare_down("DB-1", "scheduled_down", "tom", "PM 500 h")
    await equipment.declare_down("DICE-1", "non_scheduled", "eng1", "no orders")
    await equipment.declare_down("MOLD-9", "scheduled_down", "tom", "chase cleaning")
    assert await equipment.declarations_in_force(LINE) == {
        "DB-1": InForce("scheduled_down", "tom", "PM 500 h", down.down_at),
        "DICE-1": InForce("non_scheduled", "eng1", "no orders", ANY_TIME),
    }
    await equipment.bring_up("DICE-1", "eng1")
    assert set(await equipment.declarations_in_force(LINE)) == {"DB-1"}
    assert set(await equipment.declarations_in_force("line-b")) == {"MOLD-9"}
    assert await equipment.declarations_in_force("no-such-line") == {}
    with pytest.raises(NotAuthorized):
        await equipment.acting_as(NOBODY).declarations_in_force(LINE)


class _AnyTime:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, datetime) and other.tzinfo is not None

    def __hash__(self) -> int:
        return 0


ANY_TIME = _AnyTime()
NOBODY = Principal("nobody", frozenset(), AuthMethod.PASSWORD)


async def test_non_scheduled_time_is_left_out_of_operations_time(
    equipment: EquipmentService, clock: Clock
) -> None:
    await _line(equipment)
    start = clock.now
    await equipment.declare_down("DB-1", "non_scheduled", "eng1", "no orders this shift")
    for _ in range(10):
        clock()
    times = await equipment.state_times("DB-1", start, clock.now)
    assert times.seconds["non_scheduled"] > times.seconds["standby"] > 0
    assert times.operations_s == times.seconds["standby"]
    assert times.availability == 1.0


async def test_a_declaration_needs_a_reason_and_a_declarable_state(
    equipment: EquipmentService,
) -> None:
    await _line(equipment)
    with pytest.raises(InvalidInput, match="with a reason"):
        await equipment.declare_down("DB-1", "scheduled_down", "tech1", "  ")
    with pytest.raises(InvalidInput, match="one of scheduled_down, non_scheduled"):
        await equipment.declare_down("DB-1", "standby", "tech1", "why")
    assert (await equipment.tool("DB-1")).down is None


async def test_track_ins_on_a_tool_declared_down_are_refused_the_controllers_too(
    service: LotService, equipment: EquipmentService
) -> None:
    await _line(equipment, "DB-1")
    await _at_die_attach(service, "L1")
    await equipment.declare_down("DB-1", "scheduled_down", "tech1", "PM 500 h")
    refusal = await _refused(service, cmd.TrackIn("L1", "DIE_ATTACH", OP, tool="DB-1"))
    assert refusal.interlock == "tool_down"
    assert "DB-1 is scheduled_down (planned maintenance) declared by tech1" in refusal.message
    assert "PM 500 h" in refusal.message
    assert refusal.expected.startswith("DB-1 brought back up first (pkgline tool up DB-1)")
    assert refusal.allowed == ("DB-2",)
    [dispatched] = await service.track_in_all(
        [cmd.TrackIn("L1", "DIE_ATTACH", "ctl", tool="DB-1", dispatched=True)]
    )
    assert isinstance(dispatched, InterlockRefused) and dispatched.interlock == "tool_down"
    await equipment.bring_up("DB-1", "tech1")
    await service.track_in(cmd.TrackIn("L1", "DIE_ATTACH", OP, tool="DB-1"))


async def test_a_tool_running_a_lot_is_not_declared_down_until_the_lot_leaves_it(
    service: LotService, equipment: EquipmentService
) -> None:
    await _line(equipment, "DB-1")
    await _at_die_attach(service, "L1")
    await service.track_in(cmd.TrackIn("L1", "DIE_ATTACH", OP, tool="DB-1"))
    with pytest.raises(OperationNotAllowed, match="running lot L1: it finishes"):
        await equipment.declare_down("DB-1", "scheduled_down", "tech1", "PM")
    assert (await equipment.tool("DB-1")).down is None
    await service.abort(cmd.AbortStep("L1", OP, "PM due"))
    await equipment.declare_down("DB-1", "scheduled_down", "tech1", "PM")


async def test_declaring_and_ending_are_engineering_changes_of_technicians_and_engineers(
    store: UnitOfWorkFactory, clock: Clock, equipment: EquipmentService
) -> None:
    await _line(equipment)
    tools = EquipmentService(store, clock, principal=TECH, security=_log(store))
    await tools.declare_down("DB-1", "scheduled_down", "tech1", "PM 500 h")
    await tools.bring_up("DB-1", "tech1", "PM done")
    operator = EquipmentService(store, clock, principal=OPERATOR, security=_log(store))
    with pytest.raises(NotAuthorized):
        await operator.declare_down("DB-2", "scheduled_down", "op1", "PM")
    down, up = [c for c in await _changes(store) if c.action == "tool_down"]
    assert (down.actor, down.detail["tool"], down.detail["reason"]) == ("tech1", "DB-1", "PM 500 h")
    assert down.detail["before"]["down"] is None
    assert down.detail["after"]["down"] == "scheduled_down"
    assert up.detail["after"]["down"] is None and up.detail["after"]["e10"] == "standby"
    assert up.detail["reason"] == "PM done"
    assert (await equipment.tool("DB-2")).down is None


async def _report(equipment: EquipmentService) -> None:
    await equipment.report("DB-1", replace(UP, e10="productive", process_state="EXECUTING"))


async def _unmonitored(equipment: EquipmentService) -> None:
    await equipment.mark_unmonitored(["DB-1"], datetime.now(UTC), "its controller stopped")


@pytest.mark.parametrize(
    ("write", "reported"), [(_report, "productive"), (_unmonitored, "unmonitored")]
)
async def test_a_write_read_before_a_declaration_committed_does_not_undo_it(
    migrated_postgres_url: str,
    clock: Clock,
    write: Callable[[EquipmentService], Awaitable[None]],
    reported: str,
) -> None:
    """PostgreSQL, two writers at once: a person declares DB-1 down (this test's own
    transaction, held open) while its controller records a report, or the line marks DB-1
    unmonitored (its controller stopped). The write waits for the declaration (it reads the
    tool locked), then keeps the declared state; it read DB-1 as it was before, and put its
    state back over the declaration (the tool declared down, its E10 state standby or
    unmonitored: maintenance counted as standby time, or as none)."""
    import asyncio

    import asyncpg

    from mes.adapters.database import create_engine
    from mes.adapters.sql import SqlUnitOfWorkFactory

    engine = create_engine(migrated_postgres_url)
    try:
        equipment = EquipmentService(SqlUnitOfWorkFactory(engine), clock)
        await _line(equipment)
        person = await asyncpg.connect(migrated_postgres_url)
        try:
            declaring = person.transaction()
            await declaring.start()
            await person.execute(
                "UPDATE tools SET down = 'scheduled_down', down_by = 'tech1', down_reason = 'PM',"
                " down_at = now(), reported_e10 = e10, e10 = 'scheduled_down' WHERE id = 'DB-1'"
            )
            report = asyncio.create_task(write(equipment))
            watcher = await asyncpg.connect(migrated_postgres_url)
            try:
                while not await watcher.fetchval(  # the write waits on DB-1's row
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                ):
                    assert not report.done(), report
                    await asyncio.sleep(0.01)
            finally:
                await watcher.close()
            await declaring.commit()
            await report
        finally:
            await person.close()
        stored = await equipment.tool("DB-1")
        assert stored.down == "scheduled_down"
        assert stored.snapshot.e10 == "scheduled_down"  # the declaration, not the write
        assert stored.reported_e10 == reported  # what the tool said (or that none hears) is kept
    finally:
        await engine.dispose()
