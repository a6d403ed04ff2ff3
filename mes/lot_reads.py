"""The work of ``lot show``'s report, written once for every store (:data:`mes.ports.Work`):
the lot service runs it in a read transaction of its store, and the direct-mode CLI on a
SQLite file with the standard library alone (:mod:`mes.adapters.sqlite_reads`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from flows import Flow
from mes.domain.common import no_lot
from mes.domain.model import HistoryEntry, Lot, LotState, Operation
from mes.domain.report import LotReport, build_report, hold_entry
from mes.ports_lots import (
    GetHistoryAt,
    GetHoldEntries,
    Read,
    get_carriers,
    get_children,
    get_history,
    get_lot,
    get_refusals,
    get_rejects,
    get_signatures,
    get_tool_state,
)
from mes.ports_together import each_together

if TYPE_CHECKING:  # a direct read of a report imports the lot store's requests alone
    from mes.ports import Work


def report_work(lot_id: str, flow_of: Callable[[Lot], Flow]) -> Read[LotReport]:
    """Everything ``lot show`` tells of a lot, checked against the flow ``flow_of`` gives
    for it (an unknown lot: :class:`UnknownLot`)."""
    lot = yield from get_lot(lot_id)
    if lot is None:
        raise no_lot(lot_id)
    history = yield from lineage_history(lot_id)
    lots = sorted({e.lot_id for e in history} | {lot_id})
    tool = lot.running.tool if lot.running is not None else None
    return build_report(
        lot,
        flow_of(lot),
        (yield from get_carriers(lot_id)),
        (yield from get_rejects(lot_id)),
        history,
        (yield from get_children(lot_id)),
        (yield from get_signatures(lots)),
        (yield from get_tool_state(tool)) if tool is not None else None,
        (yield from get_refusals(lot_id)) if lot.state is LotState.WAITING else (),
    )


def lineage_history(lot_id: str) -> Read[list[HistoryEntry]]:
    """A lot's history preceded by its ancestors' history up to each split."""
    own = yield from get_history(lot_id)
    if own and own[0].operation is Operation.SPLIT_FROM:
        parent = str(own[0].data.get("parent"))
        inherited: list[HistoryEntry] = []
        seen = {lot_id}
        before = own[0].seq
        while parent not in seen:
            seen.add(parent)
            rows = yield from get_history(parent, before_seq=before)
            inherited = rows + inherited
            if not rows or rows[0].operation is not Operation.SPLIT_FROM:
                break
            parent, before = str(rows[0].data.get("parent")), rows[0].seq
        return inherited + own
    return own


def hold_entries(lots: Sequence[Lot]) -> Work[dict[str, HistoryEntry]]:
    """The history entry that placed each held lot's hold, by lot id
    (:func:`mes.domain.report.hold_entry`: who placed it; a lot whose entry is not found is
    left out), read side by side: the entries of each lot at its hold's time, not its
    history (the holds page reads every held lot's); a lot's whole lineage only where its
    own has none (split off a held lot: its parent placed the hold)."""
    found = yield from each_together(_hold_entry(lot) for lot in lots)
    return {lot.id: e for lot, e in zip(lots, found, strict=True) if e is not None}


def hold_placers(lots: Sequence[Lot]) -> Work[dict[str, HistoryEntry]]:
    """:func:`hold_entries` in one query whatever the number of lots (``line status``: every
    held lot of the line): each held lot's entries at its hold's time; then, for the few whose
    own history has none (split off a held lot: its parent placed the hold), their lineage,
    side by side, as the holds page and ``lot show`` read it."""
    held = [lot for lot in lots if lot.hold is not None]
    if not held:
        return {}
    holds = tuple((lot.id, lot.hold.since) for lot in held if lot.hold is not None)
    entries: list[HistoryEntry] = yield GetHoldEntries(holds)
    by_lot: dict[str, list[HistoryEntry]] = {}
    for e in entries:
        by_lot.setdefault(e.lot_id, []).append(e)
    found = {lot.id: hold_entry(lot, by_lot.get(lot.id, [])) for lot in held}
    split_off = [lot for lot in held if found[lot.id] is None]
    inherited = yield from each_together(_lineage_hold_entry(lot) for lot in split_off)
    found.update(zip((lot.id for lot in split_off), inherited, strict=True))
    return {lot_id: e for lot_id, e in found.items() if e is not None}


def _lineage_hold_entry(lot: Lot) -> Work[HistoryEntry | None]:
    return hold_entry(lot, (yield from lineage_history(lot.id)))


def _hold_entry(lot: Lot) -> Work[HistoryEntry | None]:
    if lot.hold is None:
        return None
    at: list[HistoryEntry] = yield GetHistoryAt(lot.id, lot.hold.since)
    entry = hold_entry(lot, at)
    if entry is None:
        entry = yield from _lineage_hold_entry(lot)
    return entry
