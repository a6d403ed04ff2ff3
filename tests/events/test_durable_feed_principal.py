"""Who acted, on a durable's events too: a durable-event carried only ``user``, the name the
command was given (free text), where a lot event and a material event say who really acted
(``by``) and how they were known (``auth``). A maintenance system that followed a capillary's
mount could not tell the engineer logged in from the system's API key. Now each durable
event carries them: those of the durable commands (add, mount, unmount, renew) through the
API, and a job's count made inside a lot's transaction (by whoever recorded the job, tracked
the step out, held the lot or aborted the step); null in an outbox row written before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flows import load_library
from mes.adapters.database import create_engine
from mes.adapters.memory import MemoryUnitOfWorkFactory
from mes.adapters.outbox import OutboxEvent, OutboxReader, OutboxStore
from mes.domain import commands as cmd
from mes.domain import durables as rules
from mes.domain.authority import CONTROLLER, AuthMethod, Principal, Role
from mes.domain.equipment import DispatchMode, ToolRegistration, ToolSnapshot
from mes.domain.identity import UserKind
from mes.durables import DurableService
from mes.equipment import EquipmentService
from mes.service import LotService, utc_now
from pkgline.cli.events import describe
from pkgline.events import payloads
from pkgline.events.relay import Relay
from tests.api.conftest import ACCOUNT, ADMIN, start_api
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
from tests.mes.conftest import Clock

pytestmark = pytest.mark.slow

TOOLS = [
    ToolRegistration("WB-1", "wire_bonder", "sim", ("WIRE_BOND",)),
    ToolRegistration("MOLD-1", "molder", "sim", ("MOLD",)),
]


async def test_a_durables_events_through_the_api_say_which_account_acted_and_how(
    stack: Stack, broker: Mosquitto, tmp_path: Path
) -> None:
    """An engineer known by their OS account on the server's socket adds a capillary and a
    mold chase; the maintenance system ``cmms`` mounts, renews and unmounts them with its API
    key: each event on the feed names the account and how it was known."""
    events = events_config(broker.port)
    engine = create_engine(stack.url)
    relay = Relay(events, OutboxStore(engine), controller="feed-durables")
    reader = OutboxReader(engine)
    try:
        await stack.equipment.register("feed-durables", TOOLS)
        async with start_api(stack.url, tmp_path / "api.sock") as api:
            await api.roles(Role.ENGINEER)
            identity = api.state.identity
            await identity.add_user(
                ADMIN, "cmms", "Maintenance system", [Role.TECHNICIAN], kind=UserKind.SYSTEM
            )
            _, token = await identity.issue_api_key(ADMIN, "cmms", "maintenance")
            async with subscribed(events, relay.topics) as sub, running(relay):
                async with api.client() as person:
                    for durable, kind in (("CAP-7", "capillary"), ("CH-7", "mold_chase")):
                        added = await person.post(
                            "/durables", json={"durable": durable, "kind": kind, "life": 1000}
                        )
                        assert added.status_code == 201, added.text
                async with api.client(authorization=f"Bearer {token}") as system:
                    for path, body in (
                        ("/durables/CAP-7/mount", {"tool": "WB-1"}),
                        ("/durables/CH-7/mount", {"tool": "MOLD-1"}),
                        ("/durables/CH-7/renew", {"reason": "chase cleaned"}),
                        ("/durables/CAP-7/unmount", {"reason": "worn"}),
                    ):
                        done = await system.post(path, json=body)
                        assert done.status_code == 200, done.text
                await wait_until(drained(reader), timeout_s=30, what="the outbox published")
                outbox = await all_outbox_ids(reader)
                await wait_until(
                    lambda: len({e["id"] for e in sub.events()}) >= len(outbox),
                    timeout_s=30,
                    what="the subscriber got every event",
                )
        check_feed(sub, outbox)
        cap: list[dict[str, Any]] = [m.payload for m in sub.of("/durables/CAP-7/events")]
        chase: list[dict[str, Any]] = [m.payload for m in sub.of("/durables/CH-7/events")]
        for event in cap + chase:
            check_schema(event, "durable-event")
        assert [(e["kind"], e["user"], e["by"], e["auth"]) for e in cap] == [
            ("DurableAdded", ACCOUNT, ACCOUNT, "os_account"),
            ("DurableMounted", "cmms", "cmms", "api_key"),
            ("DurableUnmounted", "cmms", "cmms", "api_key"),
        ]
        assert [(e["kind"], e["by"], e["auth"]) for e in chase] == [
            ("DurableAdded", ACCOUNT, "os_account"),
            ("DurableMounted", "cmms", "api_key"),
            ("DurableRenewed", "cmms", "api_key"),
        ]
        assert describe(cap[1]).endswith("by cmms (api_key)")
    finally:
        await engine.dispose()


OPERATOR = Principal("op1", frozenset({Role.OPERATOR}), AuthMethod.SESSION)
ENGINEER = Principal("eng1", frozenset({Role.ENGINEER}), AuthMethod.PASSWORD)


@pytest.mark.parametrize("leave", ["record", "hold", "abort", "track_out"])
async def test_a_jobs_count_on_a_durable_says_who_made_it(leave: str) -> None:
    """The count a job adds to the durables of its tool is written in the lot's transaction:
    its event names whoever made it (the controller recording the job; the person holding
    the lot or aborting the step, the job abandoned counted whole; the operator tracking out
    a step run by hand on the tool)."""
    store = MemoryUnitOfWorkFactory()
    clock = Clock()
    lots, durables = LotService(store, load_library(), clock), DurableService(store, clock)
    equipment = EquipmentService(store, clock)
    await equipment.register("line-a", TOOLS)
    up = ToolSnapshot(connected=True, e10="standby", process_state="IDLE", mode="PRODUCTION")
    await equipment.report("WB-1", up)
    await durables.add("CAP-1", "capillary", 100_000, "eng", by=ENGINEER)
    await durables.mount("CAP-1", "WB-1", "tech", by=ENGINEER)
    await lots.start(cmd.StartLot("L1", "stiffener-bga", "op1", carriers=1), by=OPERATOR)
    for step in ("SUBSTRATE_LOAD", "DIE_ATTACH"):
        await lots.track_in(cmd.TrackIn("L1", step, "op1"), by=OPERATOR)
        await lots.track_out(cmd.TrackOut("L1", "op1"), by=OPERATOR)
    if leave == "track_out":
        await equipment.set_dispatch("WB-1", DispatchMode.MANUAL, "tech", "engineering lot")
        await lots.track_in(cmd.TrackIn("L1", "WIRE_BOND", "op1", tool="WB-1"), by=ENGINEER)
        await lots.track_out(cmd.TrackOut("L1", "eng-on-shift"), by=ENGINEER)
        expected = ("eng-on-shift", "eng1", "password")
    else:
        wb = cmd.TrackIn("L1", "WIRE_BOND", "controller", tool="WB-1", dispatched=True)
        await lots.track_in(wb, by=CONTROLLER)
        carrier = (await lots.get("L1")).carriers[0]
        job = cmd.StartJob("L1", "J1", "WB-1", carrier, "controller")
        await lots.start_job(job, by=CONTROLLER)
        if leave == "record":
            await lots.record_job(cmd.RecordJob("J1", "ctl-line-a"), by=CONTROLLER)
            expected = ("ctl-line-a", "controller", "system")
        elif leave == "hold":
            await lots.hold(cmd.HoldLot("L1", "op-night", "bond lift"), by=OPERATOR)
            expected = ("op-night", "op1", "session")
        else:
            await lots.abort(cmd.AbortStep("L1", "eng1", "wrong program"), by=ENGINEER)
            expected = ("eng1", "eng1", "password")
    [used] = [r for r in store.store.outbox if r["kind"] == "DurableUsed"]
    row = OutboxEvent(1, "CAP-1", "DurableUsed", used["payload"], utc_now(), subject="durable")
    document, _ = payloads.feed_event(row, 256_000)
    check_schema(document, "durable-event")
    assert (document["user"], document["by"], document["auth"]) == expected


def test_a_durable_event_written_before_the_feed_said_who_acted_has_them_null() -> None:
    """Older rows (a database upgraded with durable events still waiting) are published
    valid, with ``by`` and ``auth`` not known, and printed with the user alone."""
    entry = {
        "durable": "CAP-1",
        "durable_kind": "capillary",
        "event": "mounted",
        "at": "2026-12-02T07:01:02+00:00",
        "user": "tech",
        "count_after": 0,
        "amount": 0,
        "life": 1000,
        "warn_at": 900,
        "unit": "touchdowns",
        "tool": "WB-1",
        "mounted_on": "WB-1",
        "lot": None,
        "step": None,
        "job": None,
        "reason": None,
    }
    row = OutboxEvent(3, "CAP-1", "DurableMounted", entry, utc_now(), subject="durable")
    document, _ = payloads.feed_event(row, 256_000)
    check_schema(document, "durable-event")
    assert (document["by"], document["auth"]) == (None, None)
    assert describe(document).endswith("by tech")


def test_a_renewal_of_a_used_mold_chase_is_a_valid_durable_event() -> None:
    """A cleaning sets a chase's count back to 0, its ``amount`` minus the count it had: the
    schema allowed no amount below 0, so a renewal of a chase that had shot was invalid to a
    consumer that checks what it receives."""
    now = utc_now()
    chase = rules.add("CH-1", "mold_chase", 500, 0.9, "eng", now)[0]
    shot = rules.use(
        [chase],
        lot_id="L",
        step="MOLD",
        job_id=None,
        rows=4,
        cols=8,
        processed_sites=32,
        by="c",
        now=now,
    )[0][0]
    renewed = rules.renew(shot, "tech", now, "chase cleaned")
    row = OutboxEvent(
        4, "CH-1", "DurableRenewed", rules.event_dict(renewed), now, subject="durable"
    )
    document, _ = payloads.feed_event(row, 256_000)
    assert document["amount"] == -1
    check_schema(document, "durable-event")
