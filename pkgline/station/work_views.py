"""What the tool and start-lot pages show, read from the service layer for the person
looking (the holds page's: :mod:`pkgline.station.holds_view`): a tool's E10 states over a
window (a timeline), its availability and utilization, recipe, recent jobs and alarms; a
flow's lot parameters with their defaults, units and claimed limits. Plain values for the
templates; no rule is decided here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape
from typing import Any

from flows import Flow
from flows.model import ValueSpec
from flows.speclimits import window_text
from mes.domain.authority import Principal
from mes.domain.equipment import E10Change
from mes.domain.interlocks import Qualification
from mes.ports import ToolJobQuery
from pkgline.bootstrap import Services
from pkgline.interlock_views import durable_status, material_status
from pkgline.station.line_view import E10_CLASS, now
from pkgline.tool_views import (
    known_tool,
    lines_running,
    state_times_dict,
    tool_dict,
    tracked_lots,
    with_tracked_lot,
)


def duration(span: timedelta) -> str:
    """``3 d 4 h``, ``2 h 5 min``, ``12 min``, ``40 s``."""
    seconds = int(span.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


# -- a tool ------------------------------------------------------------------------------------

WINDOWS = ("1h", "8h", "24h", "7d")
"""The windows the tool page offers (any ``30m``, ``2d`` ... may be typed in the URL)."""

TIMELINE_W = 1000
TIMELINE_H = 36


@dataclass(frozen=True, slots=True)
class Segment:
    start: datetime
    end: datetime
    e10: str


@dataclass(frozen=True, slots=True)
class ToolJob:
    lot_id: str
    step: str
    carrier: str
    status: str
    at: str
    """When its results were recorded, else when it started (ISO 8601)."""
    sites_in: int
    rejected: int
    yield_pct: float | None
    measured: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolView:
    tool: dict[str, Any]
    window: dict[str, Any]
    window_text: str
    segments: tuple[Segment, ...]
    timeline: str
    recipe: dict[str, Any]
    recipe_step: str | None
    jobs: tuple[ToolJob, ...]
    changes: tuple[E10Change, ...]
    alarms: tuple[E10Change, ...]
    durables: tuple[OnTool, ...]
    materials: tuple[OnTool, ...]
    jobs_total: int
    """How many jobs the tool started in the window: the page says so when ``jobs`` shows
    fewer (the newest :data:`RECENT_JOBS`), and how to see the rest."""
    jobs_total_exact: bool
    """False: more than ``jobs_total`` (the count stopped at its bound)."""
    changes_total: int
    """How many state changes the window holds, with the one before it that the timeline
    starts from (``changes`` shows the last 20)."""
    disqualified: tuple[Qualification, ...] = ()
    """The steps the tool is disqualified for (``pkgline tool disqualify``, or an SPC
    violation's inhibit): their track-ins on it are refused until it is qualified again."""


@dataclass(frozen=True, slots=True)
class OnTool:
    """A durable mounted on the tool or a material lot loaded on it, as the tool page shows
    it: its status in a word (``ok``, ``warning``, ``spent``; ``usable``, ``expired``, ``not
    thawed``, ``floor life``) and, when a track-in on the tool would be refused for it, why."""

    id: str
    kind: str
    amount: str
    """A durable's count against its life; a material lot's expiry and thaw."""
    status: str
    problem: str | None
    fine: bool
    """Nothing to look at: a track-in on the tool goes ahead for it."""


def segments_of(changes: list[E10Change], start: datetime, end: datetime) -> tuple[Segment, ...]:
    """The E10 states over ``start``..``end`` from the changes (the one before ``start``
    first, when there is one): nothing is drawn where no state is recorded."""
    ordered = sorted(changes, key=lambda c: c.at)
    out = []
    for i, change in enumerate(ordered):
        begin = max(change.at, start)
        stop = ordered[i + 1].at if i + 1 < len(ordered) else end
        stop = min(stop, end)
        if stop > begin:
            state = change.e10 if change.connected else "unmonitored"
            out.append(Segment(begin, stop, state))
    return tuple(out)


def timeline_svg(segments: tuple[Segment, ...], start: datetime, end: datetime) -> str:
    """The segments as one bar (SVG), time left to right, each segment in its E10 colour
    (the line page's tile colours, by CSS class) with a tooltip of its state and times."""
    total = (end - start).total_seconds() or 1.0
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" role="img" '
        f'viewBox="0 0 {TIMELINE_W} {TIMELINE_H + 16}" preserveAspectRatio="none" '
        f'aria-label="E10 states from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC">',
        f'<rect class="nodata" x="0" y="0" width="{TIMELINE_W}" height="{TIMELINE_H}"/>',
    ]
    for s in segments:
        x = TIMELINE_W * (s.start - start).total_seconds() / total
        w = max(TIMELINE_W * (s.end - s.start).total_seconds() / total, 0.5)
        title = f"{s.e10.replace('_', ' ')}: {s.start:%H:%M:%S} to {s.end:%H:%M:%S}"
        out.append(
            f'<rect class="seg {E10_CLASS.get(s.e10, "e10-unknown")}" data-e10="{escape(s.e10)}" '
            f'x="{x:.2f}" y="0" width="{w:.2f}" height="{TIMELINE_H}">'
            f"<title>{escape(title)}</title></rect>"
        )
    for i in range(5):
        at = start + (end - start) * (i / 4)
        x = TIMELINE_W * i / 4
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        out.append(
            f'<text x="{x:.0f}" y="{TIMELINE_H + 13}" text-anchor="{anchor}">'
            f"{at:%m-%d %H:%M}</text>"
        )
    out.append("</svg>")
    return "".join(out)


RECENT_JOBS = 20
"""How many of the tool's jobs in the window the tool page shows (the newest)."""


async def tool_view(
    services: Services, who: Principal, tool_id: str, span: timedelta, window_text: str
) -> ToolView:
    """A tool over the last ``span`` (UnknownTool naming the tools when there is none)."""
    equipment = services.equipment.acting_as(who)
    lots = services.lots.acting_as(who)
    record = await known_tool(equipment, tool_id)
    end = now()
    start = end - span
    times = await equipment.state_times(tool_id, start, end)
    changes = await equipment.changes(tool_id, start, end)
    alive = record.line in await lines_running(equipment, end)
    tool = tool_dict(record, end, alive)
    tool["e10_shown"] = tool["e10"] if alive or tool["down"] else "unmonitored"
    tool["e10_class"] = E10_CLASS.get(tool["e10_shown"], "e10-unknown")
    segments = segments_of(changes, start, end)
    tool = with_tracked_lot(tool, await tracked_lots(lots, [tool_id]))
    recipe: dict[str, Any] = {}
    recipe_step = None
    if tool["lot"]:
        try:
            running = await lots.get(tool["lot"])
        except Exception:  # the tool reports a lot the tracker does not know
            running = None
        if running is not None and running.running is not None:
            recipe, recipe_step = dict(running.running.values), running.running.step
    until = end + timedelta(seconds=1)
    jobs = await _recent_jobs(services, who, tool_id, start, until)
    in_window = await lots.tool_job_page(ToolJobQuery(tool_id, since=start, until=until, limit=1))
    durables, materials = await _on_tool(services, who, tool_id, end)
    return ToolView(
        tool,
        state_times_dict(times),
        window_text,
        segments,
        timeline_svg(segments, start, end),
        recipe,
        recipe_step,
        jobs,
        tuple(reversed(changes[-20:])),
        tuple(reversed([c for c in changes if c.process_state == "ALARM" or c.reason][-10:])),
        durables,
        materials,
        in_window.total,
        in_window.total_exact,
        len(changes),
        tuple(
            q
            for q in await services.qualifications.acting_as(who).list(tool_id=tool_id)
            if not q.qualified
        ),
    )


async def _on_tool(
    services: Services, who: Principal, tool_id: str, at: datetime
) -> tuple[tuple[OnTool, ...], tuple[OnTool, ...]]:
    """The durables mounted on the tool and the material lots loaded on it, with what a
    track-in on it would say of them at ``at`` (the interlocks' own rules)."""
    mounted = await services.durables.list(tool_id=tool_id, by=who)
    loaded = await services.materials.find(tool_id=tool_id, by=who)
    durables = []
    for d in sorted(mounted, key=lambda d: d.id):
        word = durable_status(d)
        problem = {
            "spent": "at or past its life: a track-in on this tool is refused until it is replaced",
            "warning": f"past its warning at {d.warn_at:,} {d.unit}: plan its replacement",
        }.get(word)
        amount = f"{d.count:,} of {d.life:,} {d.unit} ({100.0 * d.count / d.life:.0f} %)"
        durables.append(
            OnTool(d.id, d.kind.value.replace("_", " "), amount, word, problem, word == "ok")
        )
    materials = []
    for m in sorted(loaded, key=lambda m: m.id):
        refused = m.problem(at)
        thawed = f", thawed {m.thawed_at:%m-%d %H:%M}" if m.thawed_at is not None else ""
        materials.append(
            OnTool(
                m.id,
                m.kind.value.replace("_", " "),
                f"expires {m.expires_at:%Y-%m-%d %H:%M}{thawed}",
                material_status(m, at),
                None if refused is None else f"{refused[1]}; expected {refused[2]}",
                refused is None,
            )
        )
    return tuple(durables), tuple(materials)


async def _recent_jobs(
    services: Services, who: Principal, tool_id: str, since: datetime, until: datetime
) -> tuple[ToolJob, ...]:
    """The tool's jobs (one per carrier) started in the window, the newest first, with
    their yields: one read of the jobs, whatever the lots did since."""
    lots = services.lots.acting_as(who)
    found = await lots.tool_jobs(tool_id, since, until, limit=RECENT_JOBS)
    return tuple(
        ToolJob(
            j.job.lot_id,
            j.job.step,
            j.job.carrier_id,
            j.job.status.value,
            (j.job.recorded_at or j.job.started_at).isoformat(),
            j.sites_in,
            j.rejected,
            j.yield_pct,
            dict(j.job.measured),
        )
        for j in found
    )


# -- starting a lot -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParamField:
    name: str
    type: str
    default: Any
    unit: str | None
    expected: str
    limits: str
    description: str
    choices: tuple[Any, ...]
    spec: str = ""
    """A measured value's spec limits in words (:func:`spec_text`), shown beside its field:
    past them, the track-out holds the lot."""
    window: str = ""
    """A recipe value's set-point window in words (:func:`window_words`), shown beside its
    field: outside it, the track-in is refused."""


async def start_flow(services: Services, name: str) -> tuple[Flow, int | None]:
    """The flow a new lot of ``name`` starts on (its active version), or InvalidInput naming
    the flows."""
    lots = services.lots
    versions = lots.versions
    if versions is not None and versions.loaded:
        await versions.load()
        found = await versions.active(name)
        if found is not None:
            version, flow = found
            return flow, version
    return lots.flow(name), None


def param_fields(flow: Flow) -> tuple[ParamField, ...]:
    """A flow's lot parameters as the start form's fields."""
    return value_fields(flow.lot_params)


def value_fields(specs: Mapping[str, ValueSpec]) -> tuple[ParamField, ...]:
    """Values of a flow (lot parameters, a step's recipe or measured values) as a form's
    fields: the default, what is expected, the claimed limits with their claims, the choices,
    the spec limits (measured) or the set-point window (recipe)."""
    from flows.model import OneOf

    out = []
    for name, spec in specs.items():
        choices = tuple(
            c for lim in spec.limits if isinstance(lim.rule, OneOf) for c in lim.rule.choices
        )
        limits = "; ".join(f"{lim.describe()} ({lim.claim})" for lim in spec.limits) or "-"
        out.append(
            ParamField(
                name,
                spec.type,
                spec.default,
                spec.unit,
                spec.expected(),
                limits,
                spec.description,
                choices,
                spec_text(spec) if spec.spec is not None else "",
                window_words(spec) if spec.window is not None else "",
            )
        )
    return tuple(out)


def window_words(spec: ValueSpec) -> str:
    """A recipe value's set-point window in words, with its unit and origin: ``window 165 to
    185 degC, target 175 degC (line practice: ...)``."""
    assert spec.window is not None
    return f"window {window_text(spec.window, spec.unit)} ({spec.window.origin})"


def spec_text(spec: ValueSpec) -> str:
    """A measured value's spec limits in words, with its unit: ``spec 10.0 to 40.0 um``, a
    one-sided one ``spec at most 15.0 um`` (not ``spec 15.0``, which reads as a target),
    the target when there is one, and where they come from."""
    assert spec.spec is not None
    low, high, target = spec.spec.lower, spec.spec.upper, spec.spec.target
    unit = f" {spec.unit}" if spec.unit else ""
    if low is not None and high is not None:
        text = f"spec {low} to {high}{unit}"
    elif high is not None:
        text = f"spec at most {high}{unit}"
    elif low is not None:
        text = f"spec at least {low}{unit}"
    else:
        text = "spec"
    if target is not None:
        text += f", target {target}{unit}"
    return f"{text} ({spec.spec.origin})"
