"""``pkgline demo`` chooses free loopback ports for its children (the simulated tools, the
operator station) and they bind them later; another process can take one in between (seen
in a full test run, where many tests bind ports). The demo then chooses new ports and starts
the child again, saying so, and the line's configuration names the ports really listened on.

Each test holds a port bound and listening and makes the demo's choice of ports give it
first: the old demo failed with "address already in use"."""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import simulators.line
from drivers.config import ModbusEndpoint
from pkgline.cli import demo, demo_api, demo_run
from pkgline.cli.demo_run import PORT_ATTEMPTS, Child, Demo
from pkgline.config import LineConfig, load_line_config
from simulators.ports import LOOPBACK, free_loopback_ports

# Under xdist, with the other demo tests: it starts real `pkgline sim` and `pkgline api`.
pytestmark = pytest.mark.xdist_group("plant-broker")


@contextlib.contextmanager
def port_held() -> Iterator[int]:
    """A port of 127.0.0.1 another process has taken: bound and listening until the end."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def a_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Demo:
    monkeypatch.setattr(demo, "_event_feed", lambda line, run_id: None)  # no broker needed
    # the children print their table of endpoints whole: pytest-xdist's workers have
    # COLUMNS=80, at which a port folds onto the next line of its cell
    monkeypatch.setenv("COLUMNS", "300")
    started = time.monotonic()
    database = tmp_path / "demo.db"
    return Demo(
        database=database,
        url=f"sqlite:///{database}",
        config_path=database,
        config=demo._example_config(),
        time_scale=0.05,
        reject_rate=None,
        keep=False,
        started=started,
        deadline=started + 60,
    )


def simulated_ports(config: LineConfig) -> set[int]:
    ports: set[int] = set()
    for tool in config.tools:
        endpoint = tool.endpoint
        if isinstance(endpoint, ModbusEndpoint):
            ports.add(endpoint.port)
        else:
            ports.add(simulators.line._opcua_address(endpoint.url)[1])
    return ports


def listened_on(sim: Child) -> set[int]:
    """The ports the simulators say they listen on (their table of endpoints)."""
    return {int(p) for p in re.findall(r"(?:opc\.tcp://)?127\.0\.0\.1:(\d+)", sim.output())}


@pytest.mark.parametrize("which", [0, -1], ids=["opc-ua-gateway", "modbus-tool"])
async def test_the_simulators_start_on_new_ports_when_one_the_demo_chose_is_taken(
    which: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``which``: the port taken, of those chosen (with_free_ports gives the OPC UA
    gateways theirs first, then the Modbus tools)."""
    picks: list[list[int]] = []
    with port_held() as taken:

        def first_one_taken(count: int) -> list[int]:
            ports = free_loopback_ports(count)
            if not picks:  # the demo's first choice: another process took one of its ports
                ports[which] = taken
            picks.append(ports)
            return ports

        monkeypatch.setattr(simulators.line, "free_loopback_ports", first_one_taken)
        run = a_demo(tmp_path, monkeypatch)
        try:
            demo._write_config(run)
            assert taken in simulated_ports(load_line_config(run.config_path))
            sim = await demo_run.start_simulators(run)

            assert sim.running()
            assert run.children == [sim]  # the one that could not listen has ended
            config = load_line_config(run.config_path)
            assert config == run.config
            ports = simulated_ports(config)
            assert taken not in ports
            assert ports == listened_on(sim)
            for port in ports:  # something listens there: the simulators, not the holder
                socket.create_connection((LOOPBACK, port), timeout=5).close()
        finally:
            for child in run.children:
                child.kill()
    said = capsys.readouterr().out
    assert f"the simulators could not listen: another process took 127.0.0.1:{taken}" in said
    assert f"new ports, attempt 2 of {PORT_ATTEMPTS}" in said
    assert len(picks) == 2


async def test_the_server_starts_on_a_new_station_port_when_the_one_chosen_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    picks: list[int] = []
    with port_held() as taken:

        def first_one_taken() -> int:
            port = taken if not picks else free_loopback_ports(1)[0]
            picks.append(port)
            return port

        monkeypatch.setattr(demo_api, "free_loopback_port", first_one_taken)
        run = a_demo(tmp_path, monkeypatch)
        try:
            await demo._fresh_database(run)
            demo._write_config(run)
            await demo_run.start_api(run)

            assert picks[0] == taken
            assert run.station_port == picks[-1] != taken
            assert len(run.children) == 1 and run.children[0].running()
            station = http.client.HTTPConnection(LOOPBACK, run.station_port, timeout=5)
            try:
                station.request("GET", "/health")
                assert station.getresponse().status == 200
            finally:
                station.close()
        finally:
            for child in run.children:
                child.kill()
    said = capsys.readouterr().out
    assert f"the pkgline server could not listen: another process took 127.0.0.1:{taken}" in said
