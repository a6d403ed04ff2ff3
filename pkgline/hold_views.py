"""What a hold's history entry records of the work done before it (the carriers done at the
step it stopped, the job it interrupted) and of results the controller refused, in words:
``lot show``'s rows under the hold and the station's lot page. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Later = Sequence[tuple[str, str | None, Mapping[str, Any]]]
"""The lot's history entries after the hold, each as (operation, step, data)."""


def hold_record(data: Mapping[str, Any], later: Later = ()) -> list[tuple[str, str]]:
    """What the hold's record says of the work done before it (the carriers done at the
    step, the sites the interrupted job had done) and of results the controller refused;
    ``later``: what the tool did after the hold, its results recorded late (the carriers its
    jobs completed, the step then tracked out)."""
    rows: list[tuple[str, str]] = []
    if "abandoned_step" in data:
        step = data["abandoned_step"]
        done = data.get("carriers_done") or []
        text = f"{step}: carriers {', '.join(done)} done" if done else f"{step}: no carrier done"
        late = [d.get("carrier") for op, s, d in later if op == "job_record" and s == step]
        if late:
            text += (
                f"; then {', '.join(str(c) for c in late)} by the tool after the hold "
                "(its results recorded late)"
            )
        if any(op == "track_out" and s == step for op, s, _ in later):
            text += f"; {step} is done"
        rows.append(("done at step", text))
    partial = data.get("partial")
    if isinstance(partial, Mapping):
        total = partial.get("sites_total")
        sites = " ".join(f"{r}:{c}" for r, c in partial.get("sites") or [])
        rows.append(
            (
                "interrupted job",
                f"{partial.get('job')} on carrier {partial.get('carrier') or '-'}: "
                f"{partial.get('sites_done')} of {total if total is not None else '?'} sites "
                f"done{f' ({sites})' if sites else ''}",
            )
        )
    refused = data.get("quarantine")
    if isinstance(refused, Mapping):
        rows.append(
            (
                "refused results",
                f"{refused.get('what')} from {refused.get('tool')}: received "
                f"{refused.get('received')!r}, expected {refused.get('expected')}",
            )
        )
    return rows


CONTROLLER_USER = "controller"
"""The line controller's system identity (:data:`mes.domain.identity.CONTROLLER_USER`; this
module imports no lot tracker, for ``lot show --json``)."""


def placed_by(user: str, by: str | None, auth: str | None) -> str:
    """Who placed a hold, in words, from the name its command was given (``user``, free text)
    and the principal its history entry records (``by``, known as ``auth``): the line
    controller (``line controller``), a system's API key (``system spc-bridge with its API
    key``),
    or a person (their name; ``eng1, acting: root (file_owner)`` where someone else acted
    under the name). The name alone where the entry does not say (before revision 0004)."""
    if by is None or auth is None:
        return user
    if auth == "system":
        who = "line controller" if by == CONTROLLER_USER else f"system {by}"
    elif auth == "api_key":
        who = f"system {by} with its API key"
    else:
        return user if by == user else f"{user}, acting: {by} ({auth})"
    return who if user == by else f"{who}, as {user}"
