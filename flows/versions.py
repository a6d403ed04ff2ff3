"""Published flow versions as data: their content hash, and what changed between two, in words.

A version of a flow is the text of the files it is made of (``steps.yaml``,
``fragments.yaml`` and the flow's own file): :func:`content_hash` names that content, so two
publications of the same files are the same version, and a version's flow, built from its
files, can be kept by hash (versions never change). :func:`diff` compares two flows as an
engineer reads them: the sequence, steps added or removed, and per step the recipe defaults,
limits with their claims, spec limits, set-point windows, checks and rework; the lot parameters and the
queue-time limits.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from flows.flow import Flow
from flows.model import Limit, QueueTime, SpecLimits, ValueSpec


def content_hash(files: Mapping[str, str]) -> str:
    """SHA-256 (hex) of the files' names and texts, in name order."""
    canonical = json.dumps(sorted(files.items()), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _limits(limits: tuple[Limit, ...]) -> dict[str, str]:
    return {f"{lim.value} {lim.rule.describe()}": lim.claim for lim in limits}


def _value_changes(where: str, a: Mapping[str, ValueSpec], b: Mapping[str, ValueSpec]) -> list[str]:
    out: list[str] = []
    for name in sorted(set(a) - set(b)):
        out.append(f"{where}: {name} removed")
    for name in sorted(set(b) - set(a)):
        default = "" if b[name].default is None else f" (default {b[name].default})"
        out.append(f"{where}: {name} added{default}")
    for name in sorted(set(a) & set(b)):
        old, new = a[name], b[name]
        if old.default != new.default:
            out.append(f"{where}: {name} default {old.default} -> {new.default}")
        if old.type != new.type:
            out.append(f"{where}: {name} type {old.type} -> {new.type}")
        la, lb = _limits(old.limits), _limits(new.limits)
        for text in sorted(set(la) - set(lb)):
            out.append(f"{where}: limit removed: {text} (claim {la[text]})")
        for text in sorted(set(lb) - set(la)):
            out.append(f"{where}: limit added: {text} (claim {lb[text]})")
        for text in sorted(set(la) & set(lb)):
            if la[text] != lb[text]:
                out.append(f"{where}: limit {text}: claim {la[text]} -> {lb[text]}")
        if old.spec != new.spec:
            out.append(f"{where}: {name} spec limits {_spec(old.spec)} -> {_spec(new.spec)}")
        if old.window != new.window:
            out.append(f"{where}: {name} window {_spec(old.window)} -> {_spec(new.window)}")
    return out


def _spec(s: SpecLimits | None) -> str:
    if s is None:
        return "none"
    return f"[{s.lower}, {s.upper}] target {s.target} ({s.origin})"


def diff(a: Flow, b: Flow) -> list[str]:
    """What changed from flow ``a`` to flow ``b``, one sentence a line; empty when the two
    enforce the same rules."""
    out: list[str] = []
    if a.sequence != b.sequence:
        out.append(f"sequence: {a.sequence!r} -> {b.sequence!r}")
    for field in ("title", "document", "claims", "version"):
        va, vb = getattr(a, field), getattr(b, field)
        if va != vb:
            out.append(f"{field}: {va} -> {vb}")
    for code in [c for c in a.steps if c not in b.steps]:
        out.append(f"step {code} removed")
    for code in [c for c in b.steps if c not in a.steps]:
        out.append(f"step {code} added ({b.steps[code].equipment_class})")
    out += _value_changes("lot parameters", a.lot_params, b.lot_params)
    for code in [c for c in b.steps if c in a.steps]:
        sa, sb = a.steps[code], b.steps[code]
        if sa.equipment_class != sb.equipment_class:
            out.append(f"{code}: equipment {sa.equipment_class} -> {sb.equipment_class}")
        out += _value_changes(f"{code} recipe", sa.recipe, sb.recipe)
        out += _value_changes(f"{code} measured", sa.measured, sb.measured)
        ca, cb = _limits(sa.checks), _limits(sb.checks)
        out += [f"{code}: check removed: {t} (claim {ca[t]})" for t in sorted(set(ca) - set(cb))]
        out += [f"{code}: check added: {t} (claim {cb[t]})" for t in sorted(set(cb) - set(ca))]
        if sa.rework != sb.rework:
            out.append(f"{code}: rework {_rework(sa.rework)} -> {_rework(sb.rework)}")
    qa = {(q.from_step, q.to_step): q for q in a.queue_times}
    qb = {(q.from_step, q.to_step): q for q in b.queue_times}
    for key in sorted(set(qa) | set(qb)):
        old, new = qa.get(key), qb.get(key)
        if old == new:
            continue
        what = f"queue time {key[0]} -> {key[1]}"
        if old is None and new is not None:
            warn = "" if new.warn_minutes is None else f", warning {new.warn_minutes:g} min"
            out.append(f"{what} added: at most {new.max_minutes:g} min{warn} ({new.origin})")
        elif new is None and old is not None:
            out.append(f"{what} removed (was at most {old.max_minutes:g} min)")
        elif old is not None and new is not None:
            out.append(f"{what}: " + ", ".join(_queue_time_changes(old, new)))
    return out


def _queue_time_changes(old: QueueTime, new: QueueTime) -> list[str]:
    """What differs between two limits on the same wait, each part once: the maximum, the
    warning, the origin."""

    def warning(q: QueueTime) -> str:
        return "none" if q.warn_minutes is None else f"{q.warn_minutes:g} min"

    parts = []
    if old.max_minutes != new.max_minutes:
        parts.append(f"at most {old.max_minutes:g} -> {new.max_minutes:g} min")
    if old.warn_minutes != new.warn_minutes:
        parts.append(f"warning {warning(old)} -> {warning(new)}")
    if old.origin != new.origin:
        parts.append(f"origin {old.origin!r} -> {new.origin!r}")
    return parts


def _rework(spec: object) -> str:
    if spec is None:
        return "none"
    max_reworks = getattr(spec, "max_reworks", "?")
    through = sorted(getattr(spec, "through", ()))
    return f"max {max_reworks}" + (f" through {', '.join(through)}" if through else "")
