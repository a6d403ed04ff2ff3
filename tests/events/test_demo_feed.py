"""The demo's event feed: each run's MQTT client id is its own, so two demos on one broker
(the one on 127.0.0.1:1883) stay connected side by side; with one id between them the broker
would close the first connection when the second came (MQTT: a client id is one session)."""

from __future__ import annotations

import uuid

from pkgline.cli.demo import _event_feed
from pkgline.mqtt import connect


async def test_two_demos_feeds_keep_their_broker_connections_side_by_side(
    plant_broker: int,
) -> None:
    line = f"line-{uuid.uuid4().hex[:6]}"
    first, second = _event_feed(line), _event_feed(line)
    assert first is not None and second is not None
    ids = [feed.client_id_for(line, "events") for feed in (first, second)]
    assert ids[0] != ids[1]
    assert all(i.startswith(f"pkgline-{line}-events-") and len(i) <= 64 for i in ids)
    topic = f"pkgline-test/{line}/probe"
    async with connect(first, ids[0]) as one, connect(second, ids[1]) as two:
        # A takeover would have closed the first before the second's CONNACK. Both still publish (QoS 1: each waits for its PUBACK on its own connection).
        await one.publish(topic, b"1", qos=1, timeout=5)
        await two.publish(topic, b"2", qos=1, timeout=5)


def test_a_long_line_name_keeps_the_client_id_within_mqtts_64_characters() -> None:
    from pkgline.cli.demo import _run_client_id

    made = {_run_client_id("l" * 64, "events") for _ in range(3)}
    assert len(made) == 3
    assert all(len(i) == 64 and i.startswith("pkgline-lll") for i in made)
