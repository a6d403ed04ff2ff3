"""The simulators' certificate names the hosts their tools answer at (a controller checks
that a tool's certificate names the host it connects to): made so on the first start, and an
older one that does not is refused with how to make one that does."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from drivers import certificates as C
from drivers.host_names import certificate_hosts
from drivers.pki import Pki, PkiError
from pkgline.config import LineConfig
from simulators.certificate import simulator_pki
from simulators.line import served_hosts

SIM = {"time_scale": 0.0, "seed": 5}


def test_the_first_certificate_names_this_machine_and_the_hosts_served(tmp_path: Path) -> None:
    pki = simulator_pki(tmp_path / "sim", ["tool-3.cell-b.example", "10.1.2.3", "0.0.0.0", "::"])
    named = certificate_hosts(pki.own()[0])
    assert {"localhost", "tool-3.cell-b.example"} <= set(named.dns_names)
    addresses = set(named.ip_addresses)
    assert {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("10.1.2.3")} <= addresses
    assert not any(a.is_unspecified for a in addresses), "every interface is no host"


def test_a_certificate_that_does_not_name_a_host_served_is_refused(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "sim")
    C.init_own(pki, common_name="old simulator", application_uri="urn:x", hosts=["localhost"])
    old = pki.own()[0]
    assert simulator_pki(pki.root, ["localhost", "LOCALHOST"]).own()[0] == old
    with pytest.raises(PkiError) as refused:
        simulator_pki(pki.root, ["localhost", "127.0.0.1", "tool-3.example"])
    message = str(refused.value)
    assert "names DNS localhost, not 127.0.0.1, tool-3.example" in message
    assert "BadCertificateHostNameInvalid" in message
    assert "pkgline pki init --simulators --force" in message
    assert "--host 127.0.0.1 --host tool-3.example" in message
    assert pki.own()[0] == old, "the certificate the controllers trust is left alone"


def tool(tool_id: str, endpoint: dict[str, Any], *, simulated: bool = True) -> dict[str, Any]:
    return {
        "id": tool_id,
        "equipment_class": "coater",
        "endpoint": endpoint,
        **({"simulation": SIM} if simulated else {}),
    }


def test_the_hosts_served_are_those_of_simulated_tools_whose_host_is_checked() -> None:
    opcua, plain = "opcua", {"policy": "None", "mode": "None"}
    config = LineConfig.model_validate(
        {
            "name": "hosts",
            "tools": [
                tool("A", {"transport": opcua, "url": "opc.tcp://Gateway-1.example:4840"}),
                tool("B", {"transport": opcua, "url": "opc.tcp://gateway-1.example:4840"}),
                tool("C", {"transport": opcua, "url": "opc.tcp://[fd00::7]:4841"}),
                tool(
                    "D", {"transport": opcua, "url": "opc.tcp://10.0.0.8:4840", "security": plain}
                ),
                tool(
                    "E",
                    {
                        "transport": opcua,
                        "url": "opc.tcp://10.0.0.9:4840",
                        "security": {"check_host_name": False},
                    },
                ),
                tool("F", {"transport": opcua, "url": "opc.tcp://real-tool:4840"}, simulated=False),
                tool("G", {"transport": "modbus", "host": "10.0.0.10", "port": 802, "tls": {}}),
                tool("H", {"transport": "modbus", "host": "10.0.0.11", "port": 502}),
            ],
        }
    )
    assert served_hosts(config) == ["gateway-1.example", "fd00::7", "10.0.0.10"]
