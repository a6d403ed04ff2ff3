"""Values that cannot be physical, refused as bad data before any rule looks at them: an
operator's (or a script's) typo is not a measurement. Pure.

Not a number or infinite, a temperature below absolute zero, a negative force, time, size,
speed, power, area, volume or dose (a length with a sign, an offset or an overlay, may be
negative), a whole number outside what the database keeps (64 bits). The controller's results get the physical ranges of each measured
value of the equipment class (``drivers/classes.yaml``, issue 13); this check is the service
layer's, for values given on the command line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from flows import ValueSpec
from mes.domain.commands import GivenValue
from mes.domain.errors import InvalidInput

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


def refuse_unphysical(
    specs: Mapping[str, ValueSpec], given: Mapping[str, GivenValue], what: str, lot_id: str
) -> None:
    """Refuse (InvalidInput, nothing written) given values that cannot be physical. Values
    that do not parse, or that no spec names, are left to the rules, which say what they
    expect."""
    for name, raw in given.items():
        spec = specs.get(name)
        if spec is None or spec.type == "str" or isinstance(raw, bool):
            continue
        try:
            value = spec.parse(raw) if isinstance(raw, str) else raw
        except ValueError:
            continue
        if isinstance(value, str):
            continue
        why = unphysical(spec, value)
        if why is not None:
            unit = f" {spec.unit}" if spec.unit else ""
            raise InvalidInput(
                f"{what} refused as bad data: {name} {raw}{unit} {why}; expected a value "
                "that can be physical",
                lot_id=lot_id,
            )
