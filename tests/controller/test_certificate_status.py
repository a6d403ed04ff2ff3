"""A certificate of the secure links that expires within 30 days shows in the controller's
systemd STATUS (its heartbeat) and in `pkgline line status`, on a line that runs secure."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from drivers.certificates import init_own
from drivers.config import ModbusEndpoint, ModbusTls, OpcUaEndpoint, OpcUaSecurity
from drivers.pki import Pki
from pkgline.config import LineConfig
from pkgline.security import controller_uri, expiry_notes, secure_demo_line
from tests.controller.conftest import Stack, line_config, simulated
from tests.controller.test_daemon import _spawn, _stop

pytestmark = pytest.mark.slow


def secure_line(tmp_path: Path, *, days: int) -> tuple[LineConfig, Pki]:
    config = line_config(tools=["COAT-1"])
    tools = tuple(
        t.model_copy(
            update={"endpoint": t.endpoint.model_copy(update={"security": OpcUaSecurity()})}
        )
        if isinstance(t.endpoint, OpcUaEndpoint)
        else t
        for t in config.tools
    )
    config = secure_demo_line(config.model_copy(update={"tools": tools}), tmp_path / "pki")
    assert config.security.pki is not None and config.security.simulator_pki is not None
    controller, simulators = Pki(config.security.pki), Pki(config.security.simulator_pki)
    short = init_own(
        controller, common_name="pkgline controller", application_uri=controller_uri(), days=days
    )
    simulators.store(short, simulators.trusted)
    return config, controller


def test_expiry_notes_name_the_certificates_that_expire_within_30_days(tmp_path: Path) -> None:
    config, _ = secure_line(tmp_path, days=10)
    notes = expiry_notes(config)
    assert len(notes) == 1 and notes[0].startswith(
        "certificate expiring: own certificate CN=pkgline controller"
    )
    config, _ = secure_line(tmp_path / "later", days=90)
    assert expiry_notes(config) == []


def test_a_line_of_modbus_tcp_security_tools_only_is_told_of_expiring_certificates(
    tmp_path: Path,
) -> None:
    """The controller's certificate serves Modbus/TCP Security as well: a line without a
    secure OPC UA endpoint is told too, as is a Modbus tool's own PKI."""
    config = line_config(tools=["MOLD-1"])
    tools = tuple(
        t.model_copy(update={"endpoint": t.endpoint.model_copy(update={"tls": ModbusTls()})})
        for t in config.tools
    )
    config = secure_demo_line(config.model_copy(update={"tools": tools}), tmp_path / "pki")
    assert config.security.pki is not None
    init_own(
        Pki(config.security.pki),
        common_name="pkgline controller",
        application_uri=controller_uri(),
        days=10,
    )
    notes = expiry_notes(config)
    assert len(notes) == 1 and notes[0].startswith(
        "certificate expiring: own certificate CN=pkgline controller"
    )
    own = Pki(tmp_path / "tool-pki")
    init_own(own, common_name="mold tls", application_uri=controller_uri(), days=5)
    endpoint = config.tools[0].endpoint
    assert isinstance(endpoint, ModbusEndpoint)
    tool = config.tools[0].model_copy(
        update={"endpoint": endpoint.model_copy(update={"tls": ModbusTls(pki=own.root)})}
    )
    notes = expiry_notes(config.model_copy(update={"tools": (tool,)}))
    assert any("CN=mold tls" in note for note in notes), notes


async def test_an_expiring_certificate_shows_in_status_and_in_line_status(
    stack: Stack, tmp_path: Path
) -> None:
    config, _ = secure_line(tmp_path, days=10)
    address = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        async with simulated(config):
            proc = _spawn(config, tmp_path, stack.url, NOTIFY_SOCKET=address)
            try:
                statuses: list[str] = []
                while not any("certificate expiring" in s for s in statuses):
                    data = await asyncio.wait_for(loop.sock_recv(listener, 4096), 60)
                    statuses += [
                        line for line in data.decode().splitlines() if line.startswith("STATUS=")
                    ]
                status = next(s for s in statuses if "certificate expiring" in s)
                assert "1/1 tools answering" in status, "the tool answers over the secure link"
                assert "own certificate CN=pkgline controller" in status
                shown = await asyncio.to_thread(
                    subprocess.run,
                    [
                        sys.executable,
                        "-m",
                        "pkgline",
                        "line",
                        "status",
                        "--json",
                        "--db",
                        stack.url,
                    ],
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert "certificate expiring: own certificate" in shown.stdout, shown.stderr
            finally:
                await _stop(proc)
    finally:
        listener.close()
