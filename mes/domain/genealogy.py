"""Genealogy: a lot splits some carriers off into a child lot, and lots at the same position
merge. Pure, no I/O."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import replace
from datetime import datetime

from flows.model import Value, format_value
from mes.domain.commands import (
    MergeLots,
    SplitLot,
)
from mes.domain.common import (
    check_lot_id,
    history_entry,
    moved_lot,
    resolve_carrier,
    units_after,
)
from mes.domain.errors import (
    InvalidInput,
    SplitMergeNotAllowed,
)
from mes.domain.lifecycle import require
from mes.domain.model import (
    Change,
    Lot,
    LotState,
    Operation,
    SiteReject,
)

# -- split / merge ---------------------------------------------------------------------------


def split(lot: Lot, cmd: SplitLot, rejects: Collection[SiteReject], now: datetime) -> Change:
    """Move some carriers of ``lot`` into a new child lot at the same position and state."""
    require(lot.state, Operation.SPLIT, lot.id)
    check_lot_id(cmd.child_id)
    if cmd.child_id == lot.id:
        raise SplitMergeNotAllowed("a lot cannot be split into itself", lot_id=lot.id)
    if not cmd.carriers:
        raise InvalidInput("name the carriers to split off (--carriers)", lot_id=lot.id)
    named = [(c, resolve_carrier(lot, c)) for c in cmd.carriers]
    counts = Counter(carrier for _, carrier in named)
    moving = tuple(counts)
    twice = [c for c, n in counts.items() if n > 1]
    if twice:
        given = ", ".join(g for g, m in named if m in twice)
        raise InvalidInput(
            f"carrier {', '.join(twice)} of lot {lot.id} is named more than once ({given}); "
            "expected each carrier once, by id or by position",
            lot_id=lot.id,
        )
    staying = tuple(c for c in lot.carriers if c not in moving)
    if not staying:
        raise SplitMergeNotAllowed(
            f"splitting every carrier of lot {lot.id} would leave it empty; keep at least one",
            lot_id=lot.id,
        )
    per_carrier = Counter(r.carrier_id for r in rejects)
    sites_per_carrier = lot.site_rows * lot.site_cols
    child_total = sites_per_carrier * len(moving)
    child_good = child_total - sum(per_carrier[c] for c in moving)
    parent_good = lot.good_sites - child_good
    child = replace(
        lot,
        id=cmd.child_id,
        carriers=moving,
        total_sites=child_total,
        good_sites=child_good,
        units=units_after(lot.path, child_good),
        parent_id=lot.id,
        created_at=now,
        updated_at=now,
        created_by=cmd.user,
        version=1,
    )
    parent = moved_lot(
        lot,
        now,
        carriers=staying,
        total_sites=lot.total_sites - child_total,
        good_sites=parent_good,
        units=units_after(lot.path, parent_good),
    )
    parent_entry = history_entry(
        lot,
        Operation.SPLIT,
        cmd.user,
        now,
        parent.state,
        step=lot.step,
        reason=cmd.reason,
        data={"child": child.id, "carriers": list(moving)},
    )
    child_entry = history_entry(
        child,
        Operation.SPLIT_FROM,
        cmd.user,
        now,
        child.state,
        state_before=lot.state,
        step=lot.step,
        reason=cmd.reason,
        data={"parent": lot.id, "carriers": list(moving)},
    )
    moved = {cid: (child.id, n) for n, cid in enumerate(moving, 1)}
    moved.update({cid: (lot.id, n) for n, cid in enumerate(staying, 1)})
    return Change(
        lots=(parent, child),
        expected_versions={lot.id: lot.version, child.id: None},
        entries=(parent_entry, child_entry),
        moved_carriers=moved,
    )


def merge(
    child: Lot, target: Lot, cmd: MergeLots, now: datetime, checked: Collection[str] = ()
) -> Change:
    """Merge ``child`` into ``target``: same flow, same position, both waiting, and the same
    values recorded for those of ``checked`` (values that later limits read: the merged lot
    keeps the target's, so the child's would go unchecked)."""
    if child.id == target.id:
        raise SplitMergeNotAllowed("a lot cannot be merged into itself", lot_id=child.id)
    require(child.state, Operation.MERGE_INTO, child.id)
    require(target.state, Operation.MERGE, target.id)
    differences = []
    if (child.flow, child.flow_version) != (target.flow, target.flow_version):
        differences.append(
            f"flow {child.flow} v{child.flow_version} vs {target.flow} v{target.flow_version}"
        )
    if child.path != target.path:
        differences.append(
            f"position after {' '.join(child.path) or 'nothing'} vs "
            f"{' '.join(target.path) or 'nothing'}"
        )
    if dict(child.params) != dict(target.params):
        differences.append(f"lot parameters {_params(child.params)} vs {_params(target.params)}")
    if child.pending_rework != target.pending_rework:
        differences.append("a pending rework on one of them")
    unlike = sorted(n for n in checked if child.recorded.get(n) != target.recorded.get(n))
    if unlike:
        differences.append(
            "values recorded at earlier steps that later limits check: "
            + ", ".join(
                f"{n} {_recorded(child.recorded.get(n))} vs {_recorded(target.recorded.get(n))}"
                for n in unlike
            )
        )
    if (child.site_rows, child.site_cols) != (target.site_rows, target.site_cols):
        differences.append(
            f"carrier size {child.site_rows}x{child.site_cols} vs "
            f"{target.site_rows}x{target.site_cols}"
        )
    if differences:
        raise SplitMergeNotAllowed(
            f"lot {child.id} cannot be merged into {target.id}: they differ in "
            + "; ".join(differences),
            lot_id=child.id,
        )
    carriers = (*target.carriers, *child.carriers)
    good = target.good_sites + child.good_sites
    counts = dict(target.rework_counts)
    for key, n in child.rework_counts.items():
        counts[key] = max(n, counts.get(key, 0))
    merged = moved_lot(
        target,
        now,
        carriers=carriers,
        total_sites=target.total_sites + child.total_sites,
        good_sites=good,
        units=units_after(target.path, good),
        rework_counts=counts,
    )
    absorbed = moved_lot(child, now, state=LotState.MERGED, carriers=())
    target_entry = history_entry(
        target,
        Operation.MERGE,
        cmd.user,
        now,
        merged.state,
        step=target.step,
        reason=cmd.reason,
        data={"merged": child.id, "carriers": list(child.carriers)},
    )
    child_entry = history_entry(
        child,
        Operation.MERGE_INTO,
        cmd.user,
        now,
        absorbed.state,
        step=child.step,
        reason=cmd.reason,
        data={"into": target.id, "carriers": list(child.carriers)},
    )
    moved = {cid: (target.id, n) for n, cid in enumerate(carriers, 1)}
    return Change(
        lots=(absorbed, merged),
        expected_versions={child.id: child.version, target.id: target.version},
        entries=(child_entry, target_entry),
        moved_carriers=moved,
    )


def _recorded(value: Value | None) -> str:
    return "none" if value is None else format_value(value)


def _params(params: Mapping[str, Value]) -> str:
    """Lot parameters as a person reads them: ``die_area_mm2=100, layers=8`` or ``none``."""
    return ", ".join(f"{k}={format_value(v)}" for k, v in sorted(params.items())) or "none"
