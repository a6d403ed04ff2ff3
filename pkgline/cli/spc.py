"""``pkgline spc chart|show|clear``: SPC per (step, measured value, tool) (:mod:`mes.spc`).
Thin: parse, call the SPC service, print."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from mes.domain.spc import RULES
from mes.spc import ChartView
from pkgline.bootstrap import open_services
from pkgline.cli.common import (
    DbOption,
    JsonOption,
    UserOption,
    current_user,
    out,
    print_json,
    run,
    usage_error,
)

app = typer.Typer(
    help="SPC charts per step, measured value and tool: set, show, clear an inhibited tool.",
    no_args_is_help=True,
)

StepArg = Annotated[str, typer.Argument(help="Step code.", show_default=False)]
ValueArg = Annotated[str, typer.Argument(help="Measured value name.", show_default=False)]
ToolOption = Annotated[str, typer.Option("--tool", help="Tool id.", show_default=False)]


@app.command()
def chart(
    step: StepArg,
    value: ValueArg,
    tool: ToolOption,
    baseline: Annotated[
        int, typer.Option("--baseline", help="Limits from the first N points from now on.")
    ] = 20,
    center: Annotated[float | None, typer.Option("--center", help="Limits set: center.")] = None,
    sigma: Annotated[float | None, typer.Option("--sigma", help="Limits set: sigma.")] = None,
    nelson: Annotated[bool, typer.Option("--nelson", help="Rules 5-8 too.")] = False,
    inhibit: Annotated[
        bool, typer.Option("--inhibit", help="A violation disqualifies the tool for the step.")
    ] = False,
    db: DbOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Set a chart (engineering): limits given (--center and --sigma), or from a baseline."""
    who = current_user(user)

    async def work() -> Any:
        async with open_services(db) as services:
            return await services.spc.configure(
                step, value, tool, who, baseline_n=baseline, nelson=nelson, inhibit=inhibit,
                center=center, sigma=sigma,
            )  # fmt: skip

    found = run(work, as_json=json, db=db)
    if json:
        print_json(_chart_dict(found))
        return
    limits = (
        f"center {found.center:g}, sigma {found.sigma:g}"
        if found.center is not None
        else f"limits from the first {found.baseline_n} points"
    )
    out.print(Text.assemble(("✔ ", "green"), f"chart {step} {value} on {tool}: {limits}"))


@app.command()
def clear(
    step: StepArg,
    tool: ToolOption,
    reason: Annotated[str, typer.Option("--reason", help="What was done.")] = "",
    db: DbOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Clear a tool an SPC violation inhibited: qualified for the step again (engineering)."""
    if not reason.strip():
        usage_error("--reason must say what was done", as_json=json)
    who = current_user(user)

    async def work() -> Any:
        async with open_services(db) as services:
            return await services.spc.clear(step, tool, who, reason.strip())

    q = run(work, as_json=json, db=db)
    if json:
        print_json({"tool": q.tool_id, "step": q.step, "qualified": True, "reason": q.reason})
        return
    out.print(Text.assemble(("✔ ", "green"), f"{tool} cleared for {step}"))


def _num(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def _chart_dict(c: Any) -> dict[str, Any]:
    return {
        "step": c.step,
        "value": c.value,
        "tool": c.tool_id,
        "center": c.center,
        "sigma": c.sigma,
        "ucl": c.ucl,
        "lcl": c.lcl,
        "limits_source": c.limits_source,
        "baseline": c.baseline_n,
        "rules": list(c.rules),
        "inhibit": c.inhibit,
        "set_by": c.set_by,
        "set_at": c.set_at.isoformat(),
    }


def _view_dict(v: ChartView) -> dict[str, Any]:
    return {
        **_chart_dict(v.chart),
        "points": [
            {"lot": p.lot_id, "at": p.at.isoformat(), "x": p.x, "rules": list(p.rules)}
            for p in v.points
        ],
        "violations": [
            {"rule": x.rule, "text": RULES[x.rule], "points": list(x.points)} for x in v.violations
        ],
        "spec_lower": v.spec_lower,
        "spec_upper": v.spec_upper,
        "cpk": _num(v.cpk),
        "ppk": _num(v.ppk),
    }


@app.command()
def show(
    step: StepArg,
    value: ValueArg,
    tool: Annotated[str | None, typer.Option("--tool", help="Only this tool.")] = None,
    db: DbOption = None,
    json: JsonOption = False,
) -> None:
    """A chart's points, limits, violations and Cpk/Ppk (each tool's, or one's)."""

    async def work() -> list[ChartView]:
        async with open_services(db) as services:
            return await services.spc.show(step, value, tool_id=tool)

    views = run(work, as_json=json, db=db)
    if json:
        print_json([_view_dict(v) for v in views])
        return
    if not views:
        out.print(f"no chart of {value} at {step}" + (f" on {tool}" if tool else ""))
        return
    for v in views:
        c = v.chart
        if c.center is None or c.sigma is None:
            limits = f"baseline: {len(v.points)} of {c.baseline_n} points"
        else:
            limits = (
                f"center {c.center:.4g}  sigma {c.sigma:.4g}  UCL {c.ucl:.4g}  LCL {c.lcl:.4g}"
                f"  ({c.limits_source})"
            )
        out.print(Text.assemble((f"{step} {value} on {c.tool_id}", "bold"), f"  {limits}"))
        cap = "  ".join(
            f"{name} {x:.2f}" for name, x in (("Cpk", v.cpk), ("Ppk", v.ppk)) if x is not None
        )
        if cap:
            out.print(cap)
        table = Table(show_edge=False, pad_edge=False)
        for column in ("#", "lot", "at", "x", "rules"):
            table.add_column(column)
        for n, p in enumerate(v.points):
            table.add_row(
                str(n),
                p.lot_id,
                f"{p.at:%Y-%m-%d %H:%M:%S}",
                f"{p.x:.4g}",
                Text(", ".join(str(r) for r in p.rules), style="bold red") if p.rules else "",
            )
        out.print(table)
        for x in v.violations:
            out.print(f"  rule {x.rule} ({RULES[x.rule]}) at points {list(x.points)}")
