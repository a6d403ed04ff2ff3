"""What ``pkgline demo`` shows: the live view of its lots and tools (a terminal), one line per
move (a pipe or a file), and the summary per lot at the end. Pure rendering of values read
from the database."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from mes.domain.equipment import ToolRecord
from mes.domain.model import Lot, LotState
from pkgline.cli.lot_view import STATE_STYLE
from pkgline.cli.tool import e10_text

ENDED = frozenset({LotState.COMPLETED, LotState.HOLD, LotState.SCRAPPED, LotState.MERGED})
"""A lot in one of these states moves no further by itself."""


@dataclass(frozen=True, slots=True)
class Progress:
    """Where the demo stands: seconds since it began, its time limit, and the number of steps
    each lot will have run when it completes."""

    elapsed_s: float
    limit_s: float
    planned: Mapping[str, int]


def lot_number(lot: Lot) -> int:
    """``DEMO-7`` -> 7, so that lots sort in the order they were started."""
    number = lot.id.rpartition("-")[2]
    return int(number) if number.isdigit() else 0


def yield_pct(lot: Lot) -> float:
    return 100.0 * lot.good_sites / lot.total_sites if lot.total_sites else 0.0


def where(lot: Lot) -> str:
    """`` DICE on DICE-1`` for a running lot, else `` after`` its last step."""
    if lot.running:
        return f" {lot.running.step} on {lot.running.tool or '-'}"
    return f" after {lot.step}" if lot.step else ""


def move_line(progress: Progress, lot: Lot) -> Text:
    """One line for a lot that moved (output that is not a terminal)."""
    line = Text(f"{progress.elapsed_s:6.1f} s  {lot.id:8} {lot.flow:22} ")
    line.append(lot.state.value, style=STATE_STYLE[lot.state])
    line.append(where(lot))
    line.append(
        f"  step {len(lot.path)}/{progress.planned.get(lot.id, '?')}, "
        f"{lot.good_sites}/{lot.total_sites} good ({yield_pct(lot):.1f} %)"
    )
    if lot.hold:
        line.append(f"  {lot.hold.reason}", style="red")
    return line


def _bar(done: int, total: int, width: int = 6) -> str:
    filled = min(width, round(width * done / total)) if total else 0
    return "█" * filled + "·" * (width - filled)


def live_view(
    progress: Progress, lots: Sequence[Lot], tools: Sequence[ToolRecord]
) -> RenderableType:
    """The whole line on one screen: a row per lot, the tools two to a row."""
    completed = sum(1 for lot in lots if lot.state is LotState.COMPLETED)
    head = Text.assemble(
        ("pkgline demo ", "bold"),
        f"{progress.elapsed_s:5.1f} s   {completed}/{len(lots)} lots completed   ",
        (f"(Ctrl-C stops; gives up at {progress.limit_s:.0f} s)", "dim"),
    )
    table = Table(box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    for name in ("lot", "flow", "state", "step", "tool", "steps", "good", "yield %"):
        table.add_column(name, no_wrap=True, justify="right" if name == "yield %" else "left")
    for lot in lots:
        planned = progress.planned.get(lot.id, len(lot.path))
        step = Text(lot.running.step) if lot.running else Text(lot.step or "-", style="dim")
        table.add_row(
            lot.id,
            lot.flow,
            Text(lot.state.value, style=STATE_STYLE[lot.state]),
            step,  # running: the step it runs; else (dim) the last one it ran
            (lot.running.tool if lot.running else None) or "",
            f"{_bar(len(lot.path), planned)} {len(lot.path):2}/{planned}",
            f"{lot.good_sites}/{lot.total_sites}",
            f"{yield_pct(lot):.1f}",
        )
    return Group(head, table, _tools_grid(tools))


def _tools_grid(tools: Sequence[ToolRecord]) -> Table:
    grid = Table(box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    per_row = 2 if len(tools) > 1 else 1
    for _ in range(per_row):
        for name in ("tool", "E10 state", "lot", "sites"):
            grid.add_column(name, no_wrap=True)
    rows = (len(tools) + per_row - 1) // per_row
    for i in range(rows):
        cells: list[RenderableType] = []
        for tool in (tools[j] for j in range(i, len(tools), rows)):
            snap = tool.snapshot
            cells += [
                tool.id,
                e10_text(snap.e10),
                snap.lot_id or "",
                f"{snap.sites_done}/{snap.sites_total}" if snap.sites_total else "",
            ]
        cells += [""] * (len(grid.columns) - len(cells))
        grid.add_row(*cells)
    return grid


def summary_table(lots: Sequence[Lot], now: datetime) -> Table:
    """A row per lot: flow, state, steps run, units, good sites, yield and time taken."""
    done = [lot for lot in lots if lot.state is LotState.COMPLETED]
    table = Table(
        title=f"Lots: {len(done)} of {len(lots)} completed, "
        f"{sum(lot.units or 0 for lot in done)} units",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=0,  # fits 80 columns (a pipe, or make demo | tee)
    )
    for name in ("lot", "flow", "state", "steps", "units", "good", "yield %", "time s"):
        table.add_column(
            name, no_wrap=True, justify="left" if name in ("lot", "flow", "state") else "right"
        )
    for lot in sorted(lots, key=lot_number):
        ended = lot.state in ENDED
        seconds = ((lot.updated_at if ended else now) - lot.created_at).total_seconds()
        table.add_row(
            lot.id,
            lot.flow,
            Text(lot.state.value, style=STATE_STYLE[lot.state]),
            str(len(lot.path)),
            "-" if lot.units is None else str(lot.units),
            f"{lot.good_sites}/{lot.total_sites}",
            f"{yield_pct(lot):.1f}",
            f"{seconds:.1f}" if ended else f">{seconds:.0f}",  # not ended: at least that
        )
    return table
