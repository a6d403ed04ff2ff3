"""``pkgline flow publish | versions | diff | approve | retire``: flow versions in the database.

Thin: read the files, call :class:`mes.flowversions.FlowVersionService` (directly, or
through the pkgline server's ``/flows`` routes: :func:`pkgline.cli.modes.either`), print from
the JSON both answer (:mod:`pkgline.flow_views`). A version is published as a draft; an
engineer approves it (signed) before lots start on it; retiring it stops new starts.
docs/flow-files.md ("Versions and approval").
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flows.loader import flow_sources
from flows.resolve import FRAGMENTS_FILE, STEPS_FILE
from mes.domain.authority import Action
from mes.domain.flowversions import VersionState
from mes.domain.signatures import SIGNED, SignatureGiven, SignaturePolicy
from pkgline import flow_views as views
from pkgline.accounts import os_account
from pkgline.cli.common import DbOption, JsonOption, marked, out, print_json, run, usage_error
from pkgline.cli.modes import (
    Remote,
    ServerOption,
    call,
    either,
    password_again,
    say_direct,
    segment,
    target,
)
from pkgline.cli.signing import MeaningOption, SignaturesConfigOption
from pkgline.cli.signing import policy as signing_policy
from pkgline.cli.times import stamp

if TYPE_CHECKING:  # the service is opened in direct mode only
    from mes.flowversions import FlowVersionService

FlowArg = Annotated[str, typer.Argument(help="Flow name.", show_default=False)]
VersionArg = Annotated[int, typer.Argument(help="Version number.", show_default=False)]
Json = dict[str, Any]


@asynccontextmanager
async def _service(
    db: str | None, policy: SignaturePolicy | None = None
) -> AsyncIterator[FlowVersionService]:
    from pkgline.bootstrap import open_services

    async with open_services(db, signatures=policy) as services:
        yield services.flow_versions


def approvals_text(v: Mapping[str, Any]) -> str:
    """Each approval's signer, printed name, time, method and meaning (21 CFR 11.50)."""
    return "; ".join(
        f"{a['printed_name']} ({a['signer']}) {_when(a['at'])} [{a['method']}]: {a['meaning']}"
        for a in v["approvals"]
    )


def _when(iso: str) -> str:
    return stamp(iso, seconds=False)


def approvals_time(approval: Mapping[str, Any]) -> str:
    """When an approval (as JSON) was signed, to the minute."""
    return _when(approval["at"])


def read_flow_files(path: Path, as_json: bool) -> dict[str, dict[str, str]]:
    """The files of each flow to publish: one flow file (``steps.yaml`` and
    ``fragments.yaml`` beside it), or every flow file of a defs directory."""
    directory = path if path.is_dir() else path.parent
    if path.is_dir():
        names = sorted(
            p.stem for p in path.glob("*.yaml") if p.name not in (STEPS_FILE, FRAGMENTS_FILE)
        )
    elif path.suffix == ".yaml" and path.name not in (STEPS_FILE, FRAGMENTS_FILE):
        if not path.is_file():
            usage_error(f"{path}: no such flow file", as_json=as_json)
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
        usage_error(
            f"{path}: cannot read {exc.filename}: {exc.strerror} (a flow file is published "
            f"with the {STEPS_FILE} and {FRAGMENTS_FILE} beside it)",
            as_json=as_json,
        )
    except UnicodeDecodeError as exc:
        usage_error(f"{path}: a flow file is not UTF-8 text: {exc.reason}", as_json=as_json)


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
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """Publish flow files as new draft versions (engineering): immutable, with their content
    hash, author, time and note. Every flow is checked first; nothing is published if one
    does not load. A flow whose content is published already keeps that version. Through
    the server, the files' text is sent (at most the server's max_body_kb)."""
    files = read_flow_files(path, json)

    async def direct() -> list[Json]:
        async with _service(db) as service:
            done = await service.publish(files, note)
            active = {p.version.flow: await service.active_version(p.version.flow) for p in done}
        return views.published_dicts([(p.version, p.new) for p in done], active)

    remote = Remote("POST", "/flows/versions", {"note": note, "flows": files})
    done: list[Json] = either(db, server, json, direct, remote)
    if json:
        print_json(done)
        return
    for v in done:
        if v["new"]:
            out.print(
                marked(
                    "✔",
                    "green",
                    f"flow {v['flow']} version {v['version']} published as a draft "
                    f"({v['content_hash'][:12]}); approve it: pkgline flow approve {v['flow']} "
                    f"{v['version']}",
                )
            )
        elif v["state"] == "retired":
            out.print(
                f"flow {v['flow']}: unchanged, version {v['version']} (retired) holds it, and "
                "a retired version starts no lot; to start lots on these files again, say why "
                "in a comment line of the flow file and publish it: a new version, approved as "
                "any other"
            )
        elif v["state"] == "approved" and v.get("active_version") not in (None, v["version"]):
            active = v["active_version"]
            out.print(
                f"flow {v['flow']}: unchanged, version {v['version']} (approved) holds it, but "
                f"new lots start on version {active}, newer; to start them on these files "
                f"again, retire version {active} (pkgline flow retire {v['flow']} {active} "
                "--reason ...)"
            )
        else:
            out.print(
                f"flow {v['flow']}: unchanged, version {v['version']} ({v['state']}) holds it"
            )


def versions(
    flow: FlowArg, db: DbOption = None, server: ServerOption = None, json: JsonOption = False
) -> None:
    """A flow's versions: state, hash, author, time, note and approvals."""

    async def direct() -> list[Json]:
        async with _service(db) as service:
            found = await service.versions(flow)
            return views.versions_dicts(found, await service.active_version(flow))

    found: list[Json] = either(
        db, server, json, direct, Remote("GET", f"/flows/{segment(flow)}/versions")
    )
    if json:
        print_json(found)
        return
    from rich.table import Table

    table = Table(title=f"Versions of {flow}")
    for column in ("version", "state", "hash", "author", "published", "note", "approved by"):
        table.add_column(column, overflow="fold")
    for v in found:
        table.add_row(
            str(v["version"]),
            v["state"] + (" (active)" if v.get("active") else ""),
            v["content_hash"][:12],
            v["author"],
            _when(v["published_at"]),
            v["note"],
            approvals_text(v),
        )
    out.print(table)
    active = next((v["version"] for v in found if v.get("active")), None)
    out.print(
        f"new lots of {flow} start on version {active} (active: the newest approved)"
        if active is not None
        else f"no version of {flow} is approved: no lot of it starts"
    )


def diff(
    flow: FlowArg,
    old: Annotated[int, typer.Argument(help="The earlier version.", show_default=False)],
    new: Annotated[int, typer.Argument(help="The later version.", show_default=False)],
    db: DbOption = None,
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """What changed between two versions, in words: sequence, steps, values, limits, claims."""

    async def direct() -> Json:
        async with _service(db) as service:
            return views.diff_dict(flow, old, new, await service.diff(flow, old, new))

    query = [("from", str(old)), ("to", str(new))]
    done: Json = either(
        db, server, json, direct, Remote("GET", f"/flows/{segment(flow)}/diff", query=query)
    )
    if json:
        print_json(done)
        return
    changes = done["changes"]
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
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """Approve a draft version, electronically signed with --meaning: the first approval an
    engineer's; where [signatures] two_signers names approve_flow, a second, different
    person with the quality role approves too. New lots of the flow start on it once
    approved. Each approval is linked to the content hash. Direct mode: your OS account
    signs (--config: whose [signatures]). Through the server: your password, given again
    (the server's [signatures] apply)."""
    text = meaning if meaning is not None else SIGNED[Action.FLOW_APPROVE]
    via = target(server, db, as_json=json)
    if via is not None:
        path = f"/flows/{segment(flow)}/versions"
        seen, said = call(via, "GET", path, as_json=json, with_principal=True)
        username = (said or "").split(" (")[0]
        current = [v for v in seen if v["version"] == version]
        approvals = len(current[0]["approvals"]) if current else 0
        password = password_again(
            f"password of {username}, signing '{text}' for flow {flow} version {version}: "
        )
        signatures = (
            [
                {
                    "username": username,
                    "password": password,
                    "meaning": text,
                    "approvals_seen": approvals,
                }
            ]
            if password
            else []
        )
        body = {"signatures": signatures}
        v: Json = call(via, "POST", f"{path}/{version}/approve", body, as_json=json, quiet=True)
    else:
        say_direct(db)
        signature = SignatureGiven(os_account(), text)
        rules = signing_policy(config, as_json=json)

        async def work() -> Json:
            async with _service(db, rules) as service:
                done = await service.approve(flow, version, signatures=(signature,))
                active = await service.active_version(flow)
                return views.approved_dict(done, service.approvals_needed, active)

        v = run(work, as_json=json, db=db)
    if json:
        print_json(v)
        return
    a = v["approvals"][-1]
    if v["state"] == VersionState.APPROVED.value:
        names = ", ".join(f"{x['printed_name']} ({x['signer']})" for x in v["approvals"])
        active = v.get("active_version")
        starts = (
            "new lots start on it"
            if active in (None, v["version"])
            else f"version {active}, newer, stays the one new lots start on (this one takes "
            f"lots moved to it: pkgline lot migrate; or retire {active}: pkgline flow retire "
            f"{v['flow']} {active} --reason ...)"
        )
        out.print(
            marked(
                "✔",
                "green",
                f"flow {v['flow']} version {v['version']} approved by {names}: "
                f"{a['meaning']} ({v['content_hash'][:12]}); {starts}",
            )
        )
        return
    how = (
        "The second signer approves through the server as themselves "
        f"('pkgline flow approve {v['flow']} {v['version']}', signing with their own password)"
        if via is not None
        else "Direct mode signs with your OS account alone: the second signer approves as "
        f"their own OS account ('pkgline flow approve {v['flow']} {v['version']} --config "
        "...', where their account may use the database: PostgreSQL; a SQLite file is its "
        "owner's alone), or with their password through the pkgline server "
        f"('pkgline flow approve {v['flow']} {v['version']} --server ...')"
    )
    out.print(
        f"flow {v['flow']} version {v['version']} is still a draft, approved by "
        f"{len(v['approvals'])} of {v['approvals_needed']} ({a['printed_name']}, "
        f"{a['signer']}): a second signer, a different person with the quality role, must "
        f"approve it too. {how}"
    )


def retire(
    flow: FlowArg,
    version: VersionArg,
    reason: Annotated[
        str, typer.Option("--reason", help="Why it is retired (required; recorded).")
    ] = "",
    db: DbOption = None,
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """Retire a version (engineering): no new lot starts on it; lots on it run to their end.
    The reason is recorded with it in the security log."""
    if not reason.strip():
        usage_error("--reason must say why the version is retired", as_json=json)
    why = reason.strip()

    async def direct() -> Json:
        async with _service(db) as service:
            return views.version_dict(await service.retire(flow, version, why))

    path = f"/flows/{segment(flow)}/versions/{version}/retire"
    v: Json = either(db, server, json, direct, Remote("POST", path, {"reason": why}))
    if json:
        print_json(v)
        return
    out.print(
        marked("✔", "green", f"flow {v['flow']} version {v['version']} retired; lots on it go on")
    )


async def show_version(db: str | None, flow: str, version: int | None) -> Json:
    """A version and the flow its files make, as JSON (``flow show --version``, direct)."""
    async with _service(db) as service:
        return await views.shown_version(service, flow, version)
