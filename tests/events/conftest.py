"""The event feed against real Mosquitto brokers: one the test starts on a free port (so that
it can stop and restart it; config in tmp_path, listener on 127.0.0.1 only, stopped at the
end), and a subscriber that keeps a persistent session and collects what the broker delivers.

Tests skip with a reason when no mosquitto binary is found, and fail instead on CI
(``CI=true``) or with ``PKGLINE_REQUIRE_MQTT=1``; ``.ci/run`` installs mosquitto.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from mes.adapters.outbox import OutboxReader
from pkgline.events.config import EventsConfig
from pkgline.events.topics import Topics
from simulators.ports import free_loopback_ports
from tests.controller.conftest import database, stack  # noqa: F401 - the fixtures, for tests/events

REQUIRE_MQTT = os.environ.get("CI") == "true" or os.environ.get("PKGLINE_REQUIRE_MQTT") == "1"
MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)


def need_mosquitto() -> str:
    if MOSQUITTO is None:
        if REQUIRE_MQTT:
            pytest.fail("no mosquitto binary, and CI / PKGLINE_REQUIRE_MQTT=1 requires it")
        pytest.skip("no mosquitto binary (apt-get install mosquitto)")
    return MOSQUITTO


def free_port() -> int:
    """A port for a broker of the test's own (:func:`simulators.line.free_loopback_ports`:
    below the ephemeral range, so no client's source port takes it while the broker is
    stopped)."""
    return free_loopback_ports(1)[0]


class Mosquitto:
    """A broker of the test's own: ``start``, ``stop`` (SIGTERM: its persistent sessions are
    saved), ``start`` again on the same port."""

    def __init__(self, directory: Path, *, extra: str = "", port: int | None = None):
        self.binary = need_mosquitto()
        self.directory = directory
        self.port = port or free_port()
        self.conf = directory / "mosquitto.conf"
        self.log = directory / "mosquitto.log"
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            + ("allow_anonymous true\n" if "password_file" not in extra else "")
            # As root, mosquitto would drop to the user "mosquitto", who cannot write here.
            + f"user {getpass.getuser()}\n"
            + f"persistence true\npersistence_location {directory}/\n"
            "max_queued_messages 0\nmax_inflight_messages 100\n"
            f"log_dest file {self.log}\nlog_type all\n" + extra
        )

    def start(self) -> None:
        assert self.process is None
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        for _ in range(100):
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.1),
            ):
                return
            if self.process.poll() is not None:
                break
            import time

            time.sleep(0.05)
        raise RuntimeError(
            f"mosquitto did not start: {self.log.read_text() if self.log.exists() else ''}"
        )

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


PLANT_BROKER_PORT = 1883


@pytest.fixture
def plant_broker() -> int:
    """The broker on 127.0.0.1:1883 (as on a plant's server, and on CI): its port."""
    try:
        with socket.create_connection(("127.0.0.1", PLANT_BROKER_PORT), timeout=1.0):
            return PLANT_BROKER_PORT
    except OSError:
        if REQUIRE_MQTT:
            pytest.fail(
                "no MQTT broker on 127.0.0.1:1883, and CI / PKGLINE_REQUIRE_MQTT=1 requires it"
            )
        pytest.skip("no MQTT broker on 127.0.0.1:1883")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path / "broker")
    b.start()
    try:
        yield b
    finally:
        b.stop()


def events_config(port: int, **settings: Any) -> EventsConfig:
    """The feed to the broker on ``port``, under a topic root of the test's own."""
    defaults: dict[str, Any] = {
        "url": f"mqtt://127.0.0.1:{port}",
        "root": f"t{uuid.uuid4().hex[:10]}",
        "site": "s1",
        "area": "pkg",
        "line": "line-test",
        "poll_interval_s": 0.02,
        "backoff_initial_s": 0.1,
        "backoff_max_s": 1.0,
        "keepalive_s": 5,
        "timeout_s": 3.0,
    }
    return EventsConfig.model_validate({**defaults, **settings})


@dataclass
class Received:
    topic: str
    payload: dict[str, Any]
    retain: bool


@dataclass
class Subscriber:
    """Collects every message under the feed's topics, reconnecting with a persistent session
    (MQTT 3.1.1, clean_session false) so that nothing published while it was away is lost."""

    config: EventsConfig
    topics: Topics
    messages: list[Received] = field(default_factory=list)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    client_id: str = field(default_factory=lambda: f"sub-{uuid.uuid4().hex[:8]}")

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1",
                    self.config.port,
                    identifier=self.client_id,
                    protocol=aiomqtt.ProtocolVersion.V311,
                    clean_session=False,
                    keepalive=5,
                    **_tls(self.config),
                ) as client:
                    await client.subscribe(f"{self.topics.base}/#", qos=1)
                    self.connected.set()
                    async for message in client.messages:
                        assert isinstance(message.payload, bytes)
                        self.messages.append(
                            Received(
                                str(message.topic), json.loads(message.payload), message.retain
                            )
                        )
            except aiomqtt.MqttError:
                self.connected.clear()
                await asyncio.sleep(0.2)

    def events(self) -> list[dict[str, Any]]:
        """The outbox's events received: the lots', the durables' and the material lots'."""
        return [m.payload for m in self.messages if m.topic.endswith("/events")]

    def events_by_subject(self) -> list[tuple[str, dict[str, Any]]]:
        """Each outbox event received with its subject's part of the topic (``lots/L1``)."""
        start = len(self.topics.base) + 1
        return [
            (m.topic[start : -len("/events")], m.payload)
            for m in self.messages
            if m.topic.endswith("/events")
        ]

    def of(self, suffix: str) -> list[Received]:
        return [m for m in self.messages if m.topic.endswith(suffix)]


def _tls(config: EventsConfig) -> dict[str, Any]:
    if not config.tls:
        return {}
    from pkgline.mqtt import tls_context

    return {
        "tls_context": tls_context(config),
        "username": config.username,
        "password": _password(config),
    }


def _password(config: EventsConfig) -> str | None:
    return config.password_file.read_text().strip() if config.password_file else None


@contextlib.asynccontextmanager
async def subscribed(config: EventsConfig, topics: Topics) -> AsyncIterator[Subscriber]:
    sub = Subscriber(config, topics)
    task = asyncio.create_task(sub.run(), name="subscriber")
    try:
        async with asyncio.timeout(10):
            await sub.connected.wait()
        yield sub
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


ATTEMPTS = ("event feed down", "event feed retry", "event feed still down")
"""The relay's log lines of a failed attempt (each with ``error`` and ``retry_in_s``): an
outage's first, a retry (debug), a reminder (pkgline.events.outage)."""


def attempts(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The relay's failed attempts in captured ``logs``, in order."""
    return [e for e in logs if e["event"] in ATTEMPTS]


@contextlib.asynccontextmanager
async def running(relay: Any) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(relay.run(), name="relay")
    try:
        yield task
    finally:
        relay.request_stop()
        await asyncio.wait_for(task, 30)


def stopped(sub: Subscriber, controller: str) -> Callable[[], bool]:
    """A condition for ``wait_until``: the last status of ``controller`` the subscriber got is
    the relay's "offline, stopped". A relay publishes it as it stops, and the broker may
    deliver it after the relay has returned or its process exited."""

    def check() -> bool:
        said = sub.of(f"/controllers/{controller}/status")
        return bool(said) and (said[-1].payload["status"], said[-1].payload["reason"]) == (
            "offline",
            "stopped",
        )

    return check


def drained(reader: OutboxReader) -> Callable[[], Awaitable[bool]]:
    """A condition for ``wait_until``: no event left unpublished in the outbox."""

    async def check() -> bool:
        return (await reader.backlog()).events == 0

    return check


async def all_outbox_ids(reader: OutboxReader) -> list[tuple[int, str]]:
    """Every outbox event's id and its subject's part of the topic (``lots/L1``,
    ``durables/CAP-1``), in id order."""
    ids: list[tuple[int, str]] = []
    after = 0
    while batch := await reader.events(after=after, limit=1000):
        ids += [(e.id, f"{e.subject}s/{e.lot_id}") for e in batch]
        after = batch[-1].id
    return ids


def check_feed(sub: Subscriber, outbox: list[tuple[int, str]]) -> None:
    """Every outbox event received (after dropping duplicates by id), in order per lot (and
    per durable and material lot), on its subject's topic, and a duplicate only ever the same
    event again."""
    first: dict[int, dict[str, Any]] = {}
    per_subject: dict[str, list[int]] = {}
    for subject, event in sub.events_by_subject():
        if event["id"] in first:
            assert event == first[event["id"]], f"id {event['id']} came twice, different"
            continue
        first[event["id"]] = event
        per_subject.setdefault(subject, []).append(event["id"])
    expected: dict[str, list[int]] = {}
    for seq, subject in outbox:
        expected.setdefault(subject, []).append(seq)
    assert sorted(first) == sorted(seq for seq, _ in outbox)
    assert per_subject == expected


def check_schema(document: dict[str, Any], kind: str) -> None:
    """``document`` valid against the feed's JSON Schema of ``kind`` (formats checked)."""
    import jsonschema

    from pkgline.events import payloads

    jsonschema.validate(
        document,
        payloads.schema(kind),
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
