"""The relay when things go wrong: a malformed or oversized outbox event goes to the
dead-letter topic and never blocks the feed; TLS with a CA of the test's own; a wrong password
is refused with a clear error and retried with a growing backoff (no busy loop); a password
file others may read is refused; several relays on one PostgreSQL publish each event once; a
database the relay cannot reach or use is said as the store classifies it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import ipaddress
import os
import signal
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError
from sqlalchemy import insert, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from mes.adapters.database import DatabaseTimeouts, create_engine
from mes.adapters.migrate import upgrade
from mes.adapters.outbox import OutboxReader, OutboxStore
from mes.adapters.tables import outbox
from mes.domain import durables
from mes.service import utc_now
from pkgline.events.relay import Relay
from pkgline.mqtt import BrokerConfig, BrokerConfigError, read_password
from tests.controller.conftest import (
    FLOWS,
    Stack,
    start_lots,
    wait_until,
)
from tests.events.conftest import (
    Mosquitto,
    all_outbox_ids,
    attempts,
    check_feed,
    drained,
    events_config,
    running,
    subscribed,
)
from tests.faultproxy import FaultProxy, Mode


async def _insert_raw(
    url: str, lot_id: str, payload: object, subject: str = "lot", kind: str = "LotStarted"
) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(outbox).values(
                    lot_id=lot_id,
                    kind=kind,
                    payload=payload,
                    created_at=utc_now(),
                    subject=subject,
                )
            )
    finally:
        await engine.dispose()


async def test_malformed_and_oversized_events_go_to_the_dead_letter_topic_and_the_feed_goes_on(
    stack: Stack, broker: Mosquitto
) -> None:
    events = events_config(broker.port, max_payload_bytes=4096)
    first = await start_lots(stack.lots, FLOWS[:1])
    await _insert_raw(stack.url, first[0], "not a history entry")
    await _insert_raw(
        stack.url,
        first[0],
        {
            "at": utc_now().isoformat(),
            "user": "u",
            "operation": "start",
            "state_after": "WAITING",
            "data": {"blob": "x" * 10_000},
        },
    )
    await _insert_raw(
        stack.url, "bad/lot#", {"at": "x", "user": "u", "operation": "o", "state_after": "WAITING"}
    )
    durable = durables.event_dict(durables.add("CAP-2", "capillary", 100, 0.9, "u", utc_now()))
    await _insert_raw(stack.url, "CAP-1", durable, "durable", "DurableAdded")
    await _insert_raw(stack.url, "CAP-2", durable, "durable", "DurableAdded")  # well formed
    # an event whose state cannot be told goes out, without its state
    await _insert_raw(
        stack.url, "CAP-4", {**durable, "durable": "CAP-4", "count_after": "many"}, "durable",
        "DurableAdded",
    )  # fmt: skip
    del durable["unit"]
    await _insert_raw(
        stack.url, "CAP-3", {**durable, "durable": "CAP-3"}, "durable", "DurableAdded"
    )
    await _insert_raw(stack.url, "X-1", {"at": "x"}, "robot", "RobotWaved")
    engine = create_engine(stack.url)
    relay = Relay(events, OutboxStore(engine), controller="feed-dlq")
    reader = OutboxReader(engine)
    try:
        async with subscribed(events, relay.topics) as sub, running(relay):
            await wait_until(drained(reader), timeout_s=30, what="the outbox published")
            await wait_until(
                lambda: len(sub.of("/dead-letter")) >= 6, timeout_s=30, what="6 dead letters"
            )
            outbox_rows = await all_outbox_ids(reader)
            await wait_until(lambda: len(sub.events()) >= len(outbox_rows) - 6, timeout_s=30)
            await wait_until(lambda: sub.of("/durables/CAP-2/state"), timeout_s=30)
        letters = [m.payload for m in sub.of("/dead-letter")]
        reasons = " | ".join(letter["reason"] for letter in letters)
        assert "payload is a str" in reasons
        assert "more than max_payload_bytes (4096)" in reasons
        assert "cannot be a topic level" in reasons
        assert "event of durable 'CAP-2' in CAP-1" in reasons
        assert "subject 'robot', expected one of lot, durable, material" in reasons
        assert "durable event without unit" in reasons
        assert {(x["subject"], x["lot"]) for x in letters} >= {
            ("durable", "CAP-1"),
            ("robot", "X-1"),
        }
        assert [e["durable"] for e in (m.payload for m in sub.of("/durables/CAP-2/events"))] == [
            "CAP-2"
        ]
        assert sub.of("/durables/CAP-2/state")[-1].payload["status"] == "ok"
        assert len(sub.of("/durables/CAP-4/events")) == 1 and not sub.of("/durables/CAP-4/state")
        good = [(seq, lot) for seq, lot in outbox_rows if seq not in {x["id"] for x in letters}]
        check_feed(sub, good)
        assert relay.status.dead_letters == 6
    finally:
        await engine.dispose()


# -- TLS and credentials ------------------------------------------------------------------------


def _pki(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca, cert, key) files."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pkgline test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    directory.mkdir(parents=True, exist_ok=True)
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def _mosquitto_password(user: str, password: str) -> str:
    """A mosquitto 2 password file line (PBKDF2-SHA512, as mosquitto_passwd writes it)."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101, 64)
    return f"{user}:$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}\n"


@pytest.fixture
def tls_broker(tmp_path: Path):  # type: ignore[no-untyped-def]
    pki = tmp_path / "pki"
    ca, cert, key = _pki(pki)
    (pki / "passwd").write_text(_mosquitto_password("relay", "s3cret-pw"))
    broker = Mosquitto(
        tmp_path / "tls-broker",
        extra=(
            "allow_anonymous false\n"
            f"password_file {pki / 'passwd'}\n"
            f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
        ),
    )
    broker.start()
    try:
        yield broker, ca
    finally:
        broker.stop()


def _password_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


@pytest.mark.parametrize("database", ["migrated_sqlite_url"], indirect=True)
async def test_over_tls_with_a_password_from_a_file_every_event_is_published(
    stack: Stack, tls_broker: tuple[Mosquitto, Path], tmp_path: Path
) -> None:
    broker, ca = tls_broker
    events = events_config(
        broker.port,
        url=f"mqtts://127.0.0.1:{broker.port}",
        ca_file=ca,
        username="relay",
        password_file=_password_file(tmp_path / "pw", "s3cret-pw"),
    )
    await start_lots(stack.lots, FLOWS[:2])
    engine = create_engine(stack.url)
    relay = Relay(events, OutboxStore(engine), controller="feed-tls")
    reader = OutboxReader(engine)
    try:
        async with subscribed(events, relay.topics) as sub, running(relay):
            await wait_until(drained(reader), timeout_s=30, what="the outbox published")
            rows = await all_outbox_ids(reader)
            await wait_until(lambda: len(sub.events()) >= len(rows), timeout_s=30)
        check_feed(sub, rows)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("database", ["migrated_sqlite_url"], indirect=True)
async def test_a_wrong_password_is_refused_clearly_and_retried_with_a_growing_backoff(
    stack: Stack, tls_broker: tuple[Mosquitto, Path], tmp_path: Path
) -> None:
    broker, ca = tls_broker
    events = events_config(
        broker.port,
        url=f"mqtts://127.0.0.1:{broker.port}",
        ca_file=ca,
        username="relay",
        password_file=_password_file(tmp_path / "pw", "wrong-pw"),
        backoff_initial_s=0.05,
        backoff_max_s=0.4,
    )
    await start_lots(stack.lots, FLOWS[:1])
    engine = create_engine(stack.url)
    relay = Relay(events, OutboxStore(engine), controller="feed-badpw")
    try:
        with structlog.testing.capture_logs() as logs:
            async with running(relay):
                await wait_until(
                    lambda: len(attempts(logs)) >= 6, timeout_s=30, what="six refusals"
                )
        downs = attempts(logs)
        assert sum(1 for e in downs if e["event"] == "event feed down") == 1  # one outage
        assert all("refused the credentials (user 'relay')" in e["error"] for e in downs)
        assert all("wrong-pw" not in str(e) for e in logs)
        delays = [e["retry_in_s"] for e in downs]
        # Doubling from 0.05 s (less up to 25 % jitter) to the 0.4 s cap: never a busy loop.
        assert delays[0] >= 0.03 and all(d >= 0.03 for d in delays)
        assert delays[4] > delays[0] and max(delays) <= 0.4
        assert (await OutboxReader(engine).backlog()).events > 0  # nothing marked published
    finally:
        await engine.dispose()


@pytest.mark.parametrize("database", ["migrated_sqlite_url"], indirect=True)
async def test_a_server_certificate_from_another_ca_fails_tls_with_a_clear_error(
    stack: Stack, tls_broker: tuple[Mosquitto, Path], tmp_path: Path
) -> None:
    broker, _ = tls_broker
    other_ca, _, _ = _pki(tmp_path / "other-pki")
    events = events_config(
        broker.port,
        url=f"mqtts://127.0.0.1:{broker.port}",
        ca_file=other_ca,
        username="relay",
        password_file=_password_file(tmp_path / "pw", "s3cret-pw"),
    )
    engine = create_engine(stack.url)
    relay = Relay(events, OutboxStore(engine), controller="feed-badca")
    try:
        with structlog.testing.capture_logs() as logs:
            async with running(relay):
                await wait_until(
                    lambda: any(e["event"] == "event feed down" for e in logs), timeout_s=30
                )
        error = next(e["error"] for e in logs if e["event"] == "event feed down")
        assert "TLS failed" in error and "certificate verify failed" in error
    finally:
        await engine.dispose()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_password_file_others_may_read_is_refused_saying_how_to_fix_it(
    tmp_path: Path, mode: int
) -> None:
    path = _password_file(tmp_path / "pw", "secret", mode)
    with pytest.raises(BrokerConfigError, match=r"readable by others \(mode 0\d+\).*chmod 600"):
        read_password(path)
    assert read_password(_password_file(tmp_path / "ok", "secret")) == "secret"


def test_credentials_in_the_broker_url_are_refused() -> None:
    with pytest.raises(ValidationError, match="must not hold a user or password"):
        BrokerConfig(url="mqtt://relay:secret@127.0.0.1:1883")
    with pytest.raises(ValidationError, match="expected mqtt://HOST"):
        BrokerConfig(url="http://127.0.0.1")
    assert BrokerConfig(url="mqtts://broker.plant").port == 8883


async def test_a_broker_that_refuses_the_publishes_gets_them_again_and_none_is_marked(
    stack: Stack, tmp_path: Path
) -> None:
    """MQTT 5: a PUBACK that refuses (here: no right to publish) is no acknowledgement."""
    acl = tmp_path / "acl"
    acl.write_text("topic read #\n")
    broker = Mosquitto(tmp_path / "acl-broker", extra=f"acl_file {acl}\n")
    broker.start()
    engine = create_engine(stack.url)
    try:
        await start_lots(stack.lots, FLOWS[:2])
        relay = Relay(events_config(broker.port), OutboxStore(engine), controller="feed-acl")
        with structlog.testing.capture_logs() as logs:
            async with running(relay):
                await wait_until(
                    lambda: sum(1 for e in logs if e["event"] == "event feed down") >= 2,
                    timeout_s=30,
                    what="two refusals",
                )
        errors = [e["error"] for e in logs if e["event"] == "event feed down"]
        assert all("the broker refused the message: Not authorized" in e for e in errors)
        assert (await OutboxReader(engine).backlog()).events == 2
    finally:
        await engine.dispose()
        broker.stop()


# -- several relays on one database -----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("database", ["migrated_postgres_url"], indirect=True)
async def test_two_relays_on_one_postgresql_publish_each_event_once_and_the_other_takes_over(
    stack: Stack, broker: Mosquitto
) -> None:
    events = events_config(broker.port)
    engines = [create_engine(stack.url), create_engine(stack.url)]
    relays = [
        Relay(events, OutboxStore(engine), controller=f"ctl-{n}")
        for n, engine in enumerate(engines)
    ]
    reader = OutboxReader(engines[0])
    tasks = [asyncio.create_task(relay.run()) for relay in relays]
    try:
        async with subscribed(events, relays[0].topics) as sub:
            await wait_until(
                lambda: any(r.status.leader for r in relays), timeout_s=20, what="a leader"
            )
            leader = next(n for n, r in enumerate(relays) if r.status.leader)
            standby = 1 - leader
            await start_lots(stack.lots, FLOWS[:5])
            await wait_until(drained(reader), timeout_s=30, what="published by the leader")
            assert not relays[standby].status.leader
            relays[leader].request_stop()
            await asyncio.wait_for(tasks[leader], 30)
            await wait_until(
                lambda: relays[standby].status.leader, timeout_s=20, what="the standby leads"
            )
            await start_lots(stack.lots, FLOWS[5:8])
            await wait_until(drained(reader), timeout_s=30, what="published by the other")
            rows = await all_outbox_ids(reader)
            await wait_until(lambda: len(sub.events()) >= len(rows), timeout_s=30)
        ids = [e["id"] for e in sub.events()]
        assert len(ids) == len(set(ids)), "an event was published twice"
        check_feed(sub, rows)
    finally:
        for relay in relays:
            relay.request_stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        for engine in engines:
            await engine.dispose()


@pytest.mark.parametrize("database", ["migrated_sqlite_url"], indirect=True)
async def test_an_event_the_broker_refuses_is_retried_with_a_growing_backoff_until_it_takes_it(
    stack: Stack, tmp_path: Path
) -> None:
    """The broker's ACL denies one lot's events topic (MQTT 5: a PUBACK "Not authorized").
    Found by the probe: the relay reset its backoff at every connect, so a session that
    failed after connecting never backed off: it reconnected twice a second and sent its
    birth and the events before the refused one again each time. Now each attempt waits
    twice as long as the one before, and sends each event once; once the broker takes the
    event (its ACL lifted), the feed drains."""
    acl = tmp_path / "acl"
    broker = Mosquitto(tmp_path / "deny-broker", extra=f"acl_file {acl}\n")
    initial = 0.05
    events = events_config(
        broker.port, backoff_initial_s=initial, backoff_max_s=10.0, timeout_s=1.0
    )
    lots = await start_lots(stack.lots, FLOWS[:3])  # ids 1, 2, 3: one event per lot
    engine = create_engine(stack.url)
    relay = Relay(events, OutboxStore(engine), controller="feed-deny")
    denied = relay.topics.lot_events(lots[1])
    acl.write_text(f"topic deny {denied}\ntopic readwrite #\n")
    broker.start()
    tries = 6
    try:
        async with subscribed(events, relay.topics) as sub:
            with structlog.testing.capture_logs() as logs:
                async with running(relay):
                    await wait_until(
                        lambda: len(attempts(logs)) >= tries,
                        timeout_s=60,
                        what=f"{tries} refusals",
                    )
            downs = attempts(logs)
            connects = sum(
                1 for e in logs if e["event"] in ("event feed connected", "event feed back")
            )
            # Every attempt connected: each failed after it (mosquitto 2.0 answers the denied
            # PUBLISH "Not authorized" and closes the connection, so the relay reads the
            # refusal, or times out on an acknowledgement the close lost: either ends it).
            assert connects >= len(downs) >= tries
            # Doubling from 0.05 s to the 10 s cap, each shortened by at most 25 % (jitter):
            # the k-th delay is at least 0.75 x 0.05 x 2^k (with the reset, each was <= 0.05).
            delays = [e["retry_in_s"] for e in downs]
            assert all(
                delay >= 0.75 * min(initial * 2**k, 10.0) - 0.005  # logged to 0.01 s
                for k, delay in enumerate(delays)
            ), delays

            # One birth and each event sent once per connection: what the subscriber got of
            # the session that the stop ended may still be on its way, nothing more comes.
            def births() -> int:
                said = sub.of("/controllers/feed-deny/status")
                return sum(1 for m in said if m.payload["status"] == "online")

            def received(event_id: int) -> int:
                return sum(1 for e in sub.events() if e["id"] == event_id)

            await wait_until(
                lambda: births() >= connects and received(1) >= connects,
                timeout_s=30,
                what=f"{connects} births and event 1 {connects} times",
            )
            counts = {i: received(i) for i in (1, 2, 3)}
            assert births() == connects and counts[1] == connects, (connects, counts)
            assert counts[2] == 0 and counts[3] <= connects, (connects, counts)
            assert (await OutboxReader(engine).backlog()).events == 3  # nothing marked
            # The ACL lifted (mosquitto reads it again on SIGHUP): the next attempt drains.
            acl.write_text("topic readwrite #\n")
            assert broker.process is not None
            broker.process.send_signal(signal.SIGHUP)
            async with running(Relay(events, OutboxStore(engine), controller="feed-deny")):
                await wait_until(drained(OutboxReader(engine)), timeout_s=60, what="drained")
                await wait_until(lambda: [e for e in sub.events() if e["id"] == 2], timeout_s=30)
    finally:
        await engine.dispose()
        broker.stop()


@pytest.mark.parametrize("database", ["migrated_sqlite_url"], indirect=True)
async def test_while_the_broker_is_away_the_status_says_how_many_events_wait(
    stack: Stack, tmp_path: Path
) -> None:
    """Found by the probe: the relay read the backlog only in a connected session, so while
    the broker was away the STATUS line said "backlog unknown" (away from the start) or the
    last session's figure ("0 events waiting" while 391 waited). Now each retry reads it.
    And a session that got somewhere (the backlog drained) starts the backoff over."""
    broker = Mosquitto(tmp_path / "away-broker")  # not started: away from the start
    initial = 0.05
    events = events_config(broker.port, backoff_initial_s=initial, backoff_max_s=0.4)
    await start_lots(stack.lots, FLOWS[:2])
    engine = create_engine(stack.url)
    reader = OutboxReader(engine)
    relay = Relay(events, OutboxStore(engine), controller="feed-away")

    def waiting(events: int) -> Callable[[], bool]:
        return lambda: relay.status.backlog is not None and relay.status.backlog.events == events

    def downs() -> list[dict[str, Any]]:
        return attempts(logs)

    try:
        with structlog.testing.capture_logs() as logs:
            async with running(relay):
                await wait_until(waiting(2), timeout_s=30, what="2 events waiting")
                line = relay.status_line()
                assert line.startswith("event feed down (") and "Connection refused" in line
                assert "; 2 events waiting (oldest " in line, line
                # three failed connects: the backoff has grown past its start
                await wait_until(lambda: len(downs()) >= 3, timeout_s=30, what="3 retries")
                broker.start()
                await wait_until(drained(reader), timeout_s=30, what="published")
                await wait_until(lambda: relay.progress, timeout_s=30, what="progress")
                before = len(downs())
                broker.stop()
                await start_lots(stack.lots, FLOWS[2:5])
                await wait_until(waiting(3), timeout_s=30, what="3 events waiting")
                assert "; 3 events waiting (oldest " in relay.status_line()
                assert not relay.status.connected
        delays = [e["retry_in_s"] for e in downs()]
        # grown while no session got anywhere (jitter shortens by up to 25 %; logged to 0.01 s)
        assert delays[2] >= 0.75 * 4 * initial - 0.005
        assert delays[before] <= initial  # the drained session's failure: over from the start
    finally:
        await engine.dispose()
        broker.stop()


@pytest.mark.slow
async def test_a_database_the_relay_cannot_write_is_said_in_a_few_words_not_as_sqlalchemy_says_it(
    sqlite_url: str, broker: Mosquitto
) -> None:
    """Found by a probe: with the SQLite file held by another process's write transaction,
    the relay logged "event feed down" and `line status` showed "event feed down
    ((sqlite3.OperationalError) database is locked\n[SQL: BEGIN IMMEDIATE]\n(Background on
    this error at: https://sqlalche.me/e/21/e3q8))". Now the database's error as the store
    classifies it, in one line (here the relay's first write, its pruning, meets the lock)."""
    timeouts = DatabaseTimeouts(connect_s=1.0, statement_s=0.2, pool_s=1.0)
    engine = create_engine(sqlite_url, timeouts=timeouts)
    holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        await upgrade(engine)
        relay = Relay(events_config(broker.port), OutboxStore(engine), controller="feed-locked")
        holder.execute("BEGIN IMMEDIATE")  # another process writing, for as long as it likes
        with structlog.testing.capture_logs() as logs:
            async with running(relay):
                await wait_until(
                    lambda: relay.status.error is not None,
                    timeout_s=60,
                    what="the relay meeting the lock",
                )
                line = relay.status_line()
                holder.execute("ROLLBACK")
        said = [e["error"] for e in logs if e["event"] == "event feed down"]
        assert said[0] == "database unavailable: database is locked", said
        assert line.startswith("event feed down (database unavailable: database is locked);")
    finally:
        holder.close()
        await engine.dispose()


@contextlib.asynccontextmanager
async def _behind_a_proxy(
    postgres_url: str, *, mode: Mode = "pass"
) -> AsyncIterator[tuple[FaultProxy, AsyncEngine]]:
    """The test database migrated, and an engine on it through a fault proxy (``mode`` to
    begin with), with short timeouts: the relay's database made to fail at will."""
    setup = create_engine(postgres_url)
    try:
        await upgrade(setup)
    finally:
        await setup.dispose()
    timeouts = DatabaseTimeouts(connect_s=0.5, statement_s=0.5, pool_s=0.5)
    async with FaultProxy("127.0.0.1", 5432, mode=mode) as proxy:
        url = make_url(postgres_url).set(port=proxy.port).render_as_string(hide_password=False)
        engine = create_engine(url, timeouts=timeouts)
        try:
            yield proxy, engine
        finally:
            await engine.dispose()


@pytest.mark.postgres
async def test_a_postgresql_the_relay_cannot_reach_is_said_as_the_database_not_as_timeouterror(
    postgres_url: str, broker: Mosquitto
) -> None:
    """Found by a probe: with the network to PostgreSQL silent (a partition) the relay logged
    "event feed down" with the error "TimeoutError", and the STATUS line said the same: an
    operator would look at the broker. Now the database's error as the store classifies it."""
    async with _behind_a_proxy(postgres_url) as (proxy, engine):
        relay = Relay(events_config(broker.port), OutboxStore(engine), controller="feed-cut")
        with structlog.testing.capture_logs() as logs:
            async with running(relay):
                await wait_until(
                    lambda: relay.status.leader, timeout_s=30, what="the relay publishing"
                )
                proxy.set_mode("silent")
                await wait_until(
                    lambda: relay.status.error is not None,
                    timeout_s=60,
                    what="the relay meeting the partition",
                )
                line = relay.status_line()
                proxy.set_mode("pass")
        said = [e["error"] for e in logs if e["event"] == "event feed down"]
        assert said[0] == "database unavailable: the database did not answer in time", said
        assert line.startswith("event feed down (database unavailable: "), line


@pytest.mark.postgres
async def test_a_postgresql_that_resets_the_relays_connections_is_said_as_the_database(
    postgres_url: str, broker: Mosquitto
) -> None:
    """Found by the same probe: a connection to PostgreSQL reset as it opened reached the
    relay as the OS's error, and "event feed down: [Errno 104] Connect call failed
    ('127.0.0.1', 34559)" named no database (the port was the database's)."""
    async with _behind_a_proxy(postgres_url, mode="reset") as (_, engine):
        relay = Relay(events_config(broker.port), OutboxStore(engine), controller="feed-rst")
        with structlog.testing.capture_logs() as logs:
            async with running(relay):
                await wait_until(
                    lambda: relay.status.error is not None,
                    timeout_s=60,
                    what="the relay meeting the resets",
                )
                line = relay.status_line()
        said = [e["error"] for e in logs if e["event"] == "event feed down"]
        assert said[0].startswith("database unavailable: "), said
        assert line.startswith("event feed down (database unavailable: "), line


@pytest.mark.postgres
async def test_while_the_database_is_away_the_relay_does_not_announce_its_birth_at_every_retry(
    postgres_url: str, broker: Mosquitto
) -> None:
    """Found by a fault drill (PostgreSQL stopped for 20 s under `pkgline serve`): the relay
    connected to the broker again at every retry, published the controller's birth
    ("online", reason "started", retained) and failed at its first read of the database:
    15 births in 22 s, each logged as "event feed connected", though nothing had started.
    Now, once a session ended on the database, the relay waits until the database answers
    the backlog's read before it connects again: one birth when it is back."""
    async with _behind_a_proxy(postgres_url) as (proxy, engine):
        relay = Relay(events_config(broker.port), OutboxStore(engine), controller="feed-gone")
        with structlog.testing.capture_logs() as logs:

            def said(event: str) -> int:
                return sum(1 for e in logs if e["event"] == event)

            async with running(relay):
                await wait_until(
                    lambda: relay.status.leader, timeout_s=30, what="the relay publishing"
                )
                proxy.set_mode("reset")  # the database refuses every connection
                await wait_until(
                    lambda: said("event backlog not read") >= 4,
                    timeout_s=60,
                    what="four retries with the database away",
                )
                births_while_away = said("event feed connected")
                proxy.set_mode("pass")
                await wait_until(
                    lambda: relay.status.leader,
                    timeout_s=60,
                    what="the relay publishing again",
                )
        assert births_while_away == 1, [e["event"] for e in logs]
        assert said("event feed connected") == 1  # and once more when it is back:
        assert said("event feed back") == 1
        assert said("event feed down") == 1, [
            e for e in logs if e["event"] != "event backlog not read"
        ]
