"""Electronic signatures on the command line, direct mode: the OS account signs (method
``os``) with the meaning ``--meaning`` gives, else one built from the command and its
``--reason``; ``--config`` (or ``$PKGLINE_CONFIG``) names the line.toml whose
``[signatures]`` say which operations need two signers (docs/security.md). Through the
server, the requester signs with their password given again (:func:`server_signature`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from pkgline.cli import modes
from pkgline.cli.common import EXIT_REFUSED, fail, usage_error
from pkgline.cli.modes import call

if TYPE_CHECKING:
    # imported where used: the options below are on commands that also go through the
    # server, which import no lot tracker (tests/test_imports.py)
    from mes.domain.authority import Action
    from mes.domain.signatures import SignatureGiven, SignaturePolicy
    from mes.service import LotService
    from pkgline.cli.remote import Server

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

SecondSignerOption = Annotated[
    str | None,
    typer.Option(
        "--second-signer",
        help="Through the server, where line.toml's [signatures] two_signers asks two people: "
        "the second signer's user name (a different person with the role); their password is "
        "asked after yours (or read from the second line of standard input).",
        show_default=False,
    ),
]


_ROUTES = {"lot": "lots", "material lot": "materials"}
"""Where the server shows what a signature binds to (its ``version``), by what it is."""


def policy(config: Path | None, *, as_json: bool = False) -> SignaturePolicy | None:
    """The signature policy of ``config`` (None: the default, one signer each); a file that
    does not load is a usage error (exit 2), before anything is read or written."""
    if config is None:
        return None
    # pydantic: only when a config is given
    from pkgline.config import ConfigError, load_line_config

    try:
        return load_line_config(config).signatures.policy()
    except ConfigError as exc:
        usage_error(f"--config {exc}", as_json=as_json)


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
        signature = os_signature(action, meaning, reason)  # a bad reason: refused, as any
        return await direct_mode_says(call(service, (signature,)))

    return act


async def direct_mode_says(signed_call: Awaitable[T]) -> T:
    """The answer of a call signed in direct mode; a configuration that asks for a second
    signer is refused saying that direct mode cannot give one."""
    from mes.domain.signatures import SignatureRequired

    try:
        return await signed_call
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


def server_signature(
    via: Server,
    lot: str,
    action: Action,
    meaning: str | None,
    reason: str | None,
    *,
    as_json: bool,
    subject: str = "lot",
) -> dict[str, Any] | None:
    """The requester's electronic signature for an operation through the server (21 CFR
    11.200: both components, outside a session): who the server knows this client as, the
    lot's version the signer saw, the meaning, and the password given again, read from the
    terminal without echo (or one line of standard input when it is not a terminal);
    ``subject``: "lot", or "material lot" (its release from quarantine). None
    when no password is given: the request goes unsigned, and the server says what it needs
    (not_authorized before anything else, else signature_required)."""
    from mes.domain.errors import InvalidInput
    from mes.domain.signatures import default_meaning

    try:  # the meaning built from a reason that is not one line: refused before a prompt
        text = meaning if meaning is not None else default_meaning(action, reason)
    except InvalidInput as exc:
        fail(exc.message, exc.to_dict(), EXIT_REFUSED, as_json)
    path = f"/{_ROUTES[subject]}/{modes.segment(lot)}"
    shown = call(via, "GET", path, as_json=as_json, quiet=True, with_principal=True)
    body, said = shown
    username = (said or "").split(" (")[0]
    prompt = f"password of {username}, signing '{text}' for {subject} {lot}: "
    password = modes.password_again(prompt)
    if not password:
        return None
    return {
        "username": username,
        "password": password,
        "meaning": text,
        "lot_version": body["version"],
    }


def server_signatures(
    via: Server,
    lot: str,
    action: Action,
    meaning: str | None,
    reason: str | None,
    second: str | None,
    *,
    as_json: bool,
    subject: str = "lot",
) -> list[dict[str, Any]]:
    """The requester's signature (:func:`server_signature`) and, with ``second``, the second
    signer's: the same meaning and lot version, their own password given again (the terminal,
    or the next line of standard input; none given: the request carries the first alone, and
    the server says what it needs). None at all (``[]``) when the requester gives no password."""
    first = server_signature(via, lot, action, meaning, reason, as_json=as_json, subject=subject)
    if first is None:
        return []
    if second is None or not second.strip():
        return [first]
    second = second.strip()
    password = modes.password_again(
        f"password of {second} (second signer), signing '{first['meaning']}' for {subject} {lot}: "
    )
    if not password:
        return [first]
    return [first, {**first, "username": second, "password": password}]


def second_signer_hint(second: str | None) -> Callable[[Mapping[str, Any]], str | None]:
    """What a refusal for a missing second signature adds in words when the command was given
    no ``--second-signer``: the server's message says a second person must sign, not how to
    name them here."""

    def hint(refused: Mapping[str, Any]) -> str | None:
        if refused.get("error") != "signature_required" or second:
            return None
        if int(refused.get("signers_needed") or 0) < 2:
            return None
        return (
            ". Name the second signer with --second-signer NAME: their password is asked "
            "after yours"
        )

    return hint


def no_second_signer_here(second: str | None, *, as_json: bool) -> None:
    """Direct mode signs with the OS account alone: ``--second-signer`` is refused there,
    before anything is done, saying where a second person signs."""
    if second is not None:
        usage_error(
            "--second-signer: direct mode signs with your OS account alone; a second signer "
            "signs through the pkgline server (--server, or PKGLINE_SERVER)",
            as_json=as_json,
        )
