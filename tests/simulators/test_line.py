"""A simulated line from a line configuration: every simulated tool answers our drivers where
the configuration says, OPC UA tools of one URL share one server, tools are found by id for
fault injection, stopping leaves nothing open; free ports and the TOML copy for demos; and the
packaged example configuration covers every equipment class and every step a tool runs.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from drivers.config import ModbusEndpoint, OpcUaEndpoint
from drivers.errors import DriverError
from drivers.factory import DriverFactory
from drivers.interface import ToolDriver
from drivers.model import EquipmentClass, ProcessState, Recipe
from flows import load_library
from pkgline.config import ConfigError, LineConfig, LineTool, load_line_config
from pkgline.security import secure_demo_line
from simulators.line import (
    SimulatedLine,
    line_config_toml,
    with_free_ports,
    write_line_config,
)
from simulators.modbus_server import ModbusToolServer
from simulators.opcua_server import OpcUaToolServer

T = TypeVar("T")

EXAMPLE = Path(__file__).parents[2] / "deploy" / "line.example.toml"
FAST_POLICY = {"timeout_s": 0.5, "poll_interval_s": 0.05, "backoff_initial_s": 0.05}

PLAIN = {"policy": "None", "mode": "None"}
"""Plain OPC UA: these tests are not about security (tests/drivers/opcua/test_security.py)."""


def small_config(**simulation: Any) -> LineConfig:
    """A Modbus molder and two OPC UA tools behind one URL (one with an object name of its
    own), on placeholder ports that :func:`with_free_ports` replaces."""
    sim = {"time_scale": 0.0, "seed": 5, **simulation}
    return LineConfig.model_validate(
        {
            "name": "test-line",
            "tools": [
                {
                    "id": "MOLD-1",
                    "equipment_class": "molder",
                    "endpoint": {"transport": "modbus", "host": "127.0.0.1", "port": 1502},
                    "policy": FAST_POLICY,
                    "simulation": sim,
                },
                {
                    "id": "COAT-1",
                    "equipment_class": "coater",
                    "endpoint": {
                        "transport": "opcua",
                        "url": "opc.tcp://127.0.0.1:1484",
                        "security": PLAIN,
                    },
                    "policy": FAST_POLICY,
                    "simulation": sim,
                },
                {
                    "id": "PLATE-1",
                    "equipment_class": "plater",
                    "endpoint": {
                        "transport": "opcua",
                        "url": "opc.tcp://127.0.0.1:1484",
                        "object_name": "Plater_A",
                        "security": PLAIN,
                    },
                    "policy": FAST_POLICY,
                    "simulation": sim,
                },
            ],
        }
    )


def port_of(tool: LineTool) -> int:
    endpoint = tool.endpoint
    if isinstance(endpoint, ModbusEndpoint):
        return endpoint.port
    return int(endpoint.url.rsplit(":", 1)[1])


def url_of(tool: LineTool) -> str:
    assert isinstance(tool.endpoint, OpcUaEndpoint)
    return tool.endpoint.url


async def eventually(
    read: Callable[[], Awaitable[T]],
    holds: Callable[[T], bool],
    *,
    failing: bool = False,
    within: float = 5.0,
) -> None:
    """Call ``read`` every 20 ms until ``holds`` its answer (or, with ``failing``, until it
    raises a DriverError); fail after ``within`` seconds."""
    async with asyncio.timeout(within):
        while True:
            try:
                if holds(await read()):
                    return
            except DriverError:
                if failing:
                    return
            await asyncio.sleep(0.02)


def connection_refused(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex((host, port)) != 0


async def open_drivers(config: LineConfig) -> tuple[DriverFactory, list[ToolDriver]]:
    factory = DriverFactory()
    drivers = [factory.create(tool) for tool in config.tools]
    for driver in drivers:
        await driver.start()
    return factory, drivers


async def close_drivers(factory: DriverFactory, drivers: Sequence[ToolDriver]) -> None:
    for driver in drivers:
        await driver.close()
    await factory.aclose()


@pytest.fixture
async def line() -> AsyncIterator[SimulatedLine]:
    async with SimulatedLine(with_free_ports(small_config())) as line:
        yield line


async def test_every_simulated_tool_answers_our_driver_where_the_configuration_says(
    line: SimulatedLine,
) -> None:
    factory, drivers = await open_drivers(line.config)
    try:
        for driver in drivers:
            identity = await driver.identify()
            assert identity.equipment_class is driver.equipment_class
            assert (await driver.status()).state is ProcessState.IDLE
        sessions = factory.opcua_sessions
        assert sessions is not None and len(sessions) == 1, "one session for the OPC UA URL"
    finally:
        await close_drivers(factory, drivers)


async def test_opcua_tools_of_one_url_share_one_server_and_keep_their_object_names(
    line: SimulatedLine,
) -> None:
    coater, plater = line.server("COAT-1"), line.server("PLATE-1")
    assert isinstance(coater, OpcUaToolServer) and coater is plater
    assert isinstance(line.server("MOLD-1"), ModbusToolServer)
    assert line.tool("PLATE-1").tool_id == "Plater_A", "the object is named after object_name"
    assert set(coater.tools) == {"COAT-1", "Plater_A"}


async def test_the_endpoints_list_every_tool_with_its_class_transport_and_address(
    line: SimulatedLine,
) -> None:
    endpoints = {e.tool_id: e for e in line.endpoints()}
    assert list(endpoints) == ["MOLD-1", "COAT-1", "PLATE-1"]
    assert endpoints["MOLD-1"].transport == "modbus"
    assert endpoints["MOLD-1"].equipment_class is EquipmentClass.MOLDER
    assert endpoints["MOLD-1"].address == f"127.0.0.1:{port_of(line.config.tool('MOLD-1'))}"
    url = url_of(line.config.tool("COAT-1"))
    assert endpoints["COAT-1"].transport == endpoints["PLATE-1"].transport == "opcua"
    assert endpoints["COAT-1"].address == endpoints["PLATE-1"].address == url
    assert endpoints["PLATE-1"].object_name == "Plater_A"


async def test_an_alarm_injected_through_the_line_reaches_the_driver(
    line: SimulatedLine,
) -> None:
    factory, drivers = await open_drivers(line.config)
    try:
        for driver in drivers:
            line.tool(driver.tool_id).inject_alarm()
        for driver in drivers:
            await eventually(driver.status, lambda s: s.state is ProcessState.ALARM)
    finally:
        await close_drivers(factory, drivers)


async def test_dropping_a_tools_connections_is_seen_by_its_driver(line: SimulatedLine) -> None:
    factory, drivers = await open_drivers(line.config)
    mold = drivers[0]
    try:
        await line.drop_connections("MOLD-1", refuse_for_s=0.5)
        await eventually(mold.status, lambda _: False, failing=True)  # the connection is gone
        assert not mold.connected
        await eventually(mold.status, lambda _: mold.connected)  # back after the refusal
    finally:
        await close_drivers(factory, drivers)


def test_an_unknown_tool_id_is_refused_with_the_tools_the_line_simulates() -> None:
    line = SimulatedLine(with_free_ports(small_config()))
    with pytest.raises(KeyError, match="MOLD-1, COAT-1, PLATE-1"):
        line.tool("DICE-9")
    with pytest.raises(KeyError, match="DICE-9"):
        line.server("DICE-9")


async def test_stop_closes_every_server_and_tool_process() -> None:
    config = with_free_ports(small_config(time_scale=1.0))
    line = SimulatedLine(config)
    await line.start()
    factory, drivers = await open_drivers(config)
    await drivers[0].load_recipe(Recipe("R", 1, {}))
    assert line.tool("MOLD-1").status.state is ProcessState.SETUP, "a setup is running"
    await close_drivers(factory, drivers)
    await line.stop()
    await line.stop()  # idempotent
    assert not line.running
    for tool in config.tools:
        assert connection_refused("127.0.0.1", port_of(tool))
    # the leak guard (tests/conftest.py) checks that no task (the setup) and no socket is left


async def test_an_opcua_url_with_port_zero_reports_the_port_it_bound() -> None:
    data = small_config().model_dump()
    data["tools"] = data["tools"][1:]
    for tool in data["tools"]:
        tool["endpoint"]["url"] = "opc.tcp://127.0.0.1:0"
    async with SimulatedLine(LineConfig.model_validate(data)) as line:
        addresses = {e.address for e in line.endpoints()}
        assert len(addresses) == 1, "tools of one URL still share a server"
        port = int(addresses.pop().rsplit(":", 1)[1])
        assert port != 0 and not connection_refused("127.0.0.1", port)


async def test_overrides_apply_to_every_tool_and_tools_without_simulation_are_left_alone() -> None:
    data = small_config(time_scale=0.5, reject_rate=0.1).model_dump()
    del data["tools"][0]["simulation"]  # MOLD-1 is a real tool
    line = SimulatedLine(LineConfig.model_validate(data), time_scale=0.0, reject_rate=0.25)
    assert line.tool_ids == ("COAT-1", "PLATE-1")
    for tool_id in line.tool_ids:
        settings = line.tool(tool_id).settings
        assert (settings.time_scale, settings.reject_rate, settings.seed) == (0.0, 0.25, 5)
    unchanged = SimulatedLine(LineConfig.model_validate(data)).tool("COAT-1").settings
    assert (unchanged.time_scale, unchanged.reject_rate) == (0.5, 0.1)


async def test_a_taken_port_is_an_oserror_naming_the_tool_and_nothing_stays_up() -> None:
    config = with_free_ports(small_config())
    mold_port = port_of(config.tool("MOLD-1"))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", mold_port))
        squatter.listen()
        line = SimulatedLine(config)
        with pytest.raises(OSError, match=f"MOLD-1 on 127.0.0.1:{mold_port}"):
            await line.start()
    assert not line.running


def test_configurations_the_simulators_cannot_serve_are_config_errors() -> None:
    data = small_config().model_dump()
    data["tools"][1]["endpoint"]["url"] = "opc.tcp://127.0.0.1:1502"  # the Modbus tool's port
    with pytest.raises(ConfigError, match="MOLD-1 and the OPC UA server"):
        SimulatedLine(LineConfig.model_validate(data))

    data = small_config().model_dump()
    data["tools"][2]["endpoint"]["object_name"] = "COAT-1"
    with pytest.raises(ConfigError, match="already served"):
        SimulatedLine(LineConfig.model_validate(data))

    data = small_config().model_dump()
    data["tools"][1]["endpoint"]["map"] = "maps/gateway-b.yaml"
    with pytest.raises(ConfigError, match="COAT-1: the OPC UA simulator serves the packaged"):
        SimulatedLine(LineConfig.model_validate(data))


def test_with_free_ports_moves_simulated_tools_to_distinct_loopback_ports() -> None:
    data = small_config().model_dump()
    real = {
        "id": "DICE-REAL",
        "equipment_class": "dicer",
        "endpoint": {"transport": "modbus", "host": "10.0.0.7", "port": 502},
    }
    data["tools"] = [*data["tools"], real]
    original = LineConfig.model_validate(data)
    moved = with_free_ports(original)
    mold = moved.tool("MOLD-1")
    assert isinstance(mold.endpoint, ModbusEndpoint) and mold.endpoint.host == "127.0.0.1"
    coat_url, plate_url = url_of(moved.tool("COAT-1")), url_of(moved.tool("PLATE-1"))
    assert coat_url == plate_url and coat_url.startswith("opc.tcp://127.0.0.1:")
    assert port_of(moved.tool("COAT-1")) != port_of(mold)
    assert moved.tool("PLATE-1").endpoint == original.tool("PLATE-1").endpoint.model_copy(
        update={"url": plate_url}
    ), "the object name is kept"
    assert moved.tool("DICE-REAL") == original.tool("DICE-REAL"), "a real tool keeps its address"


def test_a_configuration_written_as_toml_reads_back_equal(tmp_path: Path) -> None:
    moved = with_free_ports(load_line_config(EXAMPLE))
    written = write_line_config(moved, tmp_path / "line.toml")
    assert load_line_config(written) == moved
    assert line_config_toml(moved) == written.read_text(encoding="utf-8")
    strange = LineConfig.model_validate(
        {"name": "x", "database": 'sqlite:///a "quoted"\\path\x7f\n', "tools": []}
    )
    # paths left unset are given their defaults next to the file when it is read
    back = load_line_config(write_line_config(strange, tmp_path / "s.toml"))
    assert back == strange.resolved(tmp_path.resolve())


# -- the example configuration ------------------------------------------------------------


@pytest.fixture(scope="module")
def example() -> LineConfig:
    return load_line_config(EXAMPLE)


def test_the_example_configuration_has_a_tool_of_every_equipment_class(
    example: LineConfig,
) -> None:
    assert {t.equipment_class for t in example.tools} == set(EquipmentClass)


def test_the_example_configuration_runs_every_step_a_tool_runs_in_the_packaged_flows(
    example: LineConfig,
) -> None:
    library = load_library()
    needed = {
        code
        for flow in library.flows.values()
        for code in flow.steps
        if library.step_codes[code].equipment_class != "manual"
    }
    runs: set[str] = set()
    for tool in example.tools:
        of_class = {
            code
            for code, info in library.step_codes.items()
            if info.equipment_class == tool.equipment_class.value
        }
        steps = set(tool.steps) if tool.steps is not None else of_class
        assert steps <= of_class, f"{tool.id} lists steps of another class: {steps - of_class}"
        runs |= steps
    assert needed - runs == set(), "steps no tool of the example line runs"


def test_the_example_configuration_is_a_simulated_line_on_both_transports(
    example: LineConfig,
) -> None:
    assert all(t.simulation is not None for t in example.tools)
    transports = {t.endpoint.transport for t in example.tools}
    assert transports == {"modbus", "opcua"}
    urls = [url_of(t) for t in example.tools if t.endpoint.transport == "opcua"]
    assert max(urls.count(u) for u in urls) >= 2, "a gateway with several tools"
    for tool in example.tools:
        endpoint = tool.endpoint
        address = endpoint.host if isinstance(endpoint, ModbusEndpoint) else endpoint.url
        assert "127.0.0.1" in address, f"{tool.id} is not on the loopback address"
        assert port_of(tool) >= 1024, f"{tool.id} needs a fixed port a user may take"
    assert example.controller.auto_manual_steps


async def test_the_example_line_starts_and_every_tool_answers_over_secure_links(
    example: LineConfig, tmp_path: Path
) -> None:
    config = secure_demo_line(with_free_ports(example), tmp_path / "pki")
    assert all(
        t.endpoint.security.policy == "Basic256Sha256"
        and t.endpoint.security.mode == "SignAndEncrypt"
        for t in config.tools
        if isinstance(t.endpoint, OpcUaEndpoint)
    )
    async with SimulatedLine(config) as line:
        assert len(line.secure_endpoints()) == 2
        assert len(line.endpoints()) == len(example.tools)
        tls_tools = [
            t.id
            for t in config.tools
            if isinstance(t.endpoint, ModbusEndpoint) and t.endpoint.tls is not None
        ]
        assert tls_tools
        for tool_id in tls_tools:  # each checks its clients against the simulators' CRLs
            server = line.server(tool_id)
            assert isinstance(server, ModbusToolServer)
            assert server.tls is not None
            assert server.pki is not None and server.pki.root == tmp_path / "pki" / "simulators"
        factory, drivers = await open_drivers(config)
        try:
            for driver in drivers:
                assert (await driver.identify()).equipment_class is driver.equipment_class
        finally:
            await close_drivers(factory, drivers)
