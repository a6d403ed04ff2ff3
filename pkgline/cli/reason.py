"""``pkgline reason add|list|retire``: quality's catalogues of hold and scrap reason codes
(:mod:`mes.domain.reasons`), named by ``lot hold|scrap --code``. Thin: parse, one call of the
reason service through the pkgline server or directly (:func:`pkgline.cli.modes.served`),
print its JSON."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from mes.domain.reasons import ReasonKind
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
from pkgline.interlock_views import reason_dict

app = typer.Typer(
    help="Hold and scrap reason codes, kept by quality: add, list, retire.",
    no_args_is_help=True,
)

CodeArg = Annotated[str, typer.Argument(help="Reason code (capitals).", show_default=False)]


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
    server: ServerOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Add a reason code to the hold or scrap catalogue."""
    who = current_user(user)
    body = {"code": code, "kind": kind.strip(), "text": text, "release_by": release_by or []}
    answer = served(
        db,
        server,
        json,
        Remote("POST", "/reasons", body),
        lambda s: s.reasons.add(code, kind.strip(), text, who, release_roles=release_by or ()),
        reason_dict,
    )
    _done(answer, "added", json)


def _done(answer: dict[str, Any], what: str, as_json: bool) -> None:
    if as_json:
        print_json(answer)
        return
    out.print(Text.assemble(("✔ ", "green"), f"{answer['kind']} code {answer['code']} {what}"))


@app.command("list")
def list_(
    kind: Annotated[str | None, typer.Option("--kind", help="hold or scrap.")] = None,
    retired: Annotated[bool, typer.Option("--retired", help="Retired codes too.")] = False,
    db: DbOption = None,
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """The catalogues: code, kind, text, who may release."""
    wanted: ReasonKind | None = None
    if kind is not None:
        try:
            wanted = ReasonKind(kind.strip())
        except ValueError:
            usage_error(f"--kind {kind!r}: expected hold or scrap", as_json=json)

    query = [("kind", wanted.value)] if wanted is not None else []
    if retired:
        query.append(("retired", "true"))
    found = served(
        db,
        server,
        json,
        Remote("GET", "/reasons", query=query or None),
        lambda s: s.reasons.find(kind=wanted, retired=retired),
        lambda codes: [reason_dict(r) for r in codes],
    )
    if json:
        print_json(found)
        return
    if not found:
        out.print("no reason codes")
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("code", "kind", "text", "released by", "state"):
        table.add_column(column, overflow="fold")
    for r in found:
        table.add_row(
            r["code"],
            r["kind"],
            r["text"],
            ", ".join(r["release_by"]),
            "active" if r["active"] else Text("retired", style="yellow"),
        )
    out.print(table)


@app.command()
def retire(
    code: CodeArg,
    reason: Annotated[str, typer.Option("--reason", help="Why it is retired.")] = "",
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Retire a code: holds and scraps may no longer name it (those that did keep it)."""
    if not reason.strip():
        usage_error("--reason must say why the code is retired", as_json=json)
    who = current_user(user)
    answer = served(
        db,
        server,
        json,
        Remote("POST", f"/reasons/{segment(code)}/retire", {"reason": reason.strip()}),
        lambda s: s.reasons.retire(code, who, reason.strip()),
        reason_dict,
    )
    _done(answer, "retired", json)
