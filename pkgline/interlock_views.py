"""What the interlocks' records look like to their readers: the JSON of durables, material
lots (with their genealogy and recalls), reason codes and SPC charts (a contract: scripts
read it), made here for the CLI (``pkgline durable|material|reason|spc``, ``--json``) and the
server's routes alike, so that the two cannot drift (docs/api.md).

``durable_from_dict`` and ``material_from_dict`` read a durable or material lot back from its
JSON: the CLI prints a person's view from the same JSON whichever way it got it (through the
server or directly), with the domain's own wording (``Durable.text``, ``Material.problem``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mes.domain.durables import Durable, DurableEvent, DurableKind
from mes.domain.material_reach import Reached, Source
from mes.domain.materials import Material, MaterialEvent, MaterialKind, Quarantine, Use
from mes.domain.reasons import ReasonCode
from mes.domain.spc import RULES, Chart

if TYPE_CHECKING:
    from mes.domain.interlocks import Qualification
    from mes.durables import DurableView
    from mes.material_recall import Quarantined, Recall
    from mes.materials import MaterialView
    from mes.spc import ChartView

Json = dict[str, Any]


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def _at(text: Any) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) else None


def _when(text: Any) -> datetime:
    return datetime.fromisoformat(str(text))


# -- durables ------------------------------------------------------------------------------


def durable_status(d: Durable) -> str:
    """A durable's status in one word: ``spent`` (its life used: track-ins refused),
    ``warning`` (past its warning fraction), ``ok``."""
    if d.spent:
        return "spent"
    return "warning" if d.warned else "ok"


def durable_dict(d: Durable) -> Json:
    return {
        "id": d.id,
        "kind": d.kind.value,
        "unit": d.unit,
        "count": d.count,
        "life": d.life,
        "warn_fraction": d.warn_fraction,
        "warn_at": d.warn_at,
        "warned": d.warned,
        "spent": d.spent,
        "status": durable_status(d),
        "tool": d.tool_id,
        "mounted_at": _iso(d.mounted_at),
        "added_by": d.added_by,
        "added_at": d.added_at.isoformat(),
        "description": d.description,
    }


def durable_from_dict(data: Json) -> Durable:
    """The durable :func:`durable_dict` was made from."""
    return Durable(
        id=data["id"],
        kind=DurableKind(data["kind"]),
        life=int(data["life"]),
        warn_fraction=float(data["warn_fraction"]),
        count=int(data["count"]),
        added_by=data["added_by"],
        added_at=_when(data["added_at"]),
        tool_id=data["tool"],
        mounted_at=_at(data["mounted_at"]),
        description=data["description"],
    )


def durable_event_dict(e: DurableEvent) -> Json:
    return {
        "seq": e.seq,
        "event": e.event.value,
        "at": e.at.isoformat(),
        "by": e.by,
        "tool": e.tool_id,
        "lot": e.lot_id,
        "step": e.step,
        "job": e.job_id,
        "amount": e.amount,
        "count_after": e.count_after,
        "reason": e.reason,
    }


def durable_view_dict(view: DurableView) -> Json:
    """``durable show``: the durable, the lots it served, its history."""
    return {
        **durable_dict(view.durable),
        "lots": view.lots,
        "history": [durable_event_dict(e) for e in view.events],
    }


# -- material lots -------------------------------------------------------------------------


def material_status(m: Material, now: datetime) -> str:
    """A material lot's status at ``now`` in words: ``usable``, or what refuses it
    (:meth:`Material.problem`): ``expired``, ``frozen`` (not out of the freezer yet),
    ``thawing`` (out, not for its thaw time yet), ``floor life ended``."""
    found = m.problem(now)
    if found is None:
        return "usable"
    if found[0] == "material_not_thawed":
        return "frozen" if m.thawed_at is None else "thawing"
    if found[0] == "material_floor_life":
        return "floor life ended"
    return found[0].removeprefix("material_").replace("_", " ")


def material_dict(m: Material, now: datetime | None = None) -> Json:
    """A material lot, with its ``status`` at ``now`` (default: the present) in the words
    of :func:`material_status`."""
    return {
        "id": m.id,
        "kind": m.kind.value,
        "status": material_status(m, now or datetime.now(UTC)),
        "part_number": m.part_number,
        "expires_at": m.expires_at.isoformat(),
        "thaw_minutes": m.thaw_minutes if m.frozen else None,
        "floor_life_minutes": m.floor_life_minutes,
        "thawed_at": _iso(m.thawed_at),
        "usable_from": _iso(m.usable_from),
        "floor_life_ends": _iso(m.floor_life_ends),
        "tool": m.tool_id,
        "loaded_at": _iso(m.loaded_at),
        "added_by": m.added_by,
        "added_at": m.added_at.isoformat(),
        "quarantine": _quarantine_dict(m.quarantine),
        "version": m.version,
    }


def _quarantine_dict(q: Quarantine | None) -> Json | None:
    if q is None:
        return None
    return {"code": q.code, "reason": q.reason, "by": q.by, "at": q.at.isoformat()}


def material_from_dict(data: Json) -> Material:
    """The material lot :func:`material_dict` was made from (a kind that is not frozen has no
    thaw time: 0)."""
    return Material(
        id=data["id"],
        kind=MaterialKind(data["kind"]),
        expires_at=_when(data["expires_at"]),
        added_by=data["added_by"],
        added_at=_when(data["added_at"]),
        thaw_minutes=int(data["thaw_minutes"] or 0),
        floor_life_minutes=data["floor_life_minutes"],
        thawed_at=_at(data["thawed_at"]),
        tool_id=data["tool"],
        loaded_at=_at(data["loaded_at"]),
        part_number=data["part_number"],
        quarantine=_quarantine_from(data.get("quarantine")),
        version=int(data.get("version") or 1),
    )


def _quarantine_from(data: Any) -> Quarantine | None:
    if not isinstance(data, dict):
        return None
    return Quarantine(data["code"], data["reason"], data["by"], _when(data["at"]))


def material_event_dict(e: MaterialEvent) -> Json:
    return {
        "seq": e.seq,
        "event": e.event.value,
        "at": e.at.isoformat(),
        "by": e.by,
        "tool": e.tool_id,
        "reason": e.reason,
        "version": e.version,
        "signatures": [s.manifest() for s in e.signatures],
    }


def use_dict(u: Use) -> Json:
    return {
        "material": u.material_id,
        "lot": u.lot_id,
        "step": u.step,
        "tool": u.tool_id,
        "at": u.at.isoformat(),
    }


def material_view_dict(view: MaterialView) -> Json:
    """``material show``: the material lot, its history and the product lots it went into."""
    return {
        **material_dict(view.material),
        "history": [material_event_dict(e) for e in view.events],
        "uses": [use_dict(u) for u in view.uses],
    }


def where_used_dict(material_id: str, found: list[Reached]) -> Json:
    """``material where-used`` (a recall)."""
    return {
        "material": material_id,
        "lots": [_reached_dict(r) for r in found],
    }


def _reached_dict(r: Reached) -> Json:
    return {
        "lot": r.lot_id,
        "since": r.since.isoformat(),
        "via": list(r.via),
        "state": r.state.value if r.state is not None else None,
        "step": r.step,
    }


def recall_dict(recall: Recall) -> Json:
    """``material hold-lots`` (a recall's holds): the lots held now, and those left as they
    were, on hold already or off the line; ``release_by``: while the material lot is
    quarantined, the roles that alone release or rework the lots that got it."""
    return {
        "material": recall.material_id,
        "held": [_reached_dict(r) for r in recall.held],
        "on_hold": [_reached_dict(r) for r in recall.on_hold],
        "off_line": [_reached_dict(r) for r in recall.off_line],
        "release_by": sorted(r.value for r in recall.release_by),
    }


def quarantined_dict(done: Quarantined) -> Json:
    """``material quarantine``: the material lot, and the recall's holds when asked for
    (``recall``: null without ``--hold-lots``)."""
    return {
        **material_dict(done.material),
        "recall": recall_dict(done.recall) if done.recall is not None else None,
    }


def genealogy_dict(lot_id: str, found: list[Source]) -> Json:
    """``lot genealogy``: what went into a lot."""
    return {
        "lot": lot_id,
        "materials": [{**use_dict(s.use), "via": list(s.via)} for s in found],
    }


# -- reason codes --------------------------------------------------------------------------


def reason_dict(r: ReasonCode) -> Json:
    return {
        "code": r.code,
        "kind": r.kind.value,
        "text": r.text,
        "release_by": sorted(role.value for role in r.release_roles),
        "active": r.active,
        "added_by": r.added_by,
        "added_at": r.added_at.isoformat(),
        "retired_by": r.retired_by,
        "retired_at": _iso(r.retired_at),
        "retired_reason": r.retired_reason,
    }


# -- SPC -----------------------------------------------------------------------------------


def _num(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def chart_dict(c: Chart) -> Json:
    return {
        "step": c.step,
        "value": c.value,
        "tool": c.tool_id,
        "kind": c.kind.value,
        "center": c.center,
        "sigma": c.sigma,
        "ucl": c.ucl,
        "lcl": c.lcl,
        "limits_source": c.limits_source,
        "baseline": c.baseline_n,
        "rules": list(c.rules),
        "inhibit": c.inhibit,
        "set_by": c.set_by,
        "set_at": c.set_at.isoformat(),
    }


def chart_view_dict(v: ChartView) -> Json:
    """One chart of ``spc show``: its points, violations and capability. Each point has
    the control limits it is judged against (a subgroup chart's follow its n: center +- 3
    sigma / sqrt(n)), null while the chart has none."""
    c = v.chart
    return {
        **chart_dict(c),
        "points": [
            {
                "lot": p.lot_id,
                "carrier": p.carrier_id,
                "at": p.at.isoformat(),
                "x": p.x,
                "n": p.n,
                "s": p.s,
                "lcl": None if (found := c.limits_for(p.n)) is None else found[0],
                "ucl": None if found is None else found[1],
                "rules": list(p.rules),
            }
            for p in v.points
        ],
        "violations": [
            {"rule": x.rule, "text": RULES[x.rule], "points": list(x.points)} for x in v.violations
        ],
        "spec_lower": v.spec_lower,
        "spec_upper": v.spec_upper,
        "spec_from": v.spec_from,
        "cpk": _num(v.cpk),
        "ppk": _num(v.ppk),
    }


def cleared_dict(q: Qualification) -> Json:
    """``spc clear``: the tool qualified for the step again."""
    return {"tool": q.tool_id, "step": q.step, "qualified": True, "reason": q.reason}
