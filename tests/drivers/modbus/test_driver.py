"""The Modbus driver runs every equipment class through its simulator over real loopback
sockets: identity, recipes, jobs with site maps, refusals, abort, alarms, results kept until
acknowledged. Each test runs once per class (the ``equipment_class`` fixture)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from drivers.catalogue import class_spec
from drivers.errors import CommandRefused, ConfigurationError, RecipeMismatch, ToolAlarmed
from drivers.interface import ToolDriver
from drivers.modbus.driver import ModbusDriver
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
from simulators.engine import VirtualTool
from simulators.modbus_server import ModbusToolServer
from tests.drivers.common import (
    INCOMING,
    check_reset_refusals,
    complete_job,
    full_recipe,
    load_ready,
    wait_for_state,
)

from .conftest import tool_config


def test_the_driver_satisfies_the_tool_driver_protocol(equipment_class: EquipmentClass) -> None:
    driver: ToolDriver = ModbusDriver(tool_config(equipment_class, 5020))
    assert driver.equipment_class is equipment_class
    assert driver.recipe_parameters == frozenset(class_spec(equipment_class).recipe)


async def test_identify_reports_the_tool_and_its_class(
    driver: ModbusDriver, tool: VirtualTool
) -> None:
    identity = await driver.identify()
    assert identity == tool.identity


async def test_identify_refuses_a_tool_of_another_class(
    server: ModbusToolServer, equipment_class: EquipmentClass
) -> None:
    other = next(c for c in EquipmentClass if c is not equipment_class)
    driver = ModbusDriver(tool_config(other, server.port))  # the common blocks are shared
    await driver.start()
    try:
        with pytest.raises(ConfigurationError, match=f"reports class {equipment_class.value}"):
            await driver.identify()
    finally:
        await driver.close()


async def test_a_loaded_recipe_is_active_and_verifies(
    driver: ModbusDriver, equipment_class: EquipmentClass
) -> None:
    assert await driver.active_recipe() is None, "a fresh tool holds no recipe"
    status, active = await driver.status_and_recipe()
    assert (status.state, active) == (ProcessState.IDLE, None)
    recipe = await load_ready(driver, equipment_class)
    info = await driver.verify_recipe(recipe)
    assert info == recipe.info(), "the tool's checksum is the controller's"
    assert await driver.active_recipe() == recipe.info()
    status, active = await driver.status_and_recipe()
    assert (status.state, active) == (ProcessState.READY, recipe.info())


async def test_verify_with_a_different_recipe_raises_recipe_mismatch(
    driver: ModbusDriver, equipment_class: EquipmentClass
) -> None:
    recipe = await load_ready(driver, equipment_class)
    other = Recipe(recipe.name, recipe.version + 1, recipe.body)
    with pytest.raises(RecipeMismatch) as mismatch:
        await driver.verify_recipe(other)
    assert mismatch.value.actual == recipe.info()
    assert mismatch.value.expected == other.info()


async def test_a_partial_recipe_carries_only_its_values(
    driver: ModbusDriver, equipment_class: EquipmentClass, tool: VirtualTool
) -> None:
    full = full_recipe(equipment_class)
    first = sorted(full.body)[0]
    partial = Recipe("partial", 2, {first: full.body[first]})
    await driver.load_recipe(partial)
    await wait_for_state(driver, ProcessState.READY)
    assert tool.recipe is not None and set(tool.recipe.body) == {first}
    assert await driver.verify_recipe(partial) == partial.info()


async def test_a_recipe_value_the_class_does_not_take_is_refused_before_sending(
    driver: ModbusDriver, tool: VirtualTool
) -> None:
    with pytest.raises(CommandRefused) as refused:
        await driver.load_recipe(Recipe("bad", 1, {"no_such_value": 1.0}))
    assert refused.value.code == RefusalCode.INVALID_ARGUMENT
    assert "no_such_value" in str(refused.value)
    assert tool.status.state is ProcessState.IDLE


async def test_a_recipe_for_another_equipment_class_is_refused_before_sending(
    driver: ModbusDriver, tool: VirtualTool, equipment_class: EquipmentClass
) -> None:
    other = next(c for c in EquipmentClass if c is not equipment_class)
    recipe = replace(full_recipe(equipment_class), equipment_class=other.value)
    with pytest.raises(CommandRefused) as refused:
        await driver.load_recipe(recipe)
    assert refused.value.code == RefusalCode.INVALID_ARGUMENT
    assert f"is for a {other.value}, this tool is a {equipment_class.value}" in str(refused.value)
    assert tool.status.state is ProcessState.IDLE
    # the same recipe marked with the tool's own class is taken
    await driver.load_recipe(replace(recipe, equipment_class=equipment_class.value))
    await wait_for_state(driver, ProcessState.READY)


async def test_a_full_job_returns_the_outgoing_site_map_and_typed_measured_values(
    driver: ModbusDriver, equipment_class: EquipmentClass
) -> None:
    await load_ready(driver, equipment_class)
    job = await complete_job(driver)
    status = await driver.status()
    assert status.results_waiting and status.job_id == job.job_id
    assert status.sites_done == status.sites_total == INCOMING.good_count
    results = await driver.results()
    assert results is not None
    assert (results.job_id, results.lot_id, results.step, results.carrier_id) == (
        job.job_id,
        job.lot_id,
        job.step,
        job.carrier_id,
    )
    spec = class_spec(equipment_class)
    assert (results.site_map.rows, results.site_map.cols) == (INCOMING.rows, INCOMING.cols)
    for incoming, outgoing in zip(INCOMING.codes, results.site_map.codes, strict=True):
        if incoming != SITE_GOOD:
            assert outgoing == SITE_SKIPPED, "a site that came in bad is skipped"
        else:
            assert outgoing == SITE_GOOD or outgoing in spec.reject_codes
    assert set(results.measured) == set(spec.measured)
    for name, value in results.measured.items():
        kind = spec.measured[name].type
        if kind == "float":
            assert type(value) is float, name
        elif kind == "int":
            assert type(value) is int, name
        else:
            assert value in (spec.measured[name].values or ()), name


async def test_starting_a_job_in_idle_is_refused_with_wrong_state(driver: ModbusDriver) -> None:
    with pytest.raises(CommandRefused) as refused:
        await driver.start_job(Job("J-1", "LOT-1", "STEP_A", "LOT-1.01", INCOMING))
    assert refused.value.code == RefusalCode.WRONG_STATE
    assert "IDLE" in str(refused.value), "the tool's reason is in the message"


async def test_starting_a_job_in_maintenance_is_refused_with_wrong_mode(
    driver: ModbusDriver, equipment_class: EquipmentClass
) -> None:
    await load_ready(driver, equipment_class)
    await driver.set_mode(Mode.MAINTENANCE)
    assert (await driver.status()).mode is Mode.MAINTENANCE
    with pytest.raises(CommandRefused) as refused:
        await driver.start_job(Job("J-1", "LOT-1", "STEP_A", "LOT-1.01", INCOMING))
    assert refused.value.code == RefusalCode.WRONG_MODE


async def test_an_id_too_long_for_its_register_field_is_refused_before_sending(
    driver: ModbusDriver, equipment_class: EquipmentClass, tool: VirtualTool
) -> None:
    await load_ready(driver, equipment_class)
    with pytest.raises(CommandRefused) as refused:
        await driver.start_job(Job("J" * 40, "LOT-1", "STEP_A", "LOT-1.01", INCOMING))
    assert refused.value.code == RefusalCode.INVALID_ARGUMENT
    assert "job.job_id" in str(refused.value)
    assert tool.status.state is ProcessState.READY


async def test_abort_stops_a_running_job_and_reset_returns_to_ready(
    driver: ModbusDriver, equipment_class: EquipmentClass, tool: VirtualTool
) -> None:
    await load_ready(driver, equipment_class)
    tool.settings.time_scale = 100.0  # the job now takes long enough to be aborted
    await driver.start_job(Job("J-1", "LOT-1", "STEP_A", "LOT-1.01", INCOMING))
    assert (await driver.status()).state is ProcessState.EXECUTING
    await driver.abort()
    assert (await driver.status()).state is ProcessState.ABORTED
    await driver.reset_alarm()
    status = await driver.status()
    assert status.state is ProcessState.READY and status.job_id is None


async def test_an_injected_alarm_shows_in_the_status_and_reset_clears_it(
    driver: ModbusDriver, equipment_class: EquipmentClass, server: ModbusToolServer
) -> None:
    await load_ready(driver, equipment_class)
    server.inject_alarm(Alarm(4711, "vacuum lost on chuck", AlarmSeverity.FATAL))
    status = await wait_for_state(driver, ProcessState.ALARM)
    assert status.alarm == Alarm(4711, "vacuum lost on chuck", AlarmSeverity.FATAL)
    with pytest.raises(ToolAlarmed) as alarmed:
        await driver.start_job(Job("J-1", "LOT-1", "STEP_A", "LOT-1.01", INCOMING))
    assert alarmed.value.alarm.code == 4711
    await driver.reset_alarm()
    status = await driver.status()
    assert status.state is ProcessState.READY and status.alarm is None


async def test_a_reset_the_tool_does_not_allow_is_refused_with_the_tools_reason(
    driver: ModbusDriver, tool: VirtualTool, equipment_class: EquipmentClass
) -> None:
    await load_ready(driver, equipment_class)
    await check_reset_refusals(driver, tool)


async def test_results_are_kept_until_the_right_job_is_acknowledged(
    driver: ModbusDriver, equipment_class: EquipmentClass, server: ModbusToolServer
) -> None:
    await load_ready(driver, equipment_class)
    job = await complete_job(driver, "J-42")
    first = await driver.results()
    assert first is not None and first == await driver.results(), "reading does not consume"

    restarted = ModbusDriver(tool_config(equipment_class, server.port))  # a new controller
    await restarted.start()
    try:
        assert await restarted.results() == first
        with pytest.raises(CommandRefused) as refused:
            await restarted.acknowledge_results("J-41")
        assert refused.value.code == RefusalCode.UNKNOWN_JOB
        assert await restarted.results() == first
        await restarted.acknowledge_results(job.job_id)
    finally:
        await restarted.close()
    assert await driver.results() is None
    status = await driver.status()
    assert status.state is ProcessState.READY and not status.results_waiting


async def test_a_recipe_cannot_be_loaded_while_results_wait(
    driver: ModbusDriver, equipment_class: EquipmentClass
) -> None:
    await load_ready(driver, equipment_class)
    await complete_job(driver)
    with pytest.raises(CommandRefused) as refused:
        await driver.load_recipe(full_recipe(equipment_class, version=2))
    assert refused.value.code == RefusalCode.WRONG_STATE
