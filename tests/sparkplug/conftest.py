"""A Mosquitto broker of the test's own, on a free loopback port, and a subscriber that reads
what it delivers with the tests' own payload reader (tests/sparkplug/wire.py)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from mes.adapters.database import create_engine
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.equipment import EquipmentService
from mes.service import LotService
from pkgline.bootstrap import flow_library
from simulators.ports import free_loopback_ports
from tests.controller.conftest import Stack
from tests.sparkplug.wire import WirePayload, read_payload

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
REQUIRE = bool(os.environ.get("CI")) or os.environ.get("PKGLINE_REQUIRE_MQTT") == "1"
WAIT_S = 20.0
"""How long a test waits for a message it expects (a guard against hanging, not a measure)."""


@dataclass
class Broker:
    host: str
    port: int
    process: subprocess.Popen[bytes]
    config: Path

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def stop(self) -> None:
        _stop(self.process)

    def start(self) -> None:
        """Start it again, on the same port."""
        self.process = _start(self.config, self.port)


def _start(config: Path, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [MOSQUITTO, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"mosquitto exited at start: {err}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    process.wait()
    raise RuntimeError("mosquitto did not listen within 10 s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stderr:
        process.stderr.close()


@contextlib.contextmanager
def running_broker(tmp_path: Path, settings: str = "allow_anonymous true\n") -> Iterator[Broker]:
    """Mosquitto on 127.0.0.1 and a free port, no persistence, with the listener ``settings``
    (default: anonymous); stopped at the end. Skips (fails on CI) without mosquitto."""
    if not Path(MOSQUITTO).exists():
        reason = "mosquitto is not installed (apt-get install mosquitto)"
        if REQUIRE:
            pytest.fail(reason + "; CI says the MQTT tests must run")
        pytest.skip(reason)
    (port,) = free_loopback_ports(1)
    config = tmp_path / "mosquitto.conf"
    config.write_text(
        # run as us (a broker started by root would drop to user mosquitto, which may not read
        # the test's files)
        f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
        f"per_listener_settings true\nlistener {port} 127.0.0.1\n{settings}"
        "persistence false\nlog_dest stderr\nlog_type error\n",
        encoding="utf-8",
    )
    found = Broker("127.0.0.1", port, _start(config, port), config)
    try:
        yield found
    finally:
        found.stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """An anonymous Mosquitto of the test's own (:func:`running_broker`)."""
    with running_broker(tmp_path) as found:
        yield found


@dataclass
class Received:
    topic: str
    verb: str
    device: str | None
    payload: WirePayload
    raw: bytes
    qos: int
    """As delivered to a QoS 1 subscription: the QoS it was published with."""
    retain: bool


class Subscriber:
    """Every Sparkplug message the broker delivers, read with the tests' own reader."""

    def __init__(self, client: aiomqtt.Client):
        self.client = client
        self.queue: asyncio.Queue[Received] = asyncio.Queue()
        self.seen: list[Received] = []

    async def pump(self) -> None:
        async for message in self.client.messages:
            topic = str(message.topic)
            parts = topic.split("/")
            raw = message.payload if isinstance(message.payload, bytes) else b""
            if parts[1] == "STATE" or parts[2] in ("NCMD", "DCMD"):  # the test's own
                continue
            item = Received(
                topic,
                parts[2],
                parts[4] if len(parts) > 4 else None,
                read_payload(raw),
                raw,
                message.qos,
                message.retain,
            )
            self.seen.append(item)
            self.queue.put_nowait(item)

    async def next(self, verb: str | None = None, device: str | None = None) -> Received:
        """The next message (of ``verb``, for ``device``), skipping others."""
        async with asyncio.timeout(WAIT_S):
            while True:
                item = await self.queue.get()
                if (verb is None or item.verb == verb) and (
                    device is None or item.device == device
                ):
                    return item

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        await self.client.publish(topic, payload, qos=qos, retain=retain)


def check_seq(messages: list[Received]) -> None:
    """From an NBIRTH on, each message's seq is one more than the last, 255 wrapping to 0."""
    assert messages[0].verb == "NBIRTH" and messages[0].payload.seq == 0
    for before, after in itertools.pairwise(messages):
        assert after.payload.seq == (before.payload.seq + 1) % 256, (before.topic, after.topic)


@contextlib.asynccontextmanager
async def subscribed(
    broker: Broker, topic: str = "spBv1.0/#", **client_settings: Any
) -> AsyncIterator[Subscriber]:
    async with aiomqtt.Client(
        broker.host, broker.port, identifier="test-host", **client_settings
    ) as client:
        await client.subscribe(topic, qos=1)
        subscriber = Subscriber(client)
        task = asyncio.create_task(subscriber.pump(), name="test-subscriber")
        try:
            yield subscriber
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def stack(migrated_sqlite_url: str) -> AsyncIterator[Stack]:
    """The lot tracker and equipment tracking on a migrated SQLite file of this test's own."""
    engine = create_engine(migrated_sqlite_url, pool_size=10)
    try:
        factory = SqlUnitOfWorkFactory(engine)
        yield Stack(
            LotService(factory, flow_library()), EquipmentService(factory), migrated_sqlite_url
        )
    finally:
        await engine.dispose()
