"""The line's lot history as a list (``lot history``, ``GET /history``): which entries a page
shows and the page. Part of the lot tracker's seams (:mod:`mes.ports` re-exports them), apart
from the reads of one lot's report (:mod:`mes.ports_lots`), which a direct-mode ``lot show``
loads alone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mes.domain.model import HistoryEntry


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """Which entries of the line's lot history a list shows, and which page of them: newest
    first (by ``seq``, the order they were written in, which nothing changes), from the entry
    before ``after`` (a ``seq``, the last of the page before) on, at most ``limit``. Every
    filter is applied by the store (in SQL): the lot, tool, user (who the entry names),
    operation and step, and ``since`` (included) .. ``until`` (excluded) on its time."""

    lot_id: str | None = None
    tool: str | None = None
    user: str | None = None
    operation: str | None = None
    step: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after: int | None = None
    limit: int = 50


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """One page of history entries, how many match the filters in all, and whether more
    (older) follow the page (ask again with ``after`` = the last entry's ``seq``)."""

    entries: list[HistoryEntry]
    total: int
    more: bool
    total_exact: bool = True
    """False: more than ``total`` (:data:`mes.domain.paging.COUNTED_UP_TO`) match, counted
    no further."""
