"""What the line controller does when a tool misbehaves: an alarm mid-job, a lost connection
(the tool comes back with or without the job), a recipe the tool does not hold as sent, a tool
taken out of dispatch, and a lot taken off a tool by an operator while its job runs (or held
just as the tool completes it)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from drivers.model import Alarm, AlarmSeverity, ProcessState, Recipe, RefusalCode
from mes.domain import commands as cmd
from mes.domain.equipment import DispatchMode
from mes.domain.errors import ConcurrentUpdate
from mes.domain.model import HoldSource, JobStatus, LotState, Operation
from pkgline.controller import runner_steps
from simulators.engine import Refused
from simulators.line import SimulatedLine
from tests.controller.conftest import Stack, line_config, running_controller, simulated, wait_until

pytestmark = pytest.mark.slow

SLOW_DIE_BONDER = {"DB-1": 0.3}  # DIE_ATTACH: about 1.4 s per 4x8 carrier
LOT = "S1"


async def _start(stack: Stack) -> None:
    await stack.lots.start(cmd.StartLot(LOT, "stiffener-bga", "planner", carriers=2))


async def _executing_on(line: SimulatedLine, tool_id: str, stack: Stack) -> None:
    """Wait until a job of the lot executes on the tool and the controller has written it
    down. The tool takes a job before the controller records it: a fault in between is the
    case of a job the controller never knew, and the tests here are about one it knows."""

    async def executing() -> bool:
        lot = await stack.lots.get(LOT)
        status = line.tool(tool_id).status
        return (
            lot.state is LotState.RUNNING
            and lot.running is not None
            and lot.running.tool == tool_id
            and status.state is ProcessState.EXECUTING
            and status.job_id is not None
            and await stack.lots.job(status.job_id) is not None
        )

    await wait_until(
        executing, timeout_s=30, every_s=0.05, what=f"a job of {LOT} executing on {tool_id}"
    )


async def _state(stack: Stack) -> LotState:
    return (await stack.lots.get(LOT)).state


async def test_an_alarm_mid_job_holds_the_lot_downs_the_tool_and_after_reset_and_release_it_finishes(
    stack: Stack,
) -> None:
    config = line_config(slow=SLOW_DIE_BONDER)
    async with simulated(config) as line, running_controller(config, stack):
        await _start(stack)
        await _executing_on(line, "DB-1", stack)
        # the tool's text carries an escape: the hold takes it, made printable (Modbus
        # carries ASCII letters: '?'; OPC UA any character: mes.domain.text.printable)
        alarm = Alarm(4711, "bond head\x1b[2J crash", AlarmSeverity.FATAL)
        line.tool("DB-1").inject_alarm(alarm)
        await wait_until(lambda: _is(stack, LotState.HOLD), timeout_s=10, what="the lot held")
        lot = await stack.lots.get(LOT)
        assert lot.hold is not None and lot.hold.source is HoldSource.ALARM
        assert "4711" in lot.hold.reason and "bond head" in lot.hold.reason
        assert lot.hold.reason.isprintable() and "[2J crash" in lot.hold.reason
        alarmed = (await stack.equipment.tool("DB-1")).snapshot.alarm
        assert alarmed is not None and alarmed["text"].isprintable()
        await wait_until(
            lambda: _e10(stack, "DB-1", "unscheduled_down"), timeout_s=5, what="DB-1 down"
        )

        line.tool("DB-1").reset_alarm()  # at the tool's panel
        await wait_until(lambda: _e10(stack, "DB-1", "standby"), timeout_s=5, what="DB-1 back")
        await stack.lots.release(cmd.ReleaseLot(LOT, "eng1", "bond head replaced"))
        await wait_until(
            lambda: _is(stack, LotState.COMPLETED), timeout_s=90, what="the lot to finish"
        )
    report = await stack.lots.report(LOT)
    die_attach_jobs = [
        e for e in report.history if e.operation is Operation.JOB_RECORD and e.step == "DIE_ATTACH"
    ]
    assert len(die_attach_jobs) == 2, "each carrier recorded once, the interrupted one redone"
    states = [
        c.e10
        for c in await stack.equipment.changes("DB-1", report.lot.created_at, report.lot.updated_at)
    ]
    assert "unscheduled_down" in states and "productive" in states


async def test_a_tool_that_drops_its_connection_mid_job_is_followed_when_it_comes_back(
    stack: Stack,
) -> None:
    config = line_config(slow=SLOW_DIE_BONDER)
    async with simulated(config) as line, running_controller(config, stack):
        await _start(stack)
        await _executing_on(line, "DB-1", stack)
        await line.drop_connections("DB-1", refuse_for_s=0.5)
        await wait_until(
            lambda: _connected(stack, "DB-1", False), timeout_s=5, what="DB-1 marked down"
        )
        await wait_until(
            lambda: _is(stack, LotState.COMPLETED), timeout_s=90, what="the lot to finish"
        )
    report = await stack.lots.report(LOT)
    assert not [e for e in report.history if e.operation is Operation.HOLD]


async def test_a_tool_that_comes_back_without_the_job_holds_the_lot(stack: Stack) -> None:
    config = line_config(slow=SLOW_DIE_BONDER)
    async with simulated(config) as line, running_controller(config, stack):
        await _start(stack)
        await _executing_on(line, "DB-1", stack)
        tool = line.tool("DB-1")
        await line.drop_connections("DB-1", refuse_for_s=1.0)
        tool.inject_alarm(Alarm(1, "power cycle", AlarmSeverity.FATAL))
        tool.reset_alarm()  # restarted: the job is gone
        await wait_until(lambda: _is(stack, LotState.HOLD), timeout_s=15, what="the lot held")
        lot = await stack.lots.get(LOT)
        assert lot.hold is not None and lot.hold.source is HoldSource.CONTROLLER
        assert "without job" in lot.hold.reason
        jobs = await stack.lots.jobs_of_step(lot)
        assert [j.status for j in jobs].count(JobStatus.ABANDONED) == 1


async def test_a_recipe_the_tool_does_not_hold_as_sent_gives_the_lot_back_and_stops_dispatch_to_it(
    stack: Stack,
) -> None:
    config = line_config()
    async with simulated(config) as line:
        tool = line.tool("WB-1")
        load = tool.load_recipe

        def mangled(recipe: Recipe) -> None:  # a tool that stores a value other than it was sent
            body: dict[str, Any] = {**recipe.body, "wire_diameter_um": 99.0}
            load(Recipe(recipe.name, recipe.version, body))

        tool.load_recipe = mangled  # type: ignore[method-assign]
        async with running_controller(config, stack):
            await _start(stack)
            await wait_until(
                lambda: _dispatch(stack, "WB-1", DispatchMode.MANUAL),
                timeout_s=30,
                what="WB-1 manual",
            )
            # the tool out of dispatch first, then the lot given back: a read between the two
            # finds it still running on WB-1
            await wait_until(
                lambda: _state_is(stack, LotState.WAITING), timeout_s=30, what="the lot given back"
            )
            lot = await stack.lots.get(LOT)
            assert lot.state is LotState.WAITING and lot.path[-1] == "DIE_ATTACH"
            aborts = [
                e for e in (await stack.lots.report(LOT)).history if e.operation is Operation.ABORT
            ]
            assert aborts and "recipe check failed on WB-1" in (aborts[-1].reason or "")
            assert "checksum" in (aborts[-1].reason or "")
            record = await stack.equipment.tool("WB-1")
            assert record.dispatch_reason is not None and "recipe" in record.dispatch_reason


async def test_a_recipe_the_tool_refuses_holds_the_lot_instead_of_sending_it_again(
    stack: Stack,
) -> None:
    """The lot was given back, dispatched again at once and refused again: about 90 times a
    second, each a pair of history entries and events, until someone switched the tool to
    manual (found by the probe). A refusal of the same recipe is the same next time: the lot
    is held with the tool's reason, and the tool goes on with other lots."""
    config = line_config()
    async with simulated(config) as line:
        tool = line.tool("WB-1")
        loads: list[str] = []

        def refusing(recipe: Recipe) -> None:
            loads.append(recipe.name)
            raise Refused(RefusalCode.INVALID_ARGUMENT, "ultrasonic_power_mw out of range")

        tool.load_recipe = refusing  # type: ignore[method-assign]
        async with running_controller(config, stack):
            await _start(stack)
            await wait_until(
                lambda: _state_is(stack, LotState.HOLD), timeout_s=30, what=f"{LOT} held"
            )
            lot = await stack.lots.get(LOT)
            assert lot.hold is not None and lot.hold.source is HoldSource.CONTROLLER
            assert "tool WB-1 refused recipe stiffener-bga/WIRE_BOND" in lot.hold.reason
            assert "ultrasonic_power_mw out of range" in lot.hold.reason
            await asyncio.sleep(1.0)  # the controller's passes go on: nothing is sent again
            assert len(loads) == 1, loads
            history = (await stack.lots.report(LOT)).history
            assert not [e for e in history if e.operation is Operation.ABORT]
            assert (await stack.equipment.tool("WB-1")).dispatch is DispatchMode.AUTO


async def _state_is(stack: Stack, state: LotState) -> bool:
    return (await _state(stack)) is state


async def test_a_tool_switched_to_manual_gets_no_lots_until_switched_back(stack: Stack) -> None:
    config = line_config()
    async with simulated(config), running_controller(config, stack):
        await stack.equipment.set_dispatch("WB-1", DispatchMode.MANUAL, "eng1", "wire change")
        await _start(stack)
        await wait_until(
            lambda: _after(stack, "DIE_ATTACH"), timeout_s=30, what="the lot to wait for WIRE_BOND"
        )
        await asyncio.sleep(1.0)  # five full dispatch passes (every 0.2 s) go by
        assert await _still_waiting(stack), "a lot was started on a tool in manual"
        await stack.equipment.set_dispatch("WB-1", DispatchMode.AUTO, "eng1")
        await wait_until(
            lambda: _is(stack, LotState.COMPLETED), timeout_s=60, what="the lot to finish"
        )


async def test_a_lot_held_by_an_operator_while_its_job_runs_is_taken_off_the_tool(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner_steps, "LOT_CHECK_S", 0.2)  # seen mid-job: aborted there
    config = line_config(slow={"DB-1": 1.0})
    async with simulated(config) as line, running_controller(config, stack):
        await _start(stack)
        await _executing_on(line, "DB-1", stack)
        await _hold_as_an_operator_would(stack, cmd.HoldLot(LOT, "op2", "wrong die lot loaded"))
        await wait_until(
            lambda: line.tool("DB-1").status.state is ProcessState.READY,
            timeout_s=15,
            what="the job aborted and the tool ready again",
        )
        lot = await stack.lots.get(LOT)
        assert lot.state is LotState.HOLD and lot.hold is not None and lot.hold.user == "op2"
        jobs = await stack.lots.jobs_of_step(lot)
        assert [j.status for j in jobs] == [JobStatus.ABANDONED], "not aborted on the tool"


async def test_a_job_the_tool_completes_before_the_controller_sees_the_hold_is_recorded(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hold reaches the controller only when it next looks at the lot (every
    ``LOT_CHECK_S``); a tool that completes the job before then processed the carrier: its
    results are recorded (not dropped, or the carrier runs the step twice after the release),
    the lot stays held, and no other carrier is started."""
    monkeypatch.setattr(runner_steps, "LOT_CHECK_S", 60.0)  # the completion comes first
    config = line_config(slow=SLOW_DIE_BONDER)
    async with simulated(config) as line, running_controller(config, stack):
        await _start(stack)
        await _executing_on(line, "DB-1", stack)
        job_id = line.tool("DB-1").status.job_id
        assert job_id is not None
        await _hold_as_an_operator_would(stack, cmd.HoldLot(LOT, "op2", "customer asked"))

        async def recorded() -> bool:
            job = await stack.lots.job(job_id)
            return job is not None and job.status is JobStatus.RECORDED

        await wait_until(recorded, timeout_s=15, what="the completed job recorded")
        await wait_until(
            lambda: not line.tool("DB-1").status.results_waiting,
            timeout_s=5,
            what="the results acknowledged",
        )
        await asyncio.sleep(0.5)  # two dispatch passes: nothing more starts on the held lot
        lot = await stack.lots.get(LOT)
        assert lot.state is LotState.HOLD and lot.hold is not None
        assert lot.hold.reason == "customer asked"
        report = await stack.lots.report(LOT)
        late = [e for e in report.history if e.operation is Operation.JOB_RECORD][-1]
        assert late.state_before is LotState.HOLD and late.data["job"] == job_id
        await stack.lots.release(cmd.ReleaseLot(LOT, "op2", "customer agrees"))
        await wait_until(
            lambda: _is(stack, LotState.COMPLETED), timeout_s=60, what="the lot to finish"
        )
    history = (await stack.lots.report(LOT)).history
    carriers = [
        e.data["carrier"]
        for e in history
        if e.operation is Operation.JOB_RECORD and e.step == "DIE_ATTACH"
    ]
    assert sorted(carriers) == sorted(lot.carriers)  # each carrier bonded once


async def _hold_as_an_operator_would(stack: Stack, hold: cmd.HoldLot) -> None:
    """Hold; on a conflict (the controller moved the lot meanwhile: carrier 1 recorded,
    carrier 2 started) look again and retry, as the conflict error tells the operator to."""
    for _ in range(5):
        try:
            await stack.lots.hold(hold)
        except ConcurrentUpdate:
            await asyncio.sleep(0.05)
        else:
            return
    raise AssertionError("the hold lost five races in a row with the controller")


async def _is(stack: Stack, state: LotState) -> bool:
    return await _state(stack) is state


async def _after(stack: Stack, step: str) -> bool:
    lot = await stack.lots.get(LOT)
    return lot.state is LotState.WAITING and bool(lot.path) and lot.path[-1] == step


async def _still_waiting(stack: Stack) -> bool:
    return await _after(stack, "DIE_ATTACH")


async def _e10(stack: Stack, tool_id: str, e10: str) -> bool:
    return (await stack.equipment.tool(tool_id)).snapshot.e10 == e10


async def _connected(stack: Stack, tool_id: str, connected: bool) -> bool:
    return (await stack.equipment.tool(tool_id)).snapshot.connected is connected


async def _dispatch(stack: Stack, tool_id: str, mode: DispatchMode) -> bool:
    return (await stack.equipment.tool(tool_id)).dispatch is mode


async def test_a_controller_set_not_to_dispatch_starts_no_lot_and_leaves_the_operators_to_them(
    stack: Stack,
) -> None:
    base = line_config()
    config = base.model_copy(
        update={"controller": base.controller.model_copy(update={"dispatch": False})}
    )
    async with simulated(config), running_controller(config, stack):
        await _start(stack)
        await wait_until(
            lambda: _after(stack, "SUBSTRATE_LOAD"),
            timeout_s=10,
            what="the manual step completed (auto_manual_steps)",
        )
        await asyncio.sleep(1.0)  # five full passes (every 0.2 s): DB-1 idle, nothing starts
        assert await _after(stack, "SUBSTRATE_LOAD"), "the controller started the lot itself"
        # an operator's track-in on a tool a controller dispatches: the tool in manual first;
        # the step is then the operator's (tests/controller/test_by_hand.py)
        await stack.equipment.set_dispatch("DB-1", DispatchMode.MANUAL, "op1", "operator's lot")
        await stack.lots.track_in(cmd.TrackIn(LOT, "DIE_ATTACH", "op1", tool="DB-1"))
        await asyncio.sleep(1.0)  # five full passes
        assert await _is(stack, LotState.RUNNING), "the controller moved the operator's lot"
        await stack.lots.track_out(cmd.TrackOut(LOT, "op1", measured={"bond_force_n": 4.9}))
        await asyncio.sleep(1.0)  # and the next step is not started by the controller either
        assert await _after(stack, "DIE_ATTACH"), "the controller started the next step itself"
