"""``pkgline flow``: the nine claimed flows, their steps, defaults and limits."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from flows import Flow, Limit, ValueSpec
from mes.domain.errors import InvalidInput
from pkgline.bootstrap import flow_library
from pkgline.cli import flow_versions
from pkgline.cli.common import EXIT_REFUSED, DbOption, JsonOption, err, out, print_json, run
from pkgline.cli.flow_versions import show_version, version_dict

app = typer.Typer(
    help="Process flows: what each claimed package's line does, and their published versions.",
    no_args_is_help=True,
)
flow_versions.register(app)


def _limit_dict(limit: Limit) -> dict[str, Any]:
    return {
        "step": limit.step,
        "value": limit.value,
        "limit": limit.describe(),
        "claim": limit.claim,
    }


def _value_dict(spec: ValueSpec) -> dict[str, Any]:
    return {
        "type": spec.type,
        "default": spec.default,
        "unit": spec.unit,
        "description": spec.description,
        "limits": [_limit_dict(limit) for limit in spec.limits],
        **({"tool_value": spec.tool_value} if spec.tool_value else {}),
    }


def flow_dict(flow: Flow) -> dict[str, Any]:
    return {
        "name": flow.name,
        "title": flow.title,
        "version": flow.version,
        "document": flow.document,
        "claims": flow.claims,
        "sequence": flow.sequence,
        "description": flow.description,
        "lot_params": {n: _value_dict(s) for n, s in flow.lot_params.items()},
        "steps": {
            code: {
                "equipment_class": s.equipment_class,
                "recipe": {n: _value_dict(v) for n, v in s.recipe.items()},
                "measured": {n: _value_dict(v) for n, v in s.measured.items()},
                "checks": [_limit_dict(limit) for limit in s.checks],
                "rework": None
                if s.rework is None
                else {"max_reworks": s.rework.max_reworks, "through": sorted(s.rework.through)},
            }
            for code, s in flow.steps.items()
        },
    }


@app.command("list")
def list_flows(json: JsonOption = False) -> None:
    """The flows this line runs."""
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
    json: JsonOption = False,
) -> None:
    """A flow's sequence, lot parameters, and per step: equipment, recipe defaults, limits
    with the claims they come from, and rework."""
    if version is not None:
        published, built = run(lambda: show_version(db, flow, version), as_json=json, db=db)
        if json:
            print_json({**flow_dict(built), "published": version_dict(published)})
            return
        out.print(
            f"published version {published.version} ({published.state.value}, "
            f"{published.content_hash[:12]}) by {published.author}: {published.note}"
        )
        for a in published.approvals:
            out.print(
                escape(
                    f"  approved by {a.printed_name} ({a.signer}) {a.at:%Y-%m-%d %H:%M} "
                    f"[{a.method}]: {a.meaning}"
                )
            )
        _print_flow(built)
        return
    library = flow_library()
    if flow not in library.flows:
        error = InvalidInput(
            f"there is no flow {flow!r}; flows: {', '.join(library.flows)}",
            allowed=list(library.flows),
        )
        if json:
            print_json(error.to_dict())
        else:
            err.print(f"[bold red]✘[/] {error.message}")
        raise typer.Exit(EXIT_REFUSED)
    f = library.flows[flow]
    if json:
        print_json(flow_dict(f))
        return
    _print_flow(f)


def _print_flow(f: Flow) -> None:
    out.print(f"[bold]{f.name}[/] v{f.version}: {f.title}")
    out.print(f"document {f.document}, claims {f.claims}")
    if f.description:
        out.print(f.description)
    out.print(f"sequence: {f.sequence}")
    if f.lot_params:
        params = Table(title="Lot parameters", title_justify="left")
        for column in ("name", "default", "unit", "limit", "claim"):
            params.add_column(column, overflow="fold")
        for name, spec in f.lot_params.items():
            params.add_row(
                name,
                str(spec.default),
                spec.unit or "",
                "; ".join(limit.describe() for limit in spec.limits),
                "; ".join(limit.claim for limit in spec.limits),
            )
        out.print(params)
    steps = Table(title="Steps", title_justify="left")
    for column in ("step", "equipment", "recipe defaults", "limits (claim)", "rework"):
        steps.add_column(column, overflow="fold")
    for code, s in f.steps.items():
        limits = [
            f"{limit.value}: {limit.describe()} ({limit.claim})"
            for spec in (*s.recipe.values(), *s.measured.values())
            for limit in spec.limits
        ] + [f"{limit.value} recorded: {limit.describe()} ({limit.claim})" for limit in s.checks]
        rework = (
            ""
            if s.rework is None
            else f"max {s.rework.max_reworks}"
            + (f", through {', '.join(sorted(s.rework.through))}" if s.rework.through else "")
        )
        steps.add_row(
            code,
            s.equipment_class,
            ", ".join(f"{k}={v}" for k, v in s.recipe_defaults().items()),
            "\n".join(dict.fromkeys(limits)),
            rework,
        )
    out.print(steps)
