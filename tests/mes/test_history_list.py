"""The line's lot history as a list (``lot history``, ``GET /history``): newest first, pages
after a cursor that lose or repeat no entry while lots move, filters applied by the store
(lot, tool, user, operation, step, time window), how many match and whether more follow; on
every store."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mes.domain import commands as cmd
from mes.domain.errors import InvalidInput
from mes.ports import HistoryQuery
from mes.service import LotService
from tests.mes.conftest import Clock


async def _moved(service: LotService, lot_id: str, user: str = "op") -> None:
    lot = await service.get(lot_id)
    step = service.next_in_order(lot)[0]
    await service.track_in(cmd.TrackIn(lot_id, step, user))
    await service.track_out(cmd.TrackOut(lot_id, user))


async def _every_entry(service: LotService) -> list[int]:
    page = await service.history_page(HistoryQuery(limit=10_000))
    return [e.seq or 0 for e in page.entries]


async def test_pages_newest_first_show_every_entry_once_while_lots_move(
    service: LotService,
) -> None:
    for i in range(6):
        await service.start(cmd.StartLot(f"H{i}", "stiffener-bga", "op"))
    before = await _every_entry(service)
    assert before == sorted(before, reverse=True) and len(before) == 6
    seen: list[int] = []
    query = HistoryQuery(limit=4)
    page = await service.history_page(query)
    assert (page.total, page.more) == (6, True)
    while True:
        seen.extend(e.seq or 0 for e in page.entries)
        await _moved(service, "H0")  # newer entries come on top: no page after shifts
        if not page.more:
            break
        query = HistoryQuery(limit=4, after=page.entries[-1].seq)
        page = await service.history_page(query)
    assert seen == before
    now = await service.history_page(HistoryQuery(limit=1))
    assert now.total == 6 + 2 * 2 and now.entries[0].operation.value == "track_out"


async def test_filters_are_the_stores_and_the_total_counts_what_they_select(
    service: LotService, clock: Clock
) -> None:
    await service.start(cmd.StartLot("A", "stiffener-bga", "op"))
    await service.start(cmd.StartLot("B", "stiffener-bga", "op"))
    clock.now += timedelta(hours=2)
    middle = clock()
    await _moved(service, "A", user="ann")
    await service.hold(cmd.HoldLot("B", "qa", "look at it"))

    async def ops(**given: object) -> list[tuple[str, str]]:
        page = await service.history_page(HistoryQuery(limit=100, **given))  # type: ignore[arg-type]
        assert page.total == len(page.entries) and not page.more
        return [(e.lot_id, e.operation.value) for e in page.entries]

    assert await ops(lot_id="A") == [("A", "track_out"), ("A", "track_in"), ("A", "start")]
    assert await ops(user="ann") == [("A", "track_out"), ("A", "track_in")]
    assert await ops(operation="hold") == [("B", "hold")]
    assert await ops(step="SUBSTRATE_LOAD") == [("A", "track_out"), ("A", "track_in")]
    assert await ops(since=middle) == [("B", "hold"), ("A", "track_out"), ("A", "track_in")]
    assert await ops(until=middle) == [("B", "start"), ("A", "start")]
    assert await ops(lot_id="B", until=middle) == [("B", "start")]
    assert await ops(tool="NOWHERE") == []


async def test_a_window_that_ends_before_it_starts_or_an_empty_page_is_refused(
    service: LotService, clock: Clock
) -> None:
    at = clock()
    with pytest.raises(InvalidInput, match="not after its end"):
        await service.history_page(HistoryQuery(since=at, until=at - timedelta(seconds=1)))
    with pytest.raises(InvalidInput, match="1 entry or more"):
        await service.history_page(HistoryQuery(limit=0))


async def test_a_cursor_that_names_no_entry_is_refused(service: LotService) -> None:
    """Past the newest entry the page was the newest entries, as if no cursor was given."""
    await service.start(cmd.StartLot("H0", "stiffener-bga", "op"))
    newest = (await _every_entry(service))[0]
    for after in (newest + 1, 10**12):
        with pytest.raises(InvalidInput, match=f"there is no history entry {after} to list"):
            await service.history_page(HistoryQuery(after=after))
    assert (await service.history_page(HistoryQuery(after=newest))).entries == []
