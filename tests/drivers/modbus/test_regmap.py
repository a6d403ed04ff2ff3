"""Register maps are checked data: the packaged maps agree with the class catalogue, a real
tool's map is a new file, and every mistake is a ConfigurationError naming file and line."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

import pytest

from drivers.catalogue import class_spec
from drivers.config import ModbusEndpoint, ToolConfig
from drivers.errors import ConfigurationError
from drivers.modbus.driver import ModbusDriver
from drivers.modbus.mapfile import MAPS_DIR, load_register_map, packaged_map, register_map_for
from drivers.modbus.regmap import MAX_READ
from drivers.model import EquipmentClass, Job, ProcessState, Recipe, SiteMap
from simulators.engine import SimulationSettings, VirtualTool
from simulators.modbus_server import ModbusToolServer
from tests.drivers.common import wait_for_state

MOLDER_VALUES = """\
recipe:
  mold_temperature_c: {address: 200, type: float32, unit: degC}
  transfer_pressure_mpa: {address: 202, type: float32, unit: MPa}
  cure_time_s: {address: 204, type: float32, unit: s}
  compound_material: {address: 206, type: enum}
  compound_thermal_conductivity_w_mk: {address: 207, type: float32}
  mold_cap_over_heat_sink_um: {address: 209, type: float32}
  filling_material: {address: 211, type: enum}
measured:
  mold_temperature_c: {address: 500, type: float32}
  transfer_pressure_mpa: {address: 502, type: float32}
  cure_time_s: {address: 504, type: float32}
  mold_cap_over_heat_sink_um: {address: 506, type: float32}
"""


def write_map(tmp_path: Path, text: str, *, header: bool = True) -> Path:
    """A molder map file extending the packaged common blocks."""
    path = tmp_path / "tool.yaml"
    prefix = (
        "format: pkgline-modbus-map/1\nextends: pkgline:common.yaml\nequipment_class: molder\n"
        if header
        else ""
    )
    path.write_text(prefix + textwrap.dedent(text))
    return path


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def assert_error_at(path: Path, needle: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        load_register_map(path)
    text = str(error.value)
    assert text.startswith(f"{path}:{line_of(path, needle)}: "), text
    assert message in text, text


@pytest.mark.parametrize("equipment_class", list(EquipmentClass), ids=lambda c: c.value)
def test_every_packaged_map_maps_every_catalogue_value_of_its_class(
    equipment_class: EquipmentClass,
) -> None:
    regmap = packaged_map(equipment_class)
    spec = class_spec(equipment_class)
    assert regmap.equipment_class is equipment_class
    assert set(regmap.recipe.names) == set(spec.recipe)
    assert set(regmap.measured.names) == set(spec.measured)
    assert regmap.status.count <= MAX_READ, "the status poll is one read request"
    for table in ("input", "holding"):
        spans = regmap.spans(table)
        for (start, count), (next_start, _) in itertools.pairwise(spans):
            assert start + count <= next_start, f"{table} spans overlap"


def test_a_real_tools_map_can_move_a_block_and_change_the_word_order(tmp_path: Path) -> None:
    path = write_map(
        tmp_path,
        MOLDER_VALUES
        + """\
word_order: little
blocks:
  status:
    table: input
    fields:
      state: {address: 2000, type: uint16}
      mode: {address: 2001, type: uint16}
      sites_done: {address: 2002, type: uint32}
      sites_total: {address: 2004, type: uint32}
      results_waiting: {address: 2006, type: uint16}
      alarm_severity: {address: 2007, type: uint16}
      alarm_code: {address: 2008, type: int32}
      job_id: {address: 2010, type: string, length: 10}
      alarm_text: {address: 2020, type: string, length: 20}
""",
    )
    regmap = register_map_for(EquipmentClass.MOLDER, path)
    assert regmap.word_order == "little"
    assert (regmap.status.start, regmap.status.count) == (2000, 40)
    common = packaged_map(EquipmentClass.MOLDER).answer
    assert [(f.name, f.address, f.size) for f in regmap.answer.fields] == [
        (f.name, f.address, f.size) for f in common.fields
    ], "the other blocks come from common.yaml"


def test_a_value_the_tool_does_not_have_can_be_listed_as_unmapped(tmp_path: Path) -> None:
    text = (
        MOLDER_VALUES.replace("  filling_material: {address: 211, type: enum}\n", "")
        + "unmapped:\n  recipe: [filling_material]\n"
    )
    regmap = load_register_map(write_map(tmp_path, text))
    assert "filling_material" not in regmap.recipe.names
    assert regmap.unmapped_recipe == {"filling_material"}


def test_enum_wire_values_default_to_the_catalogue_order_or_come_from_the_map(
    tmp_path: Path,
) -> None:
    text = MOLDER_VALUES.replace(
        "compound_material: {address: 206, type: enum}",
        "compound_material: {address: 206, type: enum, enum: {silicone_resin: 1, epoxy_resin: 2}}",
    )
    regmap = load_register_map(write_map(tmp_path, text))
    assert regmap.recipe.field("compound_material").encode("epoxy_resin") == [2]
    assert packaged_map(EquipmentClass.MOLDER).recipe.field("compound_material").encode(
        "epoxy_resin"
    ) == [0]


@pytest.mark.parametrize(
    ("edit", "needle", "message"),
    [
        (
            (
                "cure_time_s: {address: 204, type: float32, unit: s}",
                "cure_time_s: {address: 203, type: float32, unit: s}",
            ),
            "address: 203",
            "recipe.cure_time_s (holding registers 203..204) overlaps recipe.transfer_pressure_mpa",
        ),
        (
            (
                "cure_time_s: {address: 504, type: float32}",
                "cure_time_s: {address: 50, type: float32}",
            ),
            "address: 50,",
            "overlaps block status (input registers 0..55, common.yaml:",
        ),
        (
            (
                "mold_temperature_c: {address: 200, type: float32, unit: degC}",
                "mold_temp_c: {address: 200, type: float32}",
            ),
            "mold_temp_c",
            "molder has no recipe value 'mold_temp_c'",
        ),
        (
            (
                "compound_material: {address: 206, type: enum}",
                "compound_material: {address: 206, type: uint16}",
            ),
            "compound_material",
            "compound_material is enum in the class catalogue",
        ),
        (
            (
                "compound_material: {address: 206, type: enum}",
                "compound_material: {address: 206, type: enum, enum: {epoxy_resin: 0, pvc: 1}}",
            ),
            "compound_material",
            "the map gives epoxy_resin, pvc",
        ),
        (
            ("unit: degC}", "unit: degF}"),
            "degF",
            "mold_temperature_c is in degC in the class catalogue, not degF",
        ),
        (
            (
                "cure_time_s: {address: 504, type: float32}",
                "cure_time_s: {address: 504, type: float64}",
            ),
            "float64",
            "measured.cure_time_s.type: Input should be",
        ),
        (
            (
                "cure_time_s: {address: 504, type: float32}",
                "cure_time_s: {address: 504, type: string}",
            ),
            "type: string",
            "a string needs 'length'",
        ),
        (
            ("  cure_time_s: {address: 504, type: float32}\n", ""),
            "mold_temperature_c: {address: 500",
            "measured values of molder neither mapped nor listed under unmapped.measured: cure_time_s",
        ),
    ],
    ids=[
        "overlapping-values",
        "value-inside-a-common-block",
        "unknown-value",
        "wrong-type",
        "wrong-enum-words",
        "wrong-unit",
        "unknown-type",
        "string-without-length",
        "value-neither-mapped-nor-unmapped",
    ],
)
def test_a_malformed_map_is_a_configuration_error_with_path_and_line(
    tmp_path: Path, edit: tuple[str, str], needle: str, message: str
) -> None:
    old, new = edit
    assert old in MOLDER_VALUES
    path = write_map(tmp_path, MOLDER_VALUES.replace(old, new))
    assert_error_at(path, needle, message)


def test_a_common_block_missing_a_field_is_named(tmp_path: Path) -> None:
    path = write_map(
        tmp_path,
        MOLDER_VALUES
        + """\
blocks:
  answer:
    table: input
    fields:
      sequence: {address: 100, type: uint16}
      code: {address: 101, type: uint16}
""",
    )
    assert_error_at(path, "sequence: {address: 100", "block answer needs fields reason")


def test_a_status_block_too_big_for_one_read_is_refused(tmp_path: Path) -> None:
    status = (
        MOLDER_VALUES
        + """\
blocks:
  status:
    table: input
    fields:
      state: {address: 3000, type: uint16}
      mode: {address: 3001, type: uint16}
      sites_done: {address: 3002, type: uint16}
      sites_total: {address: 3003, type: uint16}
      results_waiting: {address: 3004, type: bool}
      alarm_severity: {address: 3005, type: uint16}
      alarm_code: {address: 3006, type: uint16}
      job_id: {address: 3007, type: string, length: 16}
      alarm_text: {address: 3200, type: string, length: 16}
"""
    )
    path = write_map(tmp_path, status)
    assert_error_at(
        path, "table: input", "block status spans 216 registers; it is read in one request"
    )


def test_duplicate_keys_and_broken_yaml_name_the_line(tmp_path: Path) -> None:
    path = write_map(tmp_path, MOLDER_VALUES + "recipe: {}\n")
    with pytest.raises(ConfigurationError, match=r"tool\.yaml:\d+: duplicate key 'recipe'"):
        load_register_map(path)
    path.write_text("format: [unclosed\n")
    with pytest.raises(ConfigurationError, match=r"tool\.yaml:\d+: not valid YAML"):
        load_register_map(path)


def test_a_missing_base_map_is_named(tmp_path: Path) -> None:
    path = tmp_path / "tool.yaml"
    path.write_text(
        "format: pkgline-modbus-map/1\nextends: nowhere.yaml\nequipment_class: molder\n"
    )
    assert_error_at(path, "extends", "the base map")


def test_a_map_of_another_class_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="the map is for molder, not dicer"):
        register_map_for(EquipmentClass.DICER, MAPS_DIR / "molder.yaml")


async def test_driver_and_simulator_work_through_a_real_tools_own_map(tmp_path: Path) -> None:
    """A new map file is all it takes: other addresses, little-endian words, scaled ints."""
    text = MOLDER_VALUES.replace(
        "mold_temperature_c: {address: 500, type: float32}",
        "mold_temperature_c: {address: 500, type: int16, scale: 0.1}",
    ) + textwrap.dedent(
        """\
        word_order: little
        site_maps:
          outgoing: {table: input, address: 4000, max_sites: 600}
        """
    )
    path = write_map(tmp_path, text)
    regmap = load_register_map(path)
    tool = VirtualTool("MOLD-9", EquipmentClass.MOLDER, SimulationSettings(time_scale=0, seed=5))
    try:
        async with ModbusToolServer(tool, register_map=regmap) as server:
            config = ToolConfig(
                id="MOLD-9",
                equipment_class=EquipmentClass.MOLDER,
                endpoint=ModbusEndpoint(port=server.port, map=path),
            )
            driver = ModbusDriver(config)
            await driver.start()
            try:
                recipe = Recipe("r", 1, {"mold_temperature_c": 181.5, "cure_time_s": 95.0})
                await driver.load_recipe(recipe)
                tool_recipe = tool.recipe
                assert tool_recipe is not None and tool_recipe.info() == recipe.info()
                await wait_for_state(driver, ProcessState.READY)
                await driver.start_job(Job("J", "L", "MOLD", "L.1", SiteMap.all_good(20, 25)))
                await wait_for_state(driver, ProcessState.COMPLETE)
                results = await driver.results()
                assert results is not None and results.site_map.codes == (0,) * 500
                expected = tool.results
                assert expected is not None
                measured = results.measured["mold_temperature_c"]
                assert measured == pytest.approx(expected.measured["mold_temperature_c"], abs=0.05)
            finally:
                await driver.close()
    finally:
        await tool.close()
