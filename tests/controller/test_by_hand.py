"""A step an operator tracks in by hand on a tool switched to manual is the operator's: the
line controller runs no job for it and does not track it out, the operator does, with the
measured values; not even once the tool is switched back to automatic while it runs (and
the controller starts no other lot on the tool meanwhile). A step the controller tracked in is
the controller's to track out, with the tool's results: not the operator's, not even with the
tool switched to manual; the operator takes the lot off the tool by aborting the step."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from functools import partial

import pytest

from drivers.model import ProcessState
from mes.domain import commands as cmd
from mes.domain.equipment import DispatchMode
from mes.domain.errors import OperationNotAllowed
from mes.domain.model import JobStatus, LotState, Operation
from mes.domain.report import LotReport
from pkgline.controller import runner_steps
from simulators.line import SimulatedLine
from tests.controller.conftest import Stack, line_config, running_controller, simulated, wait_until

OP = "op1"


async def _waiting_after(stack: Stack, lot_id: str, step: str) -> bool:
    lot = await stack.lots.get(lot_id)
    return lot.state is LotState.WAITING and bool(lot.path) and lot.path[-1] == step


async def test_a_step_tracked_in_by_hand_on_a_tool_in_manual_is_left_to_the_operator(
    stack: Stack,
) -> None:
    config = line_config(tools=["DB-1"])
    async with simulated(config) as line, running_controller(config, stack):
        await stack.equipment.set_dispatch("DB-1", DispatchMode.MANUAL, OP, "by hand")
        for lot_id in ("H1", "H2"):
            await stack.lots.start(cmd.StartLot(lot_id, "stiffener-bga", "planner", carriers=1))
        for lot_id in ("H1", "H2"):  # SUBSTRATE_LOAD done by the controller (auto_manual_steps)
            await wait_until(
                partial(_waiting_after, stack, lot_id, "SUBSTRATE_LOAD"),
                timeout_s=30,
                what=f"{lot_id} waiting for DIE_ATTACH",
            )
        await stack.lots.track_in(cmd.TrackIn("H1", "DIE_ATTACH", OP, tool="DB-1"))
        await asyncio.sleep(1.0)  # five full dispatch passes (every 0.2 s) go by
        lot = await stack.lots.get("H1")
        assert lot.state is LotState.RUNNING, "the controller moved the operator's lot"
        assert await stack.lots.jobs_of_step(lot) == [], "the controller ran a job for it"
        assert line.tool("DB-1").recipe is None, "the controller set the tool up for it"

        await stack.equipment.set_dispatch("DB-1", DispatchMode.AUTO, OP)
        await asyncio.sleep(1.0)  # five more, with the tool in auto
        lot = await stack.lots.get("H1")
        assert lot.state is LotState.RUNNING, "the controller moved the operator's lot"
        assert await stack.lots.jobs_of_step(lot) == [], "the controller ran a job for it"
        assert await _waiting_after(stack, "H2", "SUBSTRATE_LOAD"), "H2 started beside H1"

        await stack.lots.track_out(cmd.TrackOut("H1", OP, measured={"bond_force_n": 4.9}))
        out = (await stack.lots.report("H1")).history[-1]
        assert (out.operation, out.user) == (Operation.TRACK_OUT, OP)
        await wait_until(  # the tool, free again and in auto, is the controller's again
            lambda: _waiting_after(stack, "H2", "DIE_ATTACH"),
            timeout_s=30,
            what="H2 run on DB-1 by the controller",
        )


async def test_a_tools_step_tracked_in_on_no_tool_is_left_to_whoever_tracked_it_in(
    stack: Stack,
) -> None:
    """An operator (or a script) tracks DIE_ATTACH in with no tool named: a step done off the
    line's tools (docs/interlocks.md). The controller, which completes the manual steps
    (auto_manual_steps), does not track it out with no measured values: the die attach is
    the operator's to finish."""
    config = line_config(tools=["DB-1"])
    async with simulated(config), running_controller(config, stack):
        await stack.equipment.set_dispatch("DB-1", DispatchMode.MANUAL, OP, "by hand")
        await stack.lots.start(cmd.StartLot("H3", "stiffener-bga", "planner", carriers=1))
        await wait_until(
            partial(_waiting_after, stack, "H3", "SUBSTRATE_LOAD"),
            timeout_s=30,
            what="H3 waiting for DIE_ATTACH",
        )
        await stack.lots.track_in(cmd.TrackIn("H3", "DIE_ATTACH", OP))
        await asyncio.sleep(1.0)  # five full dispatch passes (every 0.2 s) go by
        lot = await stack.lots.get("H3")
        assert lot.state is LotState.RUNNING, "the controller tracked the operator's step out"
        assert lot.running is not None and lot.running.step == "DIE_ATTACH"

        await stack.lots.track_out(cmd.TrackOut("H3", OP, measured={"bond_force_n": 4.9}))
        out = (await stack.lots.report("H3")).history[-1]
        assert (out.operation, out.user) == (Operation.TRACK_OUT, OP)


async def _lot_record(stack: Stack, lot_id: str) -> LotReport:
    """The lot's report without its tool's live state, which the controller's reporter
    writes as the job goes on, whatever an operator does to the lot."""
    return replace(await stack.lots.report(lot_id), tool_state=None)


async def _job_executing(stack: Stack, line: SimulatedLine, lot_id: str) -> bool:
    lot = await stack.lots.get(lot_id)
    status = line.tool("DB-1").status
    return (
        lot.state is LotState.RUNNING
        and status.state is ProcessState.EXECUTING
        and status.job_id is not None
        and await stack.lots.job(status.job_id) is not None
    )


async def test_the_controllers_step_is_tracked_out_by_it_with_the_tools_results_not_by_hand(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator's track-out of a step the controller runs (its job on the tool) is
    refused, even with the tool switched to manual, and changes nothing: the controller
    tracks it out with the tool's results. Accepted, it left the tool's job open and the
    controller, its results unrecordable, took the tool out of dispatch. Aborted by the
    operator instead, the step is taken off the tool: the tool's job is aborted and
    abandoned, and the lot waits at the step again."""
    # the abort seen mid-job (a job the tool completes first is recorded: test_faults.py)
    monkeypatch.setattr(runner_steps, "LOT_CHECK_S", 0.2)
    config = line_config(tools=["DB-1"], slow={"DB-1": 1.0})
    async with simulated(config) as line, running_controller(config, stack):
        for lot_id in ("C1", "C2"):
            await stack.lots.start(cmd.StartLot(lot_id, "stiffener-bga", "planner", carriers=1))
        await wait_until(
            partial(_job_executing, stack, line, "C1"),
            timeout_s=30,
            every_s=0.05,
            what="C1's die attach executing on DB-1",
        )
        await stack.equipment.set_dispatch("DB-1", DispatchMode.MANUAL, OP, "C1 to finish")
        before = await _lot_record(stack, "C1")
        with pytest.raises(OperationNotAllowed) as refused:
            await stack.lots.track_out(cmd.TrackOut("C1", OP, measured={"bond_force_n": 4.9}))
        assert "tracked in by its line controller" in refused.value.message
        assert "pkgline lot abort C1" in refused.value.message
        assert await _lot_record(stack, "C1") == before, "the refused track-out changed C1"

        await wait_until(
            partial(_waiting_after, stack, "C1", "DIE_ATTACH"),
            timeout_s=30,
            what="C1 tracked out by the controller",
        )
        out = (await stack.lots.report("C1")).history[-1]
        assert (out.operation, out.user) == (Operation.TRACK_OUT, config.controller.user)
        assert (await stack.equipment.tool("DB-1")).dispatch is DispatchMode.MANUAL
        assert (await stack.equipment.tool("DB-1")).dispatch_by == OP, "DB-1 quarantined"

        await stack.equipment.set_dispatch("DB-1", DispatchMode.AUTO, OP)
        await wait_until(
            partial(_job_executing, stack, line, "C2"),
            timeout_s=30,
            every_s=0.05,
            what="C2's die attach executing on DB-1",
        )
        job_id = line.tool("DB-1").status.job_id
        await stack.equipment.set_dispatch("DB-1", DispatchMode.MANUAL, OP, "C2 taken off")
        await stack.lots.abort(cmd.AbortStep("C2", OP, "wrong die lot loaded"))
        await wait_until(
            lambda: line.tool("DB-1").status.state is ProcessState.READY,
            timeout_s=15,
            what="C2's job aborted on DB-1 and the tool ready again",
        )
        c2 = await stack.lots.get("C2")
        assert c2.state is LotState.WAITING and c2.path[-1] == "SUBSTRATE_LOAD"
        assert job_id is not None
        job = await stack.lots.job(job_id)
        assert job is not None and job.status is JobStatus.ABANDONED
