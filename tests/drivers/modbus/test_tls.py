"""Modbus/TCP Security between the driver and the simulator: TLS 1.2 or later with both sides'
certificates checked. A controller certificate from another CA, a tool certificate the
controller does not trust, and a plain client are refused; the refusal names TLS. A revoked
certificate is refused by either side at the next connection, with the reason (the driver's
error, the simulator's log line)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pymodbus.client import AsyncModbusTcpClient
from structlog.testing import capture_logs

from drivers import certificates as C
from drivers import pki as P
from drivers import tls as T
from drivers.config import ModbusTls
from drivers.errors import ToolUnreachable
from drivers.interface import ConnectionLost, ConnectionRestored
from drivers.modbus.driver import ModbusDriver
from drivers.modbus.session import HANDSHAKES_AT_ONCE, ModbusSession, _handshake_slot
from drivers.model import EquipmentClass, Mode
from simulators.engine import SimulationSettings, VirtualTool
from simulators.modbus_server import ModbusToolServer
from tests.drivers.common import event_stream, eventually, next_event
from tests.drivers.modbus.conftest import tool_config
from tests.pki_material import (
    CONTROLLER_URI,
    SIMULATOR_URI,
    Keys,
    Pair,
    app_certificate,
    cross_trusted,
)

MOLDER = EquipmentClass.MOLDER


@pytest.fixture
def pair(tmp_path: Path, rsa_keys: Keys) -> Pair:
    return cross_trusted(tmp_path / "pki", rsa_keys)


@pytest.fixture
async def tool() -> AsyncIterator[VirtualTool]:
    tool = VirtualTool("MOLD-1", MOLDER, SimulationSettings(time_scale=0, seed=3))
    yield tool
    await tool.close()


@pytest.fixture
async def tls_server(pair: Pair, tool: VirtualTool) -> AsyncIterator[ModbusToolServer]:
    context = T.tls_server_context(pair.simulator)
    async with ModbusToolServer(tool, host="127.0.0.1", port=0, tls=context) as server:
        yield server


async def started(driver: ModbusDriver) -> ModbusDriver:
    await driver.start()
    return driver


def tls_driver(server: ModbusToolServer, pki: P.Pki) -> ModbusDriver:
    return ModbusDriver(
        tool_config(MOLDER, server.port, tool_id="MOLD-1", tls=ModbusTls(pki=pki.root))
    )


async def test_mutual_tls_reads_and_commands(
    pair: Pair, tls_server: ModbusToolServer, tool: VirtualTool
) -> None:
    driver = await started(tls_driver(tls_server, pair.controller))
    try:

        async def connected() -> bool:
            return driver.connected

        await eventually(connected)
        await driver.set_mode(Mode.ENGINEERING)
        assert (await driver.status()).mode is Mode.ENGINEERING
        assert tool.status.mode is Mode.ENGINEERING
    finally:
        await driver.close()


async def test_a_controller_certificate_from_another_ca_is_refused(
    pair: Pair, tls_server: ModbusToolServer, tool: VirtualTool, rsa_keys: Keys, tmp_path: Path
) -> None:
    other_ca = C.make_ca(rsa_keys.ca, common_name="another site's CA")
    stranger = P.Pki(tmp_path / "stranger")
    cert = app_certificate(
        rsa_keys.controller, "urn:pkgline:controller:test", issuer=(other_ca, rsa_keys.ca)
    )
    C.write_own(stranger, cert, rsa_keys.controller)
    stranger.store(pair.simulator_cert, stranger.trusted)  # it trusts the tool; not vice versa
    driver = await started(tls_driver(tls_server, stranger))
    try:
        with pytest.raises(ToolUnreachable) as caught:
            await driver.set_mode(Mode.ENGINEERING)
        # refused in the handshake, or (TLS 1.3) at the first request: either way it says TLS
        assert "Modbus/TCP Security" in str(caught.value)
        assert not driver.connected
        assert tool.status.mode is Mode.PRODUCTION
    finally:
        await driver.close()


async def test_a_tls_1_2_tool_refusing_the_controller_says_so(
    pair: Pair, tool: VirtualTool
) -> None:
    """Over TLS 1.2 a tool refuses the client's certificate within the handshake, often by
    hanging up: said as that, not as "connection refused or unreachable"."""
    for path in pair.simulator.trusted.iterdir():
        path.unlink()
    pair.simulator.store(pair.simulator_cert, pair.simulator.trusted)  # not the controller
    context = T.tls_server_context(pair.simulator)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    async with ModbusToolServer(tool, port=0, tls=context, pki=pair.simulator) as server:
        driver = await started(tls_driver(server, pair.controller))
        try:
            message = await refusal(driver, "does the tool trust the controller's certificate")
            assert f"Modbus/TCP Security: cannot connect to 127.0.0.1:{server.port}" in message
            assert "refused or unreachable" not in message
            assert tool.status.mode is Mode.PRODUCTION
        finally:
            await driver.close()


async def test_a_tool_certificate_the_controller_does_not_trust_is_refused(
    pair: Pair, tls_server: ModbusToolServer, tool: VirtualTool
) -> None:
    for path in pair.controller.trusted.iterdir():
        path.unlink()
    pair.controller.store(pair.controller_cert, pair.controller.trusted)  # something, not it
    driver = await started(tls_driver(tls_server, pair.controller))
    try:
        with pytest.raises(ToolUnreachable, match="Modbus/TCP Security"):
            await driver.status()
    finally:
        await driver.close()


def serve_as_tool(pair: Pair, cert: x509.Certificate, key: rsa.RSAPrivateKey) -> None:
    """The tool presents ``cert``; the controller trusts exactly that certificate (when the
    rule tested is not trust itself, the certificate passes it)."""
    C.write_own(pair.simulator, cert, key)
    for path in pair.controller.trusted.iterdir():
        path.unlink()
    pair.controller.store(cert, pair.controller.trusted)


async def refused_in_handshake(
    pair: Pair, tool: VirtualTool
) -> tuple[str, list[dict[str, object]]]:
    """Connect to a simulator serving ``pair.simulator``'s certificate: the driver's error and
    what it logged."""
    context = T.tls_server_context(pair.simulator)
    async with ModbusToolServer(tool, port=0, tls=context, pki=pair.simulator) as server:
        with capture_logs() as logs:
            driver = await started(tls_driver(server, pair.controller))
        try:
            with capture_logs() as later:
                message = await refusal(driver, "refused the tool")
                with pytest.raises(ToolUnreachable, match="refused the tool"):
                    await driver.set_mode(Mode.SETUP)
            logs += later  # logged once, however often it reconnects meanwhile
            assert f"refused the tool at 127.0.0.1:{server.port}" in message
            assert tool.status.mode is Mode.PRODUCTION
        finally:
            await driver.close()
    return message, [e for e in logs if e["event"] == "tool certificate refused"]


async def test_an_untrusted_tool_certificate_is_refused_saying_so(
    pair: Pair, tool: VirtualTool
) -> None:
    """pymodbus keeps the handshake's SSL error to itself (answers False): the driver keeps
    it, and says which certificate rule failed instead of "refused or unreachable"."""
    for path in pair.controller.trusted.iterdir():
        path.unlink()
    pair.controller.store(pair.controller_cert, pair.controller.trusted)  # something, not it
    message, refusals = await refused_in_handshake(pair, tool)
    assert "its certificate is not trusted" in message
    assert "`pkgline pki trust` it" in message
    assert "refused or unreachable" not in message
    assert len(refusals) == 1 and refusals[0]["reason"] == "BadCertificateUntrusted"
    assert refusals[0]["tool_id"] == "MOLD-1"


@pytest.mark.parametrize("when", ["expired", "not yet valid"])
async def test_a_tool_certificate_outside_its_validity_is_refused_saying_so(
    pair: Pair, tool: VirtualTool, rsa_keys: Keys, when: str
) -> None:
    now = dt.datetime.now(dt.UTC)
    start = now - dt.timedelta(days=3) if when == "expired" else now + dt.timedelta(days=3)
    cert = app_certificate(rsa_keys.simulator, SIMULATOR_URI, days=1, not_before=start)
    serve_as_tool(pair, cert, rsa_keys.simulator)
    message, refusals = await refused_in_handshake(pair, tool)
    assert (
        f"outside its validity period (certificate {'has ' if when == 'expired' else 'is '}"
        in message
    )
    assert when in message
    assert len(refusals) == 1 and refusals[0]["reason"] == "BadCertificateTimeInvalid"


async def test_a_trusted_certificate_for_another_host_is_refused_saying_so(
    pair: Pair, tool: VirtualTool, rsa_keys: Keys
) -> None:
    """A man in the middle with a certificate the line trusts, but made for another tool."""
    cert = C.make_certificate(
        rsa_keys.simulator,
        common_name="tool-9",
        application_uri=SIMULATOR_URI,
        hosts=["tool-9.example"],
    )
    serve_as_tool(pair, cert, rsa_keys.simulator)
    message, refusals = await refused_in_handshake(pair, tool)
    assert "does not name the host 127.0.0.1 in its subjectAltName" in message
    assert len(refusals) == 1 and refusals[0]["reason"] == "BadCertificateHostNameInvalid"


async def test_a_plain_modbus_client_gets_nothing_from_a_tls_tool(
    tls_server: ModbusToolServer, tool: VirtualTool
) -> None:
    client = AsyncModbusTcpClient(
        "127.0.0.1", port=tls_server.port, timeout=0.5, retries=0, reconnect_delay=0
    )
    try:
        if await client.connect():
            pdu_or_error: object
            try:
                pdu_or_error = await client.write_registers(0, [6, 1], device_id=1)
            except Exception as exc:  # pymodbus raises when the connection closes
                pdu_or_error = exc
            assert isinstance(pdu_or_error, Exception) or pdu_or_error.isError()  # type: ignore[attr-defined]
    finally:
        client.close()
    assert tool.status.mode is Mode.PRODUCTION


async def test_a_pki_without_the_controllers_certificate_is_said_by_every_request(
    tls_server: ModbusToolServer, tool: VirtualTool, tmp_path: Path
) -> None:
    """A configuration mistake (the tls table's pki names a directory without own/): the
    requests say what is missing and how to make it, not only "not connected" (the log said
    it once)."""
    empty = P.Pki(tmp_path / "no-such-pki")
    driver = await started(tls_driver(tls_server, empty))
    try:
        for _ in range(2):  # the first attempt's error, and again from the reconnections
            with pytest.raises(ToolUnreachable) as caught:
                await driver.set_mode(Mode.ENGINEERING)
            message = str(caught.value)
            assert f"{empty.root}: no application instance certificate" in message
            assert "`pkgline pki init`" in message
        assert tool.status.mode is Mode.PRODUCTION
    finally:
        await driver.close()


async def test_a_controller_key_others_can_read_is_refused(
    pair: Pair, tls_server: ModbusToolServer, tool: VirtualTool
) -> None:
    T.tls_client_context(pair.controller)  # made while the key was 0600: a chmod is seen too
    pair.controller.own_key.chmod(0o640)
    driver = await started(tls_driver(tls_server, pair.controller))
    try:
        with pytest.raises(ToolUnreachable) as caught:
            await driver.set_mode(Mode.ENGINEERING)
        assert "the private key is readable or writable by group or others (mode 0640)" in str(
            caught.value
        )
        assert tool.status.mode is Mode.PRODUCTION
    finally:
        await driver.close()


async def test_a_tls_tool_configured_as_plain_says_a_tls_table_may_be_missing(
    tls_server: ModbusToolServer, tool: VirtualTool
) -> None:
    """The endpoint has no tls table, the tool speaks Modbus/TCP Security: nothing is
    served, and the error says what may be missing (not only "not connected")."""
    driver = await started(ModbusDriver(tool_config(MOLDER, tls_server.port, tool_id="MOLD-1")))
    try:
        message = await refusal(driver, "`tls` table")
        assert "a tool that speaks Modbus/TCP Security closes a plain connection" in message
        assert tool.status.mode is Mode.PRODUCTION
    finally:
        await driver.close()


async def test_a_plain_tool_configured_for_tls_says_so(pair: Pair, tool: VirtualTool) -> None:
    """The endpoint has a tls table, the tool speaks plain Modbus/TCP: the handshake gets
    no answer; the error says the tool may be plain, and nothing falls back to plain."""
    async with ModbusToolServer(tool, host="127.0.0.1", port=0) as server:
        driver = await started(tls_driver(server, pair.controller))
        try:
            message = await refusal(driver, "no answer to the TLS handshake")
            assert "a tool that speaks plain Modbus/TCP" in message
            with pytest.raises(ToolUnreachable):
                await driver.set_mode(Mode.ENGINEERING)
            assert tool.status.mode is Mode.PRODUCTION
        finally:
            await driver.close()


def test_tls_contexts_require_tls_1_2_and_a_peer_certificate(pair: Pair) -> None:
    for context in (T.tls_client_context(pair.controller), T.tls_server_context(pair.simulator)):
        assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
        assert context.verify_mode is ssl.CERT_REQUIRED


async def test_a_renewed_controller_certificate_is_taken_while_connected(
    pair: Pair, tls_server: ModbusToolServer, tool: VirtualTool
) -> None:
    driver = await started(tls_driver(tls_server, pair.controller))
    try:
        async with event_stream(driver) as stream:
            await next_event(stream, ConnectionRestored)  # connected; the stream is live
            renewed = C.renew_own(pair.controller, new_key_pair=False)
            # the tool is told to trust the new certificate (its running TLS context too)
            assert tls_server.tls is not None
            tls_server.tls.load_verify_locations(
                cadata=renewed.public_bytes(serialization.Encoding.DER)
            )
            lost = await next_event(stream, ConnectionLost, within=5.0)
            assert "renewed" in lost.reason  # type: ignore[attr-defined]
            await next_event(stream, ConnectionRestored, within=5.0)
        await driver.set_mode(Mode.SETUP)
        assert tool.status.mode is Mode.SETUP
    finally:
        await driver.close()


# -- revocation: checked by each side right after the handshake ---------------------------------


def write_crl(pki: P.Pki, ca: x509.Certificate, ca_key: rsa.RSAPrivateKey, *serials: int) -> None:
    """The CA's revocation list, listing ``serials``, into ``pki``'s trusted/crl."""
    crl = C.make_crl(ca, ca_key, list(serials))
    P.write_private(
        pki.trusted_crl / "site-ca.crl", crl.public_bytes(serialization.Encoding.DER), mode=0o644
    )


async def refusal(driver: ModbusDriver, what: str) -> str:
    """Wait until the driver, reconnecting on its own, says ``what`` about its connection;
    return what it says."""
    said: list[str] = []

    async def says() -> bool:
        try:
            await driver.status()
        except ToolUnreachable as exc:
            said[:] = [str(exc)]
            return what in said[0]
        return False

    await eventually(says, within=10.0)
    return said[0]


async def test_a_revoked_tool_certificate_is_refused_by_the_driver(
    pair: Pair, tool: VirtualTool, rsa_keys: Keys
) -> None:
    ca = C.make_ca(rsa_keys.ca, common_name="site CA")
    issued = app_certificate(rsa_keys.simulator, SIMULATOR_URI, issuer=(ca, rsa_keys.ca))
    C.write_own(pair.simulator, issued, rsa_keys.simulator)
    for path in pair.controller.trusted.iterdir():
        path.unlink()
    pair.controller.store(ca, pair.controller.trusted)  # the tool is trusted through its CA
    other = app_certificate(rsa_keys.user, "urn:pkgline:simulator:other", issuer=(ca, rsa_keys.ca))
    write_crl(pair.controller, ca, rsa_keys.ca, other.serial_number)  # revokes another one
    context = T.tls_server_context(pair.simulator)
    async with ModbusToolServer(tool, port=0, tls=context, pki=pair.simulator) as server:
        driver = await started(tls_driver(server, pair.controller))
        try:
            await driver.set_mode(Mode.ENGINEERING)  # not revoked: works
            # revoked while connected: taken at the next connection, without a restart
            write_crl(pair.controller, ca, rsa_keys.ca, other.serial_number, issued.serial_number)
            with capture_logs() as logs:
                await server.drop_connections()
                message = await refusal(driver, "revoked")
                with pytest.raises(ToolUnreachable, match="is revoked"):
                    await driver.set_mode(Mode.SETUP)
            assert message.startswith("tool MOLD-1, ")
            assert f"refused the tool at 127.0.0.1:{server.port}" in message
            assert f"certificate CN=test (thumbprint {P.thumbprint(issued)[:16]})" in message
            assert f"(serial {issued.serial_number:x}) is revoked" in message
            refusals = [e for e in logs if e["event"] == "tool certificate refused"]
            assert len(refusals) == 1, logs  # once, however often it reconnects meanwhile
            assert refusals[0]["tool_id"] == "MOLD-1"
            assert refusals[0]["reason"] == "BadCertificateRevoked"
            assert "is revoked" in refusals[0]["error"]
            assert tool.status.mode is Mode.ENGINEERING
        finally:
            await driver.close()


async def test_a_revoked_controller_certificate_is_refused_by_the_simulator(
    pair: Pair, tool: VirtualTool, rsa_keys: Keys
) -> None:
    ca = C.make_ca(rsa_keys.ca, common_name="site CA")
    issued = app_certificate(rsa_keys.controller, CONTROLLER_URI, issuer=(ca, rsa_keys.ca))
    C.write_own(pair.controller, issued, rsa_keys.controller)
    for path in pair.simulator.trusted.iterdir():
        path.unlink()
    pair.simulator.store(ca, pair.simulator.trusted)
    other = app_certificate(rsa_keys.user, "urn:pkgline:controller:other", issuer=(ca, rsa_keys.ca))
    write_crl(pair.simulator, ca, rsa_keys.ca, other.serial_number)
    context = T.tls_server_context(pair.simulator)
    async with ModbusToolServer(tool, port=0, tls=context, pki=pair.simulator) as server:
        driver = await started(tls_driver(server, pair.controller))
        try:
            await driver.set_mode(Mode.ENGINEERING)
            with capture_logs() as logs:
                write_crl(
                    pair.simulator, ca, rsa_keys.ca, other.serial_number, issued.serial_number
                )
                await server.drop_connections()  # the simulator is not restarted
                message = await refusal(driver, "Modbus/TCP Security")
                with pytest.raises(ToolUnreachable, match="Modbus/TCP Security"):
                    await driver.set_mode(Mode.SETUP)
            assert message.startswith("tool MOLD-1, ")
            assert "not revoked" in message  # the hint names revocation; the tool's log says
            assert tool.status.mode is Mode.ENGINEERING  # nothing the refused client sent ran
            refusals = [e for e in logs if e["event"] == "simulator refused a client's certificate"]
            assert refusals, logs
            first = refusals[0]
            assert first["log_level"] == "warning"
            assert first["tool_id"] == "MOLD-1"
            assert first["reason"] == "BadCertificateRevoked"
            assert first["peer"].startswith("127.0.0.1:")
            assert f"(serial {issued.serial_number:x}) is revoked" in first["error"]
            assert "CN=test" in first["error"]
        finally:
            await driver.close()


async def test_a_revocation_list_without_the_peer_leaves_self_signed_peers_alone(
    pair: Pair, tool: VirtualTool, rsa_keys: Keys
) -> None:
    """Certificates trusted one by one (self-signed, no CA, so no CRL of their issuer) are
    not refused because a CA's list is there: unlike OpenSSL's CRL_CHECK_LEAF."""
    ca = C.make_ca(rsa_keys.ca, common_name="site CA")
    some = app_certificate(rsa_keys.user, "urn:pkgline:x", issuer=(ca, rsa_keys.ca))
    for pki in (pair.controller, pair.simulator):
        pki.store(ca, pki.trusted)
        write_crl(pki, ca, rsa_keys.ca, some.serial_number)
    context = T.tls_server_context(pair.simulator)
    async with ModbusToolServer(tool, port=0, tls=context, pki=pair.simulator) as server:
        driver = await started(tls_driver(server, pair.controller))
        try:
            await driver.set_mode(Mode.SETUP)
            assert tool.status.mode is Mode.SETUP
        finally:
            await driver.close()


def test_check_tls_peer_without_a_tls_connection_refuses(pair: Pair) -> None:
    with pytest.raises(P.CertificateRejected, match="presented no certificate") as caught:
        T.check_tls_peer(pair.controller, None)
    assert caught.value.reason is P.RejectReason.INVALID


def test_the_client_context_is_made_once_and_again_when_the_pki_changes(
    pair: Pair, rsa_keys: Keys
) -> None:
    """Shared by every connection (making one takes milliseconds: 500 tools connecting at
    once would wait seconds for them), and made again when a file it is made of changes."""
    first = T.tls_client_context(pair.controller)
    assert T.tls_client_context(pair.controller) is first
    other = app_certificate(rsa_keys.user, "urn:pkgline:simulator:other")
    path = pair.controller.store(other, pair.controller.trusted)  # a peer trusted
    second = T.tls_client_context(pair.controller)
    assert second is not first
    assert T.tls_client_context(pair.controller) is second
    path.unlink()  # and rejected again
    third = T.tls_client_context(pair.controller)
    assert third is not second
    C.renew_own(pair.controller, new_key_pair=False)  # our own certificate renewed
    assert T.tls_client_context(pair.controller) is not third


async def test_tls_connections_are_opened_a_few_at_a_time(pair: Pair) -> None:
    """Many tools connecting at once (the daemon starting) open at most HANDSHAKES_AT_ONCE
    TLS connections at a time; the others wait for a slot, then connect."""
    accepted: list[asyncio.StreamWriter] = []
    most_open = 0

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal most_open
        accepted.append(writer)  # never answers the handshake
        most_open = max(most_open, sum(not w.is_closing() for w in accepted))
        await reader.read()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    context = T.tls_client_context(pair.controller)
    sessions = [
        ModbusSession(
            tool_id=f"T{i}", host="127.0.0.1", port=port, timeout_s=60, tls=lambda: context
        )
        for i in range(HANDSHAKES_AT_ONCE + 4)
    ]
    attempts = [asyncio.create_task(s.connect()) for s in sessions]
    try:

        async def slots_taken() -> bool:
            return len(accepted) == HANDSHAKES_AT_ONCE

        await eventually(slots_taken, within=10.0)
        assert _handshake_slot().locked()  # the other four wait for a slot
        assert sum(not a.done() for a in attempts) == len(sessions)
        for writer in list(accepted):  # the tool hangs up: those attempts fail, freeing slots
            writer.close()

        async def all_tried() -> bool:
            for writer in accepted:
                writer.close()
            return all(a.done() for a in attempts)

        await eventually(all_tried, within=10.0)
        assert len(accepted) == len(sessions)
        assert most_open == HANDSHAKES_AT_ONCE
        for attempt in attempts:
            assert isinstance(attempt.exception(), ToolUnreachable)
    finally:
        for attempt in attempts:
            attempt.cancel()
        await asyncio.gather(*attempts, return_exceptions=True)
        for session in sessions:
            await session.close()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
