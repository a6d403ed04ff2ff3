"""What a plant historian holds of the lot history from the feed: each lot event carries its
history entry's ``prev_hash`` and ``hash``, so the last hash of each lot is an anchor for
``pkgline audit verify --anchor``. The heads ``audit/heads`` publishes cannot be that:
``lots_head`` is the chain over lots (the newest lot's first entry), which a rewrite of a
lot's later entries leaves as it was (found by a probe: a lot's track-out rewritten and the
lot's chain re-hashed verified with every head the feed had published as anchors)."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from mes.adapters.audit import guard_names, verify_history
from mes.adapters.database import create_engine
from mes.adapters.outbox import OutboxEvent, OutboxReader, OutboxStore
from mes.adapters.rows import entry_from_row
from mes.adapters.tables import lot_history, lots
from mes.domain import commands as cmd
from mes.domain.audit import Finding, entry_hash
from mes.service import utc_now
from pkgline.events import payloads
from pkgline.events.relay import Relay
from tests.controller.conftest import FLOWS, Stack, start_lots, wait_until
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


async def _rewrite_last_entry(engine: AsyncEngine, lot_id: str, reason: str) -> None:
    """What someone who owns the tables does to change a lot's record for good: the guards
    dropped, the lot's newest entry changed and hashed again, the lot's head set to match."""
    async with engine.begin() as conn:
        dialect = engine.dialect.name
        for name in guard_names("lot_history", dialect):
            on = " ON lot_history" if dialect == "postgresql" else ""
            await conn.execute(text(f"DROP TRIGGER {name}{on}"))
        query = select(lot_history).where(lot_history.c.lot_id == lot_id)
        row = (await conn.execute(query.order_by(lot_history.c.seq.desc()).limit(1))).one()
        entry = entry_from_row({**row._mapping, "reason": reason})
        digest = entry_hash(entry, row.prev_hash)
        await conn.execute(
            update(lot_history)
            .where(lot_history.c.seq == row.seq)
            .values(reason=reason, hash=digest)
        )
        await conn.execute(update(lots).where(lots.c.id == lot_id).values(history_head=digest))


async def test_lot_events_carry_their_entrys_hashes_which_find_a_rewritten_lot_the_heads_do_not(
    stack: Stack, broker: Mosquitto
) -> None:
    events = events_config(broker.port)
    engine = create_engine(stack.url)
    relay = Relay(events, OutboxStore(engine), controller="anchor-line")
    reader = OutboxReader(engine)
    try:
        async with subscribed(events, relay.topics) as sub, running(relay):
            ids = await start_lots(stack.lots, FLOWS[:2])
            await stack.lots.hold(cmd.HoldLot(ids[0], "qa", "voids at incoming inspection"))
            await wait_until(drained(reader), timeout_s=30, what="the outbox published")
            outbox = await all_outbox_ids(reader)
            await wait_until(
                lambda: len({e["id"] for e in sub.events()}) >= len(outbox),
                timeout_s=30,
                what="the subscriber got every event",
            )
            await wait_until(
                lambda: bool(sub.of("/audit/heads")), timeout_s=30, what="the heads published"
            )
        check_feed(sub, outbox)
        async with engine.connect() as conn:
            rows = (await conn.execute(select(lot_history).order_by(lot_history.c.seq))).all()
        stored = {(r.lot_id, r.seq): (r.prev_hash, r.hash) for r in rows}
        last: dict[str, str] = {}
        for event in sub.events():
            check_schema(event, "lot-event")
            assert (event["prev_hash"], event["hash"]) == stored[
                (event["lot"], event["history_seq"])
            ]
            last[event["lot"]] = event["hash"]
        heads = [m.payload for m in sub.of("/audit/heads")]
        published = sorted({h[k] for h in heads for k in ("lots_head", "security_head")})
        assert (await verify_history(engine, anchors=published + sorted(last.values()))).ok

        await _rewrite_last_entry(engine, ids[0], "no voids found")
        # the chain is consistent again and the published heads are all still there: only
        # the dropped guards are left to tell (docs/security.md, "The limit")
        by_heads = await verify_history(engine, anchors=published)
        assert by_heads.problem is not None
        assert by_heads.problem.finding is Finding.GUARD_MISSING
        # the lot's last hash as the feed published it is gone
        by_events = await verify_history(engine, anchors=[last[ids[0]]])
        assert by_events.problem is not None
        assert by_events.problem.finding is Finding.ANCHOR_MISSING
    finally:
        await engine.dispose()


def _entry(**hashes: object) -> OutboxEvent:
    entry = {
        "seq": 1,
        "lot": "L1",
        "at": "2026-12-06T07:00:00+00:00",
        "user": "planner",
        "operation": "start",
        "state_after": "WAITING",
        "data": {},
        **hashes,
    }
    return OutboxEvent(1, "L1", "LotStarted", entry, utc_now())


def test_an_entry_from_before_the_chain_has_null_hashes_and_a_malformed_hash_is_a_dead_letter() -> (
    None
):
    document, _ = payloads.lot_event(_entry(), 4096)
    assert (document["prev_hash"], document["hash"]) == (None, None)
    check_schema(document, "lot-event")
    good = "0" * 64
    document, _ = payloads.lot_event(_entry(prev_hash=good, hash="ab" * 32), 4096)
    check_schema(document, "lot-event")
    for bad in ("not a hash", 12, "AB" * 32):
        with pytest.raises(payloads.Undeliverable, match="hash is not a SHA-256 in hex"):
            payloads.lot_event(_entry(prev_hash=good, hash=bad), 4096)
