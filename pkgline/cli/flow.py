"""``pkgline flow``: the nine claimed flows, their steps, defaults and limits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer
from rich.table import Table

from mes.domain.errors import InvalidInput
from pkgline.cli import flow_versions
from pkgline.cli.common import EXIT_REFUSED, DbOption, JsonOption, err, marked, out, print_json
from pkgline.cli.flow_versions import show_version
from pkgline.cli.modes import Remote, ServerOption, either, segment
from pkgline.flow_views import flow_dict

app = typer.Typer(
    help="Process flows: what each claimed package's line does, and their published versions.",
    no_args_is_help=True,
)
flow_versions.register(app)


@app.command("list")
def list_flows(json: JsonOption = False) -> None:
    """The flows this line runs."""
    from pkgline.bootstrap import flow_library

    library = flow_library()
    if json:
        print_json(
            [
                {
                    "name": f.name,
                    "title": f.title,
                    "document": f.document,
                    "claims": f.claims,
                    "sequence": f.sequence,
                }
                for f in library.flows.values()
            ]
        )
        return
    table = Table(title="Flows")
    for column in ("flow", "package", "document", "claims", "sequence"):
        table.add_column(column, overflow="fold")
    for f in library.flows.values():
        table.add_row(f.name, f.title, f.document, f.claims, f.sequence)
    out.print(table)


@app.command()
def show(
    flow: Annotated[str, typer.Argument(help="Flow name.", show_default=False)],
    version: Annotated[
        int | None,
        typer.Option(
            "--version",
            help="A published version (from the database; default: the flow files installed).",
        ),
    ] = None,
    db: DbOption = None,
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """A flow's sequence, lot parameters, and per step: equipment, recipe defaults, limits
    with the claims they come from, and rework; the spec limits of its measured values and
    its queue times. Without --version: the flow files installed
    here (no database, no server); with it: the published version, from the database or
    through the server."""
    if version is not None:
        remote = Remote("GET", f"/flows/{segment(flow)}/versions/{version}")
        shown = either(db, server, json, lambda: show_version(db, flow, version), remote)
        if json:
            print_json(shown)
            return
        published = shown["published"]
        out.print(
            f"published version {published['version']} ({published['state']}, "
            f"{published['content_hash'][:12]}) by {published['author']}: {published['note']}"
        )
        for a in published["approvals"]:
            out.print(
                f"  approved by {a['printed_name']} ({a['signer']}) "
                f"{flow_versions.approvals_time(a)} [{a['method']}]: {a['meaning']}"
            )
        _print_flow(shown)
        return
    from pkgline.bootstrap import flow_library

    library = flow_library()
    if flow not in library.flows:
        error = InvalidInput(
            f"there is no flow {flow!r}; flows: {', '.join(library.flows)}",
            allowed=list(library.flows),
        )
        if json:
            print_json(error.to_dict())
        else:
            err.print(marked("✘", "bold red", error.message))
        raise typer.Exit(EXIT_REFUSED)
    f = flow_dict(library.flows[flow])
    if json:
        print_json(f)
        return
    _print_flow(f)


def _print_flow(f: Mapping[str, Any]) -> None:
    """A flow as :func:`pkgline.flow_views.flow_dict` gives it, for a person."""
    out.print(marked(f["name"], "bold", f"v{f['version']}: {f['title']}"))
    out.print(f"document {f['document']}, claims {f['claims']}")
    if f["description"]:
        out.print(f["description"])
    out.print(f"sequence: {f['sequence']}")
    if f["lot_params"]:
        params = Table(title="Lot parameters", title_justify="left")
        for column in ("name", "default", "unit", "limit", "claim"):
            params.add_column(column, overflow="fold")
        for name, spec in f["lot_params"].items():
            params.add_row(
                name,
                str(spec["default"]),
                spec["unit"] or "",
                "; ".join(limit["limit"] for limit in spec["limits"]),
                "; ".join(limit["claim"] for limit in spec["limits"]),
            )
        out.print(params)
    steps = Table(title="Steps", title_justify="left")
    for column in ("step", "equipment", "recipe defaults", "limits (claim)", "rework"):
        steps.add_column(column, overflow="fold")
    for code, s in f["steps"].items():
        limits = [
            f"{limit['value']}: {limit['limit']} ({limit['claim']})"
            for spec in (*s["recipe"].values(), *s["measured"].values())
            for limit in spec["limits"]
        ] + [
            f"{limit['value']} recorded: {limit['limit']} ({limit['claim']})"
            for limit in s["checks"]
        ]
        rework = s["rework"]
        steps.add_row(
            code,
            s["equipment_class"],
            ", ".join(
                f"{k}={v['default']}" for k, v in s["recipe"].items() if v["default"] is not None
            ),
            "\n".join(dict.fromkeys(limits)),
            ""
            if rework is None
            else f"max {rework['max_reworks']}"
            + (f", through {', '.join(rework['through'])}" if rework["through"] else ""),
        )
    out.print(steps)
    _print_windows(f)
    _print_spec_limits(f)
    _print_queue_times(f)


def _print_windows(f: Mapping[str, Any]) -> None:
    """The set-point windows of the recipe values (line practice beside the claims): a
    track-in outside one is refused (docs/interlocks.md)."""
    rows = [
        (code, name, v)
        for code, s in f["steps"].items()
        for name, v in s["recipe"].items()
        if v.get("window") is not None
    ]
    if not rows:
        return
    table = Table(title="Set-point windows of recipe values", title_justify="left")
    for column in ("step", "value", "lower", "default", "target", "upper", "unit", "origin"):
        table.add_column(column, overflow="fold")
    for code, name, v in rows:
        window = v["window"]
        numbers = (window["lower"], v["default"], window["target"], window["upper"])
        table.add_row(
            code,
            name,
            *("" if n is None else f"{n:.10g}" for n in numbers),
            v["unit"] or "",
            window["origin"],
        )
    out.print(table)


def _print_spec_limits(f: Mapping[str, Any]) -> None:
    """The spec limits of the measured values (line practice beside the claims): out of spec
    holds the lot (docs/interlocks.md)."""
    rows = [
        (code, name, v)
        for code, s in f["steps"].items()
        for name, v in s["measured"].items()
        if v["spec"] is not None
    ]
    if not rows:
        return
    table = Table(title="Spec limits of measured values", title_justify="left")
    for column in ("step", "value", "lower", "target", "upper", "unit", "origin"):
        table.add_column(column, overflow="fold")
    for code, name, v in rows:
        spec = v["spec"]
        table.add_row(
            code,
            name,
            *("" if spec[k] is None else f"{spec[k]:.10g}" for k in ("lower", "target", "upper")),
            v["unit"] or "",
            spec["origin"],
        )
    out.print(table)


def _print_queue_times(f: Mapping[str, Any]) -> None:
    """The flow's queue-time limits: past the maximum, the lot is held at its next track-in."""
    if not f["queue_times"]:
        return
    table = Table(title="Queue times", title_justify="left")
    for column in ("from (track-out)", "to (track-in)", "warn after", "at most", "origin"):
        table.add_column(column, overflow="fold")
    for q in f["queue_times"]:
        warn = q["warn_minutes"]
        table.add_row(
            q["from"],
            q["to"],
            "" if warn is None else f"{warn:.10g} min",
            f"{q['max_minutes']:.10g} min",
            q["origin"],
        )
    out.print(table)
