"""The event feed (``GET /events``) and the histories (``GET /lots/{lot}``, ``/durables/{id}``,
``/materials/{id}``) tell the same events, some keys under other names: what docs/events.md's
table "The feed's names and the histories'" (and docs/api.md's) says corresponds does, the
same event's values under the two names, and the table names each pair."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mes.domain.authority import Role
from tests.api.conftest import ADMIN, START, RunningApi

DOCS = Path(__file__).resolve().parents[2] / "docs"

LOT_NAMES = {"time": "at", "history_seq": "seq", "kind": "event", "user": "user", "by": "by"}
"""A lot-event's key -> the lot history entry's key for the same value."""
SUBJECT_NAMES = {"time": "at", "event": "event", "user": "by"}
"""A durable-event's or material-event's key -> its history entry's key."""
SAME = ("lot", "auth", "operation", "step", "tool", "state_before", "state_after", "reason",
        "prev_hash", "hash", "data")  # fmt: skip
"""A lot-event's keys that its history entry has under the same name."""


def _table_rows(path: Path, heading: str) -> list[list[str]]:
    """The rows of the first table after ``heading`` in ``path``, each a list of cells."""
    text = path.read_text(encoding="utf-8")
    assert heading in text, f"{path.name} has no {heading!r}"
    rows = []
    for line in text[text.index(heading) :].splitlines()[1:]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif rows:
            break
    return rows[2:]  # past the header and its rule


def _names_pair(rows: list[list[str]], feed: str, history: str, column: int) -> bool:
    """Whether a row names ``feed`` first in the feed's column and ``history`` first in the
    history's ``column``."""
    return any(
        row[1].startswith(f"`{feed}`") and row[column].startswith(f"`{history}`") for row in rows
    )


def test_the_docs_tables_name_each_pair_of_names() -> None:
    tables = {
        "events.md": "## The feed's names and the histories'",
        "api.md": "**The feed's names and the histories'.**",
    }
    for doc, heading in tables.items():
        rows = _table_rows(DOCS / doc, heading)
        for feed, history in LOT_NAMES.items():
            assert _names_pair(rows, feed, history, 2), (doc, feed, history)
        for feed, history in SUBJECT_NAMES.items():
            if feed == "event":  # the same name: said in the fact's row
                continue
            assert _names_pair(rows, feed, history, 3), (doc, feed, history)


async def _get(api: RunningApi, path: str) -> Any:
    async with api.client() as client:
        answered = await client.get(path)
    assert answered.status_code == 200, answered.text
    return answered.json()


async def test_the_same_event_has_the_same_values_under_the_feeds_and_the_historys_names(
    api: RunningApi,
) -> None:
    await api.roles(Role.OPERATOR, Role.TECHNICIAN)
    async with api.client() as client:
        assert (await client.post("/lots", json=START)).status_code == 201
        assert (await client.post("/lots/A1/hold", json={"reason": "look"})).status_code == 200
    services = api.state.services
    # a name given that is not the principal's (as a script's --user in direct mode)
    await services.durables.add("CAP-7", "capillary", 1000, "eng1", by=ADMIN)
    expiry = datetime(2099, 12, 31, tzinfo=UTC)
    await services.materials.add("W-1", "wire", expiry, "eng1", by=ADMIN)

    feed = (await _get(api, "/events?after=0"))["events"]
    lot_events = [e for e in feed if e.get("lot") == "A1" and "history_seq" in e]
    history = (await _get(api, "/lots/A1"))["history"]
    assert len(lot_events) == len(history) == 2
    by_seq = {entry["seq"]: entry for entry in history}
    for event in lot_events:
        entry = by_seq[event["history_seq"]]
        for feed_key, history_key in LOT_NAMES.items():
            assert event[feed_key] == entry[history_key], (feed_key, history_key)
        for key in SAME:
            assert event[key] == entry[key], key
        assert "id" not in entry and "time" not in entry  # the names are the feed's only

    for subject, path in (("durable", "/durables/CAP-7"), ("material", "/materials/W-1")):
        [event] = [e for e in feed if e.get(subject) is not None]
        [entry] = (await _get(api, path))["history"]
        for feed_key, history_key in SUBJECT_NAMES.items():
            assert event[feed_key] == entry[history_key], (subject, feed_key, history_key)
        assert entry["by"] == "eng1" == event["user"]  # the history's by is the name given
    [material] = [e for e in feed if e.get("material") is not None]
    assert (material["by"], material["auth"]) == (ADMIN.name, "file_owner")  # who acted
