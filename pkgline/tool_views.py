"""What a tool looks like to its readers: the JSON of a tool, its time in state, its state
changes, alarm resets and qualifications (a contract: scripts read it), which line
controllers run, and the answers of ``tool list|show|manual|auto`` built from the equipment
service, for the CLI (``pkgline tool``, ``line status``, direct mode) and the server alike: one
builder each, so the two cannot drift."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from mes.domain.equipment import (
    CONTROLLER_STOPPED,
    E10_STATES,
    ControllerRecord,
    DispatchMode,
    E10Change,
    ResetRequest,
    StateTimes,
    ToolRecord,
)
from mes.domain.errors import UnknownTool
from mes.domain.interlocks import Qualification
from mes.domain.model import Lot, LotHead, LotState
from mes.domain.tool_down import declaration
from mes.known_tools import unknown_tool
from mes.ports import ToolJob, ToolQuery
from pkgline.controller import STALE_AFTER_S
from pkgline.page_sizes import page_answer

if TYPE_CHECKING:
    from mes.equipment import EquipmentService
    from mes.interlocks import QualificationService
    from mes.service import LotService

STOPPED = CONTROLLER_STOPPED


WINDOW_PATTERN = r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([smhdSHD])\s*$"
"""A window as ``--window`` and ``?window=`` take it (also in the OpenAPI document): ASCII
digits and a unit; not ``M``, which is months to some (minutes: ``m``)."""
_WINDOW = re.compile(WINDOW_PATTERN)


WINDOW_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_WINDOW_S = 36500 * 86400
"""The longest window back from now (a hundred years: every record a line keeps)."""


def parse_window(text: str, name: str = "--window") -> timedelta:
    """``90s``, ``30m``, ``8h``, ``2d`` as a duration; ValueError for anything else, naming
    the window as its caller gave it (``name``: the CLI's ``--window``, a query's ``window``)."""
    match = _WINDOW.match(text)
    if match is None:
        months = " (M is no unit: m for minutes, or days for months: 90d)" if "M" in text else ""
        raise ValueError(
            f"{name} {text!r}: expected a number and a unit s, m, h or d, e.g. 30m, 8h or "
            f"2d{months}"
        )
    seconds = float(match[1]) * WINDOW_UNITS[match[2].lower()]
    if seconds <= 0:
        raise ValueError(f"{name} {text!r}: the window must be longer than 0")
    if seconds > MAX_WINDOW_S:
        raise ValueError(f"{name} {text!r}: the window is at most {MAX_WINDOW_S // 86400}d")
    return timedelta(seconds=seconds)


def controller_running(record: ControllerRecord, now: datetime) -> bool:
    """Running: it has not recorded its stop, and its heartbeat is fresh."""
    age_s = (now - record.heartbeat_at).total_seconds()
    return record.status != STOPPED and age_s <= STALE_AFTER_S


async def lines_running(equipment: EquipmentService, now: datetime) -> frozenset[str]:
    """The line controllers running now (their tools' states are current)."""
    return frozenset(c.name for c in await equipment.controllers() if controller_running(c, now))


def tool_dict(record: ToolRecord, now: datetime, controller_running: bool) -> dict[str, Any]:
    """A tool as JSON; ``controller_running`` False: its state is as last recorded."""
    snap = record.snapshot
    return {
        "id": record.id,
        "line": record.line,
        "controller_running": controller_running,
        "class": record.equipment_class,
        "address": record.address,
        "steps": list(record.steps),
        "dispatch": record.dispatch.value,
        "dispatch_by": record.dispatch_by,
        "dispatch_at": record.dispatch_at.isoformat() if record.dispatch_at else None,
        "dispatch_reason": record.dispatch_reason,
        "connected": snap.connected,
        "process_state": snap.process_state,
        "mode": snap.mode,
        "e10": snap.e10,
        "e10_since": record.e10_since.isoformat(),
        "e10_for_s": round((now - record.e10_since).total_seconds(), 3),
        "lot": snap.lot_id,
        "by_hand": False,
        "job": snap.job_id,
        "sites_done": snap.sites_done,
        "sites_total": snap.sites_total,
        "alarm": dict(snap.alarm) if snap.alarm else None,
        "reason": snap.reason,
        "updated_at": record.updated_at.isoformat(),
        "down": record.down,
        "down_by": record.down_by,
        "down_at": record.down_at.isoformat() if record.down_at else None,
        "down_reason": record.down_reason,
        "reported_e10": record.reported_e10,
        "declared": declaration(record),
    }


def with_tracked_lot(tool: dict[str, Any], running: Mapping[str, Lot | LotHead]) -> dict[str, Any]:
    """``tool`` (:func:`tool_dict`) with the lot the lot tracker has running on it
    (``running``: by tool id, :func:`running_by_tool`) when the tool itself reports none: a
    step tracked in by hand on a tool in manual runs no job there, yet the tool is taken (a
    track-in of another lot on it is refused). ``by_hand`` says so. One function for the
    CLI, the API and the station (line tile, tool page)."""
    lot = running.get(tool["id"])
    tool["by_hand"] = False
    if lot is not None and _tool_of(lot) == tool["id"]:
        if not tool["lot"]:
            tool["lot"] = lot.id
        tool["by_hand"] = tool["lot"] == lot.id and _by_hand(lot)
    return tool


def _tool_of(lot: Lot | LotHead) -> str | None:
    if isinstance(lot, LotHead):
        return lot.tool
    return lot.running.tool if lot.running is not None else None


def _by_hand(lot: Lot | LotHead) -> bool:
    if isinstance(lot, LotHead):
        return lot.by_hand
    return lot.running is not None and lot.running.by_hand


def running_by_tool(lots: Iterable[Lot | LotHead]) -> dict[str, Lot | LotHead]:
    """The running lots of ``lots`` by the tool they run on (one tracked in by hand before
    another: only one lot may be tracked in by hand on a tool)."""
    found: dict[str, Lot | LotHead] = {}
    for lot in lots:
        tool = _tool_of(lot)
        if tool and (tool not in found or _by_hand(lot)):
            found[tool] = lot
    return found


async def tracked_lots(lots: LotService, tool_ids: Iterable[str]) -> dict[str, Lot | LotHead]:
    """The lots running on the tools ``tool_ids`` (:func:`running_by_tool`): one read of
    the heads of the running lots on those tools only (no carriers, no recorded values),
    whatever the number of lots the plant has."""
    wanted = sorted(set(tool_ids))
    if not wanted:
        return {}
    return running_by_tool(await lots.heads([LotState.RUNNING], tools=wanted))


def state_times_dict(times: StateTimes) -> dict[str, Any]:
    known = times.known_s
    return {
        "start": times.start.isoformat(),
        "end": times.end.isoformat(),
        "window_s": round(times.total_s, 3),
        "recorded_s": round(known, 3),
        "unmonitored_s": round(times.unmonitored_s, 3),
        "seconds": {s: round(times.seconds.get(s, 0.0), 3) for s in E10_STATES},
        "percent": {
            s: round(100.0 * times.seconds.get(s, 0.0) / known, 2) if known > 0 else None
            for s in E10_STATES
        },
        "availability_pct": None
        if times.availability is None
        else round(100.0 * times.availability, 2),
        "utilization_pct": None
        if times.utilization is None
        else round(100.0 * times.utilization, 2),
    }


def job_dict(j: ToolJob) -> dict[str, Any]:
    """A tool's job as JSON (a contract: scripts read it)."""
    return {
        "job_id": j.job.job_id,
        "lot": j.job.lot_id,
        "step": j.job.step,
        "carrier": j.job.carrier_id,
        "status": j.job.status.value,
        "started_at": j.job.started_at.isoformat(),
        "recorded_at": j.job.recorded_at.isoformat() if j.job.recorded_at else None,
        "sites_in": j.sites_in,
        "rejected": j.rejected,
        "yield_pct": None if j.yield_pct is None else round(j.yield_pct, 2),
    }


def reset_dict(r: ResetRequest) -> dict[str, Any]:
    """An alarm reset as JSON (a contract: scripts read it)."""
    return {
        "id": r.id,
        "tool": r.tool_id,
        "line": r.line,
        "status": r.status.value,
        "requested_by": r.requested_by,
        "reason": r.reason,
        "requested_at": r.requested_at.isoformat(),
        "expires_at": r.expires_at.isoformat(),
        "answered_at": r.answered_at.isoformat() if r.answered_at else None,
        "outcome": r.outcome,
        "state_after": r.state_after,
    }


def change_dict(change: E10Change) -> dict[str, Any]:
    return {
        "at": change.at.isoformat(),
        "e10": change.e10,
        "process_state": change.process_state,
        "connected": change.connected,
        "reason": change.reason,
    }


async def known_tool(equipment: EquipmentService, tool_id: str) -> ToolRecord:
    """The tool, or UnknownTool naming the tools there are."""
    try:
        return await equipment.tool(tool_id)
    except UnknownTool:
        raise unknown_tool(tool_id, [t.id for t in await equipment.tools()]) from None


def qualification_dict(q: Qualification) -> dict[str, Any]:
    """A tool's qualification for a step as JSON (a contract: scripts read it)."""
    return {
        "tool": q.tool_id,
        "step": q.step,
        "qualified": q.qualified,
        "by": q.by,
        "at": q.at.isoformat(),
        "reason": q.reason,
    }


SHOW_RESETS = 10
SHOW_JOBS = 20
"""How many of a tool's jobs in the window ``tool show`` and ``GET /tools/{tool}`` give."""
"""``tool show`` lists this many of the tool's latest alarm resets."""


def _now() -> datetime:
    return datetime.now(UTC)


TOOL_PAGE = 100
"""Tools per page of ``tool list`` as a table and of ``GET /tools`` (``limit`` to change)."""
MAX_TOOL_PAGE = 1000
"""The most tools one page holds (``GET /tools?limit=``; ``tool list --json`` reads every
tool this many at a time)."""


async def tools_page_answer(
    equipment: EquipmentService, query: ToolQuery, lots: LotService | None = None
) -> dict[str, Any]:
    """``GET /tools``: one page of tools (:func:`tool_dict` each, by id) with how many match
    in all, whether more follow, and the cursor of the next page (``next_after``). Given
    ``lots``, each with the lot tracked in on it by hand (:func:`with_tracked_lot`), read
    for the page's tools only (:func:`tracked_lots`)."""
    page = await equipment.page(query)
    now = _now()
    alive = await lines_running(equipment, now) if page.tools else frozenset()
    running = await tracked_lots(lots, (r.id for r in page.tools)) if lots is not None else {}
    rows = [with_tracked_lot(tool_dict(r, now, r.line in alive), running) for r in page.tools]
    return page_answer(rows, "tools", "id", page.total, page.more, exact=True)


async def tool_show_answer(
    equipment: EquipmentService,
    tool_id: str,
    span: timedelta,
    changes: int,
    lots: LotService | None = None,
    qualifications: QualificationService | None = None,
) -> dict[str, Any]:
    """``tool show --json``, ``GET /tools/{tool}``: the tool, its time in each E10 state over
    ``span``, its last ``changes`` state changes, its latest alarm resets, (given ``lots``)
    its newest jobs started in the window and (given ``qualifications``) the steps it is
    disqualified for, as the station's tool page shows them, and the lot tracked in on it by
    hand (:func:`with_tracked_lot`)."""
    record = await known_tool(equipment, tool_id)
    running = await tracked_lots(lots, [tool_id]) if lots is not None else {}
    disqualified = (
        [q for q in await qualifications.list(tool_id=tool_id) if not q.qualified]
        if qualifications is not None
        else []
    )
    end = _now()
    times = await equipment.state_times(tool_id, end - span, end)
    found = await equipment.changes(tool_id, end - span, end)
    resets = await equipment.resets(tool_id, SHOW_RESETS)
    alive = record.line in await lines_running(equipment, end)
    recent = found[-changes:] if changes else []
    return {
        **with_tracked_lot(tool_dict(record, times.end, alive), running),
        "window": state_times_dict(times),
        "changes_in_window": sum(1 for c in found if c.at >= times.start),
        "changes": [change_dict(c) for c in recent],
        "resets": [reset_dict(r) for r in resets],
        "disqualified": [qualification_dict(q) for q in disqualified],
        "jobs": [
            job_dict(j)
            for j in (
                await lots.tool_jobs(
                    tool_id, end - span, end + timedelta(seconds=1), limit=SHOW_JOBS
                )
                if lots is not None
                else []
            )
        ],
    }


async def dispatch_answer(
    equipment: EquipmentService,
    tool_id: str,
    mode: DispatchMode,
    user: str,
    reason: str | None,
    lots: LotService | None = None,
) -> dict[str, Any]:
    """``tool manual|auto --json``, ``POST /tools/{tool}/manual|auto``: the tool as it now is,
    as ``tool show`` gives it (given ``lots``, with the lot tracked in on it by hand:
    :func:`with_tracked_lot`; a script switching a tool would see it idle otherwise), and
    ``changed``: false when it was in that mode already (its record kept: who switched it,
    when and why)."""
    await known_tool(equipment, tool_id)
    record, changed = await equipment.switch_dispatch(tool_id, mode, user, reason)
    running = await tracked_lots(lots, [tool_id]) if lots is not None else {}
    now = _now()
    answer = tool_dict(record, now, record.line in await lines_running(equipment, now))
    return {**with_tracked_lot(answer, running), "changed": changed}


async def down_answer(
    equipment: EquipmentService,
    tool_id: str,
    down: str | None,
    user: str,
    reason: str | None,
    lots: LotService | None = None,
) -> dict[str, Any]:
    """``tool down|up --json``, ``POST /tools/{tool}/down|up``: ``down`` (an E10 state a
    person declares: :mod:`mes.domain.tool_down`), or None to bring the tool back up; the
    tool as it now is, as :func:`dispatch_answer` gives it, and ``changed``."""
    await known_tool(equipment, tool_id)
    if down is None:
        record, changed = await equipment.bring_up(tool_id, user, reason)
    else:
        record, changed = await equipment.declare_down(tool_id, down, user, reason or "")
    running = await tracked_lots(lots, [tool_id]) if lots is not None else {}
    now = _now()
    answer = tool_dict(record, now, record.line in await lines_running(equipment, now))
    return {**with_tracked_lot(answer, running), "changed": changed}
