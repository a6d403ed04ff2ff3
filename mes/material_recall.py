"""A material recall's work inside one transaction (:class:`mes.materials.MaterialService`'s
``quarantine``, ``release`` and ``hold_lots``): the product lots a material lot reached,
where each is now, and the holds of those still on the line, each a normal hold with the
recall's reason code (:func:`mes.reasons.coded_hold`), as ``pkgline lot hold`` places it.

The rules are pure (:mod:`mes.domain.material_quarantine`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from mes.domain import common
from mes.domain import material_quarantine as rules
from mes.domain import material_reach as reach
from mes.domain import operations as ops
from mes.domain.authority import Action, Context, Principal, Role, authorize
from mes.domain.commands import HoldLot
from mes.domain.material_quarantine import QuarantinedInput
from mes.domain.material_reach import Reached, Source
from mes.domain.materials import Material, Use
from mes.domain.model import Lot, LotState
from mes.durables import count_abandoned
from mes.ports import Work, each_together, get_history, get_lot, get_step_jobs, save
from mes.ports_materials import get_materials, get_uses
from mes.ports_reasons import get_reason_code
from mes.reasons import coded_hold


@dataclass(frozen=True, slots=True)
class Recall:
    """What a recall's holds did: the lots it held now, and those it left as they were (on
    hold already, or off the line), each with where it is."""

    material_id: str
    held: list[Reached]
    on_hold: list[Reached]
    off_line: list[Reached]
    release_by: frozenset[Role] = frozenset()
    """While the material lot is quarantined, the roles its quarantine's code names: those
    alone release or rework the lots that got it, those on hold already included (none: not
    quarantined, or a code naming none; each lot's own hold decides)."""


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A quarantine's answer: the material lot as it now is, and the recall's holds when it
    was asked for them (``--hold-lots``)."""

    material: Material
    recall: Recall | None = None


def _links(lot_id: str) -> Work[list[reach.Link]]:
    return reach.links_of((yield from get_history(lot_id)))


def reach_lots(start: list[str], kinds: frozenset[str]) -> Work[dict[str, list[reach.Link]]]:
    """Every lot reached from ``start`` through links of ``kinds``, with its links: a history
    read per lot, those of each step of the walk side by side (a recall over a thousand lots
    costs PostgreSQL a statement per hundred lots at each step, not a round trip per lot)."""
    found: dict[str, list[reach.Link]] = {}
    frontier = list(dict.fromkeys(start))
    while frontier:
        read = yield from each_together(_links(lot) for lot in frontier)
        found.update(zip(frontier, read, strict=True))
        reached = (link.other for links in read for link in links if link.kind in kinds)
        frontier = [lot for lot in dict.fromkeys(reached) if lot not in found]
    return found


def reached_lots(material_id: str) -> Work[list[tuple[Reached, Lot | None]]]:
    """Every product lot that got ``material_id`` (``material where-used``), with where it
    is now, and the lot as read."""
    uses = yield from get_uses(material_id=material_id)
    links = yield from reach_lots([u.lot_id for u in uses], reach.DOWNSTREAM)
    found = reach.where_used(material_id, uses, links)
    lots = yield from each_together(get_lot(r.lot_id) for r in found)
    return [
        (replace(r, state=lot.state, step=lot.step) if lot is not None else r, lot)
        for r, lot in zip(found, lots, strict=True)
    ]


def lot_sources(lot_id: str) -> Work[list[Source]]:
    """Every material lot that went into ``lot_id`` (``lot genealogy``): its own, its
    parent's before it was split off, those of the lots merged into it before they were."""
    links = yield from reach_lots([lot_id], reach.UPSTREAM)
    uses = yield from get_uses(lot_ids=list(links))
    by_lot: dict[str, list[Use]] = {}
    for use in uses:
        by_lot.setdefault(use.lot_id, []).append(use)
    return reach.genealogy(lot_id, links, by_lot)


def _roles_of(code: str) -> Work[frozenset[Role]]:
    found = yield from get_reason_code(code)
    return found.release_roles if found is not None else frozenset()


def quarantined_in(lot_id: str) -> Work[list[QuarantinedInput]]:
    """The material lots that went into ``lot_id`` (:func:`lot_sources`) and are quarantined
    now, each with the roles its quarantine's hold code names."""
    sources = yield from lot_sources(lot_id)
    ids = sorted({s.use.material_id for s in sources})
    if not ids:
        return []
    stopped = [m for m in (yield from get_materials(ids)) if m.quarantine is not None]
    if not stopped:
        return []
    roles = yield from each_together(
        _roles_of(m.quarantine.code) for m in stopped if m.quarantine is not None
    )
    return rules.quarantined_inputs(sources, stopped, roles)


def quarantine_gate(action: Action) -> Callable[[Lot, Principal], Work[None]]:
    """The gate (:data:`mes.service.Gate`) of a held lot's release or rework (``action``):
    refused, by the table first, then to a role none of the quarantines of the material lots
    it got names (:func:`mes.domain.material_quarantine.check_quarantined`)."""

    def gate(lot: Lot, who: Principal) -> Work[None]:
        if lot.hold is None:  # not held: the operation says why
            return
        if action is not Action.RELEASE:  # a release's table: the code's gate did it
            authorize(who, action, Context(lot.id, lot.hold.source))
        rules.check_quarantined(who, lot.id, action, (yield from quarantined_in(lot.id)))

    return gate


def hold_reached(
    material_id: str,
    code: str,
    reason: str | None,
    user: str,
    who: Principal | None,
    now: datetime,
) -> Work[Recall]:
    """Hold every lot still on the line that got ``material_id`` (refused, nothing held,
    for a code that is not an active hold code); report those on hold already or off it."""
    text = rules.recall_text(material_id, reason)
    coded = yield from coded_hold(HoldLot("", user, text, code=code))
    found = yield from reached_lots(material_id)
    plan = rules.recall_plan([r for r, _ in found])
    lots = {r.lot_id: lot for r, lot in found}
    held: list[Reached] = []
    for r in plan.to_hold:
        lot = lots[r.lot_id]
        assert lot is not None  # a lot with a state was read
        change = ops.hold(lot, replace(coded, lot_id=lot.id), now, (yield from get_step_jobs(lot)))
        yield from count_abandoned(lot, change, user, now, who)
        yield from save(common.stamped(change, who))
        held.append(replace(r, state=LotState.HOLD, step=change.lot.step))
    quarantine = next((m.quarantine for m in (yield from get_materials([material_id]))), None)
    roles = (yield from _roles_of(quarantine.code)) if quarantine is not None else frozenset()
    return Recall(material_id, held, plan.on_hold, plan.off_line, roles)
