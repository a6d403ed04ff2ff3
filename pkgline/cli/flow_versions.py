"""``pkgline flow publish | versions | diff | approve | retire``: flow versions in the database.

Thin: read the files, call :class:`mes.flowversions.FlowVersionService`, print. A version is
published as a draft; an engineer approves it (signed) before lots start on it; retiring it
stops new starts. docs/flow-files.md ("Versions and approval").
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from flows.loader import flow_sources
from flows.resolve import FRAGMENTS_FILE, STEPS_FILE
from mes.domain.authority import Action
from mes.domain.errors import InvalidInput
from mes.domain.flowversions import FlowVersion, VersionState
from mes.domain.signatures import SIGNED, SignatureGiven, SignaturePolicy
from mes.flowversions import FlowVersionService, Published
from pkgline.bootstrap import open_services, os_account
from pkgline.cli.common import DbOption, JsonOption, out, print_json, run, usage_error
from pkgline.cli.signing import MeaningOption, SignaturesConfigOption
from pkgline.cli.signing import policy as signing_policy

T = TypeVar("T")

FlowArg = Annotated[str, typer.Argument(help="Flow name.", show_default=False)]
VersionArg = Annotated[int, typer.Argument(help="Version number.", show_default=False)]


@asynccontextmanager
async def _service(
    db: str | None, policy: SignaturePolicy | None = None
) -> AsyncIterator[FlowVersionService]:
    async with open_services(db, signatures=policy) as services:
        yield services.flow_versions


def _call(
    db: str | None,
    as_json: bool,
    action: Callable[[FlowVersionService], Awaitable[T]],
    policy: SignaturePolicy | None = None,
) -> T:
    async def work() -> T:
        async with _service(db, policy) as service:
            return await action(service)

    return run(work, as_json=as_json, db=db)


def version_dict(v: FlowVersion) -> dict[str, Any]:
    return {
        "flow": v.flow,
        "version": v.version,
        "state": v.state.value,
        "content_hash": v.content_hash,
        "author": v.author,
        "published_at": v.published_at.isoformat(),
        "note": v.note,
        "approvals": [
            {
                "signer": a.signer,
                "printed_name": a.printed_name,
                "meaning": a.meaning,
                "at": a.at.isoformat(),
                "method": a.method,
                "content_hash": a.content_hash,
            }
            for a in v.approvals
        ],
        "retired_at": v.retired_at.isoformat() if v.retired_at else None,
        "retired_by": v.retired_by,
    }


def approvals_text(v: FlowVersion) -> str:
    """Each approval's signer, printed name, time, method and meaning (21 CFR 11.50)."""
    return "; ".join(
        f"{a.printed_name} ({a.signer}) {a.at:%Y-%m-%d %H:%M} [{a.method}]: {a.meaning}"
        for a in v.approvals
    )


def read_flow_files(path: Path, as_json: bool) -> dict[str, dict[str, str]]:
    """The files of each flow to publish: one flow file (``steps.yaml`` and
    ``fragments.yaml`` beside it), or every flow file of a defs directory."""
    directory = path if path.is_dir() else path.parent
    if path.is_dir():
        names = sorted(
            p.stem for p in path.glob("*.yaml") if p.name not in (STEPS_FILE, FRAGMENTS_FILE)
        )
    elif path.suffix == ".yaml" and path.name not in (STEPS_FILE, FRAGMENTS_FILE):
        names = [path.stem]
    else:
        usage_error(
            f"{path}: expected a flow file (NAME.yaml) or a directory of them", as_json=as_json
        )
    if not names:
        usage_error(f"{path}: no flow files in it", as_json=as_json)
    try:
        return {name: flow_sources(name, directory) for name in names}
    except OSError as exc:
        usage_error(f"{path}: cannot read {exc.filename}: {exc.strerror}", as_json=as_json)


def register(app: typer.Typer) -> None:
    app.command("publish")(publish)
    app.command("versions")(versions)
    app.command("diff")(diff)
    app.command("approve")(approve)
    app.command("retire")(retire)


def publish(
    path: Annotated[
        Path, typer.Argument(help="A flow file, or a directory of flow files.", show_default=False)
    ],
    note: Annotated[str, typer.Option("--note", help="What changed and why (required).")],
    db: DbOption = None,
    json: JsonOption = False,
) -> None:
    """Publish flow files as new draft versions (engineering): immutable, with their content
    hash, author, time and note. Every flow is checked first; nothing is published if one
    does not load. A flow whose content is published already keeps that version."""
    files = read_flow_files(path, json)
    done: list[Published] = _call(db, json, lambda s: s.publish(files, note))
    if json:
        print_json([{**version_dict(p.version), "new": p.new} for p in done])
        return
    for p in done:
        v = p.version
        if p.new:
            out.print(
                f"[green]✔[/] flow {v.flow} version {v.version} published as a draft "
                f"({v.content_hash[:12]}); approve it: pkgline flow approve {v.flow} {v.version}"
            )
        else:
            out.print(f"flow {v.flow}: unchanged, version {v.version} ({v.state.value}) holds it")


def versions(flow: FlowArg, db: DbOption = None, json: JsonOption = False) -> None:
    """A flow's versions: state, hash, author, time, note and approvals."""
    found = _call(db, json, lambda s: s.versions(flow))
    if json:
        print_json([version_dict(v) for v in found])
        return
    table = Table(title=f"Versions of {flow}")
    for column in ("version", "state", "hash", "author", "published", "note", "approved by"):
        table.add_column(column, overflow="fold")
    for v in found:
        table.add_row(
            str(v.version),
            v.state.value,
            v.content_hash[:12],
            v.author,
            f"{v.published_at:%Y-%m-%d %H:%M}",
            v.note,
            escape(approvals_text(v)),
        )
    out.print(table)


def diff(
    flow: FlowArg,
    old: Annotated[int, typer.Argument(help="The earlier version.", show_default=False)],
    new: Annotated[int, typer.Argument(help="The later version.", show_default=False)],
    db: DbOption = None,
    json: JsonOption = False,
) -> None:
    """What changed between two versions, in words: sequence, steps, values, limits, claims."""
    changes = _call(db, json, lambda s: s.diff(flow, old, new))
    if json:
        print_json({"flow": flow, "from": old, "to": new, "changes": changes})
        return
    if not changes:
        out.print(f"flow {flow}: versions {old} and {new} enforce the same rules")
        return
    out.print(f"flow {flow}, version {old} -> {new}:")
    for line in changes:
        out.print(f"  - {line}")


def approve(
    flow: FlowArg,
    version: VersionArg,
    meaning: MeaningOption = None,
    config: SignaturesConfigOption = None,
    db: DbOption = None,
    json: JsonOption = False,
) -> None:
    """Approve a draft version, electronically signed (your OS account in direct mode) with
    --meaning: the first approval an engineer's; where [signatures] two_signers names
    approve_flow, a second, different person with the quality role approves too. New lots of
    the flow start on it once approved. Each approval is linked to the content hash."""
    text = meaning if meaning is not None else SIGNED[Action.FLOW_APPROVE]
    signature = SignatureGiven(os_account(), text)
    rules = signing_policy(config)
    v = _call(db, json, lambda s: s.approve(flow, version, signatures=(signature,)), rules)
    needed = (rules or SignaturePolicy()).signers(Action.FLOW_APPROVE)
    if json:
        print_json({**version_dict(v), "approvals_needed": needed})
        return
    a = v.approvals[-1]
    if v.state is VersionState.APPROVED:
        out.print(
            f"[green]✔[/] flow {v.flow} version {v.version} approved by "
            f"{', '.join(f'{x.printed_name} ({x.signer})' for x in v.approvals)}: {a.meaning} "
            f"({v.content_hash[:12]}); new lots start on it"
        )
        return
    out.print(
        f"flow {v.flow} version {v.version} is still a draft, approved by {len(v.approvals)} of "
        f"{needed} ({a.printed_name}, {a.signer}): a second signer, a different person with "
        "the quality role, must approve it too. Direct mode signs with your OS account alone: "
        "the second signer approves as their own OS account "
        f"('pkgline flow approve {v.flow} {v.version} --config ...', where their account may "
        "use the database: PostgreSQL; a SQLite file is its owner's alone), or with their "
        "password through the service (the pkgline server has no flow route yet)"
    )


def retire(
    flow: FlowArg, version: VersionArg, db: DbOption = None, json: JsonOption = False
) -> None:
    """Retire a version (engineering): no new lot starts on it; lots on it run to their end."""
    v = _call(db, json, lambda s: s.retire(flow, version))
    if json:
        print_json(version_dict(v))
        return
    out.print(f"[green]✔[/] flow {v.flow} version {v.version} retired; lots on it go on")


async def show_version(db: str | None, flow: str, version: int | None) -> tuple[FlowVersion, Any]:
    """A version and the flow its files make (``flow show --version``)."""
    async with _service(db) as service:
        v = await service.version(flow, version)
    try:
        return v, service.builds.build(v)
    except Exception as exc:  # a version that no longer loads with this code's loader
        raise InvalidInput(f"flow {flow} version {v.version} does not load: {exc}") from None
