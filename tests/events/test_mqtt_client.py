"""pkgline's MQTT client (:class:`pkgline.mqtt.Client`): aiomqtt's, with its bookkeeping of
the calls waiting for the broker done in constant time. Thousands of QoS 1 publishes in flight
at once are all acknowledged, none is walked over by the next, and the checks aiomqtt makes
(one call per message id, the warning past the threshold) still hold."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Generator
from typing import Any

import aiomqtt
import pytest

from pkgline import mqtt
from pkgline.mqtt import connect
from tests.events.conftest import Mosquitto, events_config


def test_the_aiomqtt_internals_the_client_replaces_are_still_there() -> None:
    # An aiomqtt release that renamed them would leave the override unused (and slow again).
    assert "_pending_call" in vars(aiomqtt.Client)
    assert isinstance(vars(aiomqtt.Client)["_pending_calls"], property)
    assert "_pending_call" in vars(mqtt.Client)


class Counting(mqtt.Client):
    """Counts the walks over every waiting call (aiomqtt's own, per publish)."""

    walks = 0

    @property
    def _pending_calls(self) -> Generator[int, None, None]:
        Counting.walks += 1
        yield from super()._pending_calls


async def test_thousands_of_publishes_in_flight_are_all_acknowledged_without_a_walk_each(
    broker: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mqtt, "Client", Counting)
    config = events_config(broker.port)
    async with connect(config, f"pkgline-test-{uuid.uuid4().hex[:8]}") as client:
        assert isinstance(client, Counting)
        async with asyncio.TaskGroup() as group:  # (a failure cancels the others)
            for i in range(2000):
                body = b"%d" % i
                group.create_task(client.publish(f"{config.root}/n", body, qos=1, timeout=60))
        assert Counting.walks == 0
        assert not client._pending_publishes


async def test_one_call_per_message_id_and_the_warning_past_the_threshold(
    broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    config = events_config(broker.port)
    async with connect(config, f"pkgline-test-{uuid.uuid4().hex[:8]}") as client:
        waiting: dict[int, Any] = client._pending_publishes
        with client._pending_call(7, "first", waiting):
            assert waiting == {7: "first"}
            with (
                pytest.raises(RuntimeError, match='message ID "7"'),
                client._pending_call(7, "again", client._pending_subscribes),
            ):
                pass  # pragma: no cover
        assert not waiting and not client._pending_subscribes
        client.pending_calls_threshold = 1
        with (
            caplog.at_level(logging.WARNING, logger=client._logger.name),
            client._pending_call(1, "a", client._pending_publishes),
            client._pending_call(2, "b", client._pending_subscribes),
        ):
            pass
        assert "There are 2 pending publish calls." in caplog.text
