"""Electronic signatures on the command line, direct mode: the OS account signs (method
``os``) with the meaning ``--meaning`` gives, else one built from the command and its
``--reason``; ``--config`` (or ``$PKGLINE_CONFIG``) names the line.toml whose
``[signatures]`` say which operations need two signers (docs/security.md)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

if TYPE_CHECKING:
    # imported where used: the options below are on commands that also go through the
    # server, which import no lot tracker (tests/test_imports.py)
    from mes.domain.authority import Action
    from mes.domain.signatures import SignatureGiven, SignaturePolicy
    from mes.service import LotService

T = TypeVar("T")

MeaningOption = Annotated[
    str | None,
    typer.Option(
        "--meaning",
        help="What your signature means (e.g. 'approved release', 'scrap: voids in mold'); "
        "default: built from the command and --reason.",
        show_default=False,
    ),
]
SignaturesConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        envvar="PKGLINE_CONFIG",
        help="The line configuration (line.toml) whose [signatures] apply "
        "(default: $PKGLINE_CONFIG; without one, one signer each).",
        show_default=False,
    ),
]


def policy(config: Path | None) -> SignaturePolicy | None:
    """The signature policy of ``config`` (None: the default, one signer each)."""
    if config is None:
        return None
    from pkgline.config import load_line_config  # pydantic: only when a config is given

    return load_line_config(config).signatures.policy()


def os_signature(action: Action, meaning: str | None, reason: str | None) -> SignatureGiven:
    """Direct mode's signature: the OS account, with the meaning given or built."""
    from mes.domain.signatures import SignatureGiven, default_meaning
    from pkgline.bootstrap import os_account

    text = meaning if meaning is not None else default_meaning(action, reason)
    return SignatureGiven(os_account(), text)


def signed(
    call: Callable[[LotService, Sequence[SignatureGiven]], Awaitable[T]],
    action: Action,
    meaning: str | None,
    reason: str | None,
) -> Callable[[LotService], Awaitable[T]]:
    """``call`` with direct mode's signature; a configuration that asks for a second signer
    is refused saying that direct mode cannot give one."""

    async def act(service: LotService) -> T:
        from mes.domain.signatures import SignatureRequired

        signature = os_signature(action, meaning, reason)  # a bad reason: refused, as any
        try:
            return await call(service, (signature,))
        except SignatureRequired as exc:
            if exc.needed > 1:
                raise SignatureRequired(
                    f"{exc.message}. Direct mode signs with your OS account alone: a second "
                    "signer cannot be given here. Do this through the pkgline server, where "
                    "both signers give their passwords, or change [signatures] two_signers in "
                    "the line configuration",
                    action=exc.action,
                    needed=exc.needed,
                    given=exc.given,
                    meaning=exc.meaning,
                    lot_id=exc.lot_id,
                ) from None
            raise

    return act
