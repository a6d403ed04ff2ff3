"""Where the relay hands its messages: the :class:`Publisher` Protocol, and the MQTT one.

Every message is sent at QoS 1; ``publish`` returns once the broker acknowledged it (PUBACK)
and raises :class:`PublishFailed` if it did not within the timeout or the connection broke.
"""

from __future__ import annotations

from typing import Any, Protocol

import aiomqtt
from paho.mqtt.reasoncodes import ReasonCode


class PublishFailed(Exception):
    """The broker did not acknowledge a message (connection lost, or too slow)."""


class Publisher(Protocol):
    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Send one message at QoS 1 and wait for the broker's acknowledgement. Messages
        published one after the other on one publisher reach the broker in that order, even
        when the caller waits for several acknowledgements at once."""
        ...


class MqttPublisher:
    """A :class:`Publisher` on an open aiomqtt client.

    An MQTT 5 broker may answer a PUBLISH with a PUBACK that refuses it (not authorized,
    quota exceeded, ...). aiomqtt takes any PUBACK for success, so this publisher looks at the
    reason codes itself (in paho's ``on_publish``, which it wraps): a publish that was pending
    when a refusal came raises :class:`PublishFailed` with the broker's reason, so that its
    batch is not marked published. (MQTT 3.1.1 has no such answer: a broker that drops a
    message it may not take cannot be told from one that took it.)"""

    def __init__(self, client: aiomqtt.Client, timeout_s: float):
        self._client = client
        self._timeout_s = timeout_s
        self._refusals: list[str] = []
        paho = client._client  # aiomqtt offers no hook for the PUBACK's reason code
        acknowledged: Any = paho.on_publish  # aiomqtt's (the v2 callback signature)
        assert acknowledged is not None

        def on_publish(
            paho_client: Any, userdata: Any, mid: int, reason: ReasonCode, properties: Any
        ) -> None:
            if reason.is_failure:
                self._refusals.append(f"the broker refused the message: {reason}")
            acknowledged(paho_client, userdata, mid, reason, properties)

        paho.on_publish = on_publish

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        refused = len(self._refusals)
        try:
            await self._client.publish(
                topic, payload, qos=1, retain=retain, timeout=self._timeout_s
            )
        except aiomqtt.MqttError as exc:
            raise PublishFailed(f"{topic}: {exc}") from exc
        if len(self._refusals) > refused:
            raise PublishFailed(f"{topic}: {self._refusals[-1]}")
