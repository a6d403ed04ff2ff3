"""A person's declaration that a tool is out of production (SEMI E10 ``scheduled_down``:
planned maintenance; ``non_scheduled``: not scheduled for production), and its end. Pure
values and functions, no I/O.

While declared, the tool's recorded E10 state is the declared one whatever the tool reports
(its controller's observations are kept in the record's ``reported_e10``), so time in state,
availability and the track-in interlocks count it so; brought back up, the tool is in the
state it reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from mes.domain.authority import Principal
from mes.domain.equipment import E10Change, ToolRecord, ToolSnapshot
from mes.domain.text import utc_stamp

DECLARABLE = {
    "scheduled_down": "planned maintenance",
    "non_scheduled": "not scheduled for production",
}
"""The E10 states a person declares, with what each means."""


@dataclass(frozen=True, slots=True)
class InForce:
    """A declaration in force on a tool: the E10 state declared, the name given for who
    declared it (free text, as a lot history entry's ``user``), why and since when."""

    state: str
    user: str | None
    reason: str | None
    at: datetime | None


def in_force(tool: ToolRecord) -> InForce | None:
    """The declaration in force on ``tool``; None when it is not declared down."""
    if tool.down is None:
        return None
    return InForce(tool.down, tool.down_by, tool.down_reason, tool.down_at)


def down_text(tool: ToolRecord) -> str:
    """The declaration in words: state, meaning, who, since when, why."""
    return (
        f"{tool.down} ({DECLARABLE.get(tool.down or '', '')}) declared by {tool.down_by} "
        f"at {utc_stamp(tool.down_at, seconds=True) if tool.down_at else '?'}"
        + (f": {tool.down_reason}" if tool.down_reason else "")
    )


def down_refusal(tool: ToolRecord, e10: str, running: Sequence[str]) -> str | None:
    """Why ``tool`` cannot be declared ``e10`` now (None: it can): not a declarable state, or
    a lot runs on it (it finishes, or is aborted, first: its time is productive)."""
    if e10 not in DECLARABLE:
        return f"{e10!r}: a person declares a tool one of {', '.join(DECLARABLE)}"
    lots = sorted(set(running) | ({tool.snapshot.lot_id} if tool.snapshot.lot_id else set()))
    if lots:
        return (
            f"tool {tool.id} is running lot {', '.join(lots)}: it finishes (or is aborted: "
            f"pkgline lot abort) before the tool goes {e10}"
        )
    return None


def declared_down(
    tool: ToolRecord,
    e10: str,
    by: str,
    reason: str,
    at: datetime,
    *,
    acting: Principal | None = None,
) -> tuple[ToolRecord, E10Change | None]:
    """``tool`` declared ``e10`` by ``by`` (the name given; ``acting``: who really acted) at
    ``at``, and the E10 change to record (None when it was in that state already)."""
    reported = tool.reported_e10 if tool.down else tool.snapshot.e10
    declared = replace(
        _declared(tool, by, acting, reason, at),
        down=e10,
        down_by=by,
        down_reason=reason,
        down_at=at,
        reported_e10=reported,
    )
    return _in_state(declared, tool, e10, at, f"declared {e10} by {by}: {reason}")


def brought_up(
    tool: ToolRecord,
    by: str,
    at: datetime,
    reason: str | None = None,
    *,
    acting: Principal | None = None,
) -> tuple[ToolRecord, E10Change | None]:
    """``tool``'s declaration ended by ``by`` (the name given; ``acting``: who really acted)
    at ``at``, for ``reason``: back in the state its controller last reported; and the E10
    change to record (None when that is the declared state)."""
    reported = tool.reported_e10 or tool.snapshot.e10
    ended = replace(
        _declared(tool, by, acting, reason, at),
        down=None,
        down_by=None,
        down_reason=None,
        down_at=None,
        reported_e10=None,
    )
    return _in_state(ended, tool, reported, at, f"brought up by {by} from {tool.down}")


def _declared(
    tool: ToolRecord, by: str, acting: Principal | None, reason: str | None, at: datetime
) -> ToolRecord:
    """``tool`` with its last declaration (down or up) said: by whom, how known, why, when."""
    return replace(
        tool,
        declared_user=by,
        declared_by=acting.name if acting is not None else None,
        declared_auth=acting.method.value if acting is not None else None,
        declared_reason=reason,
        declared_at=at,
    )


def _in_state(
    record: ToolRecord, before: ToolRecord, e10: str, at: datetime, why: str
) -> tuple[ToolRecord, E10Change | None]:
    """``record`` (``before`` with its declaration changed) in the E10 state ``e10`` from
    ``at``, and the change to record, saying ``why`` (None when ``before`` was in it)."""
    changed = before.snapshot.e10 != e10
    snapshot = before.snapshot
    record = replace(
        record,
        snapshot=replace(snapshot, e10=e10),
        e10_since=at if changed else before.e10_since,
    )
    change = E10Change(before.id, at, e10, snapshot.process_state, snapshot.connected, why)
    return record, change if changed else None


def as_recorded(tool: ToolRecord, snapshot: ToolSnapshot) -> tuple[ToolSnapshot, str | None]:
    """What a controller's observation ``snapshot`` of ``tool`` records: the snapshot with the
    declared state while a person declared one, and the state the tool reported (None when
    nothing is declared: the snapshot's own)."""
    if tool.down is None:
        return snapshot, None
    return replace(snapshot, e10=tool.down), snapshot.e10


def declaration(tool: ToolRecord) -> dict[str, Any] | None:
    """The last person's ``tool down`` or ``tool up`` of ``tool``: ``down`` the state it
    declared (None: brought up), the name given (``user``), who acted and how they were known
    (``by``, ``auth``, as a lot event's), why and when; a declaration made before revision
    0031 with ``by`` and ``auth`` null; None when no person declared the tool down since.
    One builder for the feed's tool state, the API's and the CLI's tool (docs/events.md)."""
    if tool.declared_at is not None:
        user, by, auth = tool.declared_user, tool.declared_by, tool.declared_auth
        reason, at = tool.declared_reason, tool.declared_at
    elif tool.down is not None and tool.down_at is not None:  # declared before 0031
        user, by, auth, reason, at = tool.down_by, None, None, tool.down_reason, tool.down_at
    else:
        return None
    return {
        "down": tool.down,
        "user": user,
        "by": by,
        "auth": auth,
        "reason": reason,
        "at": at.isoformat(),
    }
