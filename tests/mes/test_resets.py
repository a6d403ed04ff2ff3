"""Alarm resets as equipment tracking records them: an operator asks (who, why, until when),
the tool's line controller takes the request and records what came of it; a request that
cannot be carried out (unknown tool, no controller running it, not in alarm, one already
under way) is refused and writes nothing; one nobody takes in time expires, never to be
carried out later. On every store."""

from __future__ import annotations

import math

import pytest

from mes.domain.equipment import (
    ControllerRecord,
    ResetStatus,
    ToolRegistration,
    ToolSnapshot,
)
from mes.domain.errors import InvalidInput, ResetNotPossible, UnknownTool
from mes.equipment import EquipmentService
from tests.mes.conftest import Clock

LINE = "line-1"
MOLDER = ToolRegistration("MOLD-1", "molder", "modbus 127.0.0.1:5020", ("MOLD",))
ALARMED = ToolSnapshot(
    connected=True,
    e10="unscheduled_down",
    process_state="ALARM",
    mode="PRODUCTION",
    alarm={"code": 4711, "severity": "ERROR", "text": "transfer ram stuck"},
)
READY = ToolSnapshot(connected=True, e10="standby", process_state="READY", mode="PRODUCTION")


def running(_: ControllerRecord) -> bool:
    return True


def stopped(_: ControllerRecord) -> bool:
    return False


async def _line(equipment: EquipmentService, clock: Clock, snapshot: ToolSnapshot) -> None:
    await equipment.register(LINE, [MOLDER])
    await equipment.report(MOLDER.id, snapshot)
    now = clock()
    await equipment.heartbeat(
        ControllerRecord(LINE, "host", 1, now, now, "1/1 tools answering", (MOLDER.id,))
    )


async def test_a_reset_is_asked_taken_by_the_controller_and_its_outcome_recorded(
    equipment: EquipmentService, clock: Clock
) -> None:
    await _line(equipment, clock, ALARMED)
    asked = await equipment.request_reset(
        MOLDER.id, "op1", " ram freed by hand ", wait_s=30, controller_running=running
    )
    assert asked.status is ResetStatus.PENDING and asked.line == LINE
    assert (asked.requested_by, asked.reason) == ("op1", "ram freed by hand")
    assert [r.id for r in await equipment.open_resets(LINE)] == [asked.id]
    assert await equipment.open_resets("line-2") == []

    taken = await equipment.take_reset(asked)
    assert taken is not None and taken.status is ResetStatus.RESETTING
    assert await equipment.take_reset(asked) is None, "taken once"
    done = await equipment.finish_reset(taken, ResetStatus.DONE, "alarm reset", "READY")
    assert await equipment.reset_request(asked.id) == done
    assert done.answered_at is not None and done.state_after == "READY"
    assert await equipment.open_resets(LINE) == []
    [recorded] = await equipment.resets(MOLDER.id)
    assert recorded == done


async def test_a_reset_of_a_tool_not_in_alarm_is_refused_and_writes_nothing(
    equipment: EquipmentService, clock: Clock
) -> None:
    await _line(equipment, clock, READY)
    with pytest.raises(ResetNotPossible, match="MOLD-1 is READY, not in ALARM: nothing to reset"):
        await equipment.request_reset(
            MOLDER.id, "op1", "why", wait_s=30, controller_running=running
        )
    assert await equipment.resets(MOLDER.id) == []


async def test_a_reset_no_running_controller_could_carry_out_is_refused(
    equipment: EquipmentService, clock: Clock
) -> None:
    await _line(equipment, clock, ALARMED)
    with pytest.raises(ResetNotPossible, match="line controller line-1 is not running"):
        await equipment.request_reset(
            MOLDER.id, "op1", "why", wait_s=30, controller_running=stopped
        )
    assert await equipment.resets(MOLDER.id) == []


async def test_a_reset_of_an_unknown_tool_or_without_a_reason_is_refused(
    equipment: EquipmentService, clock: Clock
) -> None:
    await _line(equipment, clock, ALARMED)
    with pytest.raises(UnknownTool, match="there is no tool MOLD-9"):
        await equipment.request_reset("MOLD-9", "op1", "why", wait_s=30, controller_running=running)
    with pytest.raises(InvalidInput, match="a reset needs a reason"):
        await equipment.request_reset(MOLDER.id, "op1", "  ", wait_s=30, controller_running=running)
    with pytest.raises(InvalidInput, match="the wait must be longer than 0 s"):
        await equipment.request_reset(MOLDER.id, "op1", "why", wait_s=0, controller_running=running)
    for too_long in (86_401.0, 1e12, math.inf):  # 1e12 s ended past year 9999: OverflowError
        with pytest.raises(InvalidInput, match="at most 86,400 s"):
            await equipment.request_reset(
                MOLDER.id, "op1", "why", wait_s=too_long, controller_running=running
            )
    assert await equipment.resets(MOLDER.id) == []


async def test_one_reset_of_a_tool_at_a_time(equipment: EquipmentService, clock: Clock) -> None:
    await _line(equipment, clock, ALARMED)
    first = await equipment.request_reset(
        MOLDER.id, "op1", "why", wait_s=30, controller_running=running
    )
    with pytest.raises(ResetNotPossible, match=r"asked by op1 .* is still pending"):
        await equipment.request_reset(
            MOLDER.id, "op2", "me too", wait_s=30, controller_running=running
        )
    assert [r.id for r in await equipment.resets(MOLDER.id)] == [first.id]


async def test_a_reset_nobody_takes_in_time_expires_and_is_never_carried_out(
    equipment: EquipmentService, clock: Clock
) -> None:
    await _line(equipment, clock, ALARMED)
    asked = await equipment.request_reset(
        MOLDER.id, "op1", "why", wait_s=1, controller_running=running
    )
    assert await equipment.take_reset(asked) is None  # the clock has moved past its expiry
    expired = await equipment.reset_request(asked.id)
    assert expired.status is ResetStatus.EXPIRED
    assert expired.outcome == "no line controller took it before it expired"
    again = await equipment.request_reset(
        MOLDER.id, "op1", "once more", wait_s=30, controller_running=running
    )
    assert again.status is ResetStatus.PENDING, "an expired request blocks nothing"


async def test_a_stale_request_does_not_block_a_new_one(
    equipment: EquipmentService, clock: Clock
) -> None:
    await _line(equipment, clock, ALARMED)
    stale = await equipment.request_reset(
        MOLDER.id, "op1", "why", wait_s=1, controller_running=running
    )
    fresh = await equipment.request_reset(
        MOLDER.id, "op2", "again", wait_s=30, controller_running=running
    )
    assert (await equipment.reset_request(stale.id)).status is ResetStatus.EXPIRED
    assert [r.id for r in await equipment.open_resets(LINE)] == [fresh.id]


async def test_an_operator_who_stops_waiting_withdraws_a_pending_reset_only(
    equipment: EquipmentService, clock: Clock
) -> None:
    await _line(equipment, clock, ALARMED)
    asked = await equipment.request_reset(
        MOLDER.id, "op1", "why", wait_s=30, controller_running=running
    )
    withdrawn = await equipment.withdraw_reset(asked.id, "no answer within 30 s")
    assert withdrawn.status is ResetStatus.EXPIRED and withdrawn.outcome == "no answer within 30 s"
    assert await equipment.take_reset(asked) is None, "never carried out later"

    second = await equipment.request_reset(
        MOLDER.id, "op1", "why", wait_s=30, controller_running=running
    )
    taken = await equipment.take_reset(second)
    assert taken is not None
    kept = await equipment.withdraw_reset(second.id, "no answer within 30 s")
    assert kept.status is ResetStatus.RESETTING, "taken: its outcome is the controller's"
    refused = await equipment.finish_reset(
        taken, ResetStatus.REFUSED, "close the door first", "ALARM"
    )
    assert [r.status for r in await equipment.resets(MOLDER.id)] == [
        ResetStatus.REFUSED,
        ResetStatus.EXPIRED,
    ]
    assert (refused.outcome, refused.state_after) == ("close the door first", "ALARM")
