"""The durables' and the material lots' histories on the event feed (docs/events.md): a
capillary added and mounted, a die attach film added, thawed and loaded, a spool of wire
loaded, then a line controller running a lot through die attach and wire bonding with a real
broker between the relay and a subscriber. Every event of theirs reaches the subscriber on its
own topic (``durables/{id}/events``, ``materials/{id}/events``), valid against its schema, in
the order of their histories, with the jobs' counts on the capillary, and in id order with the
lot's own events: the material lots loaded come before the track-in that used them."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mes.adapters.database import create_engine
from mes.adapters.outbox import OutboxReader, OutboxStore
from mes.adapters.sql import SqlUnitOfWorkFactory
from mes.domain import commands as cmd
from mes.domain.equipment import ToolRecord, ToolRegistration
from mes.durables import DurableService
from mes.materials import MaterialService
from mes.service import utc_now
from pkgline.events.relay import Relay
from simulators.line import write_line_config
from tests.controller.conftest import Stack, line_config, running_controller, simulated, wait_until
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


async def test_durable_and_material_events_reach_the_plant_in_order_with_the_lots_events(
    stack: Stack, broker: Mosquitto
) -> None:
    config = line_config(name="feed-eq", tools=["DB-1", "WB-1"])
    events = events_config(broker.port)
    engine = create_engine(stack.url)
    factory = SqlUnitOfWorkFactory(engine)
    durables = DurableService(factory, utc_now)
    materials = MaterialService(factory, utc_now)

    async def tools() -> list[ToolRecord]:
        return await stack.equipment.tools(config.name)

    relay = Relay(events, OutboxStore(engine), controller=config.name, tools=tools)
    reader = OutboxReader(engine)
    try:
        await stack.equipment.register(
            config.name,
            [
                ToolRegistration(t.id, t.equipment_class.value, "sim", tuple(t.steps or ()))
                for t in config.tools
            ],
        )
        async with subscribed(events, relay.topics) as sub, running(relay):
            await durables.add("CAP-1", "capillary", 10_000, "eng")
            await durables.mount("CAP-1", "WB-1", "tech")
            expires = utc_now() + timedelta(days=30)
            await materials.add("DAF-1", "die_attach_film", expires, "eng", thaw_minutes=0)
            await materials.thaw("DAF-1", "tech")
            await materials.load("DAF-1", "DB-1", "tech")
            await materials.add("WIRE-1", "wire", expires, "eng", part_number="AU-25")
            await materials.load("WIRE-1", "WB-1", "tech")
            await stack.lots.start(cmd.StartLot("E1", "stiffener-bga", "planner"))
            async with simulated(config), running_controller(config, stack):

                async def bonded() -> bool:
                    lot = await stack.lots.get("E1")
                    return "WIRE_BOND" in lot.path and lot.running is None

                await wait_until(bonded, timeout_s=90, what="E1's wire bonding done")
            await wait_until(drained(reader), timeout_s=30, what="the outbox published")
            outbox = await all_outbox_ids(reader)
            await wait_until(
                lambda: len({e["id"] for e in sub.events()}) >= len(outbox),
                timeout_s=30,
                what="the subscriber got every event",
            )
            await wait_until(
                lambda: any(m.payload["count"] == 128 for m in sub.of("/durables/CAP-1/state")),
                timeout_s=30,
                what="the capillary's last state",
            )
        check_feed(sub, outbox)  # every subject's events, once by id, in its order

        def on(topic: str) -> list[dict[str, Any]]:
            return [m.payload for m in sub.of(topic)]

        capillary = on("/durables/CAP-1/events")
        for event in capillary:
            check_schema(event, "durable-event")
        assert [e["kind"] for e in capillary] == [
            "DurableAdded",
            "DurableMounted",
            "DurableUsed",
            "DurableUsed",
        ]
        used = capillary[2:]
        assert [(e["lot"], e["step"], e["tool"], e["amount"]) for e in used] == [
            ("E1", "WIRE_BOND", "WB-1", 64),
            ("E1", "WIRE_BOND", "WB-1", 64),
        ]
        assert [e["count_after"] for e in capillary] == [0, 0, 64, 128]
        assert capillary[0]["life"] == 10_000 and capillary[0]["unit"] == "touchdowns"
        assert all(e["job"] for e in used)

        film = on("/materials/DAF-1/events")
        wire = on("/materials/WIRE-1/events")
        for event in film + wire:
            check_schema(event, "material-event")
        assert [e["kind"] for e in film] == ["MaterialAdded", "MaterialThawed", "MaterialLoaded"]
        assert [e["kind"] for e in wire] == ["MaterialAdded", "MaterialLoaded"]
        assert film[-1]["tool"] == "DB-1" and film[-1]["thawed_at"] is not None
        assert wire[0]["part_number"] == "AU-25" and wire[0]["thawed_at"] is None

        # the lot's track-ins name the material lots they used, after the loads (id order)
        lot_events = on("/lots/E1/events")
        for event in lot_events:
            check_schema(event, "lot-event")
        track_ins = {e["step"]: e for e in lot_events if e["kind"] == "LotTrackedIn"}
        assert track_ins["DIE_ATTACH"]["data"]["materials"] == ["DAF-1"]
        assert track_ins["WIRE_BOND"]["data"]["materials"] == ["WIRE-1"]
        assert film[-1]["id"] < track_ins["DIE_ATTACH"]["id"]
        assert wire[-1]["id"] < track_ins["WIRE_BOND"]["id"] < used[0]["id"]
        assert [e["mounted_on"] for e in capillary] == [None, "WB-1", "WB-1", "WB-1"]
        assert [e["loaded_on"] for e in film] == [None, None, "DB-1"]

        # each one's state, retained after its events: what a newcomer is given at once
        async with subscribed(events, relay.topics) as late:
            await wait_until(
                lambda: len(late.of("/state")) >= 4, timeout_s=10, what="the retained states"
            )
        base = len(relay.topics.base) + 1
        states = {m.topic[base : -len("/state")]: m for m in late.of("/state")}  # lots/E1
        for topic, message in states.items():
            assert message.retain, topic
        cap = states["durables/CAP-1"].payload
        check_schema(cap, "durable-state")
        assert (cap["count"], cap["life"], cap["status"], cap["mounted_on"]) == (
            128,
            10_000,
            "ok",
            "WB-1",
        )
        assert cap["last_event_id"] == used[-1]["id"] and cap["last_event"] == "DurableUsed"
        daf = states["materials/DAF-1"].payload
        check_schema(daf, "material-state")
        assert daf["loaded_on"] == "DB-1" and daf["last_event"] == "MaterialLoaded"
        assert daf["usable_from"] == film[-1]["usable_from"] is not None
        check_schema(states["materials/WIRE-1"].payload, "material-state")
        assert states["lots/E1"].payload["lot"] == "E1"
    finally:
        await engine.dispose()


@pytest.mark.parametrize("database", ["migrated_sqlite_url"], indirect=True)
async def test_events_tail_all_prints_the_durables_and_material_lots_events_as_they_come(
    stack: Stack, broker: Mosquitto, tmp_path: Path
) -> None:
    events = events_config(broker.port)
    config = line_config(name="feed-tail", tools=["WB-1"]).model_copy(update={"events": events})
    path = write_line_config(config, tmp_path / "line.toml")
    engine = create_engine(stack.url)
    factory = SqlUnitOfWorkFactory(engine)
    relay = Relay(events, OutboxStore(engine), controller=config.name)
    tail = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pkgline", "events", "tail", "--config", str(path), "--all",
        "--count", "4",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PKGLINE_DB": stack.url, "COLUMNS": "200"},
    )  # fmt: skip
    try:
        assert tail.stderr is not None
        async with asyncio.timeout(30):
            following = (await tail.stderr.readline()).decode()
        assert following.startswith(f"following {events.root}/") and "/+/+/events" in following
        await stack.equipment.register(
            config.name, [ToolRegistration("WB-1", "wire_bonder", "sim", ("WIRE_BOND",))]
        )
        async with running(relay):
            durables = DurableService(factory, utc_now)
            await durables.add("CAP-9", "capillary", 5_000, "eng")
            await durables.mount("CAP-9", "WB-1", "tech")
            materials = MaterialService(factory, utc_now)
            await materials.add("WIRE-9", "wire", utc_now() + timedelta(days=9), "eng")
            await materials.load("WIRE-9", "WB-1", "tech")
            async with asyncio.timeout(30):
                printed, _ = await tail.communicate()
        assert tail.returncode == 0
        lines = printed.decode().splitlines()
        assert len(lines) == 4, lines
        assert "CAP-9  DurableAdded  count 0 of 5,000 touchdowns  by eng" in lines[0]
        assert "CAP-9  DurableMounted  count 0 of 5,000 touchdowns  WB-1  by tech" in lines[1]
        assert "WIRE-9  MaterialAdded  by eng" in lines[2]
        assert "WIRE-9  MaterialLoaded  WB-1  by tech" in lines[3]
    finally:
        if tail.returncode is None:
            tail.kill()
            await tail.wait()
        await engine.dispose()
