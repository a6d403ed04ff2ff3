"""Where the relay hands its messages: the :class:`Publisher` Protocol, and the MQTT one.

Every message is sent at QoS 1; ``publish`` returns once the broker acknowledged it (PUBACK)
and raises :class:`PublishFailed` if it did not within the timeout or the connection broke.
"""

from __future__ import annotations

from typing import Protocol

import aiomqtt


class PublishFailed(Exception):
    """The broker did not acknowledge a message (connection lost, or too slow)."""


class Publisher(Protocol):
    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Send one message at QoS 1 and wait for the broker's acknowledgement. Messages
        published one after the other on one publisher reach the broker in that order, even
        when the caller waits for several acknowledgements at once."""
        ...


class MqttPublisher:
    """A :class:`Publisher` on an open aiomqtt client."""

    def __init__(self, client: aiomqtt.Client, timeout_s: float):
        self._client = client
        self._timeout_s = timeout_s

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        try:
            await self._client.publish(
                topic, payload, qos=1, retain=retain, timeout=self._timeout_s
            )
        except aiomqtt.MqttError as exc:
            raise PublishFailed(f"{topic}: {exc}") from exc
