"""A carrier's site map drawn as an SVG grid: one function from the lot tracker's map to
markup, tested without a browser (tests/station/test_stripmap.py).

Each site is a square, row 1 at the top, column 1 at the left (the lot tracker's 1-based
positions). A good site is green; a rejected one takes its reject code's colour; a site
scrapped by hand (``lot scrap --site``) is drawn hatched in its code's colour. Every site has
a ``<title>`` (the browser's tooltip and the accessible name) and ``data-`` attributes the
browser tests read. The legend is the same colours as HTML, built from :func:`legend`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape

from mes.domain.model import SCRAP_STEP, SiteReject
from mes.domain.report import CarrierMap

GOOD_COLOUR = "#2e9d4f"
SCRAP_PATTERN = "scrapped"

PALETTE = (
    "#d62728",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
    "#1f77b4",
    "#7f3b08",
    "#543005",
)
"""Reject code colours, given to the codes of a lot in sorted order (the legend names them);
past ten codes the colours repeat and the tooltip still names the code."""

SITE_PX = 18
GAP_PX = 2


@dataclass(frozen=True, slots=True)
class LegendEntry:
    label: str
    colour: str
    hatched: bool = False


def code_colours(codes: Iterable[str]) -> dict[str, str]:
    """A colour per reject code, the same for every carrier of the lot."""
    return {code: PALETTE[i % len(PALETTE)] for i, code in enumerate(sorted(set(codes)))}


def legend(maps: Sequence[CarrierMap]) -> list[LegendEntry]:
    """What the colours of these maps mean: good, each reject code, and scrapped by hand."""
    rejects = [r for m in maps for r in m.rejects]
    colours = code_colours(r.code for r in rejects)
    entries = [LegendEntry("good", GOOD_COLOUR)]
    entries += [LegendEntry(code, colour) for code, colour in colours.items()]
    if any(r.step == SCRAP_STEP for r in rejects):
        entries.append(LegendEntry("scrapped by hand", "#555555", hatched=True))
    return entries


def _site_title(carrier: str, reject: SiteReject | None, row: int, col: int) -> str:
    where = f"{carrier} row {row} col {col}"
    if reject is None:
        return f"{where}: good"
    if reject.step == SCRAP_STEP:
        return f"{where}: scrapped by hand ({reject.code})"
    return f"{where}: rejected {reject.code} at {reject.step}"


def strip_map_svg(carrier_map: CarrierMap, colours: dict[str, str]) -> str:
    """The SVG of one carrier's sites (``colours`` from :func:`code_colours` of the whole
    lot, so one code has one colour on every carrier)."""
    carrier = carrier_map.carrier
    at = {(r.row, r.col): r for r in carrier_map.rejects}
    pitch = SITE_PX + GAP_PX
    width, height = carrier.cols * pitch + GAP_PX, carrier.rows * pitch + GAP_PX
    label = (
        f"site map of carrier {carrier.id}: {carrier.rows} rows by {carrier.cols} columns, "
        f"{len(carrier_map.rejects)} rejected"
    )
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="stripmap" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'data-carrier="{escape(carrier.id)}" aria-label="{escape(label)}">',
        f'<defs><pattern id="{SCRAP_PATTERN}-{escape(carrier.id)}" width="4" height="4" '
        'patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        '<rect width="4" height="4" fill="#555555"/>'
        '<line x1="0" y1="0" x2="0" y2="4" stroke="#ffffff" stroke-width="2"/>'
        "</pattern></defs>",
    ]
    cid = escape(carrier.id)
    good = (
        f'fill="{GOOD_COLOUR}" data-row="{{row}}" data-col="{{col}}" data-state="good" data-code=""'
    )
    for row in range(1, carrier.rows + 1):
        y = GAP_PX + (row - 1) * pitch
        for col in range(1, carrier.cols + 1):
            x = GAP_PX + (col - 1) * pitch
            reject = at.get((row, col))
            if reject is None:  # most sites: one format, nothing to escape but the id
                out.append(
                    f'<rect class="site" x="{x}" y="{y}" width="{SITE_PX}" height="{SITE_PX}" '
                    + good.format(row=row, col=col)
                    + f"><title>{cid} row {row} col {col}: good</title></rect>"
                )
                continue
            if reject.step == SCRAP_STEP:
                fill, state = f"url(#{SCRAP_PATTERN}-{carrier.id})", "scrapped"
            else:
                fill, state = colours.get(reject.code, PALETTE[0]), "rejected"
            title = _site_title(carrier.id, reject, row, col)
            out.append(
                f'<rect class="site" x="{x}" y="{y}" width="{SITE_PX}" height="{SITE_PX}" '
                f'fill="{escape(fill)}" data-row="{row}" data-col="{col}" '
                f'data-state="{state}" data-code="{escape(reject.code)}">'
                f"<title>{escape(title)}</title></rect>"
            )
    out.append("</svg>")
    return "".join(out)
