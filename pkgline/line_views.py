"""What ``pkgline line status`` and the server's ``GET /line/status`` answer: the line
controllers, the tools, the lots running, the queue per step, the held lots and the event
feed's backlog, read from the services, as JSON (a contract: scripts read it). One builder,
so the CLI's direct mode and the server cannot drift."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mes.adapters.outbox import Backlog
from mes.domain.equipment import ControllerRecord, ToolRecord, TrackInRefusal
from mes.domain.interlocks import (
    Qualification,
    consumable_blocks,
    qualification_blocks,
    state_blocks,
)
from mes.domain.model import Lot, LotState
from mes.service import LotService
from pkgline.bootstrap import Services
from pkgline.hold_views import placed_by
from pkgline.tool_views import controller_running, running_by_tool, tool_dict, with_tracked_lot

MAY_COMPLETE = "(may complete)"


@dataclass(frozen=True, slots=True)
class QueueGroup:
    """Waiting lots whose next step (the one the controller runs next) is ``step``."""

    step: str
    equipment_class: str
    tools: tuple[ToolRecord, ...]
    lots: tuple[Lot, ...]
    blocked: dict[str, list[str]]
    """The group's tools that would refuse every track-in now (down by their E10 state, or
    for a durable or material lot on them: :attr:`LineStatus.blocked`), or every track-in of the
    group's step for their disqualification for it (an SPC inhibit, say:
    :func:`mes.domain.interlocks.qualification_blocks`), with why."""
    refused: tuple[TrackInRefusal, ...] = ()
    """The line controllers' refused track-ins of the group's lots at its step
    (:func:`refusals_of`)."""


@dataclass(frozen=True, slots=True)
class LineStatus:
    at: datetime
    controllers: tuple[ControllerRecord, ...]
    tools: tuple[ToolRecord, ...]
    running: tuple[Lot, ...]
    queue: tuple[QueueGroup, ...]
    held: tuple[Lot, ...]
    blocked: dict[str, list[str]]
    """The tools that would refuse every track-in now, with why: down by their recorded E10
    state (:func:`mes.domain.interlocks.state_blocks`), or for a durable or material lot on
    them (:func:`mes.domain.interlocks.consumable_blocks`)."""
    placed_by: Mapping[str, str] = field(default_factory=dict)
    """Who placed each held lot's hold, by lot id (:func:`hold_placers`)."""


def queue_by_step(lots: LotService, found: Iterable[Lot]) -> list[tuple[str, tuple[Lot, ...]]]:
    """The waiting lots of ``found`` grouped by the step the controller runs next (the first
    their flow allows; :data:`MAY_COMPLETE` for those that only have to be completed), steps
    in flow order, lots most urgent first (priority, then the oldest, then the id)."""
    order = {code: i for i, code in enumerate(lots.flows.step_codes)}
    waiting: dict[str, list[Lot]] = {}
    for lot in found:
        if lot.state is LotState.WAITING:
            steps = lots.next_in_order(lot)
            waiting.setdefault(steps[0] if steps else MAY_COMPLETE, []).append(lot)
    return [
        (step, tuple(sorted(waiting[step], key=lambda x: (x.priority, x.created_at, x.id))))
        for step in sorted(waiting, key=lambda s: (order.get(s, len(order)), s))
    ]


def refusals_of(
    step: str, waiting: Sequence[Lot], controllers: Iterable[ControllerRecord]
) -> tuple[TrackInRefusal, ...]:
    """What the line controllers recorded (at their last heartbeat) of their refused
    track-ins of the ``waiting`` lots at ``step``, by lot (in ``waiting``'s order) then tool:
    a refusal of a lot that has left that queue since is not shown."""
    order = {lot.id: i for i, lot in enumerate(waiting)}
    found = [r for c in controllers for r in c.refusals if r.step == step and r.lot in order]
    return tuple(sorted(found, key=lambda r: (order[r.lot], r.tool)))


async def hold_placers(lots: LotService, held: Sequence[Lot]) -> dict[str, str]:
    """Who placed each of the ``held`` lots' holds, by lot id, in the holds page's words
    (:func:`pkgline.hold_views.placed_by`: a person, the line controller, a system's API
    key), from their history entries at their holds' times read in one query
    (:meth:`mes.service.LotService.hold_placers`; a lot split off a held lot: the name its
    hold was given). ``line status`` and the station's line page."""
    entries = await lots.hold_placers(held)
    words = {}
    for lot in held:
        if lot.hold is not None:
            entry = entries.get(lot.id)
            by, auth = (entry.by, entry.auth) if entry is not None else (None, None)
            words[lot.id] = placed_by(lot.hold.user, by, auth)
    return words


async def read_status(services: Services, now: datetime) -> LineStatus:
    """Everything ``line status`` shows, read from the services."""
    lots = services.lots
    equipment = services.equipment
    controllers = await equipment.controllers()
    tools = await equipment.tools()
    found = await lots.find(
        states=[LotState.WAITING, LotState.RUNNING, LotState.HOLD], limit=1_000_000
    )
    blocks = state_blocks(tools)
    consumables = consumable_blocks(
        await services.durables.list(mounted=True),
        await services.materials.find(loaded=True),
        now,
    )
    for tool_id, why in consumables.items():
        blocks.setdefault(tool_id, []).extend(why)
    qualifications = await services.qualifications.list()
    queue = []
    for step, waiting in queue_by_step(lots, found):
        info = lots.flows.step_codes.get(step)
        group_tools = tuple(t for t in tools if step in t.steps)
        queue.append(
            QueueGroup(
                step=step,
                equipment_class=info.equipment_class if info else "-",
                tools=group_tools,
                lots=waiting,
                blocked=_group_blocks(step, group_tools, blocks, qualifications),
                refused=refusals_of(step, waiting, controllers),
            )
        )
    running = sorted(
        (lot for lot in found if lot.state is LotState.RUNNING and lot.running),
        key=lambda lot: (lot.running.since if lot.running else now, lot.id),
    )
    held = [lot for lot in found if lot.state is LotState.HOLD]
    return LineStatus(
        now,
        tuple(controllers),
        tuple(tools),
        tuple(running),
        tuple(queue),
        tuple(held),
        blocks,
        await hold_placers(lots, held),
    )


def _group_blocks(
    step: str,
    tools: Sequence[ToolRecord],
    blocks: Mapping[str, list[str]],
    qualifications: Sequence[Qualification],
) -> dict[str, list[str]]:
    """What keeps each tool of a queue group from taking its lots: what is on the tool, then
    its disqualification for the group's step."""
    disqualified = qualification_blocks(step, tools, qualifications)
    found = {t.id: [*blocks.get(t.id, []), *disqualified.get(t.id, [])] for t in tools}
    return {tool: why for tool, why in found.items() if why}


# -- JSON (a contract: scripts read it) --------------------------------------------------------


def controller_dict(record: ControllerRecord, now: datetime) -> dict[str, Any]:
    return {
        "name": record.name,
        "host": record.host,
        "pid": record.pid,
        "started_at": record.started_at.isoformat(),
        "heartbeat_at": record.heartbeat_at.isoformat(),
        "heartbeat_age_s": round((now - record.heartbeat_at).total_seconds(), 3),
        "status": record.status,
        "running": controller_running(record, now),
        "tools": list(record.tools),
    }


def status_dict(status: LineStatus, database: str) -> dict[str, Any]:
    now = status.at
    running = running_by_tool(status.running)  # the lots in progress: read already
    return {
        "database": database,
        "at": now.isoformat(),
        "controllers": [controller_dict(c, now) for c in status.controllers],
        "tools": [
            {
                **with_tracked_lot(tool_dict(t, now, _alive(status, t)), running),
                "blocked": status.blocked.get(t.id, []),
            }
            for t in status.tools
        ],
        "running": [
            {
                "lot": lot.id,
                "flow": lot.flow,
                "priority": lot.priority,
                "step": lot.running.step,
                "tool": lot.running.tool,
                "since": lot.running.since.isoformat(),
            }
            for lot in status.running
            if lot.running
        ],
        "queue": [
            {
                "step": g.step,
                "class": g.equipment_class,
                "tools": [t.id for t in g.tools],
                "count": len(g.lots),
                "lots": [lot.id for lot in g.lots],
                "priorities": [lot.priority for lot in g.lots],
                "blocked": g.blocked,
                "refused": [refusal_dict(r) for r in g.refused],
            }
            for g in status.queue
        ],
        "held": [
            {
                "lot": lot.id,
                "flow": lot.flow,
                "step": lot.step,
                "reason": lot.hold.reason,
                "source": lot.hold.source.value,
                "user": lot.hold.user,
                "placed_by": status.placed_by.get(lot.id, lot.hold.user),
                "since": lot.hold.since.isoformat(),
            }
            for lot in status.held
            if lot.hold
        ],
    }


def refusal_dict(refusal: TrackInRefusal) -> dict[str, Any]:
    """A refused track-in as ``line status --json`` gives it in its queue group."""
    return {
        "lot": refusal.lot,
        "tool": refusal.tool,
        "step": refusal.step,
        "interlock": refusal.interlock,
        "reason": refusal.reason,
        "since": refusal.since.isoformat(),
    }


def _alive_lines(status: LineStatus) -> frozenset[str]:
    return frozenset(c.name for c in status.controllers if controller_running(c, status.at))


def _alive(status: LineStatus, tool: ToolRecord) -> bool:
    return tool.line in _alive_lines(status)


def backlog_dict(backlog: Backlog, now: datetime) -> dict[str, Any]:
    """The event feed's outbox: events waiting, the oldest, the last published."""
    lag = (now - backlog.oldest_at).total_seconds() if backlog.oldest_at else 0.0
    return {
        "backlog": backlog.events,
        "oldest_waiting_at": backlog.oldest_at.isoformat() if backlog.oldest_at else None,
        "lag_s": round(lag, 3),
        "last_published_id": backlog.last_published_id,
        "last_published_at": (
            backlog.last_published_at.isoformat() if backlog.last_published_at else None
        ),
    }


def line_answer(status: LineStatus, backlog: Backlog, database: str) -> dict[str, Any]:
    """``line status --json``, ``GET /line/status``."""
    return {**status_dict(status, database), "events": backlog_dict(backlog, status.at)}
