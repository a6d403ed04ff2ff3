"""A runner whose step is tracked out takes its next lot while the last results are
acknowledged: the dispatcher may track a lot in on it, the same lot included."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from drivers.catalogue import EquipmentClass
from drivers.config import ModbusEndpoint
from drivers.interface import ToolDriver
from drivers.model import Alarm, AlarmSeverity, Mode, ProcessState, ToolStatus
from mes.equipment import EquipmentService
from mes.service import LotService
from pkgline.config import LineTool
from pkgline.controller.runner import ToolRunner

COMPLETE = ToolStatus(ProcessState.COMPLETE, Mode.PRODUCTION, job_id="J1", results_waiting=True)


def _runner_on(lot_id: str, status: ToolStatus) -> ToolRunner:
    """A runner busy with ``lot_id``, the tool last seen in ``status`` (nothing behind it)."""
    tool = LineTool(
        id="COAT-1", equipment_class=EquipmentClass.COATER, endpoint=ModbusEndpoint(port=5020)
    )
    runner = ToolRunner(
        tool,
        cast(ToolDriver, object()),
        cast(LotService, object()),
        cast(EquipmentService, object()),
        user="test",
    )
    runner._connected = True
    runner._status = status
    runner._current = lot_id
    return runner


def test_a_runner_in_the_middle_of_a_step_takes_nothing() -> None:
    runner = _runner_on("L1", COMPLETE)
    assert not runner.is_idle()
    runner.assign("L1")  # the lot it runs: already worked on
    assert runner._queue.qsize() == 0


def test_once_the_step_is_tracked_out_the_next_lot_can_be_tracked_in() -> None:
    runner = _runner_on("L1", COMPLETE)
    runner._step_over = True
    assert runner.is_idle()
    runner.assign("L2")
    assert runner.is_working_on("L2")
    assert not runner.is_idle()  # one lot at a time: L2 waits for the acknowledge


def test_the_same_lot_tracked_in_again_for_its_next_step_is_queued() -> None:
    runner = _runner_on("L1", COMPLETE)
    runner._step_over = True
    runner.assign("L1")
    assert runner._queue.get_nowait() == "L1"


def test_a_tool_in_alarm_or_out_of_production_takes_nothing_even_when_its_step_is_over() -> None:
    for status in (
        ToolStatus(ProcessState.COMPLETE, Mode.MAINTENANCE, results_waiting=True),
        ToolStatus(
            ProcessState.ALARM, Mode.PRODUCTION, alarm=Alarm(7, "door", AlarmSeverity.ERROR)
        ),
    ):
        runner = _runner_on("L1", status)
        runner._step_over = True
        assert not runner.is_idle(), status


async def test_results_it_acknowledged_are_not_settled_again_from_the_status_heard_before() -> None:
    runner = _runner_on("L1", COMPLETE)
    runner._current = None
    runner._acknowledged_under = runner._status
    await runner._settle()  # the tool is not asked (there is no driver behind this runner)


async def test_results_a_newer_status_still_shows_are_settled() -> None:
    runner = _runner_on("L1", COMPLETE)
    runner._current = None
    runner._acknowledged_under = COMPLETE
    runner._status = ToolStatus(
        ProcessState.COMPLETE, Mode.PRODUCTION, job_id="J1", results_waiting=True
    )  # heard after the acknowledge: the tool is asked for its results
    with pytest.raises(AttributeError, match="results"):
        await runner._settle()


async def test_a_runner_waiting_for_its_tool_stops_when_cancelled_as_an_event_arrives() -> None:
    """On Python 3.11, asyncio.wait_for lost a cancellation that came with the event it
    waited for, and the runner waited on (this held up the controller's stop)."""
    runner = _runner_on("L1", COMPLETE)
    waiting = asyncio.create_task(runner._wait_for(lambda: False, 10))
    await asyncio.sleep(0)
    runner._changed.set()
    waiting.cancel()
    done, _ = await asyncio.wait({waiting}, timeout=5)
    assert waiting in done and waiting.cancelled(), "the cancellation was lost"
