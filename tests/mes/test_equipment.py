"""Equipment tracking: tools belong to one line controller; every SEMI E10 state change is
recorded with its time, so time in state and availability can be told over any window."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from mes.domain.equipment import (
    DispatchMode,
    E10Change,
    ToolPart,
    ToolRegistration,
    ToolSnapshot,
    time_in_states,
)
from mes.domain.errors import ToolOwnedElsewhere, UnknownTool
from mes.equipment import EquipmentService
from mes.ports import UnitOfWorkFactory
from tests.mes.conftest import Clock

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
MOLDER = ToolRegistration("MOLD-1", "molder", "modbus 127.0.0.1:5020", ("MOLD", "FILL"))


def _at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_time_in_states_clips_each_state_to_the_window() -> None:
    changes = [
        E10Change("T", _at(-30), "standby"),
        E10Change("T", _at(10), "productive"),
        E10Change("T", _at(40), "unscheduled_down"),
        E10Change("T", _at(50), "standby"),
    ]
    times = time_in_states(changes, _at(0), _at(60))
    assert times.seconds["standby"] == 20 * 60
    assert times.seconds["productive"] == 30 * 60
    assert times.seconds["unscheduled_down"] == 10 * 60
    assert times.availability == pytest.approx(50 / 60)
    assert times.utilization == pytest.approx(30 / 60)


def test_non_scheduled_time_is_left_out_of_availability() -> None:
    changes = [E10Change("T", _at(0), "non_scheduled"), E10Change("T", _at(30), "productive")]
    times = time_in_states(changes, _at(0), _at(60))
    assert times.availability == 1.0
    assert (
        time_in_states([E10Change("T", _at(0), "non_scheduled")], _at(0), _at(10)).availability
        is None
    )


def test_a_window_before_the_first_change_knows_nothing() -> None:
    times = time_in_states([E10Change("T", _at(30), "standby")], _at(0), _at(60))
    assert times.known_s == 30 * 60 and times.seconds["standby"] == 30 * 60


async def test_a_new_tool_is_down_until_its_controller_reaches_it(
    equipment: EquipmentService,
) -> None:
    [tool] = await equipment.register("line-1", [MOLDER])
    assert tool.snapshot.e10 == "unscheduled_down" and not tool.snapshot.connected
    assert tool.dispatch is DispatchMode.AUTO
    assert [t.id for t in await equipment.tools("line-1")] == ["MOLD-1"]


async def test_a_tool_belongs_to_one_controller(equipment: EquipmentService) -> None:
    await equipment.register("line-1", [MOLDER])
    other = ToolRegistration("DB-1", "die_bonder", "opcua", ("DIE_ATTACH",))
    with pytest.raises(ToolOwnedElsewhere) as refused:
        await equipment.register("line-2", [other, MOLDER])
    assert "line-1" in refused.value.message
    assert [t.id for t in await equipment.tools()] == ["MOLD-1"], "nothing changed"
    again = await equipment.register("line-1", [MOLDER])
    assert again[0].line == "line-1"


async def test_state_changes_are_recorded_with_their_times(
    equipment: EquipmentService, clock: Clock
) -> None:
    await equipment.register("line-1", [MOLDER])
    start = clock.now
    await equipment.report("MOLD-1", ToolSnapshot(True, "standby", "READY", "PRODUCTION"))
    clock.now += timedelta(minutes=10)
    await equipment.report(
        "MOLD-1", ToolSnapshot(True, "productive", "EXECUTING", "PRODUCTION", sites_done=1)
    )
    clock.now += timedelta(minutes=5)
    await equipment.report(
        "MOLD-1", ToolSnapshot(True, "productive", "EXECUTING", "PRODUCTION", sites_done=9)
    )
    clock.now += timedelta(minutes=5)
    alarm = {"code": 7, "text": "chase over temperature", "severity": "error"}
    await equipment.report(
        "MOLD-1", ToolSnapshot(True, "unscheduled_down", "ALARM", "PRODUCTION", alarm=alarm)
    )
    clock.now += timedelta(minutes=10)
    changes = await equipment.changes("MOLD-1", start, clock.now)
    assert [c.e10 for c in changes] == [
        "unscheduled_down",
        "standby",
        "productive",
        "unscheduled_down",
    ]
    # the alarm's row says which alarm (it said nothing: the probe)
    assert changes[-1].reason == "alarm 7 (error): chase over temperature"
    assert changes[1].reason is None
    times = await equipment.state_times("MOLD-1", start + timedelta(seconds=1), clock.now)
    assert times.seconds["productive"] == pytest.approx(600, abs=3)
    assert times.seconds["unscheduled_down"] == pytest.approx(600, abs=3)
    assert times.availability == pytest.approx(2 / 3, abs=0.01)
    tool = await equipment.tool("MOLD-1")
    assert tool.snapshot.alarm == alarm and tool.snapshot.process_state == "ALARM"


async def test_operators_switch_a_tool_between_automatic_and_manual(
    equipment: EquipmentService,
) -> None:
    await equipment.register("line-1", [MOLDER])
    manual = await equipment.set_dispatch(
        "MOLD-1", DispatchMode.MANUAL, "eng1", "qualification run"
    )
    assert manual.dispatch is DispatchMode.MANUAL and manual.dispatch_by == "eng1"
    assert (await equipment.tool("MOLD-1")).dispatch_reason == "qualification run"
    with pytest.raises(UnknownTool):
        await equipment.set_dispatch("NOPE", DispatchMode.AUTO, "eng1")


async def test_a_person_switching_a_tool_to_the_mode_it_is_in_writes_nothing(
    equipment: EquipmentService,
) -> None:
    """``tool manual`` twice rewrote who, when and why: the tool looked manual since the
    second time, and a quarantine's reason (which the controller finds again at its start)
    was replaced by the person's."""
    await equipment.register("line-1", [MOLDER])
    quarantined = await equipment.set_dispatch(
        "MOLD-1", DispatchMode.MANUAL, "controller", "quarantined: results of another job"
    )
    kept, changed = await equipment.switch_dispatch(
        "MOLD-1", DispatchMode.MANUAL, "ana", "checking it"
    )
    assert not changed and kept == quarantined
    assert await equipment.tool("MOLD-1") == quarantined
    back, changed = await equipment.switch_dispatch("MOLD-1", DispatchMode.AUTO, "ana")
    assert changed and (back.dispatch, back.dispatch_by) == (DispatchMode.AUTO, "ana")
    again, changed = await equipment.switch_dispatch("MOLD-1", DispatchMode.AUTO, "bob", "x")
    assert not changed and again == back == await equipment.tool("MOLD-1")


def test_unmonitored_time_counts_in_no_e10_figure() -> None:
    changes = [
        E10Change("T", _at(0), "productive"),
        E10Change("T", _at(30), "unmonitored"),
        E10Change("T", _at(50), "standby"),
    ]
    times = time_in_states(changes, _at(0), _at(60))
    assert times.unmonitored_s == 20 * 60
    assert times.known_s == 40 * 60
    assert times.availability == 1.0
    assert times.utilization == pytest.approx(30 / 40)


async def test_tools_no_controller_follows_are_marked_unmonitored_once(
    equipment: EquipmentService, clock: Clock
) -> None:
    await equipment.register("line-1", [MOLDER])
    await equipment.report("MOLD-1", ToolSnapshot(True, "standby", "READY", "PRODUCTION"))
    since = clock.now
    clock.now += timedelta(minutes=10)
    await equipment.mark_unmonitored(["MOLD-1"], since, "line controller died (last heartbeat)")
    await equipment.mark_unmonitored(["MOLD-1"], clock.now, "line controller stopped")
    tool = await equipment.tool("MOLD-1")
    assert tool.snapshot.e10 == "unmonitored" and not tool.snapshot.connected
    changes = await equipment.changes(
        "MOLD-1", since - timedelta(minutes=1), clock.now + timedelta(1)
    )
    assert [c.e10 for c in changes][-1] == "unmonitored"
    assert [c.e10 for c in changes].count("unmonitored") == 1
    assert changes[-1].at == since


async def test_a_state_written_from_an_older_reading_keeps_the_operators_dispatch_mode(
    equipment: EquipmentService, store: UnitOfWorkFactory
) -> None:
    """The controller writes what the tool does from the record it read; an operator who
    switched the tool to manual in between is not undone (each writes its part only)."""
    await equipment.register("line-1", [MOLDER])
    read_before = await equipment.tool("MOLD-1")
    await equipment.set_dispatch("MOLD-1", DispatchMode.MANUAL, "ana", "maintenance at 10")
    async with store() as uow:
        await uow.equipment.update_tool(
            replace(read_before, snapshot=ToolSnapshot(True, "standby", "IDLE")),
            ToolPart.STATE,
        )
        await uow.commit()
    now = await equipment.tool("MOLD-1")
    assert now.dispatch is DispatchMode.MANUAL and now.dispatch_by == "ana"
    assert now.snapshot.e10 == "standby"


async def test_a_batch_of_reports_records_every_change_and_leaves_the_last_state(
    equipment: EquipmentService, clock: Clock
) -> None:
    """The controller writes what its tools did in batches: one transaction, each change with
    the time it was observed, each tool's record once with its last state."""
    bonder = ToolRegistration("DB-1", "die_bonder", "opcua", ("DIE_ATTACH",))
    await equipment.register("line-1", [MOLDER, bonder])
    registered = clock.now

    def at(minutes: float) -> datetime:
        return registered + timedelta(minutes=minutes)

    await equipment.report("MOLD-1", ToolSnapshot(True, "standby", "READY"), at(1))
    batch = [
        ("MOLD-1", ToolSnapshot(True, "productive", "EXECUTING", sites_done=1), at(2)),
        ("DB-1", ToolSnapshot(True, "standby", "READY"), at(2.5)),
        ("MOLD-1", ToolSnapshot(True, "productive", "EXECUTING", sites_done=8), at(3)),
        ("MOLD-1", ToolSnapshot(True, "standby", "COMPLETE", sites_done=8), at(4)),
    ]
    assert await equipment.report_many(batch) == []
    changes = await equipment.changes("MOLD-1", at(0.5), at(10))
    assert [(c.e10, c.at) for c in changes] == [
        ("unscheduled_down", registered),
        ("standby", at(1)),
        ("productive", at(2)),
        ("standby", at(4)),
    ]
    mold = await equipment.tool("MOLD-1")
    assert mold.snapshot.process_state == "COMPLETE" and mold.snapshot.sites_done == 8
    assert mold.e10_since == at(4) and mold.updated_at == at(4)
    db = await equipment.tool("DB-1")
    assert db.snapshot.e10 == "standby" and db.e10_since == at(2.5)


async def test_reports_of_a_tool_the_database_does_not_know_are_left_out_alone(
    equipment: EquipmentService,
) -> None:
    await equipment.register("line-1", [MOLDER])
    unknown = await equipment.report_many(
        [
            ("GHOST-1", ToolSnapshot(True, "productive", "EXECUTING"), _at(1)),
            ("MOLD-1", ToolSnapshot(True, "standby", "READY"), _at(2)),
            ("GHOST-1", ToolSnapshot(True, "standby", "READY"), _at(3)),
        ]
    )
    assert unknown == ["GHOST-1"]
    assert (await equipment.tool("MOLD-1")).e10_since == _at(2), "the others are written"
    with pytest.raises(UnknownTool):
        await equipment.report("GHOST-1", ToolSnapshot(True, "standby", "READY"))
    assert [t.id for t in await equipment.tools()] == ["MOLD-1"]


async def test_reports_written_again_with_only_newer_record_nothing_twice(
    equipment: EquipmentService, clock: Clock
) -> None:
    """A spool replayed after a crash between the commit and the spool's truncation (or after
    a commit whose answer was lost) writes the same observations again: with ``only_newer``,
    what a tool's record already has is left out; what is newer is written as usual."""
    await equipment.register("line-1", [MOLDER])
    registered = clock.now

    def at(minutes: float) -> datetime:
        return registered + timedelta(minutes=minutes)

    spooled = [
        ("MOLD-1", ToolSnapshot(True, "productive", "EXECUTING", sites_done=1), at(1)),
        ("MOLD-1", ToolSnapshot(True, "standby", "COMPLETE", sites_done=8), at(2)),
    ]
    assert await equipment.report_many(spooled, only_newer=True) == []
    again = [*spooled, ("MOLD-1", ToolSnapshot(True, "productive", "EXECUTING"), at(3))]
    assert await equipment.report_many(again, only_newer=True) == []
    assert await equipment.report_many(spooled, only_newer=True) == [], "all of it known"
    changes = await equipment.changes("MOLD-1", at(0.5), at(10))
    assert [(c.e10, c.at) for c in changes] == [
        ("unscheduled_down", registered),
        ("productive", at(1)),
        ("standby", at(2)),
        ("productive", at(3)),
    ]
    mold = await equipment.tool("MOLD-1")
    assert mold.snapshot.e10 == "productive" and mold.updated_at == at(3)
