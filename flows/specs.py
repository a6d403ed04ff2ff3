"""Value specs merged field by field from several defs files (steps.yaml <- fragment <- flow
file), then checked and turned into :class:`ValueSpec` and :class:`Limit` values.

A draft remembers where each field was last written, so that an error points at the line
that set the offending field, whichever file it is in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from flows.errors import suggest
from flows.limits import evaluate
from flows.model import (
    RULE_KINDS,
    Equals,
    GreaterThan,
    LessThan,
    Limit,
    OneOf,
    Range,
    Rule,
    SpecLimits,
    Value,
    ValueSpec,
    ValueType,
    format_value,
)
from flows.origin import Origin
from flows.schema import (
    LimitModel,
    ReworkModel,
    SpecModel,
    StepBodyModel,
    StepCodeModel,
    WindowModel,
)
from flows.speclimits import outside_window, window_text

# The unit of a value follows from its name ("units in the names"); longest suffix first.
_UNIT_SUFFIXES = (
    ("_w_mk", "W/m.K"),
    ("_mj_cm2", "mJ/cm2"),
    ("_a_dm2", "A/dm2"),
    ("_mm_s", "mm/s"),
    ("_mm2", "mm2"),
    ("_rpm", "rpm"),
    ("_mpa", "MPa"),
    ("_pct", "%"),
    ("_um", "um"),
    ("_mm", "mm"),
    ("_ms", "ms"),
    ("_nl", "nL"),
    ("_mw", "mW"),
    ("_kw", "kW"),
    ("_c", "degC"),
    ("_n", "N"),
    ("_s", "s"),
    ("_g", "gf"),
)

Kind = Literal["recipe", "measured", "lot"]
"""Where a value spec sits: recipe and lot values need a default (or optional: true),
measured values never have one."""


def unit_of(name: str) -> str | None:
    """The unit a value name ends with (``_um`` -> ``um``), or None (counts, words)."""
    for suffix, unit in _UNIT_SUFFIXES:
        if name.endswith(suffix):
            return unit
    return None


class Draft:
    """A value spec (or a ``checks`` limit) being merged from several files."""

    def __init__(self, name: str, origin: Origin):
        self.name = name
        self.origin = origin
        self.fields: dict[str, tuple[Any, Origin]] = {}

    def merge(self, model: BaseModel, origin: Origin) -> None:
        for key in model.model_fields_set:
            self.fields[key] = (getattr(model, key), origin.child(key))

    def get(self, key: str) -> Any:
        return self.fields[key][0] if key in self.fields else None

    def where(self, key: str) -> Origin:
        return self.fields[key][1] if key in self.fields else self.origin


@dataclass
class StepDraft:
    """What the defs files say about one step of a flow, merged in file order."""

    code: str
    info: StepCodeModel
    recipe: dict[str, Draft] = field(default_factory=dict)
    measured: dict[str, Draft] = field(default_factory=dict)
    checks: dict[str, Draft] = field(default_factory=dict)
    rework: tuple[ReworkModel, Origin] | None = None

    def merge(self, body: StepBodyModel, origin: Origin) -> None:
        for section in ("recipe", "measured", "checks"):
            drafts: dict[str, Draft] = getattr(self, section)
            models: dict[str, LimitModel] = getattr(body, section)
            for name, model in models.items():
                where = origin.child(section, name)
                draft = drafts.setdefault(name, Draft(name, where))
                draft.merge(model, where)
        if body.rework is not None:
            self.rework = (body.rework, origin.child("rework"))


def value_type(draft: Draft) -> ValueType:
    """The type given, else ``str`` when the default or the choices are words, else float."""
    explicit: ValueType | None = draft.get("type")
    if explicit is not None:
        return explicit
    default = draft.get("default")
    one_of = draft.get("one_of")
    if isinstance(default, str) or (one_of and all(isinstance(c, str) for c in one_of)):
        return "str"
    return "float"


def _fits(value: Any, vtype: ValueType) -> bool:
    if vtype == "str":
        return isinstance(value, str)
    if vtype == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, int | float) and not isinstance(value, bool)


def _typed(value: Value, vtype: ValueType) -> Value:
    return float(value) if vtype == "float" else value


def spec_limits(draft: Draft, kind: Kind, vtype: ValueType) -> SpecLimits | None:
    """A measured value's spec limits, if the files give any."""
    given: SpecModel | None = draft.get("spec")
    if given is None:
        return None
    if kind != "measured":
        window = " or a set-point window (window:, line practice)" if kind == "recipe" else ""
        raise draft.where("spec").error(
            f"{draft.name}: spec limits are for measured values; a {kind} value has limits "
            f"(range, one_of ...) with their claim{window}"
        )
    if vtype == "str":
        raise draft.where("spec").error(f"{draft.name}: spec limits need a number, not a word")

    def number(v: float | None) -> float | None:
        return None if v is None else float(v)

    return SpecLimits(number(given.lower), number(given.upper), number(given.target), given.origin)


def window_of(draft: Draft, kind: Kind, vtype: ValueType) -> SpecLimits | None:
    """A recipe value's set-point window, if the files give one."""
    given: WindowModel | None = draft.get("window")
    if given is None:
        return None
    where = draft.where("window")
    if kind != "recipe":
        other = "spec limits (spec:)" if kind == "measured" else "limits (range ...)"
        raise where.error(
            f"{draft.name}: a window is for a recipe set point, refused at track-in outside "
            f"it; a {kind} value has {other}"
        )
    if vtype == "str":
        raise where.error(f"{draft.name}: a window needs a number, not a word")

    def number(v: float | None) -> float | None:
        return None if v is None else float(v)

    return SpecLimits(number(given.lower), number(given.upper), number(given.target), given.origin)


class SpecBuilder:
    """Builds the value specs and limits of one flow, knowing the type of every name in it."""

    def __init__(self, name: str, types: Mapping[str, tuple[ValueType, Origin]]):
        self.name = name
        self.types = types

    def reference(self, draft: Draft, kind: str, value: Any, vtype: ValueType) -> Any:
        where = draft.where(kind)
        if vtype == "str":
            raise where.error(f"{draft.name}: {kind} compares numbers, but it is a word (str)")
        if isinstance(value, str):
            if value == draft.name:
                raise where.error(f"{draft.name}: {kind} refers to the value itself")
            if value not in self.types:
                known = [*self.types]
                raise where.error(
                    f"{draft.name}: {kind} refers to {value!r}, which is no value of flow "
                    f"{self.name}{suggest(value, known)}; expected a number, the name of a "
                    "recipe or measured value of one of its steps, a lot parameter, site_rows "
                    "or site_cols"
                )
            if self.types[value][0] == "str":
                raise where.error(
                    f"{draft.name}: {kind} refers to {value!r}, which is a word, not a number"
                )
            return value
        return float(value)

    def limits(
        self, draft: Draft, value_name: str, step: str | None, vtype: ValueType
    ) -> tuple[Limit, ...]:
        rules: list[Rule] = []
        for kind in RULE_KINDS:
            value = draft.get(kind)
            if value is None:
                continue
            where = draft.where(kind)
            if kind == "range":
                if vtype == "str":
                    raise where.error(f"{value_name}: a range needs a number, but it is a word")
                rules.append(Range(float(value[0]), float(value[1])))
            elif kind == "one_of":
                wrong = [c for c in value if not _fits(c, vtype)]
                if wrong:
                    raise where.error(
                        f"{value_name}: one_of {wrong[0]!r} is not a {vtype} like the value"
                    )
                rules.append(OneOf(tuple(_typed(c, vtype) for c in value)))
            elif kind == "equals":
                tolerance = draft.get("tolerance")
                ref = self.reference(draft, kind, value, vtype)
                rules.append(Equals(ref, float(tolerance) if tolerance is not None else 0.0))
            elif kind == "greater_than":
                rules.append(GreaterThan(self.reference(draft, kind, value, vtype)))
            else:
                rules.append(LessThan(self.reference(draft, kind, value, vtype)))
        if draft.get("tolerance") is not None and draft.get("equals") is None:
            raise draft.where("tolerance").error(
                f"{value_name}: tolerance is only meaningful with equals"
            )
        claim: str | None = draft.get("claim")
        if rules and not claim:
            first_rule = next(kind for kind in RULE_KINDS if draft.get(kind) is not None)
            raise draft.where(first_rule).error(
                f"{value_name}: a limit needs the claim it comes from, e.g. "
                'claim: "001: 4, 13" (document: claim numbers)'
            )
        if claim and not rules:
            raise draft.where("claim").error(
                f"{value_name}: claim given but no limit (range, one_of, equals, greater_than "
                "or less_than)"
            )
        note: str | None = draft.get("note")
        assert claim is not None or not rules
        return tuple(Limit(value_name, step, rule, claim or "", note) for rule in rules)

    def value_spec(self, draft: Draft, step: str | None, kind: Kind) -> ValueSpec:
        vtype = self.types[draft.name][0]
        default = draft.get("default")
        optional = bool(draft.get("optional"))
        if kind == "measured" and default is not None:
            raise draft.where("default").error(
                f"{draft.name}: a measured value has no default (the tool reports it)"
            )
        if kind != "measured":
            if default is None and not optional:
                raise draft.origin.error(
                    f"{draft.name}: no default; give one, or mark the value optional: true "
                    "when it may be left out"
                )
            if default is not None and optional:
                raise draft.where("optional").error(
                    f"{draft.name}: optional: true is for a value with no default, but it has "
                    f"default {default!r}"
                )
        if default is not None and not _fits(default, vtype):
            raise draft.where("default").error(
                f"{draft.name}: default {default!r} is not a {vtype}"
            )
        limits = self.limits(draft, draft.name, step, vtype)
        if default is not None:
            default = _typed(default, vtype)
            for limit in limits:
                # Limits that compare with another value are checked when that value is known.
                violation = evaluate(limit, default, lambda _name: None, "load")
                if violation is not None:
                    raise draft.where("default").error(
                        f"{draft.name}: default {default!r} is outside its own limit "
                        f"{violation.expected} (claim {limit.claim})"
                    )
        window = window_of(draft, kind, vtype)
        unit = draft.get("unit") or unit_of(draft.name)
        if window is not None and default is not None and not isinstance(default, str):
            why = outside_window(window, default, unit)
            if why is not None:
                u = f" {unit}" if unit else ""
                raise draft.where("default").error(
                    f"{draft.name}: default {format_value(default)}{u} is outside its own window "
                    f"{window_text(window, unit)} ({window.origin}): {why}; expected a default "
                    "inside it"
                )
        return ValueSpec(
            name=draft.name,
            type=vtype,
            default=default,
            unit=unit,
            description=draft.get("description") or "",
            limits=limits,
            tool_value=draft.get("tool_value"),
            spec=spec_limits(draft, kind, vtype),
            window=window,
        )
