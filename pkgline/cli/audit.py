"""``pkgline audit``: check that the lot history and the security log are as written."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pkgline.cli.common import (
    EXIT_TAMPERED,
    DbOption,
    JsonOption,
    err,
    marked,
    out,
    print_json,
    usage_error,
)
from pkgline.cli.modes import Remote, ServerOption, either

app = typer.Typer(
    help="The audit trail: verify the hash chains of the lot history and the security log.",
    no_args_is_help=True,
)


@app.command()
def verify(
    anchor: Annotated[
        list[str] | None,
        typer.Option(
            "--anchor",
            help="A lots_head or security_head an earlier verify printed (kept elsewhere): "
            "it must still be in the history or the security log (repeatable).",
        ),
    ] = None,
    db: DbOption = None,
    server: ServerOption = None,
    json: JsonOption = False,
) -> None:
    """Check every history entry against its hash and the entry before it, each lot's newest
    entry and the chain over lots, every electronic signature against the entry it signs,
    every security event against its hash and the event before it, and that the database
    still refuses changes to the history and the security log. Exits 0 with the count of
    entries checked, or 6 naming the first entry that does not match (docs/security.md)."""
    anchors = [a.strip().lower() for a in anchor or []]
    for a in anchors:
        if len(a) != 64 or any(c not in "0123456789abcdef" for c in a):
            usage_error(
                f"--anchor expects a SHA-256 in hex (64 characters), got {a!r}", as_json=json
            )

    async def direct() -> dict[str, Any]:
        from mes.adapters.audit import verify_history
        from mes.adapters.schema import require_current_schema
        from pkgline.bootstrap import open_engine

        async with open_engine(db, must_exist=True) as engine:
            await require_current_schema(engine)
            found: dict[str, Any] = (await verify_history(engine, anchors=anchors)).to_dict()
            return found

    remote = Remote("GET", "/audit/verify", query=[("anchor", a) for a in anchors])
    found = either(db, server, json, direct, remote)
    problem = found.get("problem")
    if json:
        print_json(found)
    elif problem is None:
        out.print(
            marked(
                "✔",
                "green",
                f"history verified: {_count(found['entries'], 'entry', 'entries')} of "
                f"{_count(found['lots'], 'lot', 'lots')}, "
                f"{_count(found['signatures'], 'signature', 'signatures')}, "
                f"{_count(found['security_events'], 'security event', 'security events')}; "
                f"head of the chain over lots {found['lots_head']}, of the security log "
                f"{found['security_head']}",
            )
        )
    else:
        err.print(marked("✘", "bold red", f"history does not verify: {problem['message']}"))
        err.print(f"  ({found['entries']} entries checked before it)")
    if problem is not None:
        raise typer.Exit(EXIT_TAMPERED)


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"
