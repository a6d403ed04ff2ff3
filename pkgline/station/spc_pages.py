"""The SPC pages: the charts set (``pkgline spc list``) and one chart (``pkgline spc show``)
drawn in server-rendered SVG (an individuals chart; a subgroup chart's X-bar chart over its
S chart): its last :data:`SHOWN` points in order,
the centre line and control limits, the spec limits, the points that broke a rule marked and
listed with their lots, Cpk and Ppk. Each page is one call of the SPC service for the person
logged in (its READ, as the API's ``GET /spc/charts``); nothing here decides a rule."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from fastapi import APIRouter, Request, Response

from mes.domain.errors import InvalidInput, LotTrackerError, UnknownTool
from mes.domain.model import HistoryEntry
from mes.domain.spc import KIND_TEXT, RULES, SPREAD, ChartKind, Point, c4, spread_limits
from mes.spc import ChartView
from pkgline.api.auth import state_of
from pkgline.api.errors import status_of
from pkgline.station import login as auth
from pkgline.station.render import Viewer, env, page, quote

router = APIRouter(prefix=auth.PREFIX, include_in_schema=False)

SHOWN = 100
"""How many of a chart's points its page draws and lists (the newest); it says how many
older ones there are (``pkgline spc show --json`` gives every one)."""

MAX_NAME = 64
W, H, PAD_L, PAD_R, PAD_Y = 900, 260, 8, 60, 14


@dataclass(frozen=True, slots=True)
class ShownViolation:
    rule: int
    text: str
    points: tuple[tuple[int, str], ...]
    """(point number from 1 over the whole chart, its lot)."""


@dataclass(frozen=True, slots=True)
class ShownChart:
    view: ChartView
    first: int
    """The number (from 0) of the first point shown: how many older points are not."""
    points: tuple[Point, ...]
    broke: frozenset[int]
    """The numbers of the points (over the whole chart) that broke a rule."""
    violations: tuple[ShownViolation, ...]
    older_violations: int
    svg: str
    limits: str
    """The limits in words, or why there are none yet."""


def spc_charts_of(history: Sequence[HistoryEntry], lot_id: str) -> list[tuple[str, str, str]]:
    """The charts (step, value, tool) whose violations the lot's last SPC hold records (the
    track-out entry that held it: its ``spc`` data), for the lot page's links."""
    for entry in reversed(history):
        found = entry.data.get("spc") if entry.lot_id == lot_id else None
        if found and entry.step is not None and entry.tool is not None:
            values = dict.fromkeys(str(v.get("value")) for v in found if isinstance(v, dict))
            return [(entry.step, value, entry.tool) for value in values]
    return []


env.globals["spc_charts_of"] = spc_charts_of  # the lot page's links from an SPC hold


def _name(what: str, text: str | None) -> str | None:
    """A problem with a step, value or tool named in the address, or None."""
    if text is None:
        return None
    if not text or len(text) > MAX_NAME or "\x00" in text or not text.isprintable():
        return f"{what}: expected a name of 1 to {MAX_NAME} printable characters"
    return None


def _limits(v: ChartView) -> str:
    c = v.chart
    if c.center is not None and c.sigma is not None and c.kind is ChartKind.SUBGROUP:
        return (
            f"centre {c.center:.4g}, sigma {c.sigma:.4g} (of one carrier's value); a lot of n "
            f"carriers: centre +- 3 sigma / sqrt(n), and its spread s against the S chart's "
            f"limits ({c.limits_source})"
        )
    if c.center is not None and c.sigma is not None:
        return (
            f"centre {c.center:.4g}, sigma {c.sigma:.4g}, UCL {c.ucl:.4g}, LCL {c.lcl:.4g} "
            f"({c.limits_source})"
        )
    count = v.total or len(v.points)
    if count < c.baseline_n:
        return f"no limits yet: baseline {count} of {c.baseline_n} points"
    return (
        f"no limits yet: the last {c.baseline_n} points do not vary (the limits come from "
        f"the first {c.baseline_n} in a row that do)"
    )


def shown(v: ChartView, last: int = SHOWN) -> ShownChart:
    """What the page shows of ``v``: its newest ``last`` points (of the whole chart's, or of
    the newest the service read: ``v.total``) and the violations among them (a violation is
    listed when its last point is shown)."""
    read_from = (v.total or len(v.points)) - len(v.points)  # the number of v.points[0]
    first = read_from + max(len(v.points) - last, 0)
    points = tuple(v.points[first - read_from :])
    broke = frozenset(
        {i for x in v.violations for i in x.points}
        | {first + n for n, p in enumerate(points) if p.rules}
    )
    listed = [x for x in v.violations if x.points and max(x.points) >= first]
    violations = tuple(
        ShownViolation(
            x.rule,
            RULES[x.rule],
            tuple(
                (i + 1, v.points[i - read_from].lot_id)
                for i in x.points
                if 0 <= i - read_from < len(v.points)
            ),
        )
        for x in listed
    )
    older = len(v.violations) - len(listed)
    svg = chart_svg(v, first, points, broke)
    return ShownChart(v, first, points, broke, violations, older, svg, _limits(v))


@dataclass(frozen=True, slots=True)
class Series:
    """What one SVG chart draws: a value per point (None: no point there), the lines across
    it (each a value per point: a subgroup chart's limits follow each lot's n) and which
    points broke its rules."""

    label: str
    caption: str
    """What is drawn, in a few words, at the chart's top left."""
    ys: tuple[float | None, ...]
    lines: tuple[tuple[str, str, tuple[float | None, ...]], ...]
    """(kind: ucl, center, lcl or spec; its name; its value at each point, None where it has
    none: an S chart's at a lot of one carrier)."""
    broke: frozenset[int]


def _broke(v: ChartView, first: int, points: tuple[Point, ...], spread: bool) -> frozenset[int]:
    """The numbers of the points that broke the S chart's rule (``spread``) or the others."""

    def ours(rule: int) -> bool:
        return (rule == SPREAD) == spread

    return frozenset(
        {i for x in v.violations if ours(x.rule) for i in x.points}
        | {first + n for n, p in enumerate(points) if any(ours(r) for r in p.rules)}
    )


def _series(v: ChartView, first: int, points: tuple[Point, ...], broke: frozenset[int]) -> Series:
    """The chart of the points' values (an individuals or X-bar chart): its control limits
    (at each point's n) dashed, the spec limits solid (individual values: not on an X-bar
    chart, whose points are means)."""
    c = v.chart
    lines: list[tuple[str, str, tuple[float | None, ...]]] = []
    if c.center is not None and c.sigma is not None:
        at = [c.limits_for(p.n) or (c.center, c.center) for p in points]
        lines += [
            ("ucl", "UCL", tuple(hi for _, hi in at)),
            ("center", "CL", tuple(c.center for _ in points)),
            ("lcl", "LCL", tuple(lo for lo, _ in at)),
        ]
    if c.kind is ChartKind.SUBGROUP:
        broke = _broke(v, first, points, spread=False)
    if c.kind is not ChartKind.SUBGROUP:
        for name, spec in (("USL", v.spec_upper), ("LSL", v.spec_lower)):
            if spec is not None:
                lines.append(("spec", name, tuple(spec for _ in points)))
    what = "lot means" if c.kind is ChartKind.SUBGROUP else "points"
    label = f"{c.step} {c.value} on {c.tool_id}: {len(points)} {what}"
    caption = {
        ChartKind.LOT: "each lot's value",
        ChartKind.CARRIER: "each carrier's value",
        ChartKind.SUBGROUP: "X-bar: the mean of each lot's carriers",
    }[c.kind]
    return Series(label, caption, tuple(p.x for p in points), tuple(lines), broke)


def _spread_series(v: ChartView, first: int, points: tuple[Point, ...]) -> Series:
    """A subgroup chart's S chart: each lot's spread against the limits of its n."""
    c, sigma = v.chart, v.chart.sigma
    lines: list[tuple[str, str, tuple[float | None, ...]]] = []
    if sigma is not None:
        at = [spread_limits(sigma, p.n) if p.n >= 2 else None for p in points]
        lines = [
            ("ucl", "UCL", tuple(None if x is None else x[1] for x in at)),
            ("center", "CL", tuple(c4(p.n) * sigma if p.n >= 2 else None for p in points)),
            ("lcl", "LCL", tuple(None if x is None else x[0] for x in at)),
        ]
    label = f"{c.step} {c.value} on {c.tool_id}: the spread (s) of each lot's carriers"
    broke = _broke(v, first, points, spread=True)
    caption = "S: the spread (standard deviation) of each lot's carriers"
    return Series(label, caption, tuple(p.s for p in points), tuple(lines), broke)


def chart_svg(v: ChartView, first: int, points: tuple[Point, ...], broke: frozenset[int]) -> str:
    """The points as an individuals chart, or a subgroup chart's X-bar chart with its S chart
    below (SVG, no script): values in order, the centre line and control limits dashed, the
    spec limits solid; a point that broke a rule in red, each a link to its lot's page with a
    tooltip of its number, lot (and carrier, or n and s), value and time."""
    svg = _svg(_series(v, first, points, broke), first, points, "spc-chart")
    if v.chart.kind is ChartKind.SUBGROUP:
        svg += _svg(_spread_series(v, first, points), first, points, "spc-chart spc-spread")
    return svg


def _svg(series: Series, first: int, points: tuple[Point, ...], css: str) -> str:
    drawn = series.lines
    ys = [y for y in series.ys if y is not None]
    ys += [y for _, _, at in drawn for y in at if y is not None]
    low, high = (min(ys), max(ys)) if ys else (0.0, 1.0)
    if high - low < 1e-12:
        low, high = low - 1.0, high + 1.0
    span = high - low
    low, high = low - span * 0.05, high + span * 0.05

    def y_of(x: float) -> float:
        return PAD_Y + (H - 2 * PAD_Y) * (high - x) / (high - low)

    inner = W - PAD_L - PAD_R
    step = inner / max(len(points) - 1, 1)

    def x_of(n: int) -> float:
        return PAD_L + (step * n if len(points) > 1 else inner / 2)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{css}" role="img" '
        f'viewBox="0 0 {W} {H}" aria-label="{escape(series.label)}">',
        f'<rect class="plot" x="0" y="0" width="{W}" height="{H}"/>',
        f'<text class="caption" x="{PAD_L + 4}" y="{PAD_Y - 2}">{escape(series.caption)}</text>',
    ]
    for kind, name, at in drawn:
        values = [y for y in at if y is not None]
        if not values:
            continue
        last = values[-1]
        spans: list[tuple[float, float, float]]
        if len(set(at)) == 1:  # the same all along: one line across
            spans = [(PAD_L, W - PAD_R, last)]
        else:  # a subgroup chart's limits: a step at each point, as its n has them
            half = step / 2
            spans = [
                (max(x_of(n) - half, PAD_L), min(x_of(n) + half, W - PAD_R), y)
                for n, y in enumerate(at)
                if y is not None
            ]
        out.extend(
            f'<line class="limit {kind}" data-limit="{name}" x1="{x1:.1f}" x2="{x2:.1f}" '
            f'y1="{y_of(y):.1f}" y2="{y_of(y):.1f}"><title>{name} {y:.4g}</title></line>'
            for x1, x2, y in spans
        )
        out.append(f'<text x="{W - PAD_R + 4}" y="{y_of(last) + 4:.1f}">{name} {last:.4g}</text>')
    shown = [
        (n, p, y) for n, (p, y) in enumerate(zip(points, series.ys, strict=True)) if y is not None
    ]
    if len(shown) > 1:
        path = " ".join(f"{x_of(n):.1f},{y_of(y):.1f}" for n, _, y in shown)
        out.append(f'<polyline class="series" points="{path}"/>')
    for n, p, y in shown:
        number = first + n + 1
        bad = (first + n) in series.broke
        tip = f"#{number} {p.lot_id}{_what(p)}: {y:.4g} at {p.at:%Y-%m-%d %H:%M}" + (
            f" (rule {', '.join(str(r) for r in p.rules)})" if p.rules else ""
        )
        out.append(
            f'<a href="{auth.PREFIX}/lots/{escape(quote(p.lot_id))}">'
            f'<circle class="point{" broke" if bad else ""}" data-point="{number}" '
            f'data-lot="{escape(p.lot_id)}" cx="{x_of(n):.1f}" cy="{y_of(y):.1f}" '
            f'r="{5 if bad else 3.5}"><title>{escape(tip)}</title></circle></a>'
        )
    out.append("</svg>")
    return "".join(out)


def _what(p: Point) -> str:
    """A point's carrier, or its number of carriers and their spread."""
    if p.carrier_id is not None:
        return f" carrier {p.carrier_id}"
    if p.n > 1:
        return f" (mean of {p.n}, s {p.s:.4g})" if p.s is not None else f" (mean of {p.n})"
    return ""


def _refused(request: Request, who: Viewer, refused: LotTrackerError) -> Response:
    text = str(refused)
    status = status_of(refused)
    if isinstance(refused, UnknownTool | InvalidInput):
        status = 404  # a step, value or tool in the address that does not exist
        there = ", ".join(refused.allowed)
        if there and there not in text:  # what there is, unless the message lists it already
            text = f"{text}; there are: {there}"
    return page(request, "message.html", who, status, message=text)


@router.get("/spc")
async def charts_page(
    request: Request, who: Viewer, step: str | None = None, tool: str | None = None
) -> Response:
    """The charts set (a step's, a tool's), each a link to its page, with its number of
    points and the newest of its last :data:`SHOWN` that broke a rule."""
    problem = _name("step", step) or _name("tool", tool)
    if problem is not None:
        return page(request, "message.html", who, 422, message=problem)
    service = state_of(request).services.spc
    try:
        charts = await service.summaries(step=step, tool_id=tool, looked=SHOWN, by=who)
    except LotTrackerError as refused:
        return _refused(request, who, refused)
    return page(request, "spc_list.html", who, charts=charts, step=step, tool=tool)


@router.get("/spc/{step}/{value}")
async def chart_page(
    request: Request, who: Viewer, step: str, value: str, tool: str | None = None
) -> Response:
    """The charts of (step, value): each tool's, or ``tool``'s."""
    problem = _name("step", step) or _name("value", value) or _name("tool", tool)
    if problem is not None:
        return page(request, "message.html", who, 422, message=problem)
    service = state_of(request).services.spc
    try:
        views = await service.show(step, value, tool_id=tool, last=SHOWN, by=who)
        unknown = ""
    except UnknownTool as refused:  # the step and value exist: the charts of the step said
        views, unknown = [], f"{refused}: "
    except LotTrackerError as refused:
        return _refused(request, who, refused)
    if not views:
        where = f"{value} at {step}" + (f" on {tool}" if tool else "")
        others = await service.charts(step=step, by=who)
        there = ", ".join(f"{c.value} on {c.tool_id}" for c in others) or "none"
        text = f"{unknown}no SPC chart of {where}; the charts of {step}: {there}"
        return page(request, "message.html", who, 404, message=text)
    return page(
        request,
        "spc.html",
        who,
        step=step,
        value=value,
        tool=tool,
        charts=[shown(v) for v in views],
        shown_max=SHOWN,
        kinds=KIND_TEXT,
    )
