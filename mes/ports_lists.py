"""The lists at plant size: which page of lots, tools or a tool's jobs a list asks for
(a query: filters, a cursor and a limit, every one applied by the store), and the page it
gets (the items, how many match in all, and whether more follow). Part of the lot tracker's
seams (:mod:`mes.ports` re-exports them)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mes.domain.equipment import ToolRecord
from mes.domain.model import JobRecord, Lot, LotState


@dataclass(frozen=True, slots=True)
class ToolJob:
    """A job of a tool, with the sites of its carrier that came in (not rejected before)."""

    job: JobRecord
    sites_in: int

    @property
    def rejected(self) -> int:
        return len(self.job.rejects)

    @property
    def yield_pct(self) -> float | None:
        """Of the sites in, the share not rejected by this job (None: no results yet)."""
        if self.job.recorded_at is None or self.sites_in <= 0:
            return None
        return 100.0 * (self.sites_in - self.rejected) / self.sites_in


@dataclass(frozen=True, slots=True)
class LotQuery:
    """Which lots a list shows, and which page of them. Lots come most urgent first
    (priority, then age, then id: an order no move changes), from the lot after ``after``
    (a lot id, the last of the page before) on, at most ``limit`` of them. Every filter is
    applied by the store (in SQL), none after."""

    states: tuple[LotState, ...] = ()
    flow: str | None = None
    step: str | None = None
    """The step the lot runs, or the last it completed while it waits (``Lot.step``)."""
    tool: str | None = None
    """The tool the lot runs on."""
    priority: int | None = None
    moved_since: datetime | None = None
    """Last moved (``updated_at``) at or after this time."""
    moved_before: datetime | None = None
    after: str | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class LotPage:
    """One page of a lot list: the lots, how many match the filters in all, and whether
    more follow the page (ask again with ``after`` = the last lot's id)."""

    lots: list[Lot]
    total: int
    more: bool
    total_exact: bool = True
    """False: more than ``total`` (:data:`mes.domain.paging.COUNTED_UP_TO`) match, counted
    no further."""


@dataclass(frozen=True, slots=True)
class ToolQuery:
    """Which tools a list shows, and which page of them: ordered by tool id, from the tool
    after ``after`` (a tool id, the last of the page before) on, at most ``limit`` of them.
    Every filter is applied by the store (in SQL), none after."""

    line: str | None = None
    """The line controller that owns the tool."""
    equipment_class: str | None = None
    e10: str | None = None
    """The tool's SEMI E10 state now (one of :data:`mes.domain.equipment.E10_STATES`)."""
    dispatch: str | None = None
    """How lots start on it: ``auto`` (the line controller) or ``manual`` (operators only;
    also a tool taken out of dispatch by its controller, quarantined)."""
    after: str | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class ToolPage:
    """One page of a tool list: the tools, how many match the filters in all, and whether
    more follow the page (ask again with ``after`` = the last tool's id)."""

    tools: list[ToolRecord]
    total: int
    more: bool


@dataclass(frozen=True, slots=True)
class ToolJobQuery:
    """Which of a tool's jobs a list shows, and which page of them: newest first (started
    at, then job id: an order nothing changes), from the job after ``after`` (a job id, the
    last of the page before) on, at most ``limit``. Every filter is applied by the store (in
    SQL): the lot, and ``since`` (included) .. ``until`` (excluded) on the start."""

    tool_id: str
    lot_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after: str | None = None
    limit: int = 20


@dataclass(frozen=True, slots=True)
class ToolJobPage:
    """One page of a tool's jobs, how many match the filters in all, and whether more
    (older) follow the page (ask again with ``after`` = the last job's id)."""

    jobs: list[ToolJob]
    total: int
    more: bool
    total_exact: bool = True
    """False: more than ``total`` (:data:`mes.domain.paging.COUNTED_UP_TO`) match, counted
    no further."""
