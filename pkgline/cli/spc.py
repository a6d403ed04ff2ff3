"""``pkgline spc chart|list|show|clear``: SPC per (step, measured value, tool) (:mod:`mes.spc`).
Thin: parse, one call of the SPC service through the pkgline server or directly
(:func:`pkgline.cli.modes.served`), print its JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from mes.domain.spc import KIND_TEXT, MAX_BASELINE, MIN_BASELINE, ChartKind
from pkgline.cli.common import (
    DbOption,
    JsonOption,
    UserOption,
    current_user,
    out,
    print_json,
    usage_error,
)
from pkgline.cli.modes import Remote, ServerOption, segment, served
from pkgline.cli.times import stamp
from pkgline.interlock_views import chart_dict, chart_view_dict, cleared_dict

app = typer.Typer(
    help="SPC charts per step, measured value and tool: chart (set one), list, show, clear an inhibited tool.",
    no_args_is_help=True,
)

StepArg = Annotated[str, typer.Argument(help="Step code.", show_default=False)]
ValueArg = Annotated[str, typer.Argument(help="Measured value name.", show_default=False)]
SPEC = (("LSL", "spec_lower"), ("USL", "spec_upper"))
CAPABILITY = (("Cpk", "cpk"), ("Ppk", "ppk"))
ToolOption = Annotated[str, typer.Option("--tool", help="Tool id.", show_default=False)]


@app.command()
def chart(
    step: StepArg,
    value: ValueArg,
    tool: ToolOption,
    baseline: Annotated[
        int,
        typer.Option(
            "--baseline",
            min=MIN_BASELINE,
            max=MAX_BASELINE,
            help="Limits from the first N points from now on.",
        ),
    ] = 20,
    center: Annotated[float | None, typer.Option("--center", help="Limits set: center.")] = None,
    sigma: Annotated[float | None, typer.Option("--sigma", help="Limits set: sigma.")] = None,
    kind: Annotated[
        ChartKind,
        typer.Option(
            "--kind",
            help="What a point is, at each pass of a lot through the step (a flow that runs "
            "it twice, or a rework, adds points again): the lot's value (lot), each carrier's "
            "(carrier), or the mean and spread of the lot's carriers (subgroup: X-bar / S).",
        ),
    ] = ChartKind.LOT,
    nelson: Annotated[bool, typer.Option("--nelson", help="Rules 5-8 too.")] = False,
    inhibit: Annotated[
        bool, typer.Option("--inhibit", help="A violation disqualifies the tool for the step.")
    ] = False,
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Set a chart (engineering): limits given (--center and --sigma), or from a baseline."""
    who = current_user(user)
    body = {
        "step": step,
        "value": value,
        "tool": tool,
        "baseline": baseline,
        "center": center,
        "sigma": sigma,
        "kind": kind.value,
        "nelson": nelson,
        "inhibit": inhibit,
    }
    found = served(
        db,
        server,
        json,
        Remote("POST", "/spc/charts", body),
        lambda s: s.spc.configure(
            step,
            value,
            tool,
            who,
            baseline_n=baseline,
            nelson=nelson,
            inhibit=inhibit,
            center=center,
            sigma=sigma,
            kind=kind,
        ),
        chart_dict,
    )
    if json:
        print_json(found)
        return
    limits = (
        f"center {found['center']:g}, sigma {found['sigma']:g}"
        if found["center"] is not None
        else f"limits from the first {found['baseline']} points"
    )
    out.print(
        Text.assemble(
            ("✔ ", "green"),
            f"chart {step} {value} on {tool} ({KIND_TEXT[found['kind']]}): {limits}",
        )
    )


@app.command()
def clear(
    step: StepArg,
    tool: ToolOption,
    reason: Annotated[str, typer.Option("--reason", help="What was done.")] = "",
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Clear a tool an SPC violation inhibited: qualified for the step again (engineering)."""
    if not reason.strip():
        usage_error("--reason must say what was done", as_json=json)
    who = current_user(user)
    body = {"step": step, "tool": tool, "reason": reason.strip()}
    cleared = served(
        db,
        server,
        json,
        Remote("POST", "/spc/clear", body),
        lambda s: s.spc.clear(step, tool, who, reason.strip()),
        cleared_dict,
    )
    if json:
        print_json(cleared)
        return
    out.print(Text.assemble(("✔ ", "green"), f"{tool} cleared for {step}"))


@app.command()
def show(
    step: StepArg,
    value: ValueArg,
    tool: Annotated[str | None, typer.Option("--tool", help="Only this tool.")] = None,
    db: DbOption = None,
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """A chart's points, limits, violations and Cpk/Ppk (each tool's, or one's)."""
    views = served(
        db,
        server,
        json,
        Remote(
            "GET",
            f"/spc/charts/{segment(step)}/{segment(value)}",
            query=[("tool", tool)] if tool is not None else None,
        ),
        lambda s: s.spc.show(step, value, tool_id=tool),
        lambda found: [chart_view_dict(v) for v in found],
    )
    if json:
        print_json(views)
        return
    if not views:
        out.print(
            f"no chart of {value} at {step}"
            + (f" on {tool}" if tool else "")
            + f"; an engineer sets one: pkgline spc chart {step} {value} --tool {tool or 'TOOL'}"
        )
        return
    for v in views:
        if (v["center"] is None or v["sigma"] is None) and len(v["points"]) < v["baseline"]:
            limits = f"baseline: {len(v['points'])} of {v['baseline']} points"
        elif v["center"] is None or v["sigma"] is None:
            limits = (
                f"no limits yet: the last {v['baseline']} points do not vary (the limits come "
                f"from the first {v['baseline']} in a row that do)"
            )
        elif v["kind"] == "subgroup":
            limits = (
                f"center {v['center']:.4g}  sigma {v['sigma']:.4g}  limits center +- 3 sigma / "
                f"sqrt(n) for a lot of n carriers ({v['limits_source']})"
            )
        else:
            limits = (
                f"center {v['center']:.4g}  sigma {v['sigma']:.4g}  UCL {v['ucl']:.4g}  "
                f"LCL {v['lcl']:.4g}  ({v['limits_source']})"
            )
        title = f"{step} {value} on {v['tool']}, {KIND_TEXT[v['kind']]}"
        out.print(Text.assemble((title, "bold"), f"  {limits}"))
        cap = "  ".join(
            [f"{name} {v[key]:.4g}" for name, key in SPEC if v[key] is not None]
            + [f"{name} {v[key]:.2f}" for name, key in CAPABILITY if v[key] is not None]
        )
        if cap:
            out.print(cap + _spec_source(v))
        elif v["spec_from"]:
            out.print(f"spec limits: {v['spec_from']}")
        if not v["points"]:
            since = datetime.fromisoformat(v["set_at"])
            out.print(
                f"no points yet: one is recorded at each track-out of {step} on {v['tool']} "
                f"since the chart was set ({stamp(since, seconds=False)})"
            )
            continue
        out.print(_points_table(v))
        for x in v["violations"]:
            numbers = ", ".join(str(i + 1) for i in x["points"])
            out.print(f"  rule {x['rule']} ({x['text']}) at points {numbers}")


@app.command("list")
def list_(
    step: Annotated[str | None, typer.Option("--step", help="Only this step's.")] = None,
    tool: Annotated[str | None, typer.Option("--tool", help="Only this tool's.")] = None,
    db: DbOption = None,
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """Every chart set (or a step's, or a tool's): its limits, rules and who set them."""
    query = [(k, v) for k, v in (("step", step), ("tool", tool)) if v is not None]
    charts = served(
        db,
        server,
        json,
        Remote("GET", "/spc/charts", query=query or None),
        lambda s: s.spc.charts(step=step, tool_id=tool),
        lambda found: [chart_dict(c) for c in found],
    )
    if json:
        print_json(charts)
        return
    if not charts:
        where = " ".join(f"{k} {v}" for k, v in query)
        out.print("no SPC chart" + (f" of {where}" if where else " set (pkgline spc chart)"))
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("step", "value", "tool", "kind", "center", "sigma", "LCL", "UCL", "limits"):
        table.add_column(column, overflow="fold")
    for column in ("rules", "inhibit", "set by", "at"):
        table.add_column(column, overflow="fold")
    for c in charts:
        limits = c["limits_source"] or f"baseline of {c['baseline']} points"
        table.add_row(
            c["step"],
            c["value"],
            c["tool"],
            c["kind"],
            *(_number(c, k) for k in ("center", "sigma", "lcl", "ucl")),
            limits,
            ",".join(str(r) for r in c["rules"]),
            "yes" if c["inhibit"] else "no",
            c["set_by"],
            stamp(c["set_at"], seconds=False),
        )
    out.print(table)


def _number(chart: dict[str, Any], key: str) -> str:
    """A chart's center, sigma or limit for the list ("-": none yet; a subgroup chart's
    limits follow each lot's number of carriers: ``spc show`` gives them point by point)."""
    value = chart[key]
    if value is None or (chart["kind"] == "subgroup" and key in ("lcl", "ucl")):
        return "-"
    return f"{value:.4g}"


def _points_table(v: dict[str, Any]) -> Table:
    """A chart's points: a carrier chart's name their carrier; a subgroup chart's give their
    n, their spread s and the limits of their n."""
    kind = v["kind"]
    columns = ["#", "lot", *(["carrier"] if kind == "carrier" else []), "at"]
    columns += ["mean", "n", "s", "LCL", "UCL"] if kind == "subgroup" else ["x"]
    table = Table(show_edge=False, pad_edge=False)
    for column in [*columns, "rules"]:
        table.add_column(column, overflow="fold")
    for number, p in enumerate(v["points"], start=1):
        cells = [str(number), p["lot"], *([p["carrier"] or "-"] if kind == "carrier" else [])]
        cells += [stamp(p["at"]), f"{p['x']:.4g}"]
        if kind == "subgroup":
            cells += [str(p["n"]), "-" if p["s"] is None else f"{p['s']:.4g}"]
            cells += ["-" if p[k] is None else f"{p[k]:.4g}" for k in ("lcl", "ucl")]
        rules = ", ".join(str(r) for r in p["rules"])
        table.add_row(*cells, Text(rules, style="bold red") if rules else "")
    return table


def _spec_source(v: dict[str, Any]) -> str:
    """Whose spec limits: the flow versions (how many, past three; --json lists them)."""
    if v["spec_lower"] is None and v["spec_upper"] is None:
        return ""
    versions = str(v["spec_from"]).split(", ")
    which = ", ".join(versions) if len(versions) <= 3 else f"{len(versions)} flows' versions"
    return f"  (spec limits of {which})"
