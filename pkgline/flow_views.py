"""What a flow and its published versions look like to their readers: the JSON of a flow,
of a version with its approvals, of a diff and of a publication (a contract: scripts read
it), for the CLI (``pkgline flow``) and the server (``/flows``) alike, so the two cannot
drift."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from flows import Flow, Limit, ValueSpec
from flows.model import QueueTime, SpecLimits
from mes.domain.authority import Principal
from mes.domain.errors import InvalidInput
from mes.domain.flowversions import FlowVersion

if TYPE_CHECKING:
    from mes.flowversions import FlowVersionService

Json = dict[str, Any]


def _limit_dict(limit: Limit) -> Json:
    return {
        "step": limit.step,
        "value": limit.value,
        "limit": limit.describe(),
        "claim": limit.claim,
    }


def _value_dict(spec: ValueSpec) -> Json:
    return {
        "type": spec.type,
        "default": spec.default,
        "unit": spec.unit,
        "description": spec.description,
        "limits": [_limit_dict(limit) for limit in spec.limits],
        "spec": _spec_dict(spec.spec),
        "window": _spec_dict(spec.window),
        **({"tool_value": spec.tool_value} if spec.tool_value else {}),
    }


def _spec_dict(spec: SpecLimits | None) -> Json | None:
    """A measured value's spec limits (out of spec holds the lot), or a recipe value's
    set-point window (outside it, the track-in is refused); None: it has none."""
    if spec is None:
        return None
    return {"lower": spec.lower, "upper": spec.upper, "target": spec.target, "origin": spec.origin}


def _queue_time_dict(q: QueueTime) -> Json:
    return {
        "from": q.from_step,
        "to": q.to_step,
        "max_minutes": q.max_minutes,
        "warn_minutes": q.warn_minutes,
        "origin": q.origin,
    }


def flow_dict(flow: Flow) -> Json:
    """A flow: sequence, lot parameters, queue times, and per step its equipment, recipe
    (with the set-point windows), measured values (with their spec limits), checks (with their claims) and rework (``flow
    show --json``)."""
    return {
        "name": flow.name,
        "title": flow.title,
        "version": flow.version,
        "document": flow.document,
        "claims": flow.claims,
        "sequence": flow.sequence,
        "description": flow.description,
        "lot_params": {n: _value_dict(s) for n, s in flow.lot_params.items()},
        "queue_times": [_queue_time_dict(q) for q in flow.queue_times],
        "steps": {
            code: {
                "equipment_class": s.equipment_class,
                "recipe": {n: _value_dict(v) for n, v in s.recipe.items()},
                "measured": {n: _value_dict(v) for n, v in s.measured.items()},
                "checks": [_limit_dict(limit) for limit in s.checks],
                "rework": None
                if s.rework is None
                else {"max_reworks": s.rework.max_reworks, "through": sorted(s.rework.through)},
            }
            for code, s in flow.steps.items()
        },
    }


def version_dict(v: FlowVersion) -> Json:
    """A published version: state, content hash, author, note, approvals (each linked to
    the content hash), retirement (``flow versions --json``)."""
    return {
        "flow": v.flow,
        "version": v.version,
        "state": v.state.value,
        "content_hash": v.content_hash,
        "author": v.author,
        "published_at": v.published_at.isoformat(),
        "note": v.note,
        "approvals": [
            {
                "signer": a.signer,
                "printed_name": a.printed_name,
                "meaning": a.meaning,
                "at": a.at.isoformat(),
                "method": a.method,
                "content_hash": a.content_hash,
            }
            for a in v.approvals
        ],
        "retired_at": v.retired_at.isoformat() if v.retired_at else None,
        "retired_by": v.retired_by,
    }


def versions_dicts(found: Sequence[FlowVersion], active: int | None) -> list[Json]:
    """A flow's versions (``flow versions --json``), each saying whether it is the one new
    lots start on (``active``: the newest approved; an approved version that is not the
    newest is there for the lots on it, and ``state`` alone did not tell them apart)."""
    return [{**version_dict(v), "active": v.version == active} for v in found]


def published_dicts(
    done: Sequence[tuple[FlowVersion, bool]], active: Mapping[str, int | None]
) -> list[Json]:
    """What a publication did, per flow: its version, whether it is new (false: the same
    content was published already and keeps its version), and the version new lots of the
    flow start on (``active_version``: an approved version that is not the newest is not)."""
    return [
        {**version_dict(v), "new": new, "active_version": active.get(v.flow)} for v, new in done
    ]


def approved_dict(v: FlowVersion, needed: int, active: int | None) -> Json:
    """A version after an approval, with how many approvals it needs in all and the version
    new lots of the flow start on now (``active_version``: an older draft approved after a
    newer version does not become it)."""
    return {**version_dict(v), "approvals_needed": needed, "active_version": active}


def diff_dict(flow: str, old: int, new: int, changes: Sequence[str]) -> Json:
    return {"flow": flow, "from": old, "to": new, "changes": list(changes)}


def shown_version_dict(v: FlowVersion, built: Flow) -> Json:
    """A published version's flow, with the version (``flow show --version --json``)."""
    return {**flow_dict(built), "published": version_dict(v)}


async def shown_version(
    service: FlowVersionService, flow: str, number: int | None, *, by: Principal | None = None
) -> Json:
    """A published version and the flow its files make (``flow show --version``)."""
    v = await service.version(flow, number, by=by)
    try:
        built = service.builds.build(v)
    except Exception as exc:  # a version that no longer loads with this code's loader
        raise InvalidInput(f"flow {flow} version {v.version} does not load: {exc}") from None
    return shown_version_dict(v, built)
