"""``pkgline sim`` in a subprocess, as an operator or a service manager runs it: it prints
every tool's endpoint, the tools answer our drivers while it runs, SIGTERM and SIGINT stop it
cleanly (exit 0, nothing left listening), and a configuration it cannot use is exit 2 with the
file named (a taken port, exit 1)."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drivers.config import ModbusEndpoint
from drivers.factory import DriverFactory
from drivers.model import ProcessState
from pkgline.config import LineConfig, LineTool
from simulators.line import with_free_ports, write_line_config

READY = "Ctrl-C or SIGTERM stops it"

PLAIN = {"policy": "None", "mode": "None"}
"""Plain OPC UA: these tests are not about security (tests/drivers/opcua/test_security.py)."""


def line_config() -> LineConfig:
    """A Modbus dicer and two OPC UA tools behind one URL, on free loopback ports."""
    sim = {"time_scale": 0.0}
    return with_free_ports(
        LineConfig.model_validate(
            {
                "name": "cli-line",
                "tools": [
                    {
                        "id": "DICE-1",
                        "equipment_class": "dicer",
                        "endpoint": {"transport": "modbus", "port": 1502},
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
                        "simulation": sim,
                    },
                    {
                        "id": "LITHO-1",
                        "equipment_class": "litho",
                        "endpoint": {
                            "transport": "opcua",
                            "url": "opc.tcp://127.0.0.1:1484",
                            "security": PLAIN,
                        },
                        "simulation": sim,
                    },
                ],
            }
        )
    )


def port_of(tool: LineTool) -> int:
    endpoint = tool.endpoint
    if isinstance(endpoint, ModbusEndpoint):
        return endpoint.port
    return int(endpoint.url.rsplit(":", 1)[1])


def listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def pkgline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pkgline", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class Sim:
    """A running ``pkgline sim``; :meth:`wait_for` reads its output up to a line."""

    def __init__(self, config: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pkgline", "sim", "--config", str(config), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # no COLUMNS: the endpoints print whole into a pipe (GNU readline, once loaded
            # in the test process, or xdist puts COLUMNS=80 in the environment)
            env={k: v for k, v in os.environ.items() if k != "COLUMNS"},
        )
        self.output = ""

    def wait_for(self, text: str, *, within: float = 30.0) -> str:
        stdout = self.process.stdout
        assert stdout is not None
        deadline = time.monotonic() + within
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            while text not in self.output:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    raise AssertionError(f"no {text!r} within {within} s:\n{self.output}")
                chunk = os.read(stdout.fileno(), 65536)
                if not chunk:
                    stderr = self.process.stderr.read() if self.process.stderr else b""
                    raise AssertionError(f"exited before {text!r}:\n{self.output}{stderr!r}")
                self.output += chunk.decode()
        return self.output

    def stop(self, signum: int) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout=10)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def config_file(tmp_path: Path) -> tuple[LineConfig, Path]:
    config = line_config()
    return config, write_line_config(config, tmp_path / "line.toml")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_the_line_runs_until_a_signal_and_stops_cleanly(
    config_file: tuple[LineConfig, Path], signum: int
) -> None:
    config, path = config_file
    sim = Sim(path)
    try:
        printed = sim.wait_for(READY)
        for tool in config.tools:
            assert tool.id in printed and f"127.0.0.1:{port_of(tool)}" in printed
        factory = DriverFactory()
        drivers = [factory.create(tool) for tool in config.tools]
        try:
            for driver in drivers:
                await driver.start()
                assert (await driver.status()).state is ProcessState.IDLE
        finally:
            for driver in drivers:
                await driver.close()
            await factory.aclose()
        assert sim.stop(signum) == 0
        assert sim.process.stderr is not None
        assert sim.process.stderr.read() == b""
        assert not any(listening(port_of(tool)) for tool in config.tools)
    finally:
        sim.kill()


def test_overrides_are_shown_with_the_endpoints(config_file: tuple[LineConfig, Path]) -> None:
    _, path = config_file
    sim = Sim(path, "--time-scale", "0.25", "--reject-rate", "0.5")
    try:
        printed = sim.wait_for(READY)
        assert "0.25" in printed and "Tools/COAT-1" in printed
        assert sim.stop(signal.SIGTERM) == 0
    finally:
        sim.kill()


def test_a_missing_or_invalid_configuration_is_exit_2_naming_the_file(tmp_path: Path) -> None:
    missing = pkgline("sim", "--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2
    assert f"{tmp_path / 'nope.toml'}: no such file" in missing.stderr

    bad = tmp_path / "bad.toml"
    bad.write_text(
        'name = "x"\n[[tools]]\nid = "T-1"\nequipment_class = "toaster"\n'
        '[tools.endpoint]\ntransport = "modbus"\n',
        encoding="utf-8",
    )
    invalid = pkgline("sim", "--config", str(bad))
    assert invalid.returncode == 2
    assert str(bad) in invalid.stderr and "equipment_class" in invalid.stderr

    binary = tmp_path / "binary.toml"
    binary.write_bytes(b'name = "\xff\xfe"\n')
    for command in ("sim", "serve"):  # no traceback for a file that is no text
        garbage = pkgline(command, "--config", str(binary))
        assert garbage.returncode == 2, garbage.stderr
        assert f"{binary}: not UTF-8 text (byte 8): expected a TOML file" in garbage.stderr

    nothing = tmp_path / "real.toml"
    nothing.write_text(bad.read_text().replace("toaster", "dicer"), encoding="utf-8")
    for command in (  # a database no driver takes: exit 2 before anything starts
        ("serve", "--config", str(nothing), "--db", "mysql://db.example/line"),
        ("api", "--db", "mysql://db.example/line"),
    ):
        unsupported = pkgline(*command)
        assert unsupported.returncode == 2, unsupported.stderr
        assert "unsupported database 'mysql'" in unsupported.stderr, unsupported.stderr
        assert "Traceback" not in unsupported.stderr
    url = pkgline("demo", "--db", "sqlite:///demo.db")  # the demo takes a file's path
    assert url.returncode == 2 and "not a database URL" in url.stderr, url.stderr
    unsimulated = pkgline("sim", "--config", str(nothing))
    assert unsimulated.returncode == 2
    assert str(nothing) in unsimulated.stderr and "[tools.simulation]" in unsimulated.stderr


def test_a_misspelt_setting_is_named_with_the_settings_expected_and_the_nearest(
    tmp_path: Path,
) -> None:
    """Found by the engineer's walk-through: a line.toml with ``dispatch_intervall_s`` under
    [controller] was refused with pydantic's "Extra inputs are not permitted", which says
    neither which setting was meant nor which there are. No value is quoted back: a setting
    of line.toml may be a secret."""
    bad = tmp_path / "line.toml"
    bad.write_text(
        'name = "x"\n[controller]\ndispatch_intervall_s = 2.0\n[[tools]]\nid = "T-1"\n'
        'equipment_class = "dicer"\n[tools.endpoint]\ntransport = "modbus"\n',
        encoding="utf-8",
    )
    for command in ("sim", "serve"):
        refused = pkgline(command, "--config", str(bad))
        assert refused.returncode == 2, refused.stderr
        assert (
            "controller.dispatch_intervall_s: unknown field 'dispatch_intervall_s' (did you mean "
            "dispatch_interval_s?); expected one of user, dispatch, dispatch_interval_s, "
        ) in " ".join(refused.stderr.split()), refused.stderr


def test_a_reject_rate_out_of_range_is_exit_2(config_file: tuple[LineConfig, Path]) -> None:
    _, path = config_file
    assert pkgline("sim", "--config", str(path), "--reject-rate", "1.5").returncode == 2


def test_a_taken_port_is_exit_1_naming_the_tool(config_file: tuple[LineConfig, Path]) -> None:
    config, path = config_file
    port = port_of(config.tool("DICE-1"))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        taken = pkgline("sim", "--config", str(path))
    assert taken.returncode == 1
    assert f"DICE-1 on 127.0.0.1:{port}" in taken.stderr
