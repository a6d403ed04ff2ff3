"""A material recall's rules: quality quarantines a material lot (a bad lot of mold
compound), and holds the product lots still on the line that got it. Pure, no I/O.

A quarantined material lot is not loaded on a tool, and a track-in on a tool where it is
loaded is refused (``material_quarantined``: :meth:`mes.domain.materials.Material.problem`);
it may still be unloaded, and quality releases it. Both are events of its history, with who
and why. The quarantine names a hold reason code of the catalogue (as a hold does), which
the recall's holds carry too: a code whose release roles are quality's keeps those lots
held until quality looks.

The recall's holds (:func:`recall_plan`) reach what ``material where-used`` reaches
(:mod:`mes.domain.material_reach`): of those lots, the ones waiting or running are held,
those on hold already or off the line (completed, scrapped, merged into another) are only
reported. A recall run twice holds nothing twice.

Whatever holds a product lot that got a material lot quarantined now (through splits and
merges: ``lot genealogy``), its release and its rework are allowed only to a role the
quarantine's hold code names (:func:`check_quarantined`), as for a lot's own hold code: a
lot an operator held for another reason, then recalled, is not released by that operator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from mes.domain.authority import (
    PERMISSIONS,
    Action,
    NotAuthorized,
    Principal,
    Role,
    narrowed,
)
from mes.domain.errors import ConcurrentUpdate, InvalidInput, OperationNotAllowed
from mes.domain.material_reach import Reached, Source
from mes.domain.materials import Changed, Material, MaterialEvent, MaterialEventKind, Quarantine
from mes.domain.model import LotState
from mes.domain.text import blank, one_line, utc_stamp

TO_HOLD = frozenset({LotState.WAITING, LotState.RUNNING})
"""The states of a lot a recall holds: still on the line, not held yet."""


def quarantine(material: Material, code: str, reason: str, by: str, now: datetime) -> Changed:
    """Quarantine ``material`` (``reason``: the text its hold reason ``code`` resolves to,
    :func:`mes.domain.reasons.resolve`). Refused when it is quarantined already, saying by
    whom, since when and why."""
    found = material.quarantine
    if found is not None:
        raise OperationNotAllowed(
            f"material lot {material.id} is quarantined already, by {found.by} since "
            f"{utc_stamp(found.at)}: {found.reason}; expected a material lot not quarantined "
            f"(pkgline material hold-lots {material.id} holds the lots that got it)"
        )
    reason = one_line(reason, "the reason")
    stopped = replace(material, quarantine=Quarantine(code, reason, by, now))
    event = MaterialEvent(
        material.id, MaterialEventKind.QUARANTINED, now, by, material.tool_id, reason
    )
    return stopped, event


def release(material: Material, by: str, now: datetime, reason: str) -> Changed:
    """Lift the quarantine of ``material``, saying why (required). Refused when it is not
    quarantined."""
    if material.quarantine is None:
        raise OperationNotAllowed(f"material lot {material.id} is not quarantined")
    if blank(reason):
        raise InvalidInput(
            f"the release of material lot {material.id} needs a reason: expected why it may "
            "be used again (--reason)"
        )
    event = MaterialEvent(
        material.id,
        MaterialEventKind.RELEASED,
        now,
        by,
        material.tool_id,
        one_line(reason, "the reason"),
    )
    return replace(material, quarantine=None), event


def quarantined_meanwhile(material_id: str) -> ConcurrentUpdate:
    """The refusal of a track-in that read ``material_id`` loaded and not quarantined, and
    would record its use after a quarantine committed (the store checks it as it writes the
    use: :class:`mes.ports_materials.AddUses`)."""
    return ConcurrentUpdate(
        f"material lot {material_id} was quarantined while this command ran (after it read "
        f"the material lots on the tool): nothing was changed; see pkgline material show "
        f"{material_id}"
    )


def recall_text(material_id: str, free: str | None) -> str:
    """The text of a recall's hold beside its code: names the material lot."""
    said = f"recall of material lot {material_id}"
    return said if free is None or blank(free) else f"{said}: {one_line(free, 'the reason')}"


@dataclass(frozen=True, slots=True)
class RecallPlan:
    """Which lots a recall holds, and which it leaves as they are (with where they are)."""

    to_hold: list[Reached]
    on_hold: list[Reached]
    """Held already (by this recall before, or for another reason): not touched."""
    off_line: list[Reached]
    """Completed, scrapped or merged into another lot (which the recall reaches itself)."""


def recall_plan(reached: Sequence[Reached]) -> RecallPlan:
    """Split ``reached`` (with each lot's state) by what a recall does with it."""
    return RecallPlan(
        [r for r in reached if r.state in TO_HOLD],
        [r for r in reached if r.state is LotState.HOLD],
        [r for r in reached if r.state not in TO_HOLD and r.state is not LotState.HOLD],
    )


@dataclass(frozen=True, slots=True)
class QuarantinedInput:
    """A material lot quarantined now that went into a product lot (``via``: the lots it
    came through, :class:`mes.domain.material_reach.Source`), with its quarantine and the
    roles the quarantine's hold code names (none: the table decides)."""

    material_id: str
    quarantine: Quarantine
    via: tuple[str, ...]
    release_roles: frozenset[Role]

    def text(self) -> str:
        """``material lot EMC-1, quarantined with code RECALL by qa1 since 2026-12-01 08:00
        UTC: RECALL Material recall: voids``."""
        q = self.quarantine
        return (
            f"material lot {self.material_id}, quarantined with code {q.code} by {q.by} "
            f"since {utc_stamp(q.at)}: {q.reason}"
        )

    def narrow(self, roles: frozenset[Role]) -> frozenset[Role]:
        """Those of ``roles`` (who may release or rework the lot otherwise) who still may,
        with this quarantine on: as a hold's code narrows a release (:func:`narrowed`)."""
        return narrowed(roles, self.release_roles)

    def to_dict(self) -> dict[str, object]:
        q = self.quarantine
        return {
            "material": self.material_id,
            "code": q.code,
            "by": q.by,
            "since": q.at.isoformat(),
            "reason": q.reason,
            "via": list(self.via),
            "release_by": sorted(r.value for r in self.release_roles),
        }


def quarantined_inputs(
    sources: Sequence[Source],
    materials: Sequence[Material],
    release_roles: Sequence[frozenset[Role]],
) -> list[QuarantinedInput]:
    """The material lots of ``sources`` (a lot's genealogy) that ``materials`` (as read now,
    each with the roles its quarantine's code names, in ``release_roles``) say are
    quarantined: each once, by material lot id."""
    roles = dict(zip((m.id for m in materials), release_roles, strict=True))
    stopped = {m.id: m.quarantine for m in materials if m.quarantine is not None}
    found: dict[str, QuarantinedInput] = {}
    for s in sources:
        q = stopped.get(s.use.material_id)
        if q is not None and s.use.material_id not in found:
            found[s.use.material_id] = QuarantinedInput(
                s.use.material_id, q, s.via, roles[s.use.material_id]
            )
    return [found[m] for m in sorted(found)]


def may_lift(who: Principal, found: Sequence[QuarantinedInput]) -> bool:
    """Whether every quarantine of ``found`` lets ``who`` release (or rework) the lot:
    :func:`check_quarantined`'s answer without the refusal, for what a page offers."""
    return all(not q.release_roles or who.roles & q.release_roles for q in found)


def check_quarantined(
    who: Principal, lot_id: str, action: Action, found: Sequence[QuarantinedInput]
) -> None:
    """Refuse (NotAuthorized) the release or rework (``action``) of ``lot_id`` by someone who
    holds none of the roles the hold code of a quarantine of ``found`` names: naming the
    material lot, its quarantine (code, by whom, since when, why) and who may."""
    for q in found:
        if not q.release_roles or who.roles & q.release_roles:
            continue
        needed = q.narrow(PERMISSIONS[action])
        held = ", ".join(sorted(r.value for r in who.roles)) or "no role"
        raise NotAuthorized(
            f"{who.name} ({held}) may not {action.value} lot {lot_id}: it got {q.text()}; "
            f"until that quarantine is lifted, its {action.value} is for "
            f"{' or '.join(sorted(r.value for r in needed))}",
            needed=needed,
            lot_id=lot_id,
            action=action,
        )
