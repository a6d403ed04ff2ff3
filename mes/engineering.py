"""Engineering changes in the security log: every change to what the line checks at track-in
(a tool's qualification, an SPC chart, an SPC inhibit cleared, a hold or scrap reason code, a
tool's dispatch mode, a flow version published, approved or retired) appends one
``engineering_change`` event, in the transaction that makes the change: who (``actor``, ``method``), what (``action``), and in ``detail`` the tool, step
or code with what it was ``before`` (None: nothing was) and what it is ``after``. A refused
change writes none (a refusal of authority is its own event, ``refused``).

A service takes a :class:`ChangeRecord` when the call is made (who, when, and where the
server's request came from: read on the event loop, as a transaction's work may run on the
database driver's thread), and its work appends the event once it has read the before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mes.domain.authority import AuthMethod, Principal
from mes.domain.equipment import ToolRecord
from mes.domain.flowversions import FlowVersion
from mes.domain.identity import EventKind, SecurityEvent
from mes.domain.interlocks import Qualification
from mes.domain.reasons import ReasonCode
from mes.domain.spc import Chart
from mes.guard import REQUEST_ORIGIN
from mes.ports import Work
from mes.ports_security import append_security_event


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    """Who makes a change, when, and from where: what its event says besides the change."""

    at: datetime
    actor: str
    method: AuthMethod | None
    action: str
    origin: str | None = None

    @classmethod
    def of(cls, who: Principal | None, user: str, action: str, at: datetime) -> ChangeRecord:
        """The change ``who`` makes (None, a service embedded without a principal: the
        ``user`` the change names), taken now on the event loop."""
        name, method = (user, None) if who is None else (who.name, who.method)
        return cls(at, name, method, action, REQUEST_ORIGIN.get())

    def event(self, detail: Mapping[str, Any]) -> SecurityEvent:
        full = dict(detail) if self.origin is None else {**detail, "from": self.origin}
        return SecurityEvent(
            self.at,
            EventKind.ENGINEERING_CHANGE,
            self.actor,
            self.method,
            action=self.action,
            detail=full,
        )

    def write(self, detail: Mapping[str, Any]) -> Work[None]:
        """Append the change's event, in the transaction doing ``work``."""
        yield from append_security_event(self.event(detail))


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def qualification_state(q: Qualification | None) -> dict[str, Any] | None:
    """A qualification as a change's before or after records it."""
    if q is None:
        return None
    return {"qualified": q.qualified, "by": q.by, "at": _iso(q.at), "reason": q.reason}


def chart_state(chart: Chart | None) -> dict[str, Any] | None:
    """A chart's configuration and limits as a change's before or after records them."""
    if chart is None:
        return None
    return {
        "center": chart.center,
        "sigma": chart.sigma,
        "limits": chart.limits_source,
        "kind": chart.kind.value,
        "baseline_n": chart.baseline_n,
        "nelson": chart.nelson,
        "inhibit": chart.inhibit,
        "set_by": chart.set_by,
        "set_at": _iso(chart.set_at),
    }


def reason_code_state(code: ReasonCode | None) -> dict[str, Any] | None:
    if code is None:
        return None
    return {
        "kind": code.kind.value,
        "text": code.text,
        "release_roles": sorted(r.value for r in code.release_roles),
        "added_by": code.added_by,
        "retired_by": code.retired_by,
        "retired_at": _iso(code.retired_at),
        "retired_reason": code.retired_reason,
    }


def dispatch_state(tool: ToolRecord) -> dict[str, Any]:
    return {
        "dispatch": tool.dispatch.value,
        "by": tool.dispatch_by,
        "at": _iso(tool.dispatch_at),
        "reason": tool.dispatch_reason,
    }


def qualification_change(
    tool_id: str,
    step: str,
    before: list[Qualification],
    after: Qualification,
    reason: str | None,
) -> dict[str, Any]:
    """A qualification change's detail (``before``: what the store read for the tool and
    step, empty when it had none)."""
    was = next((q for q in before if q.tool_id == tool_id and q.step == step), None)
    return {
        "tool": tool_id,
        "step": step,
        "before": qualification_state(was),
        "after": qualification_state(after),
        "reason": reason,
    }


def reason_change(before: ReasonCode | None, after: ReasonCode) -> dict[str, Any]:
    """A reason code's change: added (``before`` None) or retired (with the reason why)."""
    detail = {
        "code": after.code,
        "before": reason_code_state(before),
        "after": reason_code_state(after),
    }
    return detail if after.active else {**detail, "reason": after.retired_reason}


def dispatch_change(before: ToolRecord, after: ToolRecord, reason: str | None) -> dict[str, Any]:
    return {
        "tool": after.id,
        "before": dispatch_state(before),
        "after": dispatch_state(after),
        "reason": reason,
    }


def down_state(t: ToolRecord) -> dict[str, Any]:
    """A tool's declaration as a ``tool_down`` change's before or after records it."""
    return {
        "down": t.down,
        "by": t.down_by,
        "at": _iso(t.down_at),
        "reason": t.down_reason,
        "e10": t.snapshot.e10,
    }


def down_change(before: ToolRecord, after: ToolRecord, reason: str | None) -> dict[str, Any]:
    return {
        "tool": after.id,
        "before": down_state(before),
        "after": down_state(after),
        "reason": reason,
    }


def flow_version_state(v: FlowVersion | None) -> dict[str, Any] | None:
    """A flow version as a change's before or after records it (not its files: the content
    hash names them)."""
    if v is None:
        return None
    return {
        "state": v.state.value,
        "content_hash": v.content_hash,
        "author": v.author,
        "published_at": _iso(v.published_at),
        "note": v.note,
        "approvals": [
            {
                "signer": a.signer,
                "printed_name": a.printed_name,
                "meaning": a.meaning,
                "at": _iso(a.at),
                "method": a.method,
            }
            for a in v.approvals
        ],
        "retired_by": v.retired_by,
        "retired_at": _iso(v.retired_at),
    }


def flow_version_change(
    before: FlowVersion | None, after: FlowVersion, reason: str | None = None
) -> dict[str, Any]:
    """A flow version published (``before`` None: a new draft), approved (an approval
    added, and the state approved once every approval needed is given) or retired (no new
    lot starts on it; with the reason why)."""
    detail = {
        "flow": after.flow,
        "version": after.version,
        "before": flow_version_state(before),
        "after": flow_version_state(after),
    }
    return detail if reason is None else {**detail, "reason": reason}
