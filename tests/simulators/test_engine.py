"""The virtual tool plays the equipment model: states, refusals, results kept until acknowledged."""

from __future__ import annotations

import asyncio

import pytest

from drivers.model import (
    SITE_GOOD,
    SITE_SKIPPED,
    Alarm,
    AlarmSeverity,
    EquipmentClass,
    Job,
    Mode,
    ProcessState,
    Recipe,
    RefusalCode,
    SiteMap,
)
from simulators.engine import Refused, SimulationSettings, VirtualTool

RECIPE = Recipe(
    "fc-heatsink-muf/MOLD", 1, {"mold_temperature_c": 175.0, "compound_material": "epoxy_resin"}
)


async def _wait_for(tool: VirtualTool, state: ProcessState) -> None:
    for _ in range(200):
        if tool.status.state is state:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{tool} never reached {state.name}")


@pytest.fixture
async def molder() -> VirtualTool:
    tool = VirtualTool("MOLD-1", EquipmentClass.MOLDER, SimulationSettings(time_scale=0, seed=7))
    yield tool  # type: ignore[misc]
    await tool.close()


async def test_a_job_runs_from_recipe_to_acknowledged_results(molder: VirtualTool) -> None:
    molder.load_recipe(RECIPE)
    assert molder.status.state is ProcessState.SETUP
    await _wait_for(molder, ProcessState.READY)
    assert molder.active_recipe == RECIPE.info()
    incoming = SiteMap(2, 2, (SITE_GOOD, SITE_SKIPPED, SITE_GOOD, SITE_GOOD))
    molder.start_job(Job("J1", "LOT1", "MOLD", "LOT1.1", incoming))
    await _wait_for(molder, ProcessState.COMPLETE)
    results = molder.results
    assert results is not None and results.job_id == "J1"
    assert results.site_map.codes[1] == SITE_SKIPPED, "a bad incoming site stays out"
    assert molder.status.sites_done == 3 and molder.status.results_waiting
    assert results.measured["mold_temperature_c"] == pytest.approx(175.0, abs=5)
    molder.acknowledge_results("J1")
    assert molder.status.state is ProcessState.READY and molder.results is None


async def test_results_are_kept_until_the_right_job_is_acknowledged(molder: VirtualTool) -> None:
    molder.load_recipe(RECIPE)
    await _wait_for(molder, ProcessState.READY)
    molder.start_job(Job("J1", "LOT1", "MOLD", "LOT1.1", SiteMap.all_good(1, 2)))
    await _wait_for(molder, ProcessState.COMPLETE)
    with pytest.raises(Refused) as refused:
        molder.acknowledge_results("J0")
    assert refused.value.code is RefusalCode.UNKNOWN_JOB
    assert molder.results is not None


async def test_a_recipe_value_the_class_does_not_take_is_refused(molder: VirtualTool) -> None:
    with pytest.raises(Refused) as refused:
        molder.load_recipe(Recipe("x", 1, {"spindle_speed_rpm": 30000.0}))
    assert refused.value.code is RefusalCode.INVALID_ARGUMENT
    assert molder.status.state is ProcessState.IDLE


async def test_start_is_refused_outside_ready_and_in_maintenance(molder: VirtualTool) -> None:
    job = Job("J1", "LOT1", "MOLD", "LOT1.1", SiteMap.all_good(1, 1))
    with pytest.raises(Refused) as refused:
        molder.start_job(job)
    assert refused.value.code is RefusalCode.WRONG_STATE
    molder.load_recipe(RECIPE)
    await _wait_for(molder, ProcessState.READY)
    molder.set_mode(Mode.MAINTENANCE)
    with pytest.raises(Refused) as refused:
        molder.start_job(job)
    assert refused.value.code is RefusalCode.WRONG_MODE


async def test_an_alarm_stops_the_job_and_reset_returns_to_ready(molder: VirtualTool) -> None:
    molder.settings.time_scale = 1.0
    molder.load_recipe(RECIPE)
    molder.settings.time_scale = 0
    await _wait_for(molder, ProcessState.READY)
    molder.settings.time_scale = 1.0
    molder.start_job(Job("J1", "LOT1", "MOLD", "LOT1.1", SiteMap.all_good(4, 4)))
    molder.inject_alarm(Alarm(42, "transfer ram stuck", AlarmSeverity.FATAL))
    status = molder.status
    assert status.state is ProcessState.ALARM and status.alarm is not None
    assert status.alarm.code == 42
    molder.reset_alarm()
    assert molder.status.state is ProcessState.READY and molder.status.job_id is None


async def test_a_reset_is_refused_while_the_alarms_cause_persists_and_when_nothing_alarms(
    molder: VirtualTool,
) -> None:
    with pytest.raises(Refused, match="IDLE, not in ALARM: nothing to reset") as refused:
        molder.reset_alarm()
    assert refused.value.code is RefusalCode.WRONG_STATE
    molder.inject_alarm(Alarm(7, "door open", AlarmSeverity.ERROR), persists="close the door first")
    with pytest.raises(Refused, match="close the door first"):
        molder.reset_alarm()
    assert molder.status.state is ProcessState.ALARM and molder.status.alarm is not None
    molder.clear_condition()
    assert molder.status.state is ProcessState.ALARM, "clearing the cause is not a reset"
    molder.reset_alarm()
    assert molder.status.state is ProcessState.IDLE and molder.status.alarm is None


async def test_rejects_appear_at_the_configured_rate() -> None:
    tool = VirtualTool(
        "DB-1", EquipmentClass.DIE_BONDER, SimulationSettings(0, reject_rate=1.0, seed=1)
    )
    try:
        tool.load_recipe(Recipe("r", 1, {}))
        await _wait_for(tool, ProcessState.READY)
        tool.start_job(Job("J", "L", "DIE_ATTACH", "L.1", SiteMap.all_good(2, 3)))
        await _wait_for(tool, ProcessState.COMPLETE)
        assert tool.results is not None
        assert all(code in (2, 3, 4) for code in tool.results.site_map.codes)
    finally:
        await tool.close()
