"""``pkgline lot migrate``: move a lot to another approved version of its flow (engineering)."""

from __future__ import annotations

from typing import Annotated

import typer

from mes.domain.commands import MigrateLot
from pkgline.cli.common import (
    DbOption,
    JsonOption,
    ReasonOption,
    UserOption,
    current_user,
)
from pkgline.cli.modes import ServerOption


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate)


def migrate(
    lot: Annotated[str, typer.Argument(help="Lot id.", show_default=False)],
    version: Annotated[int, typer.Option("--version", help="The approved version to move to.")],
    reason: ReasonOption = None,
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    json: JsonOption = False,
) -> None:
    """Move a waiting or held lot to another approved version of its flow, only where its
    path so far is valid in that version; recorded in its history (engineering)."""
    from pkgline.cli.lot import _act, _q  # the lot commands' one way to act and print

    command = MigrateLot(lot, version, current_user(user), reason or "")
    remote = (f"/lots/{_q(lot)}/migrate", {"version": version, "reason": reason})
    _act(db, server, json, lambda s: s.migrate(command), remote, f"moved to version {version}")
