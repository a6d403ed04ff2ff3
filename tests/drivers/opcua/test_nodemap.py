"""Node maps are data: the packaged map covers the whole model; a map written with node ids
instead of browse paths drives the same simulator without new code; a broken map is refused
with a ConfigurationError that names the file and the line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from drivers.errors import ConfigurationError, ToolUnreachable
from drivers.model import EquipmentClass, ProcessState
from drivers.opcua.nodemap import (
    DEFAULT_MAP_PATH,
    Method,
    QName,
    Signal,
    load_node_map,
    parse_node_map,
)
from simulators.opcua_model import NAMESPACE_URI
from simulators.opcua_server import OpcUaToolServer
from tests.drivers.common import full_recipe, wait_for_state

from .conftest import DriverMaker

PACKAGED = DEFAULT_MAP_PATH.read_text(encoding="utf-8")


def _line_of(text: str, fragment: str) -> int:
    return text[: text.index(fragment)].count("\n") + 1


def _refused(text: str, tmp_path: Path) -> ConfigurationError:
    path = tmp_path / "broken.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigurationError) as refused:
        parse_node_map(path)
    return refused.value


def test_the_packaged_map_names_every_signal_method_and_measured_value() -> None:
    node_map = load_node_map()
    assert set(node_map.signals) == set(Signal)
    assert set(node_map.methods) == set(Method)
    state = node_map.signals[Signal.STATE]
    assert state.browse_path == (QName(NAMESPACE_URI, "State"),)
    assert node_map.measured("kerf_width_um").browse_path[-1] == QName(
        NAMESPACE_URI, "kerf_width_um"
    )
    assert [q.name for q in node_map.tool_object_for("DICER-1").browse_path] == [
        "Tools",
        "DICER-1",
    ]


def test_a_missing_signal_is_refused_with_the_file_and_line(tmp_path: Path) -> None:
    text = PACKAGED.replace("  state: State\n", "")
    error = _refused(text, tmp_path)
    # The line of the signals block (its first entry).
    assert str(error).startswith(f"{tmp_path / 'broken.yaml'}:{_line_of(text, 'signals:') + 1}:")
    assert "signals missing from the map: state" in str(error)


def test_an_unknown_namespace_alias_is_refused_at_its_line(tmp_path: Path) -> None:
    text = PACKAGED.replace("  mode: Mode\n", "  mode: di:Mode\n")
    error = _refused(text, tmp_path)
    assert f"broken.yaml:{_line_of(text, 'di:Mode')}:" in str(error)
    assert "unknown namespace alias 'di'" in str(error)


def test_a_malformed_browse_path_is_refused_at_its_line(tmp_path: Path) -> None:
    text = PACKAGED.replace(": Recipe/ActiveChecksum\n", ": Recipe//ActiveChecksum\n")
    error = _refused(text, tmp_path)
    assert f"broken.yaml:{_line_of(text, ': Recipe//')}:" in str(error)
    assert "bad browse path" in str(error)


def test_a_node_id_with_a_namespace_index_is_refused_at_its_line(tmp_path: Path) -> None:
    text = PACKAGED.replace("  abort: Abort\n", "  abort: {node_id: 'ns=2;s=Abort'}\n")
    error = _refused(text, tmp_path)
    assert f"broken.yaml:{_line_of(text, 'ns=2;s=Abort')}:" in str(error)
    assert "the namespace is an alias" in str(error)


def test_an_unknown_key_and_a_yaml_error_are_refused_with_their_lines(tmp_path: Path) -> None:
    text = PACKAGED.replace("methods:\n", "method_timeout: 3\nmethods:\n")
    error = _refused(text, tmp_path)
    assert f"broken.yaml:{_line_of(text, 'method_timeout')}:" in str(error)
    text = PACKAGED.replace("  mode: Mode\n", "  mode: [Mode\n")
    error = _refused(text, tmp_path)
    assert re.search(r"broken\.yaml:\d+: not valid YAML", str(error))


def test_a_driver_with_a_broken_map_is_refused_when_it_is_built(tmp_path: Path) -> None:
    from drivers.opcua import OpcUaDriver, OpcUaSessionPool

    from .conftest import tool_config

    path = tmp_path / "broken.yaml"
    path.write_text(PACKAGED.replace("default_namespace: pk", "default_namespace: xx"))
    config = tool_config(EquipmentClass.MOLDER, "opc.tcp://127.0.0.1:4840", map=path)
    with pytest.raises(ConfigurationError, match=r"broken\.yaml:.*default_namespace 'xx'"):
        OpcUaDriver(config, OpcUaSessionPool())


def _node_id_map() -> str:
    """The packaged map rewritten with node ids (as a third-party server's map might be)."""
    text = PACKAGED
    for line in re.findall(r"^  (\w+): ([A-Za-z/]+)$", PACKAGED, flags=re.MULTILINE):
        key, path = line
        if key in {s.value for s in Signal} | {m.value for m in Method}:
            text = text.replace(
                f"  {key}: {path}\n", f"  {key}: {{node_id: 's={{object}}/{path}'}}\n"
            )
    return text.replace(
        "template: Results/Measured/{name}",
        "template: {node_id: 's={object}/Results/Measured/{name}'}",
    ).replace("tool_object: Tools/{object}", "tool_object: {node_id: 's={object}'}")


async def test_a_map_written_with_node_ids_drives_the_same_tool(
    tmp_path: Path, make_driver: DriverMaker
) -> None:
    path = tmp_path / "node-ids.yaml"
    path.write_text(_node_id_map(), encoding="utf-8")
    node_map = parse_node_map(path)
    assert all(a.node_id is not None for a in node_map.signals.values())
    assert node_map.tool_object.node_id == "s={object}"

    from .conftest import virtual_tool

    tool = virtual_tool(EquipmentClass.LAMINATOR)
    async with OpcUaToolServer([tool]) as server:
        driver = await make_driver(EquipmentClass.LAMINATOR, server.url, map=path)
        assert await driver.identify() == tool.identity
        await driver.load_recipe(full_recipe(EquipmentClass.LAMINATOR))
        ready = await wait_for_state(driver, ProcessState.READY)
        assert ready.mode is tool.status.mode
        await driver.close()


async def test_a_map_naming_a_node_the_server_lacks_leaves_the_tool_offline_with_the_reason(
    tmp_path: Path, make_driver: DriverMaker
) -> None:
    path = tmp_path / "wrong.yaml"
    path.write_text(PACKAGED.replace("Progress/SitesDone", "Progress/SitesFinished"))
    from .conftest import virtual_tool

    async with OpcUaToolServer([virtual_tool(EquipmentClass.DICER)]) as server:
        driver = await make_driver(EquipmentClass.DICER, server.url, map=path)
        assert not driver.connected
        with pytest.raises(ToolUnreachable, match="Progress/SitesFinished not found"):
            await driver.status()
        await driver.close()
