"""Secure OPC UA between the driver and the simulator: every security policy and mode with a
password and with a user certificate; certificates refused on either side (untrusted, expired,
revoked, wrong application URI) with the reason in the error; anonymous users, wrong
passwords, unsafe credentials files and non-operators refused; no password in any log line;
a renewed certificate taken while connected."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from asyncua import ua
from cryptography.hazmat.primitives import serialization

from drivers import certificates as C
from drivers import pki as P
from drivers.config import ConnectionPolicy, OpcUaSecurity
from drivers.errors import SecurityRefused, ToolUnreachable
from drivers.interface import ConnectionLost
from drivers.model import EquipmentClass, Mode
from drivers.opcua import OpcUaDriver, OpcUaSessionPool
from drivers.opcua import security as client_security
from drivers.opcua.security import ServerCheck
from drivers.opcua.session import OPENS_AT_ONCE, open_slot
from drivers.opcua.ua_typed import Client
from simulators.engine import SimulationSettings, VirtualTool
from simulators.opcua_security import SimulatorSecurity
from simulators.opcua_server import OpcUaToolServer
from tests.drivers.common import eventually
from tests.drivers.opcua.conftest import DriverMaker
from tests.pki_material import (
    CONTROLLER_URI,
    SIMULATOR_URI,
    Keys,
    Pair,
    app_certificate,
    cross_trusted,
    write_credentials,
    write_user_certificate,
)

DICER = EquipmentClass.DICER
PASSWORD = "s3cret-Pa55"
POLICIES = ["Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"]
MODES = ["Sign", "SignAndEncrypt"]


def dicer(tool_id: str = "DICER-1") -> VirtualTool:
    return VirtualTool(tool_id, DICER, SimulationSettings(time_scale=0.0, seed=3))


@pytest.fixture
def pair(tmp_path: Path, rsa_keys: Keys) -> Pair:
    return cross_trusted(tmp_path / "pki", rsa_keys)


@pytest.fixture
def credentials(tmp_path: Path) -> Path:
    return write_credentials(tmp_path / "operator.toml", "operator", PASSWORD)


def simulator_security(pair: Pair, **kw: object) -> SimulatorSecurity:
    kw.setdefault("passwords", {"operator": (PASSWORD, frozenset({"DICER-1"}))})
    return SimulatorSecurity(pair.simulator, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def secure_server(pair: Pair) -> AsyncIterator[OpcUaToolServer]:
    async with OpcUaToolServer([dicer()], security=simulator_security(pair)) as server:
        yield server


def security(pair: Pair, **kw: object) -> OpcUaSecurity:
    return OpcUaSecurity(pki=pair.controller.root, **kw)  # type: ignore[arg-type]


async def refusal(driver: OpcUaDriver) -> str:
    assert not driver.connected
    with pytest.raises(ToolUnreachable) as caught:
        await driver.status()
    assert caught.value.tool_id == "DICER-1"
    return str(caught.value)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("policy", POLICIES)
async def test_every_policy_and_mode_with_a_password_reads_and_commands(
    policy: str,
    mode: str,
    pair: Pair,
    credentials: Path,
    secure_server: OpcUaToolServer,
    make_driver: DriverMaker,
) -> None:
    sec = security(pair, policy=policy, mode=mode, credentials=credentials)
    driver = await make_driver(DICER, secure_server.url, security=sec)
    assert driver.connected
    await driver.set_mode(Mode.ENGINEERING)
    assert (await driver.status()).mode is Mode.ENGINEERING


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("policy", POLICIES)
async def test_every_policy_and_mode_with_a_user_certificate_reads_and_commands(
    policy: str,
    mode: str,
    pair: Pair,
    tmp_path: Path,
    rsa_keys: Keys,
    make_driver: DriverMaker,
) -> None:
    user, cert_path, key_path = write_user_certificate(tmp_path, rsa_keys)
    sim = simulator_security(
        pair, user_certificates=dict([SimulatorSecurity.certificate_user(user, ["*"])])
    )
    async with OpcUaToolServer([dicer()], security=sim) as server:
        sec = security(
            pair, policy=policy, mode=mode, user_certificate=cert_path, user_key=key_path
        )
        driver = await make_driver(DICER, server.url, security=sec)
        assert driver.connected
        await driver.set_mode(Mode.SETUP)
        assert (await driver.status()).mode is Mode.SETUP


async def test_an_anonymous_user_is_refused(
    pair: Pair, secure_server: OpcUaToolServer, make_driver: DriverMaker
) -> None:
    driver = await make_driver(DICER, secure_server.url, security=security(pair))
    assert "refused the user" in await refusal(driver)


async def test_a_wrong_password_is_refused_and_never_logged(
    pair: Pair,
    tmp_path: Path,
    secure_server: OpcUaToolServer,
    make_driver: DriverMaker,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = write_credentials(tmp_path / "wrong.toml", "operator", "not-the-Pa55word")
    driver = await make_driver(DICER, secure_server.url, security=security(pair, credentials=wrong))
    assert "BadUserAccessDenied" in await refusal(driver)
    out = capsys.readouterr()
    for text in (caplog.text, out.out, out.err):
        assert "not-the-Pa55word" not in text
        assert PASSWORD not in text


async def test_a_password_is_never_logged_on_a_good_connection(
    pair: Pair,
    credentials: Path,
    secure_server: OpcUaToolServer,
    make_driver: DriverMaker,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    driver = await make_driver(
        DICER, secure_server.url, security=security(pair, credentials=credentials)
    )
    assert driver.connected
    await driver.set_mode(Mode.ENGINEERING)
    await driver.close()
    out = capsys.readouterr()
    assert secure_server.url in caplog.text + out.out + out.err  # the endpoint is logged...
    for text in (caplog.text, out.out, out.err):
        assert PASSWORD not in text  # ...its user's password is not


@pytest.mark.parametrize("mode", MODES)
async def test_a_password_is_never_sent_in_clear_over_a_signed_only_channel(
    mode: str, pair: Pair, credentials: Path, make_driver: DriverMaker
) -> None:
    """A tool whose user token policy asks for the password unencrypted (SecurityPolicy
    None in the token): over SignAndEncrypt the channel hides it; over Sign it would be
    readable on the wire, so the session is refused before the password is sent."""
    async with OpcUaToolServer([dicer()], security=simulator_security(pair)) as server:
        assert server._server is not None
        for endpoint in server._server.iserver.endpoints:
            for token in endpoint.UserIdentityTokens:
                if token.TokenType == ua.UserTokenType.UserName:
                    token.SecurityPolicyUri = "http://opcfoundation.org/UA/SecurityPolicy#None"
        sec = security(pair, mode=mode, credentials=credentials)
        driver = await make_driver(DICER, server.url, security=sec)
        if mode == "SignAndEncrypt":
            assert driver.connected
            await driver.set_mode(Mode.SETUP)
            return
        message = await refusal(driver)
        assert "asks for the user's password unencrypted" in message
        assert "the password was not sent" in message


async def test_a_credentials_file_others_can_read_is_refused(
    pair: Pair, tmp_path: Path, secure_server: OpcUaToolServer, make_driver: DriverMaker
) -> None:
    loose = write_credentials(tmp_path / "loose.toml", "operator", PASSWORD, mode=0o640)
    driver = await make_driver(DICER, secure_server.url, security=security(pair, credentials=loose))
    message = await refusal(driver)
    assert "readable or writable by group or others (mode 0640)" in message
    assert str(loose) in message


async def test_a_private_key_others_can_read_is_refused(
    pair: Pair,
    tmp_path: Path,
    secure_server: OpcUaToolServer,
    make_driver: DriverMaker,
    credentials: Path,
    rsa_keys: Keys,
) -> None:
    """The controller's key (own/private/key.pem) and a user certificate's key: 0600, the
    service account's alone, or refused with the mode found (not used as it is)."""
    pair.controller.own_identity()  # parsed while it was 0600: a chmod since is seen too
    pair.controller.own_key.chmod(0o644)
    driver = await make_driver(
        DICER, secure_server.url, security=security(pair, credentials=credentials)
    )
    message = await refusal(driver)
    assert (
        f"{pair.controller.own_key}: the private key is readable or writable by group or others (mode 0644)"
        in message
    )
    assert "chmod 600" in message
    pair.controller.own_key.chmod(0o600)
    _, cert_path, key_path = write_user_certificate(tmp_path, rsa_keys)
    key_path.chmod(0o640)
    driver = await make_driver(
        DICER,
        secure_server.url,
        tool_id="DICER-1",
        security=security(pair, user_certificate=cert_path, user_key=key_path),
    )
    message = await refusal(driver)
    assert (
        f"{key_path}: the private key is readable or writable by group or others (mode 0640)"
        in message
    )


async def test_a_user_may_command_only_the_tools_it_operates(
    pair: Pair, credentials: Path, make_driver: DriverMaker
) -> None:
    tools = [dicer("DICER-1"), dicer("DICER-2")]
    async with OpcUaToolServer(tools, security=simulator_security(pair)) as server:
        sec = security(pair, credentials=credentials)
        own = await make_driver(DICER, server.url, security=sec, tool_id="DICER-1")
        other = await make_driver(DICER, server.url, security=sec, tool_id="DICER-2")
        await own.set_mode(Mode.ENGINEERING)
        assert (await other.status()).mode is Mode.PRODUCTION  # reading is allowed
        with pytest.raises(SecurityRefused, match="does not allow this user"):
            await other.set_mode(Mode.ENGINEERING)
        assert tools[1].status.mode is Mode.PRODUCTION


async def test_anonymous_reading_when_switched_on_commands_nothing(
    pair: Pair, make_driver: DriverMaker
) -> None:
    tool = dicer()
    sim = simulator_security(pair, anonymous_read=True)
    async with OpcUaToolServer([tool], security=sim) as server:
        driver = await make_driver(DICER, server.url, security=security(pair))
        assert (await driver.status()).mode is Mode.PRODUCTION
        with pytest.raises(SecurityRefused, match="BadUserAccessDenied"):
            await driver.set_mode(Mode.ENGINEERING)
        assert tool.status.mode is Mode.PRODUCTION


async def test_the_simulator_offers_no_unsecured_endpoint(
    pair: Pair, credentials: Path, secure_server: OpcUaToolServer, make_driver: DriverMaker
) -> None:
    plain = OpcUaSecurity(policy="None", mode="None")
    driver = await make_driver(DICER, secure_server.url, security=plain)
    assert "no endpoint with security policy None" in await refusal(driver)


# -- the server's certificate, checked by the controller -----------------------------------------


async def serve_with(pair: Pair, cert_der: bytes) -> OpcUaToolServer:
    pair.simulator.own_certificate.write_bytes(cert_der)
    server = OpcUaToolServer([dicer()], security=simulator_security(pair))
    await server.start()
    return server


def der(cert: object) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)  # type: ignore[attr-defined,no-any-return]


async def test_an_untrusted_server_certificate_is_refused_and_kept_for_review(
    pair: Pair, credentials: Path, secure_server: OpcUaToolServer, make_driver: DriverMaker
) -> None:
    for path in pair.controller.trusted.iterdir():
        path.unlink()
    driver = await make_driver(
        DICER, secure_server.url, security=security(pair, credentials=credentials)
    )
    message = await refusal(driver)
    assert "is not trusted" in message and "pkgline pki trust" in message
    assert [p.name for p in pair.controller.rejected.iterdir()] == [
        P.file_name(pair.simulator_cert)
    ]


async def test_trust_on_first_use_only_where_configured(
    pair: Pair, credentials: Path, secure_server: OpcUaToolServer, make_driver: DriverMaker
) -> None:
    for path in pair.controller.trusted.iterdir():
        path.unlink()
    sec = security(pair, credentials=credentials, trust_on_first_use=True)
    driver = await make_driver(DICER, secure_server.url, security=sec)
    assert driver.connected
    assert [c.serial_number for c in pair.controller.trusted_certificates()] == [
        pair.simulator_cert.serial_number
    ]


async def test_trust_on_first_use_trusts_the_first_certificate_only(
    pair: Pair, rsa_keys: Keys, credentials: Path, make_driver: DriverMaker
) -> None:
    """After the first use, another certificate at the same endpoint (the tool's replaced,
    or a man in the middle with a certificate of its own) is refused, not trusted too."""
    for path in pair.controller.trusted.iterdir():
        path.unlink()
    server = OpcUaToolServer([dicer()], security=simulator_security(pair))
    await server.start()
    try:
        sec = security(pair, credentials=credentials, trust_on_first_use=True)
        driver = await make_driver(DICER, server.url, security=sec)
        assert driver.connected  # the first use
        await server.stop()
        other = app_certificate(rsa_keys.user, SIMULATOR_URI, name="impostor")
        C.write_own(pair.simulator, other, rsa_keys.user)
        await server.start()  # the same endpoint, another certificate

        async def refused() -> bool:
            return "trust on first use was used up" in await refusal(driver)

        await eventually(refused, within=5.0)
        message = await refusal(driver)
        assert "certificate CN=impostor" in message
        assert P.thumbprint(pair.simulator_cert) in message
        assert [c.serial_number for c in pair.controller.trusted_certificates()] == [
            pair.simulator_cert.serial_number
        ]
        assert P.file_name(other) in [p.name for p in pair.controller.rejected.iterdir()]
    finally:
        await server.close()


async def test_an_expired_server_certificate_is_refused(
    pair: Pair, rsa_keys: Keys, credentials: Path, make_driver: DriverMaker
) -> None:
    old = app_certificate(
        rsa_keys.simulator,
        SIMULATOR_URI,
        days=10,
        not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=20),
    )
    pair.controller.store(old, pair.controller.trusted)
    server = await serve_with(pair, der(old))
    try:
        driver = await make_driver(
            DICER, server.url, security=security(pair, credentials=credentials)
        )
        assert "expired on" in await refusal(driver)
    finally:
        await server.close()


async def test_a_revoked_server_certificate_is_refused(
    pair: Pair, rsa_keys: Keys, credentials: Path, make_driver: DriverMaker
) -> None:
    ca = C.make_ca(rsa_keys.ca, common_name="site CA")
    issued = app_certificate(rsa_keys.simulator, SIMULATOR_URI, issuer=(ca, rsa_keys.ca))
    pair.controller.store(ca, pair.controller.trusted)
    server = await serve_with(pair, der(issued))
    try:
        sec = security(pair, credentials=credentials)
        driver = await make_driver(DICER, server.url, security=sec)
        assert driver.connected  # issued by a trusted CA, not revoked yet
        await driver.close()
        crl = C.make_crl(ca, rsa_keys.ca, [issued.serial_number])
        (pair.controller.trusted_crl / "site-ca.crl").write_bytes(
            crl.public_bytes(serialization.Encoding.DER)
        )
        again = await make_driver(DICER, server.url, security=sec)
        assert "is revoked" in await refusal(again)
    finally:
        await server.close()


async def test_a_server_certificate_for_another_application_uri_is_refused(
    pair: Pair, credentials: Path, secure_server: OpcUaToolServer, make_driver: DriverMaker
) -> None:
    sec = security(pair, credentials=credentials, server_uri="urn:pkgline:simulator:other")
    driver = await make_driver(DICER, secure_server.url, security=sec)
    message = await refusal(driver)
    assert f"application URI {SIMULATOR_URI}, expected urn:pkgline:simulator:other" in message


# -- the controller's certificate, checked by the simulator ---------------------------------------


async def test_the_simulator_refuses_an_untrusted_controller(
    pair: Pair, credentials: Path, secure_server: OpcUaToolServer, make_driver: DriverMaker
) -> None:
    for path in pair.simulator.trusted.iterdir():
        path.unlink()
    driver = await make_driver(
        DICER, secure_server.url, security=security(pair, credentials=credentials)
    )
    assert "BadCertificateUntrusted" in await refusal(driver)
    assert len(list(pair.simulator.rejected.iterdir())) == 1


@pytest.mark.parametrize("problem", ["expired", "revoked", "wrong URI"])
async def test_the_simulator_refuses_a_bad_controller_certificate(
    problem: str,
    pair: Pair,
    rsa_keys: Keys,
    credentials: Path,
    secure_server: OpcUaToolServer,
    make_driver: DriverMaker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ca = C.make_ca(rsa_keys.ca, common_name="site CA")
    pair.simulator.store(ca, pair.simulator.trusted)
    if problem == "expired":
        start = dt.datetime.now(dt.UTC) - dt.timedelta(days=20)
        cert = app_certificate(rsa_keys.controller, CONTROLLER_URI, days=10, not_before=start)
        pair.simulator.store(cert, pair.simulator.trusted)
        expected = "BadCertificateTimeInvalid"
    elif problem == "revoked":
        cert = app_certificate(rsa_keys.controller, CONTROLLER_URI, issuer=(ca, rsa_keys.ca))
        crl = C.make_crl(ca, rsa_keys.ca, [cert.serial_number])
        (pair.simulator.trusted_crl / "ca.crl").write_bytes(
            crl.public_bytes(serialization.Encoding.PEM)
        )
        expected = "BadCertificateRevoked"
    else:
        # The certificate names one application; the controller says it is another.
        cert = app_certificate(rsa_keys.controller, "urn:pkgline:someone-else")
        pair.simulator.store(cert, pair.simulator.trusted)
        expected = "BadCertificateUriInvalid"
    C.write_own(pair.controller, cert, rsa_keys.controller)
    if problem == "wrong URI":
        # asyncua announces the URI our certificate names; make it announce ours instead
        original = client_security.secure_client

        async def announcing_another(client: Client, sec: OpcUaSecurity) -> ServerCheck | None:
            check = await original(client, sec)
            client.application_uri = CONTROLLER_URI
            return check

        monkeypatch.setattr("drivers.opcua.session.secure_client", announcing_another)
    driver = await make_driver(
        DICER, secure_server.url, security=security(pair, credentials=credentials)
    )
    assert expected in await refusal(driver)


# -- renewal -----------------------------------------------------------------------------------------


async def test_a_renewed_controller_certificate_is_taken_while_connected(
    pair: Pair, credentials: Path, secure_server: OpcUaToolServer, make_driver: DriverMaker
) -> None:
    driver = await make_driver(
        DICER, secure_server.url, security=security(pair, credentials=credentials)
    )
    session = driver.session
    assert session is not None and session.connections_made == 1
    renewed = C.renew_own(pair.controller, new_key_pair=False)
    pair.simulator.store(renewed, pair.simulator.trusted)  # the tool is told first

    async def reconnected() -> bool:
        return session.connections_made == 2 and driver.connected

    await eventually(reconnected, within=5.0)
    await driver.set_mode(Mode.ENGINEERING)


async def test_a_renewed_tool_certificate_is_taken_when_the_tool_comes_back(
    pair: Pair, rsa_keys: Keys, credentials: Path, make_driver: DriverMaker
) -> None:
    tool = dicer()
    server = OpcUaToolServer([tool], security=simulator_security(pair))
    await server.start()
    try:
        driver = await make_driver(
            DICER, server.url, security=security(pair, credentials=credentials)
        )
        assert driver.connected
        await server.stop()
        renewed = C.renew_own(pair.simulator, new_key_pair=False)
        pair.controller.store(renewed, pair.controller.trusted)  # `pkgline pki trust`
        await server.start()

        async def back() -> bool:
            return driver.connected

        await eventually(back, within=5.0)
        await driver.set_mode(Mode.ENGINEERING)
        assert tool.status.mode is Mode.ENGINEERING
    finally:
        await server.close()


async def test_a_tool_back_with_an_untrusted_certificate_says_so_while_offline(
    pair: Pair,
    credentials: Path,
    make_driver: DriverMaker,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A tool that drops, then comes back with a certificate nobody trusted (replaced at the
    tool): the reason it stays offline is the refused certificate, not the connection closed
    when it went away, in its events (the controller's tool status) and in the log."""
    server = OpcUaToolServer([dicer()], security=simulator_security(pair))
    await server.start()
    try:
        driver = await make_driver(
            DICER, server.url, security=security(pair, credentials=credentials)
        )
        assert driver.connected
        reasons: list[str] = []

        async def follow() -> None:
            async for event in driver.events():
                if isinstance(event, ConnectionLost):
                    reasons.append(event.reason)

        follower = asyncio.get_running_loop().create_task(follow())
        try:
            await server.stop()

            async def lost() -> bool:
                return bool(reasons)

            await eventually(lost, within=5.0)
            assert "not trusted" not in reasons[-1]
            C.renew_own(pair.simulator)  # not given to the controller
            await server.start()

            async def refused() -> bool:
                return "is not trusted" in reasons[-1]

            await eventually(refused, within=10.0)
            assert not driver.connected
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
    finally:
        await server.close()
    said = [line for line in capsys.readouterr().out.splitlines() if "still offline" in line]
    refused = [line for line in said if "is not trusted" in line and "DICER-1" in line]
    assert len(refused) == 1 and said[-1] == refused[0], said  # once, however many retries
    assert "warning" in refused[0]


def test_own_identity_and_trust_list_are_parsed_once_and_again_when_files_change(
    pair: Pair, rsa_keys: Keys
) -> None:
    """Parsing our key checks it (tens of ms): done at every connection, 500 sessions opening
    at once spent seconds on it. Parsed once per PKI directory, and again when a file changes
    (a renewed certificate, a peer trusted or removed), so a change is taken at the next
    connection."""
    pki = pair.controller
    first = pki.own_identity()
    assert pki.own_identity() is first
    assert first.certificate == pki.own()[0]
    trusted = pki.trusted_certificates()
    again = pki.trusted_certificates()
    assert again and all(a is b for a, b in zip(again, trusted, strict=True))
    other = app_certificate(rsa_keys.user, "urn:pkgline:simulator:other")
    path = pki.store(other, pki.trusted)  # a peer trusted
    assert other in pki.trusted_certificates()
    assert len(pki.trusted_certificates()) == len(trusted) + 1
    path.unlink()  # and removed again
    assert other not in pki.trusted_certificates()
    C.renew_own(pki, new_key_pair=True)  # our own certificate and key renewed
    renewed = pki.own_identity()
    assert renewed is not first
    assert renewed.certificate == pki.own()[0] != first.certificate
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    assert renewed.key.public_key().public_bytes(
        serialization.Encoding.DER, public
    ) == renewed.certificate.public_key().public_bytes(serialization.Encoding.DER, public)
    assert pki.own_identity() is renewed


def test_a_missing_own_certificate_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(P.PkiError, match="pkgline pki init"):
        P.Pki(tmp_path / "empty").own_identity()


async def test_sessions_are_opened_a_few_at_a_time(
    sessions: OpcUaSessionPool, make_driver: DriverMaker, pair: Pair
) -> None:
    """Many secure endpoints connecting at once (the daemon starting) open at most
    OPENS_AT_ONCE sessions at a time (each costs both sides RSA); the others wait for a slot (their timeout not yet running), then
    connect. The server here accepts and never answers, so the slots stay taken until it
    hangs up."""
    accepted: list[asyncio.StreamWriter] = []
    most_open = 0

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal most_open
        accepted.append(writer)  # never answers Hello (of GetEndpoints)
        most_open = max(most_open, sum(not w.is_closing() for w in accepted))
        with contextlib.suppress(ConnectionError):
            await reader.read()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    patient = ConnectionPolicy(timeout_s=60, backoff_initial_s=0.05, backoff_max_s=0.2)
    count = OPENS_AT_ONCE + 4
    starts = [
        asyncio.create_task(
            make_driver(
                DICER,
                f"opc.tcp://127.0.0.1:{port}/{i}",
                tool_id=f"D{i}",
                policy=patient,
                security=security(pair),
            )
        )
        for i in range(count)
    ]
    try:

        async def slots_taken() -> bool:
            return len(accepted) == OPENS_AT_ONCE

        await eventually(slots_taken, within=10.0)
        assert open_slot().locked()  # the other four wait for a slot
        assert not any(s.done() for s in starts)
        assert len(sessions) == count

        async def all_tried() -> bool:
            for writer in accepted:  # the server hangs up: those opens fail, freeing slots
                writer.close()
            return all(s.done() for s in starts)

        await eventually(all_tried, within=20.0)
        assert len(accepted) >= count
        assert most_open == OPENS_AT_ONCE
        for start in starts:
            assert not start.result().connected
    finally:
        for start in starts:
            start.cancel()
        await asyncio.gather(*starts, return_exceptions=True)
        await sessions.aclose()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
