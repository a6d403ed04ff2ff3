"""A material recall on the event feed (docs/events.md, ``material-event``): quality
quarantines a mold compound with a hold reason code and releases it, signed; a real broker
between the relay and a subscriber. The quarantine's event carries the code, why, by whom and
since when; the release's carries its signatures; each names the version it made the material
lot; the retained state says whether it is quarantined. A quality system that follows the
feed knows a recalled material lot without reading the database."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from mes.adapters.database import create_engine
from mes.adapters.outbox import OutboxEvent, OutboxReader, OutboxStore
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain.authority import AuthMethod, Principal, Role
from mes.domain.equipment import ToolRegistration
from mes.materials import MaterialService
from mes.reasons import ReasonService
from mes.service import utc_now
from pkgline.cli.events import describe
from pkgline.events.payloads import feed_event, subject_state
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
from tests.mes.signers import Signers, signed

pytestmark = pytest.mark.slow

QUALITY = Principal("qa1", frozenset({Role.QUALITY}), AuthMethod.PASSWORD, "Quinn Abel")


async def test_a_quarantine_and_its_signed_release_reach_the_plant_with_code_and_signers(
    stack: Stack, broker: Mosquitto
) -> None:
    events = events_config(broker.port)
    engine = create_engine(stack.url)
    factory = SqlUnitOfWorkFactory(engine)
    materials = MaterialService(factory, utc_now, principal=QUALITY, verifier=Signers([QUALITY]))
    relay = Relay(events, OutboxStore(engine), controller="feed-recall")
    reader = OutboxReader(engine)
    try:
        await stack.equipment.register(
            "feed-recall", [ToolRegistration("MOLD-1", "molder", "sim", ("MOLD",))]
        )
        await ReasonService(factory, utc_now).add(
            "RECALL", "hold", "Material recall", "qa1", release_roles=["quality"]
        )
        async with subscribed(events, relay.topics) as sub, running(relay):
            expires = utc_now() + timedelta(days=30)
            await materials.add("EMC-9", "mold_compound", expires, "eng", thaw_minutes=0)
            await materials.thaw("EMC-9", "tech")
            await materials.load("EMC-9", "MOLD-1", "tech")
            await materials.quarantine("EMC-9", "RECALL", "voids at X-ray", "qa1")
            seen = (await materials.show("EMC-9")).material
            await materials.release(
                "EMC-9",
                "supplier's analysis: not affected",
                "qa1",
                signatures=signed(QUALITY, seen, "released: not affected"),
            )
            await wait_until(drained(reader), timeout_s=30, what="the outbox published")
            outbox = await all_outbox_ids(reader)
            await wait_until(
                lambda: len({e["id"] for e in sub.events()}) >= len(outbox),
                timeout_s=30,
                what="the subscriber got every event",
            )
        check_feed(sub, outbox)

        emc: list[dict[str, Any]] = [m.payload for m in sub.of("/materials/EMC-9/events")]
        for event in emc:
            check_schema(event, "material-event")
        assert [(e["kind"], e["version"]) for e in emc] == [
            ("MaterialAdded", 1),
            ("MaterialThawed", 2),
            ("MaterialLoaded", 3),
            ("MaterialQuarantined", 4),
            ("MaterialReleased", 5),
        ]
        stopped, released = emc[3], emc[4]
        q = stopped["quarantine"]
        assert (q["code"], q["by"], q["reason"]) == (
            "RECALL",
            "qa1",
            "RECALL Material recall: voids at X-ray",
        )
        assert q["at"] == stopped["time"] and stopped["signatures"] == []
        assert released["quarantine"] is None
        (signature,) = released["signatures"]
        assert {k: signature[k] for k in ("signer", "printed_name", "meaning", "method")} == {
            "signer": "qa1",
            "printed_name": "Quinn Abel",
            "meaning": "released: not affected",
            "method": "password",
        }
        assert signature["at"] == released["time"]
        assert all(e["quarantine"] is None for e in emc[:3])
        # who acted, as the lot events say it (the quarantine's and the release's too)
        assert [(e["by"], e["auth"]) for e in emc[3:]] == [("qa1", "password")] * 2
        # as pkgline events tail --all prints them
        assert "EMC-9  MaterialQuarantined  MOLD-1  code RECALL  by qa1" in describe(stopped)
        assert "EMC-9  MaterialReleased  MOLD-1  signed by Quinn Abel (qa1)  by qa1" in describe(
            released
        )
        # the state retained after the quarantine said so (the release's replaced it since)
        held = subject_state("material", stopped)
        check_schema(held, "material-state")
        assert held["quarantine"] == q and held["last_event"] == "MaterialQuarantined"

        async with subscribed(events, relay.topics) as late:
            await wait_until(
                lambda: bool(late.of("/materials/EMC-9/state")),
                timeout_s=10,
                what="the retained state",
            )
        state = late.of("/materials/EMC-9/state")[-1].payload
        check_schema(state, "material-state")
        assert state["last_event"] == "MaterialReleased" and state["quarantine"] is None
    finally:
        await engine.dispose()


def test_a_material_event_written_before_the_feed_said_more_is_published_not_known() -> None:
    """An outbox row written before material events carried their quarantine, version and
    signatures (a database upgraded with events still waiting) is published valid, with
    them not known, not held back as a dead letter."""
    older = {
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
    row = OutboxEvent(7, "EMC-9", "MaterialLoaded", older, utc_now(), subject="material")
    document, _ = feed_event(row, 256_000)
    check_schema(document, "material-event")
    assert (document["quarantine"], document["version"], document["signatures"]) == (
        None,
        None,
        [],
    )
    check_schema(subject_state("material", document), "material-state")
