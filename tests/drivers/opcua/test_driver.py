"""The OPC UA driver runs every equipment class through the simulator over real loopback
sockets: identity, recipes, jobs with site maps in and out, refusals, abort, alarms (as status
and as events), results kept until acknowledged. Each test runs once per class (the
``equipment_class`` fixture); status changes are followed through the driver's subscription.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from drivers.catalogue import class_spec
from drivers.errors import CommandRefused, ConfigurationError, RecipeMismatch, ToolAlarmed
from drivers.interface import ConnectionRestored, StatusChanged, ToolDriver
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
)
from drivers.opcua import OpcUaDriver, OpcUaSessionPool
from simulators.engine import VirtualTool
from simulators.opcua_server import OpcUaToolServer
from tests.drivers.common import (
    INCOMING,
    check_reset_refusals,
    complete_job,
    event_stream,
    full_recipe,
    load_ready,
    next_event,
    next_status,
    wait_for_state,
)

from .conftest import DriverMaker, tool_config


def test_the_driver_satisfies_the_tool_driver_protocol(equipment_class: EquipmentClass) -> None:
    driver: ToolDriver = OpcUaDriver(
        tool_config(equipment_class, "opc.tcp://127.0.0.1:4840"), OpcUaSessionPool()
    )
    assert driver.equipment_class is equipment_class
    assert driver.recipe_parameters == frozenset(class_spec(equipment_class).recipe)
    assert not driver.connected, "nothing connects before start()"


async def test_identify_reports_the_tool_and_its_class(
    driver: OpcUaDriver, tool: VirtualTool
) -> None:
    assert await driver.identify() == tool.identity


async def test_identify_refuses_a_tool_of_another_class(
    server: OpcUaToolServer, tool: VirtualTool, make_driver: DriverMaker
) -> None:
    other = next(c for c in EquipmentClass if c is not tool.equipment_class)
    driver = await make_driver(other, server.url, tool_id=tool.tool_id)
    with pytest.raises(ConfigurationError, match=f"says it is a {tool.equipment_class.value}"):
        await driver.identify()


async def test_a_loaded_recipe_is_active_and_verifies(
    driver: OpcUaDriver, equipment_class: EquipmentClass
) -> None:
    assert await driver.active_recipe() is None, "a fresh tool holds no recipe"
    status, active = await driver.status_and_recipe()
    assert (status.state, active) == (ProcessState.IDLE, None)
    async with event_stream(driver) as events:
        recipe = full_recipe(equipment_class)
        await driver.load_recipe(recipe)
        await next_status(events, ProcessState.READY)
    assert await driver.active_recipe() == recipe.info()
    assert await driver.verify_recipe(recipe) == recipe.info()
    status, active = await driver.status_and_recipe()  # one Read of both
    assert (status.state, active) == (ProcessState.READY, recipe.info())
    assert status == await driver.status()


async def test_verifying_another_recipe_is_a_mismatch(
    driver: OpcUaDriver, equipment_class: EquipmentClass
) -> None:
    loaded = await load_ready(driver, equipment_class)
    other = Recipe(loaded.name, loaded.version + 1, loaded.body)
    with pytest.raises(RecipeMismatch) as mismatch:
        await driver.verify_recipe(other)
    assert mismatch.value.actual == loaded.info()
    assert mismatch.value.expected == other.info()


async def test_a_recipe_value_the_class_does_not_take_is_refused(
    driver: OpcUaDriver, equipment_class: EquipmentClass
) -> None:
    with pytest.raises(CommandRefused) as refused:
        await driver.load_recipe(Recipe("bad", 1, {"no_such_value": 1.0}))
    assert refused.value.code == RefusalCode.INVALID_ARGUMENT
    assert "no_such_value" in str(refused.value)
    assert (await driver.status()).state is ProcessState.IDLE


async def test_a_recipe_for_another_equipment_class_is_refused_before_sending(
    driver: OpcUaDriver, equipment_class: EquipmentClass
) -> None:
    other = next(c for c in EquipmentClass if c is not equipment_class)
    recipe = replace(full_recipe(equipment_class), equipment_class=other.value)
    with pytest.raises(CommandRefused) as refused:
        await driver.load_recipe(recipe)
    assert refused.value.code == RefusalCode.INVALID_ARGUMENT
    assert f"is for a {other.value}, this tool is a {equipment_class.value}" in str(refused.value)
    assert (await driver.status()).state is ProcessState.IDLE
    # the same recipe marked with the tool's own class is taken
    await driver.load_recipe(replace(recipe, equipment_class=equipment_class.value))
    await wait_for_state(driver, ProcessState.READY)


async def test_a_full_job_returns_the_site_map_and_typed_measured_values(
    driver: OpcUaDriver, tool: VirtualTool, equipment_class: EquipmentClass
) -> None:
    await load_ready(driver, equipment_class)
    async with event_stream(driver) as events:
        job = await complete_job(driver)
        done = await next_status(events, ProcessState.COMPLETE)
    assert done.job_id == job.job_id
    assert done.results_waiting
    assert done.sites_done == done.sites_total == INCOMING.good_count

    results = await driver.results()
    assert results is not None
    assert (results.job_id, results.lot_id, results.step, results.carrier_id) == (
        job.job_id,
        job.lot_id,
        job.step,
        job.carrier_id,
    )
    assert results == tool.results, "the driver reads what the tool keeps"
    spec = class_spec(equipment_class)
    outgoing = results.site_map
    assert (outgoing.rows, outgoing.cols) == (INCOMING.rows, INCOMING.cols)
    for incoming, code in zip(INCOMING.codes, outgoing.codes, strict=True):
        if incoming != SITE_GOOD:
            assert code == SITE_SKIPPED
        else:
            assert code == SITE_GOOD or code in spec.reject_codes
    assert set(results.measured) == set(spec.measured)
    for name, value in results.measured.items():
        kind = spec.measured[name].type
        if kind == "float":
            assert isinstance(value, float), name
        elif kind == "int":
            assert isinstance(value, int), name
        else:
            words = spec.measured[name].values
            assert words is not None
            assert value in words, name


async def test_starting_a_job_in_idle_is_refused_with_wrong_state(driver: OpcUaDriver) -> None:
    with pytest.raises(CommandRefused) as refused:
        await driver.start_job(Job("J-1", "LOT-1", "STEP_A", "C-1", INCOMING))
    assert refused.value.code == RefusalCode.WRONG_STATE
    assert refused.value.request == "start_job"
    assert refused.value.tool_id == driver.tool_id


async def test_a_job_is_refused_in_maintenance_mode(
    driver: OpcUaDriver, equipment_class: EquipmentClass
) -> None:
    await load_ready(driver, equipment_class)
    await driver.set_mode(Mode.MAINTENANCE)
    assert (await driver.status()).mode is Mode.MAINTENANCE
    with pytest.raises(CommandRefused) as refused:
        await driver.start_job(Job("J-1", "LOT-1", "STEP_A", "C-1", INCOMING))
    assert refused.value.code == RefusalCode.WRONG_MODE


async def test_an_aborted_job_is_reset_to_ready(
    driver: OpcUaDriver, tool: VirtualTool, equipment_class: EquipmentClass
) -> None:
    await load_ready(driver, equipment_class)
    tool.settings.time_scale = 100.0  # the job now runs long enough to be aborted
    await driver.start_job(Job("J-1", "LOT-1", "STEP_A", "C-1", INCOMING))
    assert (await driver.status()).state is ProcessState.EXECUTING
    async with event_stream(driver) as events:
        await driver.abort()
        aborted = await next_status(events, ProcessState.ABORTED)
        assert aborted.job_id == "J-1"
        await driver.reset_alarm()
        ready = await next_status(events, ProcessState.READY)
    assert ready.job_id is None
    assert await driver.results() is None, "an aborted job leaves no results"


async def test_abort_is_refused_when_nothing_runs(driver: OpcUaDriver) -> None:
    with pytest.raises(CommandRefused) as refused:
        await driver.abort()
    assert refused.value.code == RefusalCode.WRONG_STATE


async def test_an_injected_alarm_arrives_as_alarm_status_and_clears_on_reset(
    driver: OpcUaDriver, tool: VirtualTool, equipment_class: EquipmentClass
) -> None:
    await load_ready(driver, equipment_class)
    alarm = Alarm(4242, "vacuum lost", AlarmSeverity.FATAL)
    async with event_stream(driver) as events:
        tool.inject_alarm(alarm)
        alarmed = await next_status(events, ProcessState.ALARM)
        assert alarmed.alarm == alarm
        with pytest.raises(ToolAlarmed) as refused:
            await driver.start_job(Job("J-1", "LOT-1", "STEP_A", "C-1", INCOMING))
        assert refused.value.alarm == alarm
        await driver.reset_alarm()
        ready = await next_status(events, ProcessState.READY)
    assert ready.alarm is None, "a reset clears the alarm; the recipe stays active"


async def test_a_reset_the_tool_does_not_allow_is_refused_with_the_tools_reason(
    driver: OpcUaDriver, tool: VirtualTool, equipment_class: EquipmentClass
) -> None:
    await load_ready(driver, equipment_class)
    await check_reset_refusals(driver, tool)


async def test_results_are_kept_until_acknowledged_even_across_a_controller_restart(
    driver: OpcUaDriver, server: OpcUaToolServer, tool: VirtualTool, equipment_class: EquipmentClass
) -> None:
    await load_ready(driver, equipment_class)
    job = await complete_job(driver, "J-7")
    before = await driver.results()
    assert before is not None

    # A controller restarted after "complete" and before "recorded": a new pool, a new session.
    restarted = OpcUaSessionPool(rng=random.Random(3))
    again = OpcUaDriver(tool_config(equipment_class, server.url, tool_id=tool.tool_id), restarted)
    try:
        await again.start()
        assert await again.results() == before
        with pytest.raises(CommandRefused) as refused:
            await again.acknowledge_results("J-6")
        assert refused.value.code == RefusalCode.UNKNOWN_JOB
        assert await again.results() == before, "a wrong job id changes nothing"
        await again.acknowledge_results(job.job_id)
        assert await again.results() is None
        assert (await again.status()).state is ProcessState.READY
    finally:
        await again.close()
        await restarted.aclose()
    assert await driver.results() is None


async def test_a_new_event_stream_starts_with_the_connection_and_the_current_status(
    driver: OpcUaDriver, tool: VirtualTool, equipment_class: EquipmentClass
) -> None:
    async with event_stream(driver) as events:
        await driver.load_recipe(full_recipe(equipment_class))
        ready = await next_status(events, ProcessState.READY)
    async with event_stream(driver) as events:
        first = await next_event(events, ConnectionRestored)
        assert first.tool_id == driver.tool_id
        current = await next_event(events, StatusChanged)
        assert isinstance(current, StatusChanged)
        assert current.status == ready == await driver.status()
        tool.set_mode(Mode.ENGINEERING)
        changed = await next_event(events, StatusChanged)
        assert isinstance(changed, StatusChanged)
        assert changed.status.mode is Mode.ENGINEERING
