"""What a hold's history entry records of the work done before it (the carriers done at the
step it stopped, the job it interrupted) and of results the controller refused, in words:
``lot show``'s rows under the hold and the station's lot page. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def hold_record(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What the hold's record says of the work done before it (the carriers done at the
    step, the sites the interrupted job had done) and of results the controller refused."""
    rows: list[tuple[str, str]] = []
    if "abandoned_step" in data:
        done = data.get("carriers_done") or []
        rows.append(
            (
                "done at step",
                f"{data['abandoned_step']}: carriers {', '.join(done) or 'none'} done",
            )
        )
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
