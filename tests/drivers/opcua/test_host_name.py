"""The controller checks that the tool's (server's) certificate names the host of the endpoint
URL (OPC UA Part 4, BadCertificateHostNameInvalid), against a real secure simulator on
127.0.0.1: a certificate the line trusts, made for another host, is refused with what it
names and how to fix it, and never trusted on first use; the right host, by DNS name or by IP
address as the URL writes it, is accepted; ``check_host_name = false`` accepts it and says so
once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from drivers import certificates as C
from drivers import pki as P
from drivers.config import OpcUaSecurity
from drivers.errors import ToolUnreachable
from drivers.model import EquipmentClass, Mode
from drivers.opcua import OpcUaDriver
from simulators.engine import SimulationSettings, VirtualTool
from simulators.opcua_security import SimulatorSecurity
from simulators.opcua_server import OpcUaToolServer
from tests.drivers.common import eventually
from tests.drivers.opcua.conftest import DriverMaker
from tests.pki_material import SIMULATOR_URI, Keys, Pair, cross_trusted, write_credentials

DICER = EquipmentClass.DICER
PASSWORD = "s3cret-Pa55"
ANOTHER_TOOL = ["tool-b.cell-2.example", "10.9.8.7"]


@pytest.fixture
def pair(tmp_path: Path, rsa_keys: Keys) -> Pair:
    return cross_trusted(tmp_path / "pki", rsa_keys)


@pytest.fixture
def credentials(tmp_path: Path) -> Path:
    return write_credentials(tmp_path / "operator.toml", "operator", PASSWORD)


def tool_certificate(
    keys: Keys,
    hosts: Sequence[str],
    *,
    issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None,
) -> x509.Certificate:
    return C.make_certificate(
        keys.simulator,
        common_name="tool-b",
        application_uri=SIMULATOR_URI,
        hosts=hosts,
        issuer=issuer,
    )


@pytest.fixture
async def serving(pair: Pair, rsa_keys: Keys) -> AsyncIterator[OpcUaToolServer]:
    """A secure simulator on 127.0.0.1; its certificate is installed by each test first."""
    tool = VirtualTool("DICER-1", DICER, SimulationSettings(time_scale=0.0, seed=3))
    security = SimulatorSecurity(
        pair.simulator, passwords={"operator": (PASSWORD, frozenset({"DICER-1"}))}
    )
    server = OpcUaToolServer([tool], security=security)
    yield server
    await server.close()


async def serve(server: OpcUaToolServer, pair: Pair, keys: Keys, cert: x509.Certificate) -> None:
    C.write_own(pair.simulator, cert, keys.simulator)
    await server.start()


def security(pair: Pair, credentials: Path, **kw: object) -> OpcUaSecurity:
    return OpcUaSecurity(pki=pair.controller.root, credentials=credentials, **kw)


async def refusal(driver: OpcUaDriver) -> str:
    assert not driver.connected
    with pytest.raises(ToolUnreachable) as caught:
        await driver.status()
    return str(caught.value)


def with_host(url: str, host: str) -> str:
    return url.replace("127.0.0.1", host, 1)


async def test_a_trusted_certificate_for_another_host_is_refused_with_the_reason(
    pair: Pair,
    rsa_keys: Keys,
    credentials: Path,
    serving: OpcUaToolServer,
    make_driver: DriverMaker,
) -> None:
    """Tool B's certificate, issued by the plant's CA the line trusts, presented by the
    machine answering at 127.0.0.1: the controller refuses it, and keeps nothing of it."""
    ca = C.make_ca(rsa_keys.ca, common_name="plant CA")
    for path in pair.controller.trusted.iterdir():
        path.unlink()
    pair.controller.store(ca, pair.controller.trusted)
    await serve(
        serving, pair, rsa_keys, tool_certificate(rsa_keys, ANOTHER_TOOL, issuer=(ca, rsa_keys.ca))
    )
    driver = await make_driver(DICER, serving.url, security=security(pair, credentials))
    message = await refusal(driver)
    assert "BadCertificateHostNameInvalid" in message and "not trusted" not in message
    assert "certificate CN=tool-b" in message
    assert "names DNS tool-b.cell-2.example, IP 10.9.8.7 in its subjectAltName" in message
    assert "not the host 127.0.0.1 of the endpoint URL" in message
    assert "Have the tool's certificate issued for 127.0.0.1" in message
    assert not pair.controller.rejected.is_dir() or not list(pair.controller.rejected.iterdir())


async def test_trust_on_first_use_refuses_a_certificate_for_another_host_and_pins_nothing(
    pair: Pair,
    rsa_keys: Keys,
    credentials: Path,
    serving: OpcUaToolServer,
    make_driver: DriverMaker,
) -> None:
    """The first certificate seen at an endpoint is trusted on first use only if it names the
    endpoint's host: a wrong one is neither trusted nor pinned, and the tool's real
    certificate is still trusted at its first use."""
    for path in pair.controller.trusted.iterdir():
        path.unlink()
    await serve(serving, pair, rsa_keys, tool_certificate(rsa_keys, ANOTHER_TOOL))
    sec = security(pair, credentials, trust_on_first_use=True)
    driver = await make_driver(DICER, serving.url, security=sec)
    assert "BadCertificateHostNameInvalid" in await refusal(driver)
    assert pair.controller.trusted_certificates() == []
    assert pair.controller.first_use(serving.url) is None
    assert not pair.controller.rejected.is_dir() or not list(pair.controller.rejected.iterdir())
    await driver.close()
    await serving.stop()
    right = tool_certificate(rsa_keys, ["127.0.0.1"])
    await serve(serving, pair, rsa_keys, right)
    again = await make_driver(DICER, serving.url, security=sec)
    assert again.connected
    assert pair.controller.first_use(serving.url) == P.thumbprint(right)


@pytest.mark.parametrize(
    ("named", "url_host", "accepted"),
    [
        ("localhost", "localhost", True),
        ("127.0.0.1", "127.0.0.1", True),
        ("LocalHost", "localhost", True),
        ("localhost", "127.0.0.1", False),  # the URL's host as written: no name resolution
        ("127.0.0.1", "localhost", False),
    ],
)
async def test_the_host_the_url_names_is_accepted_by_dns_name_or_ip_address(
    named: str,
    url_host: str,
    accepted: bool,
    pair: Pair,
    rsa_keys: Keys,
    credentials: Path,
    serving: OpcUaToolServer,
    make_driver: DriverMaker,
) -> None:
    cert = tool_certificate(rsa_keys, [named])
    pair.controller.store(cert, pair.controller.trusted)
    await serve(serving, pair, rsa_keys, cert)
    url = with_host(serving.url, url_host)
    driver = await make_driver(DICER, url, security=security(pair, credentials))
    if accepted:
        assert driver.connected
        await driver.set_mode(Mode.ENGINEERING)
        return
    message = await refusal(driver)
    assert "BadCertificateHostNameInvalid" in message
    assert f"not the host {url_host} of the endpoint URL" in message


async def test_check_host_name_false_accepts_another_host_and_warns_once(
    pair: Pair,
    rsa_keys: Keys,
    credentials: Path,
    serving: OpcUaToolServer,
    make_driver: DriverMaker,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cert = tool_certificate(rsa_keys, ANOTHER_TOOL)
    pair.controller.store(cert, pair.controller.trusted)
    await serve(serving, pair, rsa_keys, cert)
    driver = await make_driver(
        DICER, serving.url, security=security(pair, credentials, check_host_name=False)
    )
    assert driver.connected
    await driver.set_mode(Mode.ENGINEERING)
    session = driver.session
    assert session is not None
    await serving.stop()  # the tool goes away and comes back: a second connection
    await serving.start()

    async def reconnected() -> bool:
        return session.connections_made == 2 and driver.connected

    await eventually(reconnected, within=5.0)
    said = [
        line for line in capsys.readouterr().out.splitlines() if "host name not checked" in line
    ]
    assert len(said) == 1, said  # once, however many connections
    assert "warning" in said[0] and serving.url in said[0]
