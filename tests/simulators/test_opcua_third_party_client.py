"""A client that is not ours (asyncua's command-line tools, installed with asyncua) reads and
commands a secure simulated tool with the settings docs/equipment.md gives, and is refused
without them: no security, no user, or a user that does not operate the tool."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from drivers import certificates as C
from drivers import pki as P
from drivers.model import EquipmentClass, Mode
from simulators.engine import SimulationSettings, VirtualTool
from simulators.opcua_security import SimulatorSecurity
from simulators.opcua_server import OpcUaToolServer
from tests.pki_material import Keys, app_certificate

ASYNCUA_CLIENT_URI = "urn:example.org:FreeOpcUa:opcua-asyncio"
"""The application URI asyncua's tools announce: their certificate must name it."""

BIN = Path(sys.executable).parent


async def tool_command(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


@pytest.fixture
async def served(tmp_path: Path, rsa_keys: Keys) -> tuple[OpcUaToolServer, VirtualTool, Path]:
    """A secure simulator trusting a client certificate for asyncua's tools."""
    sim = P.Pki(tmp_path / "sim")
    C.write_own(
        sim, app_certificate(rsa_keys.simulator, "urn:pkgline:simulator:test"), rsa_keys.simulator
    )
    client = app_certificate(rsa_keys.controller, ASYNCUA_CLIENT_URI, name="third-party")
    (tmp_path / "client.der").write_bytes(client.public_bytes(serialization.Encoding.DER))
    P.write_private(tmp_path / "client.pem", C.key_pem(rsa_keys.controller))
    sim.store(client, sim.trusted)
    tool = VirtualTool("DICER-1", EquipmentClass.DICER, SimulationSettings(time_scale=0.0))
    security = SimulatorSecurity(
        sim,
        passwords={
            "operator": ("op-Pa55", frozenset({"DICER-1"})),
            "visitor": ("vis-Pa55", frozenset()),
        },
    )
    return OpcUaToolServer([tool], security=security), tool, tmp_path


async def test_asyncua_tools_read_and_command_with_the_documented_settings_only(
    served: tuple[OpcUaToolServer, VirtualTool, Path],
) -> None:
    server, tool, files = served
    async with server:
        security = f"--security=Basic256Sha256,SignAndEncrypt,{files / 'client.der'},{files / 'client.pem'}"
        state = ["-u", server.url, "-n", "ns=2;s=DICER-1/State"]

        code, out = await tool_command(
            str(BIN / "uaread"), *state, security, "--user", "operator", "--password", "op-Pa55"
        )
        assert code == 0 and out.strip().splitlines()[-1] == "0", out  # IDLE

        code, out = await tool_command(str(BIN / "uaread"), *state)
        assert code != 0 and "No matching endpoints" in out, "no unsecured endpoint"

        code, out = await tool_command(str(BIN / "uaread"), *state, security)
        assert code != 0 and "BadIdentityTokenRejected" in out, "no anonymous user"

        set_mode = ["-u", server.url, "-n", "ns=2;s=DICER-1", "-m", "2:SetMode"]
        code, out = await tool_command(
            str(BIN / "uacall"), *set_mode, "-t", "int32", "2",
            security, "--user", "visitor", "--password", "vis-Pa55",
        )  # fmt: skip
        assert code != 0 and "BadUserAccessDenied" in out, out
        assert tool.status.mode is Mode.PRODUCTION

        code, out = await tool_command(
            str(BIN / "uacall"), *set_mode, "-t", "int32", "2",
            security, "--user", "operator", "--password", "op-Pa55",
        )  # fmt: skip
        assert code == 0, out
        assert tool.status.mode is Mode.ENGINEERING
