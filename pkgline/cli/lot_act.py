"""One lot operation of ``pkgline lot`` (and ``lot migrate``): through the server or on the
database, and the lot as it now is printed from the same JSON either way."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from pkgline.api.fields import BODY_KEYS, located
from pkgline.cli import modes, signing
from pkgline.cli.common import EXIT_REFUSED, err, marked, out, print_json, run
from pkgline.cli.lot_view import state_text
from pkgline.cli.modes import call, say_direct, target
from pkgline.hold_views import hold_record

if TYPE_CHECKING:
    from mes.domain.authority import Action
    from mes.service import LotService, Outcome


def segment(lot: str) -> str:
    """A lot id as one path segment of a route."""
    return modes.segment(lot)


@dataclass(frozen=True)
class Options:
    """Which of a lot command's options gave each key of its route's body, for a refusal's
    ``field`` to name the option (``--param cavity_depth_um``, ``--reject``) where the lot
    tracker names the command's input (``values.cavity_depth_um``) and the server the body's
    key (``params.cavity_depth_um``): the same JSON directly and through the server."""

    route: str
    """The route's path, as :data:`pkgline.api.fields.BODY_KEYS` has it."""
    of_key: Mapping[str, str]
    """The body's key -> the option that gives it (``params`` -> ``--param``)."""

    def through_server(self, refusal: dict[str, Any]) -> dict[str, Any]:
        """The server's refusal, its field named by the body's key, as the command says it."""
        return located(refusal, self.of_key, sep=" ")

    def direct(self, refusal: dict[str, Any]) -> dict[str, Any]:
        """The lot tracker's refusal, its field named by the command's input, as the command
        says it (by way of the body's key, as the server names it)."""
        return self.through_server(located(refusal, BODY_KEYS[self.route]))


def operate(
    db: str | None,
    server: str | None,
    as_json: bool,
    action: Callable[[LotService], Awaitable[Outcome]],
    remote: tuple[str, dict[str, Any]],
    done: str,
    *,
    held_is_refused: bool = False,
    config: Path | None = None,
    sign: tuple[str, Action, str | None, str | None] | None = None,
    second: str | None = None,
    options: Options | None = None,
) -> None:
    """Run one lot operation, through the server (``remote``: the route and its body) or on
    the database (``action``), and print the lot as it now is, from the same JSON either
    way. ``held_is_refused``: a lot the operation put on hold instead (a track-in past a
    queue-time limit) is exit 1. ``config``: the line.toml whose ``[signatures]`` apply
    (direct mode). ``sign``: the lot, action, meaning and reason of a signed operation
    (through the server, the requester signs with their password, and ``second``, a second
    signer, with theirs: :func:`signing.server_signatures`). ``options``: the options that
    gave the body's keys, which a refusal's ``field`` names."""
    via = target(server, db, as_json=as_json)
    if via is not None:
        path, body = remote
        given = (
            [] if sign is None else signing.server_signatures(via, *sign, second, as_json=as_json)
        )
        if given:
            body = {**body, "signatures": given}
        answer: dict[str, Any] = call(
            via,
            "POST",
            path,
            body,
            as_json=as_json,
            hint=signing.second_signer_hint(second),
            refusal=None if options is None else options.through_server,
        )
    else:
        signing.no_second_signer_here(second, as_json=as_json)
        rules = signing.policy(config, as_json=as_json)
        say_direct(db)

        async def work() -> dict[str, Any]:
            from mes.domain.report import outcome_dict
            from pkgline.bootstrap import open_lot_service

            async with open_lot_service(db, signatures=rules) as service:
                outcome = await action(service)
                return outcome_dict(outcome.lot, outcome.entries, service.flow_of(outcome.lot))

        refusal = None if options is None else options.direct
        answer = run(work, as_json=as_json, db=db, refusal=refusal)
    print_outcome(answer, done, as_json, held_is_refused=held_is_refused)


def print_outcome(
    answer: Mapping[str, Any], done: str, as_json: bool, *, held_is_refused: bool
) -> None:
    from rich.text import Text

    from mes.domain.model import LotState

    state = LotState(str(answer["state"]))
    held = held_is_refused and state is LotState.HOLD
    if as_json:
        print_json(answer)
        if held:
            raise typer.Exit(EXIT_REFUSED)
        return
    if held and answer.get("hold_reason") is not None:
        err.print(
            marked(
                "✘",
                "bold red",
                f"lot {answer['id']} not tracked in, put on hold: {answer['hold_reason']}",
            )
        )
        err.print("an engineer decides: pkgline lot rework or pkgline lot release")
        raise typer.Exit(EXIT_REFUSED)
    line = Text.assemble(("✔ ", "green"), f"lot {answer['id']} {done}: ", state_text(state))
    if answer.get("step"):
        where = " at " if state is LotState.RUNNING else " after "
        line.append(where + str(answer["step"]))
    if state is LotState.RUNNING and answer.get("tool"):
        line.append(f" on {answer['tool']}")
    out.print(line)
    if answer.get("hold_reason") is not None:
        out.print(Text(f"  on hold: {answer['hold_reason']}", style="red"))
    for moved in carriers_moved(answer):
        out.print(f"  {moved}")
    for e in answer.get("recorded") or []:  # a hold of a running lot: the step it stopped
        if e.get("operation") == "hold":
            for label, text in hold_record(e.get("data") or {}):
                out.print(f"  {label}: {text}")
    nxt = answer.get("next_steps")
    if isinstance(nxt, list) and nxt:
        out.print(f"  next: {', '.join(str(s) for s in nxt)}")
    later = answer.get("next_after_release")
    if isinstance(later, list) and later:
        out.print(f"  next once released: {', '.join(str(s) for s in later)}")
    if answer.get("units") is not None:
        out.print(f"  units: {answer['units']}")
    for e in answer.get("recorded") or []:
        for sig in (e.get("data") or {}).get("signatures") or []:
            out.print(
                f"  signed by {sig['printed_name']} ({sig['signer']}, {sig['method']}): "
                f"{sig['meaning']}"
            )


def carriers_moved(answer: Mapping[str, Any]) -> list[str]:
    """What a split or a merge moved, from the history entries ``answer`` (the lot as it now
    is) recorded: the carriers by id, how many, and the sites the lot now has. A split's
    ``--carriers 2`` names the carrier at position 2, not a count: the answer says which
    carriers went (it said only "split off from L", and an operator who meant two carriers
    had one moved with nothing telling them)."""
    from mes.domain.text import counted

    found: list[str] = []
    sites = f"{answer.get('good_sites', 0):,} good of {answer.get('total_sites', 0):,} sites"
    for e in answer.get("recorded") or []:
        if e.get("lot") != answer.get("id"):
            continue
        data = e.get("data") or {}
        carriers = [str(c) for c in data.get("carriers") or []]
        if e.get("operation") == "split_from":
            found.append(
                f"carriers from {data.get('parent')}: {', '.join(carriers)} "
                f"({counted(len(carriers), 'carrier')}; {sites})"
            )
        elif e.get("operation") == "merge":
            found.append(
                f"carriers from {data.get('merged')}: {', '.join(carriers)} "
                f"({counted(len(carriers), 'carrier')}); the lot now has {sites}"
            )
    return found
