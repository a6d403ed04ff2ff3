"""``pkgline lot migrate``: move a lot to another approved version of its flow (engineering),
electronically signed like a release (direct mode: the OS account, method ``os``; through the
server: the password given again)."""

from __future__ import annotations

from typing import Annotated

import typer

from pkgline.cli import signing
from pkgline.cli.common import (
    DbOption,
    JsonOption,
    ReasonOption,
    UserOption,
    current_user,
)
from pkgline.cli.modes import ServerOption
from pkgline.cli.signing import MeaningOption, SecondSignerOption, SignaturesConfigOption


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate)


def migrate(
    lot: Annotated[str, typer.Argument(help="Lot id.", show_default=False)],
    version: Annotated[int, typer.Option("--version", help="The approved version to move to.")],
    reason: ReasonOption = None,
    db: DbOption = None,
    server: ServerOption = None,
    user: UserOption = None,
    meaning: MeaningOption = None,
    second_signer: SecondSignerOption = None,
    config: SignaturesConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Move a waiting or held lot to another approved version of its flow, only where its
    path so far is valid in that version; recorded in its history (engineering). Signed by
    you (your OS account in direct mode) with --meaning."""
    from mes.domain.authority import Action
    from mes.domain.commands import MigrateLot
    from pkgline.cli.lot_act import operate, segment  # the lot commands' one way to act

    command = MigrateLot(lot, version, current_user(user), reason or "")
    why = f"to version {version}" + (f", {reason.strip()}" if reason and reason.strip() else "")
    act = signing.signed(
        lambda s, sig: s.migrate(command, signatures=sig), Action.MIGRATE, meaning, why
    )
    remote = (f"/lots/{segment(lot)}/migrate", {"version": version, "reason": reason})
    operate(
        db,
        server,
        json,
        act,
        remote,
        f"moved to version {version}",
        config=config,
        second=second_signer,
        sign=(lot, Action.MIGRATE, meaning, why),
    )
