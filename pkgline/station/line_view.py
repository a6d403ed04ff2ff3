"""What the line page shows, read from the service layer for the person looking (``by=``):
the tools (their E10 state, dispatch and lot: the job's, or one tracked in by hand), the lots
running, the queue per step (what keeps its lots waiting: the line controllers' refused
track-ins, every qualified tool in manual), the held lots and the lots completed per hour.
Plain values for the templates; no rule is decided here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mes.domain.authority import Principal
from mes.domain.equipment import DispatchMode, ToolRecord, TrackInRefusal
from mes.domain.interlocks import consumable_blocks
from mes.domain.model import Lot, LotState
from mes.ports import LotQuery
from pkgline.bootstrap import Services
from pkgline.line_views import hold_placers, queue_by_step, refusals_of
from pkgline.tool_views import lines_running, running_by_tool, tool_dict, with_tracked_lot

E10_CLASS = {
    "productive": "e10-productive",
    "standby": "e10-standby",
    "engineering": "e10-engineering",
    "scheduled_down": "e10-scheduled",
    "unscheduled_down": "e10-unscheduled",
    "non_scheduled": "e10-nonscheduled",
}
"""The CSS class (colour) of each SEMI E10 state; anything else (unmonitored) is grey."""


@dataclass(frozen=True, slots=True)
class QueueRow:
    step: str
    lots: tuple[Lot, ...]
    refused: tuple[TrackInRefusal, ...] = ()
    """The line controllers' refused track-ins of these lots at this step (what keeps them
    waiting), as ``line status`` shows them."""
    manual: tuple[str, ...] = ()
    """The tools qualified for the step when every one of them is switched to manual: no
    line controller starts these lots, an operator tracks them in by hand."""


@dataclass(frozen=True, slots=True)
class LineView:
    """The line page's content. Its lists show their first :data:`SHOWN` lots and say how
    many more there are (the page is read by a person, and reloaded every few seconds)."""

    at: datetime
    tools: tuple[dict[str, Any], ...]
    running: tuple[Lot, ...]
    queue: tuple[QueueRow, ...]
    held: tuple[Lot, ...]
    per_hour: tuple[int, ...] = ()
    """Lots completed in each hour of today (UTC) so far, from 00:00."""
    placed_by: Mapping[str, str] = field(default_factory=dict)
    """Who placed each held lot's hold, by lot id, in the holds page's words
    (:func:`pkgline.hold_views.placed_by`): a person, the line controller, a system's API
    key."""


SHOWN = 20
"""Lots the line page lists running (the longest first) and held (the oldest holds first),
saying how many more: at plant size thousands of rows would be read by nobody and sent again
at every refresh."""
SHOWN_PER_STEP = 10
"""Lots the line page names waiting at each step (the most urgent first), saying how many
more: a line has a score of steps."""


def now() -> datetime:
    return datetime.now(UTC)


async def line_view(services: Services, who: Principal) -> LineView:
    """The line as ``who`` may see it (every role may read)."""
    lots = services.lots.acting_as(who)
    equipment = services.equipment.acting_as(who)
    records = await equipment.tools()
    at = now()
    alive = await lines_running(equipment, at)
    blocks = consumable_blocks(
        await services.durables.acting_as(who).list(mounted=True),
        await services.materials.acting_as(who).find(loaded=True),
        at,
    )
    found = await lots.find(
        states=[LotState.WAITING, LotState.RUNNING, LotState.HOLD], limit=1_000_000
    )
    on_tool = running_by_tool(x for x in found if x.state is LotState.RUNNING)
    tools = []
    for record in sorted(records, key=lambda r: (r.line, r.id)):
        tool = with_tracked_lot(tool_dict(record, at, record.line in alive), on_tool)
        tool["blocked"] = blocks.get(record.id, [])
        # a person's declaration (tool down) holds whether a controller follows the tool
        e10 = tool["e10"] if tool["controller_running"] or tool["down"] else "unmonitored"
        tool["e10_shown"] = e10
        tool["e10_class"] = E10_CLASS.get(e10, "e10-unknown")
        tools.append(tool)
    controllers = await equipment.controllers()
    queue = []
    waiting_by_step = queue_by_step(lots, found)
    qualified: dict[str, set[str]] = {}
    if waiting_by_step:  # one read of the qualification table, not one per step
        for q in await services.qualifications.acting_as(who).list():
            if q.qualified:
                qualified.setdefault(q.step, set()).add(q.tool_id)
    for step, waiting in waiting_by_step:
        manual = all_in_manual(qualified.get(step, set()), records)
        queue.append(QueueRow(step, waiting, refusals_of(step, waiting, controllers), manual))
    running = tuple(  # the longest first, as line status lists them
        sorted(
            (x for x in found if x.state is LotState.RUNNING),
            key=lambda x: (x.running.since if x.running else at, x.id),
        )
    )
    held = tuple(
        sorted(
            (x for x in found if x.state is LotState.HOLD),
            key=lambda x: (x.hold.since if x.hold else at, x.id),
        )
    )
    per_hour = await lots_per_hour(services, who, at)
    words = await hold_placers(lots, held[:SHOWN])  # one query, as line status reads them
    return LineView(at, tuple(tools), running, tuple(queue), held, per_hour, words)


def all_in_manual(qualified: set[str], records: list[ToolRecord]) -> tuple[str, ...]:
    """The tools ``qualified`` for a step when there are some and all are switched to manual
    (``pkgline tool manual``), else nothing: a step no tool may run (one run on no tool, or
    none qualified) is not this."""
    dispatch = {r.id: r.dispatch for r in records if r.id in qualified}
    if not dispatch or any(d is not DispatchMode.MANUAL for d in dispatch.values()):
        return ()
    return tuple(sorted(dispatch))


async def lots_per_hour(services: Services, who: Principal, at: datetime) -> tuple[int, ...]:
    """Lots completed in each hour of today (UTC) up to ``at``, the current hour last."""
    midnight = at.replace(hour=0, minute=0, second=0, microsecond=0)
    lots = services.lots.acting_as(who)
    counts = [0] * (at.hour + 1)
    after = None
    while True:  # a page at a time (a line completes hundreds of lots a day, not millions)
        page = await lots.page(
            LotQuery(states=(LotState.COMPLETED,), moved_since=midnight, after=after, limit=1000)
        )
        for lot in page.lots:
            hour = lot.updated_at.astimezone(UTC).hour
            if lot.updated_at <= at:
                counts[hour] += 1
        if not page.more or not page.lots:
            return tuple(counts)
        after = page.lots[-1].id
