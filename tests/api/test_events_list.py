"""``pkgline events list`` and ``GET /events``: the events the outbox keeps, oldest first by id,
each the JSON document the feed publishes (a lot's, a durable's, a material lot's, or the dead
letter a malformed row went out as), a page at a time, the same through the server as on the
database: a subscriber that lost its MQTT session replays from the last id it processed, and
pages taken while the line moves lose and repeat nothing. Bad cursors and limits are refused
and an unknown account is refused and recorded."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, insert

from mes.adapters.database import create_engine
from mes.adapters.tables import outbox
from mes.domain.authority import Role
from mes.domain.identity import EventKind
from mes.service import utc_now
from tests.api.conftest import ACCOUNT, ADMIN, RunningApi, cli, start_api
from tests.events.conftest import check_schema


def _kind(event: dict[str, Any]) -> str:
    if "dead_lettered_at" in event:
        return "dead-letter"
    if "durable" in event:
        return "durable-event"
    return "material-event" if "material" in event else "lot-event"


async def _malformed_row(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(outbox).values(
                    lot_id="Q1", kind="LotStarted", payload="not a history entry",
                    created_at=utc_now(),
                )
            )  # fmt: skip
    finally:
        await engine.dispose()


async def test_the_feeds_events_page_by_id_the_same_through_the_server_and_on_the_database(
    api: RunningApi,
) -> None:
    await api.roles(Role.OPERATOR, Role.TECHNICIAN)
    via = ("--server", f"unix://{api.socket}")
    for lot in ("Q1", "Q2"):
        assert (await cli("lot", "start", lot, "--flow", "fo-organic", *via)).returncode == 0
    added = await cli("durable", "add", "CAP-7", "--kind", "capillary", "--life", "500", *via)
    assert added.returncode == 0, added.stderr
    await _malformed_row(api.db)

    whole = await cli("events", "list", "--json", *via)
    direct = await cli("events", "list", "--json", "--db", api.db)
    assert whole.returncode == direct.returncode == 0, whole.stderr + direct.stderr
    events = json.loads(whole.stdout)
    assert events == json.loads(direct.stdout)
    assert [(e["id"], e["kind"]) for e in events] == [
        (1, "LotStarted"),
        (2, "LotStarted"),
        (3, "DurableAdded"),
        (4, "LotStarted"),  # the malformed row, as the dead letter it went out as
    ]
    for event in events:
        check_schema(event, _kind(event))
    assert events[2]["durable"] == "CAP-7" and events[2]["user"] == ACCOUNT
    assert events[3]["reason"] == "payload is a str, expected a history entry"

    # a replay from an id, a page at a time, while the line moves between the pages
    seen: list[int] = []
    after = 0
    for n in range(10):
        page = await cli("events", "list", "--json", "--limit", "2", "--after", str(after), *via)
        assert page.returncode == 0, page.stderr
        seen += [e["id"] for e in json.loads(page.stdout)]
        notice = json.loads(page.stderr.splitlines()[-1])
        if n < 2:  # new events committed meanwhile
            moved = await cli("lot", "hold", f"Q{n + 1}", "--reason", "look", *via)
            assert moved.returncode == 0, moved.stderr
        if not notice["more"]:
            break
        after = notice["next_after"]
    assert seen == [1, 2, 3, 4, 5, 6], "every event once, in id order"
    assert notice["total"] == 6 and notice["mode"].startswith("via server")

    text = await cli("events", "list", "--after", "2", "--limit", "2", *via)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert "CAP-7  DurableAdded  count 0 of 500 touchdowns" in lines[0]
    assert "Q1  LotStarted  dead letter: payload is a str" in lines[1]
    # of the 4 events after #2, not of the 6 the outbox keeps ("2 of 6 events" said the
    # whole outbox's count as if it were what follows the cursor)
    assert lines[-1] == (
        "2 shown of 4 after #2; 6 in all; more follow: the same command with --after 4"
    )
    direct_text = await cli("events", "list", "--after", "2", "--limit", "2", "--db", api.db)
    assert direct_text.stdout.splitlines()[-1] == lines[-1], direct_text.stderr
    first = await cli("events", "list", "--limit", "2", *via)
    assert first.stdout.splitlines()[-1].startswith("2 of 6 events; more follow")
    async with api.client() as client:
        answer = (await client.get("/events", params={"after": 2, "limit": 2})).json()
        whole = (await client.get("/events", params={"limit": 2})).json()
    assert (answer["total"], answer["total_after"], answer["total_after_exact"]) == (6, 4, True)
    assert (whole["total"], whole["total_after"]) == (6, 6)

    for args, said in (
        (("--after", "-1"), "-1 is not in the range"),
        (("--after", "32589158477190044729"), "32589158477190044729 is not in the range"),
        (("--limit", "0"), "0 is not in the range 1<=x<=10000"),
        (("--after", "soon"), "'soon' is not a valid int"),
    ):
        for mode in (via, ("--db", api.db)):
            refused = await cli("events", "list", *args, *mode)
            assert refused.returncode == 2 and said in refused.stderr, refused.stderr
    async with api.client() as client:
        for query, field in (
            ("after=-1", "after"),
            ("after=32589158477190044729", "after"),  # past the 64 bits ids are kept in
            ("limit=0", "limit"),
            ("limit=x", "limit"),
        ):
            answer = await client.get(f"/events?{query}")
            assert answer.status_code == 422, query
            assert answer.json()["error"] == "invalid_request" and field in answer.text


async def test_an_unknown_account_reads_no_event_and_is_recorded(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with start_api(sqlite_url, tmp_path / "api.sock", user=False) as api:
        async with api.client() as client:
            refused = await client.get("/events")
        assert refused.status_code == 401 and refused.json()["error"] == "login_refused"
        events = await api.state.identity.events(ADMIN)
        assert any(e.kind is EventKind.LOGIN_FAILED and e.actor == ACCOUNT for e in events)


async def _pruned(url: str, below: int) -> None:
    """The outbox as the retention leaves it: the events below id ``below`` deleted."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(delete(outbox).where(outbox.c.seq < below))
    finally:
        await engine.dispose()


async def test_a_replay_past_the_newest_id_is_refused_and_one_before_the_oldest_is_warned(
    api: RunningApi,
) -> None:
    """A subscriber whose last id the database never issued (it was restored from an older
    backup, or is another line's) was answered an empty page, as if nothing had happened
    since: it would then skip every event up to its id. One whose last id is older than
    what the retention keeps is told that events after it are gone."""
    await api.roles(Role.OPERATOR)
    via = ("--server", f"unix://{api.socket}")
    for lot in ("Q1", "Q2", "Q3", "Q4"):
        assert (await cli("lot", "start", lot, "--flow", "fo-organic", *via)).returncode == 0

    for mode in (via, ("--db", api.db)):
        refused = await cli("events", "list", "--after", "5", "--json", *mode)
        assert refused.returncode == 1, refused.stderr
        said = json.loads(refused.stdout)
        assert said["error"] == "invalid_input"
        assert "there is no event 5 to list the events after: the newest is 4" in said["message"]
        newest = await cli("events", "list", "--after", "4", *mode)
        assert newest.stdout.startswith("0 shown of 0 after #4; 4 in all"), newest.stdout
    async with api.client() as client:
        answer = await client.get("/events?after=5")
        assert answer.status_code == 422 and "the newest is 4" in answer.json()["message"]
        whole = (await client.get("/events")).json()
        assert (whole["oldest"], whole["newest"], whole["gap"]) == (1, 4, None)

    await _pruned(api.db, 3)
    for mode in (via, ("--db", api.db)):
        late = await cli("events", "list", "--after", "1", "--json", *mode)
        assert late.returncode == 0, late.stderr
        assert [e["id"] for e in json.loads(late.stdout)] == [3, 4]
        assert (
            "warning: the oldest event kept is 3: the events after 1 and before it, if there "
            "were any, are past the retention and no longer kept"
        ) in late.stderr
        in_time = await cli("events", "list", "--after", "2", *mode)
        assert in_time.returncode == 0 and "warning" not in in_time.stderr, in_time.stderr


@pytest.mark.postgres
async def test_a_page_never_passes_over_an_id_a_transaction_still_holds_on_postgresql(
    pg_api: RunningApi,
) -> None:
    """PostgreSQL hands out ids before commit: with a transaction holding id N uncommitted
    while a move committed N+1, ``after=N-1`` answered N+1 alone, and a consumer asking on
    ``after=N+1`` never saw N. The page now waits for the holder (up to HOLE_WAIT_S), or
    ends before the hole (``more``: true); a hole no transaction holds is passed over."""
    async with pg_api.client() as client:
        assert (
            await client.post(
                "/lots", json={"lot": "H1", "flow": "fo-organic", "params": {"layers": "3"}}
            )
        ).status_code == 201
        first = (await client.get("/events")).json()["newest"]
        engine = create_engine(pg_api.db)
        try:
            # a writer holding the next id, committing a moment after the move's
            async with engine.connect() as conn:
                trans = await conn.begin()
                await conn.execute(insert(outbox).values(**_ROW))
                moved = await client.post("/lots/H1/track-in", json={"step": "SUBSTRATE_PREP"})
                assert moved.status_code == 200, moved.text
                reading = asyncio.create_task(client.get("/events", params={"after": first}))
                await asyncio.sleep(0.3)
                assert not reading.done()  # it waits for the holder
                await trans.commit()
            page = (await reading).json()
            assert [e["id"] for e in page["events"]] == [first + 1, first + 2], page
            # held past the wait: the page ends before the hole, and says more follow
            async with engine.connect() as conn:
                trans = await conn.begin()
                await conn.execute(insert(outbox).values(**_ROW))
                moved = await client.post("/lots/H1/abort", json={"reason": "x"})
                assert moved.status_code == 200, moved.text
                held = (await client.get("/events", params={"after": first + 2})).json()
                assert (held["events"], held["more"], held["next_after"]) == ([], True, first + 2)
                await trans.rollback()  # a hole for good now: passed over
            page = (await client.get("/events", params={"after": first + 2})).json()
            assert [e["id"] for e in page["events"]] == [first + 4] and not page["more"], page
        finally:
            await engine.dispose()


_ROW = {"lot_id": "H1", "kind": "LotHeld", "payload": {"v": 1}, "created_at": utc_now()}


async def test_a_consumer_polling_the_newest_page_goes_on_from_next_after_and_sees_each_event_once(
    api: RunningApi,
) -> None:
    """A consumer following the outbox by polling ``GET /events`` takes ``after`` =
    ``next_after`` every time, as docs/api.md says. The newest page (``more`` false) used to
    answer ``next_after`` null: taken as the next cursor, the request had no ``after`` and
    replayed every event kept from the oldest (found by a probe paging while the line ran)."""
    async with api.client() as client:

        async def poll(after: int) -> dict[str, Any]:
            answer = await client.get("/events", params={"after": after, "limit": 2})
            assert answer.status_code == 200, answer.text
            page: dict[str, Any] = answer.json()
            return page

        seen: list[int] = []
        after = 0
        for round_ in range(3):
            for _ in range(3):  # the line moves: three events committed
                await _malformed_row(api.db)
            while True:
                page = await poll(after)
                seen += [e["id"] for e in page["events"]]
                assert isinstance(page["next_after"], int), page
                after = page["next_after"]
                if not page["more"]:
                    break
            assert after == 3 * (round_ + 1), "the next cursor is the newest event shown"
        quiet = await poll(after)
        assert (quiet["events"], quiet["more"], quiet["next_after"]) == ([], False, after)
    assert seen == list(range(1, 10)), "every event once, in id order"
