"""Who really acted, on the event feed: ``user`` is the name a command was given (free text:
``pkgline lot hold L --user eng1`` run by root in direct mode records ``user`` eng1, ``by``
root, ``auth`` file_owner), so a lot event or a material event that carried only ``user``
told a plant historian that eng1 held the lot. Each now carries ``by`` and ``auth`` as the
history has them (null in an outbox row written before the feed carried them), through a
real broker, and ``pkgline events tail --all`` / ``events list`` print them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from mes.adapters.database import create_engine
from mes.adapters.outbox import OutboxEvent, OutboxReader, OutboxStore
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain import commands as cmd
from mes.domain.authority import Principal
from mes.domain.equipment import ToolRegistration
from mes.materials import MaterialService
from mes.service import utc_now
from pkgline.cli.events import describe
from pkgline.events import payloads
from pkgline.events.relay import Relay
from tests.controller.conftest import Stack, wait_until
from tests.events.conftest import (
    Mosquitto,
    all_outbox_ids,
    check_feed,
    check_schema,
    drained,
    events_config,
    running,
    subscribed,
)

pytestmark = pytest.mark.slow

ROOT = Principal.file_owner("root")


async def test_lot_and_material_events_say_who_acted_beside_the_user_named(
    stack: Stack, broker: Mosquitto
) -> None:
    events = events_config(broker.port)
    engine = create_engine(stack.url)
    materials = MaterialService(SqlUnitOfWorkFactory(engine), utc_now, principal=ROOT)
    relay = Relay(events, OutboxStore(engine), controller="feed-principal")
    reader = OutboxReader(engine)
    try:
        await stack.equipment.register(
            "feed-principal", [ToolRegistration("MOLD-1", "molder", "sim", ("MOLD",))]
        )
        async with subscribed(events, relay.topics) as sub, running(relay):
            await stack.lots.start(cmd.StartLot("P1", "stiffener-bga", "root"), by=ROOT)
            await stack.lots.hold(cmd.HoldLot("P1", "eng1", "voids at X-ray"), by=ROOT)
            expires = utc_now() + timedelta(days=30)
            await materials.add("EMC-P", "mold_compound", expires, "eng1", thaw_minutes=0)
            await materials.thaw("EMC-P", "eng1")
            await materials.load("EMC-P", "MOLD-1", "root")
            await wait_until(drained(reader), timeout_s=30, what="the outbox published")
            outbox = await all_outbox_ids(reader)
            await wait_until(
                lambda: len({e["id"] for e in sub.events()}) >= len(outbox),
                timeout_s=30,
                what="the subscriber got every event",
            )
        check_feed(sub, outbox)

        lot: list[dict[str, Any]] = [m.payload for m in sub.of("/lots/P1/events")]
        for event in lot:
            check_schema(event, "lot-event")
        held = next(e for e in lot if e["kind"] == "LotHeld")
        assert (held["user"], held["by"], held["auth"]) == ("eng1", "root", "file_owner")
        assert "by eng1, acting: root (file_owner)" in describe(held)
        started = next(e for e in lot if e["kind"] == "LotStarted")
        assert (started["user"], started["by"], started["auth"]) == ("root", "root", "file_owner")
        assert describe(started).endswith("by root (file_owner)")

        emc: list[dict[str, Any]] = [m.payload for m in sub.of("/materials/EMC-P/events")]
        for event in emc:
            check_schema(event, "material-event")
        assert [(e["kind"], e["user"], e["by"], e["auth"]) for e in emc] == [
            ("MaterialAdded", "eng1", "root", "file_owner"),
            ("MaterialThawed", "eng1", "root", "file_owner"),
            ("MaterialLoaded", "root", "root", "file_owner"),
        ]
        assert "by eng1, acting: root (file_owner)" in describe(emc[0])
    finally:
        await engine.dispose()


def test_an_outbox_row_written_before_the_feed_said_who_acted_has_them_null() -> None:
    """Older rows (a database upgraded with events still waiting) are published valid, with
    ``by`` and ``auth`` not known, and printed with the user alone; text is required."""
    entry: dict[str, Any] = {
        "seq": 1,
        "lot": "L1",
        "at": "2026-12-06T07:00:00+00:00",
        "user": "planner",
        "operation": "start",
        "state_after": "WAITING",
        "data": {},
    }
    document, _ = payloads.lot_event(OutboxEvent(1, "L1", "LotStarted", entry, utc_now()), 4096)
    check_schema(document, "lot-event")
    assert (document["by"], document["auth"]) == (None, None)
    assert describe(document).endswith("by planner")
    bad = OutboxEvent(2, "L1", "LotStarted", {**entry, "by": 7}, utc_now())
    with pytest.raises(payloads.Undeliverable, match="by is not text"):
        payloads.lot_event(bad, 4096)
    material = {
        "material": "EMC-9",
        "material_kind": "mold_compound",
        "part_number": None,
        "event": "loaded",
        "at": "2026-12-02T07:01:02+00:00",
        "user": "tech",
        "tool": "MOLD-1",
        "loaded_on": "MOLD-1",
        "reason": None,
        "expires_at": "2027-03-01T00:00:00+00:00",
        "thawed_at": "2026-12-02T03:00:00+00:00",
        "usable_from": "2026-12-02T03:00:00+00:00",
        "floor_life_ends": None,
    }
    row = OutboxEvent(7, "EMC-9", "MaterialLoaded", material, utc_now(), subject="material")
    document, _ = payloads.feed_event(row, 256_000)
    check_schema(document, "material-event")
    assert (document["by"], document["auth"]) == (None, None)
    assert describe(document).endswith("by tech")
