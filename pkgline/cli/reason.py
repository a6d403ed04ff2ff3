"""``pkgline reason add|list|retire``: quality's catalogues of hold and scrap reason codes
(:mod:`mes.domain.reasons`), named by ``lot hold|scrap --code``. Thin: parse, call the
reason service, print."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from mes.domain.reasons import ReasonCode, ReasonKind
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
    help="Hold and scrap reason codes, kept by quality: add, list, retire.",
    no_args_is_help=True,
)

CodeArg = Annotated[str, typer.Argument(help="Reason code (capitals).", show_default=False)]


def reason_dict(r: ReasonCode) -> dict[str, Any]:
    return {
        "code": r.code,
        "kind": r.kind.value,
        "text": r.text,
        "release_by": sorted(role.value for role in r.release_roles),
        "active": r.active,
        "added_by": r.added_by,
        "added_at": r.added_at.isoformat(),
        "retired_by": r.retired_by,
        "retired_at": r.retired_at.isoformat() if r.retired_at else None,
        "retired_reason": r.retired_reason,
    }


@app.command()
def add(
    code: CodeArg,
    kind: Annotated[str, typer.Option("--kind", help="hold or scrap.", show_default=False)],
    text: Annotated[str, typer.Option("--text", help="What it means.", show_default=False)],
    release_by: Annotated[
        list[str] | None,
        typer.Option(
            "--release-by",
            help="Hold codes: only this role may release such a hold (repeatable).",
        ),
    ] = None,
    db: DbOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Add a reason code to the hold or scrap catalogue."""
    who = current_user(user)

    async def work() -> ReasonCode:
        async with open_services(db) as services:
            return await services.reasons.add(
                code, kind.strip(), text, who, release_roles=release_by or ()
            )

    found = run(work, as_json=json, db=db)
    if json:
        print_json(reason_dict(found))
        return
    out.print(Text.assemble(("✔ ", "green"), f"{found.kind.value} code {found.code} added"))


@app.command("list")
def list_(
    kind: Annotated[str | None, typer.Option("--kind", help="hold or scrap.")] = None,
    retired: Annotated[bool, typer.Option("--retired", help="Retired codes too.")] = False,
    db: DbOption = None,
    json: JsonOption = False,
) -> None:
    """The catalogues: code, kind, text, who may release."""
    wanted: ReasonKind | None = None
    if kind is not None:
        try:
            wanted = ReasonKind(kind.strip())
        except ValueError:
            usage_error(f"--kind {kind!r}: expected hold or scrap", as_json=json)

    async def work() -> list[ReasonCode]:
        async with open_services(db) as services:
            return await services.reasons.find(kind=wanted, retired=retired)

    found = run(work, as_json=json, db=db)
    if json:
        print_json([reason_dict(r) for r in found])
        return
    if not found:
        out.print("no reason codes")
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("code", "kind", "text", "released by", "state"):
        table.add_column(column)
    for r in found:
        table.add_row(
            r.code,
            r.kind.value,
            r.text,
            ", ".join(sorted(role.value for role in r.release_roles)),
            "active" if r.active else Text("retired", style="yellow"),
        )
    out.print(table)


@app.command()
def retire(
    code: CodeArg,
    reason: Annotated[str, typer.Option("--reason", help="Why it is retired.")] = "",
    db: DbOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Retire a code: holds and scraps may no longer name it (those that did keep it)."""
    if not reason.strip():
        usage_error("--reason must say why the code is retired", as_json=json)
    who = current_user(user)

    async def work() -> ReasonCode:
        async with open_services(db) as services:
            return await services.reasons.retire(code, who, reason.strip())

    found = run(work, as_json=json, db=db)
    if json:
        print_json(reason_dict(found))
        return
    out.print(Text.assemble(("✔ ", "green"), f"{found.kind.value} code {found.code} retired"))
