"""Partial work at an alarm or a lost job is recorded: the hold's record keeps the carriers
done at the step, the interrupted job and the sites the tool reported done before the fault,
so an engineer can decide to re-run only what is left; ``pkgline lot show`` shows it."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from drivers.model import Alarm, AlarmSeverity, ProcessState
from mes.domain import commands as cmd
from mes.domain.model import HistoryEntry, LotState, Operation
from simulators.engine import VirtualTool
from tests.controller.conftest import Stack, line_config, running_controller, simulated, wait_until

pytestmark = pytest.mark.slow

LOT = "W1"
SLOW_DIE_BONDER = {"DB-1": 0.3}  # DIE_ATTACH: about 45 ms per site, 4x8 carriers


async def _second_carrier_under_way(stack: Stack, tool: VirtualTool, sites: int) -> str:
    """Wait until the lot's first carrier is recorded and the second has ``sites`` done."""

    async def under_way() -> bool:
        status = tool.status
        if status.state is not ProcessState.EXECUTING or status.sites_done < sites:
            return False
        lot = await stack.lots.get(LOT)
        jobs = await stack.lots.jobs_of_step(lot)
        return len(jobs) == 2 and status.job_id == jobs[-1].job_id

    await wait_until(under_way, timeout_s=60, every_s=0.01, what="the second carrier under way")
    job_id = tool.status.job_id
    assert job_id is not None
    return job_id


async def _hold_entry(stack: Stack) -> HistoryEntry:
    await wait_until(lambda: _is_held(stack), timeout_s=15, what="the lot held", every_s=0.05)
    holds = [e for e in (await stack.lots.report(LOT)).history if e.operation is Operation.HOLD]
    assert len(holds) == 1
    return holds[0]


async def _is_held(stack: Stack) -> bool:
    return (await stack.lots.get(LOT)).state is LotState.HOLD


async def _lot_show(url: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pkgline",
        "lot",
        "show",
        LOT,
        env={**os.environ, "PKGLINE_DB": url, "COLUMNS": "250"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_an_alarm_keeps_the_carriers_and_sites_done_before_it_in_the_holds_record(
    stack: Stack,
) -> None:
    config = line_config(slow=SLOW_DIE_BONDER)
    async with simulated(config) as line:
        tool = line.tool("DB-1")
        await stack.lots.start(cmd.StartLot(LOT, "stiffener-bga", "planner", carriers=2))
        async with running_controller(config, stack):
            job_id = await _second_carrier_under_way(stack, tool, 3)
            tool.inject_alarm(Alarm(4711, "bond head crash", AlarmSeverity.FATAL))
            done = tool.status.sites_done
            hold = await _hold_entry(stack)
    first, second = (await stack.lots.get(LOT)).carriers
    assert hold.data["carriers_done"] == [first]
    assert hold.data["jobs_open"] == [{"job": job_id, "carrier": second}]
    partial = hold.data["partial"]
    assert partial["job"] == job_id and partial["carrier"] == second
    assert partial["sites_done"] == done and partial["sites_total"] == 32
    # the tool works its good sites row-major (4x8, all good): (1, 1), (1, 2), ...
    assert partial["sites"] == [[i // 8 + 1, i % 8 + 1] for i in range(done)]
    shown = await _lot_show(stack.url)
    assert f"carriers {first} done" in shown
    assert f"{job_id} on carrier {second}: {done} of 32 sites done" in shown


async def test_a_lost_job_keeps_the_sites_the_tool_reported_before_it_was_lost(
    stack: Stack,
) -> None:
    config = line_config(slow=SLOW_DIE_BONDER)
    async with simulated(config) as line:
        tool = line.tool("DB-1")
        await stack.lots.start(cmd.StartLot(LOT, "stiffener-bga", "planner", carriers=2))
        async with running_controller(config, stack) as controller:
            job_id = await _second_carrier_under_way(stack, tool, 2)
            runner = controller.runners["DB-1"]

            def seen_by_the_controller() -> bool:
                status = runner.status
                return status is not None and status.job_id == job_id and status.sites_done >= 2

            await wait_until(
                seen_by_the_controller, timeout_s=10, every_s=0.005, what="progress seen"
            )
            await line.drop_connections("DB-1", refuse_for_s=1.0)
            done = tool.status.sites_done
            tool.inject_alarm(Alarm(1, "power cycle", AlarmSeverity.FATAL))
            tool.reset_alarm()  # restarted: the job is gone
            hold = await _hold_entry(stack)
    assert "without job" in (hold.reason or "")
    partial = hold.data["partial"]
    assert partial["job"] == job_id and 2 <= partial["sites_done"] <= done
    assert len(partial["sites"]) == partial["sites_done"]
