"""Values that cannot be physical: not a number or infinite, a temperature below absolute
zero, a negative force, time, size, speed, power, area, volume or dose (a length with a
sign, an offset or an overlay, may be negative), a whole number outside what the database
keeps (64 bits). Pure.

A new flow version is checked with it when it is published (a default goes to the tool as it
is; a limit of NaN or infinity holds no value: :func:`unphysical_values`), and the service
layer checks the values given on the command line with it (:mod:`mes.domain.physical`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from flows.flow import Flow
from flows.model import Equals, Limit, OneOf, Range, Rule, ValueSpec

ABSOLUTE_ZERO_C = -273.15
INT_RANGE = range(-(2**63), 2**63)
MAGNITUDES = frozenset(
    {"N", "gf", "ms", "s", "nL", "mW", "kW", "rpm", "mm2", "mm/s", "A/dm2", "mJ/cm2", "W/m.K"}
)
"""Units of quantities that are never negative: forces, durations, volumes, powers, speeds,
areas, densities and doses, a conductivity (the flows' units, :mod:`flows.specs`)."""
LENGTHS = frozenset({"um", "mm"})
SIGNED_LENGTHS = ("offset", "overlay", "warpage", "shift")
"""A length is a size (a thickness, a height, a diameter: never negative) unless its name
says it is a displacement, which has a sign."""


def _never_negative(spec: ValueSpec) -> bool:
    if spec.unit in MAGNITUDES:
        return True
    if spec.unit in LENGTHS:
        return not any(word in spec.name for word in SIGNED_LENGTHS)
    return spec.unit == "MPa" and "pressure" in spec.name


def unphysical(spec: ValueSpec, value: float | int) -> str | None:
    """Why ``value`` cannot be a physical value of ``spec`` (None: it can)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "is not a finite number"
    if spec.unit == "degC" and value < ABSOLUTE_ZERO_C:
        return f"is below absolute zero ({ABSOLUTE_ZERO_C} degC)"
    if value < 0 and _never_negative(spec):
        return f"is negative, and a {spec.unit} value of {spec.name} never is"
    if isinstance(value, int) and value not in INT_RANGE:
        return "is outside the range of a 64-bit whole number"
    return None


def _numbers(rule: Rule) -> list[object]:
    if isinstance(rule, Range):
        return [rule.low, rule.high]
    if isinstance(rule, OneOf):
        return list(rule.choices)
    if isinstance(rule, Equals):
        return [rule.reference, rule.tolerance]
    return [rule.reference]


def _finite(value: object) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def unphysical_values(flow: Flow) -> list[str]:
    """What in ``flow`` cannot be physical, each in words: a default (lot parameters, recipe
    values) that :func:`unphysical` refuses, and a limit, spec limit or queue time that is
    not a finite number (YAML's ``.nan`` and ``.inf`` are numbers to it). A new version is
    not published with any; versions published before are built as they are, so that their
    lots stay readable (and can be moved to another version)."""
    found: list[str] = []
    none: tuple[Limit, ...] = ()
    places: list[tuple[str, Mapping[str, ValueSpec], tuple[Limit, ...]]] = [
        ("lot parameters", flow.lot_params, none)
    ]
    for code, step in flow.steps.items():
        places += [
            (f"{code} recipe", step.recipe, none),
            (f"{code} measured", step.measured, none),
            (f"{code} checks", {}, step.checks),
        ]
    for where, specs, checks in places:
        limits: list[Limit] = list(checks)
        for name, spec in specs.items():
            limits += spec.limits
            value = spec.default
            if value is not None and not isinstance(value, bool | str):
                why = unphysical(spec, value)
                if why is not None:
                    unit = f" {spec.unit}" if spec.unit else ""
                    found.append(f"{where}: {name}: default {value!r}{unit} {why}")
            if spec.spec is not None:
                bounds = (spec.spec.lower, spec.spec.upper, spec.spec.target)
                if not all(_finite(b) for b in bounds):
                    found.append(f"{where}: {name}: a spec limit is not a finite number")
        for limit in limits:
            if not all(_finite(n) for n in _numbers(limit.rule)):
                found.append(
                    f"{where}: {limit.value}: the limit {limit.rule.describe()} is not of "
                    "finite numbers"
                )
    for q in flow.queue_times:
        if not (_finite(q.max_minutes) and _finite(q.warn_minutes)):
            found.append(
                f"queue time {q.from_step} -> {q.to_step}: its minutes are not a finite number"
            )
    return found
