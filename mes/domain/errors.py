"""Why the lot tracker refuses something. Every refusal changes nothing.

::

    LotTrackerError                 root
    ├── UnknownLot                  no lot of that id
    ├── LotExists                   a lot of that id already exists
    ├── InvalidInput                a malformed value, unknown parameter, bad site, bad id
    │                               (``field``: which of the command's inputs, where one;
    │                               its JSON's ``field``)
    ├── OperationNotAllowed         the lot's state does not allow the operation
    ├── StepNotAllowed              the flow does not allow that step now (claim cited)
    ├── LimitViolated               a value outside a limit the claims fix (claims cited;
    │                               ``fields``: which of the command's inputs, where given;
    │                               each violation's ``field`` in its JSON)
    ├── ReworkNotAllowed
    ├── SplitMergeNotAllowed
    ├── UnknownTool                 no tool of that id is registered
    ├── ToolOwnedElsewhere          the tool belongs to another line controller
    ├── ResetNotPossible            an alarm reset cannot be asked now (not in alarm, ...)
    ├── InterlockRefused            a track-in interlock (tool, ...) refused: which, and what
    │                               was expected (mes.domain.interlocks)
    └── ConcurrentUpdate            another transaction moved the lot first; retry

Each error knows what was expected (``allowed``) and renders itself for ``--json`` and the
API's error body (``to_dict``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from flows import Violation


class LotTrackerError(Exception):
    """A refusal: says what was refused, why, and what is allowed."""

    kind = "error"

    def __init__(
        self,
        message: str,
        *,
        lot_id: str | None = None,
        allowed: Iterable[str] = (),
        claim: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.lot_id = lot_id
        self.allowed = tuple(allowed)
        self.claim = claim

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.kind, "message": self.message}
        if self.lot_id is not None:
            out["lot"] = self.lot_id
        if self.allowed:
            out["allowed"] = list(self.allowed)
        if self.claim:
            out["claim"] = self.claim
        return out


class UnknownLot(LotTrackerError):
    kind = "unknown_lot"


class LotExists(LotTrackerError):
    kind = "lot_exists"


class RecordExists(LotTrackerError):
    """A durable, a material lot or a reason code with that id exists already: the new one
    is refused as a lot that exists is (409), not as a malformed value."""

    kind = "record_exists"


class InvalidInput(LotTrackerError):
    """A malformed or impossible input. ``field`` names which of the command's inputs it
    is, where the refusal is about one: ``INPUT.NAME`` for a value of one of its mappings
    (``measured.xy_offset_um`` of a TrackOut, ``values.bond_force_n`` of a TrackIn,
    ``params.layers`` of a StartLot), ``INPUT`` for a list (``rejects`` of a TrackOut,
    ``sites`` of a ScrapSites), for a form to mark the field it was typed in."""

    kind = "invalid_input"

    def __init__(
        self,
        message: str,
        *,
        lot_id: str | None = None,
        allowed: Iterable[str] = (),
        claim: str | None = None,
        field: str | None = None,
    ):
        super().__init__(message, lot_id=lot_id, allowed=allowed, claim=claim)
        self.field = field

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.field is not None:
            out["field"] = self.field
        return out


class OperationNotAllowed(LotTrackerError):
    kind = "operation_not_allowed"


class StepNotAllowed(LotTrackerError):
    kind = "step_not_allowed"


class ReworkNotAllowed(LotTrackerError):
    kind = "rework_not_allowed"


class SplitMergeNotAllowed(LotTrackerError):
    kind = "split_merge_not_allowed"


class UnknownTool(LotTrackerError):
    kind = "unknown_tool"

    def __init__(
        self, message: str, *, tool_id: str | None = None, allowed: Iterable[str] = ()
    ) -> None:
        super().__init__(message, allowed=allowed)
        self.tool_id = tool_id
        """The id asked for, where the refusal names one (to say which tools are close)."""


class UnknownDurable(LotTrackerError):
    kind = "unknown_durable"


class UnknownMaterial(LotTrackerError):
    kind = "unknown_material"


class UnknownReasonCode(LotTrackerError):
    kind = "unknown_reason_code"


class ToolOwnedElsewhere(LotTrackerError):
    kind = "tool_owned_elsewhere"


class LineHeld(LotTrackerError):
    """Another line controller drives the line: a second one is refused (or, having lost
    the line while it stalled, stops)."""

    kind = "line_held"


class ResetNotPossible(LotTrackerError):
    kind = "reset_not_possible"


class InterlockRefused(LotTrackerError):
    """A track-in interlock refused the move: ``interlock`` names which (``tool_class``,
    ``tool_qualification`` ...), ``expected`` what would have been accepted."""

    kind = "interlock"

    def __init__(
        self,
        message: str,
        *,
        interlock: str,
        expected: str,
        lot_id: str | None = None,
        allowed: Iterable[str] = (),
    ):
        super().__init__(message, lot_id=lot_id, allowed=allowed)
        self.interlock = interlock
        self.expected = expected

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "interlock": self.interlock, "expected": self.expected}


class ConcurrentUpdate(LotTrackerError):
    kind = "conflict"


class LimitViolated(LotTrackerError):
    """Values outside the limits the claims fix. ``violations`` cite each claim; ``fields``
    name the command's input each is about, in their order, as :attr:`InvalidInput.field`
    does (``values.bond_force_n`` for a TrackIn's recipe value, ``params.layers`` for a
    StartLot's parameter; None for a value the command does not give, one recorded at an
    earlier step), for a form to mark the fields the values were typed in."""

    kind = "limit_violated"

    def __init__(
        self,
        message: str,
        violations: Sequence[Violation],
        *,
        lot_id: str | None = None,
        fields: Sequence[str | None] = (),
    ):
        claims = "; ".join(dict.fromkeys(v.claim for v in violations if v.claim))
        super().__init__(message, lot_id=lot_id, claim=claims or None)
        self.violations = tuple(violations)
        if fields and len(fields) != len(violations):
            raise ValueError("LimitViolated: one field (or None) per violation")
        self.fields: tuple[str | None, ...] = tuple(fields) or (None,) * len(violations)

    def about(self) -> dict[str, list[Violation]]:
        """The violations of each command's input they are about (:attr:`fields`)."""
        out: dict[str, list[Violation]] = {}
        for field, violation in zip(self.fields, self.violations, strict=True):
            if field is not None:
                out.setdefault(field, []).append(violation)
        return out

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["violations"] = [
            violation_dict(v) | ({} if field is None else {"field": field})
            for field, v in zip(self.fields, self.violations, strict=True)
        ]
        return out


def violation_dict(v: Violation) -> dict[str, Any]:
    return {
        "step": v.step,
        "value": v.value_name,
        "given": v.value,
        "expected": v.expected,
        "claim": v.claim,
        "kind": v.kind,
        "message": v.message,
    }
